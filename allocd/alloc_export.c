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

enum { STATE_CLUSTERS, STATE_OWNERS, STATE_FAULTS, STATE_DONE };

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

/* A fault that stands, as a PORT_FAULT, while its owner holds its port. */
static int
fault_state(struct alloc *a, MDB_txn *txn, const char *owner,
    const char *why, int (*fn)(const struct event *, void *), void *arg)
{
	struct owner_rec rec;
	struct event ev;
	MDB_val key;

	key.mv_size = strlen(owner);
	key.mv_data = (void *)owner;
	if (alloc_get_owner(a, txn, owner, &rec, NULL) != 0 ||
	    rec.state != OWN_ACTIVE ||
	    alloc_owner_event(&ev, EV_PORT_FAULT, &key) == -1 ||
	    event_set_str(&ev, F_WHY, why) == -1)
		return 0;
	ev.port = rec.port;
	ev.has |= F_PORT;
	return fn(&ev, arg);
}

void
alloc_state_begin(struct alloc_state_iter *it, MDB_txn *txn)
{
	memset(it, 0, sizeof(*it));
	it->txn = txn;
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

static void
state_stage_done(struct alloc_state_iter *it)
{
	if (it->cur != NULL)
		mdb_cursor_close(it->cur);
	it->cur = NULL;
	it->stage++;
}

int
alloc_state_some(struct alloc *a, struct alloc_state_iter *it,
    int (*fn)(const struct event *, void *), void *arg,
    int (*enough)(void *), void *earg)
{
	MDB_val key, val;
	int rc = 0;

	/* a step at least (a record or the end of a table), then ask */
	for (; rc == 0; rc = rc == 0 && enough != NULL && enough(earg)) {
		switch (it->stage) {
		case STATE_CLUSTERS:
			if (state_next(it, a->st->clusters, &key, &val) != 0)
				state_stage_done(it);
			else
				rc = cluster_state(&key, &val, fn, arg);
			break;
		case STATE_OWNERS:
			if (state_next(it, a->st->owners, &key, &val) != 0)
				state_stage_done(it);
			else
				rc = owner_state(&key, &val, fn, arg);
			break;
		case STATE_FAULTS:
			if (it->own == NULL)
				it->own = alloc_meta_list(a, it->txn,
				    STORE_META_FAULT, &it->why);
			if (it->own[it->fault] == NULL)
				state_stage_done(it);
			else {
				rc = fault_state(a, it->txn,
				    it->own[it->fault], it->why[it->fault],
				    fn, arg);
				it->fault++;
			}
			break;
		default:
			return 1;
		}
		if (rc != 0)
			return -1;
	}
	return 0;
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
	memset(it, 0, sizeof(*it));
}

int
alloc_state(struct alloc *a, MDB_txn *txn,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct alloc_state_iter it;
	int rc;

	alloc_state_begin(&it, txn);
	rc = alloc_state_some(a, &it, fn, arg, NULL, NULL);
	alloc_state_end(&it);
	return rc == -1 ? -1 : 0;
}
