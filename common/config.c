/*
 * portico — configuration.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "fsafe.h"
#include "event.h"
#include "hash.h"
#include "log.h"
#include "valid.h"

enum ckind {
	CK_STR,			/* free text: paths, ids */
	CK_SECRET,		/* like CK_STR, never printed */
	CK_UINT,
	CK_PORTS,		/* a port set: "lo-hi, p, ..." */
	CK_DOMAIN,
	CK_IP,
	CK_URL,			/* https:// only: secrets go over it */
	CK_ENDPOINT,		/* ipc://, or tcp:// with [bus] keys */
	CK_BACKEND,
	CK_KIND,
	CK_PATH,		/* absolute, and safe to print in a proxy config */
	CK_USER,		/* a user name, safe to print in a proxy config */
	CK_DIRS,		/* absolute paths, comma-separated */
	CK_LABELS,		/* DNS labels, comma-separated */
	CK_NETS,		/* address ranges: "10.0.0.0/8, fd00::/8" */
	CK_LOGFMT,		/* text, logfmt */
	CK_LEVEL,		/* info, debug */
	CK_HOSTPORT,		/* "IP:PORT", "[IP6]:PORT", or "": off */
};

/* The proxy kinds, and where Debian puts their binary. */
static const struct {
	const char	*kind;
	const char	*binary;
} kinds[] = {
	{ "haproxy",	"/usr/sbin/haproxy" },
	{ "nginx",	"/usr/sbin/nginx" },
	{ "envoy",	"/usr/bin/envoy" },	/* not run by portico: see applyd */
};

struct ckey {
	const char	*section;	/* "proxy", "cluster": [proxy.NAME]... */
	const char	*key;
	enum ckind	 kind;
	size_t		 off;		/* in struct config, or proxy_conf */
	size_t		 size;
	unsigned	 min, max;
	const char	*def;
};

#define C(s, k, kind, m, min, max, def) \
	{ s, k, kind, offsetof(struct config, m), \
	    sizeof(((struct config *)0)->m), min, max, def }
#define P(k, kind, m, min, max, def) \
	{ "proxy", k, kind, offsetof(struct proxy_conf, m), \
	    sizeof(((struct proxy_conf *)0)->m), min, max, def }
#define K(k, kind, m, min, max, def) \
	{ "cluster", k, kind, offsetof(struct cluster_conf, m), \
	    sizeof(((struct cluster_conf *)0)->m), min, max, def }

