/*
 * watcherd — clusters: what their informers see, and the observations that
 * follow from it (a route's computation is in route.c, the write-back in
 * writeback.c).
 *
 * Observations are level-triggered: after every (re)list of a cluster a
 * full resync (SYNC_BEGIN, every route, SYNC_END) tells allocd the whole
 * truth for it; between resyncs only the routes whose observation changed
 * are sent.  A VirtualService that changes (or whose decision arrives)
 * is looked at alone; a Service, a Node, an EndpointSlice or a relist
 * looks at them all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "valid.h"
#include "watcherd.h"

struct sent {
	size_t		len;
	unsigned char	data[];
};

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

void
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

/* Nodes for nodeport, EndpointSlices for endpoints; the rest always. */
int
cluster_watches(const struct cluster *cl, int res)
{
	switch (res) {
	case RES_NODE:
		return cl->backend == BACKEND_NODEPORT;
	case RES_EPS:
		return cl->backend == BACKEND_ENDPOINTS;
	default:
		return 1;
	}
}

static void
vs_free(struct vs_obj *vs)
{
	size_t i;

	if (vs == NULL)
		return;
	for (i = 0; i < vs->nalloc; i++)
		free(vs->routes[i].d);
	free(vs->routes);
	free(vs->address);
	free(vs->error);
	free(vs->proof);
	free(vs);
}

static void
objs_free(struct cluster *cl, int res)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&cl->objs[res], &it)) != NULL) {
		if (res == RES_VS)
			vs_free(e->val);
		else
			free(e->val);
	}
	smap_free(&cl->objs[res]);
}

static void
sent_free(struct cluster *cl)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&cl->sent, &it)) != NULL)
		free(e->val);
	smap_free(&cl->sent);
}

/* Stop talking to the cluster's API; what we know of it is dropped. */
static void
cluster_disconnect(struct cluster *cl)
{
	int r;

	for (r = 0; r < RES_COUNT; r++) {
		informer_stop(&cl->inf[r]);
		informer_init(&cl->inf[r], cl, r);
		objs_free(cl, r);
	}
	http_cancel(cl->disc_req);
	cl->disc_req = NULL;
	cl->istio[0] = '\0';
	cl->disc_at = 0;
}

/*
 * Forget cl.  down: it is gone, allocd is told so; else it is another
 * shard's now, and allocd keeps it as it is for its new owner.
 */
static void
cluster_remove(struct cluster *cl, int down)
{
	if (down)
		log_info("%s: cluster %s is gone", cl->name, cl->id);
	else
		log_info("%s: cluster %s is another shard's now: let go",
		    cl->name, cl->id);
	cluster_disconnect(cl);
	if (cl->bind_req != NULL)
		free(cl->bind_req->arg);
	http_cancel(cl->bind_req);
	sent_free(cl);
	smap_free(&cl->patching);
	smap_free(&cl->touched);
	creds_free(&cl->creds);
	if (down)
		send_cluster_down(cl->id);
	smap_del(&clusters, cl->id);
	free(cl);
}

struct cluster *
cluster_upsert(const char *id, const char *name, const char *host,
    char masters[][EV_IPLEN], size_t nmasters, unsigned mport, int source)
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
			informer_init(&cl->inf[r], cl, r);
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
	cl->source = source;
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
 * are read again from where they came from: PKS is asked for a new bind;
 * a token file is looked at now; the kubeconfig folder is read again when
 * the file changes, by its own poll.  New credentials restart the
 * informers (cluster_set_creds).
 */
void
cluster_creds_refused(struct cluster *cl)
{
	if (cl->source == SRC_PKS && cl->bind_req == NULL) {
		log_warnx("%s: credentials refused (401), asking PKS for new "
		    "ones", cl->name);
		pks_bind(cl);
	} else if (cl->source == SRC_KUBECONFIG) {
		log_warnx("%s: credentials refused (401), waiting for a new "
		    "kubeconfig%s", cl->name, cl->creds.token_file ?
		    " or token file" : "");
		kcdir_token(cl);
	}
}

void
cluster_auth(struct cluster *cl, struct http_auth *a)
{
	memset(a, 0, sizeof(*a));
	a->ca_pem = cl->creds.ca_pem;
	a->bearer = cl->creds.token;
	a->cert_pem = cl->creds.cert_pem;
	a->key_pem = cl->creds.key_pem;
	a->connect_to = master_route(cl);
}

