/*
 * test_store — the LMDB store: the log appends in order and survives a
 * reopen, an append out of order is a fatal invariant break, meta values
 * round-trip, and a read-only open sees what the writer committed
 * (compaction: test_compact).  Records are fixed-endian; a store of schema
 * 1 (written by 7ce3994) is migrated on open, one of a newer schema
 * refused untouched.
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

/*
 * Records are fixed-endian: the same bytes on any host.  An owner record's
 * port and seqs are big-endian, its reason counted, its event after it;
 * a port record's release time is big-endian; sums are big-endian u64s.
 */
static void
test_records_fixed_endian(void **state)
{
	static const unsigned char port_rec[] = {
		0, 0, 0, 0, 0, 0, 0x01, 0x02, 'c', '/', 'n', '/', 'v', '/', '0'
	};
	struct owner_rec rec, back;
	struct cluster_rec crec, cback;
	struct store st;
	MDB_txn *txn;
	MDB_val key = { 8, (void *)"c/n/v/0x" }, val, ev;
	uint64_t sums[STORE_LIM_N] = { 1, 2, 3, 0x0102, 5 }, got[STORE_LIM_N];
	char owner[64];
	uint64_t released;
	const unsigned char *b;

	(void)state;
	assert_int_equal(store_open(&st, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 0), 0);
	memset(&rec, 0, sizeof(rec));
	rec.port = 0x1234;
	rec.state = OWN_ACTIVE;
	rec.live = 1;
	rec.set_seq = 0x0102030405060708ULL;
	rec.seen_sync = 9;
	strcpy(rec.why, "no");
	assert_int_equal(store_owner_put(&st, txn, "c/n/v/0", &rec, "EV", 2),
	    0);
	key.mv_size = 7;
	assert_int_equal(mdb_get(txn, st.owners, &key, &val), 0);
	b = val.mv_data;
	assert_int_equal(val.mv_size, 24 + 2 + 2);
	assert_int_equal(b[0], 0x12);
	assert_int_equal(b[1], 0x34);
	assert_int_equal(b[2], OWN_ACTIVE);
	assert_int_equal(b[6], 0x01);
	assert_int_equal(b[13], 0x08);
	assert_int_equal(b[21], 9);
	assert_int_equal(b[23], 2);
	assert_memory_equal(b + 24, "noEV", 4);
	assert_int_equal(store_owner_get(&st, txn, "c/n/v/0", &back, &ev), 0);
	assert_int_equal(back.port, 0x1234);
	assert_true(back.set_seq == rec.set_seq && back.seen_sync == 9);
	assert_string_equal(back.why, "no");
	assert_int_equal(ev.mv_size, 2);

	assert_int_equal(store_port_put(&st, txn, 0x7530, "c/n/v/0", 0x0102),
	    0);
	key.mv_size = 2;
	key.mv_data = "\x75\x30";
	assert_int_equal(mdb_get(txn, st.ports, &key, &val), 0);
	assert_int_equal(val.mv_size, sizeof(port_rec));
	assert_memory_equal(val.mv_data, port_rec, sizeof(port_rec));
	assert_int_equal(store_port_get(&st, txn, 0x7530, owner,
	    sizeof(owner), &released), 0);
	assert_string_equal(owner, "c/n/v/0");
	assert_true(released == 0x0102);

	memset(&crec, 0, sizeof(crec));
	crec.sid = 7;
	crec.sync_seq = 0x0a0b;
	crec.up = 1;
	assert_int_equal(store_cluster_put(&st, txn, "c", &crec, "API", 3), 0);
	assert_int_equal(store_cluster_get(&st, txn, "c", &cback, &ev), 0);
	assert_true(cback.sid == 7 && cback.sync_seq == 0x0a0b && cback.up);
	assert_int_equal(ev.mv_size, 3);

	key.mv_size = 6;
	key.mv_data = "lim/c1";
	assert_int_equal(store_put_u64s(&st, txn, &key, sums, STORE_LIM_N), 0);
	assert_int_equal(mdb_get(txn, st.meta, &key, &val), 0);
	assert_int_equal(val.mv_size, 40);
	assert_int_equal(((unsigned char *)val.mv_data)[30], 0x01);
	assert_int_equal(((unsigned char *)val.mv_data)[31], 0x02);
	assert_int_equal(store_get_u64s(&st, txn, &key, got, STORE_LIM_N), 0);
	assert_memory_equal(got, sums, sizeof(sums));
	mdb_txn_abort(txn);
	store_close(&st);
}

