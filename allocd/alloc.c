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
#include "alloc_impl.h"
#include "hash.h"
#include "hosts.h"
#include "limits.h"
#include "log.h"
#include "proof.h"
#include "sni.h"

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

	for (i = 0; i < a->nout; i++) {
		event_free(&a->out[i]);
		free(a->outenc[i]);
	}
	a->nout = 0;
}

void
alloc_forget_full(struct alloc *a)
{
	size_t i;

	a->full = 0;
	for (i = 0; i < a->nfull_claims; i++)
		free(a->full_claims[i].owner);
	free(a->full_claims);
	a->full_claims = NULL;
	a->nfull_claims = a->capfull_claims = 0;
}

void
alloc_rollback(struct alloc *a, uint64_t seq)
{
	a->seq = seq;
	alloc_clear(a);
	alloc_forget_full(a);
	a->nfaults = -1;
	a->lim_built = 0;
}

void
alloc_free(struct alloc *a)
{
	alloc_clear(a);
	alloc_forget_full(a);
	free(a->out);
	free(a->outenc);
	free(a->outlen);
	a->out = NULL;
	a->outenc = NULL;
	a->outlen = NULL;
	a->capout = 0;
}

/*
 * Log ev under the next seq and queue it; takes ownership of ev's heap.
 * It is encoded here, once: the log, the PUB and (for a PORT_SET) the
 * owner record are given the same bytes (alloc_emitted).
 */
int
alloc_emit(struct alloc *a, MDB_txn *txn, struct event *ev, uint64_t time)
{
	unsigned char *buf;
	size_t cap, len;
	int rc;

	ev->seq = ++a->seq;
	ev->time = time;
	if (event_encode(ev, &buf, &len) == -1)
		fatalx("alloc: %s lacks a required field",
		    event_name(ev->type));
	if ((rc = store_append_raw(a->st, txn, ev->seq, buf, len)) != 0) {
		free(buf);
		return rc;
	}
	if (a->nout == a->capout) {
		cap = a->capout ? a->capout * 2 : 64;
		if ((a->out = reallocarray(a->out, cap, sizeof(*a->out))) ==
		    NULL || (a->outenc = reallocarray(a->outenc, cap,
		    sizeof(*a->outenc))) == NULL || (a->outlen =
		    reallocarray(a->outlen, cap, sizeof(*a->outlen))) == NULL)
			fatal("alloc: out");
		a->capout = cap;
	}
	a->out[a->nout] = *ev;
	a->outenc[a->nout] = buf;
	a->outlen[a->nout++] = len;
	return 0;
}

void
alloc_route_event(struct event *ev, int type, const struct event *obs)
{
	event_init(ev, type);
	memcpy(ev->cluster, obs->cluster, sizeof(ev->cluster));
	memcpy(ev->ns, obs->ns, sizeof(ev->ns));
	memcpy(ev->name, obs->name, sizeof(ev->name));
	ev->route = obs->route;
	ev->has = F_CLUSTER | F_NS | F_NAME | F_ROUTE;
	/* the kind is part of the owner: every decision about it says it */
	if ((obs->has & F_RKIND) && obs->rkind[0] != '\0') {
		memcpy(ev->rkind, obs->rkind, sizeof(ev->rkind));
		ev->has |= F_RKIND;
	}
}

/*
 * The route kinds that hold a port: Istio's VirtualService (no rk) and
 * the Gateway API's TCPRoute.  Any other kind on a ROUTE is a watcherd
 * newer than this allocd, or a bug: it is dropped, never given a port.
 */
static int
port_kind(const struct event *obs)
{
	return !(obs->has & F_RKIND) || obs->rkind[0] == '\0' ||
	    strcmp(obs->rkind, "tcp") == 0;
}

/* PORT_LIVE for set's owner at port, with the proof watcherd writes. */
void
alloc_live_event(struct event *d, const struct event *set, uint64_t port)
{
	alloc_route_event(d, EV_PORT_LIVE, set);
	d->port = port;
	d->has |= F_PORT;
	proof_put(d, set->uid);
}

static int
backends_equal(const struct event *x, const struct event *y)
{
	return x->nbackends == y->nbackends && (x->nbackends == 0 ||
	    memcmp(x->backends, y->backends,
	    x->nbackends * sizeof(struct backend)) == 0);
}

int
alloc_refuse(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const char *owner, struct owner_rec *rec, const struct event *set,
    const char *why)
{
	struct event d;
	int rc;

	if (strcmp(rec->why, why) == 0)	/* already said; keep the rest */
		return alloc_put_owner(a, txn, owner, rec, set);
	snprintf(rec->why, sizeof(rec->why), "%s", why);
	if ((rc = alloc_put_owner(a, txn, owner, rec, set)) != 0)
		return rc;
	alloc_route_event(&d, EV_REFUSED, obs);
	event_set_str(&d, F_WHY, rec->why);
	return alloc_emit(a, txn, &d, obs->time);
}

