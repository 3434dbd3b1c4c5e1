/*
 * applyd — HAProxy without reloads.
 *
 * renderd's HAProxy configuration binds the workload ports once and routes
 * each connection through a map: the port (or the SNI host) to a backend
 * that always exists, `p<port>` for every configured port and a slot
 * `api<n>` from a pool for the clusters (its SNI host in a `# sni HOST`
 * comment line).  What changes from one generation to the next is then
 * almost always only the servers inside those backends and which keys the
 * maps hold, and both change through the runtime API:
 *	add server B/S ADDR ARGS; enable server B/S [; enable health B/S]
 *	set server B/S weight W
 *	set server B/S state maint; del server B/S
 *	add map FILE KEY BACKEND; del map FILE KEY
 * A server's name is its address (`10.0.0.1_30080`), so the same backend
 * address is the same server in every generation.  Servers are added
 * before the map points at them and leave after it stops pointing; a
 * server that still carries connections cannot be deleted yet: it stays in
 * maintenance (no new connection reaches it) and is deleted later.
 *
 * Everything else (the skeleton: every line but the server lines) changing
 * means a reload, and so does a slot that changes hands (another host in
 * the same backend): the map would point the old host at the new servers
 * for a moment.  The maps on disk are derived from the configuration, so
 * a reload or a restart routes exactly as the runtime API did.
 *
 * A generation is the whole text (~2 MB at 10,000 ports) but changes a
 * few backends: only the sections between the first and the last byte
 * that differ are parsed and compared, which is the same as comparing the
 * whole texts, since everything around them is the same in both.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsafe.h"
#include "hapruntime.h"
#include "log.h"

#define CLI_TIMEOUT_MS	5000
#define DRAIN_MAX	4096

struct server {
	const char	*backend;	/* points into the parsed copy */
	const char	*name;
	const char	*args;		/* what follows the name */
	const char	*sni;		/* an API slot's host, or NULL */
};

struct parsed {
	char		*copy;		/* the text, cut into strings */
	char		*skel;		/* every line but server lines */
	size_t		 skellen;
	struct server	*srv;		/* sorted by backend, then name */
	size_t		 nsrv;
	const char	*ports_map;	/* from the frontends' use_backend */
	const char	*api_map;
};

/* The map files the frontends route by. */
struct maps {
	char		 ports[PATH_MAX];
	char		 api[PATH_MAX];
};

/* Servers put in maintenance whose connections have not finished yet. */
static char	*draining[DRAIN_MAX];
static size_t	 ndraining;

static int
cmp_server(const void *x, const void *y)
{
	const struct server *a = x, *b = y;
	int c = strcmp(a->backend, b->backend);

	return c != 0 ? c : strcmp(a->name, b->name);
}

/*
 * A section starts at the first column of a line with anything but a tab,
 * a comment or nothing (as parse() reads it).
 */
static int
section_at(const char *t, size_t i)
{
	return (i == 0 || t[i - 1] == '\n') && t[i] != '\t' && t[i] != '#' &&
	    t[i] != '\n' && t[i] != '\0';
}

/*
 * The map files named by the frontends' use_backend lines, from the whole
 * text (the changed part seldom holds the frontends); the scan stops once
 * both are known, and renderd writes the frontends before the port
 * backends.  An empty string for one that is missing.
 */
