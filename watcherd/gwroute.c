/*
 * watcherd — the Gateway API's TCPRoute and TLSRoute as route kinds.
 *
 * A route is ours when one of its parentRefs names a Gateway of portico's
 * class; it attaches when a listener of that Gateway admits it (gateway.c).
 * A TCPRoute's rule r is route r: a port of its own, like a VirtualService's
 * spec.tcp[r] (rk "tcp").  A TLSRoute's hostname h is route h: an SNI name
 * on the shared TLS port, never a port (rk "tls"), and only under the
 * cluster's own host.  backendRefs are Services (name, namespace, port,
 * weight) resolved as a VirtualService's destinations are: another
 * namespace's Service only with its consent, a ReferenceGrant in its
 * namespace (from this kind and namespace, to that Service or every one)
 * or its portico.dev/allow-from; else the ref is refused, RefNotPermitted.  Status: status.parents[] for each of our parents,
 * with Accepted and ResolvedRefs; the address of a TCPRoute is written as
 * a VirtualService's is (portico.dev/address).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "valid.h"
#include "watcherd.h"

#define GW_MAX_PARENTS	8
#define GW_MAX_HOSTS	16
#define GW_OTHERS_MAX	8192	/* bytes of other controllers' parents kept */

struct gw_parent {
	char	ns[64];
	char	name[254];
};

/*
 * Our entries of status.parents, as a string to compare; the other
 * controllers' entries (a merge patch replaces the whole list) kept as
 * they are, in *others, when they are few and small.
 */
static char *
route_status_seen(json_t *obj, char **others)
{
	json_t *p, *c, *keep = json_array();
	size_t i, j, o = 0;
	char buf[2048];

	buf[0] = '\0';
	*others = NULL;
	json_array_foreach(json_object_get(json_object_get(obj, "status"),
	    "parents"), i, p) {
		const char *ctl = json_string_value(json_object_get(p,
		    "controllerName"));
		const char *name = json_string_value(json_object_get(
		    json_object_get(p, "parentRef"), "name"));

		if (i >= GW_MAX_PARENTS * 4)
			break;
		if (ctl == NULL || strcmp(ctl, GW_CONTROLLER) != 0) {
			json_array_append(keep, p);
			continue;
		}
		if (name == NULL)
			continue;
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "[%.64s]",
		    name);
		json_array_foreach(json_object_get(p, "conditions"), j, c) {
			const char *t = json_string_value(json_object_get(c,
			    "type"));
			const char *s = json_string_value(json_object_get(c,
			    "status"));
			const char *r = json_string_value(json_object_get(c,
			    "reason"));
			const char *m = json_string_value(json_object_get(c,
			    "message"));
			long long g = json_integer_value(json_object_get(c,
			    "observedGeneration"));

			if (j >= 4 || o >= sizeof(buf))
				break;
			o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			    "%.32s=%.8s/%.40s/%lld/%.300s;", t ? t : "",
			    s ? s : "", r ? r : "", g, m ? m : "");
		}
		if (o >= sizeof(buf))
			break;
	}
	if (json_array_size(keep) > 0 && (*others = json_dumps(keep,
	    JSON_COMPACT)) != NULL && strlen(*others) > GW_OTHERS_MAX) {
		free(*others);
		*others = NULL;
	}
	json_decref(keep);
	return dup_or_null(buf);
}

/* parentRefs naming Gateways; -1 with why when they cannot be read. */
static int
parents_parse(struct robj *o, json_t *spec)
{
	json_t *refs = json_object_get(spec, "parentRefs"), *p;
	size_t i;

	if (json_array_size(refs) > GW_MAX_PARENTS) {
		snprintf(o->why, sizeof(o->why), "more than %d parentRefs",
		    GW_MAX_PARENTS);
		return -1;
	}
	if ((o->parents = calloc(json_array_size(refs) + 1,
	    sizeof(*o->parents))) == NULL)
		fatal("gwroute");
	json_array_foreach(refs, i, p) {
		const char *g = json_string_value(json_object_get(p, "group"));
		const char *k = json_string_value(json_object_get(p, "kind"));
		const char *ns = json_string_value(json_object_get(p,
		    "namespace"));
		const char *name = json_string_value(json_object_get(p, "name"));
		struct gw_parent *gp = &o->parents[o->nparents];

		if ((g != NULL && strcmp(g, GW_GROUP) != 0) ||
		    (k != NULL && strcmp(k, "Gateway") != 0) || name == NULL ||
		    !valid_k8s_name(name) || (ns != NULL &&
		    !valid_dns_label(ns)))
			continue;
		snprintf(gp->ns, sizeof(gp->ns), "%s", ns ? ns : o->ns);
		snprintf(gp->name, sizeof(gp->name), "%s", name);
		o->nparents++;
	}
	return 0;
}

