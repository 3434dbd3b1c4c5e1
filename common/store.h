/*
 * portico — the LMDB store: the one home of allocd's tables, their keys,
 * their records' encodings and the meta keys.
 *
 * allocd is its only writer.  Named databases:
 *	log	  big-endian u64 seq -> encoded event, appended with MDB_APPEND
 *	ports	  big-endian u16 port -> port record
 *	owners	  owner key "cluster/ns/name/route[/rk]" -> owner record
 *		  (rk: the route kind, absent for a VirtualService)
 *	clusters  cluster id -> cluster record
 *	meta	  name -> value (STORE_META_* below)
 *	snap	  the four tables above as they were at the SNAPSHOT record
 *		  meta "snapshot" names, each key prefixed by a table letter
 *		  (c, m, o, p); snap1 is the other copy (meta "snapdb" says
 *		  which one holds it), filled by a compaction under way
 * The log is whole from the SNAPSHOT record on; records before it are
 * left over from a compaction and are being deleted (allocd/compact.c).
 *
 * Every record has one encoding, written and read only here: integers are
 * big-endian, whatever the host; strings are counted; an event is its bus
 * encoding (msgpack, itself big-endian).  No host struct is ever written.
 *	port record	u64 released (ms; 0 while held), then the owner key
 *	owner record	u16 port, u8 state, u8 live, u8 waiting, u8 limited,
 *			u64 set_seq, u64 seen_sync, u16 length of why, why,
 *			then the encoded event (PORT_SET, or ROUTE when kept)
 *	cluster record	u64 sid, u64 sync_seq, u8 up, then the encoded
 *			API_SET when up
 *	meta u64	u64 (store_get_u64); sums, n x u64 (store_get_u64s)
 *	SNI record	u64 seen_sync, then the encoded event: SNI_SET when
 *			the name is held, SNI_ROUTE with why when refused
 * The schema version is in meta; a store of an older schema is migrated
 * when allocd opens it (in one write transaction), one of a newer schema is
 * refused untouched.  Commits are durable: the environment is never opened
 * with MDB_NOSYNC.
 */
#ifndef PORTICO_STORE_H
#define PORTICO_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "event.h"

/*
 * 1: records were host structs (7ce3994 and before).
 * 2: the fixed-endian records above.
 * 3: the index of the owners waiting for a port (meta "wait/").
 */
#define STORE_SCHEMA	3

/*
 * Meta keys.  Prefixes end in a separator and take an owner, cluster or
 * proxy name after them; *_BUILT keys say an index was built (a store from
 * before it gets it built once).
 */
#define STORE_META_SCHEMA	"schema"	/* u64 */
#define STORE_META_SNAPSHOT	"snapshot"	/* u64: seq of the SNAPSHOT */
#define STORE_META_SNAPDB	"snapdb"	/* u64: 1 when snap1 holds it */
#define STORE_META_PORTS	"ports"		/* u64: the ports' hash */
#define STORE_META_APPLIED	"applied."	/* +proxy: u64 generation */
#define STORE_META_STATUS	"status."	/* +proxy: its last APPLIED */
#define STORE_META_FAULT	"fault/"	/* +owner: reason, NUL-ended */
#define STORE_META_UNLIVE	"unlive/"	/* +owner: empty */
#define STORE_META_UNLIVE_BUILT	"unlive.indexed"
#define STORE_META_HOST		"host/"		/* +host: the cluster holding */
#define STORE_META_HOSTWAIT	"hostwait/"	/* +host/cluster: seq, event */
#define STORE_META_HOSTWANT	"hostwant/"	/* +cluster: host it wants */
#define STORE_META_HOSTS_BUILT	"hosts.indexed"
#define STORE_META_LIM		"lim/"		/* +cluster[/ns]: the sums */
/*
 * "wait/<since>/<owner>", empty: owner waits for a port, since the seq
 * its record's set_seq says (16 hex digits, so that the keys sort in the
 * order the owners asked: the first is the next to serve).
 */
#define STORE_META_WAIT		"wait/"
#define STORE_WAIT_KEYLEN	(sizeof(STORE_META_WAIT) + 17 + EV_OWNERLEN)
#define STORE_META_LIM_BUILT	"lim.indexed"
#define STORE_LIM_N		5
/*
 * TLSRoute hostnames routed by SNI (allocd/sni.c): "sni/<owner>" is an
 * SNI record; "snihost/<host>" the owner key holding host; "snin/<cluster>"
 * u64, how many names the cluster holds.
 */
