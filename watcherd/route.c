/*
 * watcherd — routes: what a route object's route is computed from (the
 * cluster's Services, and its Nodes or EndpointSlices) and the ROUTE
 * observation that follows: the backends of every destination, or the
 * reason the route is refused.  Every route kind (vs.c, ...) builds on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "valid.h"
#include "watcherd.h"

struct svc_port {
	unsigned	port;
	unsigned	nodeport;	/* 0: none */
	char		name[64];	/* what its EndpointSlice ports carry */
};

/*
 * A Service: its ports, and the namespaces whose routes it lets in
 * (portico.dev/allow-from), in one block sized to the object.  A Service
 * of more than SVC_MAX_PORTS ports keeps none, and says so.
 */
struct svc_obj {
	char		*allow;		/* ",ns1,ns2," or ",*,"; NULL: none */
	int		 toomany;
	size_t		 nports;
	struct svc_port	 p[];
};

struct node_obj {
	char		ip[EV_IPLEN];
};

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

/*
 * portico.dev/allow-from as ",ns1,ns2," (or ",*,") in out, which holds
 * strlen(v) + 3: a comma-separated list of namespaces, or "*", spaces
 * around each allowed.  -1 when it is not such a list.
 */
static int
allow_parse(const char *v, char *out)
{
	const char *end;
	char ns[64];
	size_t n;

	strcpy(out, ",");
	for (;;) {
		v += strspn(v, " ");
		end = v + strcspn(v, ",");
		for (n = (size_t)(end - v); n > 0 && v[n - 1] == ' '; n--)
			;
		if (n == 0 || n >= sizeof(ns))
			return -1;
		memcpy(ns, v, n);
		ns[n] = '\0';
		if (strcmp(ns, "*") != 0 && !valid_dns_label(ns))
			return -1;
		strcat(strcat(out, ns), ",");
		if (*end == '\0')
			return 0;
		v = end + 1;
	}
}

/*
 * What routing needs of the Service "ns/name" key.  A portico.dev/allow-
 * from that is not a list of namespaces lets no other namespace in, and
 * is logged (it is the Service owner's to fix, and names only them).
 */
void *
svc_parse(struct cluster *cl, const char *key, json_t *obj)
{
	const char *allow = annotation(obj, ANN_ALLOW_FROM);
	struct svc_obj *s;
	struct svc_port *sp;
	json_t *ports, *p;
	size_t i, n, alen;

	ports = json_object_get(json_object_get(obj, "spec"), "ports");
	n = json_array_size(ports) > SVC_MAX_PORTS ? 0 :
	    json_array_size(ports);
	/* room for the list only when it may be one: memory follows input */
	alen = allow != NULL && strlen(allow) <= SVC_MAX_ALLOW ?
	    strlen(allow) + 3 : 0;
	if ((s = calloc(1, sizeof(*s) + n * sizeof(s->p[0]) + alen)) == NULL)
		fatal("svc");
	s->toomany = json_array_size(ports) > SVC_MAX_PORTS;
	if (allow != NULL) {
		s->allow = alen > 0 ? (char *)(s->p + n) : NULL;
		if (s->allow == NULL || allow_parse(allow, s->allow) == -1) {
			log_warnx("%s: service %s: %s is not a list of "
			    "namespaces or \"*\" (at most %d characters); no "
			    "other namespace may route to it", cl->name, key,
			    ANN_ALLOW_FROM, SVC_MAX_ALLOW);
			s->allow = NULL;
		}
	}
	json_array_foreach(ports, i, p) {
		json_int_t port = json_integer_value(json_object_get(p, "port"));
		json_int_t np = json_integer_value(json_object_get(p,
		    "nodePort"));

		if (s->nports == n)
			break;
		sp = &s->p[s->nports];
		if (port < 1 || port > 65535 || np < 0 || np > 65535)
			continue;
		/* a name no slice port can carry: their names are checked */
		if (port_name(p, sp->name, sizeof(sp->name)) == -1)
			strcpy(sp->name, "-");
		sp->port = (unsigned)port;
		sp->nodeport = (unsigned)np;
		s->nports++;
	}
	return s;
}

void *
node_parse(json_t *obj)
{
	json_t *status = json_object_get(obj, "status"), *a, *c;
	struct node_obj *n;
	const char *ip;
	size_t i;

	/* a node that says it is not Ready gets no traffic */
	json_array_foreach(json_object_get(status, "conditions"), i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *s = json_string_value(json_object_get(c, "status"));

		if (t && s && strcmp(t, "Ready") == 0 && strcmp(s, "True"))
			return NULL;
	}
	json_array_foreach(json_object_get(status, "addresses"), i, a) {
		const char *t = json_string_value(json_object_get(a, "type"));

		ip = json_string_value(json_object_get(a, "address"));
		if (t && ip && strcmp(t, "InternalIP") == 0 && valid_ip(ip) &&
		    strlen(ip) < EV_IPLEN) {
			if ((n = calloc(1, sizeof(*n))) == NULL)
				fatal("node");
			strcpy(n->ip, ip);
			return n;
		}
	}
	return NULL;
}