/* One rule's backendRefs into dests; -1 with why when refused. */
static int
backends_parse(struct robj *o, json_t *rule, size_t ri, struct vs_route *vr)
{
	json_t *refs = json_object_get(rule, "backendRefs"), *b, *jw;
	size_t i;

	if (json_array_size(refs) == 0 || json_array_size(refs) >
	    VS_MAX_DESTS) {
		snprintf(o->why, sizeof(o->why), "rules[%zu] needs 1 to %d "
		    "backendRefs", ri, VS_MAX_DESTS);
		return -1;
	}
	if ((vr->d = calloc(json_array_size(refs), sizeof(*vr->d))) == NULL)
		fatal("gwroute");
	json_array_foreach(refs, i, b) {
		const char *g = json_string_value(json_object_get(b, "group"));
		const char *k = json_string_value(json_object_get(b, "kind"));
		const char *name = json_string_value(json_object_get(b, "name"));
		const char *ns = json_string_value(json_object_get(b,
		    "namespace"));
		json_int_t port = json_integer_value(json_object_get(b, "port"));
		json_int_t w = 1;
		struct dest *d = &vr->d[i];

		if ((g != NULL && g[0] != '\0') || (k != NULL &&
		    strcmp(k, "Service") != 0)) {
			snprintf(o->why, sizeof(o->why), "rules[%zu]: a "
			    "backendRef is not a Service (InvalidKind)", ri);
			return -1;
		}
		jw = json_object_get(b, "weight");
		if (jw != NULL && !json_is_null(jw))
			w = json_is_integer(jw) ? json_integer_value(jw) : -1;
		if (name == NULL || !valid_dns_label(name) || (ns != NULL &&
		    !valid_dns_label(ns)) || port < 1 || port > 65535 ||
		    w < 0 || w > 256) {
			snprintf(o->why, sizeof(o->why), "rules[%zu]: a "
			    "backendRef needs a Service name, a port and a "
			    "weight of 0-256", ri);
			return -1;
		}
		snprintf(d->host, sizeof(d->host), "%s%s%s", name,
		    ns != NULL && strcmp(ns, o->ns) != 0 ? "." : "",
		    ns != NULL && strcmp(ns, o->ns) != 0 ? ns : "");
		d->port = (unsigned)port;
		d->weight = (unsigned)w;
	}
	vr->nd = json_array_size(refs);
	return 0;
}

/*
 * What both kinds read: the parents, the annotations we write, and the
 * rules.  A TLSRoute's backends are its rules' together: every hostname
 * goes to all of them.
 */
