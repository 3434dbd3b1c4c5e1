/*
 * portico — metrics: atomics written by the loop, read by libmicrohttpd's
 * thread, which writes them out as OpenMetrics text.
 *
 * The values are relaxed atomics: a scrape may see one counter a step ahead
 * of another, which Prometheus tolerates, but never a torn value.  A
 * histogram's count is the sum of its buckets as read, so that the +Inf
 * bucket and _count always agree.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <microhttpd.h>

#include "daemon.h"
#include "event.h"
#include "health.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"

#define MAXV		16		/* values of a label set, at most */
#define STALL_MS	10000		/* /healthz: the loop beat within */
#define STALL_TEXT	"10 s"
#define CONN_MAX	32		/* HTTP connections at once */
#define CONN_PER_IP	16
#define CONN_TIMEOUT	5		/* s, idle */

/* Histogram buckets: upper bounds in µs, and as OpenMetrics prints them. */
static const uint64_t bucket_us[] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000,
};
static const char *const bucket_le[] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
	"0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0",
};
#define NBUCKETS	(sizeof(bucket_us) / sizeof(bucket_us[0]))

struct label_set {
	const char		*name;
	const char *const	*values;
	unsigned		 n;
};

#define X(id, l, ...)							\
	static const char *const lv_##id[] = { __VA_ARGS__ };		\
	_Static_assert(sizeof(lv_##id) / sizeof(lv_##id[0]) <= MAXV,	\
	    "label set " #id " has more values than MAXV");
METRIC_LABELS(X)
#undef X

static const struct label_set label_sets[ML_COUNT] = {
#define X(id, l, ...)	{ l, lv_##id, sizeof(lv_##id) / sizeof(lv_##id[0]) },
	METRIC_LABELS(X)
#undef X
};

struct metric {
	const char		*name;
	enum metric_kind	 kind;
	unsigned		 daemons;
	enum metric_labels	 labels;
	const char		*help;
};

static const struct metric metrics[M_COUNT] = {
#define X(id, n, k, d, l, h)	{ n, k, d, ML_##l, h },
	METRICS(X)
#undef X
};

/* Counters and gauges by label value; histograms: buckets, then sum. */
static _Atomic uint64_t	 val[M_COUNT][MAXV];
static _Atomic uint64_t	 hist[M_COUNT][NBUCKETS + 2];

static unsigned		 self;		/* MD_* of this daemon */
static char		 const_label[96];	/* proxy="NAME", or "" */
static void		(*scrape_fn)(void *);
static void		*scrape_arg;
static struct MHD_Daemon *httpd;

_Static_assert(sizeof(bucket_us) / sizeof(bucket_us[0]) ==
    sizeof(bucket_le) / sizeof(bucket_le[0]), "one label per bucket");

static unsigned
clamp(enum metric_id m, unsigned v)
{
	return v < label_sets[metrics[m].labels].n ? v : 0;
}

void
metrics_add(enum metric_id m, unsigned v, uint64_t n)
{
	atomic_fetch_add_explicit(&val[m][clamp(m, v)], n,
	    memory_order_relaxed);
}

void
metrics_inc(enum metric_id m, unsigned v)
{
	metrics_add(m, v, 1);
}

void
metrics_set(enum metric_id m, unsigned v, int64_t x)
{
	atomic_store_explicit(&val[m][clamp(m, v)], (uint64_t)x,
	    memory_order_relaxed);
}

void
metrics_observe_us(enum metric_id m, uint64_t us)
{
	size_t b;

	for (b = 0; b < NBUCKETS && us > bucket_us[b]; b++)
		;
	atomic_fetch_add_explicit(&hist[m][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&hist[m][NBUCKETS + 1], us,
	    memory_order_relaxed);
}

void
metrics_since_ms(enum metric_id m, uint64_t then)
{
	uint64_t now = now_ms();

	if (then == 0)
		return;
	/* another daemon's clock (same host) may be a little ahead */
	metrics_observe_us(m, now > then ? (now - then) * 1000 : 0);
}

/*
 * Event codes to the value index of OBS and DEC, made once: the loop
 * counts every event it logs, and names are compared only here.
 */
#define TYPE_CODES	128
static uint8_t		 type_index[2][TYPE_CODES];
static pthread_once_t	 type_once = PTHREAD_ONCE_INIT;

static void
type_init(void)
{
	const struct label_set *s;
	unsigned i, l;
	int code;

	for (l = 0; l < 2; l++) {
		s = &label_sets[l == 0 ? ML_OBS : ML_DEC];
		for (code = 1; code < TYPE_CODES; code++)
			for (i = 1; i < s->n && event_known(code); i++)
				if (strcasecmp(s->values[i],
				    event_name(code)) == 0)
					type_index[l][code] = (uint8_t)i;
	}
}

unsigned
metrics_type(enum metric_labels l, int type)
{
	pthread_once(&type_once, type_init);
	if ((l != ML_OBS && l != ML_DEC) || type <= 0 || type >= TYPE_CODES)
		return 0;
	return type_index[l == ML_OBS ? 0 : 1][type];
}

/*
 * allocd's reasons are sentences for people (alloc.c, limits.c); this is
 * the small fixed set Prometheus can count them by.  What is not one of
 * allocd's own reasons is the watcher's verdict on the object (a bad
 * annotation, a missing Service), which it sends with the observation.
 */
unsigned
metrics_refusal(const char *why)
{
	static const struct {
		const char	*prefix;	/* NULL: anywhere */
		const char	*needle;
		unsigned	 v;
	} classes[] = {
		{ NULL,		"no free port in ",	MV_REFUSAL_NO_PORT },
		{ NULL,		"was not written by portico", MV_REFUSAL_CLAIM },
		{ NULL,		"_per_",		MV_REFUSAL_LIMIT },
		{ NULL,		"(bytes_total)",	MV_REFUSAL_LIMIT },
		{ "the route has ", "a route may have",	MV_REFUSAL_LIMIT },
		{ "the proxies' configuration is full", "", MV_REFUSAL_LIMIT },
		{ "backend ",	" is ",			MV_REFUSAL_BACKENDS },
		{ "port ",	" is outside ",		MV_REFUSAL_PORT },
		{ "port ",	" is reserved",		MV_REFUSAL_PORT },
		{ "port ",	" is quarantined ",	MV_REFUSAL_PORT },
		{ "port ",	" is taken",		MV_REFUSAL_PORT },
		/* a TLSRoute's hostname (allocd/sni.c) */
		{ "hostname ",	" is not under the cluster's host", MV_REFUSAL_NAME },
		{ "hostname ",	" API host",		MV_REFUSAL_NAME },
		{ "hostname ",	" is held by another route", MV_REFUSAL_NAME },
	};
	size_t i;

	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if ((classes[i].prefix == NULL || strncmp(why,
		    classes[i].prefix, strlen(classes[i].prefix)) == 0) &&
		    strstr(why, classes[i].needle) != NULL)
			return classes[i].v;
	return MV_REFUSAL_INVALID;
}

void
metrics_logged(const struct event *ev)
{
	unsigned v;

	if ((v = metrics_type(ML_OBS, ev->type)) != 0) {
		metrics_inc(M_OBSERVATIONS, v);
		return;
	}
	metrics_inc(M_DECISIONS, metrics_type(ML_DEC, ev->type));
	if (ev->type == EV_REFUSED)
		metrics_inc(M_REFUSALS, metrics_refusal(ev->why));
	if (ev->type == EV_PORT_SET && (ev->has & F_WT))
		metrics_since_ms(M_WATCH_DECISION, ev->wt);
}

/* renderd's thread only: what the next generation will carry. */
static uint64_t	 pending_wt, pending_dt;	/* ms since the epoch; µs */

/* In-process stages are timed finer than the events' ms can say. */
static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
metrics_folded(const struct event *ev)
{
	if ((ev->has & F_WT) && ev->wt != 0 &&
	    (pending_wt == 0 || ev->wt < pending_wt))
		pending_wt = ev->wt;
	/*
	 * From its arrival here, not allocd's stamp (its observation's
	 * arrival there): the stages then add up to the whole, without
	 * counting allocd's commit twice.
	 */
	if (pending_dt == 0)
		pending_dt = mono_us();
}

void
metrics_published(struct event *ev)
{
	if (pending_dt != 0)
		metrics_observe_us(M_DECISION_TABLE, mono_us() - pending_dt);
	metrics_inc(M_GENERATIONS, 0);
	metrics_set(M_GENERATION, 0, (int64_t)ev->seq);
	if (pending_wt != 0) {
		ev->wt = pending_wt;
		ev->has |= F_WT;
	}
	pending_wt = pending_dt = 0;
}

void
metrics_served(const struct event *ev, unsigned how)
{
	metrics_inc(M_PROXY_CHANGES, how);
	metrics_set(M_GENERATION, 0, (int64_t)ev->seq);
	if (how == MV_CHANGE_SAME)
		return;		/* nothing changed: nothing converged */
	if (ev->has & F_WT)
		metrics_since_ms(M_CONVERGENCE, ev->wt);
	metrics_since_ms(M_TABLE_PROXY, ev->time);
}

void
metrics_superseded(struct event *next, const struct event *old)
{
	if (old->type != next->type || !(old->has & F_WT) || old->wt == 0)
		return;
	if (!(next->has & F_WT) || next->wt == 0 || old->wt < next->wt) {
		next->wt = old->wt;
		next->has |= F_WT;
	}
}

void
metrics_on_scrape(void (*fn)(void *), void *arg)
{
	scrape_fn = fn;
	scrape_arg = arg;
}

/* The labels of one sample: the daemon's, then name=value, then le. */
static void
put_labels(FILE *fp, const char *name, const char *value, const char *le)
{
	const char *sep = "{";

	if (const_label[0] != '\0') {
		fprintf(fp, "%s%s", sep, const_label);
		sep = ",";
	}
	if (name != NULL) {
		fprintf(fp, "%s%s=\"%s\"", sep, name, value);
		sep = ",";
	}
	if (le != NULL) {
		fprintf(fp, "%sle=\"%s\"", sep, le);
		sep = ",";
	}
	if (*sep == ',')
		fputc('}', fp);
}

static void
render_scalar(FILE *fp, enum metric_id m)
{
	const struct metric *mt = &metrics[m];
	const struct label_set *ls = &label_sets[mt->labels];
	uint64_t x;
	unsigned v;

	for (v = 0; v < ls->n; v++) {
		x = atomic_load_explicit(&val[m][v], memory_order_relaxed);
		/* "other" only once something landed there */
		if (ls->name != NULL && v == 0 && x == 0)
			continue;
		fprintf(fp, "%s%s", mt->name, mt->kind == MK_COUNTER ?
		    "_total" : "");
		put_labels(fp, ls->name, ls->values[v], NULL);
		if (mt->kind == MK_GAUGE)
			fprintf(fp, " %lld\n", (long long)(int64_t)x);
		else
			fprintf(fp, " %llu\n", (unsigned long long)x);
	}
}

static void
render_histogram(FILE *fp, enum metric_id m)
{
	const char *name = metrics[m].name;
	uint64_t n = 0, sum;
	size_t b;

	for (b = 0; b <= NBUCKETS; b++) {
		n += atomic_load_explicit(&hist[m][b], memory_order_relaxed);
		fprintf(fp, "%s_bucket", name);
		put_labels(fp, NULL, NULL, b < NBUCKETS ? bucket_le[b] :
		    "+Inf");
		fprintf(fp, " %llu\n", (unsigned long long)n);
	}
	sum = atomic_load_explicit(&hist[m][NBUCKETS + 1],
	    memory_order_relaxed);
	fprintf(fp, "%s_sum", name);
	put_labels(fp, NULL, NULL, NULL);
	fprintf(fp, " %llu.%06llu\n", (unsigned long long)(sum / 1000000),
	    (unsigned long long)(sum % 1000000));
	fprintf(fp, "%s_count", name);
	put_labels(fp, NULL, NULL, NULL);
	fprintf(fp, " %llu\n", (unsigned long long)n);
}

/* One of the counters the daemon registered with its loop. */
static void
render_loop_counter(const char *name, unsigned long value, void *arg)
{
	FILE *fp = arg;

	fputs("portico_loop_counter_total", fp);
	put_labels(fp, "name", name, NULL);
	fprintf(fp, " %lu\n", value);
}

long
metrics_render(char **buf)
{
	static const char *const kinds[] = { "counter", "gauge", "histogram" };
	size_t len;
	FILE *fp;
	int m;

	if (scrape_fn != NULL)
		scrape_fn(scrape_arg);
	if ((fp = open_memstream(buf, &len)) == NULL)
		return -1;
	for (m = 0; m < M_COUNT; m++) {
		if (self != 0 && !(metrics[m].daemons & self))
			continue;
		fprintf(fp, "# TYPE %s %s\n# HELP %s %s.\n", metrics[m].name,
		    kinds[metrics[m].kind], metrics[m].name, metrics[m].help);
		if (metrics[m].kind == MK_HISTOGRAM)
			render_histogram(fp, m);
		else
			render_scalar(fp, m);
	}
	/* the control socket's counters too, by the names it gives them */
	fputs("# TYPE portico_loop_counter counter\n"
	    "# HELP portico_loop_counter The daemon's own counters, as its "
	    "control socket reports them.\n", fp);
	loop_counters(render_loop_counter, fp);
	fputs("# EOF\n", fp);
	if (fclose(fp) != 0) {
		free(*buf);
		return -1;
	}
	return (long)len;
}

/* HTTP */

static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, const char *type,
    char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	if ((r = MHD_create_response_from_buffer(len, body, mode)) == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
reply_text(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return reply(c, status, "text/plain; charset=utf-8", (char *)msg,
	    strlen(msg), MHD_RESPMEM_MUST_COPY);
}

/* /readyz: 200, or 503 with what the daemon waits for. */
static enum MHD_Result
readyz(struct MHD_Connection *c)
{
	char what[128], msg[160];

	if (health_ready(what, sizeof(what)))
		return reply_text(c, MHD_HTTP_OK, "ready\n");
	snprintf(msg, sizeof(msg), "not ready: %s\n", what);
	return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
}

/* GET or HEAD of /metrics, /healthz or /readyz; nothing else. */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_len, void **state)
{
	char *body;
	long len;

	(void)cls;
	(void)version;
	(void)upload;
	(void)upload_len;
	(void)state;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "only GET\n");
	if (strcmp(url, "/metrics") == 0) {
		if ((len = metrics_render(&body)) == -1)
			return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
			    "out of memory\n");
		return reply(c, MHD_HTTP_OK, "application/openmetrics-text; "
		    "version=1.0.0; charset=utf-8", body, (size_t)len,
		    MHD_RESPMEM_MUST_FREE);
	}
	if (strcmp(url, "/healthz") == 0)
		return health_alive(STALL_MS) ?
		    reply_text(c, MHD_HTTP_OK, "ok\n") :
		    reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stalled: the "
		    "loop has not gone round for " STALL_TEXT "\n");
	if (strcmp(url, "/readyz") == 0)
		return readyz(c);
	return reply_text(c, MHD_HTTP_NOT_FOUND,
	    "not found (/metrics, /healthz, /readyz)\n");
}

