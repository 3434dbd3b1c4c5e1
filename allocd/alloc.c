/*
 * allocd — port allocation.
 *
 * The rules, in the order they are applied to a route observation:
 *  - an owner (cluster/namespace/name/route) that holds a port keeps it; only
 *    a portico.dev/port request for another free port moves it;
 *  - an owner coming back finds the port it held while that port is still
 *    quarantined for it;
 *  - an owner we have no record of (a lost store) gets the port written on
 *    its object, when that port is free and the proof written beside it
 *    was made for this object (proof.c); an address it cannot prove is
 *    refused, with a reason that names nobody else;
 *  - otherwise the preferred port is a hash of the owner, probing upward, so
 *    that even a lost store gives most owners their old ports back;
 *  - a released port is quarantined for conf->quarantine seconds before any
 *    other owner may have it;
 *  - an owner refused for want of a free port waits: when ports come free
 *    (a TICK observation, made by allocd's own clock and logged like any
 *    other), the waiting owners get them in the order they asked.
 * Time is the observation's own timestamp, so a replay decides the same.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "hash.h"
#include "hosts.h"
#include "limits.h"
#include "log.h"
#include "proof.h"

static int	owner_event(struct event *, int, const MDB_val *);
static int	owner_account(struct alloc *, MDB_txn *, const char *,
		    const struct owner_rec *, const struct event *,
		    const unsigned char *, size_t);
static int	fault_forget(struct alloc *, MDB_txn *, const char *);
static int	unlive_mark(struct alloc *, MDB_txn *, const char *, int);

void
alloc_init(struct alloc *a, struct store *st, const struct config *conf,
    uint64_t last_seq)
{
	memset(a, 0, sizeof(*a));
	a->st = st;
	a->conf = conf;
	a->seq = last_seq;
	a->nfaults = -1;
}

void
alloc_clear(struct alloc *a)
{
	size_t i;

	for (i = 0; i < a->nout; i++)
		event_free(&a->out[i]);
	a->nout = 0;
}

static void
forget_full(struct alloc *a)
{
	a->full = 0;
	free(a->full_claims);
	a->full_claims = NULL;
	a->nfull_claims = 0;
}

void
alloc_rollback(struct alloc *a, uint64_t seq)
{
	a->seq = seq;
	alloc_clear(a);
	forget_full(a);
	a->nfaults = -1;
	a->lim_built = 0;
}

void
alloc_free(struct alloc *a)
{
	alloc_clear(a);
	forget_full(a);
	free(a->out);
	a->out = NULL;
	a->capout = 0;
}

/* Log ev under the next seq and queue it; takes ownership of ev's heap. */
static int
emit(struct alloc *a, MDB_txn *txn, struct event *ev, uint64_t time)
{
	struct event *o;
	size_t cap;
	int rc;

	ev->seq = ++a->seq;
	ev->time = time;
	if ((rc = store_append(a->st, txn, ev)) != 0)
		return rc;
	if (a->nout == a->capout) {
		cap = a->capout ? a->capout * 2 : 64;
		if ((o = realloc(a->out, cap * sizeof(*o))) == NULL)
			fatal("alloc: out");
		a->out = o;
		a->capout = cap;
	}
	a->out[a->nout++] = *ev;
	return 0;
}

static void
route_event(struct event *ev, int type, const struct event *obs)
{
	event_init(ev, type);
	memcpy(ev->cluster, obs->cluster, sizeof(ev->cluster));
	memcpy(ev->ns, obs->ns, sizeof(ev->ns));
	memcpy(ev->name, obs->name, sizeof(ev->name));
	ev->route = obs->route;
	ev->has = F_CLUSTER | F_NS | F_NAME | F_ROUTE;
}

/* PORT_LIVE for set's owner at port, with the proof watcherd writes. */
static void
live_event(struct event *d, const struct event *set, uint64_t port)
{
	route_event(d, EV_PORT_LIVE, set);
	d->port = port;
	d->has |= F_PORT;
	proof_put(d, set->uid);
}

/* Tables. */

static int
get_owner(struct alloc *a, MDB_txn *txn, const char *owner,
    struct owner_rec *rec, struct event *set)
{
	MDB_val key = { strlen(owner), (void *)owner }, val;
	char err[128];
	int rc;

	if ((rc = mdb_get(txn, a->st->owners, &key, &val)) != 0)
		return rc;
	if (val.mv_size < sizeof(*rec))
		fatalx("alloc: owner %s: short record", owner);
	memcpy(rec, val.mv_data, sizeof(*rec));
	if (set == NULL)
		return 0;
	if (val.mv_size == sizeof(*rec)) {
		event_init(set, EV_NONE);
		return 0;
	}
	if (event_decode(set, (char *)val.mv_data + sizeof(*rec),
	    val.mv_size - sizeof(*rec), err, sizeof(err)) == -1)
		fatalx("alloc: owner %s: %s", owner, err);
	return 0;
}

static int
put_owner(struct alloc *a, MDB_txn *txn, const char *owner,
    const struct owner_rec *rec, const struct event *set)
{
	MDB_val key = { strlen(owner), (void *)owner }, val;
	unsigned char *buf = NULL, *rbuf;
	size_t len = 0;
	int rc;

	if (set != NULL && set->type != EV_NONE &&
	    event_encode(set, &buf, &len) == -1)
		fatalx("alloc: owner %s: cannot encode", owner);
	if ((rc = owner_account(a, txn, owner, rec, set, buf, len)) != 0) {
		free(buf);
		return rc;
	}
	if ((rbuf = malloc(sizeof(*rec) + len)) == NULL)
		fatal("alloc: put_owner");
	memcpy(rbuf, rec, sizeof(*rec));
	if (len > 0)
		memcpy(rbuf + sizeof(*rec), buf, len);
	val.mv_size = sizeof(*rec) + len;
	val.mv_data = rbuf;
	rc = mdb_put(txn, a->st->owners, &key, &val, 0);
	free(rbuf);
	free(buf);
	return rc;
}

