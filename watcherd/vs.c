/*
 * watcherd — Istio's VirtualService as a route kind: exposed by the
 * annotation portico.dev/expose, one route per spec.tcp entry, its
 * destinations by Service host name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "valid.h"
#include "watcherd.h"

static void
vs_parse(struct cluster *cl, struct robj *vs, json_t *obj)
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
	(void)cl;
	robj_read_uid(vs, obj);
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

static int
vs_obs(struct cluster *cl, struct robj *o, size_t r, const struct bsrc *src,
    struct event *ev)
{
	route_init(cl, &vs_kind, o, r, ev);
	return route_backends(cl, o, r, src, ev);
}

static void
vs_path(struct cluster *cl, const struct robj *o, char *buf, size_t len)
{
	snprintf(buf, len, "/apis/networking.istio.io/%s/namespaces/%s/"
	    "virtualservices/%s", cl->ver[RES_VS], o->ns, o->name);
}

const struct route_kind vs_kind = {
	.index = KIND_VS,
	.name = "VirtualService",
	.res = RES_VS,
	.rk = "",
	.parse = vs_parse,
	.obs = vs_obs,
	.path = vs_path,
};