static void
gwroute_parse(struct cluster *cl, struct robj *o, json_t *obj, int tls)
{
	json_t *spec = json_object_get(obj, "spec"), *rules, *rule, *h;
	const char *want = annotation(obj, ANN_PORT);
	unsigned long wp;
	size_t i, n;
	char *end;

	(void)cl;
	o->address = dup_or_null(annotation(obj, ANN_ADDRESS));
	o->error = dup_or_null(annotation(obj, ANN_ERROR));
	o->proof = dup_or_null(annotation(obj, ANN_PROOF));
	o->status = route_status_seen(obj, &o->others);
	o->gen = json_integer_value(json_object_get(json_object_get(obj,
	    "metadata"), "generation"));
	robj_read_uid(o, obj);
	o->refkind = 1u << (tls ? GWK_TLS : GWK_TCP);
	if (parents_parse(o, spec) == 0 && o->nparents == 0)
		return;			/* names no Gateway at all */
	o->expose = 1;
	if (o->why[0] != '\0')
		return;
	/* a TCPRoute may ask for its first rule's port, as a VirtualService */
	if (want != NULL && !tls) {
		wp = strtoul(want, &end, 10);
		if (*want < '0' || *want > '9' || *end != '\0' || wp == 0 ||
		    wp > 65535) {
			snprintf(o->why, sizeof(o->why), "%s is not a port "
			    "number", ANN_PORT);
			return;
		}
		o->want = (unsigned)wp;
	}
	rules = json_object_get(spec, "rules");
	n = json_array_size(rules);
	if (n == 0 || n > VS_MAX_ROUTES) {
		snprintf(o->why, sizeof(o->why), "needs 1 to %d rules",
		    VS_MAX_ROUTES);
		return;
	}
	if (tls && n != 1) {
		snprintf(o->why, sizeof(o->why), "needs exactly one rule");
		return;
	}
	if ((o->routes = calloc(n, sizeof(*o->routes))) == NULL)
		fatal("gwroute");
	o->nalloc = n;
	json_array_foreach(rules, i, rule)
		if (backends_parse(o, rule, i, &o->routes[i]) == -1)
			return;
	o->nroutes = n;
	if (!tls)
		return;
	h = json_object_get(spec, "hostnames");
	n = json_array_size(h);
	if (n == 0 || n > GW_MAX_HOSTS) {
		snprintf(o->why, sizeof(o->why), "needs 1 to %d hostnames",
		    GW_MAX_HOSTS);
		return;
	}
	if ((o->hosts = calloc(n, sizeof(*o->hosts))) == NULL)
		fatal("gwroute");
	for (i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(h, i));

		if (s == NULL || !valid_dns_subdomain(s)) {
			snprintf(o->why, sizeof(o->why), "hostnames[%zu] is "
			    "not a DNS name (no wildcards)", i);
			return;
		}
		strcpy(o->hosts[i], s);
	}
	o->nroutes = n;
}

static void
tcp_parse(struct cluster *cl, struct robj *o, json_t *obj)
{
	gwroute_parse(cl, o, obj, 0);
}

static void
tls_parse(struct cluster *cl, struct robj *o, json_t *obj)
{
	gwroute_parse(cl, o, obj, 1);
}

/*
 * Whether a listener of one of its Gateways admits the route now (the
 * Gateways may have changed since it was read): a route none admits
 * has no routes, and says why in its status.
 */
static void
gwroute_prepare(struct cluster *cl, struct robj *o, int kind)
{
	size_t i;
	int a;

	o->attach = GWA_NONE;
	for (i = 0; i < o->nparents; i++) {
		a = gw_attach(cl, o->parents[i].ns, o->parents[i].name, kind,
		    o->ns);
		if (a > o->attach)
			o->attach = a;
	}
	o->expose = o->attach == GWA_OK;
	o->refs_why[0] = '\0';
}

static void
tcp_prepare(struct cluster *cl, struct robj *o)
{
	gwroute_prepare(cl, o, GWK_TCP);
}

static void
tls_prepare(struct cluster *cl, struct robj *o)
{
	gwroute_prepare(cl, o, GWK_TLS);
}

static int
tcp_obs(struct cluster *cl, struct robj *o, size_t r, const struct bsrc *src,
    struct event *ev)
{
	int cut;

	route_init(cl, &tcp_kind, o, r, ev);
	cut = route_backends(cl, o, r, src, ev);
	if ((ev->has & F_WHY) && o->refs_why[0] == '\0')
		snprintf(o->refs_why, sizeof(o->refs_why), "%s", ev->why);
	return cut;
}

/* Hostname h is under the cluster's own host: "<x>.<host>". */
static int
host_ours(const struct cluster *cl, const char *h)
{
	size_t n = strlen(h), hl = strlen(cl->host);

	return n > hl + 1 && h[n - hl - 1] == '.' &&
	    strcmp(h + n - hl, cl->host) == 0;
}

/*
 * Hostname r of a TLSRoute as an SNI_ROUTE.  One not under the cluster's
 * host is not sent at all (-1): it is refused in the route's status, and
 * allocd would refuse it too.
 */
