/*
 * allocd — the state exported to consumers after a reset.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "alloc_impl.h"
#include "hash.h"
#include "hosts.h"
#include "limits.h"
#include "log.h"
#include "proof.h"
#include "sni.h"

enum { STATE_CLUSTERS, STATE_OWNERS, STATE_SNI, STATE_FAULTS, STATE_READ };

/* A cluster's record: its API_SET when it is up and routed. */
static int
cluster_state(const MDB_val *key, const MDB_val *val,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct cluster_rec crec;
	struct event ev;
	MDB_val ev_val;
	char err[128];
	int rc;

	if (store_cluster_decode(val, &crec, &ev_val) == -1)
		fatalx("alloc: cluster %.*s: bad record", (int)key->mv_size,
		    (char *)key->mv_data);
	if (!crec.up || ev_val.mv_size == 0)
		return 0;
	if (event_decode(&ev, ev_val.mv_data, ev_val.mv_size, err,
	    sizeof(err)) == -1)
		fatalx("alloc: cluster %.*s: %s", (int)key->mv_size,
		    (char *)key->mv_data, err);
	rc = fn(&ev, arg);
	event_free(&ev);
	return rc;
}

/* An owner's record: its PORT_SET (and PORT_LIVE), or its refusal. */
static int
owner_state(const MDB_val *key, const MDB_val *val,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct owner_rec rec;
	struct event ev, set;
	MDB_val ev_val;
	char err[128];
	int rc = 0;

	if (store_owner_decode(val, &rec, &ev_val) == -1)
		fatalx("alloc: owner %.*s: bad record", (int)key->mv_size,
		    (char *)key->mv_data);
	if (rec.state == OWN_ACTIVE) {
		if (event_decode(&set, ev_val.mv_data, ev_val.mv_size, err,
		    sizeof(err)) == -1 || set.type != EV_PORT_SET)
			fatalx("alloc: owner %.*s: no PORT_SET",
			    (int)key->mv_size, (char *)key->mv_data);
		rc = fn(&set, arg);
		if (rc == 0 && rec.live) {
			alloc_live_event(&ev, &set, rec.port);
			rc = fn(&ev, arg);
		}
		event_free(&set);
	}
	if (rc == 0 && rec.state != OWN_QUARANTINED && rec.why[0] != '\0' &&
	    alloc_owner_event(&ev, EV_REFUSED, key) == 0) {
		event_set_str(&ev, F_WHY, rec.why);
		rc = fn(&ev, arg);
	}
	return rc;
}

/* A fault kept by state_read(): the owner's port, then the reason. */
static int
fault_state(const MDB_val *key, const MDB_val *val,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct event ev;
	uint32_t port;

	memcpy(&port, val->mv_data, 4);
	if (alloc_owner_event(&ev, EV_PORT_FAULT, key) == -1 ||
	    event_set_str(&ev, F_WHY, (char *)val->mv_data + 4) == -1)
		return 0;
	ev.port = port;
	ev.has |= F_PORT;
	return fn(&ev, arg);
}

void
alloc_state_begin(struct alloc_state_iter *it, MDB_txn *txn)
{
	memset(it, 0, sizeof(*it));
	it->txn = txn;
}

/* Keep a record (tag, key, value, value2) for the sending. */
static void
state_keep(struct alloc_state_iter *it, char tag, const MDB_val *key,
    const void *v, size_t vl, const void *v2, size_t vl2)
{
	uint32_t kl = (uint32_t)key->mv_size, l = (uint32_t)(vl + vl2);
	size_t need = it->len + 9 + kl + l;

	if (need > it->cap) {
		it->cap = need > 2 * it->cap ? need : 2 * it->cap;
		if ((it->buf = realloc(it->buf, it->cap)) == NULL)
			fatal("alloc: state");
	}
	it->buf[it->len] = (unsigned char)tag;
	memcpy(it->buf + it->len + 1, &kl, 4);
	memcpy(it->buf + it->len + 5, &l, 4);
	memcpy(it->buf + it->len + 9, key->mv_data, kl);
	memcpy(it->buf + it->len + 9 + kl, v, vl);
	if (vl2 > 0)
		memcpy(it->buf + it->len + 9 + kl + vl, v2, vl2);
	it->len = need;
}

/* The next record of dbi, from its first. */
static int
state_next(struct alloc_state_iter *it, MDB_dbi dbi, MDB_val *key,
    MDB_val *val)
{
	if (it->cur != NULL)
		return mdb_cursor_get(it->cur, key, val, MDB_NEXT);
	if (mdb_cursor_open(it->txn, dbi, &it->cur) != 0)
		fatalx("alloc: cursor");
	return mdb_cursor_get(it->cur, key, val, MDB_FIRST);
}

