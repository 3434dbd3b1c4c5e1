/*
 * portico — the store's migrations: a store of an older schema rewritten,
 * record by record, to STORE_SCHEMA, inside the transaction that opens it
 * (store_open commits it whole or not at all, so a crash leaves the old
 * store to start over from).
 *
 * Schema 1 (7ce3994 and before) wrote host structs; they are read here on
 * the kind of host that wrote them (a store was never portable then).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"

struct owner_rec_v1 {
	uint16_t	port;
	uint8_t		state, live, waiting, limited;
	uint8_t		pad[4];
	uint64_t	set_seq, seen_sync;
	char		why[256];
};
struct port_rec_v1 {
	uint64_t	released;
};
struct cluster_rec_v1 {
	uint64_t	sid, sync_seq;
	uint8_t		up;
	uint8_t		pad[7];
};

/*
 * A proxy's status (its last APPLIED) kept the sender's seq, which a
 * replay cannot know: schema 2 keeps it without.
 */
static int
migrate_status(const MDB_val *val, unsigned char **out, MDB_val *nv)
{
	struct event ev;
	unsigned char *buf;
	char err[128];
	size_t len;

	if (event_decode(&ev, val->mv_data, val->mv_size, err,
	    sizeof(err)) == -1)
		return -1;
	ev.seq = 0;
	if (event_encode(&ev, &buf, &len) == -1) {
		event_free(&ev);
		return -1;
	}
	event_free(&ev);
	*out = buf;
	nv->mv_size = len;
	nv->mv_data = buf;
	return 0;
}

/*
 * The schema 2 value of a schema 1 record of table tag (o, p, c, m) in
 * *out (malloc'd; NULL when the value stays as it is).  -1 if the record
 * is not what schema 1 wrote.
 */
static int
migrate_v1(char tag, const MDB_val *key, const MDB_val *val,
    unsigned char **out, MDB_val *nv)
{
	const size_t lplen = strlen(STORE_META_LIM);
	const size_t splen = strlen(STORE_META_STATUS);
	struct owner_rec_v1 o1;
	struct cluster_rec_v1 c1;
	struct port_rec_v1 p1;
	struct owner_rec o;
	struct cluster_rec c;
	uint64_t u;
	size_t i;

	*out = NULL;
	switch (tag) {
	case 'o':
		if (val->mv_size < sizeof(o1))
			return -1;
		memcpy(&o1, val->mv_data, sizeof(o1));
		if (memchr(o1.why, '\0', sizeof(o1.why)) == NULL)
			return -1;
		memset(&o, 0, sizeof(o));
		o.port = o1.port;
		o.state = o1.state;
		o.live = o1.live;
		o.waiting = o1.waiting;
		o.limited = o1.limited;
		o.set_seq = o1.set_seq;
		o.seen_sync = o1.seen_sync;
		memcpy(o.why, o1.why, sizeof(o.why));
		*out = store_owner_encode(&o, (char *)val->mv_data +
		    sizeof(o1), val->mv_size - sizeof(o1), nv);
		return 0;
	case 'p':
		if (val->mv_size <= sizeof(p1))
			return -1;
		memcpy(&p1, val->mv_data, sizeof(p1));
		*out = store_port_encode(p1.released, (char *)val->mv_data +
		    sizeof(p1), val->mv_size - sizeof(p1), nv);
		return 0;
	case 'c':
		if (val->mv_size < sizeof(c1))
			return -1;
		memcpy(&c1, val->mv_data, sizeof(c1));
		c.sid = c1.sid;
		c.sync_seq = c1.sync_seq;
		c.up = c1.up;
		*out = store_cluster_encode(&c, (char *)val->mv_data +
		    sizeof(c1), val->mv_size - sizeof(c1), nv);
		return 0;
	case 'm':
		if (key->mv_size > splen &&
		    memcmp(key->mv_data, STORE_META_STATUS, splen) == 0)
			return migrate_status(val, out, nv);
		/* the clusters' sums were a host struct of u64s */
		if (key->mv_size < lplen ||
		    memcmp(key->mv_data, STORE_META_LIM, lplen) != 0)
			return 0;
		if (val->mv_size != 8 * STORE_LIM_N)
			return -1;
		if ((*out = malloc(val->mv_size)) == NULL)
			fatal("store: migration");
		for (i = 0; i < STORE_LIM_N; i++) {
			memcpy(&u, (char *)val->mv_data + 8 * i, 8);
			store_key_u64(*out + 8 * i, u);
		}
		nv->mv_size = val->mv_size;
		nv->mv_data = *out;
		return 0;
	}
	return -1;
}

/* The records a migration rewrites, gathered before any is written. */
struct mig {
	MDB_val		*key;
	MDB_val		*val;
	size_t		 n;
	size_t		 cap;
};

/*
 * Rewrite every record of dbi (snap: tag 0, each key's first letter).  The
 * new values are gathered under a cursor and written after it is closed:
 * a value that changes size is not rewritten in place under a cursor.
 */
