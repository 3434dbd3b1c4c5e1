/*
 * renderd — the route table, rebuilt from allocd's decisions.
 *
 * The contract between renderd and applyd: renderd keeps it from allocd's
 * decisions and publishes it as items (EV_RT_*); applyd keeps its own
 * copies from those items and links this module and the renderers, so
 * that the files its proxy reads are what renderd -T prints for the same
 * table.
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

/*
 * A TLSRoute's hostname on the shared TLS port, passed through by SNI to
 * its backends (allocd's SNI_SET).  One name, one route: allocd gives a
 * name to its first holder alone.
 */
struct sni_route {
	char		host[254];
	char		cluster[64];
	char		ns[64];
	char		name[254];
	unsigned	route;
	struct backend	*backends;
	size_t		nbackends;
};

struct routes {
	const struct config	*conf;		/* what may be rendered */
	struct api_route	*api;		/* sorted by cluster id */
	size_t			 napi;
	size_t			 capapi;
	struct sni_route	*sni;		/* sorted by host */
	size_t			 nsni;
	size_t			 capsni;
	struct port_route	*ports[65536];
	unsigned		 nports;
	size_t			 nportsrv;	/* their backends, summed */
	unsigned long		 refused;	/* decisions left out */
	/*
	 * Ports another program holds on the proxy's host (a bit each, see
	 * applyd/held.c), or NULL: the renderers bind none of them.  Only
	 * applyd sets it; renderd -T never does.
	 */
	const unsigned char	*held;
};

#define ROUTES_HELD(r, p)	((r)->held != NULL && \
	((r)->held[(p) >> 3] & (1u << ((p) & 7))))

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
 * The table as renderd publishes it (EV_RT_*, see common/event.h).  A
 * decision applied by routes_apply() becomes one item: the state of the
 * entry it touched, whatever that decision was (a refused one republishes
 * the entry as it stands).  routes_item() fills ev (event_init'ed by the
 * caller) with it; 0, or -1 when the decision touches no route.
 */
int	routes_item(const struct routes *, const struct event *decision,
	    struct event *ev);
/* The items of the whole table, in order, to fn; what fn returned last. */
int	routes_items(const struct routes *, int (*fn)(struct event *, void *),
	    void *);
/* api[i], port p and sni[i] as items (ev event_init'ed by the caller). */
void	routes_api_item(const struct api_route *, struct event *);
void	routes_port_item(const struct port_route *, struct event *);
void	routes_sni_item(const struct sni_route *, struct event *);
/* The API route of cluster, or NULL. */
const struct api_route *routes_api(const struct routes *, const char *);
/* Are two entries the same route (NULL for none)? */
int	routes_port_same(const struct port_route *, const struct port_route *);
int	routes_api_same(const struct routes *, const struct routes *);
int	routes_sni_same(const struct routes *, const struct routes *);
/* dst's entry for port p (or its API routes) becomes src's, copied. */
void	routes_copy_port(struct routes *dst, const struct routes *src,
	    unsigned p);
void	routes_copy_api(struct routes *dst, const struct routes *src);
void	routes_copy_sni(struct routes *dst, const struct routes *src);
/* dst becomes a copy of src (dst initialised or cleared before). */
void	routes_copy(struct routes *dst, const struct routes *src);

/*
 * Apply every event of a state file (JSON lines, see state.c); -1 with
 * "file:line: reason" in err at the first line that is not a valid event.
 */
int	state_load(struct routes *, const char *path, char *err, size_t);

/* "ip:port" into buf, IPv6 in brackets: the form both proxies read. */
const char *route_addr(char *buf, size_t, const char *ip, unsigned port);
/* Does an earlier cluster (by id) already route api[i]'s host?  It waits. */
int	routes_host_taken(const struct routes *, size_t i);
/*
 * Is sni[i]'s name a cluster's API host?  allocd never lets it be; should
 * a table say so anyway, the API route keeps the name and the SNI route
 * is not rendered (two routes for one name fail nginx and Envoy whole).
 */
int	routes_sni_shadowed(const struct routes *, size_t i);
/* The weight of backend j of b[n], all of its address's summed; -1 when
 * an earlier one has its address (one server an address). */
int	routes_merged_weight(const struct backend *b, size_t n, size_t j);
/* Is master j a repeat of an earlier one (one server an address)? */
int	api_master_seen(const struct api_route *, size_t j);

/*
 * What applyd's HAProxy runtime API needs to say exactly what the HAProxy
 * renderer writes (renderd/haproxy.c): the pool of API slots (the cluster
 * in each, an index in r->api or -1; free() it), whether workload servers
 * carry health checks, a port's server j's weight (-1: an earlier one has
 * its address), and what follows a server's address.  The checks of a
 * table are a plan: whether workload servers are checked, and each
 * cluster's interval (its shift), from the clusters' check budget; it
 * points into the table, so it is freed before the table changes.
 */
struct haproxy_checkplan;
long	*haproxy_api_slots(const struct routes *, size_t *pool);
/* The TLSRoute hostnames' pool (0 slots while there is none), as the
 * API's: an index in r->sni or -1 in each; and a server j's weight (-1:
 * an earlier one has its address). */
long	*haproxy_sni_slots(const struct routes *, size_t *pool);
int	 haproxy_sni_weight(const struct sni_route *, size_t j);
int	 haproxy_checks(const struct routes *, const struct config *,
	    const struct proxy_conf *);
int	 haproxy_merged_weight(const struct port_route *, size_t j);
struct haproxy_checkplan *haproxy_checkplan(const struct routes *,
	    const struct config *, const struct proxy_conf *);
void	 haproxy_checkplan_free(struct haproxy_checkplan *);
int	 haproxy_checkplan_checks(const struct haproxy_checkplan *);
int	 haproxy_checkplan_has(const struct haproxy_checkplan *,
	    const char *cluster);
unsigned haproxy_check_shift(const struct haproxy_checkplan *,
	    const char *cluster);
/* Checks on in one and off in the other, or a cluster of both whose
 * interval differs: its servers' arguments change, by a reload only. */
int	 haproxy_checkplans_differ(const struct haproxy_checkplan *,
	    const struct haproxy_checkplan *);
int	 haproxy_checkplan_each(const struct haproxy_checkplan *,
	    int (*)(const char *cluster, unsigned shift, void *), void *);
void	 haproxy_server_args(char *, size_t, const struct haproxy_checkplan *,
	    const struct port_route *, int weight, const char *ip,
	    unsigned port);
void	 haproxy_api_server_args(char *, size_t,
	    const struct haproxy_checkplan *, const struct api_route *,
	    const char *ip, unsigned port);

/* The renderers: a pure function of (routes, config, proxy). */
int	haproxy_render(const struct routes *, const struct config *,
	    const struct proxy_conf *, FILE *);
int	nginx_render(const struct routes *, const struct config *,
	    const struct proxy_conf *, FILE *);
int	envoy_render(const struct routes *, const struct config *,
	    const struct proxy_conf *, FILE *);

/* The renderer of px->kind; -1 if there is none (logged). */
int	routes_render(const struct routes *, const struct config *,
	    const struct proxy_conf *, FILE *);

#endif