static int
tls_obs(struct cluster *cl, struct robj *o, size_t r, const struct bsrc *src,
    struct event *ev)
{
	int cut;

	if (o->why[0] != '\0' || !host_ours(cl, o->hosts[r]))
		return -1;
	event_init(ev, EV_SNI_ROUTE);
	event_set_str(ev, F_CLUSTER, cl->id);
	event_set_str(ev, F_NS, o->ns);
	event_set_str(ev, F_NAME, o->name);
	event_set_str(ev, F_HOST, o->hosts[r]);
	ev->route = r;
	ev->has |= F_ROUTE | F_BACKENDS;
	if (o->uid[0] != '\0')
		event_set_str(ev, F_UID, o->uid);
	cut = route_backends(cl, o, 0, src, ev);
	if ((ev->has & F_WHY) && o->refs_why[0] == '\0')
		snprintf(o->refs_why, sizeof(o->refs_why), "%s", ev->why);
	return cut;
}

static void
gwroute_path(struct cluster *cl, const struct robj *o, char *buf, size_t len,
    int res, const char *plural)
{
	snprintf(buf, len, "/apis/%s/%s/namespaces/%s/%s/%s", GW_GROUP,
	    cl->ver[res], o->ns, plural, o->name);
}

static void
tcp_path(struct cluster *cl, const struct robj *o, char *buf, size_t len)
{
	gwroute_path(cl, o, buf, len, RES_TCPR, "tcproutes");
}

static void
tls_path(struct cluster *cl, const struct robj *o, char *buf, size_t len)
{
	gwroute_path(cl, o, buf, len, RES_TLSR, "tlsroutes");
}

/* ResolvedRefs's reason for why a route's backends were refused. */
static const char *
refs_reason(const char *why)
{
	if (strstr(why, "in another namespace") != NULL)
		return "RefNotPermitted";
	if (strstr(why, "no such service") != NULL)
		return "BackendNotFound";
	return "UnresolvedRefs";
}

/*
 * Accepted and ResolvedRefs for the route as it stands: its own fault, no
 * listener that admits it, a hostname not ours, allocd's refusal; its
 * backends' fault.
 */
static void
gwroute_conds(struct cluster *cl, const struct route_kind *k, struct robj *o,
    const char **ar, char *am, size_t amlen, const char **rr, char *rm,
    size_t rmlen)
{
	char owner[EV_OWNERLEN + 24];
	const struct decision *d;
	size_t r;

	*ar = "Accepted";
	snprintf(am, amlen, "routed by portico");
	*rr = "ResolvedRefs";
	snprintf(rm, rmlen, "every backendRef resolved");
	if (o->why[0] != '\0') {
		*ar = "UnsupportedValue";
		snprintf(am, amlen, "%s", o->why);
		return;
	}
	if (o->attach != GWA_OK) {
		*ar = "NotAllowedByListeners";
		snprintf(am, amlen, "no listener of its Gateway admits a %s "
		    "from namespace %s", k->name, o->ns);
		return;
	}
	for (r = 0; r < o->nroutes; r++) {
		if (o->hosts != NULL && !host_ours(cl, o->hosts[r])) {
			*ar = "NoMatchingListenerHostname";
			snprintf(am, amlen, "hostname %s is not under %s",
			    o->hosts[r], cl->host);
			break;
		}
		decision_owner(owner, sizeof(owner), cl->id, k->rk, o->ns,
		    o->name, r);
		if ((d = decision_get(owner)) != NULL && d->why[0] != '\0') {
			*ar = "Refused";
			snprintf(am, amlen, "%s", d->why);
			break;
		}
	}
	if (o->refs_why[0] != '\0') {
		*rr = refs_reason(o->refs_why);
		snprintf(rm, rmlen, "%s", o->refs_why);
	}
}

