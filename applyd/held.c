/*
 * applyd — workload ports another program holds.
 *
 * One port that another program has bound would fail the proxy's start or
 * reload as a whole, and every route would wait on it.  So the drivers
 * probe the ports they are about to bind, leave the held ones out of what
 * the proxy reads, probe those again while idle, and report the routed
 * ones to allocd, which writes no address for them and says why.
 *
 * A probe is a bind.  HAProxy's listeners set SO_REUSEPORT, so a probe
 * that sets it too reads HAProxy's own ports as free; nginx's do not, so
 * its driver asks /proc which ports its master listens on and probes only
 * the others.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "held.h"
#include "log.h"

void
held_reset(struct held *h, const char *ip, int reuseport)
{
	memset(h->bits, 0, sizeof(h->bits));
	h->n = 0;
	snprintf(h->ip, sizeof(h->ip), "%s", ip);
	h->reuseport = reuseport;
}

int
held_has(const struct held *h, unsigned port)
{
	return port < 65536 && HELD_BIT(h->bits, port) != 0;
}

static int
port_taken(const char *ip, unsigned port, int reuseport)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	struct sockaddr *sa;
	socklen_t len;
	int s, one = 1, taken;

	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	if (inet_pton(AF_INET, ip, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		s4.sin_port = htons((unsigned short)port);
		sa = (struct sockaddr *)&s4;
		len = sizeof(s4);
	} else if (inet_pton(AF_INET6, ip, &s6.sin6_addr) == 1) {
		s6.sin6_family = AF_INET6;
		s6.sin6_port = htons((unsigned short)port);
		sa = (struct sockaddr *)&s6;
		len = sizeof(s6);
	} else
		return 0;
	if ((s = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;	/* cannot tell: let the proxy try */
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	taken = bind(s, sa, len) == -1 && errno == EADDRINUSE;
	close(s);
	return taken;
}

int
held_probe(struct held *h, unsigned port)
{
	if (port == 0 || port > 65535 || held_has(h, port))
		return held_has(h, port);
	if (!port_taken(h->ip, port, h->reuseport))
		return 0;
	h->bits[port >> 3] |= 1u << (port & 7);
	h->n++;
	return 1;
}

void
held_log(const struct held *h, unsigned before)
{
	char list[256];
	size_t o = 0;
	unsigned p, shown = 0;

	if (h->n == before && h->n == 0)
		return;
	list[0] = '\0';
	for (p = 1; p < 65536 && shown < 16; p++)
		if (held_has(h, p)) {
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%u",
			    shown++ ? ", " : "", p);
			if (o >= sizeof(list))
				break;
		}
	if (h->n == 0)
		log_info("every workload port binds again");
	else
		log_warnx("%u workload port%s held by another "
		    "program, not bound: %s%s", h->n, h->n == 1 ? "" : "s",
		    list, h->n > shown ? ", ..." : "");
}

int
held_freed(const struct held *h)
{
	unsigned p;

	for (p = 1; h->n > 0 && p < 65536; p++)
		if (held_has(h, p) && !port_taken(h->ip, p, h->reuseport)) {
			log_info("workload port %u came free; "
			    "reloading to bind it", p);
			return 1;
		}
	return 0;
}

static int
cmp_ulong(const void *x, const void *y)
{
	unsigned long a = *(const unsigned long *)x;
	unsigned long b = *(const unsigned long *)y;

	return a < b ? -1 : a > b;
}

/* The listening sockets of path (/proc/net/tcp or tcp6) among inodes. */
static void
listening_in(const char *path, const unsigned long *ino, size_t n,
    unsigned char *bits)
{
	unsigned long inode;
	unsigned port, st;
	char line[512];
	FILE *fp;

	if ((fp = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x "
		    "%*x:%*x %*x:%*x %*x %*u %*u %lu", &port, &st,
		    &inode) != 3)
			continue;
		if (st == 0x0a && port < 65536 &&
		    bsearch(&inode, ino, n, sizeof(*ino), cmp_ulong) != NULL)
			bits[port >> 3] |= 1u << (port & 7);
	}
	fclose(fp);
}

int
held_listening(pid_t pid, unsigned char bits[65536 / 8])
{
	char path[64], link[64];
	unsigned long *ino = NULL, v;
	size_t n = 0, cap = 0;
	struct dirent *de;
	ssize_t len;
	DIR *d;

	memset(bits, 0, 65536 / 8);
	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "/proc/%ld/fd/%.20s", (long)pid,
		    de->d_name);
		if (de->d_name[0] == '.' ||
		    (len = readlink(path, link, sizeof(link) - 1)) <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &v) != 1)
			continue;
		if (n == cap && (ino = reallocarray(ino, cap = cap ? cap * 2 :
		    64, sizeof(*ino))) == NULL)
			fatal("held_listening");
		ino[n++] = v;
	}
	closedir(d);
	if (n > 0) {
		qsort(ino, n, sizeof(*ino), cmp_ulong);
		listening_in("/proc/net/tcp", ino, n, bits);
		listening_in("/proc/net/tcp6", ino, n, bits);
	}
	free(ino);
	return 0;
}
