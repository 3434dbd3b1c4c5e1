/*
 * watcherd — clusters: their lifecycle (as the sources say), their
 * informers, and the objects those see, kept for the computation of their
 * routes (compute.c).  A route object that changes (or whose decision
 * arrives) is touched, to be looked at alone; anything else routes are
 * computed from (a Service, a Node, an EndpointSlice, a Gateway, a
 * ReferenceGrant) or a relist makes the cluster dirty: all looked at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "valid.h"
#include "watcherd.h"

unsigned long		clusters_sweeps;

static struct smap	clusters;	/* id -> struct cluster */

struct cluster *
cluster_find(const char *id)
{
	return smap_get(&clusters, id);
}

static void
send_cluster_up(struct cluster *cl)
{
	struct event ev;

	event_init(&ev, EV_CLUSTER_UP);
	event_set_str(&ev, F_CLUSTER, cl->id);
	event_set_str(&ev, F_CNAME, cl->name);
	event_set_str(&ev, F_HOST, cl->host);
	memcpy(ev.masters, cl->masters, sizeof(ev.masters));
	ev.nmasters = cl->nmasters;
	ev.mport = cl->mport;
	ev.has |= F_MASTERS | F_MPORT;
	obs_send(&ev);
}

static void
send_cluster_down(const char *id)
{
	struct event ev;

	event_init(&ev, EV_CLUSTER_DOWN);
	event_set_str(&ev, F_CLUSTER, id);
	obs_send(&ev);
}

static const char *
backend_name(int mode)
{
	return mode == BACKEND_ENDPOINTS ? "endpoints" : "nodeport";
}

/* The route kind whose objects res holds, or -1. */
static int
kind_of(int res)
{
	int k;

	for (k = 0; k < KIND_COUNT; k++)
		if (route_kinds[k]->res == res)
			return k;
	return -1;
}

static void
objs_free(struct cluster *cl, int res)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&cl->objs[res], &it)) != NULL) {
		if (kind_of(res) != -1)
			robj_free(e->val);
		else
			free(e->val);
	}
	smap_free(&cl->objs[res]);
}

static void
svc_routes_free(struct cluster *cl)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&cl->svc_routes, &it)) != NULL) {
		smap_free(e->val);
		free(e->val);
	}
	smap_free(&cl->svc_routes);
}

static const struct informer_ops inf_ops;

/* Stop talking to the cluster's API; what we know of it is dropped. */
static void
cluster_disconnect(struct cluster *cl)
{
	int r, g;

	eps_index_free(&cl->eps_idx);
	svc_routes_free(cl);
	for (r = 0; r < RES_COUNT; r++) {
		informer_stop(&cl->inf[r]);
		informer_init(&cl->inf[r], cl, r, &inf_ops);
		objs_free(cl, r);
		cl->ver[r][0] = '\0';
	}
	for (g = 0; g < GRP_COUNT; g++) {
		http_cancel(cl->disc[g].req);
		memset(&cl->disc[g], 0, sizeof(cl->disc[g]));
	}
}

/*
 * Forget cl.  down: it is gone, allocd is told so; else it is another
 * shard's now, and allocd keeps it as it is for its new owner.
 */
static void
cluster_remove(struct cluster *cl, int down)
{
	int r;

	if (down)
		log_info("%s: cluster %s is gone", cl->name, cl->id);
	else
		log_info("%s: cluster %s is another shard's now: let go",
		    cl->name, cl->id);
	cluster_disconnect(cl);
	if (cl->bind_req != NULL)
		free(cl->bind_req->arg);
	http_cancel(cl->bind_req);
	compute_forget(cl);
	writeback_cancel(cl);
	for (r = 0; r < KIND_COUNT; r++)
		smap_free(&cl->touched[r]);
	creds_free(&cl->creds);
	if (down)
		send_cluster_down(cl->id);
	smap_del(&clusters, cl->id);
	free(cl);
}

