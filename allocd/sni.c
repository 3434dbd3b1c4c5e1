/*
 * allocd — TLSRoute hostnames routed by SNI (see sni.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "alloc_impl.h"
#include "limits.h"
#include "log.h"
#include "sni.h"

#define SNI_PREFIX	STORE_META_SNI
#define HOST_PREFIX	STORE_META_SNIHOST
#define COUNT_PREFIX	STORE_META_SNIN

/* The owner key of an SNI observation or decision: its kind is "tls". */
static int
sni_owner(const struct event *ev, char *buf, size_t len)
{
	int n;

	n = snprintf(buf, len, "%s/%s/%s/%llu/tls", ev->cluster, ev->ns,
	    ev->name, (unsigned long long)ev->route);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int	under(const char *, const char *);

/* Records. */

static int
rec_get(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t *seen,
    struct event *ev)
{
	char buf[sizeof(SNI_PREFIX) + EV_OWNERLEN], err[128];
	MDB_val key, val, e;
	int rc;

	alloc_meta_key(&key, buf, sizeof(buf), SNI_PREFIX, owner, NULL);
	if ((rc = store_meta_get(a->st, txn, &key, &val)) != 0)
		return rc;
	if (store_sni_decode(&val, seen, &e) == -1 ||
	    event_decode(ev, e.mv_data, e.mv_size, err, sizeof(err)) == -1 ||
	    (ev->type != EV_SNI_SET && ev->type != EV_SNI_ROUTE))
		fatalx("sni: %s: bad record", owner);
	return 0;
}

static int
rec_put(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t seen,
    const struct event *ev)
{
	char buf[sizeof(SNI_PREFIX) + EV_OWNERLEN];
	unsigned char *enc, *rec;
	MDB_val key, val;
	size_t len;
	int rc;

	if (event_encode(ev, &enc, &len) == -1)
		fatalx("sni: %s: cannot encode", owner);
	rec = store_sni_encode(seen, enc, len, &val);
	alloc_meta_key(&key, buf, sizeof(buf), SNI_PREFIX, owner, NULL);
	rc = store_meta_put(a->st, txn, &key, val.mv_data, val.mv_size);
	free(rec);
	free(enc);
	return rc;
}

static int
rec_del(struct alloc *a, MDB_txn *txn, const char *owner)
{
	char buf[sizeof(SNI_PREFIX) + EV_OWNERLEN];
	MDB_val key;

	alloc_meta_key(&key, buf, sizeof(buf), SNI_PREFIX, owner, NULL);
	return store_meta_del(a->st, txn, &key);
}

/* The owner holding host, "" when none. */
static int
holder_of(struct alloc *a, MDB_txn *txn, const char *host, char *owner,
    size_t len)
{
	char buf[sizeof(HOST_PREFIX) + 256];
	MDB_val key, val;
	int rc;

	owner[0] = '\0';
	alloc_meta_key(&key, buf, sizeof(buf), HOST_PREFIX, host, NULL);
	if ((rc = store_meta_get(a->st, txn, &key, &val)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (val.mv_size >= len)
		fatalx("sni: %s: bad holder", host);
	memcpy(owner, val.mv_data, val.mv_size);
	owner[val.mv_size] = '\0';
	return 0;
}

static uint64_t
count_of(struct alloc *a, MDB_txn *txn, const char *cluster)
{
	char buf[sizeof(COUNT_PREFIX) + 64];
	uint64_t n;

	snprintf(buf, sizeof(buf), "%s%s", COUNT_PREFIX, cluster);
	return store_get_u64(a->st, txn, buf, &n) == 0 ? n : 0;
}

/* host is now owner's (owner non-NULL), or nobody's; the count follows. */
static int
hold(struct alloc *a, MDB_txn *txn, const char *cluster, const char *host,
    const char *owner)
{
	char buf[sizeof(HOST_PREFIX) + 256], cbuf[sizeof(COUNT_PREFIX) + 64];
	uint64_t n = count_of(a, txn, cluster);
	MDB_val key;
	int rc;

	alloc_meta_key(&key, buf, sizeof(buf), HOST_PREFIX, host, NULL);
	if (owner != NULL)
		rc = store_meta_put(a->st, txn, &key, owner, strlen(owner));
	else
		rc = store_meta_del(a->st, txn, &key);
	if (rc != 0)
		return rc;
	n = owner != NULL ? n + 1 : n > 0 ? n - 1 : 0;
	alloc_meta_key(&key, cbuf, sizeof(cbuf), COUNT_PREFIX, cluster, NULL);
	if (n == 0)
		return store_meta_del(a->st, txn, &key);
	return store_put_u64(a->st, txn, cbuf, n);
}

/* Decisions. */

/* d of type about src's owner (and host, where the type has one). */
static void
sni_event(struct event *d, int type, const struct event *src)
{
	alloc_route_event(d, type, src);
	if (type == EV_REFUSED) {
		memcpy(d->rkind, "tls", sizeof("tls"));
		d->has |= F_RKIND;
	} else {
		memcpy(d->host, src->host, sizeof(d->host));
		d->has |= F_HOST;
	}
}

/* held's owner lets go of its name: SNI_DEL. */
static int
let_go(struct alloc *a, MDB_txn *txn, const struct event *held, uint64_t now)
{
	struct event d;
	int rc;

	if ((rc = hold(a, txn, held->cluster, held->host, NULL)) != 0)
		return rc;
	sni_event(&d, EV_SNI_DEL, held);
	return alloc_emit(a, txn, &d, now);
}

/*
 * route is refused for why: what its owner held goes, the refusal is said
 * unless it was already, and the route is kept with its reason (the state
 * a consumer gets after a reset says it again).
 */
static int
refuse(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t seen,
    const struct event *old, const struct event *route, const char *why,
    uint64_t now)
{
	struct event d, keep;
	char w[sizeof(d.why)];
	int rc;

	/* as much of the reason as an event carries */
	snprintf(w, sizeof(w), "%s", why);
	why = w;
	if (old->type == EV_SNI_SET && (rc = let_go(a, txn, old, now)) != 0)
		return rc;
	if (event_copy(&keep, route) == -1)
		fatal("sni: refuse");
	/* the sender's own seq is not the log's: replay must write the same */
	keep.seq = 0;
	if (event_set_str(&keep, F_WHY, why) == -1)
		fatalx("sni: %s: a reason that is no text", owner);
	rc = rec_put(a, txn, owner, seen, &keep);
	event_free(&keep);
	if (rc != 0 || (old->type == EV_SNI_ROUTE &&
	    strcmp(old->why, why) == 0))
		return rc;	/* said already */
	sni_event(&d, EV_REFUSED, route);
	event_set_str(&d, F_WHY, why);
	return alloc_emit(a, txn, &d, now);
}

/* The API host of a routed cluster, in host; "" when it has none. */
static void
api_host(struct alloc *a, MDB_txn *txn, const char *cluster, char *host,
    size_t len)
{
	struct cluster_rec rec;
	struct event api;
	MDB_val rest;
	char err[128];

	host[0] = '\0';
	if (alloc_get_cluster(a, txn, cluster, &rec, &rest) != 0 || !rec.up ||
	    rest.mv_size == 0 || event_decode(&api, rest.mv_data,
	    rest.mv_size, err, sizeof(err)) == -1)
		return;
	snprintf(host, len, "%s", api.host);
	event_free(&api);
}

/* Is name a cluster's API host (meta "host/<name>")? */
static int
is_api_host(struct alloc *a, MDB_txn *txn, const char *name)
{
	char buf[sizeof(STORE_META_HOST) + 256];
	MDB_val key, val;

	alloc_meta_key(&key, buf, sizeof(buf), STORE_META_HOST, name, NULL);
	return store_meta_get(a->st, txn, &key, &val) == 0;
}

/*
 * May obs's owner hold its hostname?  why empty if it may; otherwise a
 * reason that names only the route's own cluster's host and its own name.
 */
static int
check(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const char *owner, const struct event *old, char *why, size_t whylen)
{
	char own[256], holder[EV_OWNERLEN];
	const char *s;
	size_t hl, ol, i;
	int rc;

	why[0] = '\0';
	if (obs->has & F_WHY) {
		snprintf(why, whylen, "%s", obs->why);
		return 0;
	}
	api_host(a, txn, obs->cluster, own, sizeof(own));
	hl = strlen(obs->host);
	ol = strlen(own);
	if (ol == 0) {
		snprintf(why, whylen, "hostname %s: the cluster has no API "
		    "host of its own to route names under", obs->host);
		return 0;
	}
	if (!under(obs->host, own)) {
		snprintf(why, whylen, "hostname %s is not under the cluster's "
		    "host (*.%s)", obs->host, own);
		return 0;
	}
	/* the name, and each name between it and the cluster's host */
	for (s = obs->host; (size_t)(s - obs->host) < hl - ol - 1;
	    s = strchr(s, '.') + 1)
		if (is_api_host(a, txn, s)) {
			snprintf(why, whylen, s == obs->host ? "hostname %s is "
			    "a cluster's API host" : "hostname %s is under "
			    "another cluster's API host", obs->host);
			return 0;
		}
	for (i = 0; i < obs->nbackends; i++)
		if (limits_address(a->conf, "backend", obs->backends[i].ip,
		    why, whylen) == -1)
			return 0;
	if (a->conf->lim_backends_route != 0 &&
	    obs->nbackends > a->conf->lim_backends_route) {
		snprintf(why, whylen, "the route has %zu backends, more than "
		    "the %u a route may have", obs->nbackends,
		    a->conf->lim_backends_route);
		return 0;
	}
	if ((rc = holder_of(a, txn, obs->host, holder, sizeof(holder))) != 0)
		return rc;
	if (holder[0] != '\0' && strcmp(holder, owner) != 0) {
		/* first holder keeps it; who that is is not ours to say */
		snprintf(why, whylen, "hostname %s is held by another route",
		    obs->host);
		return 0;
	}
	if (holder[0] == '\0' && a->conf->lim_sni != 0 &&
	    count_of(a, txn, obs->cluster) - (old->type == EV_SNI_SET) >=
	    a->conf->lim_sni)
		snprintf(why, whylen, "the cluster holds %llu SNI names, the "
		    "most it may have (sni_per_cluster)", (unsigned long long)
		    count_of(a, txn, obs->cluster));
	return 0;
}

static int
same_backends(const struct event *x, const struct event *y)
{
	return x->nbackends == y->nbackends && (x->nbackends == 0 ||
	    memcmp(x->backends, y->backends,
	    x->nbackends * sizeof(struct backend)) == 0);
}

static int
on_route(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char owner[EV_OWNERLEN], why[600];	/* two hostnames and words */
	struct cluster_rec crec;
	struct event old, d, keep;
	uint64_t seen;
	int rc;

	if (sni_owner(obs, owner, sizeof(owner)) == -1)
		return 0;
	if ((rc = rec_get(a, txn, owner, &seen, &old)) == MDB_NOTFOUND)
		event_init(&old, EV_NONE);
	else if (rc != 0)
		return rc;
	seen = 0;
	if (alloc_get_cluster(a, txn, obs->cluster, &crec, NULL) == 0)
		seen = crec.sync_seq;
	if ((rc = check(a, txn, obs, owner, &old, why, sizeof(why))) != 0)
		goto done;
	if (why[0] != '\0') {
		rc = refuse(a, txn, owner, seen, &old, obs, why, obs->time);
		goto done;
	}
	if (old.type == EV_SNI_SET) {
		if (strcmp(old.host, obs->host) == 0 &&
		    same_backends(&old, obs) &&
		    strcmp(old.uid, obs->uid) == 0) {
			/* nothing new: the sync that saw it is */
			rc = rec_put(a, txn, owner, seen, &old);
			goto done;
		}
		if (strcmp(old.host, obs->host) != 0 &&
		    (rc = let_go(a, txn, &old, obs->time)) != 0)
			goto done;
	}
	if ((old.type != EV_SNI_SET || strcmp(old.host, obs->host) != 0) &&
	    (rc = hold(a, txn, obs->cluster, obs->host, owner)) != 0)
		goto done;
	sni_event(&d, EV_SNI_SET, obs);
	d.has |= F_BACKENDS | (obs->has & (F_UID | F_WT));
	memcpy(d.uid, obs->uid, sizeof(d.uid));
	d.wt = obs->wt;
	if (event_copy(&keep, obs) == -1)
		fatal("sni: set");
	d.backends = keep.backends;
	d.nbackends = keep.nbackends;
	keep.backends = NULL;
	event_free(&keep);
	if ((rc = alloc_emit(a, txn, &d, obs->time)) == 0)
		rc = rec_put(a, txn, owner, seen, &d);
 done:
	event_free(&old);
	return rc;
}

static int
on_gone(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t now)
{
	struct event old;
	uint64_t seen;
	int rc;

	if ((rc = rec_get(a, txn, owner, &seen, &old)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (old.type == EV_SNI_SET)
		rc = let_go(a, txn, &old, now);
	event_free(&old);
	return rc != 0 ? rc : rec_del(a, txn, owner);
}

int
sni_observe(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char owner[EV_OWNERLEN];

	if (obs->type == EV_SNI_ROUTE)
		return on_route(a, txn, obs);
	if (sni_owner(obs, owner, sizeof(owner)) == -1)
		return 0;
	return on_gone(a, txn, owner, obs->time);
}

int
sni_release_cluster(struct alloc *a, MDB_txn *txn, const char *cluster,
    uint64_t sid, uint64_t now)
{
	char prefix[sizeof(SNI_PREFIX) + 80], **list, **p;
	struct event old;
	uint64_t seen;
	int rc = 0;

	/* keys first, handled after: no cursor held across the writes */
	snprintf(prefix, sizeof(prefix), "%s%s/", SNI_PREFIX, cluster);
	list = alloc_meta_list(a, txn, prefix, NULL);
	for (p = list; *p != NULL && rc == 0; p++) {
		char owner[EV_OWNERLEN];

		snprintf(owner, sizeof(owner), "%s/%s", cluster, *p);
		if ((rc = rec_get(a, txn, owner, &seen, &old)) != 0)
			break;
		event_free(&old);
		if (sid == 0 || seen != sid)
			rc = on_gone(a, txn, owner, now);
	}
	alloc_free_list(list);
	return rc;
}

/* Is name strictly under host ("*.<host>")? */
static int
under(const char *name, const char *host)
{
	size_t nl = strlen(name), hl = strlen(host);

	return nl > hl + 1 && name[nl - hl - 1] == '.' &&
	    strcmp(name + nl - hl, host) == 0;
}

int
sni_cluster_host(struct alloc *a, MDB_txn *txn, const char *cluster,
    const char *host, uint64_t now)
{
	char prefix[sizeof(SNI_PREFIX) + 80], owner[EV_OWNERLEN], why[600];
	char **list, **p;
	struct event old, route;
	uint64_t seen;
	int rc = 0;

	snprintf(prefix, sizeof(prefix), "%s%s/", SNI_PREFIX, cluster);
	list = alloc_meta_list(a, txn, prefix, NULL);
	for (p = list; *p != NULL && rc == 0; p++) {
		snprintf(owner, sizeof(owner), "%s/%s", cluster, *p);
		if ((rc = rec_get(a, txn, owner, &seen, &old)) != 0)
			break;
		if (old.type == EV_SNI_SET && !under(old.host, host)) {
			if (event_copy(&route, &old) == -1)
				fatal("sni: host");
			route.type = EV_SNI_ROUTE;
			snprintf(why, sizeof(why), "hostname %s is not under "
			    "the cluster's host (*.%s)", old.host, host);
			rc = refuse(a, txn, owner, seen, &old, &route, why,
			    now);
			event_free(&route);
		}
		event_free(&old);
	}
	alloc_free_list(list);
	return rc;
}

int
sni_host_taken(struct alloc *a, MDB_txn *txn, const char *host, uint64_t now)
{
	char owner[EV_OWNERLEN], why[300];
	struct event old, route;
	uint64_t seen;
	int rc;

	if ((rc = holder_of(a, txn, host, owner, sizeof(owner))) != 0 ||
	    owner[0] == '\0')
		return rc;
	if ((rc = rec_get(a, txn, owner, &seen, &old)) != 0)
		fatalx("sni: %s holds %s, without a record", owner, host);
	if (event_copy(&route, &old) == -1)
		fatal("sni: taken");
	route.type = EV_SNI_ROUTE;
	snprintf(why, sizeof(why), "hostname %s is a cluster's API host", host);
	rc = refuse(a, txn, owner, seen, &old, &route, why, now);
	event_free(&route);
	event_free(&old);
	return rc;
}

const char *
sni_prefix(void)
{
	return SNI_PREFIX;
}

int
sni_record_state(const MDB_val *key, const MDB_val *val,
    int (*fn)(const struct event *, void *), void *arg)
{
	struct event ev, d;
	uint64_t seen;
	MDB_val e;
	char err[128];
	int rc = 0;

	if (store_sni_decode(val, &seen, &e) == -1 ||
	    event_decode(&ev, e.mv_data, e.mv_size, err, sizeof(err)) == -1)
		fatalx("sni: %.*s: bad record", (int)key->mv_size,
		    (char *)key->mv_data);
	if (ev.type == EV_SNI_SET)
		rc = fn(&ev, arg);
	else if (ev.type == EV_SNI_ROUTE) {
		sni_event(&d, EV_REFUSED, &ev);
		event_set_str(&d, F_WHY, ev.why);
		rc = fn(&d, arg);
	}
	event_free(&ev);
	return rc;
}
