/*
 * portico — the one configuration file that all four daemons read.
 *
 * INI, parsed by libinih; each key is declared once in config.c's keyword
 * table (section, key, kind, bounds, default), which drives parsing,
 * defaults and the normalised print of -n.
 */
#ifndef PORTICO_CONFIG_H
#define PORTICO_CONFIG_H

#include <limits.h>
#include <stdio.h>

#include "addr.h"

#define CONF_MAX_PROXIES	8
#define CONF_MAX_CLUSTERS	256	/* [cluster.NAME] sections */
#define CONF_MAX_RANGES		32

/* A set of ports: sorted, non-overlapping ranges (a single port is lo == hi). */
struct port_set {
	unsigned	n;
	struct {
		unsigned	lo;
		unsigned	hi;
	}		r[CONF_MAX_RANGES];
};
#define CONF_ENDPOINT		256
#define CONF_RUNDIR		96	/* ipc:// paths must fit in sun_path */

struct proxy_conf {
	char		name[64];
	char		kind[16];		/* haproxy, nginx, envoy */
	char		binary[PATH_MAX];
	char		listen[46];		/* default: [portico] listen */
	char		config[PATH_MAX];	/* the file the proxy serves */
	char		pub[CONF_ENDPOINT];	/* renderd's config PUB */
	char		sync[CONF_ENDPOINT];	/* renderd's SINCE ROUTER */
	unsigned	hard_stop_after;	/* seconds */
	unsigned	max_reloads;	/* reloads an old worker outlives */
	unsigned	maxconn;
	unsigned	fd_limit;	/* the proxy's open files (ulimit -Hn) */
	unsigned	check_rate;	/* health checks/s one cluster takes */
	unsigned	live;		/* change routes without reloads */
	char		user[32];	/* the workers' user ("": the master's) */
	char		group[32];	/* its primary group, from the system */
	/* "IP:PORT" where renderd, applyd, HAProxy's exporter serve; "": off */
	char		renderd_metrics[64];
	char		applyd_metrics[64];
	char		stats_listen[64];
};

/* How a cluster's workload backends are found ([clusters] backend). */
enum { BACKEND_NODEPORT, BACKEND_ENDPOINTS };

/* [cluster.NAME]: what one cluster does differently from [clusters]. */
struct cluster_conf {
	char		name[64];		/* as PKS or the kubeconfig names it */
	char		backend[16];		/* default: [clusters] backend */
};

struct config {
	char		path[PATH_MAX];
	char		domain[254];
	char		run_dir[CONF_RUNDIR];
	char		listen[46];
	unsigned	api_port;
	struct port_set	ports;			/* the workload ports */
	struct port_set	reserved;		/* never given out */
	unsigned	port_lo;		/* lowest and highest of ports */
	unsigned	port_hi;
	unsigned	quarantine;		/* seconds */
	unsigned	allow_shrink;		/* owners off the ports may move */

	char		store[PATH_MAX];
	unsigned	map_size_mb;
	unsigned	compact_records;	/* log records before compaction */
	unsigned	compact_age;		/* seconds; 0: by count only */
	unsigned	compact_mb;		/* log MiB before compaction */
	char		proof_key[PATH_MAX];	/* allocd's HMAC key file */
	unsigned	adopt_wait;		/* s: claims held after a loss */

	char		pks_url[512];
	char		uaa_url[512];
	char		pks_client_id[128];
	char		pks_client_secret[256];
	char		pks_username[128];	/* both set: the password grant */
	char		pks_password[256];	/* never printed or logged */
	char		pks_ca[PATH_MAX];
	unsigned	pks_poll;		/* seconds */

	char		kubeconfig_dir[PATH_MAX];
	unsigned	kubeconfig_poll;	/* seconds */
	char		kubeconfig_allow[1024];	/* dirs its files may lie in */

	char		capi_kubeconfig[PATH_MAX];	/* the management cluster */
	unsigned	capi_poll;		/* seconds */
	unsigned	capi_secret_poll;	/* seconds, per Secret */
	char		capi_namespaces[1024];	/* DNS labels; "": every one */
	unsigned	capi_max_clusters;	/* past it, Clusters are refused */
	unsigned	capi_ns_host;		/* <name>.<namespace>.<domain> */

	char		backend[16];		/* nodeport, endpoints */
	unsigned	watch_timeout;		/* seconds, server side */
	unsigned	watch_idle;		/* seconds without a byte */
	unsigned	shards;			/* watcherds splitting the clusters */

