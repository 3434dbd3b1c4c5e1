/*
 * allocd — the ports table: who may have a port, and the probe for a
 * free one (with the memory of a full set).
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

/* Port p's holder into owner (empty when free) and its release time. */
int
alloc_get_port(struct alloc *a, MDB_txn *txn, unsigned p, char *owner,
    size_t olen, uint64_t *released)
{
	int rc = store_port_get(a->st, txn, p, owner, olen, released);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
alloc_put_port(struct alloc *a, MDB_txn *txn, unsigned p, const char *owner,
    uint64_t released)
{
	return store_port_put(a->st, txn, p, owner, released);
}

/* Ports. */

/*
 * May owner have port p, held by holder (empty: free) since released, at
 * time now?  0 yes; -1 no, with the reason in why.  A port whose
 * quarantine has run out is taken from its old owner here (unless dry).
 */
static int
holder_yields(struct alloc *a, MDB_txn *txn, unsigned p, const char *owner,
    const char *holder, uint64_t released, uint64_t now, char *why,
    size_t whylen, int dry)
{
	uint64_t until;
	struct owner_rec rec;

	if (holder[0] == '\0' || strcmp(holder, owner) == 0)
		return 0;
	until = released + (uint64_t)a->conf->quarantine * 1000;
	if (released != 0 && now >= until) {
		/* the old owner's claim has lapsed */
		if (!dry && alloc_get_owner(a, txn, holder, &rec, NULL) == 0 &&
		    rec.state != OWN_ACTIVE && rec.port == p)
			alloc_del_owner(a, txn, holder);
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
port_reserved(const struct config *c, unsigned p)
{
	return p == c->api_port || ports_contain(&c->reserved, p);
}

/*
 * May owner have port p at time now?  0 yes; -1 no, with the reason in why.
 * A port whose quarantine has run out is taken from its old owner here.
 */
int
alloc_port_avail(struct alloc *a, MDB_txn *txn, unsigned p, const char *owner,
    uint64_t now, char *why, size_t whylen)
{
	const struct config *c = a->conf;
	char holder[EV_OWNERLEN];
	uint64_t released;

	if (!ports_contain(&c->ports, p)) {
		char set[CONF_MAX_RANGES * 12];

		ports_format(&c->ports, set, sizeof(set));
		/* a long set may be cut short: the reason is still clear */
		if ((size_t)snprintf(why, whylen, "port %u is outside %s", p,
		    set) >= whylen)
			why[whylen - 1] = '\0';
		return -1;
	}
	if (port_reserved(c, p)) {
		snprintf(why, whylen, "port %u is reserved", p);
		return -1;
	}
	if (alloc_get_port(a, txn, p, holder, sizeof(holder), &released) != 0)
		return -1;
	return holder_yields(a, txn, p, owner, holder, released, now, why,
	    whylen, 0);
}

static int
cmp_claim(const void *x, const void *y)
{
	uint64_t a = ((const struct alloc_claim *)x)->hash,
	    b = ((const struct alloc_claim *)y)->hash;

	return a < b ? -1 : a > b;
}

/* Add owner's claim (hash h) at i, keeping the array sorted. */
static void
claim_insert(struct alloc *a, size_t i, uint64_t h, const char *owner,
    size_t len)
{
	struct alloc_claim *nc;
	char *o;

	if (a->nfull_claims == a->capfull_claims) {
		a->capfull_claims = a->capfull_claims ?
		    a->capfull_claims * 2 : 64;
		if ((nc = reallocarray(a->full_claims, a->capfull_claims,
		    sizeof(*nc))) == NULL)
			fatal("alloc: full");
		a->full_claims = nc;
	}
	if ((o = strndup(owner, len)) == NULL)
		fatal("alloc: full");
	memmove(&a->full_claims[i + 1], &a->full_claims[i],
	    (a->nfull_claims - i) * sizeof(*a->full_claims));
	a->full_claims[i].hash = h;
	a->full_claims[i].owner = o;
	a->nfull_claims++;
}

/*
 * A probe found no port: remember it until the first quarantine runs out,
 * with the owners who hold a quarantined port (it would be free to them).
 */
static void
remember_full(struct alloc *a, MDB_txn *txn)
{
	uint64_t q = (uint64_t)a->conf->quarantine * 1000, until = UINT64_MAX;
	MDB_cursor *cur;
	MDB_val key, val, owner;
	uint64_t released;
	unsigned p;
	int op;

	alloc_forget_full(a);
	if (mdb_cursor_open(txn, a->st->ports, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; mdb_cursor_get(cur, &key, &val, op) == 0;
	    op = MDB_NEXT) {
		if (store_port_decode(&key, &val, &p, &released, &owner) == -1)
			fatalx("alloc: a bad port record");
		if (released == 0)
			continue;
		if (released + q < until)
			until = released + q;
		claim_insert(a, a->nfull_claims, hash_fnv1a_n(owner.mv_data,
		    owner.mv_size), owner.mv_data, owner.mv_size);
	}
	mdb_cursor_close(cur);
	if (a->nfull_claims > 1)
		qsort(a->full_claims, a->nfull_claims,
		    sizeof(*a->full_claims), cmp_claim);
	a->full = 1;
	a->full_until = until;
}

/*
 * owner's port went into quarantine at released: while the set is known
 * full, that port is free to owner alone, and to anyone once its
 * quarantine runs out, which is after the first one remembered, if any.
 */
void
alloc_full_claim(struct alloc *a, const char *owner, uint64_t released)
{
	uint64_t h = hash_fnv1a(owner), until;
	size_t lo = 0, hi = a->nfull_claims, mid, i;

	if (!a->full)
		return;
	until = released + (uint64_t)a->conf->quarantine * 1000;
	if (until < a->full_until)
		a->full_until = until;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (a->full_claims[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i < a->nfull_claims && a->full_claims[i].hash == h; i++)
		if (strcmp(a->full_claims[i].owner, owner) == 0)
			return;		/* claimed already */
	claim_insert(a, lo, h, owner, strlen(owner));
}

/*
 * While the set is known full, only an owner with a claim can be given a
 * port: does one of them wait for one?  A look per claim, where the scan
 * of the waiting owners reads them all.
 */
int
alloc_full_claim_waits(struct alloc *a, MDB_txn *txn)
{
	struct owner_rec rec;
	size_t i;

	for (i = 0; i < a->nfull_claims; i++)
		if (alloc_get_owner(a, txn, a->full_claims[i].owner, &rec,
		    NULL) == 0 && rec.state == OWN_REFUSED && rec.waiting)
			return 1;
	return 0;
}

/* Known to find no port for owner at now, without probing? */
static int
known_full(const struct alloc *a, const char *owner, uint64_t now)
{
	struct alloc_claim c;

	if (!a->full || now >= a->full_until)
		return 0;
	if (a->nfull_claims == 0)
		return 1;
	c.hash = hash_fnv1a(owner);
	return bsearch(&c, a->full_claims, a->nfull_claims,
	    sizeof(*a->full_claims), cmp_claim) == NULL;
}

/*
 * The first port owner may have among the set's k0-th to k1-th (exclusive),
 * in order, or 0.  One cursor walks the ports table beside them: a port
 * between two records is free, and each record is read once, where
 * looking each port up cost a descent of the tree (a probe of 30,768
 * ports took 20-30 ms; a TICK makes one or two).
 */
static unsigned
probe(struct alloc *a, MDB_txn *txn, MDB_cursor *cur, const char *owner,
    uint64_t now, unsigned k0, unsigned k1)
{
	char holder[EV_OWNERLEN], why[256];
	uint64_t released;
	unsigned k, p, at = 0, lo = 0x10000;	/* no record in [lo, at) */
	int rc = MDB_NOTFOUND;

	for (k = k0; k < k1; k++) {
		p = ports_nth(&a->conf->ports, k);
		if (port_reserved(a->conf, p))
			continue;
		if (p < lo) {
			/* the first port, or in a range below the last */
			rc = store_port_walk(cur, 1, p, &at, holder,
			    sizeof(holder), &released);
			lo = p;
		}
		while (rc == 0 && at < p) {
			lo = at + 1;
			rc = store_port_walk(cur, 0, 0, &at, holder,
			    sizeof(holder), &released);
		}
		if (rc != 0 && rc != MDB_NOTFOUND)
			fatalx("alloc: ports: %s", mdb_strerror(rc));
		if (rc == MDB_NOTFOUND || at > p ||
		    holder_yields(a, txn, p, owner, holder, released, now,
		    why, sizeof(why), 1) == 0)
			return p;	/* no record (free), or it yields */
	}
	return 0;
}

/* dry: only look, change nothing (to decide whether a TICK is due) */
unsigned
alloc_port_pick_dry(struct alloc *a, MDB_txn *txn, const char *owner,
    uint64_t now, int dry)
{
	unsigned size = ports_count(&a->conf->ports), k, p;
	MDB_cursor *cur;
	char why[256];

	if (known_full(a, owner, now))
		return 0;

	/* the preferred port, then upward through the set, wrapping */
	k = (unsigned)(hash_fnv1a(owner) % size);
	if (mdb_cursor_open(txn, a->st->ports, &cur) != 0)
		fatalx("alloc: cursor");
	if ((p = probe(a, txn, cur, owner, now, k, size)) == 0)
		p = probe(a, txn, cur, owner, now, 0, k);
	mdb_cursor_close(cur);
	if (p != 0) {
		/* a lapsed holder's record goes now, no cursor open */
		if (!dry)
			(void)alloc_port_avail(a, txn, p, owner, now, why,
			    sizeof(why));
		return p;
	}
	remember_full(a, txn);
	return 0;
}

unsigned
alloc_port_pick(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t now)
{
	return alloc_port_pick_dry(a, txn, owner, now, 0);
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
	return alloc_collect_owners(a, txn, "", keep_stranded, 0);
}

static int
del_port(struct alloc *a, MDB_txn *txn, unsigned p)
{
	alloc_forget_full(a);
	return store_port_del(a->st, txn, p);
}

/*
 * The ports shrank (allow_shrink): each owner stranded off them moves to a
 * port of the new set.  Its old port is not quarantined: nobody else can
 * have it any more.
 */
int
alloc_move_stranded(struct alloc *a, MDB_txn *txn, const struct event *obs)
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
		if ((rc = alloc_get_owner(a, txn, *p, &rec, &set)) != 0)
			break;
		old = rec.port;
		alloc_route_event(&d, EV_PORT_FREE, &set);
		d.port = old;
		d.has |= F_PORT;
		if ((rc = alloc_emit(a, txn, &d, obs->time)) == 0 &&
		    (rc = del_port(a, txn, old)) == 0) {
			rec.state = OWN_REFUSED;	/* holds nothing now */
			if ((np = alloc_port_pick(a, txn, *p,
			    obs->time)) != 0) {
				set.time = obs->time;
				rc = alloc_assign(a, txn, &set, *p, &rec, np);
			} else {
				rec.waiting = 1;
				rec.set_seq = a->seq;
				set.type = EV_ROUTE;	/* what it waits with */
				rc = alloc_refuse(a, txn, &set, *p, &rec, &set,
				    "no free port after the ports shrank");
			}
		}
		event_free(&set);
	}
	alloc_free_list(list);
	return rc;
}