static int
del_owner(struct alloc *a, MDB_txn *txn, const char *owner)
{
	MDB_val key = { strlen(owner), (void *)owner };
	int rc;

	if ((rc = owner_account(a, txn, owner, NULL, NULL, NULL, 0)) != 0)
		return rc;
	rc = mdb_del(txn, a->st->owners, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
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
static int
owners_count(struct alloc *a, MDB_txn *txn)
{
	char owner[EV_OWNERLEN], err[128];
	struct lim_use zero, u;
	struct owner_rec rec;
	struct event set;
	MDB_cursor *cur;
	MDB_val key, val;
	uint64_t built;
	int rc = 0, op;

	if (a->lim_built ||
	    (a->lim_built = store_get_u64(a->st, txn, LIMITS_BUILT,
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
		memcpy(&rec, val.mv_data, sizeof(rec));
		event_init(&set, EV_NONE);
		if (rec.state == OWN_ACTIVE && event_decode(&set,
		    (char *)val.mv_data + sizeof(rec), val.mv_size -
		    sizeof(rec), err, sizeof(err)) == -1)
			fatalx("alloc: owner %s: %s", owner, err);
		rec_use(&u, &rec, &set);
		event_free(&set);
		rc = limits_account(a, txn, owner, &zero, &u);
	}
	mdb_cursor_close(cur);
	if (rc == 0 && (rc = store_put_u64(a->st, txn, LIMITS_BUILT, 1)) == 0)
		a->lim_built = 1;	/* forgotten again if txn aborts */
	return rc;
}

/*
 * An owner's record is about to become rec and set (encoded: buf, len), or
 * to go (rec NULL): its cluster's sums follow.  The stored event is read
 * back only when it held a port and the event changed.
 */
static int
owner_account(struct alloc *a, MDB_txn *txn, const char *owner,
    const struct owner_rec *rec, const struct event *set,
    const unsigned char *buf, size_t len)
{
	MDB_val key = { strlen(owner), (void *)owner }, val;
	struct lim_use was, now;
	struct owner_rec old;
	struct event oset;
	char err[128];
	int rc;

	if ((rc = owners_count(a, txn)) != 0)
		return rc;
	memset(&was, 0, sizeof(was));
	memset(&now, 0, sizeof(now));
	if (rec != NULL)
		rec_use(&now, rec, set);
	if ((rc = mdb_get(txn, a->st->owners, &key, &val)) == 0) {
		memcpy(&old, val.mv_data, sizeof(old));
		if (old.state != OWN_ACTIVE)
			rec_use(&was, &old, NULL);
		else if (set != NULL && val.mv_size - sizeof(old) == len &&
		    memcmp((char *)val.mv_data + sizeof(old), buf, len) == 0)
			rec_use(&was, &old, set);
		else {
			if (event_decode(&oset, (char *)val.mv_data +
			    sizeof(old), val.mv_size - sizeof(old), err,
			    sizeof(err)) == -1)
				fatalx("alloc: owner %s: %s", owner, err);
			rec_use(&was, &old, &oset);
			event_free(&oset);
		}
	} else if (rc != MDB_NOTFOUND)
		return rc;
	return limits_account(a, txn, owner, &was, &now);
}

/* Does a route's PORT_SET send traffic where no route may? */
static int
backends_forbidden(struct alloc *a, const struct event *set)
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
static int
route_limited(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const struct owner_rec *rec, const struct event *set, char *why,
    size_t whylen)
{
	struct lim_use old;
	int rc;

	why[0] = '\0';
	if ((rc = owners_count(a, txn)) != 0)
		return rc;
	rec_use(&old, rec, set);
	if (limits_route(a, txn, obs, &old, why, whylen) == 0)
		why[0] = '\0';
	return 0;
}

/* Port p's holder into owner (empty when free) and its release time. */
static int
get_port(struct alloc *a, MDB_txn *txn, unsigned p, char *owner,
    size_t olen, uint64_t *released)
{
	unsigned char k[2] = { (unsigned char)(p >> 8), (unsigned char)p };
	MDB_val key = { 2, k }, val;
	struct port_rec pr;
	size_t n;
	int rc;

	owner[0] = '\0';
	*released = 0;
	if ((rc = mdb_get(txn, a->st->ports, &key, &val)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (val.mv_size <= sizeof(pr) || val.mv_size - sizeof(pr) >= olen)
		fatalx("alloc: port %u: bad record", p);
	memcpy(&pr, val.mv_data, sizeof(pr));
	n = val.mv_size - sizeof(pr);
	memcpy(owner, (char *)val.mv_data + sizeof(pr), n);
	owner[n] = '\0';
	*released = pr.released;
	return 0;
}

static int
put_port(struct alloc *a, MDB_txn *txn, unsigned p, const char *owner,
    uint64_t released)
{
	unsigned char k[2] = { (unsigned char)(p >> 8), (unsigned char)p };
	unsigned char buf[sizeof(struct port_rec) + EV_OWNERLEN];
	struct port_rec pr = { released };
	MDB_val key = { 2, k }, val;
	size_t n = strlen(owner);

	memcpy(buf, &pr, sizeof(pr));
	memcpy(buf + sizeof(pr), owner, n);
	val.mv_size = sizeof(pr) + n;
	val.mv_data = buf;
	return mdb_put(txn, a->st->ports, &key, &val, 0);
}

static int
get_cluster(struct alloc *a, MDB_txn *txn, const char *c,
    struct cluster_rec *rec, MDB_val *rest)
{
	MDB_val key = { strlen(c), (void *)c }, val;
	int rc;

	memset(rec, 0, sizeof(*rec));
	if ((rc = mdb_get(txn, a->st->clusters, &key, &val)) != 0)
		return rc;
	if (val.mv_size < sizeof(*rec))
		fatalx("alloc: cluster %s: short record", c);
	memcpy(rec, val.mv_data, sizeof(*rec));
	if (rest != NULL) {
		rest->mv_size = val.mv_size - sizeof(*rec);
		rest->mv_data = (char *)val.mv_data + sizeof(*rec);
	}
	return 0;
}

static int
put_cluster(struct alloc *a, MDB_txn *txn, const char *c,
    const struct cluster_rec *rec, const void *rest, size_t restlen)
{
	MDB_val key = { strlen(c), (void *)c }, val;
	unsigned char *buf;
	int rc;

	if ((buf = malloc(sizeof(*rec) + restlen)) == NULL)
		fatal("alloc: put_cluster");
	memcpy(buf, rec, sizeof(*rec));
	if (restlen > 0)
		memcpy(buf + sizeof(*rec), rest, restlen);
	val.mv_size = sizeof(*rec) + restlen;
	val.mv_data = buf;
	rc = mdb_put(txn, a->st->clusters, &key, &val, 0);
	free(buf);
	return rc;
}

/* Ports. */

/*
 * May owner have port p at time now?  0 yes; -1 no, with the reason in why.
 * A port whose quarantine has run out is taken from its old owner here.
 */
static int
port_avail_dry(struct alloc *a, MDB_txn *txn, unsigned p, const char *owner,
    uint64_t now, char *why, size_t whylen, int dry)
{
	const struct config *c = a->conf;
	char holder[EV_OWNERLEN];
	uint64_t released, until;
	struct owner_rec rec;

	if (!ports_contain(&c->ports, p)) {
		char set[CONF_MAX_RANGES * 12];

		ports_format(&c->ports, set, sizeof(set));
		/* a long set may be cut short: the reason is still clear */
		if ((size_t)snprintf(why, whylen, "port %u is outside %s", p,
		    set) >= whylen)
			why[whylen - 1] = '\0';
		return -1;
	}
	if (p == c->api_port || ports_contain(&c->reserved, p)) {
		snprintf(why, whylen, "port %u is reserved", p);
		return -1;
	}
	if (get_port(a, txn, p, holder, sizeof(holder), &released) != 0)
		return -1;
	if (holder[0] == '\0' || strcmp(holder, owner) == 0)
		return 0;
	until = released + (uint64_t)c->quarantine * 1000;
	if (released != 0 && now >= until) {
		/* the old owner's claim has lapsed */
		if (!dry && get_owner(a, txn, holder, &rec, NULL) == 0 &&
		    rec.state != OWN_ACTIVE && rec.port == p)
			del_owner(a, txn, holder);
		return 0;
	}
	/* the holder is another tenant's business: never named */
	if (released != 0)
		snprintf(why, whylen, "port %u is quarantined for %llu s more",
		    p, (unsigned long long)((until - now + 999) / 1000));
	else
		snprintf(why, whylen, "port %u is taken", p);
	return -1;
}

static int
port_avail(struct alloc *a, MDB_txn *txn, unsigned p, const char *owner,
    uint64_t now, char *why, size_t whylen)
{
	return port_avail_dry(a, txn, p, owner, now, why, whylen, 0);
}

static int
cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/*
 * A probe found no port: remember it until the first quarantine runs out,
 * with the owners who hold a quarantined port (it would be free to them).
 */
static void
remember_full(struct alloc *a, MDB_txn *txn)
{
	uint64_t q = (uint64_t)a->conf->quarantine * 1000, until = UINT64_MAX;
	struct port_rec pr;
	MDB_cursor *cur;
	MDB_val key, val;
	size_t cap = 0;
	uint64_t *nc;
	int op;

	forget_full(a);
	if (mdb_cursor_open(txn, a->st->ports, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; mdb_cursor_get(cur, &key, &val, op) == 0;
	    op = MDB_NEXT) {
		memcpy(&pr, val.mv_data, sizeof(pr));
		if (pr.released == 0)
			continue;
		if (pr.released + q < until)
			until = pr.released + q;
		if (a->nfull_claims == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nc = reallocarray(a->full_claims, cap,
			    sizeof(*nc))) == NULL)
				fatal("alloc: full");
			a->full_claims = nc;
		}
		a->full_claims[a->nfull_claims++] = hash_fnv1a_n(
		    (char *)val.mv_data + sizeof(pr), val.mv_size -
		    sizeof(pr));
	}
	mdb_cursor_close(cur);
	if (a->nfull_claims > 1)
		qsort(a->full_claims, a->nfull_claims, sizeof(uint64_t),
		    cmp_u64);
	a->full = 1;
	a->full_until = until;
}

/* Known to find no port for owner at now, without probing? */
static int
known_full(const struct alloc *a, const char *owner, uint64_t now)
{
	uint64_t h;

	if (!a->full || now >= a->full_until)
		return 0;
	if (a->nfull_claims == 0)
		return 1;
	h = hash_fnv1a(owner);
	return bsearch(&h, a->full_claims, a->nfull_claims, sizeof(h),
	    cmp_u64) == NULL;
}

/* dry: only look, change nothing (to decide whether a TICK is due) */
static unsigned
port_pick_dry(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t now,
    int dry)
{
	const struct config *c = a->conf;
	unsigned size = ports_count(&c->ports), i, k, p;
	char why[256];

	if (known_full(a, owner, now))
		return 0;

	/* the preferred port, then upward through the set, wrapping */
	k = (unsigned)(hash_fnv1a(owner) % size);
	for (i = 0; i < size; i++, k = k + 1 == size ? 0 : k + 1) {
		p = ports_nth(&c->ports, k);
		if (port_avail_dry(a, txn, p, owner, now, why, sizeof(why),
		    dry) == 0)
			return p;
	}
	remember_full(a, txn);
	return 0;
}

static unsigned
port_pick(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t now)
{
	return port_pick_dry(a, txn, owner, now, 0);
}

static int
backends_equal(const struct event *x, const struct event *y)
{
	return x->nbackends == y->nbackends && (x->nbackends == 0 ||
	    memcmp(x->backends, y->backends,
	    x->nbackends * sizeof(struct backend)) == 0);
}

static int
refuse(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const char *owner, struct owner_rec *rec, const struct event *set,
    const char *why)
{
	struct event d;
	int rc;

	if (strcmp(rec->why, why) == 0)	/* already said; keep the rest */
		return put_owner(a, txn, owner, rec, set);
	snprintf(rec->why, sizeof(rec->why), "%s", why);
	if ((rc = put_owner(a, txn, owner, rec, set)) != 0)
		return rc;
	route_event(&d, EV_REFUSED, obs);
	event_set_str(&d, F_WHY, rec->why);
	return emit(a, txn, &d, obs->time);
}

static int
assign(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const char *owner, struct owner_rec *rec, unsigned p)
{
	struct event d, keep;
	int rc;

	if ((rc = put_port(a, txn, p, owner, 0)) != 0)
		return rc;
	route_event(&d, EV_PORT_SET, obs);
	d.port = p;
	d.has |= F_PORT | F_BACKENDS | (obs->has & (F_UID | F_WT));
	memcpy(d.uid, obs->uid, sizeof(d.uid));
	d.wt = obs->wt;		/* convergence is measured from it */
	if (event_copy(&keep, obs) == -1)
		fatal("alloc: assign");
	d.backends = keep.backends;
	d.nbackends = keep.nbackends;
	keep.backends = NULL;
	event_free(&keep);
	if ((rc = emit(a, txn, &d, obs->time)) != 0)
		return rc;
	if (rec->state != OWN_ACTIVE || rec->port != p) {
		rec->live = 0;		/* a new address waits for the proxies */
		if ((rc = fault_forget(a, txn, owner)) != 0 ||
		    (rc = unlive_mark(a, txn, owner, 1)) != 0)
			return rc;
	}
	rec->port = (uint16_t)p;
	rec->state = OWN_ACTIVE;
	rec->waiting = 0;
	rec->set_seq = d.seq;
	rec->why[0] = '\0';
	return put_owner(a, txn, owner, rec, &d);
}

static int
release(struct alloc *a, MDB_txn *txn, const char *owner,
    struct owner_rec *rec, const struct event *set, uint64_t now)
{
	struct event d;
	int rc;

	if (rec->state != OWN_ACTIVE) {
		/* nothing held: a refused owner is simply forgotten */
		return rec->state == OWN_REFUSED ? del_owner(a, txn, owner) : 0;
	}
	if ((rc = put_port(a, txn, rec->port, owner, now)) != 0)
		return rc;
	forget_full(a);		/* a zero quarantine frees it at once */
	route_event(&d, EV_PORT_FREE, set);
	d.port = rec->port;
	d.has |= F_PORT;
	if ((rc = emit(a, txn, &d, now)) != 0)
		return rc;
	if ((rc = fault_forget(a, txn, owner)) != 0 ||
	    (!rec->live && (rc = unlive_mark(a, txn, owner, 0)) != 0))
		return rc;
	rec->state = OWN_QUARANTINED;
	rec->live = 0;
	rec->why[0] = '\0';
	return put_owner(a, txn, owner, rec, set);
}

#define CLAIM_WHY	"portico.dev/address was not written by portico for " \
	"this object (no valid portico.dev/proof): remove it to be given a port"

enum { CLAIM_NONE, CLAIM_ADOPTED, CLAIM_UNPROVEN };

/*
 * The port written on the object, for an owner that holds none (a lost
 * store): adopted when the object proves it (or, on the first store under
 * proofs, without) and it is free.  A quarantined owner's own record says
 * more than its object.  While adopting, what each claim came to is counted.
 */
static int
claim(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const char *owner, const struct owner_rec *rec)
{
	char why[256];

	if (!(obs->has & F_HAD) || rec->state == OWN_QUARANTINED)
		return CLAIM_NONE;
	if (!a->adopt_unproven && !proof_holds(obs)) {
		a->nbadproof += (uint64_t)a->adopting;
		return CLAIM_UNPROVEN;
	}
	if (port_avail(a, txn, (unsigned)obs->had, owner, obs->time, why,
	    sizeof(why)) == 0) {
		a->nadopted += (uint64_t)a->adopting;
		return CLAIM_ADOPTED;
	}
	a->ntaken += (uint64_t)a->adopting;
	return CLAIM_NONE;
}

/*
 * A live owner whose object does not carry its address with a valid proof
 * (written before proofs, or changed by hand): PORT_LIVE again, with the
 * proof, so that watcherd writes both.
 */
static int
reprove(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const struct owner_rec *rec)
{
	struct event d;

	if (!rec->live || !(obs->has & F_HAD) ||
	    (obs->had == rec->port && proof_holds(obs)))
		return 0;
	live_event(&d, obs, rec->port);
	return emit(a, txn, &d, obs->time);
}

static int
on_route(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char owner[EV_OWNERLEN], why[256];
	struct cluster_rec crec;
	struct owner_rec rec;
	struct event set;
	unsigned p = 0;
	int rc, have, limited, c;

	if (event_owner(obs, owner, sizeof(owner)) == -1)
		return 0;
	have = get_owner(a, txn, owner, &rec, &set) == 0;
	if (!have) {
		memset(&rec, 0, sizeof(rec));
		event_init(&set, EV_NONE);
	}
	get_cluster(a, txn, obs->cluster, &crec, NULL);
	rec.seen_sync = crec.sync_seq;
	limited = rec.limited;
	rec.limited = 0;

	if (obs->has & F_WHY)
		snprintf(why, sizeof(why), "%s", obs->why);
	else if ((rc = route_limited(a, txn, obs, &rec, &set, why,
	    sizeof(why))) != 0)
		goto done;
	else if (why[0] != '\0' && (rec.state == 0 ||
	    rec.state == OWN_REFUSED) &&
	    (limited || limits_may_keep(a, txn, obs->cluster))) {
		/* kept, to be looked at again when its cluster makes room */
		if (!limited)
			rec.set_seq = a->seq;
		rec.limited = 1;
	} else if (why[0] != '\0' && rec.state == OWN_ACTIVE &&
	    backends_forbidden(a, &set)) {
		/*
		 * What it serves is no longer allowed (a store from before
		 * the rule, or allow_backends narrowed): it stops, and its
		 * port waits in quarantine as for a route that went.
		 */
		if ((rc = release(a, txn, owner, &rec, &set, obs->time)) != 0)
			goto done;
	}
	if (why[0] != '\0') {
		/* the object is wrong, or over a limit: say so, move nothing */
		if (rec.state == 0)
			rec.state = OWN_REFUSED;
		rec.waiting = 0;
		rc = refuse(a, txn, obs, owner, &rec, rec.limited ? obs : &set,
		    why);
		goto done;
	}
	if (rec.state == OWN_ACTIVE) {
		if ((obs->has & F_WANT) && obs->want != rec.port) {
			if (port_avail(a, txn, (unsigned)obs->want, owner,
			    obs->time, why, sizeof(why)) == -1) {
				rc = refuse(a, txn, obs, owner, &rec, &set,
				    why);
				goto done;
			}
			if ((rc = release(a, txn, owner, &rec, &set,
			    obs->time)) != 0)
				goto done;
			rc = assign(a, txn, obs, owner, &rec,
			    (unsigned)obs->want);
			goto done;
		}
		if (!backends_equal(&set, obs) || rec.why[0] != '\0' ||
		    strcmp(set.uid, obs->uid) != 0)
			rc = assign(a, txn, obs, owner, &rec, rec.port);
		else
			rc = put_owner(a, txn, owner, &rec, &set);
		if (rc == 0)
			rc = reprove(a, txn, obs, &rec);
		goto done;
	}
	if ((obs->has & F_WANT) && port_avail(a, txn, (unsigned)obs->want,
	    owner, obs->time, why, sizeof(why)) == 0) {
		p = (unsigned)obs->want;
		if ((obs->has & F_HAD) && obs->had == obs->want)
			a->nadopted += (uint64_t)a->adopting;
	} else if (!(obs->has & F_WANT) && rec.state == OWN_QUARANTINED &&
	    port_avail(a, txn, rec.port, owner, obs->time, why,
	    sizeof(why)) == 0)
		p = rec.port;		/* coming back within quarantine */
	else if ((c = claim(a, txn, obs, owner, &rec)) == CLAIM_UNPROVEN) {
		rec.state = OWN_REFUSED;	/* claim() passes quarantines by */
		rec.waiting = 0;
		rc = refuse(a, txn, obs, owner, &rec, &set, CLAIM_WHY);
		goto done;
	} else if (c == CLAIM_ADOPTED)
		p = (unsigned)obs->had;	/* adopted from the object */
	else if (!(obs->has & F_WANT) &&
	    (p = port_pick(a, txn, owner, obs->time)) == 0) {
		char set[CONF_MAX_RANGES * 12];

		ports_format(&a->conf->ports, set, sizeof(set));
		if ((size_t)snprintf(why, sizeof(why), "no free port in %s",
		    set) >= sizeof(why))
			why[sizeof(why) - 1] = '\0';
	}
	if (p == 0) {
		/* an owner whose old port waits in quarantine keeps its claim */
		if (rec.state != OWN_QUARANTINED)
			rec.state = OWN_REFUSED;
		if (rec.state == OWN_REFUSED && !(obs->has & F_WANT)) {
			/* it waits for a port, in the order it asked */
			if (!rec.waiting)
				rec.set_seq = a->seq;
			rec.waiting = 1;
			rc = refuse(a, txn, obs, owner, &rec, obs, why);
			goto done;
		}
		rec.waiting = 0;
		rc = refuse(a, txn, obs, owner, &rec, &set, why);
		goto done;
	}
	rc = assign(a, txn, obs, owner, &rec, p);
	if (rc == 0 && (obs->has & F_WANT) && p != obs->want) {
		/* adopted on its own port; what it asks for is refused */
		event_free(&set);
		if ((rc = get_owner(a, txn, owner, &rec, &set)) == 0)
			rc = refuse(a, txn, obs, owner, &rec, &set, why);
	}
 done:
	event_free(&set);
	return rc;
}

static int
on_route_gone(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char owner[EV_OWNERLEN];
	struct owner_rec rec;
	struct event set;
	int rc;

	if (event_owner(obs, owner, sizeof(owner)) == -1 ||
	    get_owner(a, txn, owner, &rec, &set) != 0)
		return 0;
	rc = release(a, txn, owner, &rec, &set, obs->time);
	event_free(&set);
	return rc;
}

/*
 * The owners under prefix (all when empty) whose records pass keep(), as a
 * NULL-terminated array of keys.  Collected first and handled after, so no
 * cursor is held across the writes that handling them makes.
 */
static char **
collect_owners(struct alloc *a, MDB_txn *txn, const char *prefix,
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
		memcpy(&rec, val.mv_data, sizeof(rec));
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

static void
free_list(char **list)
{
	char **p;

	for (p = list; *p != NULL; p++)
		free(*p);
	free(list);
}

/* Held or refused, and (sid != 0) not seen by sync sid. */
static int
keep_unseen(const struct alloc *a, const struct owner_rec *rec, uint64_t sid)
{
	(void)a;
	return rec->state != OWN_QUARANTINED &&
	    (sid == 0 || rec->seen_sync != sid);
}

/* Release every owner of cluster c; with sid != 0, those sid did not see. */
static int
release_cluster(struct alloc *a, MDB_txn *txn, const char *c, uint64_t sid,
    uint64_t now)
{
	char prefix[80], **list, **p;
	struct owner_rec rec;
	struct event set;
	int rc = 0;

	snprintf(prefix, sizeof(prefix), "%s/", c);
	list = collect_owners(a, txn, prefix, keep_unseen, sid);
	for (p = list; *p != NULL && rc == 0; p++) {
		if ((rc = get_owner(a, txn, *p, &rec, &set)) != 0)
			break;
		rc = release(a, txn, *p, &rec, &set, now);
		event_free(&set);
	}
	free_list(list);
	return rc;
}

/*
 * The hosts the clusters' API routes hold, built once from the clusters up
 * (a store from before the index): in id order, so the first to hold a
 * host is the one renderd routed it to.
 */
static int
hosts_ready(struct alloc *a, MDB_txn *txn)
{
	struct cluster_rec crec;
	struct event ev;
	MDB_cursor *cur;
	MDB_val key, val;
	char err[128];
	uint64_t built;
	int rc = 0, op;

	if (store_get_u64(a->st, txn, HOSTS_BUILT, &built) == 0)
		return 0;
	if (mdb_cursor_open(txn, a->st->clusters, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; rc == 0 &&
	    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		memcpy(&crec, val.mv_data, sizeof(crec));
		if (!crec.up || val.mv_size <= sizeof(crec))
			continue;
		if (event_decode(&ev, (char *)val.mv_data + sizeof(crec),
		    val.mv_size - sizeof(crec), err, sizeof(err)) == -1)
			fatalx("alloc: cluster %.*s: %s", (int)key.mv_size,
			    (char *)key.mv_data, err);
		rc = hosts_adopt(a, txn, ev.host, ev.cluster);
		event_free(&ev);
	}
	mdb_cursor_close(cur);
	return rc != 0 ? rc : store_put_u64(a->st, txn, HOSTS_BUILT, 1);
}

/* The API_SET a cluster's record holds, when it is up. */
static int
api_of(struct alloc *a, MDB_txn *txn, const char *cluster,
    struct cluster_rec *rec, struct event *old)
{
	MDB_val rest;
	char err[128];

	return get_cluster(a, txn, cluster, rec, &rest) == 0 && rec->up &&
	    event_decode(old, rest.mv_data, rest.mv_size, err,
	    sizeof(err)) == 0;
}

static int	api_let_go(struct alloc *, MDB_txn *, const char *,
		    const char *, uint64_t);

/* Route up's cluster at its host, which is its own now. */
static int
api_set(struct alloc *a, MDB_txn *txn, const struct event *up, uint64_t now)
{
	struct cluster_rec rec;
	struct event d, old;
	unsigned char *buf;
	size_t len;
	int rc;

	if (api_of(a, txn, up->cluster, &rec, &old)) {
		rc = strcmp(old.host, up->host) == 0 ? 0 :
		    api_let_go(a, txn, up->cluster, old.host, now);
		event_free(&old);
		if (rc != 0)
			return rc;
	}
	event_init(&d, EV_API_SET);
	memcpy(d.cluster, up->cluster, sizeof(d.cluster));
	memcpy(d.cname, up->cname, sizeof(d.cname));
	memcpy(d.host, up->host, sizeof(d.host));
	memcpy(d.masters, up->masters, sizeof(d.masters));
	d.nmasters = up->nmasters;
	d.mport = up->mport;
	d.has = F_CLUSTER | F_CNAME | F_HOST | F_MASTERS | F_MPORT;
	if ((rc = emit(a, txn, &d, now)) != 0)
		return rc;
	if (event_encode(&d, &buf, &len) == -1)
		fatalx("alloc: API_SET");
	get_cluster(a, txn, up->cluster, &rec, NULL);
	rec.up = 1;
	rc = put_cluster(a, txn, up->cluster, &rec, buf, len);
	free(buf);
	return rc;
}

/* cluster no longer holds host: the first claim waiting for it is routed. */
static int
api_let_go(struct alloc *a, MDB_txn *txn, const char *cluster,
    const char *host, uint64_t now)
{
	struct event next;
	int rc, have;

	if ((rc = hosts_release(a, txn, cluster, host, &next, &have)) != 0 ||
	    !have)
		return rc;
	rc = api_set(a, txn, &next, now);
	event_free(&next);
	return rc;
}

static int
on_cluster_up(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct cluster_rec rec;
	struct event old;
	char why[256];
	size_t i;
	int rc, same = 0, granted;

	if (api_of(a, txn, obs->cluster, &rec, &old)) {
		same = strcmp(old.cname, obs->cname) == 0 &&
		    strcmp(old.host, obs->host) == 0 &&
		    old.mport == obs->mport && old.nmasters == obs->nmasters &&
		    memcmp(old.masters, obs->masters,
		    sizeof(old.masters[0]) * old.nmasters) == 0;
		event_free(&old);
	}
	if (same)
		return hosts_forget(a, txn, obs->cluster);
	for (i = 0; i < obs->nmasters; i++)
		if (limits_address(a->conf, "master", obs->masters[i], why,
		    sizeof(why)) == -1) {
			/* validated by the decoder, as the reason's address */
			log_warnx("alloc: cluster %s: %s: not routed",
			    obs->cluster, why);
			return 0;
		}
	if ((rc = hosts_ready(a, txn)) != 0 ||
	    (rc = hosts_claim(a, txn, obs, &granted)) != 0 || !granted)
		return rc;
	return api_set(a, txn, obs, obs->time);
}

static int
on_cluster_down(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct cluster_rec rec;
	struct event d, old;
	MDB_val key = { strlen(obs->cluster), (void *)obs->cluster };
	char host[254] = "";
	int rc;

	if ((rc = hosts_ready(a, txn)) != 0 ||
	    (rc = hosts_forget(a, txn, obs->cluster)) != 0)
		return rc;
	if (api_of(a, txn, obs->cluster, &rec, &old)) {
		memcpy(host, old.host, sizeof(host));
		event_free(&old);
	}
	if (get_cluster(a, txn, obs->cluster, &rec, NULL) != 0)
		return release_cluster(a, txn, obs->cluster, 0, obs->time);
	if (rec.up) {
		event_init(&d, EV_API_DEL);
		memcpy(d.cluster, obs->cluster, sizeof(d.cluster));
		d.has = F_CLUSTER;
		if ((rc = emit(a, txn, &d, obs->time)) != 0)
			return rc;
	}
	if ((rc = mdb_del(txn, a->st->clusters, &key, NULL)) != 0 ||
	    (host[0] != '\0' &&
	    (rc = api_let_go(a, txn, obs->cluster, host, obs->time)) != 0))
		return rc;
	return release_cluster(a, txn, obs->cluster, 0, obs->time);
}

static int
on_sync(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct cluster_rec rec;
	MDB_val rest = { 0, NULL };
	int found;

	found = get_cluster(a, txn, obs->cluster, &rec, &rest) == 0;
	if (obs->type == EV_SYNC_BEGIN) {
		/*
		 * watcherd's ids start over when it does; the seq this
		 * observation was logged under never repeats.
		 */
		rec.sid = obs->sid;
		rec.sync_seq = a->seq;
		return put_cluster(a, txn, obs->cluster, &rec, rest.mv_data,
		    rest.mv_size);
	}
	if (!found || rec.sync_seq == 0 || rec.sid != obs->sid) {
		log_info("alloc: %s: sync %llu ended, but %llu began; ignored",
		    obs->cluster, (unsigned long long)obs->sid,
		    (unsigned long long)rec.sid);
		return 0;
	}
	return release_cluster(a, txn, obs->cluster, rec.sync_seq, obs->time);
}

/*
 * What each proxy's last APPLIED said beyond its generation: the ports
 * another program holds on its host, and a generation it could not apply.
 * Kept in meta as "status.<proxy>", the event itself.
 */
static int
get_status(struct alloc *a, MDB_txn *txn, const char *px, struct event *st)
{
	char name[96], err[128];
	MDB_val key, val;
	int rc;

	event_init(st, EV_NONE);
	snprintf(name, sizeof(name), "status.%s", px);
	key.mv_size = strlen(name);
	key.mv_data = name;
	if ((rc = mdb_get(txn, a->st->meta, &key, &val)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (event_decode(st, val.mv_data, val.mv_size, err, sizeof(err)) == -1)
		fatalx("alloc: %s: %s", name, err);
	return 0;
}

static int
put_status(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char name[96];
	unsigned char *buf;
	MDB_val key, val;
	size_t len;
	int rc;

	snprintf(name, sizeof(name), "status.%s", obs->proxy);
	key.mv_size = strlen(name);
	key.mv_data = name;
	if (event_encode(obs, &buf, &len) == -1)
		fatalx("alloc: %s: cannot encode", name);
	val.mv_size = len;
	val.mv_data = buf;
	rc = mdb_put(txn, a->st->meta, &key, &val, 0);
	free(buf);
	return rc;
}

/* Does an APPLIED say what the proxy's status already says? */
static int
status_same(const struct event *x, const struct event *y)
{
	uint32_t m = F_HELD | F_FGEN | F_WHY;

	return (x->has & m) == (y->has & m) && x->nheld == y->nheld &&
	    (x->nheld == 0 ||
	    memcmp(x->held, y->held, x->nheld * sizeof(x->held[0])) == 0) &&
	    x->fgen == y->fgen && strcmp(x->why, y->why) == 0;
}

static int
held_by(const struct event *st, unsigned port)
{
	size_t lo = 0, hi = st->nheld, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (st->held[mid] == port)
			return 1;
		if (st->held[mid] < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Held, not yet live, and assigned at or before generation low. */
static int
keep_unlive(const struct alloc *a, const struct owner_rec *rec, uint64_t low)
{
	(void)a;
	return rec->state == OWN_ACTIVE && !rec->live && rec->set_seq <= low;
}

/* Not yet live, assigned after what a proxy serves, within what it failed. */
static int
keep_failed(const struct alloc *a, const struct owner_rec *rec, uint64_t px)
{
	const struct event *st = &a->status[px];

	return rec->state == OWN_ACTIVE && !rec->live &&
	    rec->set_seq > st->gen && rec->set_seq <= st->fgen;
}

/*
 * The meta keys under prefix, without it, sorted, NULL-ended; with vals,
 * their values too (as strings).  An index kept in meta is read this way.
 */
static char **
meta_list(struct alloc *a, MDB_txn *txn, const char *prefix, char ***vals)
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

/*
 * The owners not live yet, indexed in meta as "unlive/<owner>", so that an
 * APPLIED looks at them, not at every owner.  A store from before the
 * index gets it built by the first APPLIED ("unlive.indexed").
 */
#define UNLIVE_PREFIX	"unlive/"
#define UNLIVE_BUILT	"unlive.indexed"

static int
unlive_mark(struct alloc *a, MDB_txn *txn, const char *owner, int on)
{
	char buf[sizeof(UNLIVE_PREFIX) + EV_OWNERLEN];
	MDB_val key, val = { 0, (void *)"" };
	int rc, n;

	n = snprintf(buf, sizeof(buf), "%s%s", UNLIVE_PREFIX, owner);
	if (n < 0 || (size_t)n >= sizeof(buf))
		fatalx("alloc: owner %s: too long", owner);
	key.mv_size = (size_t)n;
	key.mv_data = buf;
	if (on)
		return mdb_put(txn, a->st->meta, &key, &val, 0);
	rc = mdb_del(txn, a->st->meta, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The owners not live yet, sorted; the index is built on first use. */
static char **
unlive_owners(struct alloc *a, MDB_txn *txn, int *rc)
{
	char **list, **p;
	uint64_t built;

	*rc = 0;
	if (store_get_u64(a->st, txn, UNLIVE_BUILT, &built) != 0) {
		/* active and not live, assigned at any generation */
		list = collect_owners(a, txn, "", keep_unlive, UINT64_MAX);
		for (p = list; *p != NULL && *rc == 0; p++)
			*rc = unlive_mark(a, txn, *p, 1);
		free_list(list);
		if (*rc == 0)
			*rc = store_put_u64(a->st, txn, UNLIVE_BUILT, 1);
		if (*rc != 0)
			return NULL;
	}
	return meta_list(a, txn, UNLIVE_PREFIX, NULL);
}

/* Faults are kept in meta as "fault/<owner>" = reason, while they stand. */
#define FAULT_PREFIX	"fault/"

struct fault {
	char		*owner;
	unsigned	 port;
	int		 order;		/* first said wins */
	char		 why[256];
};

static int
cmp_fault(const void *x, const void *y)
{
	const struct fault *a = x, *b = y;
	int c = strcmp(a->owner, b->owner);

	return c != 0 ? c : a->order - b->order;
}

static void
add_fault(struct fault **f, size_t *n, size_t *cap, const char *owner,
    unsigned port, const char *fmt, ...)
{
	va_list ap;

	if (*n == *cap && (*f = reallocarray(*f, *cap = *cap ? *cap * 2 : 16,
	    sizeof(**f))) == NULL)
		fatal("alloc: faults");
	if (((*f)[*n].owner = strdup(owner)) == NULL)
		fatal("alloc: faults");
	(*f)[*n].port = port;
	(*f)[*n].order = (int)*n;
	va_start(ap, fmt);
	vsnprintf((*f)[*n].why, sizeof((*f)[*n].why), fmt, ap);
	va_end(ap);
	(*n)++;
}

static int
fault_key(MDB_val *key, char *buf, size_t len, const char *owner)
{
	int n = snprintf(buf, len, "%s%s", FAULT_PREFIX, owner);

	key->mv_size = (size_t)n;
	key->mv_data = buf;
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int
emit_fault(struct alloc *a, MDB_txn *txn, const char *owner, unsigned port,
    const char *why, uint64_t now)
{
	struct event d;
	MDB_val key = { strlen(owner), (void *)owner };

	if (owner_event(&d, EV_PORT_FAULT, &key) == -1)
		fatalx("alloc: fault: bad owner %s", owner);
	d.port = port;
	d.has |= F_PORT;
	if (why != NULL && event_set_str(&d, F_WHY, why) == -1)
		fatalx("alloc: fault: bad reason for %s", owner);
	return emit(a, txn, &d, now);
}

/* How many faults stand (a few at most: a seek and a short walk). */
static long
faults_count(struct alloc *a, MDB_txn *txn)
{
	size_t plen = strlen(FAULT_PREFIX);
	MDB_val k = { plen, (void *)FAULT_PREFIX }, v;
	MDB_cursor *cur;
	long n = 0;
	int op;

	if (mdb_cursor_open(txn, a->st->meta, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_SET_RANGE; mdb_cursor_get(cur, &k, &v, op) == 0 &&
	    k.mv_size >= plen && memcmp(k.mv_data, FAULT_PREFIX, plen) == 0;
	    op = MDB_NEXT)
		n++;
	mdb_cursor_close(cur);
	return n;
}

/* An owner's port moved or went: what was said of it is moot. */
static int
fault_forget(struct alloc *a, MDB_txn *txn, const char *owner)
{
	char buf[sizeof(FAULT_PREFIX) + EV_OWNERLEN];
	MDB_val key;
	int rc;

	if (a->nfaults == -1)
		a->nfaults = faults_count(a, txn);
	if (a->nfaults == 0 || fault_key(&key, buf, sizeof(buf), owner) == -1)
		return 0;	/* the usual case: none stands */
	if ((rc = mdb_del(txn, a->st->meta, &key, NULL)) == 0)
		a->nfaults--;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A fault no longer stands: forget it, and say so while its owner holds. */
static int
fault_clear(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t now)
{
	struct owner_rec rec;
	int rc;

	if ((rc = fault_forget(a, txn, owner)) != 0)
		return rc;
	if (get_owner(a, txn, owner, &rec, NULL) != 0 ||
	    rec.state != OWN_ACTIVE)
		return 0;
	return emit_fault(a, txn, owner, rec.port, NULL, now);
}

static int
fault_set(struct alloc *a, MDB_txn *txn, const struct fault *f, uint64_t now)
{
	char buf[sizeof(FAULT_PREFIX) + EV_OWNERLEN];
	MDB_val key, val = { strlen(f->why) + 1, (void *)f->why };
	int rc;

	if (fault_key(&key, buf, sizeof(buf), f->owner) == -1)
		return 0;
	if ((rc = mdb_put(txn, a->st->meta, &key, &val, 0)) != 0)
		return rc;
	return emit_fault(a, txn, f->owner, f->port, f->why, now);
}

/* Both sorted by owner: set what should stand and does not, clear the rest. */
static int
faults_merge(struct alloc *a, MDB_txn *txn, const struct fault *f, size_t n,
    uint64_t now)
{
	char **stand, **why;
	size_t ln, i = 0, j = 0;
	int c, rc = 0;

	stand = meta_list(a, txn, FAULT_PREFIX, &why);
	for (ln = 0; stand[ln] != NULL; ln++)
		;
	while (rc == 0 && (i < n || j < ln)) {
		if (i > 0 && i < n && strcmp(f[i].owner, f[i - 1].owner) == 0) {
			i++;		/* said first by another proxy */
			continue;
		}
		c = i == n ? 1 : j == ln ? -1 : strcmp(f[i].owner, stand[j]);
		if (c < 0)
			rc = fault_set(a, txn, &f[i++], now);
		else if (c > 0)
			rc = fault_clear(a, txn, stand[j++], now);
		else {
			if (strcmp(f[i].why, why[j]) != 0)
				rc = fault_set(a, txn, &f[i], now);
			i++;
			j++;
		}
	}
	free_list(stand);
	free_list(why);
	a->nfaults = -1;	/* counted again when next needed */
	return rc;
}

/*
 * The faults the proxies' statuses make, against those that stand: a port
 * held by another program on a proxy's host, and the owners waiting for a
 * generation a proxy could not apply.  The first proxy (in configuration
 * order) to say something about an owner is the one written.
 */
static int
faults_update(struct alloc *a, MDB_txn *txn, uint64_t now)
{
	char owner[EV_OWNERLEN], **list, **p;
	const struct proxy_conf *px;
	struct fault *f = NULL;
	struct owner_rec rec;
	size_t n = 0, cap = 0, i;
	uint64_t released;
	int k, rc = 0;

	for (k = 0; k < a->conf->nproxies; k++) {
		px = &a->conf->proxies[k];
		for (i = 0; i < a->status[k].nheld; i++) {
			if ((rc = get_port(a, txn, a->status[k].held[i], owner,
			    sizeof(owner), &released)) != 0)
				goto out;
			if (owner[0] == '\0' || released != 0 ||
			    get_owner(a, txn, owner, &rec, NULL) != 0 ||
			    rec.state != OWN_ACTIVE)
				continue;
			add_fault(&f, &n, &cap, owner, rec.port, "port %u is "
			    "held by another program on proxy %s", rec.port,
			    px->name);
		}
		if (!(a->status[k].has & F_FGEN))
			continue;
		list = collect_owners(a, txn, "", keep_failed, (uint64_t)k);
		for (p = list; *p != NULL; p++)
			if (get_owner(a, txn, *p, &rec, NULL) == 0)
				add_fault(&f, &n, &cap, *p, rec.port, "proxy "
				    "%s cannot apply its configuration (%s); "
				    "port %u is not served yet", px->name,
				    a->status[k].why, rec.port);
		free_list(list);
	}
	if (n > 0)
		qsort(f, n, sizeof(*f), cmp_fault);
	rc = faults_merge(a, txn, f, n, now);
 out:
	for (i = 0; i < n; i++)
		free(f[i].owner);
	free(f);
	return rc;
}

/*
 * A proxy serves generation g: every port assigned at or before the lowest
 * generation all proxies serve is live, and its address can be written;
 * but not a port another program holds on any proxy's host.
 */
static int
on_applied(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char name[96], **list, **p;
	uint64_t g, low = UINT64_MAX;
	struct owner_rec rec;
	struct event set, d;
	int i, k, held, rc = 0;

	for (i = 0; i < a->conf->nproxies; i++) {
		snprintf(name, sizeof(name), "applied.%s",
		    a->conf->proxies[i].name);
		if (strcmp(a->conf->proxies[i].name, obs->proxy) == 0)
			g = obs->gen;
		else if (store_get_u64(a->st, txn, name, &g) != 0)
			g = 0;
		if (g < low)
			low = g;
	}
	if ((a->status = calloc((size_t)a->conf->nproxies,
	    sizeof(*a->status))) == NULL)
		fatal("alloc: status");
	for (i = 0; rc == 0 && i < a->conf->nproxies; i++)
		rc = get_status(a, txn, a->conf->proxies[i].name,
		    &a->status[i]);
	list = rc == 0 ? unlive_owners(a, txn, &rc) : NULL;
	for (p = list; p != NULL && *p != NULL && rc == 0; p++) {
		if ((rc = get_owner(a, txn, *p, &rec, &set)) != 0)
			break;
		for (k = 0, held = 0; k < a->conf->nproxies; k++)
			held |= held_by(&a->status[k], rec.port);
		if (keep_unlive(a, &rec, low) && !held) {
			rec.live = 1;
			live_event(&d, &set, rec.port);
			if ((rc = emit(a, txn, &d, obs->time)) == 0 &&
			    (rc = put_owner(a, txn, *p, &rec, &set)) == 0)
				rc = unlive_mark(a, txn, *p, 0);
		}
		event_free(&set);
	}
	if (list != NULL)
		free_list(list);
	if (rc == 0)
		rc = faults_update(a, txn, obs->time);
	for (i = 0; i < a->conf->nproxies; i++)
		event_free(&a->status[i]);
	free(a->status);
	a->status = NULL;
	return rc;
}

static int
keep_waiting(const struct alloc *a, const struct owner_rec *rec,
    uint64_t unused)
{
	(void)a;
	(void)unused;
	return rec->state == OWN_REFUSED && rec->waiting;
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
static char **
owners_in_order(struct alloc *a, MDB_txn *txn, const char *prefix,
    int (*keep)(const struct alloc *, const struct owner_rec *, uint64_t),
    size_t *n)
{
	char **list = collect_owners(a, txn, prefix, keep, 0);
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
		if (get_owner(a, txn, list[i], &rec, NULL) != 0)
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

/* The waiting owners, first come first. */
static char **
waiting_owners(struct alloc *a, MDB_txn *txn, size_t *n)
{
	return owners_in_order(a, txn, "", keep_waiting, n);
}

static int
keep_limited(const struct alloc *a, const struct owner_rec *rec,
    uint64_t unused)
{
	(void)a;
	(void)unused;
	return rec->state == OWN_REFUSED && rec->limited;
}

/*
 * The cluster's use may have shrunk: its routes refused by a limit are
 * looked at again, first refused first, each that now fits handled as if
 * seen again.  Those that still do not fit are left as they are, unsaid.
 */
static int
retry_limited(struct alloc *a, MDB_txn *txn, const char *cluster,
    uint64_t now)
{
	char prefix[80], **list, why[256];
	struct owner_rec rec;
	struct event route;
	size_t i, n;
	int rc = 0;

	if (!limits_waiting(a, txn, cluster))
		return 0;
	snprintf(prefix, sizeof(prefix), "%s/", cluster);
	list = owners_in_order(a, txn, prefix, keep_limited, &n);
	for (i = 0; i < n && rc == 0; i++) {
		if ((rc = get_owner(a, txn, list[i], &rec, &route)) != 0) {
			rc = rc == MDB_NOTFOUND ? 0 : rc;
			continue;
		}
		if (route.type == EV_ROUTE && (rc = route_limited(a, txn,
		    &route, &rec, &route, why, sizeof(why))) == 0) {
			if (why[0] != '\0') {
				/* first refused, first served: the rest wait */
				event_free(&route);
				break;
			}
			route.time = now;
			rc = on_route(a, txn, &route);
		}
		event_free(&route);
	}
	free_list(list);
	return rc;
}

/*
 * A route observation (or a sync's end), then the cluster's routes refused
 * by a limit looked at again if it made room: only then, so that a cluster
 * holding many refused routes does not make every one of its observations
 * walk them.
 */
static int
on_route_room(struct alloc *a, MDB_txn *txn, const struct event *in)
{
	struct lim_use before, after;
	int rc;

	if ((rc = owners_count(a, txn)) != 0 ||
	    (rc = limits_sum(a, txn, in->cluster, &before)) != 0)
		return rc;
	switch (in->type) {
	case EV_ROUTE:
		rc = on_route(a, txn, in);
		break;
	case EV_ROUTE_GONE:
		rc = on_route_gone(a, txn, in);
		break;
	default:
		rc = on_sync(a, txn, in);
		break;
	}
	if (rc != 0 || (rc = limits_sum(a, txn, in->cluster, &after)) != 0 ||
	    !limits_shrunk(&before, &after))
		return rc;
	return retry_limited(a, txn, in->cluster, in->time);
}

/* Held on a port the configuration no longer gives out. */
static int
keep_stranded(const struct alloc *a, const struct owner_rec *rec,
    uint64_t unused)
{
	const struct config *c = a->conf;

	(void)unused;
	return rec->state == OWN_ACTIVE &&
	    (!ports_contain(&c->ports, rec->port) ||
	    ports_contain(&c->reserved, rec->port) || rec->port == c->api_port);
}

char **
alloc_stranded(struct alloc *a, MDB_txn *txn)
{
	return collect_owners(a, txn, "", keep_stranded, 0);
}

static int
del_port(struct alloc *a, MDB_txn *txn, unsigned p)
{
	unsigned char k[2] = { (unsigned char)(p >> 8), (unsigned char)p };
	MDB_val key = { 2, k };
	int rc = mdb_del(txn, a->st->ports, &key, NULL);

	forget_full(a);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * The ports shrank (allow_shrink): each owner stranded off them moves to a
 * port of the new set.  Its old port is not quarantined: nobody else can
 * have it any more.
 */
static int
move_stranded(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct owner_rec rec;
	struct event set, d;
	char **list, **p;
	unsigned np, old;
	int rc = 0;

	if (!a->conf->allow_shrink)
		return 0;
	list = alloc_stranded(a, txn);
	for (p = list; *p != NULL && rc == 0; p++) {
		if ((rc = get_owner(a, txn, *p, &rec, &set)) != 0)
			break;
		old = rec.port;
		route_event(&d, EV_PORT_FREE, &set);
		d.port = old;
		d.has |= F_PORT;
		if ((rc = emit(a, txn, &d, obs->time)) == 0 &&
		    (rc = del_port(a, txn, old)) == 0) {
			rec.state = OWN_REFUSED;	/* holds nothing now */
			if ((np = port_pick(a, txn, *p, obs->time)) != 0) {
				set.time = obs->time;
				rc = assign(a, txn, &set, *p, &rec, np);
			} else {
				rec.waiting = 1;
				rec.set_seq = a->seq;
				set.type = EV_ROUTE;	/* what it waits with */
				rc = refuse(a, txn, &set, *p, &rec, &set,
				    "no free port after the ports shrank");
			}
		}
		event_free(&set);
	}
	free_list(list);
	return rc;
}

static int
on_tick(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct owner_rec rec;
	struct event route;
	char **list, why[256];
	size_t i, n;
	unsigned p;
	int rc;

	if ((rc = move_stranded(a, txn, obs)) != 0)
		return rc;
	list = waiting_owners(a, txn, &n);
	for (i = 0; i < n && rc == 0; i++) {
		if ((rc = get_owner(a, txn, list[i], &rec, &route)) != 0)
			break;
		if (route.type == EV_ROUTE && (rc = route_limited(a, txn,
		    &route, &rec, &route, why, sizeof(why))) == 0 &&
		    why[0] != '\0') {
			/* its cluster took its share meanwhile: it waits for
			 * room there now, in the order it asked */
			rec.waiting = 0;
			rec.limited = 1;
			route.time = obs->time;
			rc = refuse(a, txn, &route, list[i], &rec, &route, why);
			event_free(&route);
			continue;
		}
		if (rc != 0 || route.type != EV_ROUTE ||
		    (p = port_pick(a, txn, list[i], obs->time)) == 0) {
			event_free(&route);
			break;		/* no port yet: the others wait too */
		}
		route.time = obs->time;
		rc = assign(a, txn, &route, list[i], &rec, p);
		event_free(&route);
	}
	free_list(list);
	return rc;
}

int
alloc_tick_due(struct alloc *a, MDB_txn *txn, uint64_t now)
{
	char **list;
	size_t n;
	int due;

	if (a->full && now < a->full_until && a->nfull_claims == 0)
		return 0;	/* no port is free for anyone: skip the scan */
	list = waiting_owners(a, txn, &n);
	due = n > 0 && port_pick_dry(a, txn, list[0], now, 1) != 0;
	free_list(list);
	return due;
}

/*
 * A store loss: from STORE_LOST to ADOPT_END (logged together, with the
 * observations held meanwhile between them, claims first) the ports
 * written on objects are adopted; ADOPT_END says what that cost.
 */
static int
on_adopt(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct event d;
	uint64_t refused = a->nbadproof + a->ntaken;

	if (obs->type == EV_STORE_LOST) {
		a->adopting = 1;
		a->adopt_unproven = obs->sfirst != 0;
		a->nadopted = a->nbadproof = a->ntaken = 0;
		return 0;
	}
	if (!a->adopting)
		return 0;
	a->adopting = a->adopt_unproven = 0;
	event_init(&d, EV_RECOVERED);
	d.sadopt = a->nadopted;
	d.srefused = refused;
	d.has = F_SADOPT | F_SREFUSED;
	if (snprintf(d.why, sizeof(d.why), "adopted %llu owners; refused %llu "
	    "claims: %llu without a valid proof, %llu on a port already held",
	    (unsigned long long)a->nadopted, (unsigned long long)refused,
	    (unsigned long long)a->nbadproof, (unsigned long long)a->ntaken) > 0)
		d.has |= F_WHY;
	return emit(a, txn, &d, obs->time);
}

int
alloc_observe(struct alloc *a, MDB_txn *txn, const struct event *in)
{
	struct event obs;
	char name[96];
	uint64_t g;
	int i, rc;

	if (in->type == EV_APPLIED) {
		for (i = 0; i < a->conf->nproxies; i++)
			if (strcmp(a->conf->proxies[i].name, in->proxy) == 0)
				break;
		snprintf(name, sizeof(name), "applied.%s", in->proxy);
		if (i == a->conf->nproxies) {
			log_warnx("alloc: APPLIED from unknown proxy %s",
			    in->proxy);
			return 1;
		}
		if ((rc = get_status(a, txn, in->proxy, &obs)) != 0)
			return rc;
		/*
		 * An older generation is stale, unless it says a failure: an
		 * applyd that restarted and cannot start its proxy serves
		 * nothing, whatever it acked before.
		 */
		i = store_get_u64(a->st, txn, name, &g) == 0 &&
		    ((g > in->gen && !(in->has & F_FGEN)) ||
		    (g == in->gen && status_same(&obs, in)));
		event_free(&obs);
		if (i)
			return 1;	/* nothing new: not logged */
		if ((rc = store_put_u64(a->st, txn, name, in->gen)) != 0 ||
		    (rc = put_status(a, txn, in)) != 0)
			return rc;
	}
	if (event_copy(&obs, in) == -1)
		fatal("alloc_observe");
	if ((rc = emit(a, txn, &obs, in->time)) != 0)
		return rc;
	switch (in->type) {
	case EV_CLUSTER_UP:
		return on_cluster_up(a, txn, in);
	case EV_CLUSTER_DOWN:
		return on_cluster_down(a, txn, in);
	case EV_ROUTE:
	case EV_ROUTE_GONE:
	case EV_SYNC_BEGIN:
	case EV_SYNC_END:
		return on_route_room(a, txn, in);
	case EV_APPLIED:
		return on_applied(a, txn, in);
	case EV_TICK:
		return on_tick(a, txn, in);
	case EV_SNAPSHOT:
		return 0;	/* compact.c copies the tables as they are now */
	case EV_STORE_LOST:
	case EV_ADOPT_END:
		return on_adopt(a, txn, in);
	}
	return 0;
}

/* The route event of type for an owner key "cluster/ns/name/route". */
static int
owner_event(struct event *ev, int type, const MDB_val *key)
{
	char buf[EV_OWNERLEN], *f[4], *p = buf, *end;
	int i;

	if (key->mv_size >= sizeof(buf))
		return -1;
	memcpy(buf, key->mv_data, key->mv_size);
	buf[key->mv_size] = '\0';
	for (i = 0; i < 4; i++)
		if ((f[i] = strsep(&p, "/")) == NULL)
			return -1;
	event_init(ev, type);
	ev->route = strtoull(f[3], &end, 10);
	ev->has |= F_ROUTE;
	if (p != NULL || *end != '\0' || event_set_str(ev, F_CLUSTER, f[0]) ||
	    event_set_str(ev, F_NS, f[1]) || event_set_str(ev, F_NAME, f[2]))
		return -1;
	return 0;
}

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

	own = meta_list(a, txn, FAULT_PREFIX, &why);
	for (n = 0; own[n] != NULL; n++)
		;
	for (i = 0; i < n && rc == 0; i++) {
		key.mv_size = strlen(own[i]);
		key.mv_data = own[i];
		if (get_owner(a, txn, own[i], &rec, NULL) != 0 ||
		    rec.state != OWN_ACTIVE ||
		    owner_event(&ev, EV_PORT_FAULT, &key) == -1 ||
		    event_set_str(&ev, F_WHY, why[i]) == -1)
			continue;
		ev.port = rec.port;
		ev.has |= F_PORT;
		rc = fn(&ev, arg);
	}
	free_list(own);
	free_list(why);
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
	MDB_val key, val;
	char err[128];
	int rc = 0, op;

	if (mdb_cursor_open(txn, a->st->clusters, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; rc == 0 &&
	    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		/* LMDB does not align values: copy the record out */
		if (val.mv_size <= sizeof(crec))
			continue;
		memcpy(&crec, val.mv_data, sizeof(crec));
		if (!crec.up)
			continue;
		if (event_decode(&ev, (char *)val.mv_data + sizeof(crec),
		    val.mv_size - sizeof(crec), err, sizeof(err)) == -1)
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
		memcpy(&rec, val.mv_data, sizeof(rec));
		if (rec.state == OWN_ACTIVE) {
			if (event_decode(&set, (char *)val.mv_data +
			    sizeof(rec), val.mv_size - sizeof(rec), err,
			    sizeof(err)) == -1 || set.type != EV_PORT_SET)
				fatalx("alloc: owner %.*s: no PORT_SET",
				    (int)key.mv_size, (char *)key.mv_data);
			rc = fn(&set, arg);
			if (rc == 0 && rec.live) {
				live_event(&ev, &set, rec.port);
				rc = fn(&ev, arg);
			}
			event_free(&set);
		}
		if (rc == 0 && rec.state != OWN_QUARANTINED &&
		    rec.why[0] != '\0' &&
		    owner_event(&ev, EV_REFUSED, &key) == 0) {
			event_set_str(&ev, F_WHY, rec.why);
			rc = fn(&ev, arg);
		}
	}
	mdb_cursor_close(cur);
	return rc == 0 ? state_faults(a, txn, fn, arg) : rc;
}

int
alloc_port_of(struct alloc *a, MDB_txn *txn, const char *owner,
    unsigned *port)
{
	struct owner_rec rec;

	*port = 0;
	if (get_owner(a, txn, owner, &rec, NULL) == 0 &&
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