static const struct ckey ckeys[] = {
	C("portico", "domain", CK_DOMAIN, domain, 0, 0, NULL),
	C("portico", "run_dir", CK_PATH, run_dir, 0, 0, "/run/portico"),
	C("portico", "listen", CK_IP, listen, 0, 0, "0.0.0.0"),
	C("portico", "api_port", CK_UINT, api_port, 1, 65535, "443"),
	C("portico", "ports", CK_PORTS, ports, 1024, 65535, NULL),
	C("portico", "reserved", CK_PORTS, reserved, 1, 65535, ""),
	C("portico", "quarantine", CK_UINT, quarantine, 0, 86400 * 30, "600"),
	C("portico", "allow_shrink", CK_UINT, allow_shrink, 0, 1, "0"),
	C("portico", "log_format", CK_LOGFMT, log_format, 0, 0, "text"),
	C("portico", "log_level", CK_LEVEL, log_level, 0, 0, "info"),
	C("store", "path", CK_STR, store, 0, 0, "/var/lib/portico"),
	C("store", "map_size_mb", CK_UINT, map_size_mb, 1, 1u << 20, "64"),
	C("store", "compact_records", CK_UINT, compact_records, 1000,
	    1000000, "200000"),
	C("store", "compact_age", CK_UINT, compact_age, 0, 86400 * 365,
	    "604800"),
	C("store", "compact_mb", CK_UINT, compact_mb, 1, 1u << 20, "64"),
	C("store", "proof_key", CK_STR, proof_key, 0, 0, ""),
	C("store", "adopt_wait", CK_UINT, adopt_wait, 1, 3600, "30"),
	C("limits", "allow_backends", CK_NETS, allow_backends, 0, 0, ""),
	C("limits", "routes_per_cluster", CK_UINT, lim_routes, 0, 1000000,
	    "1000"),
	C("limits", "ports_per_cluster", CK_UINT, lim_ports, 0, 65535, "500"),
	C("limits", "ports_per_namespace", CK_UINT, lim_ports_ns, 0, 65535,
	    "0"),
	C("limits", "backends_per_route", CK_UINT, lim_backends_route, 0,
	    EV_MAX_BACKENDS, "1024"),
	C("limits", "backends_per_cluster", CK_UINT, lim_backends, 0,
	    100000000, "16384"),
	C("limits", "bytes_per_cluster", CK_UINT, lim_bytes, 0, 1u << 30,
	    "2097152"),
	C("limits", "bytes_total", CK_UINT, lim_bytes_total, 0, 1u << 30,
	    "8388608"),
	C("limits", "sni_per_cluster", CK_UINT, lim_sni, 0, 100000, "256"),
	C("pks", "url", CK_URL, pks_url, 0, 0, ""),
	C("pks", "uaa_url", CK_URL, uaa_url, 0, 0, ""),
	C("pks", "client_id", CK_STR, pks_client_id, 0, 0, ""),
	C("pks", "client_secret", CK_SECRET, pks_client_secret, 0, 0, ""),
	C("pks", "username", CK_STR, pks_username, 0, 0, ""),
	C("pks", "password", CK_SECRET, pks_password, 0, 0, ""),
	C("pks", "ca_file", CK_STR, pks_ca, 0, 0, ""),
	C("pks", "poll_interval", CK_UINT, pks_poll, 1, 3600, "10"),
	C("kubeconfigs", "dir", CK_STR, kubeconfig_dir, 0, 0, ""),
	C("kubeconfigs", "poll_interval", CK_UINT, kubeconfig_poll, 1, 3600,
	    "10"),
	C("kubeconfigs", "allow_dirs", CK_DIRS, kubeconfig_allow, 0, 0, ""),
	C("capi", "kubeconfig", CK_STR, capi_kubeconfig, 0, 0, ""),
	C("capi", "poll_interval", CK_UINT, capi_poll, 1, 3600, "10"),
	C("capi", "secret_interval", CK_UINT, capi_secret_poll, 1, 86400,
	    "60"),
	C("capi", "namespaces", CK_LABELS, capi_namespaces, 0, 0, ""),
	C("capi", "max_clusters", CK_UINT, capi_max_clusters, 1, 100000,
	    "1000"),
	C("capi", "namespace_in_host", CK_UINT, capi_ns_host, 0, 1, "0"),
	C("clusters", "backend", CK_BACKEND, backend, 0, 0, "nodeport"),
	C("clusters", "watch_timeout", CK_UINT, watch_timeout, 5, 3600, "300"),
	C("clusters", "watch_idle", CK_UINT, watch_idle, 5, 3600, "90"),
	C("clusters", "shards", CK_UINT, shards, 1, HASH_SHARDS_MAX, "1"),
	C("metrics", "watcherd", CK_HOSTPORT, metrics_watcherd, 0, 0, ""),
	C("metrics", "allocd", CK_HOSTPORT, metrics_allocd, 0, 0, ""),
	C("bus", "alloc_in", CK_ENDPOINT, alloc_in, 0, 0, ""),
	C("bus", "alloc_pub", CK_ENDPOINT, alloc_pub, 0, 0, ""),
	C("bus", "alloc_sync", CK_ENDPOINT, alloc_sync, 0, 0, ""),
	C("bus", "keys", CK_STR, bus_keys, 0, 0, ""),
	C("bus", "bind", CK_STR, bus_bind, 0, 0, ""),
	P("kind", CK_KIND, kind, 0, 0, "haproxy"),
	P("binary", CK_STR, binary, 0, 0, NULL),	/* by kind */
	P("listen", CK_IP, listen, 0, 0, NULL),		/* [portico] listen */
	P("config", CK_STR, config, 0, 0, ""),
	P("pub", CK_ENDPOINT, pub, 0, 0, ""),
	P("sync", CK_ENDPOINT, sync, 0, 0, ""),
	P("hard_stop_after", CK_UINT, hard_stop_after, 1, 86400, "30"),
	P("max_reloads", CK_UINT, max_reloads, 1, 100, "3"),
	P("maxconn", CK_UINT, maxconn, 16, 1000000, "4096"),
	P("fd_limit", CK_UINT, fd_limit, 1024, 1u << 24, "20000"),
	P("check_rate", CK_UINT, check_rate, 1, 100000, "20"),
	P("live", CK_UINT, live, 0, 1, "1"),
	P("user", CK_USER, user, 0, 0, NULL),		/* by kind, if it exists */
	P("renderd_metrics", CK_HOSTPORT, renderd_metrics, 0, 0, ""),
	P("applyd_metrics", CK_HOSTPORT, applyd_metrics, 0, 0, ""),
	P("stats_listen", CK_HOSTPORT, stats_listen, 0, 0, ""),
	K("backend", CK_BACKEND, backend, 0, 0, NULL),	/* [clusters] backend */
};

/* Sections with a name, [proxy.NAME] and [cluster.NAME]: one struct each. */
static int
named_section(const char *section)
{
	return strcmp(section, "proxy") == 0 || strcmp(section, "cluster") == 0;
}

struct parse {
	struct config	*conf;
	FILE		*fp;
	int		 line;
	char		*err;
	size_t		 errlen;
	unsigned char	 seen[sizeof(ckeys) / sizeof(ckeys[0])];
	unsigned char	 pseen[CONF_MAX_PROXIES][sizeof(ckeys) / sizeof(ckeys[0])];
};

