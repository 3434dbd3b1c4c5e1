/*
 * allocd — the limits that keep one cluster from hurting the others
 * ([limits]): which backends a route may name, and how much of the fleet
 * (routes, ports, backends, bytes of a proxy's table) one cluster may hold.
 */
#ifndef ALLOCD_LIMITS_H
#define ALLOCD_LIMITS_H

#include <stdint.h>

#include "alloc.h"

/* What one owner takes of its cluster's share; summed per cluster. */
struct lim_use {
	uint64_t	routes;		/* held or waiting for a port */
	uint64_t	ports;		/* held */
	uint64_t	backends;	/* of the routes held */
	uint64_t	bytes;		/* estimated, of a proxy's table */
	uint64_t	limited;	/* refused by a limit, kept to retry */
};

/*
 * The use of an owner in state (held: holds a port; waiting: queued for
 * one; limited: refused by a limit) with the route or PORT_SET event set
 * (NULL when it has none).
 */
void	limits_use(struct lim_use *, int held, int waiting, int limited,
	    const struct event *set);

/* Does cluster hold routes refused by a limit (to retry when it shrinks)? */
int	limits_waiting(struct alloc *, MDB_txn *, const char *cluster);

/*
 * May one more of cluster's routes refused by a limit be kept, whole, to be
 * retried when the cluster makes room?  As many as routes_per_cluster (or
 * LIM_KEEP_MAX when that is 0): past them a refused route is said and
 * forgotten, and comes back when watcherd sends it again.  What a cluster
 * can make allocd keep and walk stays bounded.
 */
#define LIM_KEEP_MAX	1000
int	limits_may_keep(struct alloc *, MDB_txn *, const char *cluster);

/* The cluster's sums, to tell whether an observation made room in it. */
int	limits_sum(struct alloc *, MDB_txn *, const char *cluster,
	    struct lim_use *);
/* Did the use go down from before to after, in anything a limit counts? */
int	limits_shrunk(const struct lim_use *before, const struct lim_use *after);

/*
 * May the proxies send traffic to ip (what: "backend", "master")?  Never
 * to a proxy's own listen address (it would connect to itself); to an
 * address in [limits] allow_backends; otherwise to any address but
 * loopback, unspecified, link-local (the metadata service at
 * 169.254.169.254), multicast and broadcast.  0 yes; -1 no, with why
 * ("backend 169.254.169.254 is link-local").
 */
int	limits_address(const struct config *, const char *what,
	    const char *ip, char *why, size_t whylen);

/*
 * May obs's route hold a port, given that its owner takes old now?  0 yes;
 * -1 no, with the reason in why: a backend it may not name, or a limit of
 * its cluster (or namespace) it would pass.  The reason names only the
 * route's own cluster's values.
 */
int	limits_route(struct alloc *, MDB_txn *, const struct event *obs,
	    const struct lim_use *old, char *why, size_t whylen);

/*
 * An owner's use changed from old to now: its cluster's (and namespace's)
 * sums follow, in meta ("lim/<cluster>", "lim/<cluster>/<ns>").
 */
int	limits_account(struct alloc *, MDB_txn *, const char *owner,
	    const struct lim_use *old, const struct lim_use *now);

#endif