/* "IP:PORT" or "[IP6]:PORT", as config.c checked it, into a sockaddr. */
static int
parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t hl;
	unsigned long port;
	char *end;

	if (colon == NULL)
		return -1;
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port > 65535 || colon[1] == '\0')
		return -1;
	hl = (size_t)(colon - s);
	if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*sl = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sl = sizeof(*sin6);
		return 0;
	}
	return -1;
}

/* Where this daemon serves, from the configuration; "" if nowhere. */
static const char *
listen_of(const struct daemon *d)
{
	const struct proxy_conf *pc = d->proxy != NULL ?
	    config_proxy(d->conf, d->proxy) : NULL;

	if (strcmp(d->name, "watcherd") == 0) {
		self = MD_WATCHERD;
		return d->conf->metrics_watcherd;
	}
	if (strcmp(d->name, "allocd") == 0) {
		self = MD_ALLOCD;
		return d->conf->metrics_allocd;
	}
	if (pc == NULL)
		return "";
	snprintf(const_label, sizeof(const_label), "proxy=\"%s\"",
	    pc->name);		/* a valid_token: nothing to escape */
	if (strcmp(d->name, "renderd") == 0) {
		self = MD_RENDERD;
		return pc->renderd_metrics;
	}
	if (strcmp(d->name, "applyd") == 0) {
		self = MD_APPLYD;
		return pc->applyd_metrics;
	}
	return "";
}

unsigned
metrics_start(const struct daemon *d)
{
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage ss;
	const char *addr = listen_of(d);
	socklen_t sl;
	unsigned port;

	if (addr[0] == '\0')
		return 0;
	if (parse_listen(addr, &ss, &sl) == -1)
		fatalx("metrics: bad listen address %s", addr);
	/*
	 * Its own thread, so that no client can hold up the loop; bounded,
	 * so that many clients cannot take the daemon's files or memory.
	 */
	httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_POLL | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	    0, NULL, NULL, on_request, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_MAX,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)CONN_PER_IP,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
	    MHD_OPTION_END);
	if (httpd == NULL)
		fatalx("metrics: cannot listen on %s", addr);
	info = MHD_get_daemon_info(httpd, MHD_DAEMON_INFO_BIND_PORT);
	port = info != NULL ? info->port : 0;
	log_info("metrics: serving /metrics, /healthz, /readyz on %s "
	    "(port %u)", addr, port);
	return port;
}

void
metrics_stop(void)
{
	if (httpd != NULL)
		MHD_stop_daemon(httpd);
	httpd = NULL;
}
