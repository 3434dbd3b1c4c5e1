/*
 * allocd — replay for debugging: allocd -R STORE reruns every observation
 * recorded in STORE's log through the allocator, in a scratch store, and
 * compares what it decides with what was recorded, record by record, then
 * the port tables.  The live store is opened read-only and never touched.
 * The same log always yields the same assignments: a difference means a
 * decision depended on something other than the log (a bug), or that the
 * configuration given is not the one the log was recorded under.
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

static void
show(const char *what, const void *buf, size_t len)
{
	struct event ev;
	char err[128], *s;
	json_t *j;

	if (event_decode(&ev, buf, len, err, sizeof(err)) == -1) {
		printf("  %s: undecodable: %s\n", what, err);
		return;
	}
	j = event_json(&ev);
	s = json_dumps(j, JSON_COMPACT);
	printf("  %s: %s\n", what, s ? s : "?");
	free(s);
	json_decref(j);
	event_free(&ev);
}

static int
same_record(const struct event *mine, const MDB_val *rec)
{
	unsigned char *buf;
	size_t len;
	int same;

	if (event_encode(mine, &buf, &len) == -1)
		fatalx("replay: cannot encode");
	same = len == rec->mv_size && memcmp(buf, rec->mv_data, len) == 0;
	if (!same) {
		printf("first difference at seq %llu:\n",
		    (unsigned long long)mine->seq);
		show("recorded", rec->mv_data, rec->mv_size);
		show("replayed", buf, len);
	}
	free(buf);
	return same;
}

/* Byte-compare one named database of two stores. */
static int
same_table(const char *name, MDB_txn *t1, MDB_dbi d1, MDB_txn *t2,
    MDB_dbi d2)
{
	MDB_cursor *c1, *c2;
	MDB_val k1, v1, k2, v2;
	int r1, r2, op = MDB_FIRST, same = 1;
	size_t n = 0;

	mdb_cursor_open(t1, d1, &c1);
	mdb_cursor_open(t2, d2, &c2);
	for (;; op = MDB_NEXT, n++) {
		r1 = mdb_cursor_get(c1, &k1, &v1, op);
		r2 = mdb_cursor_get(c2, &k2, &v2, op);
		if (r1 != 0 || r2 != 0) {
			same = r1 == r2;
			break;
		}
		if (k1.mv_size != k2.mv_size || v1.mv_size != v2.mv_size ||
		    memcmp(k1.mv_data, k2.mv_data, k1.mv_size) != 0 ||
		    memcmp(v1.mv_data, v2.mv_data, v1.mv_size) != 0) {
			same = 0;
			break;
		}
	}
	if (!same)
		printf("table %s differs at entry %zu\n", name, n);
	mdb_cursor_close(c1);
	mdb_cursor_close(c2);
	return same;
}

/* Start from the tables saved with the SNAPSHOT record at seq. */
static int
from_snapshot(struct store *src, MDB_txn *rt, struct store *dst,
    struct alloc *a, uint64_t seq)
{
	MDB_txn *wt;
	uint64_t saved;
	int rc;

	if (store_get_u64(src, rt, "snapshot", &saved) != 0 || saved != seq) {
		printf("seq %llu: the log starts with a snapshot whose tables "
		    "are not in the store\n", (unsigned long long)seq);
		return 2;
	}
	if (store_begin(dst, &wt, 0) != 0)
		fatalx("replay: scratch transaction");
	if ((rc = store_restore(src, rt, dst, wt)) != 0 ||
	    (rc = mdb_txn_commit(wt)) != 0)
		fatalx("replay: loading the snapshot: %s", mdb_strerror(rc));
	a->seq = seq;
	printf("starting from the snapshot at seq %llu\n",
	    (unsigned long long)seq);
	return 0;
}

