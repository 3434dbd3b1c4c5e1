/*
 * test_compact — compaction in steps (allocd/compact.c): the snapshot holds
 * the tables as they were at its SNAPSHOT record even when decisions are
 * committed between the steps; the log then starts at that record; and a
 * compaction cut short at any phase (allocd killed) leaves a store whose
 * replay start and snapshot agree, and which the next start finishes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../allocd/compact.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "store.h"

#define RECORDS		3000	/* log records before the snapshot */
#define OWNERS		5000	/* enough for a copy of several steps */

static char		dir[64];
static struct config	conf;

static int
setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/portico-compact-XXXXXX");
	assert_non_null(mkdtemp(dir));
	memset(&conf, 0, sizeof(conf));
	conf.compact_records = 1000;
	conf.compact_mb = 64;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void
append(struct store *st, MDB_txn *txn, uint64_t seq, int type)
{
	struct event ev;

	event_init(&ev, type);
	ev.seq = seq;
	ev.time = 1000 + seq;
	if (type != EV_SNAPSHOT)
		assert_int_equal(event_set_str(&ev, F_CLUSTER, "c1"), 0);
	assert_int_equal(store_append(st, txn, &ev), 0);
}

static void
put(MDB_txn *txn, MDB_dbi dbi, const char *k, const char *v)
{
	MDB_val key = { strlen(k), (void *)k }, val = { strlen(v), (void *)v };

	assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
}

static void
expect(MDB_txn *txn, MDB_dbi dbi, const char *k, const char *v)
{
	MDB_val key = { strlen(k), (void *)k }, val;

	assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
	assert_int_equal(val.mv_size, strlen(v));
	assert_memory_equal(val.mv_data, v, val.mv_size);
}

static size_t
entries(MDB_txn *txn, MDB_dbi dbi)
{
	MDB_stat ms;

	assert_int_equal(mdb_stat(txn, dbi, &ms), 0);
	return ms.ms_entries;
}

/* An owner's value at the snapshot: big, so that a copy takes steps. */
static void
snapshot_value(char *v, size_t len, int i)
{
	snprintf(v, len, "owner-%d-at-the-snapshot-%0900d", i, i);
}

/*
 * A store with RECORDS log records, OWNERS owners and a cluster, then the
 * SNAPSHOT record at RECORDS + 1 alone in its transaction, as allocd
 * commits it; the compaction begun.
 */
static void
fill(struct store *st, struct compact *cp)
{
	char k[32], v[1024];
	MDB_txn *txn;
	uint64_t seq;
	int i;

	assert_int_equal(store_open(st, dir, 64 << 20, 0), 0);
	compact_open(cp, st, &conf, 0);
	assert_true(cp->first == 1);
	assert_int_equal(store_begin(st, &txn, 0), 0);
	for (seq = 1; seq <= RECORDS; seq++)
		append(st, txn, seq, EV_CLUSTER_DOWN);
	for (i = 0; i < OWNERS; i++) {
		snprintf(k, sizeof(k), "c1/ns/vs-%05d/0", i);
		snapshot_value(v, sizeof(v), i);
		put(txn, st->owners, k, v);
	}
	put(txn, st->ports, "\x75\x30", "port-a");
	put(txn, st->clusters, "c1", "cluster-1");
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_true(compact_due(cp, RECORDS, 0, 0));

	assert_int_equal(store_begin(st, &txn, 0), 0);
	append(st, txn, RECORDS + 1, EV_SNAPSHOT);
	assert_int_equal(mdb_txn_commit(txn), 0);
	compact_begin(cp, RECORDS + 1, now_ms());
	cp->step_us = 1;	/* a step does STEP_CHECK records or so */
	assert_true(compact_busy(cp));
	assert_false(compact_due(cp, 2 * RECORDS, 0, 0));
}