struct cluster *
cluster_upsert(const char *id, const char *name, const char *host,
    char masters[][EV_IPLEN], size_t nmasters, unsigned mport,
    const struct cluster_source *src)
{
	struct cluster *cl = smap_get(&clusters, id);
	int r, changed;

	/* another shard's: every source skips them first; this is the net */
	if (!shard_mine(id) || !valid_cluster_id(id) ||
	    !valid_dns_label(name) ||
	    !valid_dns_subdomain(host) || nmasters == 0 ||
	    nmasters > EV_MAX_MASTERS || mport == 0 || mport > 65535)
		return NULL;
	if (cl == NULL) {
		if ((cl = calloc(1, sizeof(*cl))) == NULL)
			fatal("cluster");
		strcpy(cl->id, id);
		for (r = 0; r < RES_COUNT; r++)
			informer_init(&cl->inf[r], cl, r, &inf_ops);
		cl->need_resync = 1;
		cl->backend = config_backend(&conf, name);
		smap_put(&clusters, id, cl);
		log_info("%s: cluster %s at %s:%u, routed as %s, backends by "
		    "%s", name, id, masters[0], mport, host,
		    backend_name(cl->backend));
	}
	changed = strcmp(cl->name, name) != 0 || strcmp(cl->host, host) != 0 ||
	    cl->nmasters != nmasters || cl->mport != mport ||
	    memcmp(cl->masters, masters, nmasters * EV_IPLEN) != 0;
	cl->src = src;
	cl->seen = 1;
	if (changed && config_backend(&conf, name) != cl->backend) {
		/* renamed into another mode: other informers, other routes */
		cluster_disconnect(cl);
		cl->backend = config_backend(&conf, name);
		cl->need_resync = 1;
		log_info("%s: backends by %s now, its informers start over",
		    name, backend_name(cl->backend));
	}
	if (changed) {
		strcpy(cl->name, name);
		strcpy(cl->host, host);
		memset(cl->masters, 0, sizeof(cl->masters));
		memcpy(cl->masters, masters, nmasters * EV_IPLEN);
		cl->nmasters = nmasters;
		cl->mport = mport;
		send_cluster_up(cl);
	}
	return cl;
}

void
cluster_set_creds(struct cluster *cl, struct creds *c)
{
	struct creds *o = &cl->creds;

	if (cl->have_creds && strcmp(o->server, c->server) == 0 &&
	    !strcmp(o->ca_pem ? o->ca_pem : "", c->ca_pem ? c->ca_pem : "") &&
	    !strcmp(o->token ? o->token : "", c->token ? c->token : "") &&
	    !strcmp(o->cert_pem ? o->cert_pem : "",
	    c->cert_pem ? c->cert_pem : "") &&
	    !strcmp(o->token_file ? o->token_file : "",
	    c->token_file ? c->token_file : "")) {
		creds_free(c);
		return;
	}
	if (cl->have_creds) {
		log_info("%s: new credentials, its requests start over",
		    cl->name);
		cluster_disconnect(cl);
	}
	creds_free(&cl->creds);
	cl->creds = *c;
	cl->have_creds = 1;
	cl->need_resync = 1;
}

/*
 * The API server said 401: the token expired or was rotated.  Credentials
 * are read again from where they came from (the source's refused); new
 * credentials restart the informers (cluster_set_creds).
 */
static void
cluster_creds_refused(struct cluster *cl)
{
	if (cl->src->refused != NULL)
		cl->src->refused(cl);
}

void
clusters_mark(const struct cluster_source *src)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&clusters, &it)) != NULL)
		if (((struct cluster *)e->val)->src == src)
			((struct cluster *)e->val)->seen = 0;
	shard_poll_asked(src->id, decisions_seq());
}

void
clusters_sweep(const struct cluster_source *src)
{
	struct smap_iter it;
	struct smap_ent *e;
	struct cluster *cl;

	for (;;) {
		it = (struct smap_iter){ 0, NULL };
		while ((e = smap_next(&clusters, &it)) != NULL) {
			cl = e->val;
			if (cl->src == src && !cl->seen)
				break;
		}
		if (e == NULL)
			break;
		cluster_remove(cl, 1);
	}
	shard_polled(src->id);
	clusters_sweeps++;
}

/* The shards were counted again: what is no longer ours, we let go. */
void
clusters_let_go(void)
{
	struct smap_iter it;
	struct smap_ent *e;

	for (;;) {
		it = (struct smap_iter){ 0, NULL };
		while ((e = smap_next(&clusters, &it)) != NULL)
			if (!shard_mine(e->key))
				break;
		if (e == NULL)
			return;
		cluster_remove(e->val, 0);
	}
}

/* Objects. */

/*
 * The route object key of kind k, named by o, in (add) or out of the set
 * of each Service its destinations name, whether that Service exists or
 * not: a Service that comes, changes or goes touches those objects alone,
 * where it made the whole cluster's routes computed again.
 */
