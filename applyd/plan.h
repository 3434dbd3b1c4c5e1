/*
 * applyd — which part of a route table change goes next (see plan.c).
 */
#ifndef APPLYD_PLAN_H
#define APPLYD_PLAN_H

#include <stddef.h>

#include "routes.h"

/*
 * The next slice of the change from table old to new over the ports
 * listed in dirty: into out, the ports of the cluster with the fewest
 * server changes first, then the next, up to budget server changes (one
 * port at least); a cluster whose change costs more than cluster_max is
 * left out: only a reload takes it.  Returns how many ports are in out
 * (room for ndirty).
 */
size_t	plan_slice(const struct routes *old, const struct routes *new,
	    const unsigned *dirty, size_t ndirty, size_t budget,
	    size_t cluster_max, unsigned *out);

/* What changing port p from old to new costs, in server changes. */
size_t	plan_cost(const struct routes *old, const struct routes *new,
	    unsigned p);

#endif
