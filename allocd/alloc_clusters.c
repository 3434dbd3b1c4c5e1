/*
 * allocd — the clusters table: API routes, cluster up and down, syncs.
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

int
alloc_get_cluster(struct alloc *a, MDB_txn *txn, const char *c,
    struct cluster_rec *rec, MDB_val *rest)
{
	return store_cluster_get(a->st, txn, c, rec, rest);
}

static int
put_cluster(struct alloc *a, MDB_txn *txn, const char *c,
    const struct cluster_rec *rec, const void *rest, size_t restlen)
{
	return store_cluster_put(a->st, txn, c, rec, rest, restlen);
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
	MDB_val key, val, api;
	char err[128];
	uint64_t built;
	int rc = 0, op;

	if (store_get_u64(a->st, txn, STORE_META_HOSTS_BUILT, &built) == 0)
		return 0;
	if (mdb_cursor_open(txn, a->st->clusters, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_FIRST; rc == 0 &&
	    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		if (store_cluster_decode(&val, &crec, &api) == -1)
			fatalx("alloc: cluster %.*s: bad record",
			    (int)key.mv_size, (char *)key.mv_data);
		if (!crec.up || api.mv_size == 0)
			continue;
		if (event_decode(&ev, api.mv_data, api.mv_size, err,
		    sizeof(err)) == -1)
			fatalx("alloc: cluster %.*s: %s", (int)key.mv_size,
			    (char *)key.mv_data, err);
		rc = hosts_adopt(a, txn, ev.host, ev.cluster);
		event_free(&ev);
	}
	mdb_cursor_close(cur);
	return rc != 0 ? rc : store_put_u64(a->st, txn,
	    STORE_META_HOSTS_BUILT, 1);
}

/* The API_SET a cluster's record holds, when it is up. */
static int
api_of(struct alloc *a, MDB_txn *txn, const char *cluster,
    struct cluster_rec *rec, struct event *old)
{
	MDB_val rest;
	char err[128];

	return alloc_get_cluster(a, txn, cluster, rec, &rest) == 0 && rec->up &&
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
	if ((rc = alloc_emit(a, txn, &d, now)) != 0)
		return rc;
	if (event_encode(&d, &buf, &len) == -1)
		fatalx("alloc: API_SET");
	alloc_get_cluster(a, txn, up->cluster, &rec, NULL);
	rec.up = 1;
	rc = put_cluster(a, txn, up->cluster, &rec, buf, len);
	free(buf);
	/* an API host is its cluster's alone: a TLSRoute's name gives way */
	return rc != 0 ? rc : sni_host_taken(a, txn, up->host, now);
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

int
alloc_on_cluster_up(struct alloc *a, MDB_txn *txn, const struct event *obs)
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

int
alloc_on_cluster_down(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct cluster_rec rec;
	struct event d, old;
	char host[254] = "";
	int rc;

	if ((rc = hosts_ready(a, txn)) != 0 ||
	    (rc = hosts_forget(a, txn, obs->cluster)) != 0)
		return rc;
	if (api_of(a, txn, obs->cluster, &rec, &old)) {
		memcpy(host, old.host, sizeof(host));
		event_free(&old);
	}
	if (alloc_get_cluster(a, txn, obs->cluster, &rec, NULL) != 0)
		return alloc_release_cluster(a, txn, obs->cluster, 0,
		    obs->time);
	if (rec.up) {
		event_init(&d, EV_API_DEL);
		memcpy(d.cluster, obs->cluster, sizeof(d.cluster));
		d.has = F_CLUSTER;
		if ((rc = alloc_emit(a, txn, &d, obs->time)) != 0)
			return rc;
	}
	if ((rc = store_cluster_del(a->st, txn, obs->cluster)) != 0 ||
	    (host[0] != '\0' &&
	    (rc = api_let_go(a, txn, obs->cluster, host, obs->time)) != 0))
		return rc;
	return alloc_release_cluster(a, txn, obs->cluster, 0, obs->time);
}

int
alloc_on_sync(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	struct cluster_rec rec;
	MDB_val rest = { 0, NULL };
	int found;

	found = alloc_get_cluster(a, txn, obs->cluster, &rec, &rest) == 0;
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
	return alloc_release_cluster(a, txn, obs->cluster, rec.sync_seq,
	    obs->time);
}