static int
set_error(struct parse *ps, const char *key, const char *fmt, const char *v)
{
	char q[128];

	if (ps->err[0] != '\0')
		return 0;		/* keep the first */
	snprintf(ps->err, ps->errlen, "%s:%d: %s: ", ps->conf->path, ps->line,
	    key);
	if (v != NULL)
		log_quote(q, sizeof(q), v, strlen(v));
	snprintf(ps->err + strlen(ps->err), ps->errlen - strlen(ps->err),
	    fmt, v != NULL ? q : "");
	return 0;
}

static int
parse_uint(const char *v, unsigned min, unsigned max, unsigned *out)
{
	unsigned long n;
	char *end;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return -1;
	*out = (unsigned)n;
	return 0;
}

static const char *
kind_binary(const char *kind)
{
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i].kind, kind) == 0)
			return kinds[i].binary;
	return NULL;
}

/*
 * The run folder is printed into proxy configurations (pid files, logs,
 * sockets, HAProxy's map(<file>) converter): an absolute path of
 * characters that mean nothing to HAProxy's or nginx's parser (no blanks,
 * quotes, ';', '#', '{', '$', '\\', nor ',' and ')', which end the map
 * converter's file argument).
 */
static int
safe_path(const char *v)
{
	if (*v != '/')
		return 0;
	for (; *v != '\0'; v++)
		if (!(*v >= 'a' && *v <= 'z') && !(*v >= 'A' && *v <= 'Z') &&
		    !(*v >= '0' && *v <= '9') && strchr("/._-+@:=", *v) == NULL)
			return 0;
	return 1;
}

/*
 * "IP:PORT" or "[IP6]:PORT" (port 0: any free one), or "" for off.  It may
 * be printed into a proxy configuration (stats_listen): nothing else.
 */
static int
host_port(const char *v)
{
	char host[64];
	const char *colon = strrchr(v, ':');
	size_t hl;
	unsigned port;

	if (*v == '\0')
		return 1;
	if (colon == NULL || parse_uint(colon + 1, 0, 65535, &port) == -1)
		return 0;
	hl = (size_t)(colon - v);
	if (v[0] == '[' && hl >= 2 && v[hl - 1] == ']') {
		v++;
		hl -= 2;
	} else if (memchr(v, ':', hl) != NULL)
		return 0;		/* IPv6 goes in brackets */
	if (hl == 0 || hl >= sizeof(host))
		return 0;
	memcpy(host, v, hl);
	host[hl] = '\0';
	return valid_ip(host);
}

/*
 * tcp://HOST:PORT, as libzmq takes it to bind or connect: HOST an IP
 * address ([IPv6] in brackets), a DNS name (a Kubernetes Service's), or
 * * for every interface; PORT 1-65535.
 */
static int
tcp_endpoint(const char *v)
{
	char host[256];
	const char *colon;
	unsigned port;
	size_t hl;

	if (strncmp(v, "tcp://", 6) != 0)
		return 0;
	v += 6;
	if ((colon = strrchr(v, ':')) == NULL ||
	    parse_uint(colon + 1, 1, 65535, &port) == -1)
		return 0;
	hl = (size_t)(colon - v);
	if (hl == 0 || hl >= sizeof(host))
		return 0;
	memcpy(host, v, hl);
	host[hl] = '\0';
	if (host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		return valid_ip(host + 1);
	}
	return strcmp(host, "*") == 0 || valid_ip(host) ||
	    valid_dns_subdomain(host);
}

/* "/a, /b/c": each item of a comma-separated list is an absolute path. */
static int
abs_paths(const char *v)
{
	for (;;) {
		v += strspn(v, ", ");
		if (*v == '\0')
			return 1;
		if (*v != '/')
			return 0;
		v += strcspn(v, ",");
	}
}

/* "a, b-c": DNS labels, each at most 63, comma- or blank-separated. */
static int
dns_labels(const char *v)
{
	char l[64];
	size_t n;

	for (;;) {
		v += strspn(v, ", ");
		if (*v == '\0')
			return 1;
		n = strcspn(v, ", ");
		if (n >= sizeof(l))
			return 0;
		memcpy(l, v, n);
		l[n] = '\0';
		if (!valid_dns_label(l))
			return 0;
		v += n;
	}
}