static int
cmp_ip(const void *a, const void *b)
{
	return strcmp(a, b);
}

void
route_service_key(const char *ns, const char *host, char key[384])
{
	char svc[64], sns[64];
	const char *dot = strchr(host, '.'), *rest;
	size_t n;

	key[0] = '\0';
	if (dot == NULL) {
		snprintf(key, 384, "%s/%s", ns, host);
		return;
	}
	/* <svc>.<ns>[.svc[.cluster.local]] */
	n = (size_t)(dot - host);
	if (n >= sizeof(svc))
		return;
	memcpy(svc, host, n);
	svc[n] = '\0';
	rest = dot + 1;
	n = strcspn(rest, ".");
	if (n == 0 || n >= sizeof(sns))
		return;
	memcpy(sns, rest, n);
	sns[n] = '\0';
	rest += n;
	if (*rest != '\0' && strcmp(rest, ".svc") != 0 &&
	    strcmp(rest, ".svc.cluster.local") != 0)
		return;
	snprintf(key, 384, "%s/%s", sns, svc);
}

/*
 * The Service a destination host names, relative to namespace ns; its
 * "ns/name" in key ("" when the host names no Service at all).
 */
static struct svc_obj *
dest_service(struct cluster *cl, const char *ns, const char *host,
    char key[384])
{
	route_service_key(ns, host, key);
	return key[0] != '\0' ? smap_get(&cl->objs[RES_SVC], key) : NULL;
}

/*
 * The port written for route r in the object's address annotation
 * ("host:port[,host:port...]" with our host), or 0.
 */
static unsigned
written_port(const struct cluster *cl, const struct robj *vs, size_t r)
{
	const char *s = vs->address;
	size_t hl = strlen(cl->host);
	unsigned long port;
	char *end;

	for (; s != NULL && r > 0; r--)
		if ((s = strchr(s, ',')) != NULL)
			s++;
	if (s == NULL || strncmp(s, cl->host, hl) != 0 || s[hl] != ':' ||
	    s[hl + 1] < '0' || s[hl + 1] > '9')
		return 0;
	port = strtoul(s + hl + 1, &end, 10);
	if (port == 0 || port > 65535 || (*end != '\0' && *end != ','))
		return 0;
	return (unsigned)port;
}

/*
 * Whether the Service "sns/name" key lets routes of namespace ns in: its
 * own namespace's always, another's only with the owner's consent.
 */
static int
svc_allows(const struct svc_obj *s, const char *key, const char *ns)
{
	size_t n = strlen(ns);
	char pat[68];

	if (strncmp(key, ns, n) == 0 && key[n] == '/')
		return 1;
	if (s == NULL || s->allow == NULL)
		return 0;
	snprintf(pat, sizeof(pat), ",%s,", ns);
	return strstr(s->allow, ",*,") != NULL || strstr(s->allow, pat) != NULL;
}

/*
 * A ReferenceGrant: the routes (by kind, 1 << GWK_*, and namespace) that
 * may name Services of its namespace, and which Services (all of them, or
 * by name).  Sized to the object; at most REFG_MAX of each.
 */
#define REFG_MAX	16

struct refg_from {
	char		ns[64];
	unsigned	kinds;
};

struct refg_obj {
	size_t		 nfrom;
	size_t		 nto;		/* names; 0 with any: every Service */
	int		 any;
	struct refg_from *from;
	char		(*to)[254];
};

