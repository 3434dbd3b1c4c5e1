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
	if (store_get_u64(st, txn, "schema", &schema) == MDB_NOTFOUND) {
		if (!rdonly)
			store_put_u64(st, txn, "schema", STORE_SCHEMA);
	} else if (schema != STORE_SCHEMA) {
		log_warnx("store: %s: schema %llu, this build knows %d", dir,
		    (unsigned long long)schema, STORE_SCHEMA);
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
	unsigned char k[8], *buf;
	MDB_val key, val;
	size_t len;
	int rc;

	if (event_encode(ev, &buf, &len) == -1)
		fatalx("store_append: %s lacks a required field",
		    event_name(ev->type));
	store_key_u64(k, ev->seq);
	key.mv_data = k;
	key.mv_size = sizeof(k);
	val.mv_data = buf;
	val.mv_size = len;
	rc = mdb_put(txn, st->log, &key, &val, MDB_APPEND);
	free(buf);
	if (rc == MDB_KEYEXIST)
		fatalx("store_append: seq %llu out of order",
		    (unsigned long long)ev->seq);
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

	if (store_get_u64(st, txn, "snapshot", &snap) == 0 && snap > first)
		return snap;
	return first;
}

MDB_dbi
store_snap(struct store *st, MDB_txn *txn, int other)
{
	uint64_t which = 0;

	store_get_u64(st, txn, "snapdb", &which);
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