static int
check_value(const struct ckey *k, const char *v, void *dst)
{
	unsigned *u = dst;

	switch (k->kind) {
	case CK_UINT:
		return parse_uint(v, k->min, k->max, u);
	case CK_PORTS:
		return ports_parse(dst, v, k->min, k->max);
	case CK_NETS:
		return addr_nets_parse(v, dst);
	case CK_DOMAIN:
		if (!valid_dns_subdomain(v))
			return -1;
		break;
	case CK_IP:
		if (!valid_ip(v))
			return -1;
		break;
	case CK_URL:
		if (*v != '\0' && strncmp(v, "https://", 8) != 0)
			return -1;
		if (!valid_text(v))
			return -1;
		break;
	case CK_ENDPOINT:
		/*
		 * ipc:// under the 0700 run folder, or tcp://HOST:PORT
		 * (which check_bus then requires CURVE keys for): nothing
		 * else libzmq speaks has a way to know who is on the other
		 * end.
		 */
		if (*v != '\0' && (strncmp(v, "ipc://", 6) != 0 ||
		    v[6] == '\0') && !tcp_endpoint(v))
			return -1;
		break;
	case CK_BACKEND:
		if (strcmp(v, "nodeport") != 0 && strcmp(v, "endpoints") != 0)
			return -1;
		break;
	case CK_KIND:
		if (kind_binary(v) == NULL)
			return -1;
		break;
	case CK_LOGFMT:
		if (log_format_parse(v) == -1)
			return -1;
		break;
	case CK_LEVEL:
		if (strcmp(v, "info") != 0 && strcmp(v, "debug") != 0)
			return -1;
		break;
	case CK_PATH:
		if (!safe_path(v))
			return -1;
		break;
	case CK_USER:
		if (!config_user_ok(v))
			return -1;
		break;
	case CK_DIRS:
		if (!valid_text(v) || !abs_paths(v))
			return -1;
		break;
	case CK_HOSTPORT:
		if (!host_port(v))
			return -1;
		break;
	case CK_LABELS:
		if (!dns_labels(v))
			return -1;
		break;
	case CK_STR:
	case CK_SECRET:
		break;
	}
	if (strlen(v) >= k->size)
		return -1;
	strcpy(dst, v);
	return 0;
}

static const char *
kind_help(const struct ckey *k)
{
	switch (k->kind) {
	case CK_UINT:		return "not a number in range: %s";
	case CK_PORTS:		return "not ports LO-HI[, PORT | LO-HI ...] in "
				    "range, without overlaps: %s";
	case CK_DOMAIN:		return "not a DNS name: %s";
	case CK_IP:		return "not an IP address: %s";
	case CK_URL:		return "not an https:// URL (secrets travel "
				    "only over verified TLS): %s";
	case CK_ENDPOINT:	return "not ipc://PATH or tcp://HOST:PORT: %s";
	case CK_BACKEND:	return "unknown backend mode (nodeport, "
				    "endpoints): %s";
	case CK_KIND:		return "unknown proxy kind (haproxy, nginx, "
				    "envoy): %s";
	case CK_USER:		return "not a user name (letters, digits, "
				    "._-): %s";
	case CK_PATH:		return "not an absolute path of letters, digits "
				    "and /._-+@:=: %s";
	case CK_DIRS:		return "not absolute paths, comma-separated: %s";
	case CK_LABELS:		return "not DNS labels, comma-separated: %s";
	case CK_NETS:		return "not address ranges ADDR[/BITS][, ...] "
				    "(host bits zero, at most 32): %s";
	case CK_LOGFMT:		return "unknown log format (text, logfmt): %s";
	case CK_LEVEL:		return "unknown log level (info, debug): %s";
	case CK_HOSTPORT:	return "not IP:PORT or [IPv6]:PORT: %s";
	default:		return "too long: %s";
	}
}

static struct proxy_conf *
proxy_section(struct parse *ps, const char *section)
{
	struct config *c = ps->conf;
	const char *name = section + strlen("proxy.");
	int i;

	for (i = 0; i < c->nproxies; i++)
		if (strcmp(c->proxies[i].name, name) == 0)
			return &c->proxies[i];
	if (!valid_token(name) || c->nproxies == CONF_MAX_PROXIES)
		return NULL;
	strcpy(c->proxies[c->nproxies].name, name);
	return &c->proxies[c->nproxies++];
}

/*
 * A cluster's name as PKS or the kubeconfig folder gives it: a DNS label,
 * as watcherd requires of every cluster it routes.
 */
static struct cluster_conf *
cluster_section(struct parse *ps, const char *section)
{
	struct config *c = ps->conf;
	const char *name = section + strlen("cluster.");
	int i;

	for (i = 0; i < c->nclusters; i++)
		if (strcmp(c->clusters[i].name, name) == 0)
			return &c->clusters[i];
	if (!valid_dns_label(name) || c->nclusters == CONF_MAX_CLUSTERS)
		return NULL;
	strcpy(c->clusters[c->nclusters].name, name);
	return &c->clusters[c->nclusters++];
}

