/*
 * portico — the LMDB store.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store.h"

void
store_key_u64(unsigned char k[8], uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		k[i] = (unsigned char)(v & 0xff);
}

uint64_t
store_u64_key(const void *p)
{
	const unsigned char *k = p;
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | k[i];
	return v;
}

static int	store_env_open(struct store *, const char *, size_t, int,
		    unsigned);

int
store_open(struct store *st, const char *dir, size_t mapsize, int rdonly)
{
	/* a compaction reads a snapshot beside the loop's transactions */
	return store_env_open(st, dir, mapsize, rdonly, MDB_NOTLS);
}

/*
 * A reader beside a live allocd takes a slot in the lock file, as LMDB
 * wants; a store whose lock file it may not write (a read-only copy, another
 * user's folder) is opened without locking, which is safe only while no
 * one writes it: *nolock says which it was.
 */
int
store_open_reader(struct store *st, const char *dir, int *nolock)
{
	char path[PATH_MAX];

	*nolock = 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/lock.mdb", dir) >=
	    sizeof(path)) {
		log_warnx("store: a path too long");
		return -1;
	}
	if (access(path, W_OK) == 0 || (access(path, F_OK) == -1 &&
	    access(dir, W_OK) == 0))
		return store_env_open(st, dir, 0, 1, 0);
	*nolock = 1;
	return store_env_open(st, dir, 0, 1, MDB_NOLOCK);
}