void
clusters_mark(int source)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&clusters, &it)) != NULL)
		if (((struct cluster *)e->val)->source == source)
			((struct cluster *)e->val)->seen = 0;
}

void
clusters_sweep(int source)
{
	struct smap_iter it;
	struct smap_ent *e;
	struct cluster *cl;

	for (;;) {
		it = (struct smap_iter){ 0, NULL };
		while ((e = smap_next(&clusters, &it)) != NULL) {
			cl = e->val;
			if (cl->source == source && !cl->seen)
				break;
		}
		if (e == NULL)
			return;
		cluster_remove(cl, 1);
	}
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

const char *
annotation(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(
	    json_object_get(obj, "metadata"), "annotations"), key));
}

char *
dup_or_null(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		fatal("strdup");
	return d;
}

static void
vs_parse(struct vs_obj *vs, json_t *obj)
{
	const char *expose = annotation(obj, ANN_EXPOSE);
	const char *want = annotation(obj, ANN_PORT);
	json_t *tcp, *route, *dst, *d;
	size_t i, j;
	unsigned long n;
	char *end;

	vs->expose = expose != NULL && strcasecmp(expose, "true") == 0;
	vs->address = dup_or_null(annotation(obj, ANN_ADDRESS));
	vs->error = dup_or_null(annotation(obj, ANN_ERROR));
	vs->proof = dup_or_null(annotation(obj, ANN_PROOF));
	vs_read_uid(vs, obj);
	if (expose != NULL && !vs->expose && strcasecmp(expose, "false") != 0) {
		/* "yes" or " true" is a mistake to tell, not a silent no */
		vs->expose = 1;
		snprintf(vs->why, sizeof(vs->why), "%s must be true or false",
		    ANN_EXPOSE);
		return;
	}
	if (!vs->expose)
		return;
	if (want != NULL) {
		n = strtoul(want, &end, 10);
		if (*want < '0' || *want > '9' || *end != '\0' || n == 0 ||
		    n > 65535) {
			snprintf(vs->why, sizeof(vs->why),
			    "%s is not a port number", ANN_PORT);
			return;
		}
		vs->want = (unsigned)n;
	}
	tcp = json_object_get(json_object_get(obj, "spec"), "tcp");
	if (json_array_size(tcp) == 0) {
		snprintf(vs->why, sizeof(vs->why), "no tcp route in spec.tcp");
		return;
	}
	if (json_array_size(tcp) > VS_MAX_ROUTES) {
		snprintf(vs->why, sizeof(vs->why), "more than %d tcp routes",
		    VS_MAX_ROUTES);
		return;
	}
	if ((vs->routes = calloc(json_array_size(tcp),
	    sizeof(*vs->routes))) == NULL)
		fatal("vs");
	vs->nalloc = json_array_size(tcp);
	json_array_foreach(tcp, i, route) {
		json_t *dests = json_object_get(route, "route");

		if (json_array_size(dests) == 0 ||
		    json_array_size(dests) > VS_MAX_DESTS) {
			snprintf(vs->why, sizeof(vs->why), "tcp[%zu] needs 1 "
			    "to %d destinations", i, VS_MAX_DESTS);
			return;
		}
		if ((vs->routes[i].d = calloc(json_array_size(dests),
		    sizeof(struct dest))) == NULL)
			fatal("vs");
		json_array_foreach(dests, j, dst) {
			struct dest *ds = &vs->routes[i].d[j];
			const char *host;
			json_t *jw = json_object_get(dst, "weight");
			json_int_t port, w;

			d = json_object_get(dst, "destination");
			host = json_string_value(json_object_get(d, "host"));
			port = json_integer_value(json_object_get(
			    json_object_get(d, "port"), "number"));
			/* absent (or null, as the API drops it) is 1 */
			if (jw != NULL && !json_is_null(jw) &&
			    !json_is_integer(jw)) {
				snprintf(vs->why, sizeof(vs->why), "tcp[%zu]: "
				    "destination weight is not an integer", i);
				return;
			}
			w = json_is_integer(jw) ? json_integer_value(jw) : 1;
			if (host == NULL || !valid_dns_subdomain(host)) {
				snprintf(vs->why, sizeof(vs->why), "tcp[%zu]: "
				    "destination host is not a DNS name", i);
				return;
			}
			if (port < 1 || port > 65535 || w < 0 || w > 256) {
				snprintf(vs->why, sizeof(vs->why), "tcp[%zu]: "
				    "destination needs port.number and a "
				    "weight of 0-256", i);
				return;
			}
			strcpy(ds->host, host);
			ds->port = (unsigned)port;
			ds->weight = (unsigned)w;
		}
		vs->routes[i].nd = json_array_size(dests);
	}
	vs->nroutes = json_array_size(tcp);
}

