/*
 * portico — the LMDB store.
 *
 * allocd is its only writer.  Named databases:
 *	log	big-endian u64 seq -> encoded event, appended with MDB_APPEND
 *	ports	big-endian u16 port -> struct port_rec + owner
 *	owners	owner key -> struct owner_rec + encoded PORT_SET event
 *	clusters cluster id -> struct cluster_rec + encoded API_SET event
 *	meta	name -> value (schema version, applied generations)
 *	snap	the four tables above as they were at the SNAPSHOT record
 *		meta "snapshot" names, each key prefixed by a table letter
 *		(o, p, c, m); snap1 is the other copy (meta "snapdb" says which
 *		one holds it), filled by a compaction under way
 * The log is whole from the SNAPSHOT record on; records before it are
 * left over from a compaction and are being deleted (allocd/compact.c).
 * Commits are durable: the environment is never opened with MDB_NOSYNC.
 */
#ifndef PORTICO_STORE_H
#define PORTICO_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "event.h"

#define STORE_SCHEMA	1

/*
 * The records of allocd's tables (and of their copies in snap), for
 * allocd, their writer, and for readers of a store (porticoctl).  LMDB
 * does not align values: copy a record out before reading its fields.
 */
enum { OWN_ACTIVE = 1, OWN_QUARANTINED = 2, OWN_REFUSED = 3 };

struct owner_rec {
	uint16_t	port;		/* current or last port, 0 if none */
	uint8_t		state;
	uint8_t		live;		/* every proxy serves it */
	uint8_t		waiting;	/* refused for want of a port */
	uint8_t		limited;	/* refused by a limit of its cluster */
	uint8_t		pad[4];
	uint64_t	set_seq;	/* last PORT_SET; or since when waiting */
	uint64_t	seen_sync;	/* sync_seq of the sync that last saw it */
	char		why[256];	/* last refusal written */
	/* followed by the encoded PORT_SET event */
};

struct port_rec {
	uint64_t	released;	/* ms; 0 while held */
	/* followed by the owner key */
};

struct cluster_rec {
	uint64_t	sid;		/* watcherd's id of the sync begun last */
	uint64_t	sync_seq;	/* log seq of that SYNC_BEGIN: unique */
	uint8_t		up;
	uint8_t		pad[7];
	/* followed by the encoded API_SET event when up */
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

int	 store_open(struct store *, const char *dir, size_t mapsize, int rdonly);
/* Read-only, for a tool; *nolock: opened without LMDB's lock file. */
int	 store_open_reader(struct store *, const char *dir, int *nolock);
void	 store_close(struct store *);
int	 store_begin(struct store *, MDB_txn **, int rdonly);

/* Append ev under ev->seq; a seq that is not the next one is fatal. */
int	 store_append(struct store *, MDB_txn *, const struct event *);
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

void	 store_key_u64(unsigned char [8], uint64_t);
uint64_t store_u64_key(const void *);

#endif
