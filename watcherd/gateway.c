/*
 * watcherd — the Gateway API's GatewayClass and Gateway: which Gateways
 * are portico's (their class names our controller), what routes their
 * listeners let attach, and their status (a class of ours is Accepted; a
 * Gateway's address is the cluster's host, and it is Accepted and
 * Programmed).
 *
 * A Gateway's listeners say nothing about ports here: every route that
 * attaches gets a port of its own from the pool (TCPRoute) or a name on
 * the shared TLS port (TLSRoute).  A listener admits a route kind by its
 * protocol (TCP, TLS) and its allowedRoutes (kinds; namespaces Same or
 * All; a selector is not read, and admits nothing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "valid.h"
#include "watcherd.h"

#define GW_MAX_LISTENERS	64	/* as the API's own limit */

enum { FROM_SAME, FROM_ALL, FROM_NONE };

struct gw_listener {
	int		 tls;		/* protocol TLS, else TCP */
	int		 from;
	unsigned	 kinds;		/* 1 << GWK_*; 0: the protocol's own */
};

struct gw_obj {
	char		 cls[254];
	char		 uid[64];
	long long	 gen;
	char		 seen[320];	/* our part of its status, as it is */
	size_t		 nl;
	struct gw_listener l[];
};

struct gwc_obj {
	long long	 gen;
	char		 seen[320];	/* its status, as it is */
};

static void	gw_status_seen(json_t *, char *, size_t);

void *
gwc_parse(json_t *obj)
{
	const char *c = json_string_value(json_object_get(json_object_get(obj,
	    "spec"), "controllerName"));
	struct gwc_obj *g;

	if (c == NULL || strcmp(c, GW_CONTROLLER) != 0)
		return NULL;		/* not ours: as if absent */
	if ((g = calloc(1, sizeof(*g))) == NULL)
		fatal("gwc");
	g->gen = json_integer_value(json_object_get(json_object_get(obj,
	    "metadata"), "generation"));
	gw_status_seen(obj, g->seen, sizeof(g->seen));
	return g;
}

/* Our part of a Gateway's (a GatewayClass's) status, to compare. */
static void
gw_status_seen(json_t *obj, char *buf, size_t len)
{
	json_t *st = json_object_get(obj, "status"), *a, *c;
	size_t i, o = 0;

	buf[0] = '\0';
	json_array_foreach(json_object_get(st, "addresses"), i, a) {
		const char *v = json_string_value(json_object_get(a, "value"));

		if (v != NULL && i < 4 && strlen(v) < 254)
			o += (size_t)snprintf(buf + o, len - o, "a=%s;", v);
		if (o >= len)
			return;
	}
	json_array_foreach(json_object_get(st, "conditions"), i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *s = json_string_value(json_object_get(c, "status"));

		if (t != NULL && s != NULL && i < 8 && strlen(t) < 32 &&
		    strlen(s) < 8)
			o += (size_t)snprintf(buf + o, len - o, "%s=%s/%lld;",
			    t, s, (long long)json_integer_value(
			    json_object_get(c, "observedGeneration")));
		if (o >= len)
			return;
	}
}

void *
gw_parse(json_t *obj)
{
	json_t *spec = json_object_get(obj, "spec"), *ls, *l, *ar, *k;
	const char *cls = json_string_value(json_object_get(spec,
	    "gatewayClassName"));
	const char *uid = json_string_value(json_object_get(json_object_get(
	    obj, "metadata"), "uid"));
	struct gw_obj *g;
	size_t i, j, n;

	if (cls == NULL || !valid_k8s_name(cls))
		return NULL;
	ls = json_object_get(spec, "listeners");
	n = json_array_size(ls) > GW_MAX_LISTENERS ? 0 : json_array_size(ls);
	if ((g = calloc(1, sizeof(*g) + n * sizeof(g->l[0]))) == NULL)
		fatal("gw");
	strcpy(g->cls, cls);
	snprintf(g->uid, sizeof(g->uid), "%s", uid && strlen(uid) < 64 ?
	    uid : "");
	g->gen = json_integer_value(json_object_get(json_object_get(obj,
	    "metadata"), "generation"));
	gw_status_seen(obj, g->seen, sizeof(g->seen));
	json_array_foreach(ls, i, l) {
		const char *proto = json_string_value(json_object_get(l,
		    "protocol"));
		const char *from;
		struct gw_listener *gl = &g->l[g->nl];

		if (i >= n)
			break;
		if (proto == NULL || (strcmp(proto, "TCP") != 0 &&
		    strcmp(proto, "TLS") != 0))
			continue;
		gl->tls = strcmp(proto, "TLS") == 0;
		ar = json_object_get(l, "allowedRoutes");
		from = json_string_value(json_object_get(json_object_get(ar,
		    "namespaces"), "from"));
		gl->from = from == NULL || strcmp(from, "Same") == 0 ?
		    FROM_SAME : strcmp(from, "All") == 0 ? FROM_ALL : FROM_NONE;
		json_array_foreach(json_object_get(ar, "kinds"), j, k) {
			const char *kind = json_string_value(json_object_get(k,
			    "kind"));

			if (j >= 8 || kind == NULL)
				break;
			if (strcmp(kind, "TCPRoute") == 0)
				gl->kinds |= 1u << GWK_TCP;
			else if (strcmp(kind, "TLSRoute") == 0)
				gl->kinds |= 1u << GWK_TLS;
		}
		g->nl++;
	}
	return g;
}