/* status.parents[]: one entry for each parent that is a Gateway of ours. */
static void
gwroute_status(struct cluster *cl, const struct route_kind *k,
    const char *key, struct robj *o)
{
	const char *ar, *rr;
	char am[300], rm[300], seen[2048], path[1200], ts[32], pk[400];
	char *text;
	json_t *parents, *body;
	size_t i, so = 0;

	if (!o->expose && o->attach == GWA_NONE && o->nparents == 0)
		return;
	gwroute_conds(cl, k, o, &ar, am, sizeof(am), &rr, rm, sizeof(rm));
	seen[0] = '\0';
	/* the other controllers' entries stay as they are */
	if (o->others == NULL || (parents = json_loads(o->others, 0,
	    NULL)) == NULL)
		parents = json_array();
	now_rfc3339(ts, sizeof(ts));
	for (i = 0; i < o->nparents; i++) {
		if (gw_attach(cl, o->parents[i].ns, o->parents[i].name,
		    k == &tcp_kind ? GWK_TCP : GWK_TLS, o->ns) == GWA_NONE)
			continue;
		so += (size_t)snprintf(seen + so, sizeof(seen) - so, "[%.64s]"
		    "Accepted=%.8s/%.40s/%lld/%.300s;ResolvedRefs=%.8s/%.40s/"
		    "%lld/%.300s;", o->parents[i].name, strcmp(ar, "Accepted") ?
		    "False" : "True", ar, o->gen, am, strcmp(rr,
		    "ResolvedRefs") ? "False" : "True", rr, o->gen, rm);
		if (so >= sizeof(seen))
			so = sizeof(seen) - 1;
		json_array_append_new(parents, json_pack("{s:{s:s,s:s,s:s,s:s},"
		    "s:s,s:[{s:s,s:s,s:s,s:s,s:s,s:I},{s:s,s:s,s:s,s:s,s:s,"
		    "s:I}]}",
		    "parentRef", "group", GW_GROUP, "kind", "Gateway",
		    "namespace", o->parents[i].ns, "name", o->parents[i].name,
		    "controllerName", GW_CONTROLLER, "conditions",
		    "type", "Accepted", "status", strcmp(ar, "Accepted") ?
		    "False" : "True", "reason", ar, "message", am,
		    "lastTransitionTime", ts, "observedGeneration",
		    (json_int_t)o->gen,
		    "type", "ResolvedRefs", "status", strcmp(rr,
		    "ResolvedRefs") ? "False" : "True", "reason", rr,
		    "message", rm, "lastTransitionTime", ts,
		    "observedGeneration", (json_int_t)o->gen));
	}
	if (strcmp(seen, o->status ? o->status : "") == 0) {
		json_decref(parents);
		return;
	}
	body = json_pack("{s:{s:o}}", "status", "parents", parents);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	k->path(cl, o, path, sizeof(path));
	strcat(path, "/status");
	snprintf(pk, sizeof(pk), "%s/%s", k->rk, key);
	if (writeback_status(cl, pk, path, text) == 0) {
		log_info("%s/%s/%s: %s status: %s%s%s", cl->name, o->ns,
		    o->name, k->name, seen[0] == '\0' ? "no Gateway of ours" :
		    ar, seen[0] != '\0' && strcmp(rr, "ResolvedRefs") ? ", " :
		    "", seen[0] != '\0' && strcmp(rr, "ResolvedRefs") ? rr : "");
		free(o->status);
		o->status = dup_or_null(seen);
	}
	free(text);
}

static void
tcp_status(struct cluster *cl, const char *key, struct robj *o)
{
	gwroute_status(cl, &tcp_kind, key, o);
}

static void
tls_status(struct cluster *cl, const char *key, struct robj *o)
{
	gwroute_status(cl, &tls_kind, key, o);
}

const struct route_kind tcp_kind = {
	.index = KIND_TCP,
	.name = "TCPRoute",
	.res = RES_TCPR,
	.rk = "tcp",
	.parse = tcp_parse,
	.prepare = tcp_prepare,
	.obs = tcp_obs,
	.path = tcp_path,
	.status = tcp_status,
};

const struct route_kind tls_kind = {
	.index = KIND_TLS,
	.name = "TLSRoute",
	.res = RES_TLSR,
	.rk = "tls",
	.gone_type = EV_SNI_GONE,
	.parse = tls_parse,
	.prepare = tls_prepare,
	.obs = tls_obs,
	.path = tls_path,
	.status = tls_status,
	.no_address = 1,
};
