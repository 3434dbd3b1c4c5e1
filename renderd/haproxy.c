/*
 * renderd — HAProxy configuration, made to change without reloads.
 *
 * The skeleton depends on the configuration alone: the API frontend on the
 * shared TLS port (cluster APIs and TLSRoute hostnames, by SNI), a `ports`
 * frontend binding every configured workload port once, and a backend
 * `p<port>` for each of those ports.  The state
 * fills in only what HAProxy's runtime API can change live: the servers
 * inside the backends, and the keys of the two maps the frontends route
 * by (the SNI host to a slot `api<n>`, the port to `p<port>`; applyd
 * writes the map files from the backends that have servers).
 *
 * The API backends are a pool of slots, so that a cluster that comes or
 * goes changes only servers and map keys.  A cluster's slot is the hash of
 * its id in the pool, probing upward, the clusters placed in order of home
 * slot, then id: one that comes takes a free slot and moves nobody, unless
 * its probe runs past the home of a cluster placed after it (rare in a
 * pool at least twice the clusters; applyd reloads for a slot that changes
 * hands).  The pool doubles, by a reload, when the clusters fill half.
 *
 * TLSRoute hostnames have a pool of their own, slots `tls<n>` placed as
 * the clusters' are (by a hash of the host), keyed in the same SNI map:
 * a hostname that comes, goes or changes its backends is servers and a
 * map key too.  The pool exists from the first hostname on.
 *
 * Servers are named by their address, so the same backend address is the
 * same server in every generation.  Health checks are declared only while
 * every checked server fits in the proxy's file descriptors (HAProxy
 * reserves one for each, besides one per listener and two per connection):
 * past that, a dead backend is left by retrying the connection elsewhere.
 *
 * Checks are bounded per cluster: every route is a server on every node,
 * so at a fixed interval the connections a cluster's nodes accept grow
 * with routes x nodes while nothing happens.  A cluster's servers share
 * a budget of check_rate checks a second, and their interval is the base
 * (5 s) doubled until the budget holds (then spread, see check_args).
 * Doubling, not dividing, because any other argument of a server than
 * its weight costs a reload: the interval changes only when a cluster's
 * servers cross a power of two of the budget, not with each route.
 * Leaving a dead server does not wait for a check: `observe layer4`
 * marks it down at the first connection of real traffic that fails, and
 * `option redispatch` sends that connection elsewhere; checks at
 * downinter then bring it back.
 *
 * Everything written here came through the event validators: names are
 * RFC 1123, addresses parse as IPs, ports and weights are in range.  The
 * output is a pure function of its inputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "routes.h"

#define FD_SPARE	200	/* sockets, pipes, logs, the CLI */
#define API_SLOTS_MIN	16
#define CHECK_BASE_S	5	/* a check interval no cluster goes below */
#define CHECK_SHIFT_MAX	16	/* 5 s << 16: three and a half days */

/* The servers of each cluster, by its id: how often they are checked. */
struct budget {
	const char	*cluster;	/* in the routes; NULL: a free slot */
	size_t		 nsrv;
};

struct budgets {
	struct budget	*b;
	size_t		 mask;		/* slots - 1, a power of two - 1 */
	unsigned	 rate;		/* checks a second for one cluster */
};

/* "ip:lo-hi" or "ip:p", with IPv6 in brackets */
static void
bind_line(FILE *fp, const char *ip, unsigned lo, unsigned hi)
{
	const char *fmt = strchr(ip, ':') ? "\tbind [%s]:%u" : "\tbind %s:%u";

	fprintf(fp, fmt, ip, lo);
	if (hi != lo)
		fprintf(fp, "-%u", hi);
	fputc('\n', fp);
}

/*
 * One bind per run of consecutive bound ports.  A port another program
 * holds (applyd's r->held) is not bound.
 */
