/*
 * applyd — HAProxy changes through the runtime API (see hapruntime.c).
 */
#ifndef APPLYD_HAPRUNTIME_H
#define APPLYD_HAPRUNTIME_H

#include <stddef.h>

#include "routes.h"

/*
 * Apply the change from route table old to new, for the ports listed and,
 * with api, the names on the shared TLS port (API routes and TLSRoute
 * hostnames), through the worker's runtime API at sock: 0
 * done, 1 it needs a reload (more than servers and map keys change), -1
 * the API refused something (reason in err: reload).
 */
int	hap_update(const char *sock, const struct config *,
	    const struct proxy_conf *, const struct routes *old,
	    const struct routes *new, const unsigned *ports, size_t nports,
	    int api, char *err, size_t);

/*
 * Is a reload the only way from table old to new (api: the names on the
 * shared TLS port changed)?  Health checks turned on or off, a pool of
 * slots (the API's, the TLSRoutes') resized, or hosts that swap slots
 * (slots.h; a host displaced to another slot moves live).  Decided from
 * the tables alone, by the plan hap_update() follows.
 */
int	hap_needs_reload(const struct config *, const struct proxy_conf *,
	    const struct routes *old, const struct routes *new, int api);

/* Write the map files the HAProxy renderer names, from the table. */
int	hap_write_maps(const struct config *, const struct proxy_conf *,
	    const struct routes *);

/*
 * A reload or a start: the runtime API's connection kept from the last
 * update speaks to workers that are leaving; the next opens another.
 */
void	hap_reconnect(void);

/* Delete the servers left in maintenance whose connections have ended. */
void	hap_drain(const char *sock);
/* A reload replaced every server: nothing is draining any more. */
void	hap_forget_drains(void);
/*
 * A reload or a start: the servers have the arguments the configuration
 * gives them, not those of the live changes before (see given, .c).
 */
void	hap_forget_given(void);
/* Servers run with a check interval their table no longer gives them. */
int	hap_given_stale(void);

#endif