#define STORE_META_SNI		"sni/"
#define STORE_META_SNIHOST	"snihost/"
#define STORE_META_SNIN		"snin/"

/*
 * The records of allocd's tables, decoded: what allocd and the readers of
 * a store (porticoctl) work with.  The encodings are above.
 */
enum { OWN_ACTIVE = 1, OWN_QUARANTINED = 2, OWN_REFUSED = 3 };

struct owner_rec {
	uint16_t	port;		/* current or last port, 0 if none */
	uint8_t		state;
	uint8_t		live;		/* every proxy serves it */
	uint8_t		waiting;	/* refused for want of a port */
	uint8_t		limited;	/* refused by a limit of its cluster */
	uint64_t	set_seq;	/* last PORT_SET; or since when waiting */
	uint64_t	seen_sync;	/* sync_seq of the sync that last saw it */
	char		why[256];	/* last refusal written */
};

struct cluster_rec {
	uint64_t	sid;		/* watcherd's id of the sync begun last */
	uint64_t	sync_seq;	/* log seq of that SYNC_BEGIN: unique */
	uint8_t		up;
};

struct store {
	MDB_env		*env;
	MDB_dbi		 log;
	MDB_dbi		 ports;
	MDB_dbi		 owners;
	MDB_dbi		 clusters;
	MDB_dbi		 meta;
	MDB_dbi		 snap;
	MDB_dbi		 snap1;
};

/*
 * Open (the writer: create) the store in dir.  The writer migrates a store
 * of an older schema to STORE_SCHEMA before it returns; a reader refuses
 * one, and both refuse a newer schema without writing anything.
 */
int	 store_open(struct store *, const char *dir, size_t mapsize, int rdonly);
/* Read-only, for a tool; *nolock: opened without LMDB's lock file. */
int	 store_open_reader(struct store *, const char *dir, int *nolock);
void	 store_close(struct store *);
int	 store_begin(struct store *, MDB_txn **, int rdonly);

/* Append ev under ev->seq; a seq that is not the next one is fatal. */
int	 store_append(struct store *, MDB_txn *, const struct event *);
/* The same, for an event already encoded (buf, len) under seq. */
int	 store_append_raw(struct store *, MDB_txn *, uint64_t seq,
	    const unsigned char *, size_t);
uint64_t store_last_seq(struct store *, MDB_txn *);
uint64_t store_first_seq(struct store *, MDB_txn *);

/*
 * Where replay starts: the SNAPSHOT record of the last compaction that
 * finished (meta "snapshot"), or the log's first record.
 */
uint64_t store_start_seq(struct store *, MDB_txn *);
/* The database holding the snapshot's tables in txn; other: the spare. */
MDB_dbi	 store_snap(struct store *, MDB_txn *, int other);
/* The i-th table a snapshot holds, with its key letter; -1 past the last. */
int	 store_snap_table(struct store *, size_t i, MDB_dbi *, char *tag);
/* Load src's snapshot into dst's tables (a scratch store for replay). */
int	 store_restore(struct store *src, MDB_txn *, struct store *dst,
	    MDB_txn *);

int	 store_get_u64(struct store *, MDB_txn *, const char *, uint64_t *);
int	 store_put_u64(struct store *, MDB_txn *, const char *, uint64_t);

/* n big-endian u64s, as one meta value (a cluster's sums). */
int	 store_get_u64s(struct store *, MDB_txn *, const MDB_val *key,
	    uint64_t *, size_t n);
int	 store_put_u64s(struct store *, MDB_txn *, const MDB_val *key,
	    const uint64_t *, size_t n);
/* Any meta value; absent: MDB_NOTFOUND.  A delete of nothing is 0. */
int	 store_meta_get(struct store *, MDB_txn *, const MDB_val *key,
	    MDB_val *val);
int	 store_meta_put(struct store *, MDB_txn *, const MDB_val *key,
	    const void *, size_t);
