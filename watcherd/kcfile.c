/*
 * watcherd — reading the kubeconfig folder's files, and the files its
 * kubeconfigs name (tokenFile, certificate-authority, client-certificate,
 * client-key), from the places the configuration names and nowhere else.
 *
 * Whoever writes the folder must not make watcherd read a file elsewhere
 * (a root-only file, sent as a bearer token to a server of their choosing).
 * The check is made on the file as opened, through /proc/self/fd: a symlink
 * swapped between a check and the open changes nothing.  Symlinks that stay
 * inside are fine: Kubernetes mounts ConfigMaps and projected tokens as
 * links through a "..data" link.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsafe.h"
#include "kcfile.h"
#include "log.h"

static const char	*places_dir = "";
static const char	*places_allow = "";

void
kcfile_places(const char *dir, const char *allow_dirs)
{
	places_dir = dir;
	places_allow = allow_dirs;
}

/* real lies under the folder named by the n bytes at place (resolved). */
static int
under(const char *real, const char *place, size_t n)
{
	char dir[PATH_MAX], root[PATH_MAX];
	size_t len;

	while (n > 0 && (place[n - 1] == ' ' || place[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= sizeof(dir))
		return 0;
	memcpy(dir, place, n);
	dir[n] = '\0';
	if (realpath(dir, root) == NULL)
		return 0;
	len = strlen(root);
	if (strcmp(root, "/") == 0)
		return 1;
	return strncmp(real, root, len) == 0 && real[len] == '/';
}

static int
placed(const char *real)
{
	const char *p = places_allow;
	size_t n;

	if (under(real, places_dir, strlen(places_dir)))
		return 1;
	for (;;) {
		p += strspn(p, ", \t");
		if (*p == '\0')
			return 0;
		n = strcspn(p, ",");
		if (under(real, p, n))
			return 1;
		p += n;
	}
}

/* The open file fd is one we may read: 0, or -1 with the reason in why. */
static int
check_fd(int fd, int secret, struct stat *st, char *why, size_t whylen)
{
	char link[64], real[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, real, sizeof(real) - 1)) == -1) {
		snprintf(why, whylen, "cannot resolve it: %s",
		    strerror(errno));
		return -1;
	}
	real[n] = '\0';
	if (!placed(real)) {
		snprintf(why, whylen, "lies outside the kubeconfig "
		    "folder and [kubeconfigs] allow_dirs; refused");
		errno = EACCES;
		return -1;
	}
	if (fstat(fd, st) == -1 || !S_ISREG(st->st_mode)) {
		snprintf(why, whylen, "not a regular file");
		errno = EINVAL;
		return -1;
	}
	if (secret && fsafe_secret_mode(st, "the file",
	    why, whylen) == -1) {
		errno = EACCES;
		return -1;
	}
	return 0;
}

char *
kcfile_read(const char *path, int secret, size_t max, size_t *lenp,
    struct stat *stp, char *why, size_t whylen)
{
	struct stat st;
	size_t len = 0;
	char *buf = NULL;
	ssize_t n;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY |
	    O_CLOEXEC)) == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		return NULL;
	}
	if (check_fd(fd, secret, &st, why, whylen) == -1)
		goto fail;
	if ((buf = malloc(max + 1)) == NULL)
		fatal("kcfile_read");
	while (len <= max && (n = read(fd, buf + len, max + 1 - len)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(why, whylen, "%s", strerror(errno));
			goto fail;
		}
		len += (size_t)n;
	}
	if (len > max) {
		snprintf(why, whylen, "larger than %zu bytes", max);
		errno = EFBIG;
		goto fail;
	}
	close(fd);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	if (stp != NULL)
		*stp = st;
	return buf;
 fail:
	saved = errno;
	close(fd);
	free(buf);
	errno = saved;
	return NULL;
}