static void
obj_store(struct cluster *cl, int res, const char *key, void *val)
{
	void *old;

	old = val ? smap_put(&cl->objs[res], key, val) :
	    smap_del(&cl->objs[res], key);
	if (res == RES_VS) {
		vs_free(old);
		cluster_touch(cl, key);
	} else {
		free(old);
		cl->dirty = 1;
	}
}

/* The VirtualService "ns/name" is looked at again, alone. */
void
cluster_touch(struct cluster *cl, const char *key)
{
	smap_put(&cl->touched, key, cl);
}

/*
 * An object whose name or namespace the API server would not have taken
 * (or a proxy in between made up) is ignored, and named in the log as far
 * as it safely can be: cut short, every unusual byte a '?'.
 */
static void
invalid_name(struct cluster *cl, int res, const char *ns, const char *name)
{
	static const char *kinds[RES_COUNT] = { "VirtualService", "Service",
	    "Node", "EndpointSlice" };
	char sns[40], sname[72];

	snprintf(sns, sizeof(sns), "(none)");
	snprintf(sname, sizeof(sname), "(none)");
	if (ns != NULL)
		valid_sanitize(sns, sizeof(sns), ns);
	if (name != NULL)
		valid_sanitize(sname, sizeof(sname), name);
	log_warnx("%s: an object with an invalid name was ignored: %s %s%s%s",
	    cl->name, kinds[res], res == RES_NODE ? "" : sns,
	    res == RES_NODE ? "" : "/", sname);
}

void
cluster_object(struct cluster *cl, int res, const char *type, json_t *obj)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	struct vs_obj *vs;
	char key[384];
	void *val = NULL;

	if (name == NULL || !valid_k8s_name(name) ||
	    (res != RES_NODE && (ns == NULL || !valid_dns_label(ns)))) {
		invalid_name(cl, res, ns, name);
		return;
	}
	snprintf(key, sizeof(key), "%s/%s", res == RES_NODE ? "" : ns, name);
	if (strcmp(type, "DELETED") != 0) {
		switch (res) {
		case RES_VS:
			if ((vs = calloc(1, sizeof(*vs))) == NULL)
				fatal("vs");
			strcpy(vs->ns, ns);
			strcpy(vs->name, name);
			vs_parse(vs, obj);
			/* keep only what is ours to route or to clean */
			if (!vs->expose && !vs->address && !vs->error) {
				vs_free(vs);
				vs = NULL;
			}
			val = vs;
			break;
		case RES_SVC:
			val = svc_parse(cl, key, obj);
			break;
		case RES_NODE:
			val = node_parse(obj);
			break;
		case RES_EPS:
			val = eps_parse(cl, key, obj);
			break;
		}
	}
	obj_store(cl, res, key, val);
}

void
cluster_object_gone(struct cluster *cl, int res, const char *key)
{
	obj_store(cl, res, key, NULL);
}

void
cluster_list_end(struct cluster *cl, int res)
{
	(void)res;
	/* every (re)list is followed by a resync of the whole cluster */
	cl->need_resync = 1;
	cl->dirty = 1;
}

/* Observations. */

void
owner_of(char *buf, size_t len, const char *id, const struct vs_obj *vs,
    size_t r)
{
	snprintf(buf, len, "%s/%s/%s/%zu", id, vs->ns, vs->name, r);
}

/* ROUTE_GONE for an owner "id/ns/name/route" that was sent. */
static void
send_gone(struct cluster *cl, const char *owner)
{
	char *s1, *s2, *s3, buf[EV_OWNERLEN];
	struct event ev;

	snprintf(buf, sizeof(buf), "%s", owner);
	s1 = strchr(buf, '/');
	s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	s3 = s2 ? strchr(s2 + 1, '/') : NULL;
	if (s3 == NULL)
		return;
	*s1 = *s2 = *s3 = '\0';
	event_init(&ev, EV_ROUTE_GONE);
	event_set_str(&ev, F_CLUSTER, cl->id);
	event_set_str(&ev, F_NS, s1 + 1);
	event_set_str(&ev, F_NAME, s2 + 1);
	ev.route = strtoull(s3 + 1, NULL, 10);
	ev.has |= F_ROUTE;
	obs_send(&ev);
}