static void
render_binds(FILE *fp, const struct routes *r, const struct config *c,
    const char *ip)
{
	unsigned n = ports_count(&c->ports), k, p, lo = 0, prev = 0;

	for (k = 0; k < n; k++) {
		if (!routes_port_allowed(c, p = ports_nth(&c->ports, k)))
			continue;
		if (ROUTES_HELD(r, p))
			continue;
		if (lo != 0 && p == prev + 1) {
			prev = p;
			continue;
		}
		if (lo != 0)
			bind_line(fp, ip, lo, prev);
		lo = prev = p;
	}
	if (lo != 0)
		bind_line(fp, ip, lo, prev);
}

static void
server_line(FILE *fp, const char *ip, unsigned port, const char *rest)
{
	char ab[64];

	fprintf(fp, "\tserver %s_%u %s%s\n", ip, port,
	    route_addr(ab, sizeof(ab), ip, port), rest);
}

/*
 * The weight of backend j, or -1 when an earlier one has its address (a
 * server name is its address, so it appears once, with the weights of
 * all its entries summed, as HAProxy's 256 allows).
 */
int
haproxy_merged_weight(const struct port_route *pr, size_t j)
{
	int w = routes_merged_weight(pr->backends, pr->nbackends, j);

	return w > 256 ? 256 : w;
}

int
haproxy_sni_weight(const struct sni_route *sr, size_t j)
{
	int w = routes_merged_weight(sr->backends, sr->nbackends, j);

	return w > 256 ? 256 : w;
}

/*
 * A TLSRoute hostname's slot "tls<n>": its servers with their weights,
 * unchecked (a dead one is left by retrying elsewhere, as for a workload
 * port past the checks' budget).  The map key, the host, is in the map
 * applyd writes beside the API hosts.
 */
static void
render_sni(FILE *fp, const struct sni_route *sr)
{
	char wb[32];
	size_t j;
	int w;

	fprintf(fp, "\t# sni %s\n", sr->host);
	fprintf(fp, "\t# %s/%s/%s hostname %u\n", sr->cluster, sr->ns,
	    sr->name, sr->route);
	for (j = 0; j < sr->nbackends; j++) {
		if ((w = haproxy_sni_weight(sr, j)) == -1)
			continue;
		snprintf(wb, sizeof(wb), " weight %d", w);
		server_line(fp, sr->backends[j].ip, sr->backends[j].port, wb);
	}
}

struct placed {
	size_t		home;
	size_t		i;		/* in r->api or r->sni, sorted */
};

