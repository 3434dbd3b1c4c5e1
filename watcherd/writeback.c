/*
 * watcherd — the write-back: allocd's decisions onto the VirtualServices.
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

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "watcherd.h"

struct addr {
	unsigned	port;
	int		live;
	char		why[256];	/* refused */
	char		fault[256];	/* a proxy does not serve port */
	char		pf[64];		/* proof of the address, once live */
};

static struct smap	addrs;		/* owner -> struct addr, from allocd */

/* A PATCH names its object by cluster and key: the object may be gone. */
struct patch {
	char	 id[64];
	char	 key[384];
	char	*address;	/* what the object carried before */
	char	*error;
	char	*proof;
};

static void
patch_done(struct http_req *req, long code, const char *body, size_t len,
    const char *err)
{
	struct patch *p = req->arg;
	struct cluster *cl = cluster_find(p->id);
	struct vs_obj *vs;
	char msg[512];

	(void)body;
	(void)len;
	metrics_inc(M_WRITEBACKS, code == 200 ? MV_WB_WRITTEN : code == 409 ?
	    MV_WB_CONFLICT : code == 404 ? MV_WB_GONE : MV_WB_ERROR);
	if (cl != NULL) {
		smap_del(&cl->patching, p->key);
		if (code != 200 && (vs = smap_get(&cl->objs[RES_VS],
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
			    p->key, err ? "transport error, code " : "HTTP ",
			    code);
			snprintf(msg, sizeof(msg), "%s: %s: write-back "
			    "failed: %s%ld", cl->name, p->key, err ?
			    "transport error, code " : "HTTP ", code);
			health_set_error(msg);
		}
		/* it may have changed while the PATCH was out */
		cluster_touch(cl, p->key);
	}
	free(p->address);
	free(p->error);
	free(p->proof);
	free(p);
}

static int
streq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

void
vs_read_uid(struct vs_obj *vs, json_t *obj)
{
	const char *uid = json_string_value(json_object_get(
	    json_object_get(obj, "metadata"), "uid"));

	snprintf(vs->uid, sizeof(vs->uid), "%s", uid != NULL ? uid : "");
}

/*
 * The claim a route's observation carries: the object's uid always (the
 * proof allocd makes is for it), and the proof written for route r (the
 * r-th of the comma-separated proofs) when the object has an address.
 * What fails validation is left out: the claim then proves nothing.
 */
void
vs_claim(const struct vs_obj *vs, size_t r, struct event *ev)
{
	const char *s = vs->proof, *end;
	char pf[sizeof(ev->pf)];

	if (vs->uid[0] != '\0')
		event_set_str(ev, F_UID, vs->uid);
	if (!(ev->has & F_HAD))
		return;
	for (; s != NULL && r > 0; r--)
		if ((s = strchr(s, ',')) != NULL)
			s++;
	if (s == NULL)
		return;
	if ((end = strchr(s, ',')) == NULL)
		end = s + strlen(s);
	if ((size_t)(end - s) >= sizeof(pf))
		return;
	memcpy(pf, s, (size_t)(end - s));
	pf[end - s] = '\0';
	event_set_str(ev, F_PROOF, pf);
}

static void
vs_writeback(struct cluster *cl, const char *key, struct vs_obj *vs)
{
	char owner[EV_OWNERLEN], address[4096], proof[4096], path[128];
	char url[1024];
	const char *want_addr = NULL, *want_err = NULL, *want_pf = NULL;
	struct http_auth a;
	struct addr *ad;
	json_t *ann, *body;
	struct patch *p;
	size_t r, o = 0, po = 0;
	int live = 1, proven = 1;
	char *text, *keep_addr, *keep_err, *keep_pf;

	if (smap_get(&cl->patching, key) != NULL)
		return;
	if (vs->expose) {
		address[0] = proof[0] = '\0';
		for (r = 0; r < (vs->why[0] ? 1 : vs->nroutes); r++) {
			owner_of(owner, sizeof(owner), cl->id, vs, r);
			ad = smap_get(&addrs, owner);
			if (ad != NULL && ad->why[0] != '\0' &&
			    want_err == NULL)
				want_err = ad->why;
			if (ad != NULL && ad->fault[0] != '\0' &&
			    want_err == NULL)
				want_err = ad->fault;
			if (ad == NULL || !ad->live || ad->port == 0 ||
			    vs->why[0] != '\0')
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
	snprintf(path, sizeof(path), "/apis/networking.istio.io/%s",
	    cl->istio);
	snprintf(url, sizeof(url), "%s%s/namespaces/%s/virtualservices/%s",
	    cl->creds.server, path, vs->ns, vs->name);
	cluster_auth(cl, &a);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		fatal("calloc");
	snprintf(p->id, sizeof(p->id), "%s", cl->id);
	snprintf(p->key, sizeof(p->key), "%s", key);
	p->address = dup_or_null(vs->address);
	p->error = dup_or_null(vs->error);
	p->proof = dup_or_null(vs->proof);
	smap_put(&cl->patching, key, p);
	http_start("PATCH", url, &a, "application/merge-patch+json", text,
	    30000, patch_done, NULL, p);
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
writeback_ready(struct cluster *cl, uint64_t now)
{
	return alloc_synced && cl->istio[0] != '\0' &&
	    cl->inf[RES_VS].listed && now >= cl->patch_hold;
}

/*
 * A pass round the table, from where the last one stopped at the cap, so
 * that it costs what it can start rather than a walk of every object.
 */
void
cluster_writeback(struct cluster *cl, uint64_t now)
{
	const struct smap *m = &cl->objs[RES_VS];
	struct smap_ent *e;
	size_t k, i = 0;

	cl->wb_more = 0;
	if (!writeback_ready(cl, now) || m->nb == 0)
		return;
	for (k = 0; k < m->nb && cl->patching.n < WB_INFLIGHT; k++) {
		i = (cl->wb_next + k) % m->nb;
		for (e = m->b[i]; e != NULL; e = e->next)
			if (e->val != NULL)
				vs_writeback(cl, e->key, e->val);
	}
	cl->wb_next = (i + 1) % m->nb;
	cl->wb_more = k < m->nb;
}

/* One VirtualService's write-back; over the cap, the next pass has it. */
void
cluster_writeback_one(struct cluster *cl, const char *key, struct vs_obj *vs,
    uint64_t now)
{
	if (!writeback_ready(cl, now))
		return;		/* a pass follows patch_hold and the sync */
	if (cl->patching.n >= WB_INFLIGHT)
		cl->wb_more = 1;
	else
		vs_writeback(cl, key, vs);
}

/* The object an owner's decision is about is looked at again. */
static void
touch_owner(const struct event *ev)
{
	struct cluster *cl = cluster_find(ev->cluster);
	char key[sizeof(ev->ns) + sizeof(ev->name) + 1];

	if (cl == NULL)
		return;
	snprintf(key, sizeof(key), "%s/%s", ev->ns, ev->name);
	cluster_touch(cl, key);
}

/* What allocd decided, kept for the write-back. */
void
clusters_alloc_event(const struct event *ev)
{
	char owner[EV_OWNERLEN];
	struct addr *a;

	switch (ev->type) {
	case EV_PORT_SET:
	case EV_PORT_LIVE:
	case EV_PORT_FREE:
	case EV_REFUSED:
	case EV_PORT_FAULT:
		break;
	default:
		return;
	}
	if (event_owner(ev, owner, sizeof(owner)) == -1)
		return;
	if (ev->type == EV_PORT_FREE) {
		free(smap_del(&addrs, owner));
		touch_owner(ev);
		return;
	}
	if ((a = smap_get(&addrs, owner)) == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL)
			fatal("calloc");
		smap_put(&addrs, owner, a);
	}
	switch (ev->type) {
	case EV_PORT_SET:
		if (a->port != ev->port) {
			a->live = 0;
			a->fault[0] = '\0';
			a->pf[0] = '\0';
		}
		a->port = (unsigned)ev->port;
		a->why[0] = '\0';
		break;
	case EV_PORT_LIVE:
		if (a->port == ev->port)
			a->live = 1;
		if (a->port == ev->port && (ev->has & F_PROOF))
			memcpy(a->pf, ev->pf, sizeof(a->pf));
		break;
	case EV_REFUSED:
		snprintf(a->why, sizeof(a->why), "%s", ev->why);
		break;
	case EV_PORT_FAULT:
		if (a->port == ev->port)
			snprintf(a->fault, sizeof(a->fault), "%s",
			    ev->has & F_WHY ? ev->why : "");
		break;
	}
	touch_owner(ev);
}

void
clusters_alloc_reset(void)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&addrs, &it)) != NULL)
		free(e->val);
	smap_free(&addrs);
	clusters_dirty_all();
}
