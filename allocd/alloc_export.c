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

/* The faults that stand, as PORT_FAULT events. */
static int
state_faults(struct alloc *a, MDB_txn *txn,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct owner_rec rec;
	struct event ev;
	char **own, **why;
	MDB_val key;
	size_t n, i;
	int rc = 0;

	own = alloc_meta_list(a, txn, STORE_META_FAULT, &why);
	for (n = 0; own[n] != NULL; n++)
		;
	for (i = 0; i < n && rc == 0; i++) {
		key.mv_size = strlen(own[i]);
		key.mv_data = own[i];
		if (alloc_get_owner(a, txn, own[i], &rec, NULL) != 0 ||
		    rec.state != OWN_ACTIVE ||
		    alloc_owner_event(&ev, EV_PORT_FAULT, &key) == -1 ||
		    event_set_str(&ev, F_WHY, why[i]) == -1)
			continue;
		ev.port = rec.port;
		ev.has |= F_PORT;
		rc = fn(&ev, arg);
	}
	alloc_free_list(own);
	alloc_free_list(why);
	return rc;
}

int
alloc_state(struct alloc *a, MDB_txn *txn,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct cluster_rec crec;
	struct owner_rec rec;
	struct event ev, set;
	MDB_cursor *cur;
	MDB_val key, val, ev_val;
	char err[128];
	int rc = 0, op;

	if (mdb_cursor_open(txn, a->st->clusters, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; rc == 0 &&
	    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		if (store_cluster_decode(&val, &crec, &ev_val) == -1)
			fatalx("alloc: cluster %.*s: bad record",
			    (int)key.mv_size, (char *)key.mv_data);
		if (!crec.up || ev_val.mv_size == 0)
			continue;
		if (event_decode(&ev, ev_val.mv_data, ev_val.mv_size, err,
		    sizeof(err)) == -1)
			fatalx("alloc: cluster %.*s: %s", (int)key.mv_size,
			    (char *)key.mv_data, err);
		rc = fn(&ev, arg);
		event_free(&ev);
	}
	mdb_cursor_close(cur);
	if (mdb_cursor_open(txn, a->st->owners, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; rc == 0 &&
	    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		if (store_owner_decode(&val, &rec, &ev_val) == -1)
			fatalx("alloc: owner %.*s: bad record",
			    (int)key.mv_size, (char *)key.mv_data);
		if (rec.state == OWN_ACTIVE) {
			if (event_decode(&set, ev_val.mv_data, ev_val.mv_size,
			    err, sizeof(err)) == -1 || set.type != EV_PORT_SET)
				fatalx("alloc: owner %.*s: no PORT_SET",
				    (int)key.mv_size, (char *)key.mv_data);
			rc = fn(&set, arg);
			if (rc == 0 && rec.live) {
				alloc_live_event(&ev, &set, rec.port);
				rc = fn(&ev, arg);
			}
			event_free(&set);
		}
		if (rc == 0 && rec.state != OWN_QUARANTINED &&
		    rec.why[0] != '\0' &&
		    alloc_owner_event(&ev, EV_REFUSED, &key) == 0) {
			event_set_str(&ev, F_WHY, rec.why);
			rc = fn(&ev, arg);
		}
	}
	mdb_cursor_close(cur);
	if (rc == 0)
		rc = sni_state(a, txn, fn, arg);
	return rc == 0 ? state_faults(a, txn, fn, arg) : rc;
}