/*
 * Send ev unless the last one sent for this owner was the same.  A route
 * that must lose what it had (cut) is said to be gone first: allocd keeps
 * a refused route's port and backends, and those must not be served.
 */
static void
send_if_changed(struct cluster *cl, struct smap *now, const char *owner,
    struct event *ev, int force, int cut)
{
	struct sent *old = smap_get(&cl->sent, owner), *s;
	unsigned char *buf;
	size_t len;
	int changed;

	if (event_encode(ev, &buf, &len) == -1)
		fatalx("cannot encode a route");
	if ((s = malloc(sizeof(*s) + len)) == NULL)
		fatal("malloc");
	s->len = len;
	memcpy(s->data, buf, len);
	free(buf);
	changed = old == NULL || old->len != len ||
	    memcmp(old->data, s->data, len) != 0;
	if (cut && changed)
		send_gone(cl, owner);
	if (force || changed)
		obs_send(ev);
	free(smap_put(now, owner, s));
}

/*
 * Turn the cluster's objects into route observations.  Only once every
 * informer has listed: before that, a missing Service would read as an
 * error and a missing VirtualService as a release.
 */
static void
cluster_compute(struct cluster *cl)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct smap now = { NULL, 0, 0 };
	struct event ev;
	struct vs_obj *vs;
	struct bsrc src;
	char owner[EV_OWNERLEN];
	uint64_t sid = 0;
	size_t r;
	int i, pass, cut, resync = cl->need_resync;

	for (i = 0; i < RES_COUNT; i++)
		if (cluster_watches(cl, i) && !cl->inf[i].listed)
			return;
	bsrc_init(cl, &src);

	if (resync) {
		event_init(&ev, EV_SYNC_BEGIN);
		event_set_str(&ev, F_CLUSTER, cl->id);
		ev.sid = sid = shard_sync_id();
		ev.has |= F_SID;
		obs_send(&ev);
	}
	/*
	 * Objects that carry an address first: after a lost store, their
	 * ports are adopted before anything new is assigned.
	 */
	for (pass = 0; pass < 2; pass++)
	for (it = (struct smap_iter){ 0, NULL };
	    (e = smap_next(&cl->objs[RES_VS], &it)) != NULL;) {
		if ((vs = e->val) == NULL || !vs->expose ||
		    (vs->address != NULL) != (pass == 0))
			continue;
		for (r = 0; r < (vs->why[0] ? 1 : vs->nroutes); r++) {
			owner_of(owner, sizeof(owner), cl->id, vs, r);
			cut = route_obs(cl, vs, r, &src, &ev);
			send_if_changed(cl, &now, owner, &ev, resync, cut);
			event_free(&ev);
		}
	}
	bsrc_free(&src);
	/* what was sent before and is not there now is gone */
	it = (struct smap_iter){ 0, NULL };
	while (!resync && (e = smap_next(&cl->sent, &it)) != NULL)
		if (smap_get(&now, e->key) == NULL)
			send_gone(cl, e->key);
	sent_free(cl);
	cl->sent = now;
	if (resync && obs_failed) {
		/* something of this resync was not sent: it must not end */
		log_warnx("%s: resync incomplete, will send it again",
		    cl->name);
		return;
	}
	if (resync) {
		event_init(&ev, EV_SYNC_END);
		event_set_str(&ev, F_CLUSTER, cl->id);
		ev.sid = sid;
		ev.has |= F_SID;
		obs_send(&ev);
		cl->need_resync = 0;
		cl->synced_once = 1;
		log_info("%s: resync sent: %zu routes", cl->name,
		    cl->sent.n);
	}
}

/*
 * The touched VirtualServices alone: their routes as cluster_compute would
 * send them, and ROUTE_GONE for the ones they had and have no more (an
 * object's owners are always routes 0..n-1).  Then their write-backs.
 */
