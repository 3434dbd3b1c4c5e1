/*
 * watcherd — EndpointSlices, for the clusters in the endpoints backend mode.
 *
 * There a Service's backends are its pods: the ready endpoints of every
 * EndpointSlice labelled kubernetes.io/service-name with it, at the port of
 * the slice that carries the Service port's name (the target port: a slice
 * names its ports after the Service's, "" for a Service's one unnamed
 * port).  What is kept of a slice is what that needs, in one block sized
 * to the object, so that obj_store frees it like any other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "valid.h"
#include "watcherd.h"

#define LABEL_SERVICE	"kubernetes.io/service-name"
#define EPS_MAX_PORTS	100	/* the API's own limit per slice */

struct eps_port {
	char		name[64];
	unsigned	port;
};

struct eps_obj {
	char		 svc[64];	/* the Service, in the slice's namespace */
	size_t		 nports;
	struct eps_port	*ports;		/* in the same block, after this */
	size_t		 naddrs;
	char		(*addrs)[EV_IPLEN];	/* ready endpoints only */
};

/* The slices of one Service, in the cluster's index of them. */
struct eps_set {
	size_t			 n, cap;
	const struct eps_obj	**v;
};

/* A port name as a Service and its slices carry it: "" or a DNS label. */
int
port_name(json_t *p, char *out, size_t len)
{
	json_t *n = json_object_get(p, "name");
	const char *s = json_string_value(n);

	if (n == NULL || json_is_null(n) || (s != NULL && *s == '\0')) {
		out[0] = '\0';
		return 0;
	}
	if (s == NULL || strlen(s) >= len || !valid_dns_label(s))
		return -1;
	strcpy(out, s);
	return 0;
}

/*
 * An endpoint counts unless it says it is not ready (conditions.ready
 * absent means ready, as the API defines it).  Only its first address is
 * used: the controller writes one, and kube-proxy reads no other.
 */
static const char *
ready_address(json_t *ep, int *bad)
{
	json_t *ready = json_object_get(json_object_get(ep, "conditions"),
	    "ready");
	const char *ip;

	if (json_is_false(ready))
		return NULL;
	ip = json_string_value(json_array_get(json_object_get(ep,
	    "addresses"), 0));
	if (ip == NULL || strlen(ip) >= EV_IPLEN || !valid_ip(ip)) {
		(*bad)++;
		return NULL;
	}
	return ip;
}

/*
 * What routing needs of an EndpointSlice, or NULL for a slice of no
 * Service or of FQDN addresses (nothing to route to).  More ready
 * endpoints than a route may have are kept up to one past the cap, so
 * that the route is refused rather than cut short.
 */
void *
eps_parse(struct cluster *cl, const char *key, json_t *obj)
{
	json_t *labels = json_object_get(json_object_get(obj, "metadata"),
	    "labels"), *ports, *eps, *p, *ep;
	const char *svc = json_string_value(json_object_get(labels,
	    LABEL_SERVICE));
	const char *type = json_string_value(json_object_get(obj,
	    "addressType"));
	const char *ip;
	struct eps_obj *e;
	size_t i, np, na;
	json_int_t port;
	int bad = 0;

	if (svc == NULL || strlen(svc) >= sizeof(e->svc) ||
	    !valid_dns_label(svc) || type == NULL ||
	    (strcmp(type, "IPv4") != 0 && strcmp(type, "IPv6") != 0))
		return NULL;
	ports = json_object_get(obj, "ports");
	eps = json_object_get(obj, "endpoints");
	np = json_array_size(ports) > EPS_MAX_PORTS ? EPS_MAX_PORTS :
	    json_array_size(ports);
	na = json_array_size(eps) > EV_MAX_BACKENDS + 1 ?
	    EV_MAX_BACKENDS + 1 : json_array_size(eps);
	if ((e = calloc(1, sizeof(*e) + np * sizeof(struct eps_port) +
	    na * EV_IPLEN)) == NULL)
		fatal("endpointslice");
	strcpy(e->svc, svc);
	e->ports = (struct eps_port *)(e + 1);
	e->addrs = (char (*)[EV_IPLEN])(e->ports + np);
	json_array_foreach(ports, i, p) {
		const char *proto = json_string_value(json_object_get(p,
		    "protocol"));

		if (e->nports == np)
			break;
		port = json_integer_value(json_object_get(p, "port"));
		/* a port without a number means "any": nothing to dial */
		if (port < 1 || port > 65535 || (proto != NULL &&
		    strcmp(proto, "TCP") != 0) ||
		    port_name(p, e->ports[e->nports].name,
		    sizeof(e->ports[0].name)) == -1)
			continue;
		e->ports[e->nports++].port = (unsigned)port;
	}
	json_array_foreach(eps, i, ep) {
		if (e->naddrs == na)
			break;
		if ((ip = ready_address(ep, &bad)) != NULL)
			strcpy(e->addrs[e->naddrs++], ip);
	}
	if (bad > 0)
		log_warnx("%s: endpointslice %s: %d endpoints without an IP "
		    "address, left out", cl->name, key, bad);
	return e;
}

