/*
 * watcherd — a cluster's objects as observations for allocd, in one loop:
 * every route object of every kind (after a relist, or a change to what
 * routes are computed from) or the touched ones alone, each kind's routes
 * by its struct route_kind; then the write-backs.
 *
 * Observations are level-triggered: after every (re)list of a cluster a
 * full resync (SYNC_BEGIN, every route, SYNC_END) tells allocd the whole
 * truth for it; between resyncs only the routes whose observation changed
 * are sent, and a route that was sent and is no more is said to be gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "watcherd.h"

/* An observation sent, to compare the next with, and to say it is gone. */
struct sent {
	int		kind;
	size_t		route;
	char		ns[64];
	char		name[254];
	size_t		len;
	unsigned char	data[];
};

const struct route_kind *route_kinds[KIND_COUNT] = { &vs_kind, &tcp_kind,
    &tls_kind };

static void
sent_free(struct cluster *cl)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&cl->sent, &it)) != NULL)
		free(e->val);
	smap_free(&cl->sent);
}

void
compute_forget(struct cluster *cl)
{
	sent_free(cl);
}


/* ROUTE_GONE (SNI_GONE for a kind of SNI routes) for what s sent. */
static void
send_gone(struct cluster *cl, const struct sent *s)
{
	const struct route_kind *k = route_kinds[s->kind];
	struct event ev;

	event_init(&ev, k->gone_type ? k->gone_type : EV_ROUTE_GONE);
	event_set_str(&ev, F_CLUSTER, cl->id);
	event_set_str(&ev, F_NS, s->ns);
	event_set_str(&ev, F_NAME, s->name);
	if (k->rk[0] != '\0' && ev.type == EV_ROUTE_GONE)
		event_set_str(&ev, F_RKIND, k->rk);
	ev.route = s->route;
	ev.has |= F_ROUTE;
	obs_send(&ev);
}

/*
 * Send ev unless the last one sent for this owner was the same.  A route
 * that must lose what it had (cut) is said to be gone first: allocd keeps
 * a refused route's port and backends, and those must not be served.
 */
static void
send_if_changed(struct cluster *cl, struct smap *now, int k,
    const struct robj *o, size_t r, struct event *ev, int force, int cut)
{
	char owner[EV_OWNERLEN + 24];
	struct sent *old, *s;
	unsigned char *buf;
	size_t len;
	int changed;

	decision_owner(owner, sizeof(owner), cl->id, route_kinds[k]->rk, o->ns,
	    o->name, r);
	old = smap_get(&cl->sent, owner);
	if (event_encode(ev, &buf, &len) == -1)
		fatalx("cannot encode a route");
	if ((s = malloc(sizeof(*s) + len)) == NULL)
		fatal("malloc");
	s->kind = k;
	s->route = r;
	strcpy(s->ns, o->ns);
	strcpy(s->name, o->name);
	s->len = len;
	memcpy(s->data, buf, len);
	free(buf);
	changed = old == NULL || old->len != len ||
	    memcmp(old->data, s->data, len) != 0;
	if (cut && changed)
		send_gone(cl, s);
	if (force || changed)
		obs_send(ev);
	free(smap_put(now, owner, s));
}

/* How many routes of o are observed: one, to carry why it is refused. */
static size_t
robj_routes(const struct robj *o)
{
	return o == NULL || !o->expose ? 0 : o->why[0] ? 1 : o->nroutes;
}

/*
 * The routes of one object into now; with now the map of what was sent
 * (a single object looked at), the routes it had and has no more (an
 * object's owners are always routes 0..n-1) are said to be gone.
 */
static void
robj_compute(struct cluster *cl, int k, const char *key, struct robj *o,
    const struct bsrc *src, struct smap *now, int force)
{
	char owner[EV_OWNERLEN + 24];
	const struct route_kind *kd = route_kinds[k];
	struct sent *was;
	struct event ev;
	size_t r, n;
	int cut;

	if (o != NULL && kd->prepare != NULL)
		kd->prepare(cl, o);
	n = robj_routes(o);
	for (r = 0; r < n; r++) {
		if ((cut = kd->obs(cl, o, r, src, &ev)) == -1) {
			/* nothing to send: what was sent is gone */
			decision_owner(owner, sizeof(owner), cl->id, kd->rk,
			    o->ns, o->name, r);
			if (now == &cl->sent &&
			    (was = smap_del(&cl->sent, owner)) != NULL) {
				send_gone(cl, was);
				free(was);
			}
			continue;
		}
		send_if_changed(cl, now, k, o, r, &ev, force, cut);
		event_free(&ev);
	}
	if (now != &cl->sent)
		return;
	for (r = n;; r++) {
		snprintf(owner, sizeof(owner), "%s/%s/%zu%s%s", cl->id, key, r,
		    kd->rk[0] ? "/" : "", kd->rk);
		if ((was = smap_del(&cl->sent, owner)) == NULL)
			break;
		send_gone(cl, was);
		free(was);
	}
}

