/*
 * portico — the event table.
 *
 * One event is one ZeroMQ message: a msgpack array
 *	[version, type, seq, time, body]
 * where body is a map with short string keys.  Every event type and every
 * field is declared once, below; the encoder, the decoder-validator and the
 * JSON dump are all driven by these two tables.  Wire codes and keys are
 * never reused or retyped: a new field is a new line.
 */
#ifndef PORTICO_EVENT_H
#define PORTICO_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#define EV_VERSION	1
#define EV_MAX_MASTERS	16
#define EV_MAX_BACKENDS	1024
#define EV_MAX_TEXT	(32u << 20)
#define EV_IPLEN	46		/* INET6_ADDRSTRLEN */
/* cluster/ns/name/route, and "/<rk>" for a route kind but Istio's */
#define EV_OWNERLEN	(64 + 64 + 254 + 24 + 16)
#define EV_MAX_HELD	256		/* ports a proxy reports held */

/*
 * Fields: name, key on the wire, kind, member.  STR fields also name their
 * validator; the member's size bounds the length.
 */
#define EV_FIELDS(X)							\
	X(CLUSTER,  "c",    STR,      cluster,  valid_cluster_id)	\
	X(CNAME,    "cn",   STR,      cname,    valid_dns_label)	\
	X(HOST,     "h",    STR,      host,     valid_dns_subdomain)	\
	X(MASTERS,  "m",    IPS,      masters,  NULL)			\
	X(MPORT,    "mp",   PORT,     mport,    NULL)			\
	X(NS,       "ns",   STR,      ns,       valid_dns_label)	\
	X(NAME,     "n",    STR,      name,     valid_k8s_name)	\
	X(ROUTE,    "r",    U64,      route,    NULL)			\
	X(WANT,     "want", PORT,     want,     NULL)			\
	X(BACKENDS, "b",    BACKENDS, backends, NULL)			\
	X(PORT,     "p",    PORT,     port,     NULL)			\
	X(WHY,      "why",  STR,      why,      valid_text)		\
	X(PROXY,    "px",   STR,      proxy,    valid_token)		\
	X(GEN,      "g",    U64,      gen,      NULL)			\
	X(BOOT,     "boot", U64,      boot,     NULL)			\
	X(SID,      "sid",  U64,      sid,      NULL)			\
	X(KIND,     "kind", STR,      kind,     valid_token)		\
	X(TEXT,     "text", TEXT,     text,     NULL)			\
	X(HAD,      "had",  PORT,     had,      NULL)			\
	X(HELD,     "held", PORTS,    held,     NULL)			\
	X(FGEN,     "fg",   U64,      fgen,     NULL)			\
	X(UID,      "uid",  STR,      uid,      valid_token)		\
	X(PROOF,    "pf",   STR,      pf,       valid_token)		\
	X(SFIRST,   "sfirst", U64,    sfirst,   NULL)			\
	X(SADOPT,   "sadopt", U64,    sadopt,   NULL)			\
	X(SREFUSED, "srefused", U64,  srefused, NULL)		\
	/* ms since the epoch when the watch event that caused this	\
	 * arrived at watcherd: convergence is measured from it */	\
	X(WT,       "wt",   U64,      wt,       NULL)			\
	/* a route table item: the generation it follows, so that a	\
	 * consumer tells a gap without contiguous seqs */		\
	X(PREV,     "pv",   U64,      prev,     NULL)			\
	/* the kind of object a route comes from: absent for an Istio	\
	 * VirtualService, "tcp" for a TCPRoute, "tls" for a TLSRoute;	\
	 * part of the owner, so that kinds never collide */		\
	X(RKIND,    "rk",   STR,      rkind,    valid_token)

enum ev_field_index {
#define X(n, k, t, m, v)	FI_##n,
	EV_FIELDS(X)
#undef X
	FI_COUNT
};

#define X(n, k, t, m, v)	F_##n = 1u << FI_##n,
enum ev_field_bit { EV_FIELDS(X) };
#undef X

/*
 * Types: name, wire code, required fields, optional fields.
 * Observations flow watcherd/applyd -> allocd; decisions are what allocd
 * logs and publishes; the rest is the bus's own control traffic.
 */