static void
frontend_maps(const char *text, struct maps *m)
{
	const char *s = text, *line, *end, *p, *e;
	char *to;

	m->ports[0] = m->api[0] = '\0';
	while (m->ports[0] == '\0' || m->api[0] == '\0') {
		if (strncmp(s, "frontend ", 9) != 0 ||
		    !section_at(text, (size_t)(s - text))) {
			if ((s = strstr(s, "\nfrontend ")) == NULL)
				return;
			s++;
		}
		/* its lines, up to the next section */
		for (line = s; *line != '\0'; line = end + (*end == '\n')) {
			end = line + strcspn(line, "\n");
			if (line != s && section_at(line, 0))
				break;
			if (strncmp(line, "\tuse_backend ", 13) != 0 ||
			    (p = memmem(line, (size_t)(end - line), "map(",
			    4)) == NULL ||
			    (e = memchr(p, ')', (size_t)(end - p))) == NULL ||
			    (size_t)(e - p - 4) >= sizeof(m->ports))
				continue;
			if (memmem(line, (size_t)(end - line), "dst_port",
			    8) != NULL)
				to = m->ports;
			else if (memmem(line, (size_t)(end - line),
			    "req_ssl_sni", 11) != NULL)
				to = m->api;
			else
				continue;
			memcpy(to, p + 4, (size_t)(e - p - 4));
			to[e - p - 4] = '\0';
		}
		s = line;
	}
}

/*
 * Where old and new differ, in whole sections: the first *at bytes and
 * the last *tail bytes of each are the same in both, and the parts in
 * between start and end at a section (or the text's ends).
 */
static void
changed(const char *o, size_t olen, const char *n, size_t nlen, size_t *at,
    size_t *tail)
{
	size_t min = olen < nlen ? olen : nlen, p = 0, s = 0, q, c;

	/* memcmp a block at a time, then find the byte in the block */
	for (c = 4096; p < min; p += c) {
		if (c > min - p)
			c = min - p;
		if (memcmp(o + p, n + p, c) != 0)
			break;
	}
	while (p < min && o[p] == n[p])
		p++;
	for (c = 4096; s < min - p; s += c) {
		if (c > min - p - s)
			c = min - p - s;
		if (memcmp(o + olen - s - c, n + nlen - s - c, c) != 0)
			break;
	}
	while (s < min - p && o[olen - s - 1] == n[nlen - s - 1])
		s++;
	/*
	 * Widen to sections whose first byte and the newline before it lie
	 * in the common part, so they start at the same place in both.
	 */
	for (q = p; q > 0 && !section_at(n, q - 1); q--)
		;
	*at = q > 0 ? q - 1 : 0;
	for (q = nlen - s + 1; q < nlen && !section_at(n, q); q++)
		;
	*tail = q < nlen ? nlen - q : 0;
}

static void
parsed_free(struct parsed *c)
{
	free(c->copy);
	free(c->skel);
	free(c->srv);
	memset(c, 0, sizeof(*c));
}

/*
 * Split a rendered configuration into its skeleton and its servers.  Only
 * renderd's own output is ever parsed here: sections start at column 0,
 * their lines with a tab.
 */
static int
parse(struct parsed *c, const char *text, size_t len)
{
	char *line, *next, *section = NULL, *name, *args, *sni = NULL;
	size_t cap = 0, i, n;
	struct server *ns;

	memset(c, 0, sizeof(*c));
	if ((c->copy = malloc(len + 1)) == NULL ||
	    (c->skel = malloc(len + 1)) == NULL)
		fatal("parse");
	memcpy(c->copy, text, len);
	c->copy[len] = '\0';
	for (line = c->copy; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (*line != '\t' && *line != '#' && *line != '\0') {
			section = line;
			sni = NULL;
			if (strncmp(line, "backend ", 8) == 0)
				section = line + 8;
		}
		if (section != NULL && strncmp(line, "\tserver ", 8) == 0 &&
		    section != line) {
			name = line + 8;
			if ((args = strchr(name, ' ')) == NULL)
				goto bad;
			*args++ = '\0';
			if (c->nsrv == cap) {
				cap = cap ? cap * 2 : 256;
				if ((ns = reallocarray(c->srv, cap,
				    sizeof(*ns))) == NULL)
					fatal("parse");
				c->srv = ns;
			}
			c->srv[c->nsrv++] = (struct server){ section, name,
			    args, sni };
			continue;
		}
		if (strncmp(line, "\t# sni ", 7) == 0)
			sni = line + 7;
		if (strncmp(line, "\t#", 2) == 0)
			continue;	/* what a route is, for people only */
		n = strlen(line);
		memcpy(c->skel + c->skellen, line, n);
		c->skellen += n;
		c->skel[c->skellen++] = '\n';
	}
	c->skel[c->skellen] = '\0';
	/* renderd's order is usually sorted already: check before sorting */
	for (i = 1; i < c->nsrv; i++)
		if (cmp_server(&c->srv[i - 1], &c->srv[i]) > 0) {
			qsort(c->srv, c->nsrv, sizeof(*c->srv), cmp_server);
			break;
		}
	return 0;
 bad:
	parsed_free(c);
	return -1;
}

