/*
 * allocd — TLSRoute hostnames routed by SNI on the shared TLS port.
 *
 * An SNI owner is a TLSRoute's hostname ("cluster/ns/name/index/tls"); it
 * takes no port, only a name, which it holds alone.  The rules, in order:
 *  - watcherd's own refusal (the object is wrong) stands;
 *  - a cluster may only claim names strictly under its own API host
 *    ("*.<host>"), never a cluster's API host, nor a name under another
 *    cluster's host nested in its own;
 *  - backends are checked as a port route's are ([limits]);
 *  - a name another owner holds stays with it: first holder keeps it;
 *  - a cluster holds at most sni_per_cluster names.
 * A refusal lets go of what the owner held (its object asks for something
 * else now).  SNI_GONE, a cluster gone, or a resync that did not see the
 * owner: SNI_DEL.  Everything lives in meta (store.h: STORE_META_SNI*), so
 * compaction, replay and its comparison carry it like any table.
 */
#ifndef ALLOCD_SNI_H
#define ALLOCD_SNI_H

#include "alloc.h"

/* SNI_ROUTE or SNI_GONE, logged at a->seq: the decisions it causes. */
int	sni_observe(struct alloc *, MDB_txn *, const struct event *obs);

/*
 * Let go of cluster's names: all of them (sid 0), or those not seen by
 * the sync whose SYNC_BEGIN was logged at sid.
 */
int	sni_release_cluster(struct alloc *, MDB_txn *, const char *cluster,
	    uint64_t sid, uint64_t now);

/*
 * host became a cluster's API host (which nobody else may route): an SNI
 * owner holding it lets go, refused.
 */
int	sni_host_taken(struct alloc *, MDB_txn *, const char *host,
	    uint64_t now);

/*
 * cluster's API host is host now: a name it holds that is not under it
 * any more lets go, refused.
 */
int	sni_cluster_host(struct alloc *, MDB_txn *, const char *cluster,
	    const char *host, uint64_t now);

/*
 * The names held (SNI_SET) and refused (REFUSED, rk "tls"), for a reset:
 * the meta records under sni_prefix(), each given to sni_record_state().
 */
const char *sni_prefix(void);
int	sni_record_state(const MDB_val *key, const MDB_val *val,
	    int (*fn)(const struct event *, void *), void *arg);

#endif