static void
cluster_compute_touched(struct cluster *cl, uint64_t now)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct event ev;
	struct vs_obj *vs;
	struct bsrc src;
	char owner[EV_OWNERLEN];
	size_t n, r;
	void *was;
	int i, cut;

	for (i = 0; i < RES_COUNT; i++)
		if (cluster_watches(cl, i) && !cl->inf[i].listed)
			return;		/* the list's end computes them all */
	bsrc_init(cl, &src);
	while ((e = smap_next(&cl->touched, &it)) != NULL) {
		vs = smap_get(&cl->objs[RES_VS], e->key);
		n = vs == NULL || !vs->expose ? 0 :
		    vs->why[0] ? 1 : vs->nroutes;
		for (r = 0; r < n; r++) {
			owner_of(owner, sizeof(owner), cl->id, vs, r);
			cut = route_obs(cl, vs, r, &src, &ev);
			send_if_changed(cl, &cl->sent, owner, &ev, 0, cut);
			event_free(&ev);
		}
		for (r = n;; r++) {
			snprintf(owner, sizeof(owner), "%s/%s/%zu", cl->id,
			    e->key, r);
			if ((was = smap_del(&cl->sent, owner)) == NULL)
				break;
			free(was);
			send_gone(cl, owner);
		}
		if (vs != NULL)
			cluster_writeback_one(cl, e->key, vs, now);
	}
	bsrc_free(&src);
	smap_free(&cl->touched);
}

/* Discovery: networking.istio.io/v1, else v1beta1, else v1alpha3. */
static void
disc_done(struct http_req *req, long code, const char *body, size_t len,
    const char *err)
{
	static const char *prefer[] = { "v1", "v1beta1", "v1alpha3" };
	struct cluster *cl = req->arg;
	json_t *root, *v;
	size_t i, k;

	cl->disc_req = NULL;
	if (err == NULL)
		master_ok(cl);
	root = code == 200 ? json_loadb(body, len, 0, NULL) : NULL;
	for (k = 0; root != NULL && k < 3 && cl->istio[0] == '\0'; k++)
		json_array_foreach(json_object_get(root, "versions"), i, v)
			if (json_is_string(json_object_get(v, "version")) &&
			    !strcmp(json_string_value(json_object_get(v,
			    "version")), prefer[k]))
				strcpy(cl->istio, prefer[k]);
	json_decref(root);
	if (cl->istio[0] != '\0') {
		log_info("%s: VirtualServices at networking.istio.io/%s",
		    cl->name, cl->istio);
		cl->disc_backoff = 0;
		return;
	}
	if (err != NULL && master_failed(cl, req)) {
		cl->disc_at = 0;	/* another master, at once */
		return;
	}
	cl->disc_backoff = cl->disc_backoff ? (cl->disc_backoff * 2 > 60000 ?
	    60000 : cl->disc_backoff * 2) : 1000;
	cl->disc_at = now_ms() + jitter(cl->disc_backoff);
	log_warnx("%s: networking.istio.io not served (%s%ld); again in "
	    "%u ms", cl->name, err ? "transport error, code " : "HTTP ",
	    code, cl->disc_backoff);
}

static void
cluster_timer(struct cluster *cl, uint64_t now)
{
	struct http_auth a;
	char url[1024];
	int r;

	if (!cl->have_creds) {
		if (cl->source == SRC_PKS && cl->bind_req == NULL &&
		    now >= cl->bind_at)
			pks_bind(cl);
		return;
	}
	if (cl->istio[0] == '\0' && cl->disc_req == NULL &&
	    now >= cl->disc_at) {
		cluster_auth(cl, &a);
		snprintf(url, sizeof(url), "%s/apis/networking.istio.io",
		    cl->creds.server);
		cl->disc_req = http_start("GET", url, &a, NULL, NULL, 30000,
		    disc_done, NULL, cl);
	}
	for (r = 0; r < RES_COUNT; r++)
		if (cluster_watches(cl, r) &&
		    (r != RES_VS || cl->istio[0] != '\0'))
			informer_timer(&cl->inf[r], now);
	if (cl->dirty) {
		cl->dirty = 0;
		smap_free(&cl->touched);
		cluster_compute(cl);
		cluster_writeback(cl, now);
	} else if (cl->touched.n > 0)
		cluster_compute_touched(cl, now);
	if (cl->patch_hold != 0 && now >= cl->patch_hold) {
		cl->patch_hold = 0;
		cluster_writeback(cl, now);
	} else if (cl->wb_more && cl->patching.n < WB_INFLIGHT)
		cluster_writeback(cl, now);
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