/*
 * The index of the next backend's first server in c.  A backend's servers
 * are adjacent (c->srv is sorted) and share one pointer into the copy.
 */
static size_t
next_backend(const struct parsed *c, size_t i)
{
	const char *b = c->srv[i].backend;

	while (++i < c->nsrv && c->srv[i].backend == b)
		;
	return i;
}

/* The map key of a server's backend, or NULL when no map routes to it. */
static const char *
map_key(const struct parsed *c, const struct server *s, const char **map)
{
	if (c->ports_map != NULL && s->backend[0] == 'p' &&
	    s->backend[1] >= '0' && s->backend[1] <= '9') {
		*map = c->ports_map;
		return s->backend + 1;
	}
	if (c->api_map != NULL && s->sni != NULL) {
		*map = c->api_map;
		return s->sni;
	}
	return NULL;
}

/* A backend in both whose map key changed: a slot that changed hands. */
static int
rekeyed(const struct parsed *o, const struct parsed *n)
{
	const struct server *a, *b;
	size_t i = 0, j = 0;
	int c;

	while (i < o->nsrv && j < n->nsrv) {
		a = &o->srv[i];
		b = &n->srv[j];
		c = strcmp(a->backend, b->backend);
		if (c == 0 && (a->sni == NULL || b->sni == NULL ?
		    a->sni != b->sni : strcmp(a->sni, b->sni) != 0))
			return 1;
		if (c <= 0)
			i = next_backend(o, i);
		if (c >= 0)
			j = next_backend(n, j);
	}
	return 0;
}

/* A map file's temporary twin, open for writing; NULL when none is named. */
static FILE *
map_open(const char *path)
{
	char tmp[PATH_MAX + 8];

	if (*path == '\0')
		return NULL;
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	return fsafe_fopen(tmp, 0600);
}

static int
map_close(FILE *fp, const char *path, int rc)
{
	char tmp[PATH_MAX + 8];

	if (fp == NULL)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	if (fflush(fp) != 0 || fsync(fileno(fp)) == -1)
		rc = -1;
	if (fclose(fp) != 0)
		rc = -1;
	if (rc == 0 && rename(tmp, path) == -1)
		rc = -1;
	return rc;
}

/*
 * Write the map files atomically: each backend with servers, by its key,
 * in the text's order.  One pass over the lines, no parse.
 */