int
alloc_assign(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const char *owner, struct owner_rec *rec, unsigned p)
{
	struct event d, keep;
	size_t i;
	int rc;

	/*
	 * The port an active owner holds says so already (only this writes
	 * a holder with no release time): new backends on the same port
	 * leave the ports table alone, where a put would dirty a page of it
	 * for every such change.
	 */
	if ((rec->state != OWN_ACTIVE || rec->port != p) &&
	    (rc = alloc_put_port(a, txn, p, owner, 0)) != 0)
		return rc;
	alloc_route_event(&d, EV_PORT_SET, obs);
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
	if ((rc = alloc_emit(a, txn, &d, obs->time)) != 0)
		return rc;
	i = a->nout - 1;	/* d, as logged */
	if (rec->state != OWN_ACTIVE || rec->port != p) {
		/* a new address waits for the proxies */
		rec->live = 0;
		if ((rc = alloc_fault_forget(a, txn, owner)) != 0 ||
		    (rc = alloc_unlive_mark(a, txn, owner, 1)) != 0)
			return rc;
	}
	rec->port = (uint16_t)p;
	rec->state = OWN_ACTIVE;
	rec->waiting = 0;
	rec->set_seq = d.seq;
	rec->why[0] = '\0';
	return alloc_put_owner_enc(a, txn, owner, rec, &a->out[i],
	    a->outenc[i], a->outlen[i]);
}

static int
release(struct alloc *a, MDB_txn *txn, const char *owner,
    struct owner_rec *rec, const struct event *set, uint64_t now)
{
	struct event d;
	int rc;

