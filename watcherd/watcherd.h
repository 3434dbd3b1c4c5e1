/*
 * watcherd — shared declarations.
 *
 * watcherd is portico's only contact with the provisioning API and the
 * clusters.  Calls run one way, down this list:
 *
 *   watcherd.c     the loop; the sources' table
 *   pks.c kcdir.c capi.c  cluster sources: which clusters exist, their
 *                  credentials
 *   cluster.c      each cluster: its lifecycle, informers and objects
 *   compute.c      its routes as observations (one loop), the resync, and
 *                  the write-backs that follow
 *   discovery.c informer.c  the versions served; one list+watch per
 *                  resource, reporting through its ops
 *   vs.c gwroute.c route kinds: an object's routes as observations
 *   gateway.c      the Gateway API's GatewayClasses and Gateways
 *   route.c endpoints.c  backends from Services, Nodes, EndpointSlices
 *   writeback.c    allocd's decisions written back onto the objects
 *   decisions.c obs.c master.c http.c shard.c  the leaves (shard.c: which
 *                  clusters are this watcherd's, when several split them)
 *
 * A lower file never calls a higher one; where it must tell (an informer
 * saw an object, a cluster's credentials were refused) it calls through a
 * table of functions its owner gave it.
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

/*
 * Resources watched, one informer each.  Where each is served (group,
 * versions preferred first) is informer.c's table; which run on a cluster
 * is cluster_watches().
 */
enum { RES_VS, RES_SVC, RES_NODE, RES_EPS, RES_GWC, RES_GW, RES_TCPR,
    RES_TLSR, RES_REFG, RES_COUNT };
enum { INF_IDLE, INF_LIST, INF_WATCH, INF_WAIT };
/* API groups found by discovery: what a resource's version is picked from. */
enum { GRP_CORE, GRP_ISTIO, GRP_GW, GRP_COUNT };

#define GW_GROUP	"gateway.networking.k8s.io"
#define GW_CONTROLLER	"portico.dev/gateway-controller"
/* Gateway API route kinds, as listeners name them */
enum { GWK_TCP, GWK_TLS };
/* How a route attaches to a Gateway: in order, the best wins */
enum { GWA_NONE, GWA_REFUSED, GWA_OK };

struct cluster;
struct robj;
struct bsrc;
struct wb_owed;

/*
 * A cluster source (pks.c, kcdir.c, capi.c): which clusters exist, and
 * with what credentials.  The source calls cluster_upsert/
 * cluster_set_creds and clusters_mark/clusters_sweep around a poll; the
 * clusters call back only through this table.  Adding a source is one
 * more of these, listed in watcherd.c's sources[], with an id of its own.
 *
 * Sharded (shard.c), a source skips another shard's cluster before it
 * looks at anything else of it (shard_mine(id)), and calls clusters_mark
 * when it asks for the clusters, not when the answer comes: a poll speaks
 * only for the clusters allocd had when it was asked.
 */
enum { SRC_PKS = 1, SRC_KUBECONFIG, SRC_CAPI, SRC_MAX };

struct cluster_source {
	const char	*name;		/* in logs */
	int		 id;		/* SRC_* */
	/* configured at all: a source with nothing configured is polled */
	int		(*enabled)(void);
	void		(*init)(void);
	void		(*timer)(uint64_t now);
	/* its first poll is over (ready, and the alloc reconcile, wait) */
	int		(*polled)(void);
	/* cl has no credentials yet: ask for them (NULL: they come alone) */
	void		(*bind)(struct cluster *, uint64_t now);
	/* the API server said 401: credentials are to be read again */
	void		(*refused)(struct cluster *);
	/* requests go to the masters' IPs, the server name kept for TLS */
	int		 via_masters;
	/* the next poll without waiting for its interval (a recount) */
	void		(*poll_soon)(void);
};

extern const struct cluster_source pks_source, kcdir_source, capi_source;

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
 * What watcherd keeps of a route object (a VirtualService): only what
 * routing and the write-back need, sized to the object (fixed arrays of
 * the largest made every VirtualService 34 kB: 340 MB for a fleet of
 * 10,000).  Route r of the object is the owner ".../<ns>/<name>/<r>".
 */
struct robj {
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

	/* the Gateway API's routes (gwroute.c) */
	struct gw_parent *parents;	/* Gateways named in parentRefs */
	size_t		 nparents;
	char		(*hosts)[254];	/* TLSRoute: route r's hostname */
	char		*status;	/* our status.parents, as it is */
	char		*others;	/* other controllers' parents: JSON */
	long long	 gen;		/* metadata.generation */
	int		 attach;	/* GWA_*, by prepare */
	char		 refs_why[256];	/* why a backendRef did not resolve */
	unsigned	 refkind;	/* 1 << GWK_*: ReferenceGrants apply */
};

