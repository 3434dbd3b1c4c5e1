/*
 * porticoctl — allocd's tables, read for clusters, routes and ports.
 *
 * This file and state.c's snap_event() are the only places in porticoctl
 * that know how allocd lays out its records (store.h's structs followed
 * by an encoded event, and the meta keys below); everything else works on
 * struct ctl_tables.  Nothing here trusts the store more than the bus: an
 * embedded event goes through event_decode(), and every key or string
 * that is not an event field passes the validator of what it claims to be
 * before it is kept.  A record that fails is counted and named by its
 * table alone, since its bytes are exactly what must not reach a terminal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "porticoctl.h"
#include "valid.h"

/* allocd's meta keys: the store module's (store.h). */
#define META_APPLIED	STORE_META_APPLIED
#define META_STATUS	STORE_META_STATUS
#define META_FAULT	STORE_META_FAULT
#define META_HOSTWANT	STORE_META_HOSTWANT
#define META_HOSTWAIT	STORE_META_HOSTWAIT

static void
bad_record(struct ctl *c, const char *table, const char *what)
{
	log_warnx("%s: a record that is not %s, left out", table, what);
	c->bad++;
}

/* Grow *v (of *n, room for *cap) by one zeroed element of size sz. */
static void *
grow(void *vp, size_t *n, size_t *cap, size_t sz)
{
	void **v = vp;
	char *p;

	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		if ((p = reallocarray(*v, *cap, sz)) == NULL)
			fatal("tables");
		*v = p;
	}
	p = (char *)*v + (*n)++ * sz;
	memset(p, 0, sz);
	return p;
}

/*
 * A key or value as a C string, if it fits in len and has no NUL but,
 * maybe, one that ends it (allocd writes some strings with theirs).
 */
static int
mdb_str(const MDB_val *v, size_t skip, char *buf, size_t len)
{
	size_t n;

	if (v->mv_size < skip)
		return -1;
	n = v->mv_size - skip;
	if (n > 0 && ((const char *)v->mv_data)[v->mv_size - 1] == '\0')
		n--;
	if (n >= len ||
	    memchr((const char *)v->mv_data + skip, '\0', n) != NULL)
		return -1;
	memcpy(buf, (const char *)v->mv_data + skip, n);
	buf[n] = '\0';
	return 0;
}

/* An event embedded in a record at off, of the type wanted. */
static int
rec_event(const MDB_val *v, size_t off, int type, struct event *ev)
{
	char err[256];

	event_init(ev, EV_NONE);
	if (v->mv_size <= off)
		return -1;
	if (event_decode(ev, (const char *)v->mv_data + off,
	    v->mv_size - off, err, sizeof(err)) == -1)
		return -1;
	if (ev->type != type) {
		event_free(ev);
		event_init(ev, EV_NONE);
		return -1;
	}
	return 0;
}

/*
 * Walk db from the first key at or after prefix while keys start with
 * it; fn gets the key without the prefix.
 */
static int
walk(struct ctl *c, MDB_dbi db, const char *prefix,
    int (*fn)(struct ctl *, struct ctl_tables *, const MDB_val *,
    const MDB_val *), struct ctl_tables *t)
{
	size_t plen = strlen(prefix);
	MDB_val key = { plen, (void *)prefix }, val, rest;
	MDB_cursor *cur;
	int rc, op;

	if ((rc = mdb_cursor_open(c->txn, db, &cur)) != 0)
		return rc;
	op = plen > 0 ? MDB_SET_RANGE : MDB_FIRST;
	for (; (rc = mdb_cursor_get(cur, &key, &val, op)) == 0;
	    op = MDB_NEXT) {
		if (key.mv_size < plen ||
		    memcmp(key.mv_data, prefix, plen) != 0)
			break;
		rest.mv_size = key.mv_size - plen;
		rest.mv_data = (char *)key.mv_data + plen;
		if ((rc = fn(c, t, &rest, &val)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
cluster_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ctl_cluster *)a)->id,
	    ((const struct ctl_cluster *)b)->id);
}

/* Sorted once loaded; while loading, the last one found is tried first. */
struct ctl_cluster *
ctl_tables_cluster(struct ctl_tables *t, const char *id)
{
	struct ctl_cluster key;
	size_t i;

	if (t->sorted) {
		snprintf(key.id, sizeof(key.id), "%s", id);
		return bsearch(&key, t->clusters, t->nclusters,
		    sizeof(*t->clusters), cluster_cmp);
	}
	if (t->last < t->nclusters && strcmp(t->clusters[t->last].id,
	    id) == 0)
		return &t->clusters[t->last];
	for (i = 0; i < t->nclusters; i++)
		if (strcmp(t->clusters[i].id, id) == 0) {
			t->last = i;
			return &t->clusters[i];
		}
	return NULL;
}

