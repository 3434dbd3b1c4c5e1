/*
 * watcherd — the write-back: allocd's decisions onto the route objects.
 *
 * Level-triggered: each pass compares what allocd decided (an address once
 * every proxy serves every route of the object, a refusal's reason, or why
 * a proxy does not serve a port) with
 * what the object carries, and PATCHes the difference with a JSON merge
 * patch.  Our own echo changes nothing; a PATCH that fails leaves the
 * object's real annotations to compare with next time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "watcherd.h"

/* A PATCH in flight; the object may be gone when it ends. */
struct patch {
	struct cluster	*cl;
	struct http_req	*req;
	const struct route_kind *kd;	/* NULL: a status */
	char		 key[384];
	char		*address;	/* what the object carried before */
	char		*error;
	char		*proof;
};

/*
 * An object whose write-back the cap put off.  They wait in the order
 * they came, each once, so that taking them up costs what they are, not
 * a walk of every object of the cluster (a pass over 10,000 objects for
 * the one or two that changed, once per PATCH done, was most of what a
 * change cost at that size).
 */
struct wb_owed {
	struct wb_owed	*next;
	int		 kind;		/* KIND_* */
	char		 key[];		/* "ns/name" */
};

static void
patch_free(struct patch *p)
{
	free(p->address);
	free(p->error);
	free(p->proof);
	free(p);
}

static void
patch_done(struct http_req *req, long code, const char *body, size_t len,
    const char *err)
{
	struct patch *p = req->arg;
	struct cluster *cl = p->cl;
	struct robj *vs;
	char msg[512], pkey[400];

	(void)body;
	(void)len;
	metrics_inc(M_WRITEBACKS, code == 200 ? MV_WB_WRITTEN : code == 409 ?
	    MV_WB_CONFLICT : code == 404 ? MV_WB_GONE : MV_WB_ERROR);
	snprintf(pkey, sizeof(pkey), "%d/%s", p->kd->index, p->key);
	smap_del(&cl->patching, pkey);
	if (code != 200 && (vs = smap_get(&cl->objs[p->kd->res],
	    p->key)) != NULL) {
		/* it did not land: compare with the truth next time */
		free(vs->address);
		free(vs->error);
		free(vs->proof);
		vs->address = p->address;
		vs->error = p->error;
		vs->proof = p->proof;
		p->address = p->error = p->proof = NULL;
	}
	if (code != 200) {
		cl->patch_hold = now_ms() + jitter(5000);
		log_warnx("%s: %s: write-back failed: %s%ld", cl->name,
		    p->key, err ? "transport error, code " : "HTTP ", code);
		snprintf(msg, sizeof(msg), "%s: %s: write-back failed: %s%ld",
		    cl->name, p->key, err ? "transport error, code " : "HTTP ",
		    code);
		health_set_error(msg);
	}
	/* it may have changed while the PATCH was out */
	smap_put(&cl->touched[p->kd->index], p->key, cl);
	patch_free(p);
}

/* A status PATCH: its object is looked at again by the watch's echo. */
static void
status_done(struct http_req *req, long code, const char *body, size_t len,
    const char *err)
{
	struct patch *p = req->arg;
	struct cluster *cl = p->cl;
	char msg[512];

	(void)body;
	(void)len;
	metrics_inc(M_WRITEBACKS, code == 200 ? MV_WB_WRITTEN : code == 409 ?
	    MV_WB_CONFLICT : code == 404 ? MV_WB_GONE : MV_WB_ERROR);
	smap_del(&cl->patching, p->key);
	if (code != 200) {
		cl->patch_hold = now_ms() + jitter(5000);
		snprintf(msg, sizeof(msg), "%s: %s: status write-back failed: "
		    "%s%ld", cl->name, p->key + 2, err ?
		    "transport error, code " : "HTTP ", code);
		log_warnx("%s", msg);
		health_set_error(msg);
		cl->dirty = 1;	/* what we assumed written is not */
	}
	patch_free(p);
}

