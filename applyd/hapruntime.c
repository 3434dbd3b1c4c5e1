/*
 * applyd — HAProxy without reloads.
 *
 * renderd's HAProxy configuration binds the workload ports once and routes
 * each connection through a map: the port (or the SNI host) to a backend
 * that always exists, `p<port>` for every configured port, a slot `api<n>`
 * from a pool for the clusters and a slot `tls<n>` from a pool for the
 * TLSRoute hostnames (renderd/haproxy.c).  What changes
 * from one route table to the next is then almost always only the servers
 * inside those backends and which keys the maps hold, and both change
 * through the runtime API:
 *	add server B/S ADDR ARGS; enable server B/S [; enable health B/S]
 *	set server B/S weight W
 *	set server B/S state maint; del server B/S
 *	add map FILE KEY BACKEND; set map FILE KEY BACKEND; del map FILE KEY
 * A server's name is its address (`10.0.0.1_30080`), so the same backend
 * address is the same server in every generation.  Servers are added
 * before the map points at them and leave after it stops pointing; a
 * server that still carries connections cannot be deleted yet: it stays in
 * maintenance (no new connection reaches it) and is deleted later.
 *
 * The change is computed from two route tables, never from text: the
 * commands say what the HAProxy renderer would write for the new table
 * (its slots, its server arguments).  What the runtime API cannot do means
 * a reload: a pool of slots resized (the TLSRoutes' comes with the first
 * hostname), hosts that swap slots (slots.c), health checks turned on
 * or off.  A host that moves to another slot (a newcomer took its place,
 * or one before it left) moves live: its new slot is filled, the map
 * re-pointed (`set map`), its old slot emptied.  The maps on disk are written from the table,
 * so a reload or a restart routes exactly as the runtime API did.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsafe.h"
#include "hapcli.h"
#include "hapruntime.h"
#include "slots.h"
#include "log.h"

#define DRAIN_MAX	4096

/* One server of a backend, as the renderer writes it. */
struct server {
	char		name[EV_IPLEN + 8];	/* ip_port */
	char		addr[EV_IPLEN + 8];	/* ip:port, [ip6]:port */
	const char	*ip;			/* in the table */
	unsigned	port;
	int		weight;			/* -1: an API slot's */
};

struct backend_srv {
	struct server	*srv;			/* sorted by name */
	size_t		 n;
};

/* The map files the frontends route by (renderd/haproxy.c names them). */
struct maps {
	char		 ports[PATH_MAX];
	char		 api[PATH_MAX];
};

/*
 * The check intervals the running proxy's servers were given.  A live
 * change gives the servers it adds the arguments of the table it brings,
 * so a cluster that grows slice by slice has the final table's interval
 * on every server, whatever the table served in between would say.
 * Unknown after a reload or a start: the served table's then.  When a
 * cluster's interval changes under servers that run (it crossed a power
 * of two of its check budget), only a reload gives them the new one: the
 * change still goes live, and the servers are stale until the reload the
 * driver asks for when the proxy is idle (hap_given_stale).
 */
struct given {
	char		cluster[64];
	unsigned	shift;
};
static struct {
	int		 known;
	int		 stale;
	int		 check;
	struct given	*g;
	size_t		 n, cap;
} given;

/* Servers put in maintenance whose connections have not finished yet. */
static char	*draining[DRAIN_MAX];
static size_t	 ndraining;

static void
maps_paths(const struct config *c, const struct proxy_conf *px,
    struct maps *m)
{
	snprintf(m->ports, sizeof(m->ports), "%s/%s-ports.map", c->run_dir,
	    px->name);
	snprintf(m->api, sizeof(m->api), "%s/%s-api.map", c->run_dir,
	    px->name);
}

static int
cmp_server(const void *x, const void *y)
{
	return strcmp(((const struct server *)x)->name,
	    ((const struct server *)y)->name);
}

static void
server_set(struct server *s, const char *ip, unsigned port, int weight)
{
	snprintf(s->name, sizeof(s->name), "%s_%u", ip, port);
	route_addr(s->addr, sizeof(s->addr), ip, port);
	s->ip = ip;
	s->port = port;
	s->weight = weight;
}

