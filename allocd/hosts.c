/*
 * allocd — who holds each API host (see hosts.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "log.h"

#define HOST_PREFIX	STORE_META_HOST
#define WAIT_PREFIX	STORE_META_HOSTWAIT
#define WANT_PREFIX	STORE_META_HOSTWANT

/* The meta value of key as a string (empty when absent). */
static int
meta_str(struct alloc *a, MDB_txn *txn, MDB_val *key, char *out, size_t len)
{
	MDB_val val;
	int rc;

	out[0] = '\0';
	if ((rc = store_meta_get(a->st, txn, key, &val)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (val.mv_size >= len)
		fatalx("hosts: %.*s: bad record", (int)key->mv_size,
		    (char *)key->mv_data);
	memcpy(out, val.mv_data, val.mv_size);
	out[val.mv_size] = '\0';
	return 0;
}

static int
meta_del(struct alloc *a, MDB_txn *txn, MDB_val *key)
{
	return store_meta_del(a->st, txn, key);
}

static int
holder_of(struct alloc *a, MDB_txn *txn, const char *host, char *holder,
    size_t len)
{
	char buf[sizeof(HOST_PREFIX) + 256];
	MDB_val key;

	alloc_meta_key(&key, buf, sizeof(buf), HOST_PREFIX, host, NULL);
	return meta_str(a, txn, &key, holder, len);
}

static int
hold(struct alloc *a, MDB_txn *txn, const char *host, const char *cluster)
{
	char buf[sizeof(HOST_PREFIX) + 256];
	MDB_val key;

	alloc_meta_key(&key, buf, sizeof(buf), HOST_PREFIX, host, NULL);
	return store_meta_put(a->st, txn, &key, cluster, strlen(cluster));
}

int
hosts_forget(struct alloc *a, MDB_txn *txn, const char *cluster)
{
	char want[sizeof(WANT_PREFIX) + 64], wait[sizeof(WAIT_PREFIX) + 320];
	char host[256];
	MDB_val wk, k;
	int rc;

	alloc_meta_key(&wk, want, sizeof(want), WANT_PREFIX, cluster, NULL);
	if ((rc = meta_str(a, txn, &wk, host, sizeof(host))) != 0 ||
	    host[0] == '\0')
		return rc;
	alloc_meta_key(&k, wait, sizeof(wait), WAIT_PREFIX, host, cluster);
	if ((rc = meta_del(a, txn, &k)) != 0)
		return rc;
	return meta_del(a, txn, &wk);
}

/*
 * Does cluster's waiting claim say what up says?  Then it was refused and
 * logged already.
 */
static int
waits_same(struct alloc *a, MDB_txn *txn, const struct event *up,
    const unsigned char *enc, size_t len)
{
	char wait[sizeof(WAIT_PREFIX) + 320];
	MDB_val k, v;

	alloc_meta_key(&k, wait, sizeof(wait), WAIT_PREFIX, up->host, up->cluster);
	return store_meta_get(a->st, txn, &k, &v) == 0 &&
	    v.mv_size == 8 + len &&
	    memcmp((char *)v.mv_data + 8, enc, len) == 0;
}

static int
wait_for(struct alloc *a, MDB_txn *txn, const struct event *up)
{
	char want[sizeof(WANT_PREFIX) + 64], wait[sizeof(WAIT_PREFIX) + 320];
	unsigned char *enc, *buf;
	MDB_val k;
	size_t len;
	int rc;

	if (event_encode(up, &enc, &len) == -1)
		fatalx("hosts: cannot encode the claim of %s", up->cluster);
	if (waits_same(a, txn, up, enc, len)) {
		free(enc);
		return 0;
	}
	if ((rc = hosts_forget(a, txn, up->cluster)) != 0 ||
	    (buf = malloc(8 + len)) == NULL) {
		free(enc);
		if (rc == 0)
			fatal("hosts: wait_for");
		return rc;
	}
	/* the order of asking: the seq its CLUSTER_UP was logged under */
	store_key_u64(buf, a->seq);
	memcpy(buf + 8, enc, len);
	free(enc);
	alloc_meta_key(&k, wait, sizeof(wait), WAIT_PREFIX, up->host, up->cluster);
	rc = store_meta_put(a->st, txn, &k, buf, 8 + len);
	free(buf);
	if (rc != 0)
		return rc;
	alloc_meta_key(&k, want, sizeof(want), WANT_PREFIX, up->cluster, NULL);
	if ((rc = store_meta_put(a->st, txn, &k, up->host,
	    strlen(up->host))) != 0)
		return rc;
	/* both validated by the decoder; the holder is not named */
	log_warnx("alloc: cluster %s claims host %s, which another cluster "
	    "holds: not routed until that one lets it go", up->cluster,
	    up->host);
	return 0;
}

int
hosts_claim(struct alloc *a, MDB_txn *txn, const struct event *up,
    int *granted)
{
	char holder[64];
	int rc;

	*granted = 0;
	if ((rc = holder_of(a, txn, up->host, holder, sizeof(holder))) != 0)
		return rc;
	if (holder[0] != '\0' && strcmp(holder, up->cluster) != 0)
		return wait_for(a, txn, up);
	*granted = 1;
	if ((rc = hosts_forget(a, txn, up->cluster)) != 0)
		return rc;
	return holder[0] == '\0' ? hold(a, txn, up->host, up->cluster) : 0;
}

/* The first claim waiting for host: its key and value, or rc. */
static int
first_waiting(struct alloc *a, MDB_txn *txn, const char *host, MDB_val *fk,
    MDB_val *fv, char *kbuf, size_t klen, int *found)
{
	char prefix[sizeof(WAIT_PREFIX) + 256];
	uint64_t best = UINT64_MAX, s;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t plen;
	int op, rc = 0;

	*found = 0;
	alloc_meta_key(&k, prefix, sizeof(prefix), WAIT_PREFIX, host, "");
	plen = k.mv_size;
	if ((rc = mdb_cursor_open(txn, a->st->meta, &cur)) != 0)
		return rc;
	for (op = MDB_SET_RANGE; mdb_cursor_get(cur, &k, &v, op) == 0;
	    op = MDB_NEXT) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		if (v.mv_size <= 8 || k.mv_size >= klen)
			fatalx("hosts: waiting claim for %s: bad record", host);
		if ((s = store_u64_key(v.mv_data)) < best) {
			best = s;
			memcpy(kbuf, k.mv_data, k.mv_size);
			fk->mv_size = k.mv_size;
			fk->mv_data = kbuf;
			*fv = v;
			*found = 1;
		}
	}
	mdb_cursor_close(cur);
	return rc;
}

int
hosts_release(struct alloc *a, MDB_txn *txn, const char *cluster,
    const char *host, struct event *next, int *have)
{
	char holder[64], kbuf[sizeof(WAIT_PREFIX) + 320], err[128];
	char want[sizeof(WANT_PREFIX) + 64];
	MDB_val k, v, wk;
	int rc, found;

	*have = 0;
	if ((rc = holder_of(a, txn, host, holder, sizeof(holder))) != 0 ||
	    strcmp(holder, cluster) != 0)
		return rc;
	alloc_meta_key(&k, kbuf, sizeof(kbuf), HOST_PREFIX, host, NULL);
	if ((rc = meta_del(a, txn, &k)) != 0 ||
	    (rc = first_waiting(a, txn, host, &k, &v, kbuf, sizeof(kbuf),
	    &found)) != 0 || !found)
		return rc;
	if (event_decode(next, (char *)v.mv_data + 8, v.mv_size - 8, err,
	    sizeof(err)) == -1 || next->type != EV_CLUSTER_UP)
		fatalx("hosts: waiting claim for %s: %s", host, err);
	if ((rc = meta_del(a, txn, &k)) != 0)
		goto fail;
	alloc_meta_key(&wk, want, sizeof(want), WANT_PREFIX, next->cluster, NULL);
	if ((rc = meta_del(a, txn, &wk)) != 0 ||
	    (rc = hold(a, txn, host, next->cluster)) != 0)
		goto fail;
	log_info("alloc: cluster %s has host %s now", next->cluster, host);
	*have = 1;
	return 0;
 fail:
	event_free(next);
	return rc;
}

int
hosts_adopt(struct alloc *a, MDB_txn *txn, const char *host,
    const char *cluster)
{
	char holder[64];
	int rc;

	if ((rc = holder_of(a, txn, host, holder, sizeof(holder))) != 0 ||
	    holder[0] != '\0')
		return rc;
	return hold(a, txn, host, cluster);
}
