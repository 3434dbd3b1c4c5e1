/*
 * watcherd — the files of the kubeconfig folder, and the files its
 * kubeconfigs name: read only from the places the configuration names.
 */
#ifndef WATCHERD_KCFILE_H
#define WATCHERD_KCFILE_H

#include <sys/stat.h>

#include <stddef.h>

/*
 * The places: the kubeconfig folder and [kubeconfigs] allow_dirs (a
 * comma-separated list).  Both strings are kept, not copied.
 */
void	 kcfile_places(const char *dir, const char *allow_dirs);

/*
 * Read the file at path (at most max bytes, NUL-terminated; its length in
 * *lenp and its stat in *st when not NULL).  The file as opened, all its
 * symlinks resolved, lies under one of the places, and is a regular file;
 * a secret one gives group and others no access (fsafe_secret_mode).
 * Otherwise NULL, errno set, and the reason in why.
 */
char	*kcfile_read(const char *path, int secret, size_t max, size_t *lenp,
	    struct stat *st, char *why, size_t whylen);

#endif