static int
handler(void *user, const char *section, const char *key, const char *v)
{
	struct parse *ps = user;
	const struct ckey *k;
	struct proxy_conf *px = NULL;
	struct cluster_conf *cc = NULL;
	const char *sect = section;
	char *base = (char *)ps->conf;
	unsigned char *seen;
	size_t i;

	if (strncmp(section, "proxy.", 6) == 0) {
		if ((px = proxy_section(ps, section)) == NULL)
			return set_error(ps, section,
			    "bad proxy section name or too many proxies%s",
			    NULL);
		sect = "proxy";
		base = (char *)px;
	} else if (strncmp(section, "cluster.", 8) == 0) {
		if ((cc = cluster_section(ps, section)) == NULL)
			return set_error(ps, section, "not a cluster name (a "
			    "DNS label), or too many cluster sections%s",
			    NULL);
		sect = "cluster";
		base = (char *)cc;
	}
	for (i = 0; i < sizeof(ckeys) / sizeof(ckeys[0]); i++) {
		k = &ckeys[i];
		if (strcmp(k->section, sect) == 0 && strcmp(k->key, key) == 0)
			break;
	}
	if (i == sizeof(ckeys) / sizeof(ckeys[0]))
		return set_error(ps, key, "unknown key in [%s]", section);
	/* a key given twice: which one was meant is a guess we do not make */
	seen = px != NULL ? &ps->pseen[px - ps->conf->proxies][i] :
	    cc == NULL ? &ps->seen[i] : NULL;
	if (seen != NULL && *seen)
		return set_error(ps, key, "given twice in [%s]", section);
	if (check_value(k, v, base + k->off) == -1)
		return set_error(ps, key, kind_help(k), v);
	if (seen != NULL)
		*seen = 1;
	return 1;
}

/*
 * fgets that counts lines, so that errors can name theirs, and says so
 * plainly when a line is longer than libinih's buffer (it would otherwise
 * parse the two halves as two lines).
 */
static char *
reader(char *buf, int size, void *stream)
{
	struct parse *ps = stream;
	size_t len;
	int c;

	ps->line++;
	if (fgets(buf, size, ps->fp) == NULL)
		return NULL;
	len = strlen(buf);
	if (len > 0 && buf[len - 1] != '\n' && !feof(ps->fp)) {
		if (ps->err[0] == '\0')
			snprintf(ps->err, ps->errlen, "%s:%d: line is longer "
			    "than %d characters", ps->conf->path, ps->line,
			    size - 2);
		while ((c = fgetc(ps->fp)) != EOF && c != '\n')
			;
	}
	return buf;
}

static void
set_default(const struct ckey *k, char *base)
{
	if (k->def != NULL && check_value(k, k->def, base + k->off) == -1)
		fatalx("config: bad built-in default for %s", k->key);
}

static void
default_endpoint(char *dst, size_t len, const char *run_dir,
    const char *name)
{
	if (*dst == '\0')
		snprintf(dst, len, "ipc://%s/%s", run_dir, name);
}

/* Port sets. */

int
ports_contain(const struct port_set *s, unsigned p)
{
	unsigned i;

	for (i = 0; i < s->n; i++)
		if (p >= s->r[i].lo && p <= s->r[i].hi)
			return 1;
	return 0;
}

unsigned
ports_count(const struct port_set *s)
{
	unsigned i, n = 0;

	for (i = 0; i < s->n; i++)
		n += s->r[i].hi - s->r[i].lo + 1;
	return n;
}

unsigned
ports_nth(const struct port_set *s, unsigned k)
{
	unsigned i, w;

	for (i = 0; i < s->n; i++) {
		w = s->r[i].hi - s->r[i].lo + 1;
		if (k < w)
			return s->r[i].lo + k;
		k -= w;
	}
	return 0;
}

void
ports_format(const struct port_set *s, char *buf, size_t len)
{
	size_t o = 0;
	unsigned i;

	buf[0] = '\0';
	for (i = 0; i < s->n && o < len; i++)
		o += (size_t)(s->r[i].lo == s->r[i].hi ?
		    snprintf(buf + o, len - o, "%s%u", i ? ", " : "",
		    s->r[i].lo) :
		    snprintf(buf + o, len - o, "%s%u-%u", i ? ", " : "",
		    s->r[i].lo, s->r[i].hi));
}

static int
cmp_range(const void *x, const void *y)
{
	const unsigned *a = x, *b = y;

	return a[0] < b[0] ? -1 : a[0] > b[0];
}

int
ports_parse(struct port_set *s, const char *v, unsigned min, unsigned max)
{
	char item[32], *dash;
	const char *p = v;
	size_t n;
	unsigned i, lo, hi;

	memset(s, 0, sizeof(*s));
	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		n = strcspn(p, ", ");
		if (n >= sizeof(item) || s->n == CONF_MAX_RANGES)
			return -1;
		memcpy(item, p, n);
		item[n] = '\0';
		p += n;
		if ((dash = strchr(item, '-')) != NULL)
			*dash = '\0';
		if (parse_uint(item, min, max, &lo) == -1 || (dash != NULL &&
		    parse_uint(dash + 1, min, max, &hi) == -1))
			return -1;
		if (dash == NULL)
			hi = lo;
		if (lo > hi)
			return -1;
		s->r[s->n].lo = lo;
		s->r[s->n++].hi = hi;
	}
	qsort(s->r, s->n, sizeof(s->r[0]), cmp_range);
	for (i = 1; i < s->n; i++)
		if (s->r[i].lo <= s->r[i - 1].hi)
			return -1;
	return 0;
}

