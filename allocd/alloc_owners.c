/*
 * allocd — the owners table: records, their share of their cluster's
 * limits, and the walks over owners that the decisions make.
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

static int	owner_account(struct alloc *, MDB_txn *, const char *,
		    const struct owner_rec *, const struct event *,
		    const unsigned char *, size_t);

/* Tables. */

int
alloc_get_owner(struct alloc *a, MDB_txn *txn, const char *owner,
    struct owner_rec *rec, struct event *set)
{
	MDB_val ev;
	char err[128];
	int rc;

	if ((rc = store_owner_get(a->st, txn, owner, rec, &ev)) != 0)
		return rc;
	if (set == NULL)
		return 0;
	if (ev.mv_size == 0) {
		event_init(set, EV_NONE);
		return 0;
	}
	if (event_decode(set, ev.mv_data, ev.mv_size, err, sizeof(err)) == -1)
		fatalx("alloc: owner %s: %s", owner, err);
	return 0;
}

int
alloc_put_owner(struct alloc *a, MDB_txn *txn, const char *owner,
    const struct owner_rec *rec, const struct event *set)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc;

	if (set != NULL && set->type != EV_NONE &&
	    event_encode(set, &buf, &len) == -1)
		fatalx("alloc: owner %s: cannot encode", owner);
	rc = alloc_put_owner_enc(a, txn, owner, rec, set, buf, len);
	free(buf);
	return rc;
}

int
alloc_put_owner_enc(struct alloc *a, MDB_txn *txn, const char *owner,
    const struct owner_rec *rec, const struct event *set,
    const unsigned char *buf, size_t len)
{
	int rc;

	if ((rc = owner_account(a, txn, owner, rec, set, buf, len)) == 0)
		rc = store_owner_put(a->st, txn, owner, rec, buf, len);
	return rc;
}

int
alloc_del_owner(struct alloc *a, MDB_txn *txn, const char *owner)
{
	int rc;

	if ((rc = owner_account(a, txn, owner, NULL, NULL, NULL, 0)) != 0)
		return rc;
	return store_owner_del(a->st, txn, owner);
}

/* The share of its cluster an owner record (and its event) stands for. */
static void
rec_use(struct lim_use *u, const struct owner_rec *rec,
    const struct event *set)
{
	limits_use(u, rec->state == OWN_ACTIVE,
	    rec->state == OWN_REFUSED && rec->waiting,
	    rec->state == OWN_REFUSED && rec->limited,
	    set != NULL && set->type != EV_NONE ? set : NULL);
}

/*
 * The clusters' sums of use, built once from the owners as they are (a
 * store from before the sums), then kept by owner_account().
 */
