/*
 * portico — what a daemon counts, for Prometheus.
 *
 * Every metric is declared once, in the table below: its name, kind, help,
 * which daemons expose it, and its label (one at most, with a fixed set of
 * values, so that no input from outside can grow the series).  The daemon's
 * loop updates them with atomics, never allocating nor locking; the HTTP
 * thread (metrics_start) reads them and writes the OpenMetrics text of
 * /metrics, and answers /healthz and /readyz from health.h.
 */
#ifndef PORTICO_METRICS_H
#define PORTICO_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct daemon;
struct event;

/* Which daemons expose a metric. */
#define MD_WATCHERD	0x1
#define MD_ALLOCD	0x2
#define MD_RENDERD	0x4
#define MD_APPLYD	0x8
#define MD_CONSUMER	(MD_WATCHERD | MD_RENDERD | MD_APPLYD) /* follow a feed */

/*
 * Label sets: the label's name, then its values.  Index 0 of every set is
 * where an update with an unknown value goes ("other"), so a counter never
 * loses a count.
 */
#define METRIC_LABELS(X)						\
	X(NONE,    NULL,     "")					\
	X(OBS,     "type",   "other", "cluster_up", "cluster_down",	\
	    "route", "route_gone", "sync_begin", "sync_end", "applied",	\
	    "tick", "sni_route", "sni_gone")				\
	X(DEC,     "type",   "other", "api_set", "api_del", "port_set",	\
	    "port_live", "port_free", "refused", "port_fault",		\
	    "recovered", "snapshot", "store_lost", "adopt_end",		\
	    "sni_set", "sni_del")					\
	X(REFUSAL, "reason", "other", "invalid_object", "limit",	\
	    "no_free_port", "port_unavailable", "backends_forbidden",	\
	    "unproven_claim", "name_unavailable")			\
	X(WRITEBACK, "result", "other", "written", "conflict", "gone",	\
	    "error")							\
	X(RESTART, "cause",  "other", "410", "idle", "error", "malformed") \
	X(CHANGE,  "how",    "other", "runtime", "reload", "start",	\
	    "same")							\
	X(PORTS,   "state",  "other", "used", "free", "quarantined")

enum metric_labels {
#define X(n, l, ...)	ML_##n,
	METRIC_LABELS(X)
#undef X
	ML_COUNT
};

/* The values of each set, as an enum: MV_<SET>_<VALUE>. */
enum { MV_OTHER = 0 };
enum { MV_REFUSAL_INVALID = 1, MV_REFUSAL_LIMIT, MV_REFUSAL_NO_PORT,
	MV_REFUSAL_PORT, MV_REFUSAL_BACKENDS, MV_REFUSAL_CLAIM,
	MV_REFUSAL_NAME };
enum { MV_WB_WRITTEN = 1, MV_WB_CONFLICT, MV_WB_GONE, MV_WB_ERROR };
enum { MV_RESTART_410 = 1, MV_RESTART_IDLE, MV_RESTART_ERROR,
	MV_RESTART_MALFORMED };
enum { MV_CHANGE_RUNTIME = 1, MV_CHANGE_RELOAD, MV_CHANGE_START,
	MV_CHANGE_SAME };
enum { MV_PORTS_USED = 1, MV_PORTS_FREE, MV_PORTS_QUARANTINED };

enum metric_kind { MK_COUNTER, MK_GAUGE, MK_HISTOGRAM };

/*
 * Metrics: id, name (without _total), kind, who exposes it, label set,
 * help.  Histograms are in seconds, observed in microseconds.
 */
