/*
 * allocd — the allocator: observations in, decisions out, all inside the
 * caller's write transaction.
 */
#ifndef ALLOCD_ALLOC_H
#define ALLOCD_ALLOC_H

#include "config.h"
#include "event.h"
#include "store.h"

/* An owner whose quarantined port would be free to it. */
struct alloc_claim {
	uint64_t	 hash;		/* of its key: first, for bsearch */
	char		*owner;
};

struct alloc {
	struct store		*st;
	const struct config	*conf;
	uint64_t		 seq;		/* last seq written */

	/*
	 * What the current transaction logged (observations and decisions),
	 * to publish after it; each with its encoding, made once for the
	 * log and reused for the PUB and an owner record.
	 */
	struct event		*out;
	unsigned char		**outenc;
	size_t			*outlen;
	size_t			 nout;
	size_t			 capout;

	/*
	 * "No port is free", remembered after a probe of the whole set found
	 * none, so that an exhausted set costs one probe, not one per owner
	 * that asks.  It holds until the first quarantine runs out or a port
	 * is released; the owners whose own quarantined ports would be free
	 * to them (by the hash of their key) probe anyway.  A port released
	 * into quarantine adds its owner's claim rather than forget it all,
	 * so that churn does not make every TICK's look rescan the owners.
	 */
	int			 full;
	uint64_t		 full_until;
	struct alloc_claim	*full_claims;	/* sorted by hash */
	size_t			 nfull_claims;
	size_t			 capfull_claims;

	/* each proxy's status, while an APPLIED is handled */
	struct event		*status;
	/* the faults standing (-1: not counted since the last change) */
	long			 nfaults;
	/* the clusters' sums of use are in the store (limits.h) */
	int			 lim_built;

	/*
	 * Between STORE_LOST and ADOPT_END (one transaction): the claims
	 * written on objects are being adopted; unproven ones too on the
	 * first store under proofs.  What it cost is counted for RECOVERED.
	 */
	int			 adopting;
	int			 adopt_unproven;
	uint64_t		 nadopted;
	uint64_t		 nbadproof;	/* claims without a valid proof */
	uint64_t		 ntaken;	/* proven, but the port was held */
};

void	alloc_init(struct alloc *, struct store *, const struct config *,
	    uint64_t last_seq);

/*
 * Log one observation and the decisions it causes.  The observation gets the
 * next seq, each decision the ones after it; both go to the log and the
 * tables in txn, and everything logged is queued in a->out (observation
 * included) for publishing once txn commits.  Returns 0, 1 when the
 * observation changes nothing and was not logged (a repeated APPLIED), or
 * an LMDB error.
 */
int	alloc_observe(struct alloc *, MDB_txn *, const struct event *);

/*
 * Would a TICK give a waiting owner a port now?  Read-only: allocd asks
 * before it logs a TICK, so that idle ticks leave no trace.
 */
int	alloc_tick_due(struct alloc *, MDB_txn *, uint64_t now);

/* Owners holding a port the configuration no longer gives out (NULL-ended). */
char	**alloc_stranded(struct alloc *, MDB_txn *);

/*
 * The state as the events a consumer applies after a reset: each cluster's
 * API_SET, each held port's PORT_SET (and PORT_LIVE once every proxy serves
 * it), each standing refusal and proxy fault.  What only allocd needs (quarantines, the
 * waiting order) stays out.  Stops at the first fn() that fails.
 */
int	alloc_state(struct alloc *, MDB_txn *,
	    int (*fn)(const struct event *, void *), void *arg);

/*
 * The same, a slice at a time, so that a consumer catching up on 100,000
 * owners does not hold decisions up.  The tables are first read as they
 * are in txn (read-only) into memory, a slice per alloc_state_read() until
 * it returns 1, after which the caller ends txn: a read transaction held
 * for the whole sending would make every write meanwhile take new pages.
 * Then each alloc_state_some() hands fn the events until enough(earg) says
 * the slice is done (both ask after each record).  alloc_state_some:
 * 1, all handed; 0, more to come; -1, fn failed.
 */
struct alloc_state_iter {
	MDB_txn		*txn;
	MDB_cursor	*cur;
	int		 stage;		/* clusters, owners, faults, read */
	char		**own;		/* the faults, while read */
	char		**why;
	size_t		 fault;
	unsigned char	*buf;		/* what was read: tag, key, value */
	size_t		 len;
	size_t		 cap;
	size_t		 off;		/* sent so far */
};
void	alloc_state_begin(struct alloc_state_iter *, MDB_txn *);
int	alloc_state_read(struct alloc *, struct alloc_state_iter *,
	    int (*enough)(void *), void *earg);
int	alloc_state_some(struct alloc_state_iter *,
	    int (*fn)(const struct event *, void *), void *arg,
	    int (*enough)(void *), void *earg);
void	alloc_state_end(struct alloc_state_iter *);

/* Forget the queued decisions (after publishing). */
void	alloc_clear(struct alloc *);
/* The transaction was aborted: back to seq, forget what it taught us. */
void	alloc_rollback(struct alloc *, uint64_t seq);
void	alloc_free(struct alloc *);

/* The meta key "<prefix><a>" or, with b, "<prefix><a>/<b>", in buf. */
void	alloc_meta_key(MDB_val *, char *buf, size_t len, const char *prefix,
	    const char *a, const char *b);

/* Look up an owner's current port (0 when it has none). */
int	alloc_port_of(struct alloc *, MDB_txn *, const char *owner,
	    unsigned *port);

#endif