static int
migrate_table(MDB_txn *txn, MDB_dbi dbi, char tag, const char *name,
    size_t *n)
{
	struct mig m = { NULL, NULL, 0, 0 };
	MDB_cursor *cur;
	MDB_val key, val, k, nv;
	unsigned char *out;
	size_t i;
	char t;
	int rc, op;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return rc;
	for (op = MDB_FIRST; (rc = mdb_cursor_get(cur, &key, &val, op)) == 0;
	    op = MDB_NEXT) {
		k = key;
		if ((t = tag) == 0) {
			if (key.mv_size < 1) {
				rc = MDB_CORRUPTED;
				break;
			}
			t = *(char *)key.mv_data;
			k.mv_size--;
			k.mv_data = (char *)k.mv_data + 1;
		}
		if (migrate_v1(t, &k, &val, &out, &nv) == -1) {
			log_warnx("store: migration: a %s record is not what "
			    "schema 1 wrote", name);
			rc = MDB_CORRUPTED;
			break;
		}
		if (out == NULL)
			continue;
		if (m.n == m.cap) {
			m.cap = m.cap ? m.cap * 2 : 256;
			if ((m.key = reallocarray(m.key, m.cap,
			    sizeof(*m.key))) == NULL ||
			    (m.val = reallocarray(m.val, m.cap,
			    sizeof(*m.val))) == NULL)
				fatal("store: migration");
		}
		/* the key lives in the map until the first write: copy it */
		if ((m.key[m.n].mv_data = malloc(key.mv_size + 1)) == NULL)
			fatal("store: migration");
		memcpy(m.key[m.n].mv_data, key.mv_data, key.mv_size);
		m.key[m.n].mv_size = key.mv_size;
		m.val[m.n++] = nv;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	for (i = 0; i < m.n; i++) {
		if (rc == 0 && (rc = mdb_put(txn, dbi, &m.key[i], &m.val[i],
		    0)) == 0)
			(*n)++;
		free(m.key[i].mv_data);
		free(m.val[i].mv_data);
	}
	free(m.key);
	free(m.val);
	return rc;
}

/*
 * Schema 3: the owners waiting for a port, indexed in meta (src: the
 * owners table) or in a snapshot's copy of it (src == dst: the keys
 * under 'o', the index under 'm').  The keys are gathered first: dst is
 * not written under a cursor that walks it.
 */
static int
index_waiting(MDB_txn *txn, MDB_dbi src, MDB_dbi dst, int snap, size_t *n)
{
	char kbuf[STORE_WAIT_KEYLEN + 1];
	struct mig m = { NULL, NULL, 0, 0 };
	struct owner_rec rec;
	MDB_cursor *cur;
	MDB_val key = { 1, "o" }, val, wk, empty = { 0, "" };
	size_t i;
	int rc, op;

	if ((rc = mdb_cursor_open(txn, src, &cur)) != 0)
		return rc;
	for (op = snap ? MDB_SET_RANGE : MDB_FIRST;
	    (rc = mdb_cursor_get(cur, &key, &val, op)) == 0; op = MDB_NEXT) {
		if (snap && *(char *)key.mv_data != 'o')
			break;
		if (store_owner_decode(&val, &rec, NULL) == -1) {
			log_warnx("store: migration: an owner record is not "
			    "what schema 2 wrote");
			rc = MDB_CORRUPTED;
			break;
		}
		if (rec.state != OWN_REFUSED || !rec.waiting)
			continue;
		kbuf[0] = 'm';
		if (store_wait_key(&wk, kbuf + snap, sizeof(kbuf) - 1,
		    rec.set_seq, (char *)key.mv_data + snap, key.mv_size -
		    snap) == -1) {
			rc = MDB_BAD_VALSIZE;
			break;
		}
		if (m.n == m.cap) {
			m.cap = m.cap ? m.cap * 2 : 256;
			if ((m.key = reallocarray(m.key, m.cap,
			    sizeof(*m.key))) == NULL)
				fatal("store: migration");
		}
		m.key[m.n].mv_size = wk.mv_size + snap;
		if ((m.key[m.n].mv_data = malloc(m.key[m.n].mv_size)) == NULL)
			fatal("store: migration");
		memcpy(m.key[m.n++].mv_data, kbuf, wk.mv_size + snap);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	for (i = 0; i < m.n; i++) {
		if (rc == 0 && (rc = mdb_put(txn, dst, &m.key[i], &empty,
		    0)) == 0)
			(*n)++;
		free(m.key[i].mv_data);
	}
	free(m.key);
	return rc;
}

int
store_migrate(struct store *st, MDB_txn *txn, const char *dir,
    uint64_t from)
{
	MDB_dbi snap;
	size_t n = 0, w = 0, ws = 0;
	int rc = 0;

	if (from != 1 && from != 2)
		fatalx("store_migrate: from schema %llu",
		    (unsigned long long)from);

	if (from == 1 &&
	    ((rc = migrate_table(txn, st->owners, 'o', "owners", &n)) != 0 ||
	    (rc = migrate_table(txn, st->ports, 'p', "ports", &n)) != 0 ||
	    (rc = migrate_table(txn, st->clusters, 'c', "clusters", &n)) !=
	    0 || (rc = migrate_table(txn, st->meta, 'm', "meta", &n)) != 0 ||
	    (rc = migrate_table(txn, st->snap, 0, "snap", &n)) != 0))
		goto fail;
	/* a compaction's half copy in the spare is emptied at start */
	snap = store_snap(st, txn, 0);
	if ((rc = index_waiting(txn, st->owners, st->meta, 0, &w)) != 0 ||
	    (rc = index_waiting(txn, snap, snap, 1, &ws)) != 0 ||
	    (rc = store_put_u64(st, txn, STORE_META_SCHEMA,
	    STORE_SCHEMA)) != 0)
		goto fail;
	log_info("store: %s: migrated from schema %llu to %d: %zu records "
	    "rewritten, %zu waiting owners indexed (%zu in the snapshot)",
	    dir, (unsigned long long)from, STORE_SCHEMA, n, w, ws);
	return 0;
 fail:
	log_warnx("store: %s: migration from schema %llu: %s", dir,
	    (unsigned long long)from, mdb_strerror(rc));
	return rc;
}