/* Every informer that is to run has listed. */
static int
cluster_listed(const struct cluster *cl)
{
	int i, g;

	for (i = 0; i < RES_COUNT; i++) {
		g = informer_group(i);
		/* a group the server does not serve is waited for no more */
		if (informer_wanted(cl, i) && !cl->inf[i].listed &&
		    (!cl->disc[g].known || cl->ver[i][0] != '\0'))
			return 0;
	}
	return 1;
}

/* A resync's ends: an id no other watcherd sends (shard_sync_id). */
static void
sync_mark(struct cluster *cl, int type)
{
	static uint64_t sid;
	struct event ev;

	if (type == EV_SYNC_BEGIN)
		sid = shard_sync_id();
	event_init(&ev, type);
	event_set_str(&ev, F_CLUSTER, cl->id);
	ev.sid = sid;
	ev.has |= F_SID;
	obs_send(&ev);
}

/*
 * Turn the cluster's objects into route observations: all of them (after
 * a relist, or a change to a Service, a Node, an EndpointSlice) or the
 * touched ones alone.  Only once every informer has listed: before that,
 * a missing Service would read as an error and a missing route object as
 * a release.
 */
void
compute_routes(struct cluster *cl, int all, uint64_t t)
{
	struct smap_iter it;
	struct smap_ent *e;
	struct smap now = { NULL, 0, 0 }, *to;
	struct robj *o;
	struct bsrc src;
	int k, pass, resync = all && cl->need_resync;

	if (!cluster_listed(cl))
		return;		/* the list's end computes them all */
	bsrc_init(cl, &src);
	if (resync)
		sync_mark(cl, EV_SYNC_BEGIN);
	to = all ? &now : &cl->sent;
	/*
	 * Objects that carry an address first: after a lost store, their
	 * ports are adopted before anything new is assigned.
	 */
	for (pass = 0; pass < (all ? 2 : 1); pass++)
	for (k = 0; k < KIND_COUNT; k++) {
		const struct smap *m = all ? &cl->objs[route_kinds[k]->res] :
		    &cl->touched[k];

		for (it = (struct smap_iter){ 0, NULL };
		    (e = smap_next(m, &it)) != NULL;) {
			o = smap_get(&cl->objs[route_kinds[k]->res], e->key);
			if (all && (o == NULL || (o->address != NULL) !=
			    (pass == 0)))
				continue;
			robj_compute(cl, k, e->key, o, &src, to, resync);
			if (!all && o != NULL)
				writeback_one(cl, route_kinds[k], e->key, o,
				    t);
		}
	}
	bsrc_free(&src);
	for (k = 0; k < KIND_COUNT; k++)
		smap_free(&cl->touched[k]);
	if (!all)
		return;
	/* what was sent before and is not there now is gone */
	it = (struct smap_iter){ 0, NULL };
	while (!resync && (e = smap_next(&cl->sent, &it)) != NULL)
		if (smap_get(&now, e->key) == NULL)
			send_gone(cl, e->val);
	sent_free(cl);
	cl->sent = now;
	if (resync && obs_failed) {
		/* something of this resync was not sent: it must not end */
		log_warnx("%s: resync incomplete, will send it again",
		    cl->name);
		return;
	}
	if (resync) {
		sync_mark(cl, EV_SYNC_END);
		cl->need_resync = 0;
		cl->synced_once = 1;
		log_info("%s: resync sent: %zu routes", cl->name,
		    cl->sent.n);
	}
	compute_writeback(cl, t);
}

/*
 * Every write-back of the cluster: route objects' annotations and status
 * (a pass from where the last stopped: a pass that starts over at each
 * free slot would cost every route object per PATCH), the Gateways'
 * status.
 */
void
compute_writeback(struct cluster *cl, uint64_t now)
{
	int k;

	cl->wb_more = 0;
	for (k = 0; k < KIND_COUNT; k++)
		writeback_pass(cl, route_kinds[k], now);
	gw_writeback(cl);
}