#define METRICS(X)							\
	X(CONVERGENCE, "portico_route_convergence_seconds", MK_HISTOGRAM,	\
	    MD_APPLYD, NONE, "From a watch event's arrival at watcherd "	\
	    "to the proxy serving the generation that holds it")	\
	X(WATCH_DECISION, "portico_watch_to_decision_seconds",		\
	    MK_HISTOGRAM, MD_ALLOCD, NONE, "From a watch event's arrival "	\
	    "at watcherd to allocd's durable decision")			\
	X(WATCH_OBS, "portico_watch_to_observation_seconds",		\
	    MK_HISTOGRAM, MD_WATCHERD, NONE, "From watcherd reading a "	\
	    "cluster's answer to the first route observation it sends "	\
	    "allocd for it")						\
	X(DECISION_TABLE, "portico_decision_to_table_seconds",		\
	    MK_HISTOGRAM, MD_RENDERD, NONE, "From a decision's arrival at "	\
	    "renderd to renderd publishing the table that holds it")	\
	X(TABLE_PROXY, "portico_table_to_proxy_seconds", MK_HISTOGRAM,	\
	    MD_APPLYD, NONE, "From renderd publishing a generation to "	\
	    "the proxy serving it")					\
	X(STORE_COMMIT, "portico_store_commit_seconds", MK_HISTOGRAM,	\
	    MD_ALLOCD, NONE, "allocd committing a batch of decisions to "	\
	    "its store, the disk's flushes included")			\
	X(OBSERVATIONS, "portico_observations", MK_COUNTER, MD_ALLOCD,	\
	    OBS, "Observations logged, by type")			\
	X(DECISIONS, "portico_decisions", MK_COUNTER, MD_ALLOCD, DEC,	\
	    "Decisions logged, by type")				\
	X(REFUSALS, "portico_refusals", MK_COUNTER, MD_ALLOCD, REFUSAL,	\
	    "Routes refused, by class of reason")			\
	X(SENT, "portico_observations_sent", MK_COUNTER, MD_WATCHERD,	\
	    OBS, "Observations sent to allocd, by type")		\
	X(WRITEBACKS, "portico_writebacks", MK_COUNTER, MD_WATCHERD,	\
	    WRITEBACK, "Address annotations written back, by result")	\
	X(WATCH_RESTARTS, "portico_watch_restarts", MK_COUNTER,		\
	    MD_WATCHERD, RESTART, "Watches started again, by cause")	\
	X(PROXY_CHANGES, "portico_proxy_changes", MK_COUNTER, MD_APPLYD,	\
	    CHANGE, "Generations served: through the runtime API, by a "	\
	    "reload, by a start, or the same text")			\
	X(APPLY_FAILURES, "portico_apply_failures", MK_COUNTER,		\
	    MD_APPLYD, NONE, "Generations the proxy could not serve")	\
	X(GENERATIONS, "portico_generations_published", MK_COUNTER,	\
	    MD_RENDERD, NONE, "Generations renderd published")		\
	X(BUS_GAPS, "portico_bus_gaps", MK_COUNTER, MD_CONSUMER, NONE,	\
	    "Gaps in the sequence of a followed feed")			\
	X(BUS_RESYNCS, "portico_bus_resyncs", MK_COUNTER, MD_CONSUMER,	\
	    NONE, "SINCE requests sent to catch up with a feed")	\
	X(SINCE_SERVED, "portico_since_served", MK_COUNTER,		\
	    MD_ALLOCD | MD_RENDERD, NONE, "SINCE requests answered")	\
	X(CLUSTERS, "portico_clusters", MK_GAUGE, MD_ALLOCD, NONE,	\
	    "Clusters up")						\
	X(ROUTES, "portico_routes", MK_GAUGE, MD_ALLOCD, NONE,		\
	    "Routes allocd knows: held, waiting or refused")		\
	X(PORTS, "portico_ports", MK_GAUGE, MD_ALLOCD, PORTS,		\
	    "Ports of the pool, by state")				\
	X(GENERATION, "portico_generation", MK_GAUGE,			\
	    MD_RENDERD | MD_APPLYD, NONE, "Generation published "		\
	    "(renderd) or served (applyd)")

enum metric_id {
#define X(id, n, k, d, l, h)	M_##id,
	METRICS(X)
#undef X
	M_COUNT
};

/*
 * Updates, from the daemon's loop (any thread is safe).  v is the label's
 * value index (0 for a metric without a label); one out of range counts
 * as "other".  Histograms have no label but the daemon's proxy.
 */
void	metrics_inc(enum metric_id, unsigned v);
void	metrics_add(enum metric_id, unsigned v, uint64_t n);
void	metrics_set(enum metric_id, unsigned v, int64_t);
void	metrics_observe_us(enum metric_id, uint64_t us);
/* A histogram observation of now - then_ms; nothing if then_ms is 0. */
void	metrics_since_ms(enum metric_id, uint64_t then_ms);

/* The value index of an event type in OBS or DEC; 0 if none. */
unsigned metrics_type(enum metric_labels, int ev_type);
/* An event logged by allocd: its type counted, a refusal's class too. */
void	metrics_logged(const struct event *);
/* The class of a refusal's reason (REFUSAL's value index). */
unsigned metrics_refusal(const char *why);

/*
 * renderd: a decision applied to the table (the oldest watch arrival and
 * decision arrival not yet published are kept), then a generation published:
 * the oldest decision's wait is observed, and the oldest watch arrival
 * goes into the generation's event (wt), for applyd.  One observation per
 * generation, of its oldest change: the figure a route waited at most.
 */
void	metrics_folded(const struct event *decision);
void	metrics_published(struct event *generation);
/*
 * applyd: its proxy serves a generation (how: MV_CHANGE_*): convergence
 * from the generation's wt, table to proxy from its time, the generation.
 */
void	metrics_served(const struct event *generation, unsigned how);
/*
 * applyd: a generation not served yet is replaced by a newer one, which
 * holds its changes: the newer one carries the older wt of the two.
 */
void	metrics_superseded(struct event *next, const struct event *unserved);

/*
 * Called when the HTTP thread answers /metrics, before it reads the
 * values: a daemon sets gauges that are cheaper to read on demand (from
 * its own thread-safe sources) than to keep up to date.
 */
void	metrics_on_scrape(void (*fn)(void *), void *arg);

/*
 * Serve /metrics, /healthz and /readyz on the daemon's configured address,
 * if it has one ([metrics] watcherd, allocd; [proxy.NAME] renderd_metrics,
 * applyd_metrics).  Series carry proxy="NAME" for renderd and applyd.
 * Fatal if the address cannot be bound.  Returns the port bound, 0 if off.
 */
unsigned metrics_start(const struct daemon *);
void	metrics_stop(void);

/* The OpenMetrics text, malloc'd, into *buf; its length, or -1. */
long	metrics_render(char **buf);

#endif