/*
 * Workload ports inside the kernel's ephemeral range collide with the
 * source ports of outgoing connections, unless the kernel reserves them
 * (net.ipv4.ip_local_reserved_ports).  Where /proc cannot be read, nothing
 * is checked.
 */
static int
check_ephemeral(const struct config *c, char *err, size_t errlen)
{
	static unsigned char kres[65536 / 8];
	unsigned elo, ehi, i, p, a, b;
	char buf[65536], *tok, *save = NULL;
	FILE *fp;
	size_t n;

	if ((fp = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) == NULL)
		return 0;
	n = fscanf(fp, "%u %u", &elo, &ehi);
	fclose(fp);
	if (n != 2)
		return 0;
	memset(kres, 0, sizeof(kres));
	if ((fp = fopen("/proc/sys/net/ipv4/ip_local_reserved_ports", "r"))) {
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[n] = '\0';
		for (tok = strtok_r(buf, ",\n", &save); tok != NULL;
		    tok = strtok_r(NULL, ",\n", &save)) {
			if (sscanf(tok, "%u-%u", &a, &b) != 2)
				b = a = (unsigned)strtoul(tok, NULL, 10);
			for (p = a; p <= b && p < 65536; p++)
				kres[p / 8] |= (unsigned char)(1 << (p % 8));
		}
	}
	for (i = 0; i < c->ports.n; i++)
		for (p = c->ports.r[i].lo; p <= c->ports.r[i].hi; p++)
			if (p >= elo && p <= ehi &&
			    !(kres[p / 8] & (1 << (p % 8))) &&
			    !ports_contain(&c->reserved, p)) {
				snprintf(err, errlen, "%s: [portico] ports: %u "
				    "lies in the kernel's ephemeral range "
				    "%u-%u; choose ports outside it, or list "
				    "them in net.ipv4.ip_local_reserved_ports",
				    c->path, p, elo, ehi);
				return -1;
			}
	return 0;
}

/*
 * Anyone who reaches a tcp:// endpoint could feed allocd a cluster or
 * applyd a configuration: tcp:// is accepted only with CURVE keys, which
 * the bus (zap.c) then requires on every tcp:// socket.
 */
static int
check_bus(const struct config *c, char *err, size_t errlen)
{
	char what[CONF_ENDPOINT + 160];
	const char *ep;
	int j;

	if (c->bus_bind[0] != '\0' && !valid_ip(c->bus_bind)) {
		snprintf(err, errlen, "%s: [bus] bind: not an IP address: %s",
		    c->path, c->bus_bind);
		return -1;
	}
	if (c->bus_keys[0] != '\0') {
		if (c->bus_keys[0] == '/')
			return 0;
		snprintf(err, errlen, "%s: [bus] keys: not an absolute path",
		    c->path);
		return -1;
	}
	what[0] = '\0';
	if (strncmp(ep = c->alloc_in, "tcp://", 6) == 0 ||
	    strncmp(ep = c->alloc_pub, "tcp://", 6) == 0 ||
	    strncmp(ep = c->alloc_sync, "tcp://", 6) == 0)
		snprintf(what, sizeof(what), "[bus] %s: %s", ep == c->alloc_in ?
		    "alloc_in" : ep == c->alloc_pub ? "alloc_pub" :
		    "alloc_sync", ep);
	for (j = 0; what[0] == '\0' && j < c->nproxies; j++)
		if (strncmp(ep = c->proxies[j].pub, "tcp://", 6) == 0 ||
		    strncmp(ep = c->proxies[j].sync, "tcp://", 6) == 0)
			snprintf(what, sizeof(what), "[proxy.%s] %s: %s",
			    c->proxies[j].name, ep == c->proxies[j].pub ?
			    "pub" : "sync", ep);
	if (what[0] == '\0')
		return 0;
	snprintf(err, errlen, "%s: %s is tcp:// but [bus] keys is not set "
	    "(a tcp:// endpoint needs CURVE keys: see porticoctl keygen)",
	    c->path, what);
	return -1;
}

/*
 * The password grant takes a user and a password together: one alone is a
 * typo or a half-finished edit, and falling back to client_credentials
 * would fail later with a 401 that names neither key.
 */
static int
check_user(const struct config *c, char *err, size_t errlen)
{
	const char *have, *missing;

	if ((c->pks_username[0] == '\0') == (c->pks_password[0] == '\0'))
		return 0;
	have = c->pks_username[0] != '\0' ? "username" : "password";
	missing = c->pks_username[0] != '\0' ? "password" : "username";
	snprintf(err, errlen, "%s: [pks] %s is set but %s is not (the "
	    "password grant needs both)", c->path, have, missing);
	return -1;
}

/*
 * The configuration names the binaries applyd runs: only its owner may
 * write it.  One that holds a PKS secret is read by portico alone: group
 * and others have no access to it at all (see fsafe_secret_mode).
 */
