/*
 * portico — files that hold secrets, the run folder, and files created in
 * it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fsafe.h"

int
fsafe_create(const char *path, mode_t mode)
{
	if (unlink(path) == -1 && errno != ENOENT)
		return -1;
	return open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, mode);
}

FILE *
fsafe_fopen(const char *path, mode_t mode)
{
	FILE *fp;
	int fd;

	if ((fd = fsafe_create(path, mode)) == -1)
		return NULL;
	if ((fp = fdopen(fd, "w")) == NULL)
		close(fd);
	return fp;
}

int
fsafe_private_dir(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: %s", path, errno == ELOOP ||
		    errno == ENOTDIR ? "not a directory (a symlink is "
		    "refused)" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s is owned by uid %u, not by the uid "
		    "portico runs as (%u): refused", path,
		    (unsigned)st.st_uid, (unsigned)geteuid());
		return -1;
	}
	return fsafe_owner_writes(&st, path, err, errlen);
}

int
fsafe_owner_writes(const struct stat *st, const char *what, char *err,
    size_t errlen)
{
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
		return 0;
	snprintf(err, errlen, "%s has mode %04o: group or others may write "
	    "%s; refused (chmod go-w it)", what, (unsigned)(st->st_mode & 07777),
	    S_ISDIR(st->st_mode) ? "in it" : "it");
	return -1;
}

int
fsafe_secret_mode(const struct stat *st, const char *what, char *err,
    size_t errlen)
{
	if ((st->st_mode & 077) == 0)
		return 0;
	snprintf(err, errlen, "%s has mode %04o, which gives group or others "
	    "access to a secret; refused (chmod 600 it)", what,
	    (unsigned)(st->st_mode & 07777));
	return -1;
}