void
now_rfc3339(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
writeback_status(struct cluster *cl, const char *key, const char *path,
    const char *body)
{
	struct http_auth a;
	struct patch *p;
	char url[2048];

	if (!alloc_synced || now_ms() < cl->patch_hold ||
	    cl->patching.n >= WB_INFLIGHT) {
		cl->wb_more = 1;
		return -1;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		fatal("calloc");
	p->cl = cl;
	snprintf(p->key, sizeof(p->key), "s/%s", key);
	if (smap_get(&cl->patching, p->key) != NULL) {
		free(p);
		return -1;
	}
	snprintf(url, sizeof(url), "%s%s", cl->creds.server, path);
	master_auth(cl, &a);
	smap_put(&cl->patching, p->key, p);
	p->req = http_start("PATCH", url, &a, "application/merge-patch+json",
	    body, 30000, status_done, NULL, p);
	return 0;
}

void
writeback_cancel(struct cluster *cl)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct patch *p;
	struct wb_owed *w;

	while ((e = smap_next(&cl->patching, &it)) != NULL) {
		p = e->val;
		http_cancel(p->req);
		patch_free(p);
	}
	smap_free(&cl->patching);
	while ((w = cl->owed) != NULL) {
		cl->owed = w->next;
		free(w);
	}
	cl->owed_last = NULL;
	smap_free(&cl->owed_keys);
}

static int
streq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
robj_writeback(struct cluster *cl, const struct route_kind *kd,
    const char *key, struct robj *vs)
{
	char owner[EV_OWNERLEN + 24], address[4096], proof[4096], path[1024];
	char url[2048], pkey[400];
	const char *want_addr = NULL, *want_err = NULL, *want_pf = NULL;
	struct http_auth a;
	const struct decision *ad;
	json_t *ann, *body;
	struct patch *p;
	size_t r, o = 0, po = 0;
	int live = 1, proven = 1;
	char *text, *keep_addr, *keep_err, *keep_pf;

	snprintf(pkey, sizeof(pkey), "%d/%s", kd->index, key);
	if (smap_get(&cl->patching, pkey) != NULL)
		return;
	if (vs->expose) {
		address[0] = proof[0] = '\0';
		for (r = 0; r < (vs->why[0] ? 1 : vs->nroutes); r++) {
			decision_owner(owner, sizeof(owner), cl->id, kd->rk, vs->ns,
			    vs->name, r);
			ad = decision_get(owner);
			if (ad != NULL && ad->why[0] != '\0' &&
			    want_err == NULL)
				want_err = ad->why;
			if (ad != NULL && ad->fault[0] != '\0' &&
			    want_err == NULL)
				want_err = ad->fault;
			if (ad == NULL || !ad->live || ad->port == 0 ||
			    vs->why[0] != '\0' || kd->no_address)
				live = 0;
			else {
				o += (size_t)snprintf(address + o,
				    sizeof(address) - o, "%s%s:%u",
				    r ? "," : "", cl->host, ad->port);
				po += (size_t)snprintf(proof + po,
				    sizeof(proof) - po, "%s%s", r ? "," : "",
				    ad->pf);
				proven &= ad->pf[0] != '\0';
			}
		}
		/* an address appears once every route is live, its proof too */
		want_addr = live ? address : vs->address;
		want_pf = live && proven ? proof : vs->proof;
	}
	if (streq(want_addr, vs->address) && streq(want_err, vs->error) &&
	    streq(want_pf, vs->proof))
		return;
	ann = json_object();
	if (!streq(want_addr, vs->address))
		json_object_set_new(ann, ANN_ADDRESS, want_addr ?
		    json_string(want_addr) : json_null());
	if (!streq(want_err, vs->error))
		json_object_set_new(ann, ANN_ERROR, want_err ?
		    json_string(want_err) : json_null());
	if (!streq(want_pf, vs->proof))
		json_object_set_new(ann, ANN_PROOF, want_pf ?
		    json_string(want_pf) : json_null());
	body = json_pack("{s:{s:o}}", "metadata", "annotations", ann);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	kd->path(cl, vs, path, sizeof(path));
	snprintf(url, sizeof(url), "%s%s", cl->creds.server, path);
	master_auth(cl, &a);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		fatal("calloc");
	p->cl = cl;
	p->kd = kd;
	snprintf(p->key, sizeof(p->key), "%s", key);
	p->address = dup_or_null(vs->address);
	p->error = dup_or_null(vs->error);
	p->proof = dup_or_null(vs->proof);
	smap_put(&cl->patching, pkey, p);
	p->req = http_start("PATCH", url, &a, "application/merge-patch+json",
	    text, 30000, patch_done, NULL, p);
	/*
	 * What we write is ours (a validated host and port, a reason from
	 * allocd); an address we keep is the object's own text: not logged.
	 */
	log_info("%s/%s/%s: writing back %s%s%s", cl->name, vs->ns, vs->name,
	    streq(want_addr, vs->address) ? "the address as it is" :
	    want_addr ? want_addr : "no address", want_err ? "; error: " : "",
	    want_err ? want_err : "");
	/*
	 * Assume it lands; the watch will say if it did not.  want_addr may
	 * be vs->address itself (an address kept): copied before the free.
	 */
	keep_addr = dup_or_null(want_addr);
	keep_err = dup_or_null(want_err);
	keep_pf = dup_or_null(want_pf);
	free(vs->address);
	free(vs->error);
	free(vs->proof);
	vs->address = keep_addr;
	vs->error = keep_err;
	vs->proof = keep_pf;
	free(text);
}

static int
writeback_ready(struct cluster *cl, const struct route_kind *kd, uint64_t now)
{
	return alloc_synced && cl->ver[kd->res][0] != '\0' &&
	    cl->inf[kd->res].listed && now >= cl->patch_hold;
}

/*
 * A pass round the kind's table, each object's annotations and status,
 * from where the last one stopped at the cap, so that it costs what it can
 * start rather than a walk of every object; wb_more says a pass stopped
 * short.
 */
void
writeback_pass(struct cluster *cl, const struct route_kind *kd, uint64_t now)
{
	const struct smap *m = &cl->objs[kd->res];
	struct smap_ent *e;
	size_t n, i = 0;

	if (!writeback_ready(cl, kd, now) || m->nb == 0)
		return;
	for (n = 0; n < m->nb && cl->patching.n < WB_INFLIGHT; n++) {
		i = (cl->wb_next[kd->index] + n) % m->nb;
		for (e = m->b[i]; e != NULL; e = e->next) {
			if (e->val == NULL)
				continue;
			robj_writeback(cl, kd, e->key, e->val);
			if (kd->status != NULL)
				kd->status(cl, e->key, e->val);
		}
	}
	cl->wb_next[kd->index] = (i + 1) % m->nb;
	cl->wb_more |= n < m->nb;
}

/* The object key of kind kd waits for a PATCH slot (once). */
static void
owe(struct cluster *cl, const struct route_kind *kd, const char *key)
{
	char okey[400];
	struct wb_owed *w;
	size_t len = strlen(key) + 1;

	snprintf(okey, sizeof(okey), "%d/%s", kd->index, key);
	if (smap_get(&cl->owed_keys, okey) != NULL)
		return;
	if ((w = malloc(sizeof(*w) + len)) == NULL)
		fatal("malloc");
	w->next = NULL;
	w->kind = kd->index;
	memcpy(w->key, key, len);
	if (cl->owed_last != NULL)
		cl->owed_last->next = w;
	else
		cl->owed = w;
	cl->owed_last = w;
	smap_put(&cl->owed_keys, okey, w);
}

/*
 * One object's write-back: its annotations, then its status, each one
 * PATCH at most.  Over the cap it is owed; before the cluster is ready
 * for write-backs, the pass that follows readiness has it.
 */
void
writeback_one(struct cluster *cl, const struct route_kind *kd,
    const char *key, struct robj *vs, uint64_t now)
{
	if (!writeback_ready(cl, kd, now))
		return;
	if (cl->patching.n >= WB_INFLIGHT) {
		owe(cl, kd, key);
		return;
	}
	robj_writeback(cl, kd, key, vs);
	if (kd->status == NULL)
		return;
	if (cl->patching.n >= WB_INFLIGHT)
		owe(cl, kd, key);	/* its annotations went: a look again */
	else
		kd->status(cl, key, vs);
}

/*
 * The write-backs the cap put off, oldest first, while PATCH slots are
 * free.  An object gone meanwhile is owed nothing; one owed again (its
 * status after its annotations) goes to the end.
 */
void
writeback_owed(struct cluster *cl, uint64_t now)
{
	char okey[400];
	const struct route_kind *kd;
	struct wb_owed *w;
	struct robj *o;

	while ((w = cl->owed) != NULL && cl->patching.n < WB_INFLIGHT) {
		if ((cl->owed = w->next) == NULL)
			cl->owed_last = NULL;
		kd = route_kinds[w->kind];
		snprintf(okey, sizeof(okey), "%d/%s", w->kind, w->key);
		smap_del(&cl->owed_keys, okey);
		if ((o = smap_get(&cl->objs[kd->res], w->key)) != NULL)
			writeback_one(cl, kd, w->key, o, now);
		free(w);
	}
	if (cl->owed == NULL)
		smap_free(&cl->owed_keys);	/* its buckets too */
}