	if (rec->state != OWN_ACTIVE) {
		/* nothing held: a refused owner is simply forgotten */
		return rec->state == OWN_REFUSED ?
		    alloc_del_owner(a, txn, owner) : 0;
	}
	if ((rc = alloc_put_port(a, txn, rec->port, owner, now)) != 0)
		return rc;
	if (a->conf->quarantine == 0 || now == 0)
		alloc_forget_full(a);	/* free at once, to anyone */
	else
		alloc_full_claim(a, owner, now);
	alloc_route_event(&d, EV_PORT_FREE, set);
	d.port = rec->port;
	d.has |= F_PORT;
	if ((rc = alloc_emit(a, txn, &d, now)) != 0)
		return rc;
	if ((rc = alloc_fault_forget(a, txn, owner)) != 0 ||
	    (!rec->live && (rc = alloc_unlive_mark(a, txn, owner, 0)) != 0))
		return rc;
	rec->state = OWN_QUARANTINED;
	rec->live = 0;
	rec->why[0] = '\0';
	return alloc_put_owner(a, txn, owner, rec, set);
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
	if (alloc_port_avail(a, txn, (unsigned)obs->had, owner, obs->time, why,
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
	alloc_live_event(&d, obs, rec->port);
	return alloc_emit(a, txn, &d, obs->time);
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

	if (!port_kind(obs)) {
		log_warnx("alloc: %s/%s/%s: route kind %s takes no port",
		    obs->cluster, obs->ns, obs->name, obs->rkind);
		return 0;
	}
	if (event_owner(obs, owner, sizeof(owner)) == -1)
		return 0;
	have = alloc_get_owner(a, txn, owner, &rec, &set) == 0;
	if (!have) {
		memset(&rec, 0, sizeof(rec));
		event_init(&set, EV_NONE);
	}
	alloc_get_cluster(a, txn, obs->cluster, &crec, NULL);
	rec.seen_sync = crec.sync_seq;
	limited = rec.limited;
	rec.limited = 0;

	if (obs->has & F_WHY)
		snprintf(why, sizeof(why), "%s", obs->why);
	else if ((rc = alloc_route_limited(a, txn, obs, &rec, &set, why,
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
	    alloc_backends_forbidden(a, &set)) {
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
		rc = alloc_refuse(a, txn, obs, owner, &rec,
		    rec.limited ? obs : &set, why);
		goto done;
	}
	if (rec.state == OWN_ACTIVE) {
		if ((obs->has & F_WANT) && obs->want != rec.port) {
			if (alloc_port_avail(a, txn, (unsigned)obs->want, owner,
			    obs->time, why, sizeof(why)) == -1) {
				rc = alloc_refuse(a, txn, obs, owner, &rec,
				    &set, why);
				goto done;
			}
			if ((rc = release(a, txn, owner, &rec, &set,
			    obs->time)) != 0)
				goto done;
			rc = alloc_assign(a, txn, obs, owner, &rec,
			    (unsigned)obs->want);
			goto done;
		}
		if (!backends_equal(&set, obs) || rec.why[0] != '\0' ||
		    strcmp(set.uid, obs->uid) != 0)
			rc = alloc_assign(a, txn, obs, owner, &rec, rec.port);
		else
			rc = alloc_put_owner(a, txn, owner, &rec, &set);
		if (rc == 0)
			rc = reprove(a, txn, obs, &rec);
		goto done;
	}
	if ((obs->has & F_WANT) && alloc_port_avail(a, txn, (unsigned)obs->want,
	    owner, obs->time, why, sizeof(why)) == 0) {
		p = (unsigned)obs->want;
		if ((obs->has & F_HAD) && obs->had == obs->want)
			a->nadopted += (uint64_t)a->adopting;
	} else if (!(obs->has & F_WANT) && rec.state == OWN_QUARANTINED &&
	    alloc_port_avail(a, txn, rec.port, owner, obs->time, why,
	    sizeof(why)) == 0)
		p = rec.port;		/* coming back within quarantine */
	else if ((c = claim(a, txn, obs, owner, &rec)) == CLAIM_UNPROVEN) {
		/* claim() passes quarantines by */
		rec.state = OWN_REFUSED;
		rec.waiting = 0;
		rc = alloc_refuse(a, txn, obs, owner, &rec, &set, CLAIM_WHY);
		goto done;
	} else if (c == CLAIM_ADOPTED)
		p = (unsigned)obs->had;	/* adopted from the object */
	else if (!(obs->has & F_WANT) &&
	    (p = alloc_port_pick(a, txn, owner, obs->time)) == 0) {
		char set[CONF_MAX_RANGES * 12];

		ports_format(&a->conf->ports, set, sizeof(set));
		if ((size_t)snprintf(why, sizeof(why), "no free port in %s",
		    set) >= sizeof(why))
			why[sizeof(why) - 1] = '\0';
	}
	if (p == 0) {
		/* an owner whose old port waits in quarantine keeps it */
		if (rec.state != OWN_QUARANTINED)
			rec.state = OWN_REFUSED;
		if (rec.state == OWN_REFUSED && !(obs->has & F_WANT)) {
			/* it waits for a port, in the order it asked */
			if (!rec.waiting)
				rec.set_seq = a->seq;
			rec.waiting = 1;
			rc = alloc_refuse(a, txn, obs, owner, &rec, obs, why);
			goto done;
		}
		rec.waiting = 0;
		rc = alloc_refuse(a, txn, obs, owner, &rec, &set, why);
		goto done;
	}
	rc = alloc_assign(a, txn, obs, owner, &rec, p);
	if (rc == 0 && (obs->has & F_WANT) && p != obs->want) {
		/* adopted on its own port; what it asks for is refused */
		event_free(&set);
		if ((rc = alloc_get_owner(a, txn, owner, &rec, &set)) == 0)
			rc = alloc_refuse(a, txn, obs, owner, &rec, &set, why);
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
	    alloc_get_owner(a, txn, owner, &rec, &set) != 0)
		return 0;
	rc = release(a, txn, owner, &rec, &set, obs->time);
	event_free(&set);
	return rc;
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
int
alloc_release_cluster(struct alloc *a, MDB_txn *txn, const char *c,
    uint64_t sid, uint64_t now)
{
	char prefix[80], **list, **p;
	struct owner_rec rec;
	struct event set;
	int rc = 0;

	snprintf(prefix, sizeof(prefix), "%s/", c);
	list = alloc_collect_owners(a, txn, prefix, keep_unseen, sid);
	for (p = list; *p != NULL && rc == 0; p++) {
		if ((rc = alloc_get_owner(a, txn, *p, &rec, &set)) != 0)
			break;
		rc = release(a, txn, *p, &rec, &set, now);
		event_free(&set);
	}
	alloc_free_list(list);
	/* and its TLSRoutes' names, by the same rule */
	return rc != 0 ? rc : sni_release_cluster(a, txn, c, sid, now);
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
	list = alloc_owners_in_order(a, txn, prefix, keep_limited, &n);
	for (i = 0; i < n && rc == 0; i++) {
		if ((rc = alloc_get_owner(a, txn, list[i], &rec,
		    &route)) != 0) {
			rc = rc == MDB_NOTFOUND ? 0 : rc;
			continue;
		}
		if (route.type == EV_ROUTE && (rc = alloc_route_limited(a, txn,
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
	alloc_free_list(list);
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

	if ((rc = alloc_owners_count(a, txn)) != 0 ||
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
		rc = alloc_on_sync(a, txn, in);
		break;
	}
	if (rc != 0 || (rc = limits_sum(a, txn, in->cluster, &after)) != 0 ||
	    !limits_shrunk(&before, &after))
		return rc;
	return retry_limited(a, txn, in->cluster, in->time);
}

/*
 * Ports came free: the waiting owners are served in the order they asked,
 * each read from the head of the waiting index (which leaves it once it
 * holds a port, or waits for room in its cluster instead), until one finds
 * no port: the others wait too.
 */
static int
on_tick(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char owner[EV_OWNERLEN], last[EV_OWNERLEN] = "", why[256];
	struct owner_rec rec;
	struct event route;
	unsigned p;
	int rc;

	if ((rc = alloc_move_stranded(a, txn, obs)) != 0)
		return rc;
	while ((rc = alloc_first_waiting(a, txn, owner)) == 0) {
		if (strcmp(owner, last) == 0)
			fatalx("alloc: %s stays first of the waiting", owner);
		memcpy(last, owner, sizeof(last));
		if ((rc = alloc_get_owner(a, txn, owner, &rec, &route)) != 0) {
			if (rc == MDB_NOTFOUND)
				fatalx("alloc: waiting owner %s vanished",
				    owner);
			break;
		}
		if (route.type == EV_ROUTE && (rc = alloc_route_limited(a, txn,
		    &route, &rec, &route, why, sizeof(why))) == 0 &&
		    why[0] != '\0') {
			/* its cluster took its share meanwhile: it waits for
			 * room there now, in the order it asked */
			rec.waiting = 0;
			rec.limited = 1;
			route.time = obs->time;
			rc = alloc_refuse(a, txn, &route, owner, &rec, &route,
			    why);
			event_free(&route);
			if (rc != 0)
				break;
			continue;
		}
		if (rc != 0 || route.type != EV_ROUTE ||
		    (p = alloc_port_pick(a, txn, owner, obs->time)) == 0) {
			event_free(&route);
			break;		/* no port yet: the others wait too */
		}
		route.time = obs->time;
		rc = alloc_assign(a, txn, &route, owner, &rec, p);
		event_free(&route);
		if (rc != 0)
			break;
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
alloc_tick_due(struct alloc *a, MDB_txn *txn, uint64_t now)
{
	char owner[EV_OWNERLEN];

	if (a->full && now < a->full_until && !alloc_full_claim_waits(a, txn))
		return 0;	/* no port is free for any waiter: no scan */
	return alloc_first_waiting(a, txn, owner) == 0 &&
	    alloc_port_pick_dry(a, txn, owner, now, 1) != 0;
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
	    (unsigned long long)a->nbadproof,
	    (unsigned long long)a->ntaken) > 0)
		d.has |= F_WHY;
	return alloc_emit(a, txn, &d, obs->time);
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
		snprintf(name, sizeof(name), "%s%s", STORE_META_APPLIED,
		    in->proxy);
		if (i == a->conf->nproxies) {
			log_warnx("alloc: APPLIED from unknown proxy %s",
			    in->proxy);
			return 1;
		}
		if ((rc = alloc_get_status(a, txn, in->proxy, &obs)) != 0)
			return rc;
		/*
		 * An older generation is stale, unless it says a failure: an
		 * applyd that restarted and cannot start its proxy serves
		 * nothing, whatever it acked before.
		 */
		i = store_get_u64(a->st, txn, name, &g) == 0 &&
		    ((g > in->gen && !(in->has & F_FGEN)) ||
		    (g == in->gen && alloc_status_same(&obs, in)));
		event_free(&obs);
		if (i)
			return 1;	/* nothing new: not logged */
		if ((rc = store_put_u64(a->st, txn, name, in->gen)) != 0 ||
		    (rc = alloc_put_status(a, txn, in)) != 0)
			return rc;
	}
	if (event_copy(&obs, in) == -1)
		fatal("alloc_observe");
	if ((rc = alloc_emit(a, txn, &obs, in->time)) != 0)
		return rc;
	/*
	 * Decided from the observation as logged (its heap is a->out's now,
	 * until alloc_clear): what a record keeps of it (a waiting route)
	 * carries the log's seq, as it does when replay decides it again,
	 * not the sender's.
	 */
	in = &obs;
	switch (in->type) {
	case EV_CLUSTER_UP:
		return alloc_on_cluster_up(a, txn, in);
	case EV_CLUSTER_DOWN:
		return alloc_on_cluster_down(a, txn, in);
	case EV_ROUTE:
	case EV_ROUTE_GONE:
	case EV_SYNC_BEGIN:
	case EV_SYNC_END:
		return on_route_room(a, txn, in);
	case EV_SNI_ROUTE:
	case EV_SNI_GONE:
		return sni_observe(a, txn, in);
	case EV_APPLIED:
		return alloc_on_applied(a, txn, in);
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
