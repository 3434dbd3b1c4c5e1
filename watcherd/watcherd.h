/*
 * watcherd — shared declarations.
 *
 * watcherd is portico's only contact with the provisioning API and the
 * clusters.  Sources (pks.c, the kubeconfig folder in kcdir.c) say which
 * clusters exist; each cluster (cluster.c) runs one list+watch informer per
 * resource (informer.c) and turns what it sees into observations for allocd
 * and into write-back PATCHes of the VirtualServices.  Backends are nodes
 * at node ports, or pods from EndpointSlices (endpoints.c), by the
 * cluster's backend mode.
 */
#ifndef WATCHERD_H
#define WATCHERD_H

#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "event.h"
#include "http.h"
#include "kubeconfig.h"
#include "smap.h"

#define ANN_EXPOSE	"portico.dev/expose"
#define ANN_PORT	"portico.dev/port"
#define ANN_ADDRESS	"portico.dev/address"
#define ANN_ERROR	"portico.dev/error"
#define ANN_ALLOW_FROM	"portico.dev/allow-from"	/* on a Service */
#define ANN_PROOF	"portico.dev/proof"

#ifndef MAX_EVENT_BYTES		/* the fuzz harnesses build with less */
#define MAX_EVENT_BYTES	(4u << 20)	/* one watch event */
#endif
#define VS_MAX_ROUTES	16
#define VS_MAX_DESTS	8
#define SVC_MAX_PORTS	1024	/* past it, a Service's routes are refused */
#define SVC_MAX_ALLOW	4096	/* bytes of portico.dev/allow-from */

enum { RES_VS, RES_SVC, RES_NODE, RES_EPS, RES_COUNT };
enum { SRC_PKS = 1, SRC_KUBECONFIG = 2 };
#define SRC_MAX	8	/* above every SRC_*: shard.c's table of polls */
enum { INF_IDLE, INF_LIST, INF_WATCH, INF_WAIT };

struct cluster;

struct dest {
	char		host[254];
	unsigned	port;
	unsigned	weight;
};

struct vs_route {
	struct dest	*d;
	size_t		 nd;
};

/*
 * What watcherd keeps of a VirtualService: only what routing needs, sized
 * to the object (fixed arrays of the largest made every VirtualService
 * 34 kB: 340 MB for a fleet of 10,000).
 */
struct vs_obj {
	char		 ns[64];
	char		 name[254];
	int		 expose;
	unsigned	 want;
	char		 why[200];	/* the object itself is at fault */
	struct vs_route	*routes;	/* nalloc of them, nroutes parsed */
	size_t		 nalloc;
	size_t		 nroutes;
	char		*address;	/* as on the object: compared only */
	char		*error;
	char		*proof;		/* beside the address, per route */
	char		 uid[64];	/* metadata.uid */
};

struct informer {
	struct cluster	*cl;
	int		 res;
	int		 state;
	struct http_req	*req;
	char		 rv[64];
	char		 list_rv[64];	/* of the list's first page */
	char		 cont[2048];
	int		 listed;	/* a full list has completed */
	struct smap	 seen;		/* keys seen by the current list */
	char		*line;		/* a watch event being assembled */
	size_t		 linelen;
	size_t		 linecap;
	int		 skipping;	/* an oversized event, until its end */
	uint64_t	 wait_until;
	unsigned	 backoff;	/* ms */
	unsigned	 quick;		/* ms, after an unreadable line */
	unsigned	 limit;		/* items a list page asks for */
	uint64_t	 watch_at;	/* when the watch started */
	int		 watch_good;	/* it has sent a line we could read */
	unsigned long	 errors;
};

struct cluster {
	char		 id[64];
	char		 name[64];
	char		 host[254];	/* SNI name */
	char		 masters[EV_MAX_MASTERS][EV_IPLEN];
	size_t		 nmasters;
	unsigned	 mport;
	int		 source;
	int		 backend;	/* BACKEND_*: which informers run */
	int		 seen;		/* by the source's last poll */

	struct creds	 creds;
	int		 have_creds;
	char		 connect_to[600];
	size_t		 master;	/* the one requests go to */
	unsigned	 master_fails;	/* in turn, since an answer */
	struct http_req	*bind_req;
	uint64_t	 bind_at;	/* when to ask for credentials */
	unsigned	 bind_backoff;

	char		 istio[16];	/* chosen networking.istio.io version */
	struct http_req	*disc_req;
	uint64_t	 disc_at;
	unsigned	 disc_backoff;

	struct informer	 inf[RES_COUNT];
	struct smap	 objs[RES_COUNT];
	struct smap	 sent;		/* owner -> encoded ROUTE last sent */
	struct smap	 patching;	/* VirtualServices with a PATCH out */
	uint64_t	 patch_hold;	/* after a failed PATCH, wait */
	size_t		 wb_next;	/* the bucket the write-back goes on at */
	int		 wb_more;	/* a pass stopped at the cap */
	struct smap	 touched;	/* "ns/name": VirtualServices to redo */
	int		 dirty;
	int		 need_resync;
	int		 synced_once;	/* a whole resync has been sent */
};

