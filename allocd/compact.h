/*
 * allocd — compaction of the log, by policy, in steps between batches.
 */
#ifndef ALLOCD_COMPACT_H
#define ALLOCD_COMPACT_H

#include <stdint.h>

#include "config.h"
#include "store.h"

enum {
	COMPACT_IDLE,
	COMPACT_READ,		/* reading the tables as they were at seq */
	COMPACT_LOAD,		/* writing them into the spare snapshot */
	COMPACT_TRIM,		/* deleting the log records before seq */
	COMPACT_DROP		/* emptying the spare: the snapshot before */
};

struct compact {
	struct store		*st;
	const struct config	*conf;
	uint64_t		 first;		/* the log starts here, for policy */
	int			 phase;
	uint64_t		 seq;		/* the SNAPSHOT record's */

	/* while reading: the tables as they were at seq */
	MDB_txn			*rtxn;
	MDB_cursor		*rcur;
	size_t			 table;		/* store_snap_table()'s index */
	/* what was read, as snap records, until loaded */
	unsigned char		*buf;
	size_t			 len;
	size_t			 cap;
	size_t			 off;		/* loaded so far */

	uint64_t		 started;	/* ms */
	uint64_t		 steps;
	uint64_t		 longest;	/* µs, the longest step */
	uint64_t		 copied;	/* table records */
	uint64_t		 trimmed;	/* log records */
	int			 cleanup;	/* only emptying what was left */
	uint64_t		 step_us;	/* work in one step */
	uint64_t		 last;		/* the log's end at the last step */
	size_t			 quota;		/* records in this step, at least */
};

/*
 * Look at the store as it was left: a compaction that had made its
 * snapshot goes on deleting what is before it; one that had not is
 * forgotten (its copy is emptied, the next compaction starts again).
 * last: the log's last seq.
 */
void	compact_open(struct compact *, struct store *, const struct config *,
	    uint64_t last);

/*
 * Is a compaction due: by records or MiB of log, and when by_age, by the
 * age of the oldest record after the last snapshot?  Never while one runs.
 */
int	compact_due(struct compact *, uint64_t seq, uint64_t now, int by_age);

/*
 * The SNAPSHOT record at seq has just been committed, alone in its
 * transaction, and nothing since: take the tables as they are now.
 */
void	compact_begin(struct compact *, uint64_t seq, uint64_t now);

/* Work left: the loop should call compact_step() rather than sleep. */
int	compact_busy(const struct compact *);

/*
 * One step, in its own durable write transaction, of a few ms, or longer
 * when last (the log's last seq) shows that much was logged since the last
 * step: a step does some records for each one logged, so the compaction
 * keeps up with the log under any load.  Returns 0 or an LMDB error: on
 * MDB_MAP_FULL, the caller calls compact_abort(), grows the map and goes
 * on.
 */
int	compact_step(struct compact *, uint64_t last);

/* Before the map is resized: no read transaction may stay open. */
void	compact_abort(struct compact *);
void	compact_close(struct compact *);

#endif