/* The next TLSRoute name's record in meta, from the first. */
static int
state_next_sni(struct alloc_state_iter *it, MDB_dbi meta, MDB_val *key,
    MDB_val *val)
{
	const char *prefix = sni_prefix();
	size_t plen = strlen(prefix);
	int rc;

	if (it->cur != NULL)
		rc = mdb_cursor_get(it->cur, key, val, MDB_NEXT);
	else {
		if (mdb_cursor_open(it->txn, meta, &it->cur) != 0)
			fatalx("alloc: cursor");
		key->mv_size = plen;
		key->mv_data = (void *)prefix;
		rc = mdb_cursor_get(it->cur, key, val, MDB_SET_RANGE);
	}
	if (rc == 0 && (key->mv_size < plen ||
	    memcmp(key->mv_data, prefix, plen) != 0))
		rc = MDB_NOTFOUND;
	return rc;
}

static void
state_stage_done(struct alloc_state_iter *it)
{
	if (it->cur != NULL)
		mdb_cursor_close(it->cur);
	it->cur = NULL;
	it->stage++;
}

/* A standing fault is kept while its owner holds its port. */
static void
state_fault(struct alloc *a, struct alloc_state_iter *it, size_t i)
{
	struct owner_rec rec;
	const char *owner = it->own[i], *why = it->why[i];
	uint32_t port;
	MDB_val key;

	if (alloc_get_owner(a, it->txn, owner, &rec, NULL) != 0 ||
	    rec.state != OWN_ACTIVE)
		return;
	key.mv_size = strlen(owner);
	key.mv_data = (void *)owner;
	port = rec.port;
	state_keep(it, 'f', &key, &port, 4, why, strlen(why) + 1);
}

int
alloc_state_read(struct alloc *a, struct alloc_state_iter *it,
    int (*enough)(void *), void *earg)
{
	MDB_val key, val;

	/* a step at least (a record or the end of a table), then ask */
	do {
		switch (it->stage) {
		case STATE_CLUSTERS:
		case STATE_OWNERS:
			if (state_next(it, it->stage == STATE_CLUSTERS ?
			    a->st->clusters : a->st->owners, &key, &val) != 0)
				state_stage_done(it);
			else
				state_keep(it, it->stage == STATE_CLUSTERS ?
				    'c' : 'o', &key, val.mv_data, val.mv_size,
				    NULL, 0);
			break;
		case STATE_SNI:
			if (state_next_sni(it, a->st->meta, &key, &val) != 0)
				state_stage_done(it);
			else
				state_keep(it, 's', &key, val.mv_data,
				    val.mv_size, NULL, 0);
			break;
		case STATE_FAULTS:
			if (it->own == NULL)
				it->own = alloc_meta_list(a, it->txn,
				    STORE_META_FAULT, &it->why);
			if (it->own[it->fault] == NULL) {
				alloc_free_list(it->own);
				alloc_free_list(it->why);
				it->own = it->why = NULL;
				state_stage_done(it);
			} else
				state_fault(a, it, it->fault++);
			break;
		default:
			it->txn = NULL;
			return 1;
		}
	} while (enough == NULL || !enough(earg));
	return 0;
}

int
alloc_state_some(struct alloc_state_iter *it,
    int (*fn)(const struct event *, void *), void *arg,
    int (*enough)(void *), void *earg)
{
	MDB_val key, val;
	uint32_t kl, vl;
	int rc;

	if (it->stage != STATE_READ)
		fatalx("alloc: the state is sent before it is read");
	while (it->off < it->len) {
		memcpy(&kl, it->buf + it->off + 1, 4);
		memcpy(&vl, it->buf + it->off + 5, 4);
		key.mv_size = kl;
		key.mv_data = it->buf + it->off + 9;
		val.mv_size = vl;
		val.mv_data = it->buf + it->off + 9 + kl;
		switch (it->buf[it->off]) {
		case 'c':
			rc = cluster_state(&key, &val, fn, arg);
			break;
		case 'o':
			rc = owner_state(&key, &val, fn, arg);
			break;
		case 's':
			rc = sni_record_state(&key, &val, fn, arg);
			break;
		default:
			rc = fault_state(&key, &val, fn, arg);
			break;
		}
		it->off += 9 + kl + vl;
		if (rc != 0)
			return -1;
		if (enough != NULL && enough(earg))
			return it->off < it->len ? 0 : 1;
	}
	return 1;
}

void
alloc_state_end(struct alloc_state_iter *it)
{
	if (it->cur != NULL)
		mdb_cursor_close(it->cur);
	if (it->own != NULL) {
		alloc_free_list(it->own);
		alloc_free_list(it->why);
	}
	free(it->buf);
	memset(it, 0, sizeof(*it));
}

int
alloc_state(struct alloc *a, MDB_txn *txn,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct alloc_state_iter it;
	int rc;

	alloc_state_begin(&it, txn);
	alloc_state_read(a, &it, NULL, NULL);
	rc = alloc_state_some(&it, fn, arg, NULL, NULL);
	alloc_state_end(&it);
	return rc == -1 ? -1 : 0;
}