/* mapsize 0: the store's own (a reader's choice); extra: MDB_* flags. */
static int
store_env_open(struct store *st, const char *dir, size_t mapsize,
    int rdonly, unsigned extra)
{
	MDB_txn *txn;
	unsigned flags = (rdonly ? MDB_RDONLY : 0) | extra;
	unsigned dflags = rdonly ? 0 : MDB_CREATE;
	uint64_t schema;
	int rc, dead = 0;

	memset(st, 0, sizeof(*st));
	if (!rdonly && mkdir(dir, 0700) == -1 && errno != EEXIST) {
		log_warn("store: mkdir %s", dir);
		return -1;
	}
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, 8)) != 0 ||
	    (mapsize != 0 &&
	    (rc = mdb_env_set_mapsize(st->env, mapsize)) != 0) ||
	    (rc = mdb_env_open(st->env, dir, flags, 0600)) != 0) {
		log_warnx("store: %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	/* readers that died holding a slot would pin old pages forever */
	if (!(extra & MDB_NOLOCK) && mdb_reader_check(st->env, &dead) == 0 &&
	    dead > 0)
		log_info("store: cleared %d stale readers", dead);
	if ((rc = mdb_txn_begin(st->env, NULL, flags, &txn)) != 0) {
		log_warnx("store: begin: %s", mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_dbi_open(txn, "log", dflags, &st->log)) != 0 ||
	    (rc = mdb_dbi_open(txn, "ports", dflags, &st->ports)) != 0 ||
	    (rc = mdb_dbi_open(txn, "owners", dflags, &st->owners)) != 0 ||
	    (rc = mdb_dbi_open(txn, "clusters", dflags, &st->clusters)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", dflags, &st->meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "snap", dflags, &st->snap)) != 0 ||
	    ((rc = mdb_dbi_open(txn, "snap1", dflags, &st->snap1)) != 0 &&
	    rc != MDB_NOTFOUND)) {
		log_warnx("store: open databases: %s", mdb_strerror(rc));
		mdb_txn_abort(txn);
		goto fail;
	}
	if (rc == MDB_NOTFOUND)
		st->snap1 = st->snap;	/* read-only, never compacted since */
	if ((rc = store_get_u64(st, txn, STORE_META_SCHEMA, &schema)) ==
	    MDB_NOTFOUND) {
		/* a new store (every store since the first says its schema) */
		if (!rdonly)
			store_put_u64(st, txn, STORE_META_SCHEMA, STORE_SCHEMA);
	} else if (rc != 0 || schema > STORE_SCHEMA || schema == 0) {
		log_warnx("store: %s: schema %llu, newer than this build's "
		    "(%d) or unknown: not opened, not changed", dir,
		    (unsigned long long)schema, STORE_SCHEMA);
		mdb_txn_abort(txn);
		goto fail;
	} else if (schema < STORE_SCHEMA && rdonly) {
		log_warnx("store: %s: schema %llu, older than this build's "
		    "(%d): allocd migrates it when it starts on it", dir,
		    (unsigned long long)schema, STORE_SCHEMA);
		mdb_txn_abort(txn);
		goto fail;
	} else if (schema < STORE_SCHEMA &&
	    store_migrate(st, txn, dir, schema) != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		log_warnx("store: commit: %s", mdb_strerror(rc));
		goto fail;
	}
	return 0;
 fail:
	mdb_env_close(st->env);
	st->env = NULL;
	return -1;
}

void
store_close(struct store *st)
{
	if (st->env != NULL)
		mdb_env_close(st->env);
	st->env = NULL;
}

int
store_begin(struct store *st, MDB_txn **txn, int rdonly)
{
	return mdb_txn_begin(st->env, NULL, rdonly ? MDB_RDONLY : 0, txn);
}

int
store_append(struct store *st, MDB_txn *txn, const struct event *ev)
{
	unsigned char *buf;
	size_t len;
	int rc;

	if (event_encode(ev, &buf, &len) == -1)
		fatalx("store_append: %s lacks a required field",
		    event_name(ev->type));
	rc = store_append_raw(st, txn, ev->seq, buf, len);
	free(buf);
	return rc;
}

int
store_append_raw(struct store *st, MDB_txn *txn, uint64_t seq,
    const unsigned char *buf, size_t len)
{
	unsigned char k[8];
	MDB_val key, val;
	int rc;

	store_key_u64(k, seq);
	key.mv_data = k;
	key.mv_size = sizeof(k);
	val.mv_data = (void *)buf;
	val.mv_size = len;
	rc = mdb_put(txn, st->log, &key, &val, MDB_APPEND);
	if (rc == MDB_KEYEXIST)
		fatalx("store_append: seq %llu out of order",
		    (unsigned long long)seq);
	return rc;
}

uint64_t
store_last_seq(struct store *st, MDB_txn *txn)
{
	MDB_cursor *cur;
	MDB_val key, val;
	uint64_t seq = 0;

	if (mdb_cursor_open(txn, st->log, &cur) != 0)
		return 0;
	if (mdb_cursor_get(cur, &key, &val, MDB_LAST) == 0 &&
	    key.mv_size == 8)
		seq = store_u64_key(key.mv_data);
	mdb_cursor_close(cur);
	return seq;
}

uint64_t
store_first_seq(struct store *st, MDB_txn *txn)
{
	MDB_cursor *cur;
	MDB_val key, val;
	uint64_t seq = 0;

	if (mdb_cursor_open(txn, st->log, &cur) != 0)
		return 0;
	if (mdb_cursor_get(cur, &key, &val, MDB_FIRST) == 0 &&
	    key.mv_size == 8)
		seq = store_u64_key(key.mv_data);
	mdb_cursor_close(cur);
	return seq;
}

/* The tables a snapshot holds, in the order of their letters. */
static const struct {
	char	tag;
	size_t	off;
} tables[] = {
	{ 'c', offsetof(struct store, clusters) },
	{ 'm', offsetof(struct store, meta) },
	{ 'o', offsetof(struct store, owners) },
	{ 'p', offsetof(struct store, ports) },
};
#define NTABLES		(sizeof(tables) / sizeof(tables[0]))
#define TABLE(st, i)	(*(MDB_dbi *)((char *)(st) + tables[i].off))

uint64_t
store_start_seq(struct store *st, MDB_txn *txn)
{
	uint64_t first = store_first_seq(st, txn), snap;

	if (store_get_u64(st, txn, STORE_META_SNAPSHOT, &snap) == 0 && snap > first)
		return snap;
	return first;
}

MDB_dbi
store_snap(struct store *st, MDB_txn *txn, int other)
{
	uint64_t which = 0;

	store_get_u64(st, txn, STORE_META_SNAPDB, &which);
	return (which == 1) != (other != 0) ? st->snap1 : st->snap;
}

int
store_snap_table(struct store *st, size_t i, MDB_dbi *dbi, char *tag)
{
	if (i >= NTABLES)
		return -1;
	*dbi = TABLE(st, i);
	*tag = tables[i].tag;
	return 0;
}

int
store_restore(struct store *src, MDB_txn *stx, struct store *dst,
    MDB_txn *dtx)
{
	MDB_cursor *cur;
	MDB_val key, val, k;
	size_t i;
	int rc, op;

	if ((rc = mdb_cursor_open(stx, store_snap(src, stx, 0), &cur)) != 0)
		return rc;
	for (op = MDB_FIRST; (rc = mdb_cursor_get(cur, &key, &val, op)) == 0;
	    op = MDB_NEXT) {
		for (i = 0; i < NTABLES; i++)
			if (key.mv_size > 0 &&
			    *(char *)key.mv_data == tables[i].tag)
				break;
		if (i == NTABLES) {
			rc = MDB_CORRUPTED;
			break;
		}
		k.mv_size = key.mv_size - 1;
		k.mv_data = (char *)key.mv_data + 1;
		/* dst says its own schema: the snapshot's may be older */
		if (tables[i].tag == 'm' &&
		    k.mv_size == strlen(STORE_META_SCHEMA) &&
		    memcmp(k.mv_data, STORE_META_SCHEMA, k.mv_size) == 0)
			continue;
		if ((rc = mdb_put(dtx, TABLE(dst, i), &k, &val, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
store_get_u64(struct store *st, MDB_txn *txn, const char *name, uint64_t *v)
{
	MDB_val key = { strlen(name), (void *)name }, val;
	int rc;

	if ((rc = mdb_get(txn, st->meta, &key, &val)) != 0)
		return rc;
	if (val.mv_size != 8)
		return MDB_CORRUPTED;
	*v = store_u64_key(val.mv_data);
	return 0;
}

int
store_put_u64(struct store *st, MDB_txn *txn, const char *name, uint64_t v)
{
	MDB_val key = { strlen(name), (void *)name }, val;
	unsigned char b[8];

	store_key_u64(b, v);
	val.mv_size = 8;
	val.mv_data = b;
	return mdb_put(txn, st->meta, &key, &val, 0);
}

/* Fixed-endian fields: big-endian, n bytes. */
static void
be_put(unsigned char *p, uint64_t v, size_t n)
{
	while (n-- > 0) {
		p[n] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
be_get(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

int
store_get_u64s(struct store *st, MDB_txn *txn, const MDB_val *key,
    uint64_t *v, size_t n)
{
	MDB_val val;
	size_t i;
	int rc;

	if ((rc = mdb_get(txn, st->meta, (MDB_val *)key, &val)) != 0)
		return rc;
	if (val.mv_size != 8 * n)
		return MDB_CORRUPTED;
	for (i = 0; i < n; i++)
		v[i] = be_get((unsigned char *)val.mv_data + 8 * i, 8);
	return 0;
}

int
store_put_u64s(struct store *st, MDB_txn *txn, const MDB_val *key,
    const uint64_t *v, size_t n)
{
	unsigned char b[8 * 16];
	size_t i;

	if (n > 16)
		fatalx("store_put_u64s: %zu values", n);
	for (i = 0; i < n; i++)
		be_put(b + 8 * i, v[i], 8);
	return store_meta_put(st, txn, key, b, 8 * n);
}

int
store_meta_get(struct store *st, MDB_txn *txn, const MDB_val *key,
    MDB_val *val)
{
	return mdb_get(txn, st->meta, (MDB_val *)key, val);
}

int
store_meta_put(struct store *st, MDB_txn *txn, const MDB_val *key,
    const void *v, size_t len)
{
	MDB_val val = { len, (void *)v };

	return mdb_put(txn, st->meta, (MDB_val *)key, &val, 0);
}

int
store_meta_del(struct store *st, MDB_txn *txn, const MDB_val *key)
{
	int rc = mdb_del(txn, st->meta, (MDB_val *)key, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
store_wait_key(MDB_val *key, char *buf, size_t len, uint64_t since,
    const void *owner, size_t olen)
{
	int n;

	if (olen >= EV_OWNERLEN)
		return -1;
	n = snprintf(buf, len, "%s%016llx/%.*s", STORE_META_WAIT,
	    (unsigned long long)since, (int)olen, (const char *)owner);
	if (n < 0 || (size_t)n >= len)
		return -1;
	key->mv_data = buf;
	key->mv_size = (size_t)n;
	return 0;
}

int
store_wait_first(struct store *st, MDB_txn *txn, char *owner, size_t len)
{
	const size_t plen = strlen(STORE_META_WAIT) + 17;
	MDB_cursor *cur;
	MDB_val key = { strlen(STORE_META_WAIT), STORE_META_WAIT }, val;
	int rc;

	if ((rc = mdb_cursor_open(txn, st->meta, &cur)) != 0)
		return rc;
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	mdb_cursor_close(cur);
	if (rc != 0)
		return rc;
	if (key.mv_size <= plen || memcmp(key.mv_data, STORE_META_WAIT,
	    plen - 17) != 0)
		return MDB_NOTFOUND;
	if (key.mv_size - plen >= len)
		return MDB_BAD_VALSIZE;
	memcpy(owner, (char *)key.mv_data + plen, key.mv_size - plen);
	owner[key.mv_size - plen] = '\0';
	return 0;
}

int
store_meta_replayed(const MDB_val *key)
{
	/* the ports' hash at start; compact.c's switch to a new snapshot */
	static const char *const loop[] = {
		STORE_META_PORTS, STORE_META_SNAPSHOT, STORE_META_SNAPDB
	};
	size_t i;

	for (i = 0; i < sizeof(loop) / sizeof(loop[0]); i++)
		if (key->mv_size == strlen(loop[i]) &&
		    memcmp(key->mv_data, loop[i], key->mv_size) == 0)
			return 0;
	return 1;
}

/* A record: a header of hlen bytes, then rest; the caller frees it. */
static unsigned char *
rec_alloc(size_t hlen, const void *rest, size_t restlen, MDB_val *val)
{
	unsigned char *buf;

	if ((buf = malloc(hlen + restlen + 1)) == NULL)
		fatal("store: record");
	if (restlen > 0)
		memcpy(buf + hlen, rest, restlen);
	val->mv_size = hlen + restlen;
	val->mv_data = buf;
	return buf;
}

/* Owner records: the fixed fields, then why counted, then the event. */
#define OWNER_HDR	24

unsigned char *
store_owner_encode(const struct owner_rec *rec, const void *ev, size_t evlen,
    MDB_val *val)
{
	size_t wlen = strnlen(rec->why, sizeof(rec->why) - 1);
	unsigned char *b;

	b = rec_alloc(OWNER_HDR + wlen, ev, evlen, val);
	be_put(b, rec->port, 2);
	b[2] = rec->state;
	b[3] = rec->live;
	b[4] = rec->waiting;
	b[5] = rec->limited;
	be_put(b + 6, rec->set_seq, 8);
	be_put(b + 14, rec->seen_sync, 8);
	be_put(b + 22, wlen, 2);
	memcpy(b + OWNER_HDR, rec->why, wlen);
	return b;
}

int
store_owner_decode(const MDB_val *val, struct owner_rec *rec, MDB_val *ev)
{
	const unsigned char *b = val->mv_data;
	size_t wlen;

	if (val->mv_size < OWNER_HDR ||
	    (wlen = (size_t)be_get(b + 22, 2)) >= sizeof(rec->why) ||
	    val->mv_size < OWNER_HDR + wlen)
		return -1;
	memset(rec, 0, sizeof(*rec));
	rec->port = (uint16_t)be_get(b, 2);
	rec->state = b[2];
	rec->live = b[3];
	rec->waiting = b[4];
	rec->limited = b[5];
	rec->set_seq = be_get(b + 6, 8);
	rec->seen_sync = be_get(b + 14, 8);
	memcpy(rec->why, b + OWNER_HDR, wlen);
	rec->why[wlen] = '\0';
	if (ev != NULL) {
		ev->mv_size = val->mv_size - OWNER_HDR - wlen;
		ev->mv_data = (char *)val->mv_data + OWNER_HDR + wlen;
	}
	return 0;
}

int
store_owner_get(struct store *st, MDB_txn *txn, const char *owner,
    struct owner_rec *rec, MDB_val *ev)
{
	MDB_val key = { strlen(owner), (void *)owner }, val;
	int rc;

	if ((rc = mdb_get(txn, st->owners, &key, &val)) != 0)
		return rc;
	if (store_owner_decode(&val, rec, ev) == -1)
		fatalx("store: owner %s: bad record", owner);
	return 0;
}

int
store_owner_put(struct store *st, MDB_txn *txn, const char *owner,
    const struct owner_rec *rec, const void *ev, size_t evlen)
{
	MDB_val key = { strlen(owner), (void *)owner }, val;
	unsigned char *b = store_owner_encode(rec, ev, evlen, &val);
	int rc;

	rc = mdb_put(txn, st->owners, &key, &val, 0);
	free(b);
	return rc;
}

int
store_owner_del(struct store *st, MDB_txn *txn, const char *owner)
{
	MDB_val key = { strlen(owner), (void *)owner };
	int rc = mdb_del(txn, st->owners, &key, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* SNI records: u64 seen_sync, then the event. */
#define SNI_HDR		8

unsigned char *
store_sni_encode(uint64_t seen_sync, const void *ev, size_t evlen,
    MDB_val *val)
{
	unsigned char *b = rec_alloc(SNI_HDR, ev, evlen, val);

	be_put(b, seen_sync, 8);
	return b;
}

int
store_sni_decode(const MDB_val *val, uint64_t *seen_sync, MDB_val *ev)
{
	if (val->mv_size <= SNI_HDR)
		return -1;
	*seen_sync = be_get(val->mv_data, 8);
	ev->mv_size = val->mv_size - SNI_HDR;
	ev->mv_data = (char *)val->mv_data + SNI_HDR;
	return 0;
}

/* Port records: u64 released, then the owner key. */
#define PORT_HDR	8

int
store_port_decode(const MDB_val *key, const MDB_val *val, unsigned *port,
    uint64_t *released, MDB_val *owner)
{
	if (key->mv_size != 2 || val->mv_size <= PORT_HDR)
		return -1;
	*port = (unsigned)be_get(key->mv_data, 2);
	*released = be_get(val->mv_data, 8);
	owner->mv_size = val->mv_size - PORT_HDR;
	owner->mv_data = (char *)val->mv_data + PORT_HDR;
	return 0;
}

/*
 * A port record's port, holder (NUL-ended, in olen bytes) and release
 * time; -1 if it is not one.
 */
static int
port_holder(const MDB_val *key, const MDB_val *val, unsigned *port,
    char *owner, size_t olen, uint64_t *released)
{
	MDB_val o;

	if (store_port_decode(key, val, port, released, &o) == -1 ||
	    o.mv_size >= olen)
		return -1;
	memcpy(owner, o.mv_data, o.mv_size);
	owner[o.mv_size] = '\0';
	return 0;
}

int
store_port_get(struct store *st, MDB_txn *txn, unsigned port, char *owner,
    size_t olen, uint64_t *released)
{
	unsigned char k[2];
	MDB_val key = { 2, k }, val;
	unsigned p;
	int rc;

	be_put(k, port, 2);
	owner[0] = '\0';
	*released = 0;
	if ((rc = mdb_get(txn, st->ports, &key, &val)) != 0)
		return rc;
	if (port_holder(&key, &val, &p, owner, olen, released) == -1)
		fatalx("store: port %u: bad record", port);
	return 0;
}

/*
 * A walk of the ports table in port order: the first record at or above
 * port (first), or the one after the cursor's; its port, holder (at most
 * olen bytes with the NUL) and release time.
 */
int
store_port_walk(MDB_cursor *cur, int first, unsigned port, unsigned *at,
    char *owner, size_t olen, uint64_t *released)
{
	unsigned char k[2];
	MDB_val key = { 2, k }, val;
	int rc;

	be_put(k, port, 2);
	if ((rc = mdb_cursor_get(cur, &key, &val, first ? MDB_SET_RANGE :
	    MDB_NEXT)) != 0)
		return rc;
	if (port_holder(&key, &val, at, owner, olen, released) == -1)
		fatalx("store: a bad port record");
	return 0;
}

unsigned char *
store_port_encode(uint64_t released, const void *owner, size_t olen,
    MDB_val *val)
{
	unsigned char *b = rec_alloc(PORT_HDR, owner, olen, val);

	be_put(b, released, 8);
	return b;
}

int
store_port_put(struct store *st, MDB_txn *txn, unsigned port,
    const char *owner, uint64_t released)
{
	unsigned char k[2], *b;
	MDB_val key = { 2, k }, val;
	int rc;

	be_put(k, port, 2);
	b = store_port_encode(released, owner, strlen(owner), &val);
	rc = mdb_put(txn, st->ports, &key, &val, 0);
	free(b);
	return rc;
}

int
store_port_del(struct store *st, MDB_txn *txn, unsigned port)
{
	unsigned char k[2];
	MDB_val key = { 2, k };
	int rc;

	be_put(k, port, 2);
	rc = mdb_del(txn, st->ports, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Cluster records: u64 sid, u64 sync_seq, u8 up, then the API_SET. */
#define CLUSTER_HDR	17

int
store_cluster_decode(const MDB_val *val, struct cluster_rec *rec,
    MDB_val *ev)
{
	const unsigned char *b = val->mv_data;

	if (val->mv_size < CLUSTER_HDR)
		return -1;
	memset(rec, 0, sizeof(*rec));
	rec->sid = be_get(b, 8);
	rec->sync_seq = be_get(b + 8, 8);
	rec->up = b[16];
	if (ev != NULL) {
		ev->mv_size = val->mv_size - CLUSTER_HDR;
		ev->mv_data = (char *)val->mv_data + CLUSTER_HDR;
	}
	return 0;
}

int
store_cluster_get(struct store *st, MDB_txn *txn, const char *cluster,
    struct cluster_rec *rec, MDB_val *ev)
{
	MDB_val key = { strlen(cluster), (void *)cluster }, val;
	int rc;

	memset(rec, 0, sizeof(*rec));
	if ((rc = mdb_get(txn, st->clusters, &key, &val)) != 0)
		return rc;
	if (store_cluster_decode(&val, rec, ev) == -1)
		fatalx("store: cluster %s: bad record", cluster);
	return 0;
}

unsigned char *
store_cluster_encode(const struct cluster_rec *rec, const void *ev,
    size_t evlen, MDB_val *val)
{
	unsigned char *b = rec_alloc(CLUSTER_HDR, ev, evlen, val);

	be_put(b, rec->sid, 8);
	be_put(b + 8, rec->sync_seq, 8);
	b[16] = rec->up;
	return b;
}

int
store_cluster_put(struct store *st, MDB_txn *txn, const char *cluster,
    const struct cluster_rec *rec, const void *ev, size_t evlen)
{
	MDB_val key = { strlen(cluster), (void *)cluster }, val;
	unsigned char *b = store_cluster_encode(rec, ev, evlen, &val);
	int rc;

	rc = mdb_put(txn, st->clusters, &key, &val, 0);
	free(b);
	return rc;
}

int
store_cluster_del(struct store *st, MDB_txn *txn, const char *cluster)
{
	MDB_val key = { strlen(cluster), (void *)cluster };
	int rc = mdb_del(txn, st->clusters, &key, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

const char *const store_tables[] = {
	"log", "ports", "owners", "clusters", "meta", "snap", NULL
};

MDB_dbi
store_table(const struct store *st, const char *name)
{
	if (strcmp(name, "log") == 0)
		return st->log;
	if (strcmp(name, "ports") == 0)
		return st->ports;
	if (strcmp(name, "owners") == 0)
		return st->owners;
	if (strcmp(name, "clusters") == 0)
		return st->clusters;
	if (strcmp(name, "meta") == 0)
		return st->meta;
	if (strcmp(name, "snap") == 0)
		return st->snap;
	fatalx("store_table: no table %s", name);
}

void
store_key_text(const char *table, const MDB_val *key, char *buf, size_t len)
{
	const unsigned char *k = key->mv_data;
	size_t i, n = 0;

	if (len == 0)
		return;
	if (strcmp(table, "log") == 0 && key->mv_size == 8) {
		snprintf(buf, len, "seq %llu",
		    (unsigned long long)store_u64_key(k));
		return;
	}
	if (strcmp(table, "ports") == 0 && key->mv_size == 2) {
		snprintf(buf, len, "port %u", (unsigned)be_get(k, 2));
		return;
	}
	/* snap: "<letter>:", then the key as its own table shows it */
	for (i = 0; i < key->mv_size && n + 5 < len; i++) {
		if (strcmp(table, "snap") == 0 && i == 1) {
			buf[n++] = ':';
			if (k[0] == 'p' && key->mv_size == 3) {
				snprintf(buf + n, len - n, "port %u",
				    (unsigned)be_get(k + 1, 2));
				return;
			}
		}
		if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\')
			buf[n++] = (char)k[i];
		else
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x",
			    k[i]);
	}
	buf[n] = '\0';
}