static int
cmp_placed(const void *x, const void *y)
{
	const struct placed *a = x, *b = y;

	if (a->home != b->home)
		return a->home < b->home ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/* The smallest power of 2 from API_SLOTS_MIN that is twice n or more. */
static size_t
pool_size(size_t n)
{
	size_t pool;

	for (pool = API_SLOTS_MIN; pool < 2 * n; pool *= 2)
		;
	return pool;
}

/*
 * The n entries of pl (their homes set) into a pool: in (home, index)
 * order, each at its home or the next free slot upward.  pl is freed;
 * the slots (an index each, or -1), or NULL.
 */
static long *
place(struct placed *pl, size_t n, size_t pool)
{
	size_t i, s;
	long *slot;

	if ((slot = malloc((pool + 1) * sizeof(*slot))) == NULL) {
		free(pl);
		return NULL;
	}
	for (s = 0; s < pool; s++)
		slot[s] = -1;
	qsort(pl, n, sizeof(*pl), cmp_placed);
	for (i = 0; i < n; i++) {
		for (s = pl[i].home; slot[s] != -1; s = (s + 1) & (pool - 1))
			;
		slot[s] = (long)pl[i].i;
	}
	free(pl);
	return slot;
}

/*
 * The pool's size, and the cluster in each slot (an index in r->api, or
 * -1), for the clusters routed (a host routed once: the first id wins).
 */
long *
haproxy_api_slots(const struct routes *r, size_t *pool)
{
	struct placed *pl;
	size_t i, n = 0;

	if ((pl = calloc(r->napi + 1, sizeof(*pl))) == NULL)
		return NULL;
	for (i = 0; i < r->napi; i++)
		if (!routes_host_taken(r, i))
			pl[n++].i = i;
	*pool = pool_size(n);
	for (i = 0; i < n; i++)
		pl[i].home = (size_t)(hash_fnv1a(r->api[pl[i].i].cluster) &
		    (*pool - 1));
	return place(pl, n, *pool);
}

/*
 * The TLSRoute hostnames' pool, as the clusters' (a hash of the host,
 * probing upward): its size, and the hostname in each slot (an index in
 * r->sni, or -1).  No pool at all while there is no hostname, so that a
 * fleet without TLSRoutes renders as before; the first one is a reload.
 */
long *
haproxy_sni_slots(const struct routes *r, size_t *pool)
{
	struct placed *pl;
	size_t i, n = 0;

	if ((pl = calloc(r->nsni + 1, sizeof(*pl))) == NULL)
		return NULL;
	for (i = 0; i < r->nsni; i++)
		if (!routes_sni_shadowed(r, i))
			pl[n++].i = i;
	*pool = n > 0 ? pool_size(n) : 0;
	for (i = 0; i < n; i++)
		pl[i].home = (size_t)(hash_fnv1a(r->sni[pl[i].i].host) &
		    (*pool - 1));
	return place(pl, n, *pool);
}

static struct budget *
budget_slot(const struct budgets *bg, const char *cluster)
{
	size_t s = (size_t)hash_fnv1a(cluster) & bg->mask;

	while (bg->b[s].cluster != NULL && strcmp(bg->b[s].cluster,
	    cluster) != 0)
		s = (s + 1) & bg->mask;
	return &bg->b[s];
}

static void
budget_add(struct budgets *bg, const char *cluster, size_t nsrv)
{
	struct budget *b = budget_slot(bg, cluster);

	b->cluster = cluster;
	b->nsrv += nsrv;
}

/*
 * The ports a configuration binds (routes_port_allowed), counted range by
 * range: applyd asks for every live change, and a count port by port
 * cost more than the change itself at 10,000 ports.  The sets are sorted
 * and their ranges apart (ports_parse).
 */
static size_t
ports_allowed(const struct config *c)
{
	const struct port_set *s = &c->ports, *rs = &c->reserved;
	unsigned i, j, lo, hi;
	size_t n = 0;

	for (i = 0; i < s->n; i++) {
		n += s->r[i].hi - s->r[i].lo + 1;
		for (j = 0; j < rs->n; j++) {
			lo = rs->r[j].lo > s->r[i].lo ? rs->r[j].lo : s->r[i].lo;
			hi = rs->r[j].hi < s->r[i].hi ? rs->r[j].hi : s->r[i].hi;
			if (lo <= hi)
				n -= hi - lo + 1;
		}
	}
	if (ports_contain(s, c->api_port) && !ports_contain(rs, c->api_port))
		n--;
	return n;
}

/*
 * Do the workload servers' checks fit in the proxy's descriptors, beside
 * a listener for each bound port, two per connection and the masters'
 * checks?  Decided before anything is printed: a cluster's interval
 * depends on it, its budget being shared by the servers checked only.
 */
int
haproxy_checks(const struct routes *r, const struct config *c,
    const struct proxy_conf *px)
{
	size_t nfd = 2 * (size_t)px->maxconn + FD_SPARE, i;

	nfd += ports_allowed(c) + r->nportsrv;
	for (i = 0; i < r->napi; i++)
		if (!routes_host_taken(r, i))
			nfd += r->api[i].nmasters;
	return nfd <= px->fd_limit;
}

/*
 * Count each cluster's checked servers: its masters, and its routes'
 * backends when they are checked.  A hash of the ids, since a render
 * must stay linear in the routes; at most nports + napi clusters, so
 * twice that many slots.
 */
static int
budgets_count(struct budgets *bg, const struct routes *r, unsigned rate,
    int check)
{
	const struct port_route *pr;
	size_t n, i;
	unsigned p;

	for (n = 16; n < 2 * ((size_t)r->nports + r->napi); n *= 2)
		;
	if ((bg->b = calloc(n, sizeof(*bg->b))) == NULL)
		return -1;
	bg->mask = n - 1;
	bg->rate = rate > 0 ? rate : 1;
	for (p = 0; check && p < 65536; p++)
		if ((pr = r->ports[p]) != NULL)
			budget_add(bg, pr->cluster, pr->nbackends);
	for (i = 0; i < r->napi; i++)
		budget_add(bg, r->api[i].cluster, r->api[i].nmasters);
	return 0;
}

/*
 * How many times a cluster's interval doubles from the base for its
 * servers to be checked at most rate times a second.
 */
static unsigned
budget_shift(const struct budgets *bg, const char *cluster)
{
	size_t nsrv = budget_slot(bg, cluster)->nsrv;
	unsigned k = 0;

	while (k < CHECK_SHIFT_MAX &&
	    ((size_t)CHECK_BASE_S << k) * bg->rate < nsrv)
		k++;
	return k;
}

/*
 * A checked server's arguments.  inter is the budget's, lengthened by up
 * to as much again for each server by the hash of where it is (what, ip,
 * port): servers added together would otherwise be checked together,
 * every check of a cluster in one burst each interval; spread over an
 * interval, even the first round keeps to the budget.  Longer only, so
 * the budget holds.
 *
 * Leaving service: error-limit 1 so that real traffic takes a server out
 * at its first failed connection; fall 2 at a fastinter of 1 s once a
 * check failed, so that a check alone does it within inter + 1 s.
 * Coming back: a down server is checked every downinter, 5 to 10 s, so
 * that a node back from maintenance serves again within seconds, not
 * after minutes of its cluster's interval.  That is outside the budget,
 * but what it costs is a refused connection from a dead address, never
 * a workload's accept.
 */
static void
check_args(char *buf, size_t len, unsigned shift, const char *what,
    const char *ip, unsigned port)
{
	unsigned long base = (unsigned long)CHECK_BASE_S * 1000 << shift;
	unsigned long down = (unsigned long)CHECK_BASE_S * 1000;
	uint64_t h;
	char key[160];
	int n;

	n = snprintf(key, sizeof(key), "%s/%s/%u", what, ip, port);
	h = hash_fnv1a_n(key, n < 0 ? 0 : (size_t)n < sizeof(key) ?
	    (size_t)n : sizeof(key) - 1);
	snprintf(buf, len, " check inter %lums fastinter 1s downinter %lums"
	    " rise 2 fall 2 observe layer4 error-limit 1 on-error mark-down",
	    base + (unsigned long)(h % base), down + (unsigned long)(h % down));
}

/*
 * The checks of one table, for applyd's runtime API to say exactly what
 * this renderer writes: whether workload servers are checked, and each
 * cluster's interval.  The clusters are the table's strings: free the
 * plan before the table changes.
 */
struct haproxy_checkplan {
	struct budgets	bg;
	int		check;
};

struct haproxy_checkplan *
haproxy_checkplan(const struct routes *r, const struct config *c,
    const struct proxy_conf *px)
{
	struct haproxy_checkplan *cp;

	if ((cp = calloc(1, sizeof(*cp))) == NULL)
		return NULL;
	cp->check = haproxy_checks(r, c, px);
	if (budgets_count(&cp->bg, r, px->check_rate, cp->check) == -1) {
		free(cp);
		return NULL;
	}
	return cp;
}

void
haproxy_checkplan_free(struct haproxy_checkplan *cp)
{
	if (cp == NULL)
		return;
	free(cp->bg.b);
	free(cp);
}

int
haproxy_checkplan_checks(const struct haproxy_checkplan *cp)
{
	return cp->check;
}

int
haproxy_checkplan_has(const struct haproxy_checkplan *cp, const char *cluster)
{
	return budget_slot(&cp->bg, cluster)->cluster != NULL;
}

unsigned
haproxy_check_shift(const struct haproxy_checkplan *cp, const char *cluster)
{
	return budget_shift(&cp->bg, cluster);
}

/*
 * Would a server present in both tables need other arguments: checks
 * turned on or off, or a cluster of both whose interval changed?  Only a
 * reload changes a server's arguments.
 */
int
haproxy_checkplans_differ(const struct haproxy_checkplan *a,
    const struct haproxy_checkplan *b)
{
	const struct budget *x, *y;
	size_t i;

	if (a->check != b->check)
		return 1;
	for (i = 0; i <= a->bg.mask; i++) {
		x = &a->bg.b[i];
		if (x->cluster == NULL)
			continue;
		y = budget_slot(&b->bg, x->cluster);
		if (y->cluster != NULL &&
		    budget_shift(&a->bg, x->cluster) !=
		    budget_shift(&b->bg, x->cluster))
			return 1;
	}
	return 0;
}

/* fn for each cluster of the plan, with its shift; stops at fn's -1. */
int
haproxy_checkplan_each(const struct haproxy_checkplan *cp,
    int (*fn)(const char *cluster, unsigned shift, void *), void *arg)
{
	size_t i;

	for (i = 0; i <= cp->bg.mask; i++)
		if (cp->bg.b[i].cluster != NULL &&
		    fn(cp->bg.b[i].cluster, budget_shift(&cp->bg,
		    cp->bg.b[i].cluster), arg) == -1)
			return -1;
	return 0;
}

void
haproxy_server_args(char *buf, size_t len, const struct haproxy_checkplan *cp,
    const struct port_route *pr, int weight, const char *ip, unsigned port)
{
	char cb[192], what[8];

	cb[0] = '\0';
	if (cp->check) {
		snprintf(what, sizeof(what), "p%u", pr->port);
		check_args(cb, sizeof(cb), budget_shift(&cp->bg, pr->cluster),
		    what, ip, port);
	}
	snprintf(buf, len, " weight %d%s", weight, cb);
}

void
haproxy_api_server_args(char *buf, size_t len,
    const struct haproxy_checkplan *cp, const struct api_route *a,
    const char *ip, unsigned port)
{
	check_args(buf, len, budget_shift(&cp->bg, a->cluster), a->cluster,
	    ip, port);
}

/*
 * A routed port's backend, kept on the route (variant 1 unchecked, 2 +
 * the check shift checked) so that a generation prints only the ports
 * that changed.
 */
static int
port_text(struct port_route *pr, int check, unsigned shift)
{
	char wb[256], cb[192], what[8];
	size_t j;
	FILE *fp;
	int w;

	if (pr->textvar == (check ? 2 + (int)shift : 1))
		return 0;
	free(pr->text);
	pr->text = NULL;
	pr->textvar = 0;
	if ((fp = open_memstream(&pr->text, &pr->textlen)) == NULL)
		return -1;
	fprintf(fp, "\nbackend p%u\n", pr->port);
	fprintf(fp, "\t# %s/%s/%s route %u\n", pr->cluster, pr->ns, pr->name,
	    pr->route);
	snprintf(what, sizeof(what), "p%u", pr->port);
	for (j = 0; j < pr->nbackends; j++) {
		if ((w = haproxy_merged_weight(pr, j)) == -1)
			continue;
		cb[0] = '\0';
		if (check)
			check_args(cb, sizeof(cb), shift, what,
			    pr->backends[j].ip, pr->backends[j].port);
		snprintf(wb, sizeof(wb), " weight %d%s", w, cb);
		server_line(fp, pr->backends[j].ip, pr->backends[j].port, wb);
	}
	if (fclose(fp) != 0)
		return -1;
	pr->textvar = check ? 2 + (int)shift : 1;
	return 0;
}

int
haproxy_render(const struct routes *r, const struct config *c,
    const struct proxy_conf *px, FILE *fp)
{
	struct port_route *pr;
	const struct api_route *a;
	struct budgets bg;
	char ab[64], cb[192];
	size_t j, s, pool;
	unsigned k, n, p;
	long *slot;
	int check;

	fprintf(fp, "# rendered by portico renderd; do not edit\n"
	    "global\n"
	    "\tmaster-worker\n"
	    "\tstats socket %s/%s.sock mode 600 level admin "
	    "expose-fd listeners\n"
	    "\thard-stop-after %us\n"
	    "\tmworker-max-reloads %u\n"
	    "\tmaxconn %u\n",
	    c->run_dir, px->name, px->hard_stop_after, px->max_reloads,
	    px->maxconn);
	/* the master keeps root (binds, its socket, reloads); workers drop it */
	if (px->user[0] != '\0')
		fprintf(fp, "\tuser %s\n\tgroup %s\n", px->user, px->group);
	fprintf(fp, "\n"
	    "defaults\n"
	    "\tmode tcp\n"
	    "\tbalance roundrobin\n"
	    "\ttimeout connect 5s\n"
	    "\ttimeout client 1h\n"
	    "\ttimeout server 1h\n"
	    "\ttimeout client-fin 30s\n"
	    "\ttimeout server-fin 30s\n"
	    "\tretries 2\n"
	    "\toption redispatch\n"
	    "\n"
	    "frontend api\n"
	    "\tbind %s\n"
	    "\ttcp-request inspect-delay 5s\n"
	    "\ttcp-request content reject unless "
	    "{ req_ssl_sni,lower,map(%s/%s-api.map) -m found }\n"
	    "\ttcp-request content accept if { req_ssl_hello_type 1 }\n"
	    "\tuse_backend %%[req_ssl_sni,lower,map(%s/%s-api.map)]\n",
	    route_addr(ab, sizeof(ab), px->listen, c->api_port),
	    c->run_dir, px->name, c->run_dir, px->name);
	/*
	 * HAProxy's own Prometheus exporter, when [proxy.NAME] stats_listen
	 * asks for it (an IP:PORT config.c checked): only GET /metrics, with
	 * short timeouts and few connections, so a scraper cannot hold it.
	 */
	if (px->stats_listen[0] != '\0')
		fprintf(fp, "\n"
		    "frontend stats\n"
		    "\tmode http\n"
		    "\tbind %s\n"
		    "\tmaxconn 16\n"
		    "\ttimeout client 10s\n"
		    "\ttimeout http-request 5s\n"
		    "\thttp-request use-service prometheus-exporter "
		    "if { method GET } { path /metrics }\n"
		    "\thttp-request return status 404\n",
		    px->stats_listen);
	check = haproxy_checks(r, c, px);
	if (budgets_count(&bg, r, px->check_rate, check) == -1)
		return -1;
	if ((slot = haproxy_api_slots(r, &pool)) == NULL) {
		free(bg.b);
		return -1;
	}
	for (s = 0; s < pool; s++) {
		fprintf(fp, "\nbackend api%zu\n", s);
		if (slot[s] == -1)
			continue;
		a = &r->api[slot[s]];
		/* the map key: applyd reads it here */
		fprintf(fp, "\t# sni %s\n", a->host);
		fprintf(fp, "\t# cluster %s (%s)\n", a->cluster, a->cname);
		for (j = 0; j < a->nmasters; j++) {
			if (api_master_seen(a, j))
				continue;
			check_args(cb, sizeof(cb), budget_shift(&bg,
			    a->cluster), a->cluster, a->masters[j], a->mport);
			server_line(fp, a->masters[j], a->mport, cb);
		}
	}
	free(slot);
	if ((slot = haproxy_sni_slots(r, &pool)) == NULL) {
		free(bg.b);
		return -1;
	}
	for (s = 0; s < pool; s++) {
		fprintf(fp, "\nbackend tls%zu\n", s);
		if (slot[s] != -1)
			render_sni(fp, &r->sni[slot[s]]);
	}
	free(slot);

	fprintf(fp, "\nfrontend ports\n");
	render_binds(fp, r, c, px->listen);
	fprintf(fp, "\ttcp-request connection reject unless "
	    "{ dst_port,map(%s/%s-ports.map) -m found }\n"
	    "\tuse_backend %%[dst_port,map(%s/%s-ports.map)]\n",
	    c->run_dir, px->name, c->run_dir, px->name);

	n = ports_count(&c->ports);
	for (k = 0; k < n; k++) {
		if (!routes_port_allowed(c, p = ports_nth(&c->ports, k)))
			continue;
		if ((pr = r->ports[p]) == NULL)
			fprintf(fp, "\nbackend p%u\n", p);
		else if (port_text(pr, check, check ?
		    budget_shift(&bg, pr->cluster) : 0) == -1) {
			free(bg.b);
			return -1;
		} else
			fwrite(pr->text, 1, pr->textlen, fp);
	}
	free(bg.b);
	return ferror(fp) ? -1 : 0;
}