/* A decision committed between two steps: a table changes, the log grows. */
static void
decide(struct store *st, uint64_t seq)
{
	MDB_txn *txn;

	assert_int_equal(store_begin(st, &txn, 0), 0);
	put(txn, st->owners, "c1/ns/vs-00000/0", "owner-changed-after");
	put(txn, st->owners, "c1/ns/vs-99999/0", "owner-new-after");
	append(st, txn, seq, EV_CLUSTER_DOWN);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* Steps, each followed by a decision, until phase is reached or done. */
static uint64_t
step_until(struct store *st, struct compact *cp, int phase, uint64_t *seq)
{
	uint64_t steps = 0;

	while (compact_busy(cp) && cp->phase != phase) {
		assert_int_equal(compact_step(cp, *seq), 0);
		decide(st, ++*seq);
		steps++;
	}
	return steps;
}

/* The snapshot restored into a scratch store: the tables at RECORDS + 1. */
static void
check_snapshot(struct store *st)
{
	struct store scratch;
	char dir2[80], v[1024];
	MDB_txn *txn, *wt;

	snprintf(dir2, sizeof(dir2), "%s/scratch", dir);
	assert_int_equal(store_begin(st, &txn, 1), 0);
	assert_int_equal(store_open(&scratch, dir2, 64 << 20, 0), 0);
	assert_int_equal(store_begin(&scratch, &wt, 0), 0);
	assert_int_equal(store_restore(st, txn, &scratch, wt), 0);
	assert_int_equal(mdb_txn_commit(wt), 0);
	mdb_txn_abort(txn);

	assert_int_equal(store_begin(&scratch, &wt, 1), 0);
	snapshot_value(v, sizeof(v), 0);
	expect(wt, scratch.owners, "c1/ns/vs-00000/0", v);
	snapshot_value(v, sizeof(v), 4999);
	expect(wt, scratch.owners, "c1/ns/vs-04999/0", v);
	assert_int_equal(entries(wt, scratch.owners), OWNERS);
	expect(wt, scratch.ports, "\x75\x30", "port-a");
	expect(wt, scratch.clusters, "c1", "cluster-1");
	assert_true(store_last_seq(&scratch, wt) == 0);	/* tables only */
	mdb_txn_abort(wt);
	store_close(&scratch);
}

/*
 * Decisions between the steps reach the tables but not the snapshot; the
 * log ends up starting at the SNAPSHOT record, the spare emptied.
 */
static void
test_steps(void **state)
{
	struct store st;
	struct compact cp;
	MDB_txn *txn;
	uint64_t seq = RECORDS + 1, v, steps;

	(void)state;
	fill(&st, &cp);
	steps = step_until(&st, &cp, COMPACT_IDLE, &seq);
	assert_true(steps >= 5);	/* a step per phase at least */
	assert_true(cp.first == RECORDS + 1);

	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_true(store_first_seq(&st, txn) == RECORDS + 1);
	assert_true(store_start_seq(&st, txn) == RECORDS + 1);
	assert_true(store_last_seq(&st, txn) == seq);
	assert_int_equal(store_get_u64(&st, txn, "snapshot", &v), 0);
	assert_true(v == RECORDS + 1);
	assert_int_equal(entries(txn, store_snap(&st, txn, 1)), 0);
	assert_true(entries(txn, store_snap(&st, txn, 0)) >= OWNERS + 2);
	expect(txn, st.owners, "c1/ns/vs-00000/0", "owner-changed-after");
	mdb_txn_abort(txn);
	check_snapshot(&st);

	/* the next compaction fills the other database */
	assert_false(compact_due(&cp, seq, 0, 0));
	assert_true(compact_due(&cp, RECORDS + 1 + 1000, 0, 0));
	compact_close(&cp);
	store_close(&st);
}

/*
 * Killed while copying: the store still starts at its first record with
 * no snapshot; the next start empties the half copy and says nothing of a
 * compaction, and the policy starts one again.
 */
static void
test_killed_while_copying(void **state)
{
	struct store st;
	struct compact cp;
	MDB_txn *txn;
	uint64_t seq = RECORDS + 1, v;

	(void)state;
	fill(&st, &cp);
	step_until(&st, &cp, COMPACT_LOAD, &seq);
	assert_int_equal(compact_step(&cp, seq), 0);	/* some written */
	assert_int_equal(cp.phase, COMPACT_LOAD);
	compact_close(&cp);			/* killed */
	store_close(&st);

	assert_int_equal(store_open(&st, dir, 64 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_true(store_start_seq(&st, txn) == 1);
	assert_int_equal(store_get_u64(&st, txn, "snapshot", &v),
	    MDB_NOTFOUND);
	mdb_txn_abort(txn);
	compact_open(&cp, &st, &conf, seq);
	assert_true(cp.first == 1);
	if (compact_busy(&cp)) {
		assert_int_equal(cp.phase, COMPACT_DROP);
		step_until(&st, &cp, COMPACT_IDLE, &seq);
	}
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_int_equal(entries(txn, store_snap(&st, txn, 1)), 0);
	mdb_txn_abort(txn);
	assert_true(compact_due(&cp, seq, 0, 0));
	compact_close(&cp);
	store_close(&st);
}

/*
 * Killed while deleting the log before the snapshot: readers start at the
 * snapshot already; the next start deletes the rest.
 */
static void
test_killed_while_trimming(void **state)
{
	struct store st;
	struct compact cp;
	MDB_txn *txn;
	uint64_t seq = RECORDS + 1;

	(void)state;
	fill(&st, &cp);
	step_until(&st, &cp, COMPACT_TRIM, &seq);
	compact_close(&cp);			/* killed */
	store_close(&st);

	assert_int_equal(store_open(&st, dir, 64 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_true(store_first_seq(&st, txn) == 1);	/* left over */
	assert_true(store_start_seq(&st, txn) == RECORDS + 1);
	mdb_txn_abort(txn);
	check_snapshot(&st);

	compact_open(&cp, &st, &conf, seq);
	cp.step_us = 1;
	assert_true(cp.first == RECORDS + 1);
	assert_int_equal(cp.phase, COMPACT_TRIM);
	step_until(&st, &cp, COMPACT_IDLE, &seq);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_true(store_first_seq(&st, txn) == RECORDS + 1);
	assert_int_equal(entries(txn, store_snap(&st, txn, 1)), 0);
	mdb_txn_abort(txn);
	check_snapshot(&st);
	compact_close(&cp);
	store_close(&st);
}

/* Given up (the map must grow): what was read goes, nothing changes. */
static void
test_abort(void **state)
{
	struct store st;
	struct compact cp;
	MDB_txn *txn;
	uint64_t seq = RECORDS + 1;

	(void)state;
	fill(&st, &cp);
	assert_int_equal(cp.phase, COMPACT_READ);
	assert_int_equal(compact_step(&cp, seq), 0);
	assert_int_equal(cp.phase, COMPACT_READ);
	compact_abort(&cp);
	assert_null(cp.rtxn);
	step_until(&st, &cp, COMPACT_IDLE, &seq);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_true(store_start_seq(&st, txn) == 1);
	assert_int_equal(entries(txn, st.snap), 0);
	assert_int_equal(entries(txn, st.snap1), 0);
	mdb_txn_abort(txn);
	assert_true(cp.first == 1);
	compact_close(&cp);
	store_close(&st);
}

/*
 * The map fills while the copy is written: the step is aborted, allocd
 * grows the map (compact_abort() first) and the next step writes the
 * same records again, none lost, none twice.
 */
static void
test_map_full(void **state)
{
	struct store st;
	struct compact cp;
	MDB_envinfo info;
	MDB_stat ms;
	uint64_t seq = RECORDS + 1;
	int rc, full = 0;

	(void)state;
	fill(&st, &cp);
	step_until(&st, &cp, COMPACT_LOAD, &seq);
	mdb_env_info(st.env, &info);
	mdb_env_stat(st.env, &ms);
	/* room for a few more pages: not for the copy */
	assert_int_equal(mdb_env_set_mapsize(st.env,
	    (info.me_last_pgno + 8) * ms.ms_psize), 0);
	while (compact_busy(&cp)) {
		if ((rc = compact_step(&cp, seq)) == MDB_MAP_FULL) {
			full++;
			compact_abort(&cp);
			mdb_env_info(st.env, &info);
			assert_int_equal(mdb_env_set_mapsize(st.env,
			    info.me_mapsize * 2), 0);
			continue;
		}
		assert_int_equal(rc, 0);
	}
	assert_true(full > 0);
	check_snapshot(&st);
	compact_close(&cp);
	store_close(&st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_while_copying,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_while_trimming,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_full, setup,
		    teardown),
	};

	log_init("test_compact", 1, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
