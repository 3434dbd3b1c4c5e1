/*
 * renderd — the route table.
 */
#include <stddef.h>
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

static void
sni_free_all(struct routes *r)
{
	size_t i;

	for (i = 0; i < r->nsni; i++)
		free(r->sni[i].backends);
	free(r->sni);
	r->sni = NULL;
	r->nsni = r->capsni = 0;
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
	sni_free_all(r);
	refused = r->refused;		/* a count since start, as logged */
	routes_init(r, r->conf);
	r->refused = refused;
}

/*
 * The records of a table's sorted arrays (API routes by cluster, TLSRoute
 * names by host) are found by a binary search on the key string at off;
 * the index of key, or where it goes (*found 0).
 */
static size_t
sorted_find(const void *base, size_t n, size_t sz, size_t off,
    const char *key, int *found)
{
	size_t lo = 0, hi = n, mid;
	int c;

	*found = 0;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		c = strcmp((const char *)base + mid * sz + off, key);
		if (c == 0) {
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

/* Room for a record at i of a sorted array of *n (grown by doubling). */
static void *
sorted_open(void *base, size_t *n, size_t *cap, size_t sz, size_t i)
{
	size_t c;

	if (*n == *cap) {
		c = *cap ? *cap * 2 : 16;
		if ((base = reallocarray(base, c, sz)) == NULL)
			fatal("routes");
		*cap = c;
	}
	memmove((char *)base + (i + 1) * sz, (char *)base + i * sz,
	    (*n - i) * sz);
	(*n)++;
	return base;
}

/* The record at i leaves a sorted array of *n. */
static void
sorted_close(void *base, size_t *n, size_t sz, size_t i)
{
	memmove((char *)base + i * sz, (char *)base + (i + 1) * sz,
	    (*n - i - 1) * sz);
	(*n)--;
}

static size_t
api_find(const struct routes *r, const char *cluster, int *found)
{
	return sorted_find(r->api, r->napi, sizeof(*r->api),
	    offsetof(struct api_route, cluster), cluster, found);
}

static void
api_set(struct routes *r, const struct event *ev)
{
	struct api_route *a;
	size_t i;
	int found;

	i = api_find(r, ev->cluster, &found);
	if (!found)
		r->api = sorted_open(r->api, &r->napi, &r->capapi,
		    sizeof(*r->api), i);
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
	if (found)
		sorted_close(r->api, &r->napi, sizeof(*r->api), i);
}

static size_t
sni_find(const struct routes *r, const char *host, int *found)
{
	return sorted_find(r->sni, r->nsni, sizeof(*r->sni),
	    offsetof(struct sni_route, host), host, found);
}

static struct backend *
backends_dup(const struct backend *b, size_t n)
{
	struct backend *d;

	if (n == 0)
		return NULL;
	if ((d = calloc(n, sizeof(*d))) == NULL)
		fatal("routes");
	memcpy(d, b, n * sizeof(*d));
	return d;
}

static void
sni_set(struct routes *r, const struct event *ev)
{
	struct sni_route *s;
	size_t i;
	int found;

	i = sni_find(r, ev->host, &found);
	if (!found)
		r->sni = sorted_open(r->sni, &r->nsni, &r->capsni,
		    sizeof(*r->sni), i);
	else
		free(r->sni[i].backends);
	s = &r->sni[i];
	memset(s, 0, sizeof(*s));
	memcpy(s->host, ev->host, sizeof(s->host));
	memcpy(s->cluster, ev->cluster, sizeof(s->cluster));
	memcpy(s->ns, ev->ns, sizeof(s->ns));
	memcpy(s->name, ev->name, sizeof(s->name));
	s->route = (unsigned)ev->route;
	s->backends = backends_dup(ev->backends, ev->nbackends);
	s->nbackends = ev->nbackends;
}

static void
sni_del(struct routes *r, const char *host)
{
	size_t i;
	int found;

	i = sni_find(r, host, &found);
	if (!found)
		return;
	free(r->sni[i].backends);
	sorted_close(r->sni, &r->nsni, sizeof(*r->sni), i);
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
	else
		r->nportsrv -= r->ports[p]->nbackends;
	r->nportsrv += pr->nbackends;
	port_free(r->ports[p]);
	r->ports[p] = pr;
}

static void
port_del(struct routes *r, unsigned p)
{
	if (r->ports[p] == NULL)
		return;
	r->nportsrv -= r->ports[p]->nbackends;
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
	case EV_RT_API:
		if (ev->mport != 0)
			return 0;
		log_warnx("cluster %s (%s): master port 0; its API "
		    "route is left out", ev->cluster, ev->cname);
		api_del(r, ev->cluster);
		break;
	case EV_PORT_SET:
	case EV_RT_PORT:
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
	case EV_RT_API:
		api_set(r, ev);
		return 1;
	case EV_API_DEL:
	case EV_RT_API_DEL:
		api_del(r, ev->cluster);
		return 1;
	case EV_PORT_SET:
	case EV_RT_PORT:
		port_set(r, ev);
		return 1;
	case EV_PORT_FREE:
	case EV_RT_PORT_DEL:
		port_del(r, (unsigned)ev->port);
		return 1;
	case EV_SNI_SET:
	case EV_RT_SNI:
		sni_set(r, ev);
		return 1;
	case EV_SNI_DEL:
	case EV_RT_SNI_DEL:
		sni_del(r, ev->host);
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
routes_sni_shadowed(const struct routes *r, size_t i)
{
	size_t j;

	for (j = 0; j < r->napi; j++)
		if (strcmp(r->api[j].host, r->sni[i].host) == 0)
			return 1;
	return 0;
}

int
routes_merged_weight(const struct backend *b, size_t n, size_t j)
{
	int w = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(b[i].ip, b[j].ip) != 0 || b[i].port != b[j].port)
			continue;
		if (i < j)
			return -1;
		w += (int)b[i].weight;
	}
	return w;
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

void
routes_api_item(const struct api_route *a, struct event *ev)
{
	ev->type = EV_RT_API;
	memcpy(ev->cluster, a->cluster, sizeof(ev->cluster));
	memcpy(ev->cname, a->cname, sizeof(ev->cname));
	memcpy(ev->host, a->host, sizeof(ev->host));
	memcpy(ev->masters, a->masters, sizeof(ev->masters));
	ev->nmasters = a->nmasters;
	ev->mport = a->mport;
	ev->has |= F_CLUSTER | F_CNAME | F_HOST | F_MASTERS | F_MPORT;
}

void
routes_port_item(const struct port_route *pr, struct event *ev)
{
	size_t j;

	ev->type = EV_RT_PORT;
	ev->port = pr->port;
	memcpy(ev->cluster, pr->cluster, sizeof(ev->cluster));
	memcpy(ev->ns, pr->ns, sizeof(ev->ns));
	memcpy(ev->name, pr->name, sizeof(ev->name));
	ev->route = pr->route;
	ev->has |= F_PORT | F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_BACKENDS;
	for (j = 0; j < pr->nbackends; j++)
		if (event_add_backend(ev, pr->backends[j].ip,
		    pr->backends[j].port, pr->backends[j].weight) == -1)
			fatal("routes_port_item");
}

void
routes_sni_item(const struct sni_route *sr, struct event *ev)
{
	size_t j;

	ev->type = EV_RT_SNI;
	memcpy(ev->host, sr->host, sizeof(ev->host));
	memcpy(ev->cluster, sr->cluster, sizeof(ev->cluster));
	memcpy(ev->ns, sr->ns, sizeof(ev->ns));
	memcpy(ev->name, sr->name, sizeof(ev->name));
	ev->route = sr->route;
	ev->has |= F_HOST | F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_BACKENDS;
	for (j = 0; j < sr->nbackends; j++)
		if (event_add_backend(ev, sr->backends[j].ip,
		    sr->backends[j].port, sr->backends[j].weight) == -1)
			fatal("routes_sni_item");
}

const struct api_route *
routes_api(const struct routes *r, const char *cluster)
{
	size_t i;
	int found;

	i = api_find(r, cluster, &found);
	return found ? &r->api[i] : NULL;
}

int
routes_item(const struct routes *r, const struct event *d, struct event *ev)
{
	const struct api_route *a;
	unsigned p;
	size_t i;
	int found;

	switch (d->type) {
	case EV_API_SET:
	case EV_API_DEL:
		if ((a = routes_api(r, d->cluster)) != NULL) {
			routes_api_item(a, ev);
			return 0;
		}
		ev->type = EV_RT_API_DEL;
		event_set_str(ev, F_CLUSTER, d->cluster);
		return 0;
	case EV_PORT_SET:
	case EV_PORT_FREE:
		p = (unsigned)d->port;
		if (r->ports[p] != NULL) {
			routes_port_item(r->ports[p], ev);
			return 0;
		}
		ev->type = EV_RT_PORT_DEL;
		ev->port = p;
		ev->has |= F_PORT;
		return 0;
	case EV_SNI_SET:
	case EV_SNI_DEL:
		i = sni_find(r, d->host, &found);
		if (found) {
			routes_sni_item(&r->sni[i], ev);
			return 0;
		}
		ev->type = EV_RT_SNI_DEL;
		event_set_str(ev, F_HOST, d->host);
		return 0;
	}
	return -1;
}

int
routes_items(const struct routes *r, int (*fn)(struct event *, void *),
    void *arg)
{
	struct event ev;
	size_t i;
	unsigned p;
	int rc = 0;

	for (i = 0; i < r->napi && rc == 0; i++) {
		event_init(&ev, EV_RT_API);
		routes_api_item(&r->api[i], &ev);
		rc = fn(&ev, arg);
		event_free(&ev);
	}
	for (p = 0; p < 65536 && rc == 0; p++) {
		if (r->ports[p] == NULL)
			continue;
		event_init(&ev, EV_RT_PORT);
		routes_port_item(r->ports[p], &ev);
		rc = fn(&ev, arg);
		event_free(&ev);
	}
	for (i = 0; i < r->nsni && rc == 0; i++) {
		event_init(&ev, EV_RT_SNI);
		routes_sni_item(&r->sni[i], &ev);
		rc = fn(&ev, arg);
		event_free(&ev);
	}
	return rc;
}

int
routes_port_same(const struct port_route *a, const struct port_route *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return a->port == b->port && a->route == b->route &&
	    strcmp(a->cluster, b->cluster) == 0 && strcmp(a->ns, b->ns) == 0 &&
	    strcmp(a->name, b->name) == 0 && a->nbackends == b->nbackends &&
	    (a->nbackends == 0 || memcmp(a->backends, b->backends,
	    a->nbackends * sizeof(*a->backends)) == 0);
}

/* The arrays are built by api_set() from zeroed entries: memcmp holds. */
int
routes_api_same(const struct routes *a, const struct routes *b)
{
	return a->napi == b->napi && (a->napi == 0 ||
	    memcmp(a->api, b->api, a->napi * sizeof(*a->api)) == 0);
}

int
routes_sni_same(const struct routes *a, const struct routes *b)
{
	const struct sni_route *x, *y;
	size_t i;

	if (a->nsni != b->nsni)
		return 0;
	for (i = 0; i < a->nsni; i++) {
		x = &a->sni[i];
		y = &b->sni[i];
		if (strcmp(x->host, y->host) != 0 || x->route != y->route ||
		    strcmp(x->cluster, y->cluster) != 0 ||
		    strcmp(x->ns, y->ns) != 0 ||
		    strcmp(x->name, y->name) != 0 ||
		    x->nbackends != y->nbackends || (x->nbackends > 0 &&
		    memcmp(x->backends, y->backends,
		    x->nbackends * sizeof(*x->backends)) != 0))
			return 0;
	}
	return 1;
}

void
routes_copy_port(struct routes *dst, const struct routes *src, unsigned p)
{
	const struct port_route *s = src->ports[p];
	struct port_route *pr;

	if (s == NULL) {
		port_del(dst, p);
		return;
	}
	if ((pr = calloc(1, sizeof(*pr))) == NULL)
		fatal("routes");
	*pr = *s;
	pr->text = NULL;
	pr->textlen = 0;
	pr->textvar = 0;
	pr->backends = NULL;
	if (s->nbackends > 0) {
		if ((pr->backends = calloc(s->nbackends,
		    sizeof(struct backend))) == NULL)
			fatal("routes");
		memcpy(pr->backends, s->backends,
		    s->nbackends * sizeof(struct backend));
	}
	if (dst->ports[p] == NULL)
		dst->nports++;
	else
		dst->nportsrv -= dst->ports[p]->nbackends;
	dst->nportsrv += pr->nbackends;
	port_free(dst->ports[p]);
	dst->ports[p] = pr;
}

void
routes_copy_api(struct routes *dst, const struct routes *src)
{
	struct api_route *a = NULL;

	if (src->napi > 0) {
		if ((a = reallocarray(NULL, src->napi, sizeof(*a))) == NULL)
			fatal("routes");
		memcpy(a, src->api, src->napi * sizeof(*a));
	}
	free(dst->api);
	dst->api = a;
	dst->napi = dst->capapi = src->napi;
}

void
routes_copy_sni(struct routes *dst, const struct routes *src)
{
	size_t i;

	sni_free_all(dst);
	if (src->nsni == 0)
		return;
	if ((dst->sni = calloc(src->nsni, sizeof(*dst->sni))) == NULL)
		fatal("routes");
	for (i = 0; i < src->nsni; i++) {
		dst->sni[i] = src->sni[i];
		dst->sni[i].backends = backends_dup(src->sni[i].backends,
		    src->sni[i].nbackends);
	}
	dst->nsni = dst->capsni = src->nsni;
}

void
routes_copy(struct routes *dst, const struct routes *src)
{
	unsigned p;

	routes_copy_api(dst, src);
	routes_copy_sni(dst, src);
	for (p = 0; p < 65536; p++)
		if (dst->ports[p] != NULL || src->ports[p] != NULL)
			routes_copy_port(dst, src, p);
}

/* A renderer per proxy kind (the config accepts these kinds only). */
static const struct {
	const char	*kind;
	int		(*render)(const struct routes *, const struct config *,
			    const struct proxy_conf *, FILE *);
} renderers[] = {
	{ "haproxy",	haproxy_render },
	{ "nginx",	nginx_render },
	{ "envoy",	envoy_render },
};

int
routes_render(const struct routes *r, const struct config *c,
    const struct proxy_conf *px, FILE *fp)
{
	size_t i;

	for (i = 0; i < sizeof(renderers) / sizeof(renderers[0]); i++)
		if (strcmp(renderers[i].kind, px->kind) == 0)
			return renderers[i].render(r, c, px, fp);
	log_warnx("no renderer for proxy kind %s", px->kind);
	return -1;
}
