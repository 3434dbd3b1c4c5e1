/*
 * allocd — starting on an empty store (the store was lost, or this is the
 * first start): the observations are held until every cluster has been
 * resynced (or adopt_wait has passed), so that the ports written on objects
 * are decided first, then the ports asked for, then the new owners; and
 * what the consumers had seen of the lost store is learned, so that the new
 * one goes on above it.
 */
#ifndef ALLOCD_ADOPT_H
#define ALLOCD_ADOPT_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct adopt_cluster {
	char		id[64];
	int		up;
	uint64_t	begun;		/* sid of the last SYNC_BEGIN */
	uint64_t	ended;		/* sid of the last SYNC_END */
	size_t		begun_at;	/* where that SYNC_BEGIN was held */
};

struct adopt {
	int			 active;
	int			 first;		/* the first store under proofs */
	int			 loss;		/* the key, a consumer or an
						   object says there was a
						   store before */
	uint64_t		 start;
	uint64_t		 deadline;
	uint64_t		 floor;		/* the clock's lower bound */
	uint64_t		 learned;	/* highest seq a consumer had */
	struct event		*held;
	size_t			 nheld;
	size_t			 capheld;
	struct adopt_cluster	*cl;
	size_t			 ncl;
	size_t			 capcl;
};

void		 adopt_begin(struct adopt *, uint64_t now, unsigned wait_s,
		    int first);
/* Hold a copy of an observation; learn from it. */
void		 adopt_hold(struct adopt *, const struct event *);
/* A consumer had seen seq (a SINCE, an APPLIED's generation). */
void		 adopt_learn(struct adopt *, uint64_t seq);
/* Has every cluster been resynced, or the wait run out? */
int		 adopt_due(const struct adopt *, uint64_t now);
/* The seq the new store's log continues above. */
uint64_t	 adopt_base(const struct adopt *);
/* Above any seq a consumer may hold: heartbeats say it while holding. */
uint64_t	 adopt_ahead(const struct adopt *);
/*
 * The batch to log, in the order claims need: STORE_LOST; clusters and
 * sync starts; each owner's latest observation, proven claims first, then
 * (on a first store) unproven ones, requests, the rest; sync ends and
 * applied generations; ADOPT_END.  The caller owns and frees it; the
 * hold is over.
 */
struct event	*adopt_batch(struct adopt *, uint64_t now, size_t *n);

#endif