/* The store of 7ce3994 (schema 1), by tests/fixtures/make_store_v1.py. */
#define FIXTURE_V1	"tests/fixtures/store-v1/data.mdb"

static void
copy_file(const char *from, const char *to)
{
	char buf[8192];
	size_t n;
	FILE *in, *out;

	assert_non_null(in = fopen(from, "r"));
	assert_non_null(out = fopen(to, "w"));
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* Schema 1's records: the host structs of 7ce3994. */
struct owner_v1 {
	uint16_t	port;
	uint8_t		state, live, waiting, limited;
	uint8_t		pad[4];
	uint64_t	set_seq, seen_sync;
	char		why[256];
};
struct cluster_v1 {
	uint64_t	sid, sync_seq;
	uint8_t		up;
	uint8_t		pad[7];
};

/* What a schema 1 table held, read raw, before the migration. */
struct raw {
	size_t		 n;
	MDB_val		 key[256];
	MDB_val		 val[256];
};

static void
raw_read(MDB_txn *txn, MDB_dbi dbi, struct raw *r)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int op;

	r->n = 0;
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	for (op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0;
	    op = MDB_NEXT) {
		assert_true(r->n < 256);
		r->key[r->n].mv_size = k.mv_size;
		assert_non_null(r->key[r->n].mv_data = malloc(k.mv_size + 1));
		memcpy(r->key[r->n].mv_data, k.mv_data, k.mv_size);
		r->val[r->n].mv_size = v.mv_size;
		assert_non_null(r->val[r->n].mv_data = malloc(v.mv_size + 1));
		memcpy(r->val[r->n].mv_data, v.mv_data, v.mv_size);
		r->n++;
	}
	mdb_cursor_close(cur);
}

static void
raw_free(struct raw *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		free(r->key[i].mv_data);
		free(r->val[i].mv_data);
	}
}