/*
 * A kind of route object: how it is read, what observation each of its
 * routes makes, and where it is written back.  The clusters call down
 * into these, never the other way.
 */
struct route_kind {
	const char	*name;		/* "VirtualService", in logs */
	int		 index;		/* KIND_*: in route_kinds[] */
	int		 res;		/* its informer */
	const char	*rk;		/* event field rk: "" for Istio's */
	/* fill o from obj; o->expose 0 when the object is none of ours */
	void		(*parse)(struct cluster *, struct robj *, json_t *);
	/* before its routes are computed: what else they depend on */
	void		(*prepare)(struct cluster *, struct robj *);
	/*
	 * route r as an observation; 1 when what it had must be cut, -1
	 * when nothing is to be sent for it (what was is gone)
	 */
	int		(*obs)(struct cluster *, struct robj *, size_t r,
			    const struct bsrc *, struct event *);
	int		 gone_type;	/* 0: EV_ROUTE_GONE */
	/* the object's URL path, below the API server */
	void		(*path)(struct cluster *, const struct robj *, char *,
			    size_t);
	/* its status written back, when it has one of ours */
	void		(*status)(struct cluster *, const char *key,
			    struct robj *);
	int		 no_address;	/* no portico.dev/address written */
};

enum { KIND_VS, KIND_TCP, KIND_TLS, KIND_COUNT };
extern const struct route_kind *route_kinds[KIND_COUNT];

struct informer;

/* What an informer tells its owner (cluster.c). */
struct informer_ops {
	void	(*object)(struct cluster *, int res, const char *type,
		    json_t *);
	void	(*gone)(struct cluster *, int res, const char *key);
	void	(*listed)(struct cluster *, int res);
	void	(*refused)(struct cluster *);	/* a 401 */
};

struct informer {
	struct cluster	*cl;
	const struct informer_ops *ops;
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

/* One API group's discovery: the versions the server offers. */
struct disc {
	struct cluster	*cl;
	int		 grp;
	char		 served[96];	/* ",v1,v1beta1,": "" not known yet */
	int		 known;		/* answered (absent is an answer) */
	struct http_req	*req;
	uint64_t	 at;
	unsigned	 backoff;
};

struct cluster {
	char		 id[64];
	char		 name[64];
	char		 host[254];	/* SNI name */
	char		 masters[EV_MAX_MASTERS][EV_IPLEN];
	size_t		 nmasters;
	unsigned	 mport;
	const struct cluster_source *src;
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

	struct disc	 disc[GRP_COUNT];
	char		 ver[RES_COUNT][16];	/* picked from disc */

