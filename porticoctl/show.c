/*
 * porticoctl clusters, routes, ports — allocd's tables as an operator asks
 * for them: a plain table, or one JSON object a line with -j.
 *
 * Every string printed comes from struct ctl_tables, where it passed its
 * validator; a table cell is still made of printable ASCII only (anything
 * else becomes '?'), so that no store, however written, can move the
 * cursor of the terminal that reads it or break a row in two.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "log.h"
#include "porticoctl.h"
#include "valid.h"

#define COLS_MAX	11	/* clusters, with its shard */

struct table {
	size_t		 ncols;
	char		**cells;
	size_t		 n;		/* cells */
	size_t		 cap;
};

/* A cell: printable ASCII, a space only in the last column. */
static char *
cell(const char *s, int last)
{
	char *out;
	size_t i;

	if ((out = strdup(s[0] != '\0' ? s : "-")) == NULL)
		fatal("table");
	for (i = 0; out[i] != '\0'; i++)
		if (out[i] < (last ? 0x20 : 0x21) || out[i] > 0x7e)
			out[i] = '?';
	return out;
}

static void
table_row(struct table *t, ...)
{
	va_list ap;
	size_t i;

	va_start(ap, t);
	for (i = 0; i < t->ncols; i++) {
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 64;
			if ((t->cells = reallocarray(t->cells, t->cap,
			    sizeof(*t->cells))) == NULL)
				fatal("table");
		}
		t->cells[t->n++] = cell(va_arg(ap, const char *),
		    i + 1 == t->ncols);
	}
	va_end(ap);
}

/* Columns as wide as their widest cell; the last one is not padded. */
static int
table_print(struct table *t)
{
	size_t w[COLS_MAX] = { 0 }, i, len;
	int rc = 0;

	for (i = 0; i < t->n; i++)
		if ((len = strlen(t->cells[i])) > w[i % t->ncols])
			w[i % t->ncols] = len;
	for (i = 0; i < t->n && rc >= 0; i++) {
		if ((i + 1) % t->ncols == 0)
			rc = printf("%s\n", t->cells[i]);
		else
			rc = printf("%-*s  ", (int)w[i % t->ncols],
			    t->cells[i]);
	}
	for (i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n = t->cap = 0;
	return rc < 0 ? -1 : 0;
}

static const char *
ull(char *buf, size_t len, unsigned long long v)
{
	snprintf(buf, len, "%llu", v);
	return buf;
}

/* "10.0.0.1,10.0.0.2:8443": a cluster's masters. */
static void
masters(char *buf, size_t len, const struct event *api)
{
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < api->nmasters && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
		    api->masters[i]);
	if (api->nmasters > 0 && o < len)
		snprintf(buf + o, len - o, ":%llu",
		    (unsigned long long)api->mport);
}

/*
 * How the proxies stand toward a decision logged at seq ("haproxy:serves,
 * edge:behind"); with j, the same as a JSON array.
 */
static void
proxies_of(const struct ctl_tables *t, const struct ctl_route *r,
    uint64_t seq, char *buf, size_t len, json_t *j)
{
	struct ctl_route api;
	size_t i, o = 0;
	int how;

	if (r == NULL) {		/* a cluster's API route */
		memset(&api, 0, sizeof(api));
		api.rec.set_seq = seq;
		r = &api;
	}
	buf[0] = '\0';
	for (i = 0; i < t->nproxies; i++) {
		how = ctl_proxy_serves(&t->proxies[i], r);
		if (o < len)
			o += (size_t)snprintf(buf + o, len - o, "%s%s:%s",
			    i ? "," : "", t->proxies[i].name,
			    ctl_proxy_word(how));
		if (j != NULL)
			json_array_append_new(j, json_pack("{s:s,s:I,s:s}",
			    "proxy", t->proxies[i].name, "gen",
			    (json_int_t)t->proxies[i].gen, "state",
			    ctl_proxy_word(how)));
	}
}

static const char *
cluster_name(struct ctl_tables *t, const char *owner)
{
	struct ctl_cluster *cl;
	char id[64];

	snprintf(id, sizeof(id), "%.*s", (int)strcspn(owner, "/"), owner);
	cl = ctl_tables_cluster(t, id);
	return cl != NULL ? cl->name : "";
}

static int
load(struct ctl *c, struct ctl_tables *t, const char *store)
{
	int rc;

	if ((rc = ctl_open(c, store)) != CTL_OK)
		return rc;
	if ((rc = ctl_tables_load(c, t)) != 0) {
		log_warnx("store: %s", mdb_strerror(rc));
		ctl_tables_free(t);
		return CTL_STORE;
	}
	return CTL_OK;
}