/* A schema 1 record of table tag against the schema 2 one it became. */
static void
same_v1(char tag, const MDB_val *key, const MDB_val *v1, const MDB_val *v2)
{
	struct owner_v1 o1;
	struct cluster_v1 c1;
	struct owner_rec o;
	struct cluster_rec c;
	uint64_t u1[STORE_LIM_N], u2[STORE_LIM_N], r1;
	MDB_val rest, k2 = *key, own;
	struct event e1, e2;
	unsigned char *b1;
	char err[128];
	unsigned p;
	size_t i, n1;

	switch (tag) {
	case 'o':
		memcpy(&o1, v1->mv_data, sizeof(o1));
		assert_int_equal(store_owner_decode(v2, &o, &rest), 0);
		assert_int_equal(o.port, o1.port);
		assert_int_equal(o.state, o1.state);
		assert_int_equal(o.live, o1.live);
		assert_int_equal(o.waiting, o1.waiting);
		assert_int_equal(o.limited, o1.limited);
		assert_true(o.set_seq == o1.set_seq);
		assert_true(o.seen_sync == o1.seen_sync);
		assert_string_equal(o.why, o1.why);
		assert_int_equal(rest.mv_size, v1->mv_size - sizeof(o1));
		assert_memory_equal(rest.mv_data, (char *)v1->mv_data +
		    sizeof(o1), rest.mv_size);
		break;
	case 'p':
		memcpy(&r1, v1->mv_data, 8);
		assert_int_equal(store_port_decode(&k2, v2, &p, &u2[0], &own),
		    0);
		assert_true(u2[0] == r1);
		assert_int_equal(own.mv_size, v1->mv_size - 8);
		assert_memory_equal(own.mv_data, (char *)v1->mv_data + 8,
		    own.mv_size);
		break;
	case 'c':
		memcpy(&c1, v1->mv_data, sizeof(c1));
		assert_int_equal(store_cluster_decode(v2, &c, &rest), 0);
		assert_true(c.sid == c1.sid && c.sync_seq == c1.sync_seq);
		assert_int_equal(c.up, c1.up);
		assert_int_equal(rest.mv_size, v1->mv_size - sizeof(c1));
		assert_memory_equal(rest.mv_data, (char *)v1->mv_data +
		    sizeof(c1), rest.mv_size);
		break;
	case 'm':
		if (key->mv_size >= 4 && memcmp(key->mv_data, "lim/", 4) == 0) {
			assert_int_equal(v1->mv_size, sizeof(u1));
			assert_int_equal(v2->mv_size, sizeof(u2));
			memcpy(u1, v1->mv_data, sizeof(u1));
			for (i = 0; i < STORE_LIM_N; i++)
				assert_true(store_u64_key((char *)v2->mv_data +
				    8 * i) == u1[i]);
			break;
		}
		if (key->mv_size >= 7 && memcmp(key->mv_data, "status.",
		    7) == 0) {
			/* a proxy's last APPLIED, kept without its seq now */
			assert_int_equal(event_decode(&e1, v1->mv_data,
			    v1->mv_size, err, sizeof(err)), 0);
			assert_int_equal(event_decode(&e2, v2->mv_data,
			    v2->mv_size, err, sizeof(err)), 0);
			assert_true(e1.seq != 0 && e2.seq == 0);
			e1.seq = 0;
			assert_int_equal(event_encode(&e1, &b1, &n1), 0);
			assert_int_equal(n1, v2->mv_size);
			assert_memory_equal(b1, v2->mv_data, n1);
			free(b1);
			event_free(&e1);
			event_free(&e2);
			break;
		}
		/* everything else in meta was fixed-endian already */
		assert_int_equal(v2->mv_size, v1->mv_size);
		assert_memory_equal(v2->mv_data, v1->mv_data, v1->mv_size);
		break;
	default:
		fail_msg("a record of table %c", tag);
	}
}

/* Every record of table tag (0: snap, tagged by key) came through. */
static void
check_table(MDB_txn *txn, MDB_dbi dbi, char tag, const struct raw *r)
{
	MDB_val key, val, k;
	size_t i;

	for (i = 0; i < r->n; i++) {
		key = r->key[i];
		assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
		k = key;
		if (tag == 0) {
			k.mv_size--;
			k.mv_data = (char *)k.mv_data + 1;
		}
		same_v1(tag ? tag : *(char *)key.mv_data, &k, &r->val[i],
		    &val);
	}
}

/*
 * A store written by 7ce3994 opens, migrated in one transaction: every
 * owner, port, cluster and meta value (and their copies in snap) says what
 * it said, in the new encoding, and the log is untouched.  Opening it
 * again migrates nothing more.  A reader refuses it before that.
 */