static void
svc_routes_set(struct cluster *cl, int k, const char *key,
    const struct robj *o, int add)
{
	char svc[384], okey[400];
	struct smap *set;
	size_t r, i;

	if (o == NULL)
		return;
	snprintf(okey, sizeof(okey), "%d/%s", k, key);
	for (r = 0; r < o->nalloc; r++)
		for (i = 0; i < o->routes[r].nd; i++) {
			route_service_key(o->ns, o->routes[r].d[i].host, svc);
			if (svc[0] == '\0')
				continue;
			set = smap_get(&cl->svc_routes, svc);
			if (add) {
				if (set == NULL) {
					if ((set = calloc(1, sizeof(*set))) ==
					    NULL)
						fatal("calloc");
					smap_put(&cl->svc_routes, svc, set);
				}
				smap_put(set, okey, cl);
			} else if (set != NULL) {
				smap_del(set, okey);
				if (set->n == 0) {
					smap_del(&cl->svc_routes, svc);
					smap_free(set);
					free(set);
				}
			}
		}
}

/* The route objects that name the Service svc ("ns/name") are touched. */
static void
svc_touch(struct cluster *cl, const char *svc)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct smap *set;

	if (svc[0] == '\0' || (set = smap_get(&cl->svc_routes, svc)) == NULL)
		return;
	/* "k/ns/name": one digit of kind */
	while ((e = smap_next(set, &it)) != NULL)
		smap_put(&cl->touched[e->key[0] - '0'], e->key + 2, cl);
}

static void
obj_store(struct cluster *cl, int res, const char *key, void *val)
{
	char svc[384];
	void *old;
	int k = kind_of(res);

	old = val ? smap_put(&cl->objs[res], key, val) :
	    smap_del(&cl->objs[res], key);
	if (k != -1) {
		svc_routes_set(cl, k, key, old, 0);
		svc_routes_set(cl, k, key, val, 1);
		robj_free(old);
		smap_put(&cl->touched[k], key, cl);
		return;
	}
	switch (res) {
	case RES_SVC:
		svc_touch(cl, key);
		break;
	case RES_EPS:
		/* a slice may change Service: both are touched */
		if (old != NULL) {
			eps_index_del(&cl->eps_idx, key, old);
			eps_service_key(key, old, svc);
			svc_touch(cl, svc);
		}
		if (val != NULL) {
			eps_index_put(&cl->eps_idx, key, val);
			eps_service_key(key, val, svc);
			svc_touch(cl, svc);
		}
		break;
	default:
		/* Nodes, Gateways, ReferenceGrants: every route may change */
		cl->dirty = 1;
	}
	free(old);
}

/*
 * An object whose name or namespace the API server would not have taken
 * (or a proxy in between made up) is ignored, and named in the log as far
 * as it safely can be: cut short, every unusual byte a '?'.
 */
static void
invalid_name(struct cluster *cl, int res, const char *ns, const char *name)
{
	char sns[40], sname[72];

	snprintf(sns, sizeof(sns), "(none)");
	snprintf(sname, sizeof(sname), "(none)");
	if (ns != NULL)
		valid_sanitize(sns, sizeof(sns), ns);
	if (name != NULL)
		valid_sanitize(sname, sizeof(sname), name);
	log_warnx("%s: an object with an invalid name was ignored: %s %s%s%s",
	    cl->name, informer_kind(res), informer_namespaced(res) ? sns : "",
	    informer_namespaced(res) ? "/" : "", sname);
}

/* A route object as its kind reads it; NULL when it is none of ours. */
static struct robj *
robj_parse(struct cluster *cl, int k, const char *ns, const char *name,
    json_t *obj)
{
	struct robj *o;

	if ((o = calloc(1, sizeof(*o))) == NULL)
		fatal("robj");
	strcpy(o->ns, ns);
	strcpy(o->name, name);
	route_kinds[k]->parse(cl, o, obj);
	/* keep only what is ours to route or to clean */
	if (!o->expose && !o->address && !o->error) {
		robj_free(o);
		return NULL;
	}
	return o;
}

static void
cluster_object(struct cluster *cl, int res, const char *type, json_t *obj)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	char key[384];
	void *val = NULL;
	int k = kind_of(res);

	if (name == NULL || !valid_k8s_name(name) ||
	    (informer_namespaced(res) && (ns == NULL ||
	    !valid_dns_label(ns)))) {
		invalid_name(cl, res, ns, name);
		return;
	}
	snprintf(key, sizeof(key), "%s/%s", informer_namespaced(res) ? ns : "",
	    name);
	if (strcmp(type, "DELETED") != 0) {
		if (k != -1)
			val = robj_parse(cl, k, ns, name, obj);
		else if (res == RES_SVC)
			val = svc_parse(cl, key, obj);
		else if (res == RES_NODE)
			val = node_parse(obj);
		else if (res == RES_EPS)
			val = eps_parse(cl, key, obj);
		else if (res == RES_GWC)
			val = gwc_parse(obj);
		else if (res == RES_GW)
			val = gw_parse(obj);
		else if (res == RES_REFG)
			val = refgrant_parse(obj);
	}
	obj_store(cl, res, key, val);
}