int	 store_meta_del(struct store *, MDB_txn *, const MDB_val *key);
/*
 * Is a meta key a function of the log alone?  allocd's loop writes a few
 * (the ports' fingerprint) from its configuration: replay leaves them out.
 */
int	 store_meta_replayed(const MDB_val *key);

/*
 * The records' encodings, for whoever writes a record outside its table
 * (the migration, into snap too): the value in *val, in the buffer
 * returned, which the caller frees.
 */
unsigned char *store_owner_encode(const struct owner_rec *, const void *ev,
	    size_t evlen, MDB_val *val);
unsigned char *store_port_encode(uint64_t released, const void *owner,
	    size_t olen, MDB_val *val);
unsigned char *store_sni_encode(uint64_t seen_sync, const void *ev,
	    size_t evlen, MDB_val *val);
/* An SNI record: -1 if it is not one; ev points into val. */
int	 store_sni_decode(const MDB_val *val, uint64_t *seen_sync,
	    MDB_val *ev);
unsigned char *store_cluster_encode(const struct cluster_rec *,
	    const void *ev, size_t evlen, MDB_val *val);

/* An owner's key in the waiting index (buf: STORE_WAIT_KEYLEN bytes). */
int	 store_wait_key(MDB_val *key, char *buf, size_t len, uint64_t since,
	    const void *owner, size_t olen);
/* The first owner waiting, NUL-ended in owner; MDB_NOTFOUND: nobody. */
int	 store_wait_first(struct store *, MDB_txn *, char *owner, size_t len);

/*
 * Rewrite a store of schema from (1, 2) to STORE_SCHEMA in txn, which
 * store_open() commits whole or aborts (store_migrate.c).
 */
int	 store_migrate(struct store *, MDB_txn *, const char *dir,
	    uint64_t from);

/*
 * Owners.  get: rec, and ev pointing at the encoded event in the record
 * (ev may be NULL; its size is 0 when the record holds none); the pointer
 * is good until the transaction writes.  MDB_NOTFOUND when absent.
 */
int	 store_owner_get(struct store *, MDB_txn *, const char *owner,
	    struct owner_rec *, MDB_val *ev);
int	 store_owner_put(struct store *, MDB_txn *, const char *owner,
	    const struct owner_rec *, const void *ev, size_t evlen);
int	 store_owner_del(struct store *, MDB_txn *, const char *owner);
/* A value read by a cursor over owners: -1 if it is not an owner record. */
int	 store_owner_decode(const MDB_val *val, struct owner_rec *,
	    MDB_val *ev);

/* Ports: the holder (empty when none) and when it let go (0: holds it). */
int	 store_port_get(struct store *, MDB_txn *, unsigned port, char *owner,
	    size_t olen, uint64_t *released);
int	 store_port_put(struct store *, MDB_txn *, unsigned port,
	    const char *owner, uint64_t released);
int	 store_port_del(struct store *, MDB_txn *, unsigned port);
int	 store_port_walk(MDB_cursor *, int first, unsigned port, unsigned *at,
	    char *owner, size_t olen, uint64_t *released);
/* A key and value read by a cursor over ports: -1 if not a port record. */
int	 store_port_decode(const MDB_val *key, const MDB_val *val,
	    unsigned *port, uint64_t *released, MDB_val *owner);

/* Clusters: rec, and ev at the encoded API_SET (size 0 when none). */
int	 store_cluster_get(struct store *, MDB_txn *, const char *cluster,
	    struct cluster_rec *, MDB_val *ev);
int	 store_cluster_put(struct store *, MDB_txn *, const char *cluster,
	    const struct cluster_rec *, const void *ev, size_t evlen);
int	 store_cluster_del(struct store *, MDB_txn *, const char *cluster);
int	 store_cluster_decode(const MDB_val *val, struct cluster_rec *,
	    MDB_val *ev);

/*
 * The tables by name ("log", "ports", "owners", "clusters", "meta",
 * "snap"), for whoever walks them all (replay's comparison); NULL-ended.
 * A key as text for a message: a seq, a port, or the key itself.
 */
extern const char *const store_tables[];
MDB_dbi	 store_table(const struct store *, const char *name);
void	 store_key_text(const char *table, const MDB_val *key, char *buf,
	    size_t len);

void	 store_key_u64(unsigned char [8], uint64_t);
uint64_t store_u64_key(const void *);

#endif