void *
refgrant_parse(json_t *obj)
{
	json_t *spec = json_object_get(obj, "spec"), *f, *t;
	struct refg_obj *g;
	size_t i, nf, nt;

	nf = json_array_size(json_object_get(spec, "from"));
	nt = json_array_size(json_object_get(spec, "to"));
	if (nf == 0 || nt == 0 || nf > REFG_MAX || nt > REFG_MAX)
		return NULL;		/* grants nothing */
	if ((g = calloc(1, sizeof(*g) + nf * sizeof(*g->from) +
	    nt * sizeof(*g->to))) == NULL)
		fatal("refgrant");
	g->from = (struct refg_from *)(g + 1);
	g->to = (char (*)[254])(g->from + nf);
	json_array_foreach(json_object_get(spec, "from"), i, f) {
		const char *gr = json_string_value(json_object_get(f, "group"));
		const char *k = json_string_value(json_object_get(f, "kind"));
		const char *ns = json_string_value(json_object_get(f,
		    "namespace"));
		struct refg_from *rf = &g->from[g->nfrom];

		if (gr == NULL || k == NULL || ns == NULL ||
		    strcmp(gr, GW_GROUP) != 0 || !valid_dns_label(ns))
			continue;
		if (strcmp(k, "TCPRoute") == 0)
			rf->kinds = 1u << GWK_TCP;
		else if (strcmp(k, "TLSRoute") == 0)
			rf->kinds = 1u << GWK_TLS;
		else
			continue;
		strcpy(rf->ns, ns);
		g->nfrom++;
	}
	json_array_foreach(json_object_get(spec, "to"), i, t) {
		const char *gr = json_string_value(json_object_get(t, "group"));
		const char *k = json_string_value(json_object_get(t, "kind"));
		const char *name = json_string_value(json_object_get(t, "name"));

		if (gr == NULL || gr[0] != '\0' || k == NULL ||
		    strcmp(k, "Service") != 0)
			continue;
		if (name == NULL)
			g->any = 1;
		else if (valid_dns_label(name))
			strcpy(g->to[g->nto++], name);
	}
	return g;
}

/*
 * Whether a ReferenceGrant in the namespace of the Service "sns/name" key
 * lets a route of kind (1 << GWK_*; 0, a VirtualService: never) from
 * namespace ns name it.
 */
int
refgrant_allows(struct cluster *cl, const char *key, unsigned kind,
    const char *ns)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	const struct refg_obj *g;
	const char *slash = strchr(key, '/');
	size_t i, n;
	int from;

	if (kind == 0 || slash == NULL)
		return 0;
	n = (size_t)(slash - key) + 1;	/* "sns/" */
	while ((e = smap_next(&cl->objs[RES_REFG], &it)) != NULL) {
		if ((g = e->val) == NULL || strncmp(e->key, key, n) != 0)
			continue;
		for (i = 0, from = 0; i < g->nfrom && !from; i++)
			from = (g->from[i].kinds & kind) &&
			    strcmp(g->from[i].ns, ns) == 0;
		if (!from)
			continue;
		if (g->any)
			return 1;
		for (i = 0; i < g->nto; i++)
			if (strcmp(g->to[i], slash + 1) == 0)
				return 1;
	}
	return 0;
}

/* The Service's port d names; NULL with why if it has none such. */
static const struct svc_port *
svc_port_find(const struct svc_obj *s, const struct dest *d, char *why,
    size_t len)
{
	size_t k;

	if (s->toomany) {
		snprintf(why, len, "destination %s: the service has more than "
		    "%d ports", d->host, SVC_MAX_PORTS);
		return NULL;
	}
	for (k = 0; k < s->nports; k++)
		if (s->p[k].port == d->port)
			return &s->p[k];
	snprintf(why, len, "destination %s: the service has no port %u",
	    d->host, d->port);
	return NULL;
}

/*
 * Every ready node at the Service port's nodePort; -1 with why if it has
 * none, or no node is ready (the route keeps its port, and comes back
 * with the first ready node).
 */
static int
dest_nodeport(const struct bsrc *src, const struct dest *d,
    const struct svc_obj *s, struct event *ev, char *why, size_t len)
{
	const struct svc_port *sp;
	size_t k;

	if ((sp = svc_port_find(s, d, why, len)) == NULL)
		return -1;
	if (sp->nodeport == 0) {
		snprintf(why, len, "destination %s: port %u has no nodePort",
		    d->host, d->port);
		return -1;
	}
	if (src->nips == 0) {
		snprintf(why, len, "destination %s: no ready node for "
		    "nodePort %u", d->host, sp->nodeport);
		return -1;
	}
	for (k = 0; k < src->nips; k++)
		event_add_backend(ev, src->ips[k], sp->nodeport, d->weight);
	return 0;
}

/*
 * Every ready pod of the Service ("ns/name" svc) at the target port of
 * the Service port; -1 with why if there is none, or too many.
 */
static int
dest_endpoints(const struct bsrc *src, const struct dest *d,
    const struct svc_obj *s, const char *svc, struct event *ev, char *why,
    size_t len, size_t r)
{
	const struct svc_port *sp;
	int n;

	if ((sp = svc_port_find(s, d, why, len)) == NULL)
		return -1;
	if ((n = eps_backends(src->eps, svc, sp->name, d->weight,
	    ev)) == -1) {
		snprintf(why, len, "tcp[%zu]: more than %d backends", r,
		    EV_MAX_BACKENDS);
		return -1;
	}
	if (n == 0) {
		snprintf(why, len, "destination %s: no ready endpoint for "
		    "port %u", d->host, d->port);
		return -1;
	}
	return 0;
}

