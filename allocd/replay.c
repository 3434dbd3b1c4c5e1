/*
 * allocd — replay for debugging: every observation recorded in a store's
 * log goes again through today's allocator, in a scratch store, and what
 * it decides is compared with what was recorded, record by record; then
 * every table of the two stores, key by key.  The store replayed is only
 * read (one read transaction), live or a copy, and never touched.
 * The same log always yields the same decisions and tables: a difference
 * means a decision depended on something other than the log (a bug), that
 * today's code decides otherwise than the code that recorded it, or that
 * the configuration given is not the one the log was recorded under.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "proof.h"
#include "replay.h"

#define REPLAY_TXN	1000	/* observations per scratch transaction */

/* Where the report goes (replay_store's out). */
static FILE	*rout;

static void
show(const char *what, const void *buf, size_t len)
{
	struct event ev;
	char err[128], *s;
	json_t *j;

	if (event_decode(&ev, buf, len, err, sizeof(err)) == -1) {
		fprintf(rout, "  %s: undecodable: %s\n", what, err);
		return;
	}
	j = event_json(&ev);
	s = json_dumps(j, JSON_COMPACT);
	fprintf(rout, "  %s: %s\n", what, s ? s : "?");
	free(s);
	json_decref(j);
	event_free(&ev);
}

static int
same_record(const struct event *mine, const MDB_val *rec,
    struct replay_result *res)
{
	unsigned char *buf;
	size_t len;
	int same;

	if (event_encode(mine, &buf, &len) == -1)
		fatalx("replay: cannot encode");
	same = len == rec->mv_size && memcmp(buf, rec->mv_data, len) == 0;
	if (!same) {
		fprintf(rout, "first difference at seq %llu:\n",
		    (unsigned long long)mine->seq);
		show("recorded", rec->mv_data, rec->mv_size);
		show("replayed", buf, len);
		res->seq = mine->seq;
	}
	free(buf);
	return same;
}

/* A value as text: a u64, printable text, or its first bytes in hex. */
static void
show_bytes(const char *what, const MDB_val *v)
{
	const unsigned char *b = v->mv_data;
	size_t i, n = v->mv_size;

	fprintf(rout, "  %s: ", what);
	for (i = 0; i < n && b[i] >= 0x20 && b[i] < 0x7f; i++)
		;
	if (n == 8 && i < n)
		fprintf(rout, "%llu\n", (unsigned long long)store_u64_key(b));
	else if (i == n || (i == n - 1 && b[i] == '\0'))
		fprintf(rout, "\"%.*s\"\n", (int)i, (const char *)b);
	else {
		for (i = 0; i < n && i < 48; i++)
			fprintf(rout, "%02x", b[i]);
		fprintf(rout, "%s (%zu bytes)\n", n > 48 ? "..." : "", n);
	}
}

/* One record of table (snap: tag letter first), in words, or "absent". */
static void
show_value(const char *what, const char *table, const MDB_val *key,
    const MDB_val *val)
{
	static const char *const states[] = {
		"none", "active", "quarantined", "refused"
	};
	struct owner_rec o;
	struct cluster_rec c;
	MDB_val rest, k = *key;
	uint64_t released;
	unsigned port;
	char t = 0;

	if (val == NULL) {
		fprintf(rout, "  %s: absent\n", what);
		return;
	}
	if (strcmp(table, "snap") == 0 && key->mv_size > 0) {
		t = *(const char *)key->mv_data;
		k.mv_size--;
		k.mv_data = (char *)k.mv_data + 1;
	}
	if (strcmp(table, "log") == 0)
		show(what, val->mv_data, val->mv_size);
	else if ((strcmp(table, "owners") == 0 || t == 'o') &&
	    store_owner_decode(val, &o, &rest) == 0) {
		fprintf(rout, "  %s: port %u, %s%s%s%s, set at seq %llu, "
		    "seen by the sync of seq %llu%s%s%s\n", what, o.port,
		    o.state < 4 ? states[o.state] : "?", o.live ? ", live" : "",
		    o.waiting ? ", waiting" : "", o.limited ? ", limited" : "",
		    (unsigned long long)o.set_seq,
		    (unsigned long long)o.seen_sync,
		    o.why[0] ? ", refused: \"" : "", o.why,
		    o.why[0] ? "\"" : "");
		if (rest.mv_size > 0)
			show("  with", rest.mv_data, rest.mv_size);
	} else if ((strcmp(table, "ports") == 0 || t == 'p') &&
	    store_port_decode(&k, val, &port, &released, &rest) == 0)
		fprintf(rout, "  %s: %s %.*s%s%llu\n", what,
		    released ? "released by" : "held by",
		    (int)rest.mv_size, (char *)rest.mv_data,
		    released ? " at ms " : "", (unsigned long long)released);
	else if ((strcmp(table, "clusters") == 0 || t == 'c') &&
	    store_cluster_decode(val, &c, &rest) == 0) {
		fprintf(rout, "  %s: %s, sync %llu begun at seq %llu\n", what,
		    c.up ? "up" : "down", (unsigned long long)c.sid,
		    (unsigned long long)c.sync_seq);
		if (rest.mv_size > 0)
			show("  with", rest.mv_data, rest.mv_size);
	} else
		show_bytes(what, val);
}