	struct informer	 inf[RES_COUNT];
	struct smap	 objs[RES_COUNT];
	struct smap	 sent;		/* owner -> struct sent */
	struct smap	 patching;	/* "kind/ns/name" -> struct patch */
	uint64_t	 patch_hold;	/* after a failed PATCH, wait */
	size_t		 wb_next[KIND_COUNT];	/* where write-back goes on */
	int		 wb_more;	/* a pass stopped at the cap */
	struct wb_owed	*owed;		/* put off by the cap, oldest first */
	struct wb_owed	*owed_last;
	struct smap	 owed_keys;	/* "kind/ns/name" -> its wb_owed */
	struct smap	 touched[KIND_COUNT];	/* "ns/name": to redo */
	struct smap	 eps_idx;	/* "ns/svc" -> its EndpointSlices */
	struct smap	 svc_routes;	/* "ns/svc" -> "kind/ns/name" set */
	int		 dirty;
	int		 need_resync;
	int		 synced_once;	/* a whole resync has been sent */
};

/* Where a computation finds backends: nodes, or EndpointSlices. */
struct bsrc {
	char		(*ips)[EV_IPLEN];	/* nodeport: sorted */
	size_t		 nips;
	const struct smap *eps;			/* endpoints: cl->eps_idx */
};

/* watcherd.c: the configuration */
extern struct config	conf;

/* obs.c: observations to allocd, the bottom of every call */
extern int		obs_failed;	/* an observation could not be sent */
extern uint64_t		obs_seq, obs_acked, obs_unacked_since;
/* When this loop turn read from a cluster (0: not yet): the metric */
extern uint64_t		obs_read_us;
uint64_t obs_now_us(void);
void	 obs_init(void *sock, unsigned seed);
void	 obs_send(struct event *);
uint64_t jitter(uint64_t ms);

/* decisions.c: what allocd decided, kept for the write-back */
struct decision {
	unsigned	port;
	int		live;
	char		why[256];	/* refused */
	char		fault[256];	/* a proxy does not serve port */
	char		pf[64];		/* proof of the address, once live */
};
extern int		alloc_synced;	/* allocd's decisions are all in */
/* The owner key of route r: "id/ns/name/r", "/rk" after it for a kind. */
void	 decision_owner(char *, size_t, const char *id, const char *rk,
	    const char *ns, const char *name, size_t r);
/* 1 when ev concerns an owner, whose object is then to be looked at */
int	 decisions_apply(const struct event *);
const struct decision *decision_get(const char *owner);
void	 decisions_reset(void);
/*
 * The clusters allocd routes, one by one, with the seq of the decision
 * that first routed each: NULL at the end.
 */
const char *decisions_cluster_next(struct smap_iter *, uint64_t *since);
uint64_t decisions_seq(void);		/* allocd's feed: the last seq seen */

/* cluster.c */
struct cluster *cluster_find(const char *id);
struct cluster *cluster_upsert(const char *id, const char *name,
	    const char *host, char masters[][EV_IPLEN], size_t nmasters,
	    unsigned mport, const struct cluster_source *);
void	 cluster_set_creds(struct cluster *, struct creds *);
void	 clusters_mark(const struct cluster_source *);
void	 clusters_sweep(const struct cluster_source *);
void	 clusters_let_go(void);		/* another shard's, without a DOWN */
void	 clusters_timer(uint64_t now);
void	 clusters_resync_all(void);
const char *clusters_unsynced(void);	/* a cluster not yet resynced once */
void	 clusters_alloc_event(const struct event *);
void	 clusters_alloc_reset(void);
void	 clusters_reconcile_alloc(void);
void	 clusters_dirty_all(void);
/* sweeps done by every source: a reconcile follows a new one */
extern unsigned long clusters_sweeps;

/* compute.c: the cluster's routes as observations, then its write-backs */
void	 compute_routes(struct cluster *, int all, uint64_t now);
void	 compute_writeback(struct cluster *, uint64_t now);
void	 compute_forget(struct cluster *);	/* what was sent */

/* discovery.c: the versions served, and each resource's */
void	 discover(struct cluster *, uint64_t now);

/* route.c: backends of a route, from Services and Nodes/EndpointSlices */
const char *annotation(json_t *, const char *key);
char	*dup_or_null(const char *);
void	*svc_parse(struct cluster *, const char *key, json_t *);
void	*node_parse(json_t *);
void	*refgrant_parse(json_t *);
/* A ReferenceGrant lets a route of kind (1 << GWK_*) from ns name the
 * Service "sns/name" key. */
int	 refgrant_allows(struct cluster *, const char *key, unsigned kind,
	    const char *ns);
/*
 * Route r of o: its destinations' backends into ev (a ROUTE, or another
 * type the caller set), or why it is refused; 1 when what it had must be
 * cut (consent withdrawn).
 */
int	 route_backends(struct cluster *, struct robj *, size_t r,
	    const struct bsrc *, struct event *);
/* ROUTE for route r of o, with what the object claims (had, proof) */
void	 route_init(struct cluster *, const struct route_kind *,
	    struct robj *, size_t r, struct event *);
void	 robj_free(struct robj *);
/* "ns/svc": the Service a destination host names from ns, "" for none */
void	 route_service_key(const char *ns, const char *host, char[384]);
/* The object's uid, and the proof written beside route r's address. */
void	 robj_read_uid(struct robj *, json_t *obj);
void	 robj_claim(const struct robj *, size_t r, struct event *);
void	 bsrc_init(struct cluster *, struct bsrc *);
void	 bsrc_free(struct bsrc *);

/* vs.c: Istio's VirtualService */
extern const struct route_kind vs_kind;

/* gwroute.c: the Gateway API's TCPRoute and TLSRoute */
extern const struct route_kind tcp_kind, tls_kind;

/* gateway.c: GatewayClass, Gateway */
void	*gwc_parse(json_t *);
void	*gw_parse(json_t *);
/* GWA_*: whether the Gateway gwns/gwname, ours, admits a route */
int	 gw_attach(struct cluster *, const char *gwns, const char *gwname,
	    int gwk, const char *routens);
void	 gw_writeback(struct cluster *);

/* endpoints.c */
int	 port_name(json_t *port, char *, size_t);
void	*eps_parse(struct cluster *, const char *key, json_t *);
/* "ns/svc": the Service of the slice key ("ns/name"), "" for none */
void	 eps_service_key(const char *key, const void *slice, char[384]);
/* The slice key in or out of its Service's set in the index. */
void	 eps_index_put(struct smap *, const char *key, const void *slice);
void	 eps_index_del(struct smap *, const char *key, const void *slice);
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

/* A pass over a kind's route objects' annotations, from where the last
 * one stopped at the cap. */
void	 writeback_pass(struct cluster *, const struct route_kind *,
	    uint64_t now);
/*
 * One object's write-back (its annotations, then its status); over the
 * cap, it is owed, and writeback_owed starts it once PATCHes are done.
 */
void	 writeback_one(struct cluster *, const struct route_kind *,
	    const char *key, struct robj *, uint64_t now);
void	 writeback_owed(struct cluster *, uint64_t now);
/* cl goes: its PATCHes in flight are dropped. */
void	 writeback_cancel(struct cluster *);
/*
 * A merge PATCH of path (a status subresource) with body; 0 when it is
 * sent, -1 when one for key is still out or writes are held.
 */
int	 writeback_status(struct cluster *, const char *key, const char *path,
	    const char *body);
void	 now_rfc3339(char *, size_t);

/* informer.c */
void	 informer_init(struct informer *, struct cluster *, int res,
	    const struct informer_ops *);
void	 informer_stop(struct informer *);
void	 informer_timer(struct informer *, uint64_t now);
const char *informer_path(const struct informer *, char *, size_t);
/* Which group res is served by, and its versions, preferred first. */
int	 informer_group(int res);
const char *const *informer_versions(int res);
const char *informer_kind(int res);		/* "VirtualService" */
int	 informer_namespaced(int res);
/* Whether res is watched on cl at all: Nodes or EndpointSlices by mode. */
int	 informer_wanted(const struct cluster *, int res);
const char *informer_group_name(int grp);	/* NULL: the core API */
int	 informer_group_required(int grp);	/* waited for until served */

/* master.c */
/* Where cl's requests connect now ("host:port:ip:port"), or NULL. */
int	 master_allowed(const char *, char *, size_t);
const char *master_route(struct cluster *);
/*
 * r, a request of cl's, failed in transport.  1 when another master is
 * left to try at once, 0 when the caller backs off.
 */
int	 master_failed(struct cluster *, const struct http_req *r);
/* cl's API answered. */
void	 master_ok(struct cluster *);
/* What cl's requests present and where they go. */
void	 master_auth(struct cluster *, struct http_auth *);

/*
 * resolve.c: host names looked up off the loop, for source src (SRC_*).
 * resolve_name gives the addresses of host (their count), 0 while its
 * first lookup is out, or -1 with the reason in why; it asks again once
 * the answer is refresh ms old (a failed one sooner, with a backoff).
 * resolve_timer takes the answers in: 1 when one of src's moved.
 * resolve_forget_unasked drops the names src did not ask for since its
 * last call.
 */
int	 resolve_name(int src, const char *host, uint64_t refresh,
	    char masters[][EV_IPLEN], char *why, size_t whylen);
int	 resolve_timer(int src);
void	 resolve_forget_unasked(int src);

/* json.c: documents parsed with NULs allowed; drop what holds one */
json_t	*json_untrusted(const char *, size_t);
int	 json_has_nul(const json_t *);

/* pks.c, kcdir.c, capi.c: sources, through their struct cluster_source */

/* shard.c: this watcherd's share of the clusters, a leaf */
struct daemon;
void	 shard_init(struct daemon *);	/* -s, [clusters] shards */
int	 shard_mine(const char *id);	/* the cluster is this shard's */
const char *shard_name(void);		/* "watcherd" or "watcherd-I" */
const char *shard_describe(void);
int	 shard_recount(void);		/* SIGHUP: 1 when the count moved */
uint64_t shard_sync_id(void);		/* unique to this watcherd */
unsigned shard_sync_tag(void);		/* the low bits of those */
/*
 * Source src (SRC_*) asks for its clusters when allocd's feed is at seq,
 * and has the whole answer: clusters_mark and clusters_sweep say so.
 * shard_polled_upto: the last seq every source's last poll speaks for.
 */
void	 shard_poll_asked(int src, uint64_t seq);
void	 shard_polled(int src);
uint64_t shard_polled_upto(void);
void	 shard_polls_void(void);	/* none of them speaks any more */
extern unsigned long shard_downs;	/* taken down by the reconcile */

#endif