static int
check_file_mode(const struct config *c, const struct stat *st, char *err,
    size_t errlen)
{
	char what[PATH_MAX + 64];

	if (fsafe_owner_writes(st, c->path, err, errlen) == -1)
		return -1;
	if (c->pks_client_secret[0] == '\0' && c->pks_password[0] == '\0')
		return 0;
	snprintf(what, sizeof(what), "%s (it holds [pks] %s)", c->path,
	    c->pks_client_secret[0] != '\0' ? "client_secret" : "password");
	return fsafe_secret_mode(st, what, err, errlen);
}

int
config_load(const char *path, struct config *c, char *err, size_t errlen)
{
	struct parse ps;
	struct proxy_conf *px;
	struct stat st;
	char name[96], rundir[CONF_RUNDIR];
	size_t i;
	int j, rc, user_given;

	memset(c, 0, sizeof(*c));
	memset(&ps, 0, sizeof(ps));
	ps.conf = c;
	ps.err = err;
	ps.errlen = errlen;
	err[0] = '\0';
	if (strlen(path) >= sizeof(c->path)) {
		snprintf(err, errlen, "config path too long");
		return -1;
	}
	strcpy(c->path, path);
	if ((ps.fp = fopen(path, "r")) == NULL ||
	    fstat(fileno(ps.fp), &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (ps.fp != NULL)
			fclose(ps.fp);
		return -1;
	}
	rc = ini_parse_stream(reader, &ps, handler, &ps);
	fclose(ps.fp);
	if (err[0] != '\0')
		return -1;
	if (rc != 0) {
		snprintf(err, errlen, "%s:%d: syntax error", path, rc);
		return -1;
	}

	for (i = 0; i < sizeof(ckeys) / sizeof(ckeys[0]); i++) {
		if (named_section(ckeys[i].section) || ps.seen[i])
			continue;
		if (ckeys[i].def == NULL) {
			snprintf(err, errlen, "%s: [%s] %s is required", path,
			    ckeys[i].section, ckeys[i].key);
			return -1;
		}
		set_default(&ckeys[i], (char *)c);
	}
	memcpy(rundir, c->run_dir, sizeof(rundir));
	if (c->nproxies == 0) {
		strcpy(c->proxies[0].name, "haproxy");
		c->nproxies = 1;
	}
	/* proxy keys not given take their defaults (a 0 given stays 0) */
	for (j = 0; j < c->nproxies; j++) {
		px = &c->proxies[j];
		user_given = 1;
		for (i = 0; i < sizeof(ckeys) / sizeof(ckeys[0]); i++)
			if (strcmp(ckeys[i].section, "proxy") == 0 &&
			    !ps.pseen[j][i]) {
				set_default(&ckeys[i], (char *)px);
				if (strcmp(ckeys[i].key, "user") == 0)
					user_given = 0;
			}
		if (config_proxy_user(path, px, user_given, err, errlen) == -1)
			return -1;
		if (px->binary[0] == '\0')
			strcpy(px->binary, kind_binary(px->kind));
		if (px->listen[0] == '\0')
			strcpy(px->listen, c->listen);
		if (px->config[0] == '\0') {
			snprintf(name, sizeof(name), "%s.cfg", px->name);
			snprintf(px->config, sizeof(px->config), "%s/%s",
			    rundir, name);
		}
		snprintf(name, sizeof(name), "render-%s.pub", px->name);
		default_endpoint(px->pub, sizeof(px->pub), c->run_dir, name);
		snprintf(name, sizeof(name), "render-%s.sync", px->name);
		default_endpoint(px->sync, sizeof(px->sync), c->run_dir, name);
	}
	for (j = 0; j < c->nclusters; j++)
		if (c->clusters[j].backend[0] == '\0')
			strcpy(c->clusters[j].backend, c->backend);
	default_endpoint(c->alloc_in, sizeof(c->alloc_in), c->run_dir,
	    "alloc.in");
	default_endpoint(c->alloc_pub, sizeof(c->alloc_pub), c->run_dir,
	    "alloc.pub");
	default_endpoint(c->alloc_sync, sizeof(c->alloc_sync), c->run_dir,
	    "alloc.sync");

	if (c->pks_url[0] == '\0' && c->kubeconfig_dir[0] == '\0' &&
	    c->capi_kubeconfig[0] == '\0') {
		snprintf(err, errlen, "%s: no cluster source: set [pks] url, "
		    "[kubeconfigs] dir or [capi] kubeconfig", path);
		return -1;
	}
	if (c->pks_url[0] != '\0' && (c->uaa_url[0] == '\0' ||
	    c->pks_client_id[0] == '\0')) {
		snprintf(err, errlen, "%s: [pks] needs uaa_url and client_id",
		    path);
		return -1;
	}
	if (check_user(c, err, errlen) == -1)
		return -1;
	if (check_bus(c, err, errlen) == -1)
		return -1;
	if (check_file_mode(c, &st, err, errlen) == -1)
		return -1;
	c->port_lo = c->ports.r[0].lo;
	c->port_hi = c->ports.r[c->ports.n - 1].hi;
	if (ports_contain(&c->ports, c->api_port) &&
	    !ports_contain(&c->reserved, c->api_port)) {
		snprintf(err, errlen, "%s: [portico] api_port %u lies inside "
		    "the workload ports (reserve it, or move it)", path,
		    c->api_port);
		return -1;
	}
	if (check_ephemeral(c, err, errlen) == -1)
		return -1;
	return 0;
}

void
config_print(const struct config *c, FILE *fp)
{
	const char *last = "";
	const struct ckey *k;
	const char *base;
	size_t i;
	int j;

	for (i = 0; i < sizeof(ckeys) / sizeof(ckeys[0]); i++) {
		k = &ckeys[i];
		if (named_section(k->section))
			continue;
		if (strcmp(k->section, last) != 0) {
			fprintf(fp, "%s[%s]\n", *last ? "\n" : "", k->section);
			last = k->section;
		}
		base = (const char *)c + k->off;
		if (k->kind == CK_UINT)
			fprintf(fp, "%s = %u\n", k->key,
			    *(const unsigned *)(const void *)base);
		else if (k->kind == CK_PORTS) {
			char buf[CONF_MAX_RANGES * 12];

			ports_format((const struct port_set *)(const void *)
			    base, buf, sizeof(buf));
			fprintf(fp, "%s = %s\n", k->key, buf);
		}
		else if (k->kind == CK_NETS) {
			char buf[ADDR_MAX_NETS * 52];

			addr_nets_format((const struct addr_nets *)(const void *)
			    base, buf, sizeof(buf));
			fprintf(fp, "%s = %s\n", k->key, buf);
		}
		else if (k->kind == CK_SECRET)
			fprintf(fp, "%s = %s\n", k->key,
			    *base ? "(set, not shown)" : "");
		else
			fprintf(fp, "%s = %s\n", k->key, base);
	}
	for (j = 0; j < c->nproxies; j++) {
		fprintf(fp, "\n[proxy.%s]\n", c->proxies[j].name);
		for (i = 0; i < sizeof(ckeys) / sizeof(ckeys[0]); i++) {
			k = &ckeys[i];
			if (strcmp(k->section, "proxy") != 0)
				continue;
			base = (const char *)&c->proxies[j] + k->off;
			if (k->kind == CK_UINT)
				fprintf(fp, "%s = %u\n", k->key,
				    *(const unsigned *)(const void *)base);
			else
				fprintf(fp, "%s = %s\n", k->key, base);
		}
	}
	for (j = 0; j < c->nclusters; j++) {
		fprintf(fp, "\n[cluster.%s]\n", c->clusters[j].name);
		for (i = 0; i < sizeof(ckeys) / sizeof(ckeys[0]); i++) {
			k = &ckeys[i];
			if (strcmp(k->section, "cluster") == 0)
				fprintf(fp, "%s = %s\n", k->key,
				    (const char *)&c->clusters[j] + k->off);
		}
	}
}

size_t
config_nkeys(void)
{
	return sizeof(ckeys) / sizeof(ckeys[0]);
}

void
config_key(size_t i, struct config_key *k)
{
	k->section = ckeys[i].section;
	k->key = ckeys[i].key;
	k->off = ckeys[i].off;
	k->size = ckeys[i].size;
}

const struct proxy_conf *
config_proxy(const struct config *c, const char *name)
{
	int i;

	for (i = 0; i < c->nproxies; i++)
		if (strcmp(c->proxies[i].name, name) == 0)
			return &c->proxies[i];
	return NULL;
}

int
config_backend(const struct config *c, const char *cluster)
{
	const char *mode = c->backend;
	int i;

	for (i = 0; i < c->nclusters; i++)
		if (strcmp(c->clusters[i].name, cluster) == 0)
			mode = c->clusters[i].backend;
	return strcmp(mode, "endpoints") == 0 ? BACKEND_ENDPOINTS :
	    BACKEND_NODEPORT;
}

void
config_proxy_file(const struct config *c, const struct proxy_conf *px,
    const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s-%s", c->run_dir, px->name, what);
}

int
config_mkrundir(const struct config *c, char *err, size_t errlen)
{
	if (mkdir(c->run_dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", c->run_dir, strerror(errno));
		return -1;
	}
	return fsafe_private_dir(c->run_dir, err, errlen);
}

int
config_ready(const struct config *c, const char *name)
{
	char path[PATH_MAX + 64], tmp[PATH_MAX + 80];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s.pid", c->run_dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fp = fsafe_fopen(tmp, 0644)) == NULL)
		return -1;
	fprintf(fp, "%ld\n", (long)getpid());
	if (fclose(fp) == EOF || rename(tmp, path) == -1)
		return -1;
	return 0;
}