int
alloc_owners_count(struct alloc *a, MDB_txn *txn)
{
	char owner[EV_OWNERLEN], err[128];
	struct lim_use zero, u;
	struct owner_rec rec;
	struct event set;
	MDB_cursor *cur;
	MDB_val key, val, ev;
	uint64_t built;
	int rc = 0, op;

	if (a->lim_built ||
	    (a->lim_built = store_get_u64(a->st, txn, STORE_META_LIM_BUILT,
	    &built) == 0))
		return 0;
	memset(&zero, 0, sizeof(zero));
	if (mdb_cursor_open(txn, a->st->owners, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; rc == 0 &&
	    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		if (key.mv_size >= sizeof(owner))
			fatalx("alloc: an owner key of %zu bytes", key.mv_size);
		memcpy(owner, key.mv_data, key.mv_size);
		owner[key.mv_size] = '\0';
		if (store_owner_decode(&val, &rec, &ev) == -1)
			fatalx("alloc: owner %s: bad record", owner);
		event_init(&set, EV_NONE);
		if (rec.state == OWN_ACTIVE && event_decode(&set, ev.mv_data,
		    ev.mv_size, err, sizeof(err)) == -1)
			fatalx("alloc: owner %s: %s", owner, err);
		rec_use(&u, &rec, &set);
		event_free(&set);
		rc = limits_account(a, txn, owner, &zero, &u);
	}
	mdb_cursor_close(cur);
	if (rc == 0 && (rc = store_put_u64(a->st, txn, STORE_META_LIM_BUILT,
	    1)) == 0)
		a->lim_built = 1;	/* forgotten again if txn aborts */
	return rc;
}

/*
 * The waiting index (meta "wait/") follows an owner's record from old
 * (NULL: none) to rec (NULL: gone): an owner is in it, under the seq it
 * has waited since, while it is refused for want of a port.
 */
static int
wait_index(struct alloc *a, MDB_txn *txn, const char *owner,
    const struct owner_rec *old, const struct owner_rec *rec)
{
	char buf[STORE_WAIT_KEYLEN];
	MDB_val key;
	int was = old != NULL && old->state == OWN_REFUSED && old->waiting;
	int now = rec != NULL && rec->state == OWN_REFUSED && rec->waiting;
	int rc;

	if (was == now && (!was || old->set_seq == rec->set_seq))
		return 0;
	if (was) {
		if (store_wait_key(&key, buf, sizeof(buf), old->set_seq, owner,
		    strlen(owner)) == -1)
			fatalx("alloc: owner %s: no waiting key", owner);
		if ((rc = store_meta_del(a->st, txn, &key)) != 0)
			return rc;
	}
	if (!now)
		return 0;
	if (store_wait_key(&key, buf, sizeof(buf), rec->set_seq, owner,
	    strlen(owner)) == -1)
		fatalx("alloc: owner %s: no waiting key", owner);
	return store_meta_put(a->st, txn, &key, "", 0);
}

/*
 * An owner's record is about to become rec and set (encoded: buf, len), or
 * to go (rec NULL): its cluster's sums follow, and the waiting index.  The
 * stored event is read back only when it held a port and the event
 * changed.
 */
static int
owner_account(struct alloc *a, MDB_txn *txn, const char *owner,
    const struct owner_rec *rec, const struct event *set,
    const unsigned char *buf, size_t len)
{
	struct lim_use was, now;
	MDB_val ev;
	struct owner_rec old;
	struct event oset;
	char err[128];
	int rc;

	if ((rc = alloc_owners_count(a, txn)) != 0)
		return rc;
	memset(&was, 0, sizeof(was));
	memset(&now, 0, sizeof(now));
	if (rec != NULL)
		rec_use(&now, rec, set);
	if ((rc = store_owner_get(a->st, txn, owner, &old, &ev)) == 0) {
		if (old.state != OWN_ACTIVE)
			rec_use(&was, &old, NULL);
		else if (set != NULL && ev.mv_size == len &&
		    memcmp(ev.mv_data, buf, len) == 0)
			rec_use(&was, &old, set);
		else {
			if (event_decode(&oset, ev.mv_data, ev.mv_size, err,
			    sizeof(err)) == -1)
				fatalx("alloc: owner %s: %s", owner, err);
			rec_use(&was, &old, &oset);
			event_free(&oset);
		}
	} else if (rc != MDB_NOTFOUND)
		return rc;
	if ((rc = wait_index(a, txn, owner, rc == 0 ? &old : NULL, rec)) != 0)
		return rc;
	return limits_account(a, txn, owner, &was, &now);
}

/* Does a route's PORT_SET send traffic where no route may? */
int
alloc_backends_forbidden(struct alloc *a, const struct event *set)
{
	char why[128];
	size_t i;

	for (i = 0; i < set->nbackends; i++)
		if (limits_address(a->conf, "backend", set->backends[i].ip,
		    why, sizeof(why)) == -1)
			return 1;
	return 0;
}

/*
 * May obs's route take what it asks for?  why is empty when it may, or
 * says which backend or limit stops it.
 */
int
alloc_route_limited(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const struct owner_rec *rec, const struct event *set, char *why,
    size_t whylen)
{
	struct lim_use old;
	int rc;

	why[0] = '\0';
	if ((rc = alloc_owners_count(a, txn)) != 0)
		return rc;
	rec_use(&old, rec, set);
	if (limits_route(a, txn, obs, &old, why, whylen) == 0)
		why[0] = '\0';
	return 0;
}

/*
 * The owners under prefix (all when empty) whose records pass keep(), as a
 * NULL-terminated array of keys.  Collected first and handled after, so no
 * cursor is held across the writes that handling them makes.
 */
char **
alloc_collect_owners(struct alloc *a, MDB_txn *txn, const char *prefix,
    int (*keep)(const struct alloc *, const struct owner_rec *, uint64_t),
    uint64_t arg)
{
	size_t plen = strlen(prefix), n = 0, cap = 16;
	char **list;
	MDB_cursor *cur;
	MDB_val key = { plen, (void *)prefix }, val;
	struct owner_rec rec;
	int op = plen > 0 ? MDB_SET_RANGE : MDB_FIRST;

	if ((list = calloc(cap, sizeof(*list))) == NULL)
		fatal("alloc: collect");
	if (mdb_cursor_open(txn, a->st->owners, &cur) != 0)
		fatalx("alloc: cursor");
	for (; mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		if (key.mv_size < plen || memcmp(key.mv_data, prefix, plen))
			break;
		if (store_owner_decode(&val, &rec, NULL) == -1)
			fatalx("alloc: owner %.*s: bad record",
			    (int)key.mv_size, (char *)key.mv_data);
		if (!keep(a, &rec, arg))
			continue;
		if (n + 1 == cap && (list = reallocarray(list, cap *= 2,
		    sizeof(*list))) == NULL)
			fatal("alloc: collect");
		if ((list[n++] = strndup(key.mv_data, key.mv_size)) == NULL)
			fatal("alloc: collect");
	}
	list[n] = NULL;
	mdb_cursor_close(cur);
	return list;
}

void
alloc_free_list(char **list)
{
	char **p;

	for (p = list; *p != NULL; p++)
		free(*p);
	free(list);
}

/*
 * The meta keys under prefix, without it, sorted, NULL-ended; with vals,
 * their values too (as strings).  An index kept in meta is read this way.
 */
char **
alloc_meta_list(struct alloc *a, MDB_txn *txn, const char *prefix, char ***vals)
{
	size_t plen = strlen(prefix), n = 0, cap = 16;
	char **key, **val = NULL;
	MDB_cursor *cur;
	MDB_val k = { plen, (void *)prefix }, v;
	int op;

	if ((key = calloc(cap, sizeof(*key))) == NULL ||
	    (vals != NULL && (val = calloc(cap, sizeof(*val))) == NULL))
		fatal("alloc: meta");
	if (mdb_cursor_open(txn, a->st->meta, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_SET_RANGE; mdb_cursor_get(cur, &k, &v, op) == 0;
	    op = MDB_NEXT) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		if (n + 1 == cap) {
			cap *= 2;
			if ((key = reallocarray(key, cap, sizeof(*key))) ==
			    NULL || (vals != NULL && (val = reallocarray(val,
			    cap, sizeof(*val))) == NULL))
				fatal("alloc: meta");
		}
		if ((key[n] = strndup((char *)k.mv_data + plen,
		    k.mv_size - plen)) == NULL || (vals != NULL &&
		    (val[n] = strndup(v.mv_data, v.mv_size)) == NULL))
			fatal("alloc: meta");
		n++;
	}
	mdb_cursor_close(cur);
	key[n] = NULL;
	if (vals != NULL) {
		val[n] = NULL;
		*vals = val;
	}
	return key;
}

struct waiter {
	uint64_t	 since;
	char		*owner;
};

static int
cmp_waiter(const void *x, const void *y)
{
	const struct waiter *a = x, *b = y;

	return a->since < b->since ? -1 : a->since > b->since;
}

/* The owners under prefix that keep() takes, first come (set_seq) first. */
char **
alloc_owners_in_order(struct alloc *a, MDB_txn *txn, const char *prefix,
    int (*keep)(const struct alloc *, const struct owner_rec *, uint64_t),
    size_t *n)
{
	char **list = alloc_collect_owners(a, txn, prefix, keep, 0);
	struct owner_rec rec;
	struct waiter *w;
	size_t i;

	for (*n = 0; list[*n] != NULL; (*n)++)
		;
	if (*n < 2)
		return list;
	if ((w = calloc(*n, sizeof(*w))) == NULL)
		fatal("alloc: waiting");
	for (i = 0; i < *n; i++) {
		if (alloc_get_owner(a, txn, list[i], &rec, NULL) != 0)
			fatalx("alloc: waiting owner %s vanished", list[i]);
		w[i].since = rec.set_seq;
		w[i].owner = list[i];
	}
	/* seqs are unique: the order is total, the same on every replay */
	qsort(w, *n, sizeof(*w), cmp_waiter);
	for (i = 0; i < *n; i++)
		list[i] = w[i].owner;
	free(w);
	return list;
}

/*
 * The owner waiting for a port the longest, in owner (EV_OWNERLEN bytes):
 * the first of the waiting index.  MDB_NOTFOUND when nobody waits.
 */
int
alloc_first_waiting(struct alloc *a, MDB_txn *txn, char *owner)
{
	return store_wait_first(a->st, txn, owner, EV_OWNERLEN);
}

/* The route event of type for an owner key "cluster/ns/name/route[/rk]". */
int
alloc_owner_event(struct event *ev, int type, const MDB_val *key)
{
	char buf[EV_OWNERLEN], *f[4], *p = buf, *end, *rk = NULL;
	int i;

	if (key->mv_size >= sizeof(buf))
		return -1;
	memcpy(buf, key->mv_data, key->mv_size);
	buf[key->mv_size] = '\0';
	for (i = 0; i < 4; i++)
		if ((f[i] = strsep(&p, "/")) == NULL)
			return -1;
	event_init(ev, type);
	if (p != NULL && ((rk = strsep(&p, "/")) == NULL || p != NULL))
		return -1;
	ev->route = strtoull(f[3], &end, 10);
	ev->has |= F_ROUTE;
	if (rk != NULL && event_set_str(ev, F_RKIND, rk) == -1)
		return -1;
	if (*end != '\0' || event_set_str(ev, F_CLUSTER, f[0]) ||
	    event_set_str(ev, F_NS, f[1]) || event_set_str(ev, F_NAME, f[2]))
		return -1;
	return 0;
}

int
alloc_port_of(struct alloc *a, MDB_txn *txn, const char *owner,
    unsigned *port)
{
	struct owner_rec rec;

	*port = 0;
	if (alloc_get_owner(a, txn, owner, &rec, NULL) == 0 &&
	    rec.state == OWN_ACTIVE)
		*port = rec.port;
	return 0;
}

void
alloc_meta_key(MDB_val *key, char *buf, size_t len, const char *prefix,
    const char *a, const char *b)
{
	int n = b == NULL ? snprintf(buf, len, "%s%s", prefix, a) :
	    snprintf(buf, len, "%s%s/%s", prefix, a, b);

	if (n < 0 || (size_t)n >= len)
		fatalx("alloc: meta key %s%s too long", prefix, a);
	key->mv_size = (size_t)n;
	key->mv_data = buf;
}
