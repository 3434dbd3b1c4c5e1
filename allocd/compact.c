/*
 * allocd — compaction of the log, in steps between batches.
 *
 * Compaction once copied the tables and deleted the log before them in one
 * transaction: 200-275 ms at 100,000 owners in which no decision was made.
 * It now runs in steps of a few ms, each its own small write transaction,
 * one after each batch of observations (or while the loop is idle):
 *
 *   1. a SNAPSHOT record is logged at seq S, alone in its transaction; a
 *	read transaction begun just after its commit keeps seeing the tables
 *	as they were at S, whatever is decided meanwhile;
 *   2. the tables seen at S are read into memory, step by step (reading
 *	is quick: the read transaction, which pins every page it sees and
 *	so makes every later write take new pages, ends after a few steps);
 *   3. they are written into the spare snapshot database (store_snap(...,
 *	1)), empty since the last compaction, at most STEP_BYTES a step;
 *	the step that writes the last also makes it the snapshot: meta
 *	"snapshot" = S and "snapdb" names it.  Replay starts at S now;
 *   4. the log records before S are deleted, step by step, and then the
 *	old snapshot's database is emptied (mdb_drop: one step).
 *
 * A kill at any point leaves a store that replays to the same state:
 * before 3 ends, the old snapshot and the log from it are untouched (the half
 * copy is emptied, and the next compaction starts over); after 3, the
 * records before S are left over, skipped by readers (store_start_seq())
 * and deleted once allocd starts again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compact.h"
#include "event.h"
#include "log.h"

#define STEP_US		3000	/* work in one step, before its commit */
#define STEP_BYTES	(256 << 10)	/* written in one step, at most */
#define STEP_MAX_US	20000	/* however far behind the log it is */
#define STEP_BYTES_MAX	(2 << 20)
#define SLOW_US		20000	/* a step this long is logged */
#define STEP_CHECK	64	/* records between looks at the clock */
#define KEEP_UP		3	/* records a step, per record logged since */

static const char *phase_names[] = {
	"idle", "reading the tables", "writing the snapshot",
	"deleting the log", "emptying the spare"
};

/* Are there entries in dbi? */
static int
has_entries(MDB_txn *txn, MDB_dbi dbi)
{
	MDB_stat ms;

	return mdb_stat(txn, dbi, &ms) == 0 && ms.ms_entries > 0;
}

void
compact_open(struct compact *cp, struct store *st, const struct config *conf,
    uint64_t last)
{
	MDB_txn *txn;

	memset(cp, 0, sizeof(*cp));
	cp->st = st;
	cp->conf = conf;
	cp->step_us = STEP_US;
	if (store_begin(st, &txn, 1) != 0)
		fatalx("compact: read transaction");
	if ((cp->first = store_start_seq(st, txn)) == 0)
		cp->first = last + 1;		/* an empty log */
	cp->seq = cp->first;
	cp->last = last;
	if (store_first_seq(st, txn) < cp->first &&
	    store_first_seq(st, txn) != 0)
		cp->phase = COMPACT_TRIM;
	else if (has_entries(txn, store_snap(st, txn, 1))) {
		cp->phase = COMPACT_DROP;
		cp->cleanup = 1;
	}
	mdb_txn_abort(txn);
	if (cp->phase != COMPACT_IDLE) {
		cp->started = now_ms();
		log_info("compact: finishing the compaction to seq %llu",
		    (unsigned long long)cp->seq);
	}
}

/*
 * The pages the log takes: records of up to 1,024 backends make a count
 * of records a poor bound on bytes, so compact_mb bounds them too.
 */
static uint64_t
log_bytes(struct store *st, MDB_txn *txn)
{
	MDB_stat ms;

	if (mdb_stat(txn, st->log, &ms) != 0)
		return 0;
	return (uint64_t)(ms.ms_branch_pages + ms.ms_leaf_pages +
	    ms.ms_overflow_pages) * ms.ms_psize;
}