/* After printing: 0, or the exit code for a store with bad records. */
static int
done(struct ctl *c, struct ctl_tables *t, int printed)
{
	ctl_tables_free(t);
	if (printed == -1) {
		log_warn("stdout");
		return CTL_STORE;
	}
	return c->bad > 0 ? CTL_STORE : CTL_OK;
}

/* The one argument these commands take after their options: a store. */
static int
store_arg(int argc, char **argv, const char *cmd, const char **store)
{
	if (argc - optind > 1) {
		fprintf(stderr, "porticoctl: %s: one store at most\n", cmd);
		return CTL_USAGE;
	}
	*store = argv[optind];
	return CTL_OK;
}

/* A cluster's state in words: routed, or why not. */
static const char *
cluster_state(const struct ctl_cluster *cl, char *buf, size_t len)
{
	buf[0] = '\0';
	if (cl->api.type == EV_API_SET)
		return buf;
	if (cl->want[0] != '\0')
		snprintf(buf, len, "not routed: host %s is held by another "
		    "cluster", cl->want);
	else if (cl->routes == 0)
		snprintf(buf, len, "gone (ports in quarantine)");
	else
		snprintf(buf, len, "not routed");
	return buf;
}

static json_t *
cluster_json(const struct ctl_cluster *cl, json_t *proxies, const char *err)
{
	json_t *m = json_array();
	size_t i;

	for (i = 0; m != NULL && i < cl->api.nmasters; i++)
		json_array_append_new(m, json_string(cl->api.masters[i]));
	return json_pack("{s:s,s:s,s:s?,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
	    "s:o,s:s?}", "id", cl->id, "name", cl->name,
	    "host", cl->api.host[0] ? cl->api.host : NULL, "masters", m,
	    "mport", cl->api.type == EV_API_SET ?
	    json_integer((json_int_t)cl->api.mport) : json_null(),
	    "routes", (json_int_t)cl->routes,
	    "ports", (json_int_t)cl->ports,
	    "live", (json_int_t)cl->live,
	    "refused", (json_int_t)cl->refused,
	    "waiting", (json_int_t)cl->waiting,
	    "faults", (json_int_t)cl->faults,
	    "quarantined", (json_int_t)cl->released,
	    "proxies", proxies, "error", err[0] ? err : NULL);
}

int
cmd_clusters(struct ctl *c, int argc, char **argv)
{
	char n[6][24], m[EV_MAX_MASTERS * EV_IPLEN + 8], px[512], err[320];
	const struct config *conf = ctl_config(c, 1);
	/* with several watcherds, the one that owns each cluster */
	unsigned shards = conf != NULL ? conf->shards : 1;
	struct ctl_cluster *cl;
	struct ctl_tables t;
	struct table tab = { shards > 1 ? 11 : 10, NULL, 0, 0 };
	const char *store;
	json_t *pj, *j;
	size_t i;
	int rc = 0;

	optind = 1;
	if (getopt(argc, argv, "") != -1 ||
	    store_arg(argc, argv, "clusters", &store) != CTL_OK)
		return CTL_USAGE;
	if ((rc = load(c, &t, store)) != CTL_OK)
		return rc;
	if (!c->json && shards > 1)
		table_row(&tab, "NAME", "ID", "SHARD", "HOST", "MASTERS",
		    "ROUTES", "PORTS", "LIVE", "REFUSED", "PROXIES", "ERROR");
	else if (!c->json)
		table_row(&tab, "NAME", "ID", "HOST", "MASTERS", "ROUTES",
		    "PORTS", "LIVE", "REFUSED", "PROXIES", "ERROR");
	for (i = 0, rc = 0; i < t.nclusters && rc == 0; i++) {
		cl = &t.clusters[i];
		masters(m, sizeof(m), &cl->api);
		pj = c->json ? json_array() : NULL;
		px[0] = '\0';
		if (cl->api.type == EV_API_SET)
			proxies_of(&t, NULL, cl->api.seq, px, sizeof(px), pj);
		cluster_state(cl, err, sizeof(err));
		if (!c->json && shards > 1) {
			table_row(&tab, cl->name, cl->id, ull(n[4], 24,
			    hash_shard(cl->id, shards)), cl->api.host, m,
			    ull(n[0], 24, cl->routes), ull(n[1], 24, cl->ports),
			    ull(n[2], 24, cl->live), ull(n[3], 24, cl->refused),
			    px, err);
			continue;
		}
		if (!c->json) {
			table_row(&tab, cl->name, cl->id, cl->api.host, m,
			    ull(n[0], 24, cl->routes), ull(n[1], 24, cl->ports),
			    ull(n[2], 24, cl->live), ull(n[3], 24, cl->refused),
			    px, err);
			continue;
		}
		j = cluster_json(cl, pj, err);
		if (j != NULL && shards > 1)
			json_object_set_new(j, "shard",
			    json_integer(hash_shard(cl->id, shards)));
		rc = ctl_print_json(j);
	}
	if (!c->json && rc == 0)
		rc = table_print(&tab);
	return done(c, &t, rc);
}

