/*
 * applyd — the moves of hosts between HAProxy slots (see slots.c).
 */
#ifndef APPLYD_SLOTS_H
#define APPLYD_SLOTS_H

#include <stddef.h>

#include "routes.h"

/*
 * How a pool's hosts move from the old table's slots to the new one's,
 * by the key the map holds (the host).  Each slot's old occupant stays,
 * leaves (to -1) or moves to another slot; each slot's new occupant
 * stays, comes (from -1) or moved in from another slot.  A move fills a
 * slot no key points at any more, so the moves go in chains that start
 * at a slot free from the beginning (empty, or its host leaves): moves[]
 * is the slots moved into, in that order.  What remains is a cycle (hosts
 * that swap slots): only a reload.  So is a resized pool, and a host of
 * the API's that stays in its slot for another cluster (its servers'
 * arguments would change in place).  Both the decision and the change
 * come from here, so they agree, and follow from the two tables alone.
 */
struct slots_plan {
	size_t	 pool;
	long	*os, *ns;		/* each slot's occupant, or -1 */
	long	*to, *from;
	size_t	*moves;
	size_t	 nmoves;
};

/* The pool's (sni: the TLSRoutes', or the API's) plan from table old to
 * new in sp: 0, slots_plan_free() it; -1: only a reload. */
int	 slots_plan(const struct routes *old, const struct routes *new,
	    int sni, struct slots_plan *sp);
void	 slots_plan_free(struct slots_plan *);
/* The map key (host) of a table's occupant i of a pool. */
const char *slots_host(const struct routes *, int sni, long i);

#endif