static void
cluster_object_gone(struct cluster *cl, int res, const char *key)
{
	obj_store(cl, res, key, NULL);
}

static void
cluster_list_end(struct cluster *cl, int res)
{
	(void)res;
	/* every (re)list is followed by a resync of the whole cluster */
	cl->need_resync = 1;
	cl->dirty = 1;
}

static const struct informer_ops inf_ops = {
	.object = cluster_object,
	.gone = cluster_object_gone,
	.listed = cluster_list_end,
	.refused = cluster_creds_refused,
};

static void
cluster_timer(struct cluster *cl, uint64_t now)
{
	int r;

	if (!cl->have_creds) {
		if (cl->src->bind != NULL)
			cl->src->bind(cl, now);
		return;
	}
	discover(cl, now);
	for (r = 0; r < RES_COUNT; r++)
		if (informer_wanted(cl, r) && (cl->ver[r][0] != '\0' ||
		    informer_group_name(informer_group(r)) == NULL))
			informer_timer(&cl->inf[r], now);
	if (cl->dirty) {
		cl->dirty = 0;
		compute_routes(cl, 1, now);
	} else {
		for (r = 0; r < KIND_COUNT; r++)
			if (cl->touched[r].n > 0)
				break;
		if (r < KIND_COUNT)
			compute_routes(cl, 0, now);
	}
	if (cl->patch_hold != 0 && now >= cl->patch_hold) {
		cl->patch_hold = 0;
		compute_writeback(cl, now);
	}
	/* the changes put off first, then a pass that stopped short */
	if (cl->owed != NULL && cl->patching.n < WB_INFLIGHT)
		writeback_owed(cl, now);
	if (cl->wb_more && cl->patching.n < WB_INFLIGHT)
		compute_writeback(cl, now);
}

void
clusters_timer(uint64_t now)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&clusters, &it)) != NULL)
		cluster_timer(e->val, now);
}

/* allocd restarted, or lost what we sent: tell it everything again. */
void
clusters_resync_all(void)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct cluster *cl;

	while ((e = smap_next(&clusters, &it)) != NULL) {
		cl = e->val;
		send_cluster_up(cl);
		cl->need_resync = 1;
		cl->dirty = 1;
	}
}

/* The name of a cluster whose first resync is still to be sent, or NULL. */
const char *
clusters_unsynced(void)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&clusters, &it)) != NULL)
		if (!((struct cluster *)e->val)->synced_once)
			return ((struct cluster *)e->val)->name;
	return NULL;
}

/* Every cluster's routes and write-back are looked at again. */
void
clusters_dirty_all(void)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&clusters, &it)) != NULL)
		((struct cluster *)e->val)->dirty = 1;
}

/* A decision of allocd's: the object it concerns is looked at again. */
void
clusters_alloc_event(const struct event *ev)
{
	struct cluster *cl;
	char key[sizeof(ev->ns) + sizeof(ev->name) + 1];
	const char *rk = ev->has & F_RKIND ? ev->rkind : "";
	int k;

	if (!decisions_apply(ev) || (cl = cluster_find(ev->cluster)) == NULL)
		return;
	for (k = 0; k < KIND_COUNT; k++)
		if (strcmp(route_kinds[k]->rk, rk) == 0)
			break;
	if (k == KIND_COUNT)
		return;
	snprintf(key, sizeof(key), "%s/%s", ev->ns, ev->name);
	smap_put(&cl->touched[k], key, cl);
}

void
clusters_alloc_reset(void)
{
	decisions_reset();
	shard_polls_void();	/* they counted allocd's seqs of before */
	clusters_dirty_all();
}

/*
 * Clusters allocd routes that are this shard's and that no source names
 * any more (they went while their owner was down, or before it owned
 * them): tell allocd they are gone.  Only those allocd had before every
 * source's last poll was asked: a cluster another owner has just brought
 * up is not in an answer asked before it.  Called once every configured
 * source has completed a poll, after each sweep.
 */
void
clusters_reconcile_alloc(void)
{
	struct smap_iter it = { 0, NULL };
	const char *id;
	uint64_t since, upto = shard_polled_upto();

	while ((id = decisions_cluster_next(&it, &since)) != NULL)
		if (shard_mine(id) && since <= upto && cluster_find(id) ==
		    NULL) {
			log_info("cluster %s: routed by allocd, named by no "
			    "source: down", id);
			shard_downs++;
			send_cluster_down(id);
		}
}