	char		alloc_in[CONF_ENDPOINT];
	char		alloc_pub[CONF_ENDPOINT];
	char		alloc_sync[CONF_ENDPOINT];
	char		bus_keys[PATH_MAX];	/* CURVE keys' folder (keys.h) */
	char		bus_bind[46];	/* what tcp:// binds take, or "" */

	struct proxy_conf proxies[CONF_MAX_PROXIES];
	int		nproxies;

	struct cluster_conf clusters[CONF_MAX_CLUSTERS];
	int		nclusters;

	/* [limits]: what one cluster may take of the fleet; 0 is no limit */
	struct addr_nets allow_backends;	/* ranges backends may use */
	unsigned	lim_routes;		/* routes held or waiting */
	unsigned	lim_ports;		/* ports held */
	unsigned	lim_ports_ns;		/* ports held by one namespace */
	unsigned	lim_backends_route;
	unsigned	lim_backends;		/* over all its routes */
	unsigned	lim_bytes;		/* its share of a proxy's table */
	unsigned	lim_bytes_total;	/* every cluster's together */
	unsigned	lim_sni;		/* SNI names of one cluster */

	char		log_format[8];		/* text, logfmt */
	char		log_level[8];		/* info, debug */

	/* [metrics]: "IP:PORT" where each serves /metrics; "": off */
	char		metrics_watcherd[64];
	char		metrics_allocd[64];
};

/*
 * One key of the keyword table, for config_diff (reload.c): where its value
 * lies in struct config, proxy_conf or cluster_conf (by section).
 */
struct config_key {
	const char	*section;	/* "proxy", "cluster": [proxy.NAME]... */
	const char	*key;
	size_t		 off;
	size_t		 size;
};
size_t	config_nkeys(void);
void	config_key(size_t, struct config_key *);

/*
 * confdiff.c.  config_diff calls fn once for each key whose value differs
 * between a and b, in the order of the table, with the section as written
 * ("portico", "proxy.NAME", "cluster.NAME"); a [proxy.NAME] or
 * [cluster.NAME] that only one of them has is reported once, key NULL.
 * Returns how many it reported.  config_copy_key copies one key of an
 * unnamed section ([portico], [limits]...) from src into dst.
 */
typedef void config_diff_cb(void *, const char *section, const char *key);
int	config_diff(const struct config *a, const struct config *b,
	    config_diff_cb *fn, void *);
void	config_copy_key(struct config *dst, const struct config *src,
	    const char *section, const char *key);

/* Load and check; on error fill err with "file:line: key: reason". */
int	config_load(const char *path, struct config *, char *err, size_t);
void	config_print(const struct config *, FILE *);
const struct proxy_conf *config_proxy(const struct config *, const char *);
/* BACKEND_*: the cluster's [cluster.NAME] backend, else [clusters] backend. */
int	config_backend(const struct config *, const char *cluster);

/* Port sets: membership, size, the i-th port in order, "a-b,c". */
int	ports_contain(const struct port_set *, unsigned);
unsigned ports_count(const struct port_set *);
unsigned ports_nth(const struct port_set *, unsigned);
void	ports_format(const struct port_set *, char *, size_t);
/* Parse "a-b, c, ..." within min-max; -1 if malformed or overlapping. */
int	ports_parse(struct port_set *, const char *, unsigned min, unsigned max);

/*
 * "<run_dir>/<proxy>-<what>": a file that a proxy's rendered configuration
 * names and its applyd reads (pid file, error log), named in one place.
 */
void	config_proxy_file(const struct config *, const struct proxy_conf *,
	    const char *what, char *, size_t);

/*
 * [proxy.NAME] user (proxyuser.c).  config_user_ok: a name a proxy config
 * can carry.  config_proxy_user: unless given, the kind's default user if
 * it exists; then its primary group into px->group.  -1 with err when the
 * user does not exist.
 */
int	config_user_ok(const char *);
int	config_proxy_user(const char *path, struct proxy_conf *, int given,
	    char *err, size_t);

/*
 * Create the run folder (mode 0700) that holds ipc sockets and pid files,
 * or check the one there: ours, and writable by no one else.  0, or -1 with
 * the reason in err.
 */
int	config_mkrundir(const struct config *, char *err, size_t);

/*
 * Write "<run_dir>/<name>.pid": the readiness signal the tests wait on.  Its
 * temporary twin is created afresh, never through a link.
 */
int	config_ready(const struct config *, const char *name);

#endif
