/*
 * allocd — who holds each API host.
 *
 * A host (the SNI name kubectl reaches a cluster by) belongs to one
 * cluster: the first to claim it keeps it, across restarts and replays
 * (meta "host/<host>" -> cluster id).  A cluster that claims a host another
 * holds is refused, logged once, and remembered in the order it asked
 * ("hostwait/<host>/<cluster>" -> seq and its CLUSTER_UP); when the holder
 * lets go, the first waiting claim takes the host.
 */
#ifndef ALLOCD_HOSTS_H
#define ALLOCD_HOSTS_H

#include "alloc.h"

/*
 * up (a CLUSTER_UP, logged at a->seq) claims its host: *granted 1, the host
 * is its own; 0, another cluster holds it, and the claim waits.
 */
int	hosts_claim(struct alloc *, MDB_txn *, const struct event *up,
	    int *granted);

/*
 * cluster lets go of host (it went, or moved to another): when a claim
 * waits for it, the host is the claimant's now, and its CLUSTER_UP is put
 * in next (*have 1) for the caller to route.
 */
int	hosts_release(struct alloc *, MDB_txn *, const char *cluster,
	    const char *host, struct event *next, int *have);

/* cluster went: its waiting claim, if any, is forgotten. */
int	hosts_forget(struct alloc *, MDB_txn *, const char *cluster);

/* Stores from before the index: hold host for cluster unless held. */
int	hosts_adopt(struct alloc *, MDB_txn *, const char *host,
	    const char *cluster);

#endif
