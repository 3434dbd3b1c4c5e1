/*
 * test_store — the LMDB store: the log appends in order and survives a
 * reopen, an append out of order is a fatal invariant break, meta values
 * round-trip, and a read-only open sees what the writer committed
 * (compaction: test_compact).
 */
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "event.h"
#include "log.h"
#include "store.h"

static char dir[64];

static int
setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/portico-store-XXXXXX");
	assert_non_null(mkdtemp(dir));
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
append(struct store *st, MDB_txn *txn, uint64_t seq, const char *cluster)
{
	struct event ev;

	event_init(&ev, EV_CLUSTER_DOWN);
	ev.seq = seq;
	ev.time = 1000 + seq;
	assert_int_equal(event_set_str(&ev, F_CLUSTER, cluster), 0);
	assert_int_equal(store_append(st, txn, &ev), 0);
}

/* Appends land in order under big-endian keys and survive a reopen. */
static void
test_log_survives_reopen(void **state)
{
	struct store st;
	struct event ev;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	char err[128];
	uint64_t seq, expect = 1;
	int op;

	(void)state;
	assert_int_equal(store_open(&st, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 0), 0);
	assert_int_equal(store_last_seq(&st, txn), 0);
	/* 300 crosses the byte boundary a little-endian key would misorder */
	for (seq = 1; seq <= 300; seq++)
		append(&st, txn, seq, "c1");
	assert_int_equal(mdb_txn_commit(txn), 0);
	store_close(&st);

	assert_int_equal(store_open(&st, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_int_equal(store_last_seq(&st, txn), 300);
	assert_int_equal(mdb_cursor_open(txn, st.log, &cur), 0);
	for (op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0;
	    op = MDB_NEXT, expect++) {
		assert_int_equal(store_u64_key(k.mv_data), expect);
		assert_int_equal(event_decode(&ev, v.mv_data, v.mv_size, err,
		    sizeof(err)), 0);
		assert_int_equal(ev.type, EV_CLUSTER_DOWN);
		assert_int_equal(ev.seq, expect);
		assert_string_equal(ev.cluster, "c1");
	}
	assert_int_equal(expect, 301);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	store_close(&st);
}

/* An aborted transaction leaves nothing behind. */
static void
test_abort_leaves_nothing(void **state)
{
	struct store st;
	MDB_txn *txn;

	(void)state;
	assert_int_equal(store_open(&st, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 0), 0);
	append(&st, txn, 1, "c1");
	mdb_txn_abort(txn);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_int_equal(store_last_seq(&st, txn), 0);
	mdb_txn_abort(txn);
	store_close(&st);
}

/* A sequence that is not the next one is fatal: the process exits. */
static void
test_out_of_order_is_fatal(void **state)
{
	struct store st;
	MDB_txn *txn;
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(store_open(&st, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 0), 0);
	append(&st, txn, 5, "c1");
	assert_int_equal(mdb_txn_commit(txn), 0);
	store_close(&st);

	if ((pid = fork()) == 0) {
		log_init("test", 1, 0);
		if (store_open(&st, dir, 1 << 20, 0) != 0 ||
		    store_begin(&st, &txn, 0) != 0)
			_exit(2);
		append(&st, txn, 5, "c1");	/* again: fatalx */
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
}

/* Meta values round-trip; absent names say MDB_NOTFOUND. */
static void
test_meta(void **state)
{
	struct store st;
	MDB_txn *txn;
	uint64_t v;

	(void)state;
	assert_int_equal(store_open(&st, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 0), 0);
	assert_int_equal(store_get_u64(&st, txn, "applied.haproxy", &v),
	    MDB_NOTFOUND);
	assert_int_equal(store_put_u64(&st, txn, "applied.haproxy",
	    0x0102030405060708ULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_int_equal(store_get_u64(&st, txn, "applied.haproxy", &v), 0);
	assert_true(v == 0x0102030405060708ULL);
	assert_int_equal(store_get_u64(&st, txn, "schema", &v), 0);
	assert_int_equal(v, STORE_SCHEMA);
	mdb_txn_abort(txn);
	store_close(&st);
}

/* A read-only open sees the writer's commits. */
static void
test_readonly_sees_commits(void **state)
{
	struct store w, r;
	MDB_txn *txn;

	(void)state;
	assert_int_equal(store_open(&w, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&w, &txn, 0), 0);
	append(&w, txn, 1, "c1");
	append(&w, txn, 2, "c2");
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_int_equal(store_open(&r, dir, 1 << 20, 1), 0);
	assert_int_equal(store_begin(&r, &txn, 1), 0);
	assert_int_equal(store_last_seq(&r, txn), 2);
	mdb_txn_abort(txn);
	store_close(&r);
	store_close(&w);
}

/* The big-endian key helpers are inverse and order-preserving. */
static void
test_keys(void **state)
{
	unsigned char a[8], b[8];

	(void)state;
	store_key_u64(a, 255);
	store_key_u64(b, 256);
	assert_true(memcmp(a, b, 8) < 0);
	assert_true(store_u64_key(a) == 255);
	store_key_u64(a, UINT64_MAX);
	assert_true(store_u64_key(a) == UINT64_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_log_survives_reopen,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_leaves_nothing,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_order_is_fatal,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_sees_commits,
		    setup, teardown),
		cmocka_unit_test(test_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