#define EV_TYPES(X)							\
	/* bus control */						\
	X(HEARTBEAT,    1, F_BOOT, 0)					\
	X(SINCE,        2, 0, 0)					\
	X(SINCE_END,    3, 0, 0)					\
	X(ACK,          4, 0, 0)					\
	/* SINCE answered with the whole state at seq: reset, then apply */ \
	X(STATE,        5, 0, F_GEN)					\
	/* observations */						\
	X(CLUSTER_UP,  10, F_CLUSTER | F_CNAME | F_HOST | F_MASTERS | F_MPORT, 0) \
	X(CLUSTER_DOWN,11, F_CLUSTER, 0)				\
	X(ROUTE,       12, F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_BACKENDS, \
	    F_WANT | F_WHY | F_HAD | F_UID | F_PROOF | F_WT | F_RKIND)	\
	X(ROUTE_GONE,  13, F_CLUSTER | F_NS | F_NAME | F_ROUTE, F_RKIND) \
	X(SYNC_BEGIN,  14, F_CLUSTER | F_SID, 0)			\
	X(SYNC_END,    15, F_CLUSTER | F_SID, 0)			\
	/* a proxy serves gen, but not the ports held; fgen failed: why */ \
	X(APPLIED,     16, F_PROXY | F_GEN, F_HELD | F_FGEN | F_WHY)	\
	X(TICK,        17, 0, 0)					\
	/* a TLSRoute's hostname (route: its index) wants the shared	\
	 * TLS port to pass that SNI name through to its backends */	\
	X(SNI_ROUTE,   18, F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_HOST |	\
	    F_BACKENDS, F_WHY | F_UID | F_WT)				\
	X(SNI_GONE,    19, F_CLUSTER | F_NS | F_NAME | F_ROUTE, 0)	\
	/* the log was compacted: replay starts here, from the snapshot */ \
	X(SNAPSHOT,    20, 0, 0)					\
	/* allocd began on an empty store: gen, the highest its consumers	\
	 * had seen; sfirst, the first store under proofs (claims without	\
	 * one are adopted) */						\
	X(STORE_LOST,  21, 0, F_GEN | F_SFIRST)				\
	/* the claims held since STORE_LOST have all been decided */	\
	X(ADOPT_END,   22, 0, 0)					\
	/* decisions */							\
	X(API_SET,     30, F_CLUSTER | F_CNAME | F_HOST | F_MASTERS | F_MPORT, 0) \
	X(API_DEL,     31, F_CLUSTER, 0)				\
	X(PORT_SET,    32, F_PORT | F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_BACKENDS, \
	    F_UID | F_WT | F_RKIND)					\
	/* pf: the proof written beside the address */			\
	X(PORT_LIVE,   33, F_PORT | F_CLUSTER | F_NS | F_NAME | F_ROUTE,	\
	    F_PROOF | F_RKIND)						\
	X(PORT_FREE,   34, F_PORT | F_CLUSTER | F_NS | F_NAME | F_ROUTE,	\
	    F_RKIND)							\
	X(REFUSED,     35, F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_WHY,	\
	    F_RKIND)							\
	/* a proxy does not serve a held port: why; without why, it does */ \
	X(PORT_FAULT,  36, F_PORT | F_CLUSTER | F_NS | F_NAME | F_ROUTE,	\
	    F_WHY | F_RKIND)						\
	/* a TLSRoute hostname routed by SNI on the shared TLS port */	\
	X(SNI_SET,     37, F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_HOST |	\
	    F_BACKENDS, F_UID | F_WT)					\
	X(SNI_DEL,     38, F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_HOST, 0) \
	/* what a store loss cost: owners adopted, claims refused and why */ \
	X(RECOVERED,   40, 0, F_SADOPT | F_SREFUSED | F_WHY)		\
	/* a rendered configuration, what renderd published before the	\
	 * route table (51-54); no longer sent, its code not reused */	\
	X(CONFIG,      50, F_KIND | F_TEXT, 0)				\
	/*								\
	 * the route table renderd publishes (renderd/routes.h): one	\
	 * item a generation, seq the allocd decision it comes from, pv	\
	 * the generation before; a SINCE is answered by STATE, the	\
	 * whole table's items, SINCE_END					\
	 */								\
	X(RT_API,      51, F_CLUSTER | F_CNAME | F_HOST | F_MASTERS | F_MPORT, \
	    F_PREV | F_WT)						\
	X(RT_API_DEL,  52, F_CLUSTER, F_PREV | F_WT)			\
	X(RT_PORT,     53, F_PORT | F_CLUSTER | F_NS | F_NAME | F_ROUTE |	\
	    F_BACKENDS, F_PREV | F_WT)					\
	X(RT_PORT_DEL, 54, F_PORT, F_PREV | F_WT)				\
	X(RT_SNI,      55, F_HOST | F_CLUSTER | F_NS | F_NAME | F_ROUTE |	\
	    F_BACKENDS, F_PREV | F_WT)					\
	X(RT_SNI_DEL,  56, F_HOST, F_PREV | F_WT)

