/*
 * porticoctl — the operator's tool: reads allocd's store and event log.
 *
 * The store is opened read-only (store_open_reader), beside a live allocd
 * or on a copy.  Every record is decoded by event_decode(), so every string
 * printed has passed the validators the bus uses; JSON goes through
 * jansson, words only ever carry those validated fields.
 */
#ifndef PORTICOCTL_H
#define PORTICOCTL_H

#include <stdint.h>

#include "event.h"
#include "store.h"

/* Exit codes. */
#define CTL_OK		0
#define CTL_USAGE	1	/* bad arguments, or nothing found */
#define CTL_STORE	2	/* the store cannot be read */
#define CTL_DIFFER	3	/* log replay: today's code decides otherwise */

struct ctl {
	const char	*conf_path;	/* -f */
	struct store	 st;
	MDB_txn		*txn;		/* one read snapshot for the command */
	int		 json;		/* -j */
	unsigned long	 bad;		/* records that did not decode */
};

/* An owner filter: "cluster/ns/name/route", or "cluster/ns/name" for all. */
struct ctl_owner {
	char		key[EV_OWNERLEN];
	int		prefix;
};

/*
 * Open the store (the folder given, else the config's [store] path) and
 * begin the read transaction; CTL_OK or an exit code, with the error said.
 */
int	ctl_open(struct ctl *, const char *store);
void	ctl_close(struct ctl *);

/*
 * Each record with since <= seq <= until, in order, decoded; fn returns 0
 * to go on, 1 to stop, -1 on an error of its own.  A record that does not
 * decode is reported on stderr, counted in c->bad and skipped.  Returns 0,
 * -1 (fn's error) or an LMDB error code.
 */
int	ctl_walk(struct ctl *, uint64_t since, uint64_t until,
	    int (*fn)(struct ctl *, const struct event *, void *), void *);

/* Parse a filter; -1 if it is not an owner (or a prefix of one). */
int	ctl_owner_parse(struct ctl_owner *, const char *);
/* Does ev concern the owner? */
int	ctl_owner_match(const struct ctl_owner *, const struct event *);
/* ev's owner in buf, 0; -1 if ev concerns no route. */
int	ctl_event_owner(const struct event *, char *, size_t);
/* A seq as the argument of an option; -1 if not digits. */
int	ctl_seq(const char *, uint64_t *);
/* ms since the epoch as "2026-12-07T05:40:01.123Z". */
const char *ctl_time(char *, size_t, uint64_t);
/* One JSON value on a line of stdout; -1 if it cannot be written. */
int	ctl_print_json(json_t *);

int	cmd_log_dump(struct ctl *, int, char **);
int	cmd_log_state(struct ctl *, int, char **);
int	cmd_log_replay(struct ctl *, int, char **);
int	cmd_why(struct ctl *, int, char **);

#endif