int
replay_run(const struct config *conf, const char *dir)
{
	char scratch[] = "/tmp/portico-replay-XXXXXX", err[128], cmd[64];
	struct store src, dst;
	struct alloc a;
	struct event obs;
	MDB_txn *rt, *wt = NULL;
	MDB_cursor *cur;
	MDB_val key, val;
	unsigned char k[8];
	size_t i, nobs = 0, ndec = 0, intxn = 0;
	int rc, op, status = 0;

	if (store_open(&src, dir, (size_t)conf->map_size_mb << 20, 1) == -1)
		return 2;
	/* the proofs it checked and made are checked and made again */
	if (proof_load(conf, 0, &rc) == -1) {
		printf("replay needs allocd's proof key\n");
		store_close(&src);
		return 2;
	}
	if (mkdtemp(scratch) == NULL)
		fatal("replay: mkdtemp");
	if (store_open(&dst, scratch, (size_t)8 << 30, 0) == -1)
		fatalx("replay: scratch store");
	alloc_init(&a, &dst, conf, 0);
	if (store_begin(&src, &rt, 1) != 0 ||
	    mdb_cursor_open(rt, src.log, &cur) != 0)
		fatalx("replay: cannot read %s", dir);

	/* records before the last snapshot are left over from compaction */
	store_key_u64(k, store_start_seq(&src, rt));
	key.mv_size = sizeof(k);
	key.mv_data = k;
	for (op = MDB_SET_RANGE; (rc = mdb_cursor_get(cur, &key, &val, op)) ==
	    0; op = MDB_NEXT) {
		if (event_decode(&obs, val.mv_data, val.mv_size, err,
		    sizeof(err)) == -1) {
			printf("seq %llu: undecodable record: %s\n",
			    (unsigned long long)store_u64_key(key.mv_data),
			    err);
			status = 1;
			break;
		}
		if (op == MDB_SET_RANGE && obs.type == EV_STORE_LOST)
			a.seq = obs.seq - 1;	/* a store that began anew */
		if (op == MDB_SET_RANGE && obs.type == EV_SNAPSHOT) {
			status = from_snapshot(&src, rt, &dst, &a, obs.seq);
			event_free(&obs);
			if (status != 0)
				break;
			continue;
		}
		if ((obs.type < EV_CLUSTER_UP || obs.type > EV_TICK) &&
		    obs.type != EV_SNAPSHOT && obs.type != EV_STORE_LOST &&
		    obs.type != EV_ADOPT_END) {
			printf("seq %llu: recorded %s has no observation "
			    "that replay made it from\n",
			    (unsigned long long)obs.seq, event_name(obs.type));
			status = 1;
			event_free(&obs);
			break;
		}
		if (obs.seq != a.seq + 1) {
			printf("seq %llu: the log does not start at 1 or has "
			    "a gap; replay needs it whole\n",
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
		nobs++;
		/* the observation itself, then each decision it caused */
		for (i = 0; i < a.nout && status == 0; i++) {
			if (i > 0 && mdb_cursor_get(cur, &key, &val,
			    MDB_NEXT) != 0) {
				printf("the log ends where replay decided "
				    "more: %s at seq %llu\n",
				    event_name(a.out[i].type),
				    (unsigned long long)a.out[i].seq);
				status = 1;
				break;
			}
			if (!same_record(&a.out[i], &val))
				status = 1;
		}
		ndec += a.nout > 0 ? a.nout - 1 : 0;
		alloc_clear(&a);
		if (status != 0)
			break;
		if (++intxn == REPLAY_TXN) {
			if ((rc = mdb_txn_commit(wt)) != 0)
				fatalx("replay: %s", mdb_strerror(rc));
			wt = NULL;
			intxn = 0;
		}
	}
	if (wt != NULL && (rc = mdb_txn_commit(wt)) != 0)
		fatalx("replay: %s", mdb_strerror(rc));
	if (status == 0) {
		if (store_begin(&dst, &wt, 1) != 0)
			fatalx("replay: scratch read");
		if (!same_table("owners", rt, src.owners, wt, dst.owners) ||
		    !same_table("ports", rt, src.ports, wt, dst.ports) ||
		    !same_table("clusters", rt, src.clusters, wt, dst.clusters))
			status = 1;
		mdb_txn_abort(wt);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(rt);
	printf("replayed %zu observations, %zu decisions: %s\n", nobs, ndec,
	    status == 0 ? "identical to the record" : "they differ");
	alloc_free(&a);
	store_close(&src);
	store_close(&dst);
	snprintf(cmd, sizeof(cmd), "%s/data.mdb", scratch);
	unlink(cmd);
	snprintf(cmd, sizeof(cmd), "%s/lock.mdb", scratch);
	unlink(cmd);
	rmdir(scratch);
	return status;
}