void
robj_read_uid(struct robj *vs, json_t *obj)
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
robj_claim(const struct robj *vs, size_t r, struct event *ev)
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

void
route_init(struct cluster *cl, const struct route_kind *k, struct robj *o,
    size_t r, struct event *ev)
{
	event_init(ev, EV_ROUTE);
	event_set_str(ev, F_CLUSTER, cl->id);
	event_set_str(ev, F_NS, o->ns);
	event_set_str(ev, F_NAME, o->name);
	if (k->rk[0] != '\0')
		event_set_str(ev, F_RKIND, k->rk);
	ev->route = r;
	ev->has |= F_ROUTE | F_BACKENDS;
	if (o->why[0] != '\0') {
		event_set_str(ev, F_WHY, o->why);
		return;
	}
	if (r == 0 && o->want != 0) {
		ev->want = o->want;
		ev->has |= F_WANT;
	}
	/* a store that was lost adopts what the object says it has */
	if ((ev->had = written_port(cl, o, r)) != 0)
		ev->has |= F_HAD;
	robj_claim(o, r, ev);
}

/*
 * Route r of the object: the backends of its destinations, or why it is
 * refused.  A destination in another namespace is refused, in the same
 * words whether or not the Service exists, unless that Service allows the
 * route's namespace in; then 1 is returned: what the route had must not be
 * served any more (consent withdrawn).  Otherwise 0.
 */
int
route_backends(struct cluster *cl, struct robj *vs, size_t r,
    const struct bsrc *src, struct event *ev)
{
	struct svc_obj *s;
	struct dest *d;
	size_t i;
	int rc, cut = 0;
	char why[400], svc[384];

	if (vs->why[0] != '\0')
		return 0;
	/*
	 * Consent first, over every destination: a route refused for
	 * another reason keeps what it had, and must not keep another
	 * namespace's backends once their owner says no.
	 */
	for (i = 0; i < vs->routes[r].nd; i++) {
		d = &vs->routes[r].d[i];
		s = dest_service(cl, vs->ns, d->host, svc);
		if (svc[0] != '\0' && !svc_allows(s, svc, vs->ns) &&
		    !refgrant_allows(cl, svc, vs->refkind, vs->ns)) {
			snprintf(why, sizeof(why), "destination %s: in another "
			    "namespace, and no service there allows routes "
			    "from %s (%s%s)", d->host, vs->ns, ANN_ALLOW_FROM,
			    vs->refkind ? ", or a ReferenceGrant" : "");
			cut = 1;
			goto refuse;
		}
	}
	if (cl->backend == BACKEND_NODEPORT &&
	    src->nips * vs->routes[r].nd > EV_MAX_BACKENDS) {
		snprintf(why, sizeof(why), "tcp[%zu]: more than %d backends",
		    r, EV_MAX_BACKENDS);
		goto refuse;
	}
	for (i = 0; i < vs->routes[r].nd; i++) {
		d = &vs->routes[r].d[i];
		s = dest_service(cl, vs->ns, d->host, svc);
		if (s == NULL) {
			snprintf(why, sizeof(why), "destination %s: no such "
			    "service", d->host);
			goto refuse;
		}
		rc = cl->backend == BACKEND_ENDPOINTS ?
		    dest_endpoints(src, d, s, svc, ev, why, sizeof(why), r) :
		    dest_nodeport(src, d, s, ev, why, sizeof(why));
		if (rc == -1)
			goto refuse;
	}
	return 0;
 refuse:
	free(ev->backends);
	ev->backends = NULL;
	ev->nbackends = 0;
	why[sizeof(ev->why) - 1] = '\0';	/* a long host is cut, never lost */
	event_set_str(ev, F_WHY, why);
	return cut;
}

void
robj_free(struct robj *vs)
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
	free(vs->parents);
	free(vs->hosts);
	free(vs->status);
	free(vs->others);
	free(vs);
}

/*
 * What the cluster's routes are computed from: the nodes' addresses in a
 * canonical order (so equal means unchanged), or its EndpointSlices by
 * Service.
 */
void
bsrc_init(struct cluster *cl, struct bsrc *src)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct node_obj *node;

	memset(src, 0, sizeof(*src));
	if (cl->backend == BACKEND_ENDPOINTS) {
		src->eps = &cl->eps_idx;
		return;
	}
	if ((src->ips = calloc(cl->objs[RES_NODE].n + 1, EV_IPLEN)) == NULL)
		fatal("calloc");
	while ((e = smap_next(&cl->objs[RES_NODE], &it)) != NULL)
		if ((node = e->val) != NULL)
			strcpy(src->ips[src->nips++], node->ip);
	qsort(src->ips, src->nips, EV_IPLEN, cmp_ip);
}

void
bsrc_free(struct bsrc *src)
{
	free(src->ips);
}