/* The cluster id, known already or added (an id is validated by then). */
static struct ctl_cluster *
cluster_get(struct ctl_tables *t, const char *id)
{
	struct ctl_cluster *cl;

	if ((cl = ctl_tables_cluster(t, id)) != NULL)
		return cl;
	cl = grow(&t->clusters, &t->nclusters, &t->capclusters, sizeof(*cl));
	snprintf(cl->id, sizeof(cl->id), "%s", id);
	event_init(&cl->api, EV_NONE);
	t->last = t->nclusters - 1;
	return cl;
}

static int
on_cluster(struct ctl *c, struct ctl_tables *t, const MDB_val *k,
    const MDB_val *v)
{
	struct cluster_rec rec;
	struct ctl_cluster *cl;
	MDB_val api;
	char id[64];

	if (mdb_str(k, 0, id, sizeof(id)) == -1 || !valid_cluster_id(id) ||
	    store_cluster_decode(v, &rec, &api) == -1) {
		bad_record(c, "clusters", "a cluster");
		return 0;
	}
	cl = cluster_get(t, id);
	if (!rec.up)
		return 0;
	if (rec_event(&api, 0, EV_API_SET, &cl->api) == -1 ||
	    strcmp(cl->api.cluster, id) != 0) {
		event_free(&cl->api);
		event_init(&cl->api, EV_NONE);
		bad_record(c, "clusters", "a cluster's API route");
		return 0;
	}
	memcpy(cl->name, cl->api.cname, sizeof(cl->name));
	return 0;
}

/*
 * "hostwant/<cluster>" = host: the cluster claims a host another holds;
 * its claim, "hostwait/<host>/<cluster>" = seq + CLUSTER_UP, names it.
 */
static int
on_hostwant(struct ctl *c, struct ctl_tables *t, const MDB_val *k,
    const MDB_val *v)
{
	char id[64], host[254], wk[sizeof(META_HOSTWAIT) + 320];
	struct ctl_cluster *cl;
	struct event up;
	MDB_val key, val;

	if (mdb_str(k, 0, id, sizeof(id)) == -1 || !valid_cluster_id(id) ||
	    mdb_str(v, 0, host, sizeof(host)) == -1 ||
	    !valid_dns_subdomain(host)) {
		bad_record(c, "meta", "a host claimed");
		return 0;
	}
	cl = cluster_get(t, id);
	memcpy(cl->want, host, sizeof(cl->want));
	key.mv_size = (size_t)snprintf(wk, sizeof(wk), "%s%s/%s",
	    META_HOSTWAIT, host, id);
	key.mv_data = wk;
	if (cl->name[0] == '\0' && mdb_get(c->txn, c->st.meta, &key,
	    &val) == 0 && rec_event(&val, 8, EV_CLUSTER_UP, &up) == 0) {
		memcpy(cl->name, up.cname, sizeof(cl->name));
		event_free(&up);
	}
	return 0;
}

static int
on_owner(struct ctl *c, struct ctl_tables *t, const MDB_val *k,
    const MDB_val *v)
{
	struct ctl_owner o;
	struct ctl_route *r;
	struct owner_rec rec;
	struct event set;
	char key[EV_OWNERLEN];
	MDB_val ev;

	if (mdb_str(k, 0, key, sizeof(key)) == -1 ||
	    ctl_owner_parse(&o, key) == -1 || o.prefix ||
	    store_owner_decode(v, &rec, &ev) == -1) {
		bad_record(c, "owners", "an owner");
		return 0;
	}
	if (!valid_text(rec.why)) {
		bad_record(c, "owners", "an owner's reason");
		return 0;
	}
	r = grow(&t->routes, &t->nroutes, &t->caproutes, sizeof(*r));
	memcpy(r->owner, key, sizeof(r->owner));
	r->rec = rec;
	if (rec.state != OWN_ACTIVE)
		return 0;
	/* a fleet holds many: keep its backends, not the whole event */
	if (rec_event(&ev, 0, EV_PORT_SET, &set) == -1 ||
	    event_owner(&set, key, sizeof(key)) == -1 ||
	    strcmp(key, r->owner) != 0) {
		event_free(&set);
		t->nroutes--;
		bad_record(c, "owners", "an owner's port");
		return 0;
	}
	r->backends = set.backends;
	r->nbackends = set.nbackends;
	set.backends = NULL;
	event_free(&set);
	return 0;
}

static int
route_cmp(const void *k, const void *r)
{
	return strcmp(k, ((const struct ctl_route *)r)->owner);
}

static struct ctl_route *
route_find(struct ctl_tables *t, const char *owner)
{
	return bsearch(owner, t->routes, t->nroutes, sizeof(*t->routes),
	    route_cmp);
}