int
hap_write_maps(const char *text)
{
	struct parsed keys = { 0 };
	struct maps m;
	const char *line, *end, *next, *b = NULL, *key, *map;
	char name[512], sni[256];
	struct server srv;
	FILE *pf, *af;
	int rc = 0, done = 0;

	frontend_maps(text, &m);
	keys.ports_map = m.ports[0] != '\0' ? m.ports : NULL;
	keys.api_map = m.api[0] != '\0' ? m.api : NULL;
	pf = map_open(m.ports);
	af = map_open(m.api);
	if ((m.ports[0] != '\0' && pf == NULL) ||
	    (m.api[0] != '\0' && af == NULL))
		rc = -1;
	for (line = text; rc == 0 && *line != '\0'; line = next) {
		end = line + strcspn(line, "\n");
		next = end + (*end == '\n');
		if (section_at(line, 0)) {
			b = strncmp(line, "backend ", 8) == 0 ? line + 8 : NULL;
			done = 0;
			sni[0] = '\0';
		}
		if (b != NULL && strncmp(line, "\t# sni ", 7) == 0)
			snprintf(sni, sizeof(sni), "%.*s", (int)(end - line - 7),
			    line + 7);
		if (b == NULL || done || strncmp(line, "\tserver ", 8) != 0)
			continue;
		done = 1;	/* one entry a backend */
		snprintf(name, sizeof(name), "%.*s", (int)(strcspn(b, "\n")),
		    b);
		srv = (struct server){ name, NULL, NULL,
		    sni[0] != '\0' ? sni : NULL };
		if ((key = map_key(&keys, &srv, &map)) == NULL)
			continue;
		fprintf(map == m.ports ? pf : af, "%s %s\n", key, name);
	}
	rc = map_close(pf, m.ports, rc);
	rc = map_close(af, m.api, rc);
	if (rc == -1)
		log_warn("writing the maps");
	return rc;
}

/* The runtime API, in prompt mode: one connection for a whole update. */

struct cli {
	int	fd;
	char	buf[8192];
};

static int
cli_read(struct cli *cl, char *out, size_t outlen)
{
	struct pollfd pfd = { cl->fd, POLLIN, 0 };
	size_t n = 0;
	ssize_t r;

	/* each answer ends with the prompt: "\n> " */
	for (;;) {
		if (n >= 3 && memcmp(cl->buf + n - 3, "\n> ", 3) == 0)
			break;
		if (n == sizeof(cl->buf) - 1) {
			/*
			 * A long answer: keep its tail, and with it the start
			 * of a prompt that straddles the wrap.
			 */
			memmove(cl->buf, cl->buf + n - 2, 2);
			n = 2;
		}
		if (poll(&pfd, 1, CLI_TIMEOUT_MS) != 1)
			return -1;
		if ((r = read(cl->fd, cl->buf + n, sizeof(cl->buf) - 1 - n)) <=
		    0)
			return -1;
		n += (size_t)r;
	}
	n -= 3;
	while (n > 0 && (cl->buf[n - 1] == '\n' || cl->buf[n - 1] == ' '))
		n--;
	if (n >= outlen)
		n = outlen - 1;		/* the start says what went wrong */
	memcpy(out, cl->buf, n);
	out[n] = '\0';
	return 0;
}

