/*
 * renderd — the route table, rebuilt from allocd's decisions.
 */
#ifndef RENDERD_ROUTES_H
#define RENDERD_ROUTES_H

#include <stdio.h>

#include "config.h"
#include "event.h"

struct api_route {
	char		cluster[64];
	char		cname[64];
	char		host[254];
	char		masters[EV_MAX_MASTERS][EV_IPLEN];
	size_t		nmasters;
	unsigned	mport;
};

struct port_route {
	unsigned	port;
	char		cluster[64];
	char		ns[64];
	char		name[254];
	unsigned	route;
	struct backend	*backends;
	size_t		nbackends;
	/*
	 * What a renderer made of it last time, and under which variant
	 * (0: none): a port that did not change is copied, not printed.
	 */
	char		*text;
	size_t		textlen;
	int		textvar;
};

struct routes {
	const struct config	*conf;		/* what may be rendered */
	struct api_route	*api;		/* sorted by cluster id */
	size_t			 napi;
	size_t			 capapi;
	struct port_route	*ports[65536];
	unsigned		 nports;
	unsigned long		 refused;	/* decisions left out */
};

void	routes_init(struct routes *, const struct config *);
void	routes_clear(struct routes *);
/*
 * Apply one decision; 1 when the rendered output may change.  A route on a
 * port the configuration does not give out (outside `ports`, reserved, the
 * API port) or a cluster whose masters listen on port 0 is left out of the
 * table, whatever the event says: logged and counted in refused.
 */
int	routes_apply(struct routes *, const struct event *);
/* May a workload route be rendered on port p: in ports, not reserved, not
 * the API port? */
int	routes_port_allowed(const struct config *, unsigned p);

/*
 * Apply every event of a state file (JSON lines, see state.c); -1 with
 * "file:line: reason" in err at the first line that is not a valid event.
 */
int	state_load(struct routes *, const char *path, char *err, size_t);

/* "ip:port" into buf, IPv6 in brackets: the form both proxies read. */
const char *route_addr(char *buf, size_t, const char *ip, unsigned port);
/* Does an earlier cluster (by id) already route api[i]'s host?  It waits. */
int	routes_host_taken(const struct routes *, size_t i);
/* Is master j a repeat of an earlier one (one server an address)? */
int	api_master_seen(const struct api_route *, size_t j);

/* The renderers: a pure function of (routes, config, proxy). */
int	haproxy_render(const struct routes *, const struct config *,
	    const struct proxy_conf *, FILE *);
int	nginx_render(const struct routes *, const struct config *,
	    const struct proxy_conf *, FILE *);
int	envoy_render(const struct routes *, const struct config *,
	    const struct proxy_conf *, FILE *);

#endif