static int
on_fault(struct ctl *c, struct ctl_tables *t, const MDB_val *k,
    const MDB_val *v)
{
	char owner[EV_OWNERLEN], why[256];
	struct ctl_route *r;

	if (mdb_str(k, 0, owner, sizeof(owner)) == -1 ||
	    mdb_str(v, 0, why, sizeof(why)) == -1 || !valid_text(why)) {
		bad_record(c, "meta", "a proxy fault");
		return 0;
	}
	/* an owner key is only compared, never printed, until found */
	if ((r = route_find(t, owner)) != NULL)
		memcpy(r->fault, why, sizeof(r->fault));
	return 0;
}

/* A quarantined port: its owner, the time it was let go. */
static int
on_port(struct ctl *c, struct ctl_tables *t, const MDB_val *k,
    const MDB_val *v)
{
	char owner[EV_OWNERLEN];
	struct ctl_route *r;
	uint64_t released;
	MDB_val o;
	unsigned port;

	if (store_port_decode(k, v, &port, &released, &o) == -1) {
		bad_record(c, "ports", "a port");
		return 0;
	}
	if (released == 0)
		return 0;
	if (mdb_str(&o, 0, owner, sizeof(owner)) == -1) {
		bad_record(c, "ports", "a port's owner");
		return 0;
	}
	if ((r = route_find(t, owner)) != NULL && r->rec.port == port &&
	    r->rec.state == OWN_QUARANTINED)
		r->released = released;
	return 0;
}

/*
 * "sni/<owner>": a TLSRoute's hostname, held (SNI_SET) or refused (its
 * SNI_ROUTE with the reason), after u64 seen_sync.
 */
static int
on_sni(struct ctl *c, struct ctl_tables *t, const MDB_val *k,
    const MDB_val *v)
{
	struct ctl_owner o;
	struct ctl_route *r;
	struct event ev;
	char key[EV_OWNERLEN], err[256];
	MDB_val e;
	uint64_t seen;

	if (mdb_str(k, 0, key, sizeof(key)) == -1 ||
	    ctl_owner_parse(&o, key) == -1 || o.prefix ||
	    strcmp(ctl_owner_kind(key), "TLSRoute") != 0 ||
	    store_sni_decode(v, &seen, &e) == -1 ||
	    event_decode(&ev, e.mv_data, e.mv_size, err, sizeof(err)) == -1) {
		bad_record(c, "meta", "a TLSRoute hostname");
		return 0;
	}
	if (ev.type != EV_SNI_SET && ev.type != EV_SNI_ROUTE) {
		event_free(&ev);
		bad_record(c, "meta", "a TLSRoute hostname");
		return 0;
	}
	r = grow(&t->snis, &t->nsnis, &t->capsnis, sizeof(*r));
	memcpy(r->owner, key, sizeof(r->owner));
	memcpy(r->host, ev.host, sizeof(r->host));
	r->rec.state = ev.type == EV_SNI_SET ? OWN_ACTIVE : OWN_REFUSED;
	r->rec.set_seq = ev.seq;
	if (ev.type == EV_SNI_ROUTE)
		memcpy(r->rec.why, ev.why, sizeof(ev.why));
	else {
		r->backends = ev.backends;
		r->nbackends = ev.nbackends;
		ev.backends = NULL;
	}
	event_free(&ev);
	return 0;
}

static void
proxy_load(struct ctl *c, struct ctl_proxy *px)
{
	char name[96];
	MDB_val key, val;

	snprintf(name, sizeof(name), "%s%s", META_APPLIED, px->name);
	if (store_get_u64(&c->st, c->txn, name, &px->gen) != 0)
		px->gen = 0;
	event_init(&px->status, EV_NONE);
	snprintf(name, sizeof(name), "%s%s", META_STATUS, px->name);
	key.mv_size = strlen(name);
	key.mv_data = name;
	if (mdb_get(c->txn, c->st.meta, &key, &val) == 0 &&
	    rec_event(&val, 0, EV_APPLIED, &px->status) == -1)
		bad_record(c, "meta", "a proxy's status");
}

/* Without a config: the proxies that ever acked, as the store names them. */
static int
on_applied(struct ctl *c, struct ctl_tables *t, const MDB_val *k,
    const MDB_val *v)
{
	struct ctl_proxy *px;
	char name[64];

	(void)v;
	if (mdb_str(k, 0, name, sizeof(name)) == -1 || !valid_token(name)) {
		bad_record(c, "meta", "a proxy's generation");
		return 0;
	}
	px = grow(&t->proxies, &t->nproxies, &t->capproxies, sizeof(*px));
	memcpy(px->name, name, sizeof(px->name));
	return 0;
}