static int
cli_open(struct cli *cl, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char junk[64];

	if (strlen(path) >= sizeof(sun.sun_path))
		return -1;
	strcpy(sun.sun_path, path);
	if ((cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(cl->fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    write(cl->fd, "prompt\n", 7) != 7 ||
	    cli_read(cl, junk, sizeof(junk)) == -1) {
		close(cl->fd);
		return -1;
	}
	return 0;
}

/*
 * One command; 0 when HAProxy answered as it does on success (nothing, or
 * one of its confirmations), -1 with its answer in err.
 */
static int
cli_do(struct cli *cl, char *err, size_t errlen, const char *fmt, ...)
{
	char cmd[1024], out[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd) - 1)
		return -1;
	cmd[n++] = '\n';
	if (write(cl->fd, cmd, (size_t)n) != n ||
	    cli_read(cl, out, sizeof(out)) == -1) {
		snprintf(err, errlen, "runtime API: no answer to %.*s",
		    n - 1, cmd);
		return -1;
	}
	if (out[0] == '\0' || strcmp(out, "New server registered.") == 0 ||
	    strcmp(out, "Server deleted.") == 0)
		return 0;
	snprintf(err, errlen, "runtime API: %.*s: %s", n - 1, cmd, out);
	return -1;
}

static int
is_draining(const char *key, size_t *at)
{
	size_t i;

	for (i = 0; i < ndraining; i++)
		if (strcmp(draining[i], key) == 0) {
			*at = i;
			return 1;
		}
	return 0;
}

static void
undrain(size_t i)
{
	free(draining[i]);
	draining[i] = draining[--ndraining];
}

/* Out of service, and deleted once its last connection is gone. */
static int
srv_remove(struct cli *cl, const char *backend, const char *name, char *err,
    size_t errlen)
{
	char key[512], why[256];
	size_t at;

	snprintf(key, sizeof(key), "%s/%s", backend, name);
	if (cli_do(cl, err, errlen, "set server %s state maint", key) == -1)
		return -1;
	if (cli_do(cl, why, sizeof(why), "del server %s", key) == 0)
		return 0;
	if (!is_draining(key, &at)) {
		if (ndraining == DRAIN_MAX) {
			snprintf(err, errlen, "too many servers draining");
			return -1;
		}
		if ((draining[ndraining] = strdup(key)) == NULL)
			fatal("drain");
		ndraining++;
	}
	return 0;
}

/* "weight N" in a server's arguments, or 1. */
static unsigned
weight_of(const char *args)
{
	const char *w = strstr(args, " weight ");

	return w != NULL ? (unsigned)strtoul(w + 8, NULL, 10) : 1;
}

static int
srv_add(struct cli *cl, const struct server *s, char *err, size_t errlen)
{
	char key[512], why[256];
	size_t at;

	snprintf(key, sizeof(key), "%s/%s", s->backend, s->name);
	if (is_draining(key, &at)) {
		/* still there from before, in maintenance: bring it back */
		undrain(at);
		if (cli_do(cl, why, sizeof(why), "del server %s", key) == -1)
			return cli_do(cl, err, errlen, "set server %s weight "
			    "%u", key, weight_of(s->args)) == -1 ? -1 :
			    cli_do(cl, err, errlen, "set server %s state ready",
			    key);
	}
	if (cli_do(cl, err, errlen, "add server %s %s", key, s->args) == -1 ||
	    cli_do(cl, err, errlen, "enable server %s", key) == -1)
		return -1;
	if (strstr(s->args, " check") != NULL &&
	    cli_do(cl, err, errlen, "enable health %s", key) == -1)
		return -1;
	return 0;
}

/* The arguments but the weight are the same: a weight can be set live. */
static int
same_but_weight(const char *a, const char *b)
{
	const char *wa = strstr(a, " weight "), *wb = strstr(b, " weight ");
	size_t la, lb;

	if (wa == NULL || wb == NULL)
		return strcmp(a, b) == 0;
	la = (size_t)(wa - a);
	lb = (size_t)(wb - b);
	wa += 8 + strspn(wa + 8, "0123456789");
	wb += 8 + strspn(wb + 8, "0123456789");
	return la == lb && memcmp(a, b, la) == 0 && strcmp(wa, wb) == 0;
}

/*
 * Map changes, one merged pass over both: add = 1 for the keys of the
 * backends with servers in to and none in from; 0 to delete them.
 */
static int
maps_change(struct cli *cl, const struct parsed *from, const struct parsed *to,
    int add, char *err, size_t errlen)
{
	const struct server *b;
	const char *key, *map;
	size_t i = 0, j = 0;
	int c;

	while (j < to->nsrv) {
		b = &to->srv[j];
		c = i == from->nsrv ? 1 : strcmp(from->srv[i].backend,
		    b->backend);
		if (c <= 0)
			i = next_backend(from, i);
		if (c < 0)
			continue;
		j = next_backend(to, j);
		if (c == 0 || (key = map_key(to, b, &map)) == NULL)
			continue;
		if (add && cli_do(cl, err, errlen, "add map %s %s %s", map,
		    key, b->backend) == -1)
			return -1;
		if (!add && cli_do(cl, err, errlen, "del map %s %s", map,
		    key) == -1)
			return -1;
	}
	return 0;
}

/*
 * One pass over the servers of o and n, both sorted: adding (the servers
 * new in n, and new weights), or removing (the servers gone from o).  0,
 * 1 when a server changed more than its weight (a reload), -1 on error.
 */
static int
servers_change(struct cli *cl, const struct parsed *o, const struct parsed *n,
    int adding, char *err, size_t errlen)
{
	const struct server *a, *b;
	size_t i = 0, j = 0;
	int c;

	while (i < o->nsrv || j < n->nsrv) {
		c = i == o->nsrv ? 1 : j == n->nsrv ? -1 :
		    cmp_server(&o->srv[i], &n->srv[j]);
		a = &o->srv[i];
		b = &n->srv[j];
		if (c < 0) {
			if (!adding && srv_remove(cl, a->backend, a->name, err,
			    errlen) == -1)
				return -1;
			i++;
			continue;
		}
		if (c > 0) {
			if (adding && srv_add(cl, b, err, errlen) == -1)
				return -1;
			j++;
			continue;
		}
		if (adding && strcmp(a->args, b->args) != 0) {
			if (!same_but_weight(a->args, b->args))
				return 1;
			if (cli_do(cl, err, errlen, "set server %s/%s weight %u",
			    b->backend, b->name, weight_of(b->args)) == -1)
				return -1;
		}
		i++;
		j++;
	}
	return 0;
}

int
hap_update(const char *sock, const char *old, const char *new, char *err,
    size_t errlen)
{
	struct parsed o, n;
	struct maps m;
	struct cli cl;
	size_t olen = strlen(old), nlen = strlen(new), at, tail;
	int rc = -1;

	frontend_maps(new, &m);
	if (m.ports[0] == '\0' || m.api[0] == '\0')
		return 1;	/* not the skeleton renderd writes: a reload */
	changed(old, olen, new, nlen, &at, &tail);
	if (parse(&o, old + at, olen - tail - at) == -1)
		return 1;
	if (parse(&n, new + at, nlen - tail - at) == -1) {
		parsed_free(&o);
		return 1;
	}
	o.ports_map = n.ports_map = m.ports;
	o.api_map = n.api_map = m.api;
	if (o.skellen != n.skellen ||
	    memcmp(o.skel, n.skel, o.skellen) != 0 || rekeyed(&o, &n)) {
		rc = 1;		/* not only servers and keys: a reload */
		goto done;
	}
	if (cli_open(&cl, sock) == -1) {
		snprintf(err, errlen, "runtime API %s: %s", sock,
		    strerror(errno));
		goto done;
	}
	/* map keys that go, first: no new connection for what leaves */
	if (maps_change(&cl, &n, &o, 0, err, errlen) == -1)
		goto out;
	/*
	 * Servers that come, then servers that go: a backend re-pointed
	 * from one address to another is never empty in between.
	 */
	if ((rc = servers_change(&cl, &o, &n, 1, err, errlen)) != 0 ||
	    (rc = servers_change(&cl, &o, &n, 0, err, errlen)) != 0)
		goto out;
	rc = -1;
	/* and the keys that appear, last: their servers are in place */
	if (maps_change(&cl, &o, &n, 1, err, errlen) == -1)
		goto out;
	rc = 0;
 out:
	close(cl.fd);
 done:
	parsed_free(&o);
	parsed_free(&n);
	return rc;
}

void
hap_drain(const char *sock)
{
	char err[256];
	struct cli cl;
	size_t i;

	if (ndraining == 0 || cli_open(&cl, sock) == -1)
		return;
	for (i = 0; i < ndraining; )
		if (cli_do(&cl, err, sizeof(err), "del server %s",
		    draining[i]) == 0)
			undrain(i);
		else
			i++;
	close(cl.fd);
}

void
hap_forget_drains(void)
{
	while (ndraining > 0)
		undrain(ndraining - 1);
}