/* A route's state: live (its address is written), pending, refused... */
static const char *
route_state(const struct ctl_route *r)
{
	switch (r->rec.state) {
	case OWN_ACTIVE:
		return r->rec.live ? "live" : "pending";
	case OWN_QUARANTINED:
		return "released";
	}
	return r->rec.waiting ? "waiting" : "refused";
}

/* "10.0.0.1:31234,10.0.0.2:31234,+3": the first few of a route's backends. */
static void
backends(char *buf, size_t len, const struct ctl_route *r, size_t most)
{
	const struct backend *b = r->backends;
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < r->nbackends && i < most && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s%s%s:%u",
		    i ? "," : "", strchr(b[i].ip, ':') ? "[" : "", b[i].ip,
		    strchr(b[i].ip, ':') ? "]" : "", b[i].port);
	if (r->nbackends > most && o < len)
		snprintf(buf + o, len - o, ",+%zu", r->nbackends - most);
}

static json_t *
backends_json(const struct ctl_route *r)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < r->nbackends; i++)
		json_array_append_new(a, json_pack("{s:s,s:i,s:i}", "ip",
		    r->backends[i].ip, "port", (int)r->backends[i].port,
		    "weight", (int)r->backends[i].weight));
	return a;
}

/* The error a route's object carries: a refusal, else a proxy's fault. */
static const char *
route_error(const struct ctl_route *r)
{
	if (r->rec.state == OWN_QUARANTINED)
		return "";
	return r->rec.why[0] != '\0' ? r->rec.why : r->fault;
}

static int
route_json(struct ctl *c, struct ctl_tables *t, const struct ctl_route *r)
{
	struct ctl_cluster *cl;
	char id[64], ns[64], name[254], addr[300] = "", when[32], px[8];
	const char *kind;
	unsigned long long route;
	const struct config *conf = ctl_config(c, 1);
	json_t *pj = json_array(), *until = json_null();

	if (sscanf(r->owner, "%63[^/]/%63[^/]/%253[^/]/%llu", id, ns, name,
	    &route) != 4)
		return 0;
	kind = ctl_owner_kind(r->owner);
	cl = ctl_tables_cluster(t, id);
	if (r->rec.state == OWN_ACTIVE)
		proxies_of(t, r, 0, px, sizeof(px), pj);
	if (r->rec.live && r->host[0] != '\0' && conf != NULL)
		snprintf(addr, sizeof(addr), "%s:%u", r->host,
		    conf->api_port);
	else if (r->rec.live && cl != NULL && cl->api.host[0] != '\0')
		snprintf(addr, sizeof(addr), "%s:%u", cl->api.host,
		    (unsigned)r->rec.port);
	if (r->released != 0 && conf != NULL)
		until = json_string(ctl_time(when, sizeof(when), r->released +
		    (uint64_t)conf->quarantine * 1000));
	return ctl_print_json(json_pack("{s:s,s:s,s:s?,s:s,s:s,s:s,s:s,s:I,s:o,"
	    "s:s,s:b,s:s?,s:o,s:o,s:s?,s:s?,s:b,s:o}",
	    "owner", r->owner, "kind", kind,
	    "hostname", r->host[0] != '\0' ? r->host : NULL,
	    "cluster", id, "cluster_name",
	    cl != NULL ? cl->name : "", "namespace", ns, "name", name,
	    "route", (json_int_t)route,
	    "port", r->rec.port != 0 ? json_integer(r->rec.port) : json_null(),
	    "state", route_state(r), "address_written", r->rec.live != 0,
	    "address", addr[0] ? addr : NULL,
	    "backends", backends_json(r), "proxies", pj,
	    "refused", r->rec.state != OWN_QUARANTINED && r->rec.why[0] ?
	    r->rec.why : NULL, "fault", r->fault[0] ? r->fault : NULL,
	    "waiting", r->rec.state == OWN_REFUSED && r->rec.waiting,
	    "quarantined_until", until));
}