int
compact_due(struct compact *cp, uint64_t last, uint64_t now, int by_age)
{
	struct event ev;
	MDB_txn *txn;
	MDB_val key, val;
	unsigned char k[8];
	char err[128];
	uint64_t seq = cp->first, t = 0;

	if (cp->phase != COMPACT_IDLE)
		return 0;
	if (last >= cp->first + cp->conf->compact_records)
		return 1;
	if (last <= cp->first)
		return 0;
	if (store_begin(cp->st, &txn, 1) != 0)
		fatalx("read transaction");
	if (log_bytes(cp->st, txn) >= (uint64_t)cp->conf->compact_mb << 20) {
		mdb_txn_abort(txn);
		return 1;
	}
	if (!by_age || cp->conf->compact_age == 0) {
		mdb_txn_abort(txn);
		return 0;
	}
	for (;; seq++) {
		store_key_u64(k, seq);
		key.mv_size = 8;
		key.mv_data = k;
		if (mdb_get(txn, cp->st->log, &key, &val) != 0 ||
		    event_decode(&ev, val.mv_data, val.mv_size, err,
		    sizeof(err)) == -1)
			break;
		/* event_free() clears the event: read it first */
		if (ev.type != EV_SNAPSHOT) {
			t = ev.time;
			event_free(&ev);
			break;
		}
		event_free(&ev);
	}
	mdb_txn_abort(txn);
	return t != 0 && now > t + (uint64_t)cp->conf->compact_age * 1000;
}

void
compact_begin(struct compact *cp, uint64_t seq, uint64_t now)
{
	int rc;

	if ((rc = store_begin(cp->st, &cp->rtxn, 1)) != 0)
		fatalx("compact: read transaction: %s", mdb_strerror(rc));
	cp->phase = COMPACT_READ;
	cp->seq = cp->last = seq;
	cp->table = 0;
	cp->rcur = NULL;
	cp->started = now;
	cp->steps = cp->longest = cp->copied = cp->trimmed = 0;
	cp->cleanup = 0;
	log_info("compacting the log: a snapshot at seq %llu",
	    (unsigned long long)seq);
}

int
compact_busy(const struct compact *cp)
{
	return cp->phase != COMPACT_IDLE;
}

/*
 * Is the step's work done, after i records?  When its time is up, and it
 * has kept up with the log: a compaction of N log records reads and writes
 * the tables and deletes the N, fewer than KEEP_UP * N records while the
 * tables hold fewer than N (100,000 owners make 160,000 records, the
 * default N is 200,000), so that it ends before the log has grown by
 * another compaction's worth.  But never past STEP_MAX_US: a decision
 * waits for one step at most, and when allocd is that busy the log grows
 * past the policy for a while rather than decisions wait.
 */
static int
step_done(const struct compact *cp, unsigned i, uint64_t until)
{
	uint64_t now;

	if (i % STEP_CHECK != STEP_CHECK - 1 ||
	    (now = clock_us(CLOCK_MONOTONIC)) < until)
		return 0;
	return i >= cp->quota || now >= until - cp->step_us + STEP_MAX_US;
}

/*
 * Delete from dbi's start while the keys are below lim, until the step is
 * done.  1: nothing left to delete.
 */
static int
delete_some(struct compact *cp, MDB_txn *txn, MDB_dbi dbi,
    const unsigned char *lim, uint64_t until, uint64_t *n)
{
	MDB_cursor *cur;
	MDB_val key, val;
	unsigned i;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return rc;
	for (i = 0;; i++) {
		if (step_done(cp, i, until)) {
			rc = 0;
			break;
		}
		if ((rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST)) != 0)
			break;
		if (key.mv_size != 8 || memcmp(key.mv_data, lim, 8) >= 0) {
			rc = MDB_NOTFOUND;
			break;
		}
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		(*n)++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 1 : rc;
}