/* The servers of backend p<port> for pr (NULL: none). */
static void
port_servers(const struct port_route *pr, struct backend_srv *b)
{
	size_t j;
	int w;

	memset(b, 0, sizeof(*b));
	if (pr == NULL || pr->nbackends == 0)
		return;
	if ((b->srv = calloc(pr->nbackends, sizeof(*b->srv))) == NULL)
		fatal("port_servers");
	for (j = 0; j < pr->nbackends; j++)
		if ((w = haproxy_merged_weight(pr, j)) != -1)
			server_set(&b->srv[b->n++], pr->backends[j].ip,
			    pr->backends[j].port, w);
	qsort(b->srv, b->n, sizeof(*b->srv), cmp_server);
}

/* The servers of an API slot holding a (NULL: none). */
static void
api_servers(const struct api_route *a, struct backend_srv *b)
{
	size_t j;

	memset(b, 0, sizeof(*b));
	if (a == NULL || a->nmasters == 0)
		return;
	if ((b->srv = calloc(a->nmasters, sizeof(*b->srv))) == NULL)
		fatal("api_servers");
	for (j = 0; j < a->nmasters; j++)
		if (!api_master_seen(a, j))
			server_set(&b->srv[b->n++], a->masters[j], a->mport, -1);
	qsort(b->srv, b->n, sizeof(*b->srv), cmp_server);
}

/* The servers of a TLSRoute hostname's slot holding sr (NULL: none). */
static void
sni_servers(const struct sni_route *sr, struct backend_srv *b)
{
	size_t j;
	int w;

	memset(b, 0, sizeof(*b));
	if (sr == NULL || sr->nbackends == 0)
		return;
	if ((b->srv = calloc(sr->nbackends, sizeof(*b->srv))) == NULL)
		fatal("sni_servers");
	for (j = 0; j < sr->nbackends; j++)
		if ((w = haproxy_sni_weight(sr, j)) != -1)
			server_set(&b->srv[b->n++], sr->backends[j].ip,
			    sr->backends[j].port, w);
	qsort(b->srv, b->n, sizeof(*b->srv), cmp_server);
}

/* A map file's temporary twin, open for writing. */
static FILE *
map_open(const char *path)
{
	char tmp[PATH_MAX + 8];

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	return fsafe_fopen(tmp, 0600);
}

