/*
 * renderd — the route table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "routes.h"

void
routes_init(struct routes *r, const struct config *conf)
{
	memset(r, 0, sizeof(*r));
	r->conf = conf;
}

static void
port_free(struct port_route *pr)
{
	if (pr != NULL) {
		free(pr->backends);
		free(pr->text);
	}
	free(pr);
}

void
routes_clear(struct routes *r)
{
	unsigned long refused;
	unsigned p;

	for (p = 0; p < 65536; p++) {
		port_free(r->ports[p]);
		r->ports[p] = NULL;
	}
	free(r->api);
	refused = r->refused;		/* a count since start, as logged */
	routes_init(r, r->conf);
	r->refused = refused;
}

static size_t
api_find(const struct routes *r, const char *cluster, int *found)
{
	size_t lo = 0, hi = r->napi, mid;
	int c;

	*found = 0;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if ((c = strcmp(r->api[mid].cluster, cluster)) == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void
api_set(struct routes *r, const struct event *ev)
{
	struct api_route *a;
	size_t i, cap;
	int found;

	i = api_find(r, ev->cluster, &found);
	if (!found) {
		if (r->napi == r->capapi) {
			cap = r->capapi ? r->capapi * 2 : 16;
			if ((a = reallocarray(r->api, cap, sizeof(*a))) == NULL)
				fatal("routes");
			r->api = a;
			r->capapi = cap;
		}
		memmove(&r->api[i + 1], &r->api[i],
		    (r->napi - i) * sizeof(*r->api));
		r->napi++;
	}
	a = &r->api[i];
	memset(a, 0, sizeof(*a));
	memcpy(a->cluster, ev->cluster, sizeof(a->cluster));
	memcpy(a->cname, ev->cname, sizeof(a->cname));
	memcpy(a->host, ev->host, sizeof(a->host));
	memcpy(a->masters, ev->masters, sizeof(a->masters));
	a->nmasters = ev->nmasters;
	a->mport = (unsigned)ev->mport;
}

static void
api_del(struct routes *r, const char *cluster)
{
	size_t i;
	int found;

	i = api_find(r, cluster, &found);
	if (!found)
		return;
	memmove(&r->api[i], &r->api[i + 1],
	    (r->napi - i - 1) * sizeof(*r->api));
	r->napi--;
}

static void
port_set(struct routes *r, const struct event *ev)
{
	struct port_route *pr;
	unsigned p = (unsigned)ev->port;

	if ((pr = calloc(1, sizeof(*pr))) == NULL)
		fatal("routes");
	pr->port = p;
	memcpy(pr->cluster, ev->cluster, sizeof(pr->cluster));
	memcpy(pr->ns, ev->ns, sizeof(pr->ns));
	memcpy(pr->name, ev->name, sizeof(pr->name));
	pr->route = (unsigned)ev->route;
	if (ev->nbackends > 0) {
		if ((pr->backends = calloc(ev->nbackends,
		    sizeof(struct backend))) == NULL)
			fatal("routes");
		memcpy(pr->backends, ev->backends,
		    ev->nbackends * sizeof(struct backend));
	}
	pr->nbackends = ev->nbackends;
	if (r->ports[p] == NULL)
		r->nports++;
	port_free(r->ports[p]);
	r->ports[p] = pr;
}

static void
port_del(struct routes *r, unsigned p)
{
	if (r->ports[p] == NULL)
		return;
	port_free(r->ports[p]);
	r->ports[p] = NULL;
	r->nports--;
}

int
routes_port_allowed(const struct config *c, unsigned p)
{
	return ports_contain(&c->ports, p) && !ports_contain(&c->reserved, p) &&
	    p != c->api_port;
}

/*
 * The guard between allocd's decisions and every renderer: a decision no
 * configuration allows would make the proxy refuse its whole configuration
 * (nginx cannot listen on port 0, two listeners on the API port fail
 * Envoy's).  allocd never makes one; a bug, a store kept from another
 * configuration or a hostile peer on the bus could.  It is dropped here
 * and the rest renders; a cluster's API route it replaces goes too (the
 * table must not keep serving masters the event withdrew).
 */
static int
routes_refuse(struct routes *r, const struct event *ev)
{
	switch (ev->type) {
	case EV_API_SET:
		if (ev->mport != 0)
			return 0;
		log_warnx("cluster %s (%s): master port 0; its API "
		    "route is left out", ev->cluster, ev->cname);
		api_del(r, ev->cluster);
		break;
	case EV_PORT_SET:
		if (routes_port_allowed(r->conf, (unsigned)ev->port))
			return 0;
		log_warnx("route %s/%s/%s/%llu on port %llu: not a "
		    "workload port of the configuration; left out", ev->cluster,
		    ev->ns, ev->name, (unsigned long long)ev->route,
		    (unsigned long long)ev->port);
		break;
	default:
		return 0;
	}
	r->refused++;
	return 1;
}

int
routes_apply(struct routes *r, const struct event *ev)
{
	if (routes_refuse(r, ev))
		return 1;
	switch (ev->type) {
	case EV_API_SET:
		api_set(r, ev);
		return 1;
	case EV_API_DEL:
		api_del(r, ev->cluster);
		return 1;
	case EV_PORT_SET:
		port_set(r, ev);
		return 1;
	case EV_PORT_FREE:
		port_del(r, (unsigned)ev->port);
		return 1;
	}
	return 0;	/* observations, liveness, refusals: nothing to render */
}

int
routes_host_taken(const struct routes *r, size_t i)
{
	size_t j;

	for (j = 0; j < i; j++)
		if (strcmp(r->api[j].host, r->api[i].host) == 0)
			return 1;
	return 0;
}

int
api_master_seen(const struct api_route *a, size_t j)
{
	size_t i;

	for (i = 0; i < j; i++)
		if (strcmp(a->masters[i], a->masters[j]) == 0)
			return 1;
	return 0;
}

const char *
route_addr(char *buf, size_t len, const char *ip, unsigned port)
{
	snprintf(buf, len, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
	return buf;
}