/* Keep one snap record (tag, key, value) in the buffer. */
static void
keep(struct compact *cp, char tag, const MDB_val *key, const MDB_val *val)
{
	uint32_t kl = (uint32_t)key->mv_size + 1, vl = (uint32_t)val->mv_size;
	size_t need = cp->len + 8 + kl + vl;

	if (key->mv_size + 1 > 511)
		fatalx("compact: a %zu-byte key", key->mv_size);
	if (need > cp->cap) {
		cp->cap = need > 2 * cp->cap ? need : 2 * cp->cap;
		if ((cp->buf = realloc(cp->buf, cp->cap)) == NULL)
			fatal("compact");
	}
	memcpy(cp->buf + cp->len, &kl, 4);
	memcpy(cp->buf + cp->len + 4, &vl, 4);
	cp->buf[cp->len + 8] = (unsigned char)tag;
	memcpy(cp->buf + cp->len + 9, key->mv_data, key->mv_size);
	memcpy(cp->buf + cp->len + 8 + kl, val->mv_data, vl);
	cp->len = need;
	cp->copied++;
}

/*
 * Read the tables seen at seq into the buffer, until the time is up.
 * Reading is quick (no write, no commit): the read transaction, which
 * pins every page it sees, lives a few steps only.  1: all read.
 */
static int
read_some(struct compact *cp, uint64_t until)
{
	MDB_val key, val;
	MDB_dbi from;
	unsigned i;
	char tag;
	int rc;

	for (i = 0;; i++) {
		if (step_done(cp, i, until))
			return 0;
		if (store_snap_table(cp->st, cp->table, &from, &tag) == -1)
			return 1;
		if (cp->rcur == NULL) {
			if ((rc = mdb_cursor_open(cp->rtxn, from,
			    &cp->rcur)) != 0)
				return rc;
			rc = mdb_cursor_get(cp->rcur, &key, &val, MDB_FIRST);
		} else
			rc = mdb_cursor_get(cp->rcur, &key, &val, MDB_NEXT);
		if (rc == MDB_NOTFOUND) {
			mdb_cursor_close(cp->rcur);
			cp->rcur = NULL;
			cp->table++;
			continue;
		}
		if (rc != 0)
			return rc;
		keep(cp, tag, &key, &val);
	}
}

/*
 * Write what was read into the spare snapshot (the letters, then each
 * table's order: ascending, so appended), until the time is up or
 * STEP_BYTES are written, which the commit has to write out.  1: all.
 */
static int
load_some(struct compact *cp, MDB_txn *txn, MDB_dbi to, uint64_t until)
{
	MDB_val key, val;
	uint32_t kl, vl;
	size_t start = cp->off;
	unsigned i;
	int rc;

	for (i = 0; cp->off < cp->len; i++) {
		if (step_done(cp, i, until) || (cp->off - start >= STEP_BYTES &&
		    (i >= cp->quota || cp->off - start >= STEP_BYTES_MAX)))
			return 0;
		memcpy(&kl, cp->buf + cp->off, 4);
		memcpy(&vl, cp->buf + cp->off + 4, 4);
		key.mv_size = kl;
		key.mv_data = cp->buf + cp->off + 8;
		val.mv_size = vl;
		val.mv_data = cp->buf + cp->off + 8 + kl;
		if ((rc = mdb_put(txn, to, &key, &val, MDB_APPEND)) != 0)
			return rc;
		cp->off += 8 + kl + vl;
	}
	return 1;
}

/* The copy is whole: it is the snapshot now, in the step's transaction. */
static int
make_current(struct compact *cp, MDB_txn *txn)
{
	uint64_t which = 0;
	int rc;

	store_get_u64(cp->st, txn, "snapdb", &which);
	if ((rc = store_put_u64(cp->st, txn, "snapshot", cp->seq)) != 0 ||
	    (rc = store_put_u64(cp->st, txn, "snapdb", !which)) != 0)
		return rc;
	return 0;
}

/* The read transaction ends: its pages can be reused. */
static void
release(struct compact *cp)
{
	if (cp->rcur != NULL)
		mdb_cursor_close(cp->rcur);
	if (cp->rtxn != NULL)
		mdb_txn_abort(cp->rtxn);
	cp->rcur = NULL;
	cp->rtxn = NULL;
}

static void
unbuffer(struct compact *cp)
{
	free(cp->buf);
	cp->buf = NULL;
	cp->len = cp->cap = cp->off = 0;
}

