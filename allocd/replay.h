/*
 * allocd — replay of a recorded log: today's allocator against the
 * decisions a store recorded (allocd -R STORE, porticoctl log replay).
 */
#ifndef ALLOCD_REPLAY_H
#define ALLOCD_REPLAY_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "store.h"

/* What replay_store() found; the first difference is also printed. */
struct replay_result {
	uint64_t	nobs;		/* observations replayed */
	uint64_t	ndec;		/* decisions compared */
	uint64_t	last;		/* seq of the last record compared */
	int		tables;		/* the tables were compared too */
	uint64_t	seq;		/* the first record that differs, or 0 */
	char		table[16];	/* the first table that differs, or "" */
	char		key[512];	/* its first key that differs */
};

/*
 * Replay the log of src, read in rt (a read transaction the caller holds,
 * so a live store is read as one snapshot), through the allocator into a
 * scratch store, and compare each record it makes with the one recorded;
 * with until != 0, only the records up to seq until.  When the whole
 * log was replayed, compare every table too (log, ports, owners, clusters,
 * meta but the keys allocd's loop writes, snap), and name the first key
 * that differs.  What it did and the first difference are printed on out,
 * both sides of it in full.  0 identical, 1 different, 2 the log cannot be
 * replayed.
 */
int	replay_store(const struct config *, struct store *src, MDB_txn *rt,
	    uint64_t until, FILE *out, struct replay_result *);

/* allocd -R: open store_dir read-only and replay it whole. */
int	replay_run(const struct config *, const char *store_dir);

#endif