int
cmd_routes(struct ctl *c, int argc, char **argv)
{
	char port[8], bk[160], px[512];
	const char *want_c = NULL, *want_n = NULL, *store, *p;
	struct ctl_tables t;
	struct ctl_route *r;
	struct table tab = { 7, NULL, 0, 0 };
	size_t i, clen;
	int ch, rc;

	optind = 1;
	while ((ch = getopt(argc, argv, "c:n:")) != -1) {
		switch (ch) {
		case 'c':
			want_c = optarg;
			break;
		case 'n':
			want_n = optarg;
			break;
		default:
			fprintf(stderr, "porticoctl: routes [-c CLUSTER] "
			    "[-n NAMESPACE] [STORE]\n");
			return CTL_USAGE;
		}
	}
	if ((want_c != NULL && !valid_cluster_id(want_c)) ||
	    (want_n != NULL && !valid_dns_label(want_n))) {
		fprintf(stderr, "porticoctl: routes: -c takes a cluster's "
		    "name or id, -n a namespace\n");
		return CTL_USAGE;
	}
	if (store_arg(argc, argv, "routes", &store) != CTL_OK)
		return CTL_USAGE;
	if ((rc = load(c, &t, store)) != CTL_OK)
		return rc;
	if (!c->json)
		table_row(&tab, "OWNER", "CLUSTER", "PORT", "STATE",
		    "BACKENDS", "PROXIES", "ERROR");
	for (i = 0, rc = 0; i < t.nroutes + t.nsnis && rc == 0; i++) {
		/* the ports' routes, then the TLSRoutes' hostnames */
		r = i < t.nroutes ? &t.routes[i] : &t.snis[i - t.nroutes];
		clen = strcspn(r->owner, "/");
		p = r->owner + clen + 1;
		/* -c: the cluster's id, or its name */
		if (want_c != NULL && (strlen(want_c) != clen ||
		    strncmp(r->owner, want_c, clen) != 0) &&
		    strcmp(cluster_name(&t, r->owner), want_c) != 0)
			continue;
		if (want_n != NULL && (strncmp(p, want_n,
		    strlen(want_n)) != 0 || p[strlen(want_n)] != '/'))
			continue;
		if (c->json) {
			rc = route_json(c, &t, r);
			continue;
		}
		px[0] = '\0';
		if (r->rec.state == OWN_ACTIVE)
			proxies_of(&t, r, 0, px, sizeof(px), NULL);
		backends(bk, sizeof(bk), r, 3);
		table_row(&tab, r->owner, cluster_name(&t, r->owner),
		    r->host[0] != '\0' ? r->host :
		    r->rec.port ? ull(port, sizeof(port), r->rec.port) : "",
		    route_state(r), bk, px, route_error(r));
	}
	if (!c->json && rc == 0)
		rc = table_print(&tab);
	return done(c, &t, rc);
}

struct pool {
	unsigned long	size, used, quarantined, expired, refused, waiting;
};

/* Count what the pool holds; a quarantine that ran out is free again. */
static void
pool_count(const struct config *conf, const struct ctl_tables *t,
    struct pool *p)
{
	const struct ctl_route *r;
	unsigned i, n, port;
	size_t k;

	memset(p, 0, sizeof(*p));
	if (conf != NULL)
		for (i = 0, n = ports_count(&conf->ports); i < n; i++) {
			port = ports_nth(&conf->ports, i);
			p->size += !ports_contain(&conf->reserved, port);
		}
	for (k = 0; k < t->nroutes; k++) {
		r = &t->routes[k];
		if (r->rec.state == OWN_ACTIVE)
			p->used++;
		else if (r->rec.state == OWN_REFUSED) {
			p->refused++;
			p->waiting += r->rec.waiting != 0;
		} else if (r->released != 0 && conf != NULL &&
		    r->released + (uint64_t)conf->quarantine * 1000 <= t->now)
			p->expired++;
		else if (r->released != 0)
			p->quarantined++;
	}
}