enum ev_type {
	EV_NONE = 0,
#define X(n, c, r, o)	EV_##n = c,
	EV_TYPES(X)
#undef X
};

struct backend {
	char		ip[EV_IPLEN];
	uint16_t	port;
	uint16_t	weight;			/* 0..256, HAProxy's range */
};

struct event {
	int		type;
	uint64_t	seq;
	uint64_t	time;			/* ms since the epoch */
	uint32_t	has;			/* F_* bits present */

	char		cluster[64];
	char		cname[64];
	char		host[254];
	char		masters[EV_MAX_MASTERS][EV_IPLEN];
	size_t		nmasters;
	uint64_t	mport;
	char		ns[64];
	char		name[254];
	uint64_t	route;
	uint64_t	want;
	struct backend	*backends;		/* heap */
	size_t		nbackends;
	uint64_t	port;
	char		why[256];
	char		proxy[64];
	uint64_t	gen;
	uint64_t	boot;
	uint64_t	sid;
	char		kind[16];
	char		*text;			/* heap, NUL-terminated */
	size_t		textlen;
	uint64_t	had;			/* port written on the object */
	uint16_t	*held;			/* heap, ascending */
	size_t		nheld;
	uint64_t	fgen;			/* the generation that failed */
	char		uid[64];		/* the object's metadata.uid */
	char		pf[64];			/* proof of the address */
	uint64_t	sfirst;
	uint64_t	sadopt;
	uint64_t	srefused;
	uint64_t	wt;			/* watch event's arrival, ms */
	uint64_t	prev;			/* the generation before */
	char		rkind[16];		/* "" VirtualService, "tcp", "tls" */
};

void		 event_init(struct event *, int type);
void		 event_free(struct event *);
int		 event_copy(struct event *, const struct event *);
const char	*event_name(int type);
int		 event_known(int type);

/* Set a string field, validating it; -1 (and the field unset) if invalid. */
int		 event_set_str(struct event *, uint32_t field, const char *);
int		 event_add_backend(struct event *, const char *ip, unsigned port,
		    unsigned weight);
int		 event_set_text(struct event *, const char *, size_t);
/* Ports in ascending order, each once. */
int		 event_add_held(struct event *, unsigned port);

/*
 * Encode into a malloc'd buffer.  Fails (-1) when a required field is
 * missing: that is a bug of ours, and callers treat it as fatal.
 */
int		 event_encode(const struct event *, unsigned char **, size_t *);

/*
 * Decode untrusted bytes.  Every length and count is checked against the
 * bytes left before anything is allocated, every field is type-checked and
 * validated, unknown keys are skipped.  Returns 0, or -1 with a reason in
 * err.  An unknown type decodes (with no fields) so that callers can count
 * and ignore it.
 */
int		 event_decode(struct event *, const void *, size_t,
		    char *err, size_t errlen);

/*
 * The event as JSON.  A u64 above 2^63 - 1 (more than a JSON integer of
 * jansson's holds) is a string of its decimal digits, never negative.
 */
json_t		*event_json(const struct event *);

/*
 * The inverse of event_json(), for state files: the same types, the same
 * fields and the same validators as event_decode(), so a file can say
 * nothing the bus could not.  The type is named; seq and time are
 * integers (or, above 2^63 - 1, digits in a string, as event_json()
 * writes them); TEXT is a string (event_json() writes only its length).
 * Unknown keys are ignored, an unknown type is an error.  Returns 0, or
 * -1 with a reason in err.
 */
int		 event_from_json(struct event *, const json_t *,
		    char *err, size_t errlen);

/* "cluster/ns/name/route": the allocation owner of a route event. */
/*
 * An owner's key: "cluster/ns/name/route", and "/<rk>" after it when the
 * route's kind is not Istio's (so a VirtualService keeps its key of old).
 */
int		 event_owner(const struct event *, char *, size_t);

uint64_t	 now_ms(void);
uint64_t	 clock_us(clockid_t);

#endif
