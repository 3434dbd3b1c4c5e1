/*
 * allocd — what the files of the allocator share, and nothing else needs.
 * Everything here runs inside the caller's write transaction.
 */
#ifndef ALLOCD_ALLOC_IMPL_H
#define ALLOCD_ALLOC_IMPL_H

#include "alloc.h"

/* alloc.c */
void	alloc_forget_full(struct alloc *a);
int	alloc_emit(struct alloc *a, MDB_txn *txn, struct event *ev,
	    uint64_t time);
void	alloc_route_event(struct event *ev, int type, const struct event *obs);
void	alloc_live_event(struct event *d, const struct event *set,
	    uint64_t port);
int	alloc_refuse(struct alloc *a, MDB_txn *txn, const struct event *obs,
	    const char *owner, struct owner_rec *rec, const struct event *set,
	    const char *why);
int	alloc_assign(struct alloc *a, MDB_txn *txn, const struct event *obs,
	    const char *owner, struct owner_rec *rec, unsigned p);
int	alloc_release_cluster(struct alloc *a, MDB_txn *txn, const char *c,
	    uint64_t sid, uint64_t now);

/* alloc_owners.c */
int	alloc_get_owner(struct alloc *a, MDB_txn *txn, const char *owner,
	    struct owner_rec *rec, struct event *set);
int	alloc_put_owner(struct alloc *a, MDB_txn *txn, const char *owner,
	    const struct owner_rec *rec, const struct event *set);
/* The same with set already encoded (buf, len; NULL when set is). */
int	alloc_put_owner_enc(struct alloc *a, MDB_txn *txn, const char *owner,
	    const struct owner_rec *rec, const struct event *set,
	    const unsigned char *buf, size_t len);
int	alloc_del_owner(struct alloc *a, MDB_txn *txn, const char *owner);
int	alloc_owners_count(struct alloc *a, MDB_txn *txn);
int	alloc_backends_forbidden(struct alloc *a, const struct event *set);
int	alloc_route_limited(struct alloc *a, MDB_txn *txn,
	    const struct event *obs, const struct owner_rec *rec,
	    const struct event *set, char *why, size_t whylen);
char **	alloc_collect_owners(struct alloc *a, MDB_txn *txn, const char *prefix,
	    int (*keep)(const struct alloc *, const struct owner_rec *,
	    uint64_t), uint64_t arg);
void	alloc_free_list(char **list);
char **	alloc_meta_list(struct alloc *a, MDB_txn *txn, const char *prefix,
	    char ***vals);
char **	alloc_owners_in_order(struct alloc *a, MDB_txn *txn,
	    const char *prefix, int (*keep)(const struct alloc *,
	    const struct owner_rec *, uint64_t), size_t *n);
int	alloc_first_waiting(struct alloc *a, MDB_txn *txn, char *owner);
int	alloc_owner_event(struct event *ev, int type, const MDB_val *key);

/* alloc_ports.c */
int	alloc_get_port(struct alloc *a, MDB_txn *txn, unsigned p, char *owner,
	    size_t olen, uint64_t *released);
int	alloc_put_port(struct alloc *a, MDB_txn *txn, unsigned p,
	    const char *owner, uint64_t released);
int	alloc_port_avail(struct alloc *a, MDB_txn *txn, unsigned p,
	    const char *owner, uint64_t now, char *why, size_t whylen);
unsigned	alloc_port_pick_dry(struct alloc *a, MDB_txn *txn,
	    const char *owner, uint64_t now, int dry);
unsigned	alloc_port_pick(struct alloc *a, MDB_txn *txn,
	    const char *owner, uint64_t now);
int	alloc_move_stranded(struct alloc *a, MDB_txn *txn,
	    const struct event *obs);
void	alloc_full_claim(struct alloc *a, const char *owner,
	    uint64_t released);
int	alloc_full_claim_waits(struct alloc *a, MDB_txn *txn);

/* alloc_clusters.c */
int	alloc_get_cluster(struct alloc *a, MDB_txn *txn, const char *c,
	    struct cluster_rec *rec, MDB_val *rest);
int	alloc_on_cluster_up(struct alloc *a, MDB_txn *txn,
	    const struct event *obs);
int	alloc_on_cluster_down(struct alloc *a, MDB_txn *txn,
	    const struct event *obs);
int	alloc_on_sync(struct alloc *a, MDB_txn *txn, const struct event *obs);

/* alloc_proxies.c */
int	alloc_get_status(struct alloc *a, MDB_txn *txn, const char *px,
	    struct event *st);
int	alloc_put_status(struct alloc *a, MDB_txn *txn,
	    const struct event *obs);
int	alloc_status_same(const struct event *x, const struct event *y);
int	alloc_unlive_mark(struct alloc *a, MDB_txn *txn, const char *owner,
	    int on);
int	alloc_fault_forget(struct alloc *a, MDB_txn *txn, const char *owner);
int	alloc_on_applied(struct alloc *a, MDB_txn *txn,
	    const struct event *obs);

#endif