/* The log's first record replayed: those before are left over. */
static uint64_t	 log_from;

/* Does replay compare this key of table?  Not what allocd's loop writes. */
static int
compared(const char *table, const MDB_val *key)
{
	MDB_val k = *key;

	if (strcmp(table, "log") == 0)
		return key->mv_size != 8 || store_u64_key(key->mv_data) >=
		    log_from;

	if (strcmp(table, "snap") == 0) {
		if (k.mv_size == 0 || *(char *)k.mv_data != 'm')
			return 1;
		k.mv_size--;
		k.mv_data = (char *)k.mv_data + 1;
	} else if (strcmp(table, "meta") != 0)
		return 1;
	return store_meta_replayed(&k);
}

/* LMDB's default order: the bytes, then the shorter first. */
static int
keycmp(const MDB_val *a, const MDB_val *b)
{
	size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
	int c = memcmp(a->mv_data, b->mv_data, n);

	if (c != 0)
		return c;
	return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

/* Walk one table of both stores in key order; the first difference. */
static int
same_table(const char *name, MDB_txn *t1, MDB_dbi d1, MDB_txn *t2,
    MDB_dbi d2, struct replay_result *res)
{
	MDB_cursor *c1, *c2;
	MDB_val k1, v1, k2, v2;
	int r1, r2, c, same = 1;

	if (mdb_cursor_open(t1, d1, &c1) != 0 ||
	    mdb_cursor_open(t2, d2, &c2) != 0)
		fatalx("replay: cursor");
	r1 = mdb_cursor_get(c1, &k1, &v1, MDB_FIRST);
	r2 = mdb_cursor_get(c2, &k2, &v2, MDB_FIRST);
	for (;;) {
		while (r1 == 0 && !compared(name, &k1))
			r1 = mdb_cursor_get(c1, &k1, &v1, MDB_NEXT);
		while (r2 == 0 && !compared(name, &k2))
			r2 = mdb_cursor_get(c2, &k2, &v2, MDB_NEXT);
		if (r1 != 0 && r2 != 0)
			break;
		c = r1 != 0 ? 1 : r2 != 0 ? -1 : keycmp(&k1, &k2);
		if (c == 0 && v1.mv_size == v2.mv_size &&
		    memcmp(v1.mv_data, v2.mv_data, v1.mv_size) == 0) {
			r1 = mdb_cursor_get(c1, &k1, &v1, MDB_NEXT);
			r2 = mdb_cursor_get(c2, &k2, &v2, MDB_NEXT);
			continue;
		}
		same = 0;
		snprintf(res->table, sizeof(res->table), "%s", name);
		store_key_text(name, c <= 0 ? &k1 : &k2, res->key,
		    sizeof(res->key));
		fprintf(rout, "first difference in table %s at %s:\n", name,
		    res->key);
		show_value("recorded", name, &k1, c <= 0 ? &v1 : NULL);
		show_value("replayed", name, &k2, c >= 0 ? &v2 : NULL);
		break;
	}
	mdb_cursor_close(c1);
	mdb_cursor_close(c2);
	return same;
}

/* Copy every record of one table as it is (the snapshot, its record). */
static void
copy_table(MDB_txn *rt, MDB_dbi from, MDB_txn *wt, MDB_dbi to)
{
	MDB_cursor *cur;
	MDB_val key, val;
	int rc, op;

	if (mdb_cursor_open(rt, from, &cur) != 0)
		fatalx("replay: cursor");
	for (op = MDB_FIRST; (rc = mdb_cursor_get(cur, &key, &val, op)) == 0;
	    op = MDB_NEXT)
		if ((rc = mdb_put(wt, to, &key, &val, 0)) != 0)
			fatalx("replay: copying the snapshot: %s",
			    mdb_strerror(rc));
	mdb_cursor_close(cur);
}

/*
 * Start from the tables saved with the SNAPSHOT record at seq: they, and
 * that record, are the replay's input, so the scratch store gets them as
 * they are (snap included) and the comparison finds them equal.
 */
static int
from_snapshot(struct store *src, MDB_txn *rt, struct store *dst,
    struct alloc *a, const MDB_val *key, const MDB_val *val, uint64_t seq)
{
	MDB_txn *wt;
	uint64_t saved;
	int rc;

	if (store_get_u64(src, rt, STORE_META_SNAPSHOT, &saved) != 0 ||
	    saved != seq) {
		fprintf(rout, "seq %llu: the log starts with a snapshot whose "
		    "tables are not in the store\n", (unsigned long long)seq);
		return 2;
	}
	if (store_begin(dst, &wt, 0) != 0)
		fatalx("replay: scratch transaction");
	if ((rc = store_restore(src, rt, dst, wt)) != 0 ||
	    (rc = mdb_put(wt, dst->log, (MDB_val *)key, (MDB_val *)val,
	    MDB_APPEND)) != 0)
		fatalx("replay: loading the snapshot: %s", mdb_strerror(rc));
	copy_table(rt, store_snap(src, rt, 0), wt, store_snap(dst, wt, 0));
	if ((rc = mdb_txn_commit(wt)) != 0)
		fatalx("replay: loading the snapshot: %s", mdb_strerror(rc));
	a->seq = seq;
	fprintf(rout, "starting from the snapshot at seq %llu\n",
	    (unsigned long long)seq);
	return 0;
}

/* Every table of the two stores, in store_tables' order. */
static int
same_tables(struct store *src, MDB_txn *rt, struct store *dst,
    struct replay_result *res)
{
	const char *const *t;
	MDB_txn *wt;
	int same = 1;

	if (store_begin(dst, &wt, 1) != 0)
		fatalx("replay: scratch read");
	for (t = store_tables; *t != NULL && same; t++)
		same = same_table(*t, rt, strcmp(*t, "snap") == 0 ?
		    store_snap(src, rt, 0) : store_table(src, *t), wt,
		    strcmp(*t, "snap") == 0 ? store_snap(dst, wt, 0) :
		    store_table(dst, *t), res);
	mdb_txn_abort(wt);
	res->tables = 1;
	return same;
}

/* The scratch store: a folder of our own, gone at the end. */
static void
scratch_remove(const char *scratch)
{
	char path[64];

	snprintf(path, sizeof(path), "%s/data.mdb", scratch);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", scratch);
	unlink(path);
	rmdir(scratch);
}

int
replay_store(const struct config *conf, struct store *src, MDB_txn *rt,
    uint64_t until, FILE *out, struct replay_result *res)
{
	char scratch[] = "/tmp/portico-replay-XXXXXX", err[128];
	struct store dst;
	struct alloc a;
	struct event obs;
	MDB_txn *wt = NULL;
	MDB_cursor *cur;
	MDB_val key, val;
	unsigned char k[8];
	size_t i, intxn = 0;
	int rc, op, status = 0, ended = 1;

	memset(res, 0, sizeof(*res));
	rout = out;
	/* the proofs it checked and made are checked and made again */
	if (proof_load(conf, 0, &rc) == -1) {
		fprintf(rout, "replay needs allocd's proof key\n");
		return 2;
	}
	if (mkdtemp(scratch) == NULL)
		fatal("replay: mkdtemp");
	if (store_open(&dst, scratch, (size_t)8 << 30, 0) == -1)
		fatalx("replay: scratch store");
	alloc_init(&a, &dst, conf, 0);
	if (mdb_cursor_open(rt, src->log, &cur) != 0)
		fatalx("replay: cannot read the log");

	/* records before the last snapshot are left over from compaction */
	store_key_u64(k, (log_from = store_start_seq(src, rt)));
	key.mv_size = sizeof(k);
	key.mv_data = k;
	for (op = MDB_SET_RANGE; (rc = mdb_cursor_get(cur, &key, &val, op)) ==
	    0; op = MDB_NEXT) {
		if (event_decode(&obs, val.mv_data, val.mv_size, err,
		    sizeof(err)) == -1) {
			fprintf(rout, "seq %llu: undecodable record: %s\n",
			    (unsigned long long)store_u64_key(key.mv_data),
			    err);
			res->seq = store_u64_key(key.mv_data);
			status = 1;
			break;
		}
		if (until != 0 && obs.seq > until) {
			event_free(&obs);
			ended = 0;
			break;
		}
		if (op == MDB_SET_RANGE && obs.type == EV_STORE_LOST)
			a.seq = obs.seq - 1;	/* a store that began anew */
		if (op == MDB_SET_RANGE && obs.type == EV_SNAPSHOT) {
			status = from_snapshot(src, rt, &dst, &a, &key, &val,
			    obs.seq);
			res->last = obs.seq;
			event_free(&obs);
			if (status != 0)
				break;
			continue;
		}
		if ((obs.type < EV_CLUSTER_UP || obs.type > EV_TICK) &&
		    obs.type != EV_SNI_ROUTE && obs.type != EV_SNI_GONE &&
		    obs.type != EV_SNAPSHOT && obs.type != EV_STORE_LOST &&
		    obs.type != EV_ADOPT_END) {
			fprintf(rout, "first difference at seq %llu: recorded "
			    "%s has no observation that replay made it from\n",
			    (unsigned long long)obs.seq, event_name(obs.type));
			res->seq = obs.seq;
			status = 1;
			event_free(&obs);
			break;
		}
		if (obs.seq != a.seq + 1) {
			fprintf(rout, "seq %llu: the log does not start at 1 "
			    "or has a gap; replay needs it whole\n",
			    (unsigned long long)obs.seq);
			status = 2;
			event_free(&obs);
			break;
		}
		if (wt == NULL && store_begin(&dst, &wt, 0) != 0)
			fatalx("replay: scratch transaction");
		rc = alloc_observe(&a, wt, &obs);
		event_free(&obs);
		if (rc != 0 && rc != 1)
			fatalx("replay: %s", mdb_strerror(rc));
		res->nobs++;
		/* the observation itself, then each decision it caused */
		for (i = 0; i < a.nout && status == 0; i++) {
			if (until != 0 && a.out[i].seq > until) {
				ended = 0;	/* decided after until */
				break;
			}
			if (i > 0 && mdb_cursor_get(cur, &key, &val,
			    MDB_NEXT) != 0) {
				fprintf(rout, "first difference at seq %llu: "
				    "the log ends where replay decided more: "
				    "%s\n",
				    (unsigned long long)a.out[i].seq,
				    event_name(a.out[i].type));
				res->seq = a.out[i].seq;
				status = 1;
				break;
			}
			if (!same_record(&a.out[i], &val, res))
				status = 1;
			res->last = a.out[i].seq;
			res->ndec += i > 0;
		}
		alloc_clear(&a);
		if (status != 0 || !ended)
			break;
		if (++intxn == REPLAY_TXN) {
			if ((rc = mdb_txn_commit(wt)) != 0)
				fatalx("replay: %s", mdb_strerror(rc));
			wt = NULL;
			intxn = 0;
		}
	}
	mdb_cursor_close(cur);
	if (wt != NULL && (rc = mdb_txn_commit(wt)) != 0)
		fatalx("replay: %s", mdb_strerror(rc));
	/* the tables say the state at the log's end: compared only there */
	if (status == 0 && ended && !same_tables(src, rt, &dst, res))
		status = 1;
	fprintf(rout, "replayed %llu observations, %llu decisions up to seq "
	    "%llu%s: %s\n", (unsigned long long)res->nobs,
	    (unsigned long long)res->ndec, (unsigned long long)res->last,
	    status == 0 && !ended ? " (tables compared only at the log's "
	    "end)" : status == 0 ? ", then every table" : "",
	    status == 0 ? "identical to the record" : status == 1 ?
	    "they differ" : "cannot replay");
	alloc_free(&a);
	store_close(&dst);
	scratch_remove(scratch);
	return status;
}

int
replay_run(const struct config *conf, const char *dir)
{
	struct replay_result res;
	struct store src;
	MDB_txn *rt;
	int status;

	if (store_open(&src, dir, (size_t)conf->map_size_mb << 20, 1) == -1)
		return 2;
	if (store_begin(&src, &rt, 1) != 0)
		fatalx("replay: cannot read %s", dir);
	status = replay_store(conf, &src, rt, 0, stdout, &res);
	mdb_txn_abort(rt);
	store_close(&src);
	return status;
}