static void
test_migrate_v1(void **state)
{
	struct raw own, por, clu, met, snp, lg;
	char path[128];
	struct store st;
	struct owner_rec o;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi d[6];
	MDB_val ev;
	uint64_t v, released;
	char holder[64];
	int nolock, i;
	static const char *names[] = {
		"owners", "ports", "clusters", "meta", "snap", "log"
	};

	(void)state;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	copy_file(FIXTURE_V1, path);
	assert_int_equal(store_open_reader(&st, dir, &nolock), -1);

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	for (i = 0; i < 6; i++)
		assert_int_equal(mdb_dbi_open(txn, names[i], 0, &d[i]), 0);
	raw_read(txn, d[0], &own);
	raw_read(txn, d[1], &por);
	raw_read(txn, d[2], &clu);
	raw_read(txn, d[3], &met);
	raw_read(txn, d[4], &snp);
	raw_read(txn, d[5], &lg);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	/* what make_store_v1.py wrote: a bit of everything */
	assert_int_equal(own.n, 7);
	assert_int_equal(por.n, 5);
	assert_int_equal(clu.n, 2);
	assert_true(met.n >= 15 && snp.n >= 20 && lg.n >= 5);

	assert_int_equal(store_open(&st, dir, 1 << 26, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	assert_int_equal(store_get_u64(&st, txn, STORE_META_SCHEMA, &v), 0);
	assert_int_equal(v, STORE_SCHEMA);
	check_table(txn, st.owners, 'o', &own);
	check_table(txn, st.ports, 'p', &por);
	check_table(txn, st.clusters, 'c', &clu);
	for (i = 0; (size_t)i < met.n; i++)
		if (met.key[i].mv_size == 6 &&
		    memcmp(met.key[i].mv_data, "schema", 6) == 0)
			break;
	/* the schema is the one meta value meant to change */
	assert_true((size_t)i < met.n);
	free(met.key[i].mv_data);
	free(met.val[i].mv_data);
	met.key[i] = met.key[met.n - 1];
	met.val[i] = met.val[met.n - 1];
	met.n--;
	check_table(txn, st.meta, 'm', &met);
	check_table(txn, st.snap, 0, &snp);
	check_table(txn, st.log, 'm', &lg);	/* byte for byte */

	/* and what they mean: a port asked for, a quarantine, a refusal */
	assert_int_equal(store_owner_get(&st, txn, "c1-5f0e7b2a/shop/db/0", &o,
	    &ev), 0);
	assert_int_equal(o.port, 20005);
	assert_int_equal(o.state, OWN_ACTIVE);
	assert_true(ev.mv_size > 0);
	assert_int_equal(store_owner_get(&st, txn, "c2-9d41aa07/pay/api/0", &o,
	    NULL), 0);
	assert_int_equal(o.state, OWN_QUARANTINED);
	assert_int_equal(store_port_get(&st, txn, o.port, holder,
	    sizeof(holder), &released), 0);
	assert_string_equal(holder, "c2-9d41aa07/pay/api/0");
	assert_true(released > 1700000000000ULL);
	assert_int_equal(store_owner_get(&st, txn, "c1-5f0e7b2a/shop/big/0",
	    &o, NULL), 0);
	assert_int_equal(o.state, OWN_REFUSED);
	assert_non_null(strstr(o.why, "port 40000 is outside"));
	mdb_txn_abort(txn);
	store_close(&st);

	/* migrated once: a reader takes it now, and it stays as it is */
	assert_int_equal(store_open_reader(&st, dir, &nolock), 0);
	store_close(&st);
	assert_int_equal(store_open(&st, dir, 1 << 26, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 1), 0);
	check_table(txn, st.owners, 'o', &own);
	mdb_txn_abort(txn);
	store_close(&st);
	raw_free(&own);
	raw_free(&por);
	raw_free(&clu);
	raw_free(&met);
	raw_free(&snp);
	raw_free(&lg);
}

/* The data file's bytes, to see that a refused open wrote nothing. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *fp;
	char *buf;
	long n;

	assert_non_null(fp = fopen(path, "r"));
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	assert_true((n = ftell(fp)) > 0);
	rewind(fp);
	assert_non_null(buf = malloc((size_t)n));
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* A store of a schema newer than this build is refused, and not touched. */
static void
test_newer_schema_refused(void **state)
{
	char path[128], *before, *after;
	size_t blen, alen;
	struct store st;
	MDB_txn *txn;
	int nolock;

	(void)state;
	assert_int_equal(store_open(&st, dir, 1 << 20, 0), 0);
	assert_int_equal(store_begin(&st, &txn, 0), 0);
	append(&st, txn, 1, "c1");
	assert_int_equal(store_put_u64(&st, txn, STORE_META_SCHEMA,
	    STORE_SCHEMA + 1), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	store_close(&st);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	before = slurp(path, &blen);
	assert_int_equal(store_open(&st, dir, 1 << 20, 0), -1);
	assert_int_equal(store_open(&st, dir, 1 << 20, 1), -1);
	assert_int_equal(store_open_reader(&st, dir, &nolock), -1);
	after = slurp(path, &alen);
	assert_int_equal(alen, blen);
	assert_memory_equal(after, before, blen);
	free(before);
	free(after);
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
		cmocka_unit_test_setup_teardown(test_records_fixed_endian,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_v1,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