/* What each cluster holds, from its owners. */
static void
tally(struct ctl_tables *t)
{
	struct ctl_cluster *cl;
	struct ctl_route *r;
	char id[64];
	size_t i;

	for (i = 0; i < t->nroutes; i++) {
		r = &t->routes[i];
		snprintf(id, sizeof(id), "%.*s",
		    (int)strcspn(r->owner, "/"), r->owner);
		cl = cluster_get(t, id);
		if (r->rec.state == OWN_QUARANTINED) {
			cl->released += r->released != 0;
			continue;
		}
		cl->routes++;
		if (r->rec.state == OWN_ACTIVE) {
			cl->ports++;
			cl->live += r->rec.live != 0;
		}
		cl->refused += r->rec.why[0] != '\0';
		cl->waiting += r->rec.state == OWN_REFUSED &&
		    r->rec.waiting;
		cl->faults += r->fault[0] != '\0';
	}
}

int
ctl_tables_load(struct ctl *c, struct ctl_tables *t)
{
	const struct config *conf = ctl_config(c, 1);
	size_t i;
	int rc;

	memset(t, 0, sizeof(*t));
	t->now = now_ms();
	if ((rc = walk(c, c->st.clusters, "", on_cluster, t)) != 0 ||
	    (rc = walk(c, c->st.meta, META_HOSTWANT, on_hostwant, t)) != 0 ||
	    (rc = walk(c, c->st.owners, "", on_owner, t)) != 0 ||
	    (rc = walk(c, c->st.meta, META_FAULT, on_fault, t)) != 0 ||
	    (rc = walk(c, c->st.ports, "", on_port, t)) != 0 ||
	    (rc = walk(c, c->st.meta, STORE_META_SNI, on_sni, t)) != 0)
		return rc;
	if (conf != NULL) {
		if ((t->proxies = calloc((size_t)conf->nproxies,
		    sizeof(*t->proxies))) == NULL)
			fatal("tables");
		for (i = 0; i < (size_t)conf->nproxies; i++)
			memcpy(t->proxies[i].name, conf->proxies[i].name,
			    sizeof(t->proxies[i].name));
		t->nproxies = (size_t)conf->nproxies;
	} else if ((rc = walk(c, c->st.meta, META_APPLIED, on_applied,
	    t)) != 0)
		return rc;
	for (i = 0; i < t->nproxies; i++)
		proxy_load(c, &t->proxies[i]);
	/* a hostname is live once every proxy acked its SNI_SET */
	for (i = 0; i < t->nsnis; i++) {
		size_t k;

		t->snis[i].rec.live = t->snis[i].rec.state == OWN_ACTIVE &&
		    t->nproxies > 0;
		for (k = 0; k < t->nproxies; k++)
			if (ctl_proxy_serves(&t->proxies[k], &t->snis[i]) !=
			    PX_SERVES)
				t->snis[i].rec.live = 0;
	}
	tally(t);
	qsort(t->clusters, t->nclusters, sizeof(*t->clusters), cluster_cmp);
	t->sorted = 1;
	return 0;
}

void
ctl_tables_free(struct ctl_tables *t)
{
	size_t i;

	for (i = 0; i < t->nproxies; i++)
		event_free(&t->proxies[i].status);
	for (i = 0; i < t->nroutes; i++)
		free(t->routes[i].backends);
	for (i = 0; i < t->nsnis; i++)
		free(t->snis[i].backends);
	free(t->snis);
	for (i = 0; i < t->nclusters; i++)
		event_free(&t->clusters[i].api);
	free(t->proxies);
	free(t->routes);
	free(t->clusters);
	memset(t, 0, sizeof(*t));
}

static int
held_by(const struct event *st, unsigned port)
{
	size_t i;

	for (i = 0; i < st->nheld; i++)
		if (st->held[i] == port)
			return 1;
	return 0;
}

/*
 * A proxy serves a port once it acked a generation at or after the port's
 * PORT_SET (renderd's generation is the seq of the last decision it
 * applied), unless another program holds the port on its host.
 */
int
ctl_proxy_serves(const struct ctl_proxy *px, const struct ctl_route *r)
{
	uint64_t seq = r->rec.set_seq;

	if (held_by(&px->status, r->rec.port))
		return PX_HELD;
	if (px->gen >= seq)
		return PX_SERVES;
	if ((px->status.has & F_FGEN) && px->status.fgen >= seq)
		return PX_FAILED;
	return PX_BEHIND;
}

const char *
ctl_proxy_word(int how)
{
	switch (how) {
	case PX_SERVES:
		return "serves";
	case PX_FAILED:
		return "failed";
	case PX_HELD:
		return "held";
	}
	return "behind";
}