/* The Gateway "ns/name" when it is portico's (its class names us). */
static const struct gw_obj *
gw_ours(struct cluster *cl, const char *ns, const char *name)
{
	char key[384];
	struct gw_obj *g;

	snprintf(key, sizeof(key), "%s/%s", ns, name);
	if ((g = smap_get(&cl->objs[RES_GW], key)) == NULL)
		return NULL;
	snprintf(key, sizeof(key), "/%s", g->cls);
	return smap_get(&cl->objs[RES_GWC], key) != NULL ? g : NULL;
}

int
gw_attach(struct cluster *cl, const char *gwns, const char *gwname,
    int kind, const char *routens)
{
	const struct gw_obj *g = gw_ours(cl, gwns, gwname);
	const struct gw_listener *l;
	size_t i;

	if (g == NULL)
		return GWA_NONE;
	for (i = 0; i < g->nl; i++) {
		l = &g->l[i];
		if (l->tls != (kind == GWK_TLS))
			continue;
		if (l->kinds != 0 && !(l->kinds & (1u << kind)))
			continue;
		if (l->from == FROM_ALL || (l->from == FROM_SAME &&
		    strcmp(gwns, routens) == 0))
			return GWA_OK;
	}
	return GWA_REFUSED;
}

/* Each GatewayClass of ours is Accepted. */
static void
gwc_writeback(struct cluster *cl, const char *ts)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct gwc_obj *g;
	char want[64], path[1024], pk[400], *text;
	json_t *body;

	while ((e = smap_next(&cl->objs[RES_GWC], &it)) != NULL) {
		if ((g = e->val) == NULL)
			continue;
		snprintf(want, sizeof(want), "Accepted=True/%lld;", g->gen);
		if (strcmp(want, g->seen) == 0)
			continue;
		body = json_pack("{s:{s:[{s:s,s:s,s:s,s:s,s:s,s:I}]}}",
		    "status", "conditions", "type", "Accepted", "status", "True",
		    "reason", "Accepted", "message", "portico's controller",
		    "lastTransitionTime", ts, "observedGeneration",
		    (json_int_t)g->gen);
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		/* the key of a cluster-scoped object is "/name" */
		snprintf(path, sizeof(path), "/apis/%s/%s/gatewayclasses%s/status",
		    GW_GROUP, cl->ver[RES_GWC], e->key);
		snprintf(pk, sizeof(pk), "gwc%s", e->key);
		if (writeback_status(cl, pk, path, text) == 0)
			strcpy(g->seen, want);
		free(text);
	}
}

/*
 * Every Gateway of ours says where it is (the cluster's host: its routes'
 * addresses are under it) and that it is accepted and programmed.
 */
void
gw_writeback(struct cluster *cl)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct gw_obj *g;
	char want[320], path[1024], ts[32], pk[400], *ns, *name;
	const char *slash;
	json_t *body, *conds;
	char *text;

	if (!alloc_synced || cl->ver[RES_GW][0] == '\0')
		return;
	now_rfc3339(ts, sizeof(ts));
	gwc_writeback(cl, ts);
	while ((e = smap_next(&cl->objs[RES_GW], &it)) != NULL) {
		g = e->val;
		slash = strchr(e->key, '/');
		if (g == NULL || slash == NULL)
			continue;
		if ((ns = strndup(e->key, (size_t)(slash - e->key))) == NULL)
			fatal("gw");
		name = (char *)slash + 1;
		if (gw_ours(cl, ns, name) == NULL) {
			free(ns);
			continue;
		}
		snprintf(want, sizeof(want), "a=%s;Accepted=True/%lld;"
		    "Programmed=True/%lld;", cl->host, g->gen, g->gen);
		if (strcmp(want, g->seen) == 0) {
			free(ns);
			continue;
		}
		conds = json_pack("[{s:s,s:s,s:s,s:s,s:s,s:I},"
		    "{s:s,s:s,s:s,s:s,s:s,s:I}]",
		    "type", "Accepted", "status", "True", "reason", "Accepted",
		    "message", "portico routes this Gateway's TCPRoutes and "
		    "TLSRoutes", "lastTransitionTime", ts, "observedGeneration",
		    (json_int_t)g->gen,
		    "type", "Programmed", "status", "True", "reason",
		    "Programmed", "message", "on portico's shared proxies",
		    "lastTransitionTime", ts, "observedGeneration",
		    (json_int_t)g->gen);
		body = json_pack("{s:{s:[{s:s,s:s}],s:o}}", "status",
		    "addresses", "type", "Hostname", "value", cl->host,
		    "conditions", conds);
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		snprintf(path, sizeof(path), "/apis/%s/%s/namespaces/%s/"
		    "gateways/%s/status", GW_GROUP, cl->ver[RES_GW], ns, name);
		snprintf(pk, sizeof(pk), "gw/%s", e->key);
		if (writeback_status(cl, pk, path, text) == 0) {
			log_info("%s/%s/%s: Gateway status: address %s",
			    cl->name, ns, name, cl->host);
			strcpy(g->seen, want);
		}
		free(text);
		free(ns);
	}
}
