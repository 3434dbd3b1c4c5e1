/*
 * applyd — files written for a proxy: complete and on disk, or an error.
 * Apart from proxy.c so that the drivers' unit tests link it alone.  Each is
 * a temporary file created afresh (fsafe_create: never through a link
 * planted in the run folder), then renamed over the one it replaces.
 */
#include <errno.h>
#include <unistd.h>

#include "fsafe.h"
#include "proxy.h"

int
proxy_put_file(const char *path, const char *text, size_t len, mode_t mode)
{
	size_t off = 0;
	ssize_t n;
	int fd;

	if ((fd = fsafe_create(path, mode)) == -1)
		return -1;
	while (off < len) {
		if ((n = write(fd, text + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (fsync(fd) == -1) {
		close(fd);
		return -1;
	}
	return close(fd);
}