static int
ports_json(struct ctl *c, struct ctl_tables *t, const struct pool *p)
{
	const struct config *conf = ctl_config(c, 1);
	char range[512] = "", when[32], until[32];
	struct ctl_cluster *cl;
	struct ctl_route *r;
	json_t *j, *per, *q;
	size_t i;

	if (conf != NULL)
		ports_format(&conf->ports, range, sizeof(range));
	per = json_array();
	for (i = 0; i < t->nclusters; i++) {
		cl = &t->clusters[i];
		json_array_append_new(per, json_pack("{s:s,s:s,s:I,s:I,s:I,"
		    "s:I}", "id", cl->id, "name", cl->name,
		    "used", (json_int_t)cl->ports,
		    "quarantined", (json_int_t)cl->released,
		    "refused", (json_int_t)cl->refused,
		    "waiting", (json_int_t)cl->waiting));
	}
	q = json_array();
	for (i = 0; i < t->nroutes; i++) {
		r = &t->routes[i];
		if (r->released == 0 || (conf != NULL && r->released +
		    (uint64_t)conf->quarantine * 1000 <= t->now))
			continue;
		ctl_time(when, sizeof(when), r->released);
		if (conf != NULL)
			ctl_time(until, sizeof(until), r->released +
			    (uint64_t)conf->quarantine * 1000);
		json_array_append_new(q, json_pack("{s:i,s:s,s:s,s:s?}",
		    "port", (int)r->rec.port, "owner", r->owner,
		    "released", when, "until", conf != NULL ? until : NULL));
	}
	j = json_pack("{s:s?,s:o,s:I,s:I,s:o,s:I,s:I,s:o,s:o}",
	    "range", range[0] ? range : NULL,
	    "size", conf != NULL ? json_integer((json_int_t)p->size) :
	    json_null(), "used", (json_int_t)p->used,
	    "quarantined", (json_int_t)p->quarantined,
	    "free", conf != NULL ? json_integer((json_int_t)(p->size >
	    p->used + p->quarantined ? p->size - p->used - p->quarantined :
	    0)) : json_null(),
	    "refused", (json_int_t)p->refused,
	    "waiting", (json_int_t)p->waiting,
	    "clusters", per, "quarantine", q);
	return ctl_print_json(j);
}

int
cmd_ports(struct ctl *c, int argc, char **argv)
{
	const struct config *conf;
	char range[512], n[4][24], when[32];
	struct ctl_tables t;
	struct ctl_cluster *cl;
	struct ctl_route *r;
	struct table tab = { 6, NULL, 0, 0 };
	struct pool p;
	const char *store;
	uint64_t until;
	size_t i;
	int rc;

	optind = 1;
	if (getopt(argc, argv, "") != -1 ||
	    store_arg(argc, argv, "ports", &store) != CTL_OK)
		return CTL_USAGE;
	if ((rc = load(c, &t, store)) != CTL_OK)
		return rc;
	conf = ctl_config(c, 1);
	pool_count(conf, &t, &p);
	if (c->json)
		return done(c, &t, ports_json(c, &t, &p));
	if (conf != NULL) {
		ports_format(&conf->ports, range, sizeof(range));
		rc = printf("pool %s: %lu ports, %lu used, %lu quarantined, "
		    "%lu free\n", range, p.size, p.used, p.quarantined,
		    p.size > p.used + p.quarantined ?
		    p.size - p.used - p.quarantined : 0);
	} else
		rc = printf("pool unknown (no configuration): %lu used, %lu "
		    "quarantined\n", p.used, p.quarantined);
	if (rc >= 0)
		rc = printf("%lu routes refused, %lu of them waiting for a "
		    "port\n\n", p.refused, p.waiting);
	table_row(&tab, "CLUSTER", "ID", "USED", "QUARANTINED", "REFUSED",
	    "WAITING");
	for (i = 0; i < t.nclusters; i++) {
		cl = &t.clusters[i];
		table_row(&tab, cl->name, cl->id, ull(n[0], 24, cl->ports),
		    ull(n[1], 24, cl->released), ull(n[2], 24, cl->refused),
		    ull(n[3], 24, cl->waiting));
	}
	if ((rc = rc < 0 ? -1 : table_print(&tab)) == 0 && p.quarantined > 0) {
		rc = printf("\n") < 0 ? -1 : 0;
		tab.ncols = 3;
		table_row(&tab, "PORT", "UNTIL (UTC)", "OWNER");
	}
	for (i = 0; rc == 0 && p.quarantined > 0 && i < t.nroutes; i++) {
		r = &t.routes[i];
		until = r->released + (conf != NULL ?
		    (uint64_t)conf->quarantine * 1000 : 0);
		if (r->released == 0 || (conf != NULL && until <= t.now))
			continue;
		table_row(&tab, ull(n[0], 24, r->rec.port),
		    conf != NULL ? ctl_time(when, sizeof(when), until) : "?",
		    r->owner);
	}
	if (rc == 0 && p.quarantined > 0)
		rc = table_print(&tab);
	return done(c, &t, rc);
}