/* Do some of the phase's work in txn; 1 when the phase is done. */
static int
phase_step(struct compact *cp, MDB_txn *txn, uint64_t until)
{
	unsigned char lim[8];
	size_t off;
	int rc;

	switch (cp->phase) {
	case COMPACT_DROP:
		/* pages freed whole: a step, whatever the size */
		return (rc = mdb_drop(txn, store_snap(cp->st, txn, 1), 0)) ?
		    rc : 1;
	case COMPACT_LOAD:
		/* empty since the last compaction, unless one was cut short */
		off = cp->off;
		if (cp->off == 0 &&
		    has_entries(txn, store_snap(cp->st, txn, 1)) &&
		    (rc = mdb_drop(txn, store_snap(cp->st, txn, 1), 0)) != 0)
			return rc;
		if ((rc = load_some(cp, txn, store_snap(cp->st, txn, 1),
		    until)) == 1 && (rc = make_current(cp, txn)) == 0)
			rc = 1;
		if (rc != 0 && rc != 1)
			cp->off = off;	/* not written: again after the abort */
		return rc;
	case COMPACT_TRIM:
		store_key_u64(lim, cp->seq);
		rc = delete_some(cp, txn, cp->st->log, lim, until,
		    &cp->trimmed);
		return rc;
	}
	return 1;
}

int
compact_step(struct compact *cp, uint64_t last)
{
	uint64_t t0 = clock_us(CLOCK_MONOTONIC), took;
	MDB_txn *txn;
	int rc, done;

	if (cp->phase == COMPACT_IDLE)
		return 0;
	cp->quota = KEEP_UP * (last > cp->last ? last - cp->last : 0);
	cp->last = last;
	if (cp->phase == COMPACT_READ) {
		if ((done = read_some(cp, t0 + cp->step_us)) < 0 || done > 1)
			return done;
	} else {
		if ((rc = store_begin(cp->st, &txn, 0)) != 0)
			return rc;
		if ((done = phase_step(cp, txn, t0 + cp->step_us)) < 0 ||
		    done > 1) {
			mdb_txn_abort(txn);
			return done;
		}
		if ((rc = mdb_txn_commit(txn)) != 0)
			return rc;
	}
	cp->steps++;
	if ((took = clock_us(CLOCK_MONOTONIC) - t0) > cp->longest)
		cp->longest = took;
	if (took > SLOW_US)
		log_info("compact: a step %s took %.1f ms",
		    phase_names[cp->phase], (double)took / 1000);
	if (!done)
		return 0;
	switch (cp->phase) {
	case COMPACT_READ:
		release(cp);
		cp->phase = COMPACT_LOAD;
		break;
	case COMPACT_LOAD:
		unbuffer(cp);
		cp->first = cp->seq;
		cp->phase = COMPACT_TRIM;
		break;
	case COMPACT_TRIM:
		cp->phase = COMPACT_DROP;
		break;
	case COMPACT_DROP:
		cp->phase = COMPACT_IDLE;
		if (cp->cleanup)
			break;
		log_info("compacted the log: %llu records before seq %llu "
		    "dropped in %llu ms (%llu table records copied, %llu "
		    "steps, the longest %.1f ms)",
		    (unsigned long long)cp->trimmed,
		    (unsigned long long)cp->seq,
		    (unsigned long long)(now_ms() - cp->started),
		    (unsigned long long)cp->copied,
		    (unsigned long long)cp->steps, (double)cp->longest / 1000);
		break;
	}
	return 0;
}

/*
 * The copy, if one was under way, is given up: its database is emptied
 * by the steps that follow, and the policy starts a new one.
 */
void
compact_abort(struct compact *cp)
{
	if (cp->phase != COMPACT_READ)
		return;
	release(cp);
	unbuffer(cp);
	cp->phase = COMPACT_DROP;
	cp->cleanup = 1;
	log_info("compact: the copy for seq %llu given up",
	    (unsigned long long)cp->seq);
}

void
compact_close(struct compact *cp)
{
	release(cp);
	unbuffer(cp);
}