void
eps_service_key(const char *key, const void *slice, char out[384])
{
	const struct eps_obj *o = slice;
	const char *slash = strchr(key, '/');

	out[0] = '\0';
	if (o != NULL && slash != NULL)
		snprintf(out, 384, "%.*s/%s", (int)(slash - key), key, o->svc);
}

/*
 * The cluster's slices by "ns/svc", kept as slices come and go, so that a
 * route's computation looks its Service's up rather than gathering every
 * slice of the cluster first (10,000 of them for 10,000 routes).  The
 * index points at the slices cl->objs[RES_EPS] holds: a slice leaves it
 * before it is freed.
 */
void
eps_index_put(struct smap *idx, const char *key, const void *slice)
{
	struct eps_set *set;
	char svc[384];
	void *v;

	eps_service_key(key, slice, svc);
	if (svc[0] == '\0')
		return;
	if ((set = smap_get(idx, svc)) == NULL) {
		if ((set = calloc(1, sizeof(*set))) == NULL)
			fatal("endpointslice");
		smap_put(idx, svc, set);
	}
	if (set->n == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 4;
		if ((v = realloc(set->v, set->cap * sizeof(*set->v))) == NULL)
			fatal("endpointslice");
		set->v = v;
	}
	set->v[set->n++] = slice;
}

void
eps_index_del(struct smap *idx, const char *key, const void *slice)
{
	struct eps_set *set;
	char svc[384];
	size_t i;

	eps_service_key(key, slice, svc);
	if (svc[0] == '\0' || (set = smap_get(idx, svc)) == NULL)
		return;
	for (i = 0; i < set->n; i++)
		if (set->v[i] == slice) {
			set->v[i] = set->v[--set->n];
			break;
		}
	if (set->n == 0) {
		smap_del(idx, svc);
		free(set->v);
		free(set);
	}
}

void
eps_index_free(struct smap *idx)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct eps_set *set;

	while ((e = smap_next(idx, &it)) != NULL) {
		set = e->val;
		free(set->v);
		free(set);
	}
	smap_free(idx);
}

static int
cmp_backend(const void *x, const void *y)
{
	const struct backend *a = x, *b = y;
	int c = strcmp(a->ip, b->ip);

	return c != 0 ? c : (a->port > b->port) - (a->port < b->port);
}

/*
 * Add the ready endpoints of Service svc ("ns/name") at its port named
 * pname, with weight, to ev: in a canonical order (sorted, each address
 * and port once), so that the same endpoints make the same observation
 * however the slices are cut.  Returns how many were added, or -1 when
 * they would be more than a route may have.
 */
int
eps_backends(const struct smap *idx, const char *svc, const char *pname,
    unsigned weight, struct event *ev)
{
	const struct eps_set *set = smap_get(idx, svc);
	const struct eps_obj *o;
	struct backend *b = NULL, *nb;
	size_t i, j, k, n = 0, cap = 0, added = 0;
	int rc = 0;

	for (i = 0; set != NULL && i < set->n; i++) {
		o = set->v[i];
		for (k = 0; k < o->nports; k++)
			if (strcmp(o->ports[k].name, pname) == 0)
				break;
		if (k == o->nports)
			continue;
		for (j = 0; j < o->naddrs; j++) {
			if (n == EV_MAX_BACKENDS) {
				free(b);
				return -1;
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				if ((nb = realloc(b, cap * sizeof(*b))) == NULL)
					fatal("endpointslice");
				b = nb;
			}
			strcpy(b[n].ip, o->addrs[j]);
			b[n++].port = (uint16_t)o->ports[k].port;
		}
	}
	if (n > 0)
		qsort(b, n, sizeof(*b), cmp_backend);
	for (i = 0; i < n && rc == 0; i++) {
		if (i > 0 && cmp_backend(&b[i - 1], &b[i]) == 0)
			continue;
		if ((rc = event_add_backend(ev, b[i].ip, b[i].port,
		    weight)) == 0)
			added++;
	}
	free(b);
	return rc == -1 ? -1 : (int)added;
}
