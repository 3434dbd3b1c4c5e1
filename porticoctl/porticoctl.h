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

#include "config.h"
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
	struct config	*conf;		/* NULL until ctl_config() loads it */
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
/* The kind of an owner's route: "VirtualService", "TCPRoute", ... */
const char *ctl_owner_kind(const char *owner);
/* ev's owner in buf, 0; -1 if ev concerns no route. */
int	ctl_event_owner(const struct event *, char *, size_t);
/* A seq as the argument of an option; -1 if not digits. */
int	ctl_seq(const char *, uint64_t *);
/* ms since the epoch as "2026-12-07T05:40:01.123Z". */
const char *ctl_time(char *, size_t, uint64_t);
/* One JSON value on a line of stdout; -1 if it cannot be written. */
int	ctl_print_json(json_t *);

/*
 * The config (-f), loaded once; NULL when it cannot be read, said on
 * stderr unless quiet (a store named on the command line needs none).
 */
const struct config *ctl_config(struct ctl *, int quiet);

/*
 * allocd's tables as one read snapshot gives them (tables.c: the one place
 * beside state.c's snapshot reader that knows how allocd lays its records
 * out).  Every string in them has passed a validator: a record that does
 * not is counted in ctl->bad, named by its table only, and left out.
 */
struct ctl_proxy {
	char		 name[64];
	uint64_t	 gen;		/* the generation it acked; 0: none */
	struct event	 status;	/* its last APPLIED: held, fgen, why */
};

struct ctl_route {
	char		 owner[EV_OWNERLEN];
	struct owner_rec rec;
	struct backend	*backends;	/* its PORT_SET's, while it holds */
	size_t		 nbackends;
	char		 fault[256];	/* a proxy's fault standing, or "" */
	uint64_t	 released;	/* ms, while its port is quarantined */
	char		 host[254];	/* a TLSRoute's hostname; "" for a port */
};

struct ctl_cluster {
	char		 id[64];
	char		 name[64];	/* its name in PKS or its kubeconfig */
	struct event	 api;		/* API_SET while routed, else none */
	char		 want[254];	/* a host it waits for, another's */
	unsigned long	 routes, ports, live, refused, waiting, released;
	unsigned long	 faults;
};

struct ctl_tables {
	struct ctl_proxy	*proxies;	/* the config's, else the store's */
	size_t			 nproxies;
	struct ctl_route	*routes;	/* by owner */
	size_t			 nroutes;
	/* TLSRoute hostnames (host set, no port; live: every proxy serves) */
	struct ctl_route	*snis;		/* by owner */
	size_t			 nsnis;
	size_t			 capsnis;
	struct ctl_cluster	*clusters;	/* by id */
	size_t			 nclusters;
	uint64_t		 now;		/* ms */
	size_t			 capproxies, caproutes, capclusters;
	size_t			 last;		/* the cluster found last */
	int			 sorted;	/* clusters by id, once loaded */
};

int	ctl_tables_load(struct ctl *, struct ctl_tables *);
void	ctl_tables_free(struct ctl_tables *);
struct ctl_cluster *ctl_tables_cluster(struct ctl_tables *, const char *id);

/* How proxy px stands toward route r: PX_* and a word for it. */
enum { PX_SERVES, PX_BEHIND, PX_FAILED, PX_HELD };
int	ctl_proxy_serves(const struct ctl_proxy *, const struct ctl_route *);
const char *ctl_proxy_word(int);

int	cmd_log_dump(struct ctl *, int, char **);
int	cmd_log_state(struct ctl *, int, char **);
int	cmd_log_replay(struct ctl *, int, char **);
int	cmd_why(struct ctl *, int, char **);
int	cmd_clusters(struct ctl *, int, char **);
int	cmd_routes(struct ctl *, int, char **);
int	cmd_ports(struct ctl *, int, char **);
int	cmd_status(struct ctl *, int, char **);
int	cmd_keygen(struct ctl *, int, char **);
int	cmd_bus_since(struct ctl *, int, char **);

#endif