/* Where a computation finds backends: nodes, or EndpointSlices. */
struct bsrc {
	char		(*ips)[EV_IPLEN];	/* nodeport: sorted */
	size_t		 nips;
	struct smap	 eps;			/* endpoints: "ns/svc" -> slices */
};

/* watcherd.c */
extern struct config	conf;
extern int		alloc_synced;	/* allocd's decisions are all in */
extern int		obs_failed;	/* an observation could not be sent */
void	 obs_send(struct event *);
uint64_t jitter(uint64_t ms);

/* cluster.c */
struct cluster *cluster_find(const char *id);
struct cluster *cluster_upsert(const char *id, const char *name,
	    const char *host, char masters[][EV_IPLEN], size_t nmasters,
	    unsigned mport, int source);
void	 cluster_set_creds(struct cluster *, struct creds *);
void	 clusters_mark(int source);
void	 clusters_sweep(int source);
void	 clusters_let_go(void);		/* another shard's, without a DOWN */
void	 clusters_timer(uint64_t now);
void	 clusters_resync_all(void);
const char *clusters_unsynced(void);	/* a cluster not yet resynced once */
void	 clusters_alloc_event(const struct event *);
void	 clusters_alloc_reset(void);
void	 cluster_object(struct cluster *, int res, const char *type, json_t *);
void	 cluster_object_gone(struct cluster *, int res, const char *key);
void	 cluster_list_end(struct cluster *, int res);
void	 cluster_auth(struct cluster *, struct http_auth *);
void	 cluster_creds_refused(struct cluster *);
void	 clusters_dirty_all(void);
void	 send_cluster_down(const char *id);
void	 owner_of(char *, size_t, const char *id, const struct vs_obj *,
	    size_t route);
char	*dup_or_null(const char *);

void	 cluster_touch(struct cluster *, const char *key);
int	 cluster_watches(const struct cluster *, int res);
const char *annotation(json_t *, const char *key);

/* route.c */
void	*svc_parse(struct cluster *, const char *key, json_t *);
void	*node_parse(json_t *);
int	 route_obs(struct cluster *, struct vs_obj *, size_t route,
	    const struct bsrc *, struct event *);
void	 bsrc_init(struct cluster *, struct bsrc *);
void	 bsrc_free(struct bsrc *);

/* endpoints.c */
int	 port_name(json_t *port, char *, size_t);
void	*eps_parse(struct cluster *, const char *key, json_t *);
void	 eps_index(struct cluster *, struct smap *);
void	 eps_index_free(struct smap *);
int	 eps_backends(const struct smap *, const char *svc, const char *port,
	    unsigned weight, struct event *);

/* writeback.c */
/*
 * PATCHes in flight per cluster.  A fresh fleet may owe thousands of
 * write-backs at once: one connection each would run the process out of
 * descriptors and swamp the API server.  The rest wait for the next pass.
 */
#define WB_INFLIGHT	16

void	 cluster_writeback(struct cluster *, uint64_t now);
/* The object's uid, and the proof written beside route r's address. */
void	 vs_read_uid(struct vs_obj *, json_t *obj);
void	 vs_claim(const struct vs_obj *, size_t r, struct event *);
void	 cluster_writeback_one(struct cluster *, const char *key,
	    struct vs_obj *, uint64_t now);

/* informer.c */
void	 informer_init(struct informer *, struct cluster *, int res);
void	 informer_stop(struct informer *);
void	 informer_timer(struct informer *, uint64_t now);
const char *informer_path(const struct informer *, char *, size_t);

/* master.c */
/* Where cl's requests connect now ("host:port:ip:port"), or NULL. */
const char *master_route(struct cluster *);
/*
 * r, a request of cl's, failed in transport.  1 when another master is
 * left to try at once, 0 when the caller backs off.
 */
int	 master_failed(struct cluster *, const struct http_req *r);
/* cl's API answered. */
void	 master_ok(struct cluster *);

/* json.c: documents parsed with NULs allowed; drop what holds one */
json_t	*json_untrusted(const char *, size_t);
int	 json_has_nul(const json_t *);

/* pks.c */
void	 pks_init(void);
void	 pks_timer(uint64_t now);
void	 pks_bind(struct cluster *);
int	 pks_polled(void);
void	 pks_poll_soon(void);

/* shard.c */
struct daemon;
void	 shard_init(struct daemon *);	/* -s, [clusters] shards */
int	 shard_mine(const char *id);	/* the cluster is this shard's */
const char *shard_name(void);		/* "watcherd" or "watcherd-I" */
const char *shard_describe(void);
uint64_t shard_sync_id(void);		/* unique to this watcherd */
unsigned shard_sync_tag(void);		/* the low bits of those */
void	 shard_alloc_event(const struct event *);
void	 shard_alloc_reset(void);
uint64_t shard_feed_at(void);		/* allocd's last seq seen */
/*
 * Every source says so when a poll of it completes, with shard_feed_at()
 * as it was when the poll was asked: clusters_reconcile_alloc() takes down
 * only what allocd had before every source's last poll was asked.
 */
void	 shard_polled(int source, uint64_t asked);
void	 clusters_reconcile_alloc(void);

/* kcdir.c */
void	 kcdir_timer(uint64_t now);
int	 kcdir_polled(void);
void	 kcdir_scan_soon(void);
void	 kcdir_token(struct cluster *);

#endif
