/*
 * portico — files that hold secrets, the run folder, and files created in
 * it: what a local user without portico's uid must not be able to use.
 */
#ifndef PORTICO_FSAFE_H
#define PORTICO_FSAFE_H

#include <sys/stat.h>

#include <stddef.h>
#include <stdio.h>

/*
 * Create path afresh for writing, as a temporary file is: whatever is there
 * (a stale file, or a symlink someone planted) is unlinked first, and the
 * file is made with O_CREAT | O_EXCL | O_NOFOLLOW, so that nothing is ever
 * written through a link.  An open descriptor, or -1 with errno.
 */
int	fsafe_create(const char *path, mode_t mode);
/* The same, as a stream open for writing; NULL with errno. */
FILE	*fsafe_fopen(const char *path, mode_t mode);

/*
 * The folder at path is ours: a directory itself (not a symlink to one),
 * owned by our effective uid, and writable by no one else (no group or
 * other write bit).  0, or -1 with the reason in err.
 */
int	fsafe_private_dir(const char *path, char *err, size_t errlen);

/*
 * Only its owner may write the file or folder: no group or other write
 * bit.  0, or -1 with "what has mode 0666: group or others may write..."
 * in err.
 */
int	fsafe_owner_writes(const struct stat *, const char *what, char *err,
	    size_t errlen);

/*
 * A file holding a secret gives group and others no access at all
 * (mode & 077 == 0), as ssh asks of a private key.  0, or -1 with "what
 * has mode 0644, which gives group or others access..." in err.
 */
int	fsafe_secret_mode(const struct stat *, const char *what, char *err,
	    size_t errlen);

#endif