static int
map_close(FILE *fp, const char *path, int rc)
{
	char tmp[PATH_MAX + 8];

	if (fp == NULL)
		return -1;
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
 * Write the map files atomically from the table: each backend with
 * servers, by its key (the port; a slot's SNI host).
 */
int
hap_write_maps(const struct config *c, const struct proxy_conf *px,
    const struct routes *r)
{
	const struct api_route *a;
	struct maps m;
	size_t s, pool;
	unsigned p;
	long *slot;
	FILE *pf, *af;
	int rc = 0;

	maps_paths(c, px, &m);
	if ((slot = haproxy_api_slots(r, &pool)) == NULL)
		return -1;
	pf = map_open(m.ports);
	af = map_open(m.api);
	if (pf == NULL || af == NULL)
		rc = -1;
	for (s = 0; rc == 0 && s < pool; s++) {
		if (slot[s] == -1)
			continue;
		a = &r->api[slot[s]];
		if (a->nmasters > 0)
			fprintf(af, "%s api%zu\n", a->host, s);
	}
	free(slot);
	/* TLSRoute hostnames: the renderer's slots "tls<n>" */
	if ((slot = haproxy_sni_slots(r, &pool)) == NULL)
		rc = -1;
	for (s = 0; rc == 0 && s < pool; s++)
		if (slot[s] != -1 && r->sni[slot[s]].nbackends > 0)
			fprintf(af, "%s tls%zu\n", r->sni[slot[s]].host, s);
	for (p = 0; rc == 0 && p < 65536; p++)
		if (r->ports[p] != NULL && r->ports[p]->nbackends > 0 &&
		    routes_port_allowed(c, p))
			fprintf(pf, "%u p%u\n", p, p);
	free(slot);
	rc = map_close(pf, m.ports, rc);
	rc = map_close(af, m.api, rc);
	if (rc == -1)
		log_warn("writing the maps");
	return rc;
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
srv_remove(struct hapcli *cl, const char *backend, const char *name, char *err,
    size_t errlen)
{
	char key[512], why[256];
	size_t at;

	snprintf(key, sizeof(key), "%s/%s", backend, name);
	if (hapcli_queue(cl, "set server %s state maint", key) == -1)
		return -1;
	if (hapcli_ask(cl, why, sizeof(why), "del server %s", key) == 0)
		return 0;
	if (hapcli_broken(cl))
		return -1;
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

/*
 * One backend's change, old and new, and what its map does: a key that
 * stops pointing anywhere goes first (del), a key comes or is re-pointed
 * here once the servers are in (add, set).  A move's backend changes at
 * its step, in the order of the moves; the others together.
 */
struct bchange {
	char			 backend[32];
	const char		*map;
	char			 del[256];
	char			 add[256];
	int			 set;
	int			 move;
	struct backend_srv	 o, n;
	/* what the new servers' arguments come from: one of the three */
	const struct port_route	*pr;
	const struct api_route	*api;
	int			 sni;	/* a TLSRoute's: " weight W" */
};

static int
srv_add(struct hapcli *cl, const char *backend, const struct bchange *bc,
    const struct server *s, const struct haproxy_checkplan *cp)
{
	char key[512], why[256], args[256];
	int check = haproxy_checkplan_checks(cp);
	size_t at;

	snprintf(key, sizeof(key), "%s/%s", backend, s->name);
	if (bc->sni)
		snprintf(args, sizeof(args), " weight %d", s->weight);
	else if (s->weight == -1)
		haproxy_api_server_args(args, sizeof(args), cp, bc->api, s->ip,
		    s->port);
	else
		haproxy_server_args(args, sizeof(args), cp, bc->pr, s->weight,
		    s->ip, s->port);
	if (is_draining(key, &at)) {
		/* still there from before, in maintenance: bring it back */
		undrain(at);
		if (hapcli_ask(cl, why, sizeof(why), "del server %s", key) == -1)
			return hapcli_broken(cl) || (s->weight != -1 && hapcli_queue(cl,
			    "set server %s weight %d", key, s->weight) == -1) ?
			    -1 : hapcli_queue(cl, "set server %s state ready", key);
	}
	if (hapcli_queue(cl, "add server %s %s%s", key, s->addr, args) == -1 ||
	    hapcli_queue(cl, "enable server %s", key) == -1)
		return -1;
	/*
	 * An API slot's servers are always checked, a port's while they fit,
	 * a TLSRoute's never.
	 */
	if (!bc->sni && (s->weight == -1 || check) &&
	    hapcli_queue(cl, "enable health %s", key) == -1)
		return -1;
	return 0;
}

/*
 * The commands for one backend, from servers o to n.  adding: the servers
 * new in n, and new weights; otherwise the servers gone from o.
 */
static int
backend_change(struct hapcli *cl, const struct bchange *bc, int adding,
    const struct haproxy_checkplan *cp, char *err, size_t errlen)
{
	const struct backend_srv *o = &bc->o, *n = &bc->n;
	const char *backend = bc->backend;
	const struct server *a, *b;
	size_t i = 0, j = 0;
	int c;

	while (i < o->n || j < n->n) {
		/* an empty side has no array at all */
		a = i < o->n ? &o->srv[i] : NULL;
		b = j < n->n ? &n->srv[j] : NULL;
		c = a == NULL ? 1 : b == NULL ? -1 : cmp_server(a, b);
		if (c < 0) {
			if (!adding && srv_remove(cl, backend, a->name, err,
			    errlen) == -1)
				return -1;
			i++;
			continue;
		}
		if (c > 0) {
			if (adding && srv_add(cl, backend, bc, b, cp) == -1)
				return -1;
			j++;
			continue;
		}
		if (adding && a->weight != b->weight && hapcli_queue(cl,
		    "set server %s/%s weight %d", backend, b->name,
		    b->weight) == -1)
			return -1;
		i++;
		j++;
	}
	return 0;
}


static void
bchanges_free(struct bchange *bc, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(bc[i].o.srv);
		free(bc[i].n.srv);
	}
	free(bc);
}

/* The servers of a table's occupant i of a pool (-1: none). */
static void
slot_servers(const struct routes *r, int sni, long i, struct backend_srv *b)
{
	if (sni)
		sni_servers(i == -1 ? NULL : &r->sni[i], b);
	else
		api_servers(i == -1 ? NULL : &r->api[i], b);
}

/*
 * A pool's changes into bc (room for its pool's entries): the moves
 * first, in their order, then the other slots that change; their number,
 * or -1 (nothing filled) when only a reload can make the change.
 */
static long
slot_changes(const struct routes *old, const struct routes *new, int sni,
    const struct maps *m, struct bchange *bc)
{
	struct slots_plan sp;
	struct bchange *b;
	size_t s, i, n = 0;
	long *at, o, t;

	if (slots_plan(old, new, sni, &sp) == -1)
		return -1;
	if ((at = calloc(sp.pool + 1, sizeof(*at))) == NULL)
		fatal("slot_changes");
	for (s = 0; s < sp.pool; s++)
		at[s] = -1;
	for (i = 0; i < sp.nmoves; i++)
		at[sp.moves[i]] = (long)n++;
	for (s = 0; s < sp.pool; s++)
		if (at[s] == -1 && (sp.os[s] != -1 || sp.ns[s] != -1))
			at[s] = (long)n++;
	for (s = 0; s < sp.pool; s++) {
		if (at[s] == -1)
			continue;
		b = &bc[at[s]];
		snprintf(b->backend, sizeof(b->backend), "%s%zu",
		    sni ? "tls" : "api", s);
		b->map = m->api;
		slot_servers(old, sni, sp.os[s], &b->o);
		slot_servers(new, sni, sp.ns[s], &b->n);
		b->sni = sni;
		b->api = sni || sp.ns[s] == -1 ? NULL : &new->api[sp.ns[s]];
		b->move = sp.from[s] != -1 && sp.from[s] != (long)s;
	}
	/* the map: by whether each host has servers before and after */
	for (s = 0; s < sp.pool; s++) {
		if (at[s] == -1)
			continue;
		b = &bc[at[s]];
		if (sp.os[s] != -1 && b->o.n > 0 && ((t = sp.to[s]) == -1 ||
		    bc[at[t]].n.n == 0))
			snprintf(b->del, sizeof(b->del), "%s",
			    slots_host(old, sni, sp.os[s]));
		if (sp.ns[s] == -1 || b->n.n == 0)
			continue;
		if ((o = sp.from[s]) == (long)s && b->o.n > 0)
			continue;	/* stays, and so does its key */
		snprintf(b->add, sizeof(b->add), "%s",
		    slots_host(new, sni, sp.ns[s]));
		/* moved in: its key pointed at its old slot's servers */
		b->set = o != -1 && o != (long)s && bc[at[o]].o.n > 0;
	}
	free(at);
	slots_plan_free(&sp);
	return (long)n;
}

static int
cmp_given(const void *x, const void *y)
{
	return strcmp(((const struct given *)x)->cluster,
	    ((const struct given *)y)->cluster);
}

static int
given_add(const char *cluster, unsigned shift, void *arg)
{
	(void)arg;
	if (given.n == given.cap) {
		given.cap = given.cap ? 2 * given.cap : 64;
		if ((given.g = reallocarray(given.g, given.cap,
		    sizeof(*given.g))) == NULL)
			fatal("given_add");
	}
	snprintf(given.g[given.n].cluster, sizeof(given.g[0].cluster), "%s",
	    cluster);
	given.g[given.n++].shift = shift;
	return 0;
}

/* What a live change gave the servers: the new table's plan. */
static void
given_set(const struct haproxy_checkplan *cp)
{
	given.n = 0;
	haproxy_checkplan_each(cp, given_add, NULL);
	qsort(given.g, given.n, sizeof(*given.g), cmp_given);
	given.check = haproxy_checkplan_checks(cp);
	given.known = 1;
}

void
hap_forget_given(void)
{
	given.known = given.stale = 0;
}

int
hap_given_stale(void)
{
	return given.stale;
}

/* The servers' intervals against the new plan's, cluster by cluster. */
struct against {
	const struct haproxy_checkplan	*old, *new;
};

static int
given_differs(const char *cluster, unsigned shift, void *arg)
{
	struct against *a = arg;
	struct given key, *g;

	if (!haproxy_checkplan_has(a->new, cluster))
		return 0;	/* gone: its servers go */
	if (given.known) {
		snprintf(key.cluster, sizeof(key.cluster), "%s", cluster);
		if ((g = bsearch(&key, given.g, given.n, sizeof(*given.g),
		    cmp_given)) != NULL)
			shift = g->shift;
		else
			shift = haproxy_check_shift(a->old, cluster);
	}
	return shift != haproxy_check_shift(a->new, cluster) ? -1 : 0;
}

/*
 * Would servers that run keep an interval the new table does not give
 * them (a cluster of old's whose interval changed)?
 */
static int
intervals_differ(const struct haproxy_checkplan *ocp,
    const struct haproxy_checkplan *ncp)
{
	struct against a = { ocp, ncp };

	if (!given.known)
		return haproxy_checkplans_differ(ocp, ncp);
	return haproxy_checkplan_each(ocp, given_differs, &a) == -1;
}

/* hap_needs_reload, with the two tables' check plans at hand. */
static int
reload_needed(const struct routes *old, const struct routes *new, int api,
    const struct haproxy_checkplan *ocp, const struct haproxy_checkplan *ncp)
{
	struct slots_plan sp;
	int sni;

	/* checks on or off: every server's arguments change */
	if ((given.known ? given.check : haproxy_checkplan_checks(ocp)) !=
	    haproxy_checkplan_checks(ncp))
		return 1;
	if (!api)
		return 0;
	for (sni = 0; sni <= 1; sni++) {
		if (slots_plan(old, new, sni, &sp) == -1)
			return 1;
		slots_plan_free(&sp);
	}
	return 0;
}

int
hap_needs_reload(const struct config *c, const struct proxy_conf *px,
    const struct routes *old, const struct routes *new, int api)
{
	struct haproxy_checkplan *ocp, *ncp;
	int rc;

	if ((ocp = haproxy_checkplan(old, c, px)) == NULL ||
	    (ncp = haproxy_checkplan(new, c, px)) == NULL)
		fatal("hap_needs_reload");
	rc = reload_needed(old, new, api, ocp, ncp);
	haproxy_checkplan_free(ocp);
	haproxy_checkplan_free(ncp);
	return rc;
}

int
hap_update(const char *sock, const struct config *c,
    const struct proxy_conf *px, const struct routes *old,
    const struct routes *new, const unsigned *ports, size_t nports, int api,
    char *err, size_t errlen)
{
	struct haproxy_checkplan *cp, *ocp;
	struct bchange *bc;
	struct maps m;
	struct hapcli *cl;
	size_t i, n = 0;
	long na = 0, ns = 0;
	int rc = -1, pass, stale;

	/* the new servers' arguments, exactly as the renderer writes them */
	if ((cp = haproxy_checkplan(new, c, px)) == NULL ||
	    (ocp = haproxy_checkplan(old, c, px)) == NULL)
		fatal("hap_update");
	rc = reload_needed(old, new, api, ocp, cp);
	stale = intervals_differ(ocp, cp);
	haproxy_checkplan_free(ocp);
	if (rc) {
		haproxy_checkplan_free(cp);
		return 1;
	}
	rc = -1;
	maps_paths(c, px, &m);
	/* the pool is the smallest power of 2 from 16 above 2 x clusters */
	if ((bc = calloc(nports + (api ? 4 * (new->napi + new->nsni) + 32 :
	    0) + 1, sizeof(*bc))) == NULL)
		fatal("hap_update");
	if (api && ((na = slot_changes(old, new, 0, &m, bc)) == -1 ||
	    (ns = slot_changes(old, new, 1, &m, bc + na)) == -1)) {
		/* reload_needed() said live: the same plan cannot say not */
		fatalx("hap_update: slot plans disagree");
	}
	n = (size_t)(na + ns);
	for (i = 0; i < nports; i++) {
		snprintf(bc[n].backend, sizeof(bc[n].backend), "p%u", ports[i]);
		bc[n].map = m.ports;
		port_servers(old->ports[ports[i]], &bc[n].o);
		port_servers(new->ports[ports[i]], &bc[n].n);
		bc[n].pr = new->ports[ports[i]];
		if (bc[n].o.n > 0 && bc[n].n.n == 0)
			snprintf(bc[n].del, sizeof(bc[n].del), "%u", ports[i]);
		if (bc[n].o.n == 0 && bc[n].n.n > 0)
			snprintf(bc[n].add, sizeof(bc[n].add), "%u", ports[i]);
		n++;
	}
	if ((cl = hapcli_get(sock)) == NULL) {
		snprintf(err, errlen, "runtime API %s: %s", sock,
		    strerror(errno));
		bchanges_free(bc, n);
		haproxy_checkplan_free(cp);
		return -1;
	}
	/*
	 * The map keys that go, first: no new connection for what leaves.
	 * Then the hosts that move to another slot, in the plan's order:
	 * the slot (no key points at it any more) gets the host's servers,
	 * then the key is re-pointed; the slot it left is emptied by the
	 * next move, or with the rest.  Then the servers that come, then the
	 * servers that go: a backend re-pointed from one address to another
	 * is never empty in between.  The keys that appear, last: their
	 * servers are in place.
	 */
	for (i = 0; i < n; i++)
		if (bc[i].del[0] != '\0' && hapcli_queue(cl,
		    "del map %s %s", bc[i].map, bc[i].del) == -1)
			goto out;
	for (i = 0; i < n; i++) {
		if (!bc[i].move)
			continue;
		for (pass = 1; pass >= 0; pass--)
			if (backend_change(cl, &bc[i], pass, cp, err,
			    errlen) == -1)
				goto out;
		if (bc[i].add[0] != '\0' && hapcli_queue(cl,
		    "%s map %s %s %s", bc[i].set ? "set" : "add", bc[i].map,
		    bc[i].add, bc[i].backend) == -1)
			goto out;
	}
	for (pass = 1; pass >= 0; pass--)
		for (i = 0; i < n; i++)
			if (!bc[i].move && backend_change(cl, &bc[i], pass,
			    cp, err, errlen) == -1)
				goto out;
	for (i = 0; i < n; i++)
		if (!bc[i].move && bc[i].add[0] != '\0' && hapcli_queue(cl,
		    "add map %s %s %s", bc[i].map, bc[i].add,
		    bc[i].backend) == -1)
			goto out;
	rc = 0;
 out:
	if (hapcli_done(cl, err, errlen) == -1)
		rc = -1;
	else if (rc == 0) {
		given_set(cp);
		given.stale |= stale;
	}
	haproxy_checkplan_free(cp);
	bchanges_free(bc, n);
	return rc;
}

void
hap_drain(const char *sock)
{
	char err[256];
	struct hapcli *cl;
	size_t i;

	if (ndraining == 0 || (cl = hapcli_get(sock)) == NULL)
		return;
	for (i = 0; i < ndraining; )
		if (hapcli_ask(cl, err, sizeof(err), "del server %s",
		    draining[i]) == 0)
			undrain(i);
		else
			i++;
	hapcli_done(cl, err, sizeof(err));
}

void
hap_forget_drains(void)
{
	while (ndraining > 0)
		undrain(ndraining - 1);
}
