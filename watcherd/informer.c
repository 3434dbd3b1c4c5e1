/*
 * watcherd — one list+watch informer per cluster per resource.
 *
 * List in pages (limit/continue; an expired continue token restarts the
 * list), derive the deletes the list implies, then watch from the list's
 * resourceVersion with bookmarks and a server-side timeout.  A stream that
 * ends normally resumes from the last resourceVersion seen; a 410, plain or
 * as an in-stream ERROR, relists; a line we cannot read restarts the watch
 * after a short pause, so that the event it held is sent again; other
 * errors back off with jitter, and the backoff resets as soon as a list
 * completes or a watch sends a line we can read.  A list page larger than
 * HTTP_MAX_BODY is asked for again with half the limit.  A transport error
 * tries the cluster's next master first (master.c).  A watch that goes
 * quiet for longer than watch_idle is cut by our own timer (no
 * CURLOPT_TIMEOUT on watches), and no event may exceed MAX_EVENT_BYTES.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "watcherd.h"

#define PAGE_SIZE	500
#define BACKOFF_MIN	500
#define BACKOFF_MAX	30000
#define QUICK_MIN	100	/* ms, after an unreadable watch line */
#define QUICK_MAX	2000
#define WATCH_BRIEF	1000	/* ms: a watch ended sooner, empty, pauses */

/* Where each resource is served; the versions preferred first. */
static const struct {
	const char	*plural;
	const char	*kind;
	int		 grp;
	const char	*versions[4];
} resources[RES_COUNT] = {
	[RES_VS] = { "virtualservices", "VirtualService", GRP_ISTIO,
	    { "v1", "v1beta1", "v1alpha3" } },
	[RES_SVC] = { "services", "Service", GRP_CORE, { "v1" } },
	[RES_NODE] = { "nodes", "Node", GRP_CORE, { "v1" } },
	[RES_EPS] = { "endpointslices", "EndpointSlice", GRP_CORE, { "v1" } },
	[RES_GWC] = { "gatewayclasses", "GatewayClass", GRP_GW,
	    { "v1", "v1beta1" } },
	[RES_GW] = { "gateways", "Gateway", GRP_GW, { "v1", "v1beta1" } },
	[RES_TCPR] = { "tcproutes", "TCPRoute", GRP_GW, { "v1alpha2" } },
	[RES_TLSR] = { "tlsroutes", "TLSRoute", GRP_GW, { "v1alpha2" } },
	[RES_REFG] = { "referencegrants", "ReferenceGrant", GRP_GW,
	    { "v1beta1", "v1alpha2" } },
};

/*
 * API groups: those with a name are discovered (cluster.c); a required
 * one is waited for (a cluster's routes are computed once its resources
 * are listed), an optional one is not when the server does not serve it.
 */
static const struct {
	const char	*name;
	int		 required;
} groups[GRP_COUNT] = {
	[GRP_CORE] = { NULL, 1 },
	[GRP_ISTIO] = { "networking.istio.io", 1 },
	[GRP_GW] = { GW_GROUP, 0 },
};

#define res_names(r)	(resources[r].plural)

int
informer_namespaced(int res)
{
	return res != RES_NODE && res != RES_GWC;
}

int
informer_group(int res)
{
	return resources[res].grp;
}

const char *const *
informer_versions(int res)
{
	return resources[res].versions;
}

const char *
informer_kind(int res)
{
	return resources[res].kind;
}

const char *
informer_group_name(int grp)
{
	return groups[grp].name;
}

int
informer_group_required(int grp)
{
	return groups[grp].required;
}

/* Nodes for nodeport, EndpointSlices for endpoints; the rest always. */
int
informer_wanted(const struct cluster *cl, int res)
{
	switch (res) {
	case RES_NODE:
		return cl->backend == BACKEND_NODEPORT;
	case RES_EPS:
		return cl->backend == BACKEND_ENDPOINTS;
	default:
		return 1;
	}
}

void
informer_init(struct informer *inf, struct cluster *cl, int res,
    const struct informer_ops *ops)
{
	memset(inf, 0, sizeof(*inf));
	inf->cl = cl;
	inf->ops = ops;
	inf->res = res;
	inf->state = INF_IDLE;
	inf->limit = PAGE_SIZE;
}

void
informer_stop(struct informer *inf)
{
	http_cancel(inf->req);
	inf->req = NULL;
	smap_free(&inf->seen);
	free(inf->line);
	inf->line = NULL;
	inf->linelen = inf->linecap = 0;
	inf->state = INF_IDLE;
}

const char *
informer_path(const struct informer *inf, char *buf, size_t len)
{
	const char *grp = groups[resources[inf->res].grp].name;

	if (grp != NULL)
		snprintf(buf, len, "/apis/%s/%s/%s", grp,
		    inf->cl->ver[inf->res], res_names(inf->res));
	else if (inf->res == RES_EPS)
		snprintf(buf, len, "/apis/discovery.k8s.io/v1/%s",
		    res_names(inf->res));
	else
		snprintf(buf, len, "/api/v1/%s", res_names(inf->res));
	return buf;
}

/* Go on after *ms, doubled from lo up to hi, with jitter. */
static void
pause_for(struct informer *inf, unsigned *ms, unsigned lo, unsigned hi,
    const char *why)
{
	char err[256];

	inf->errors++;
	*ms = *ms == 0 ? lo : *ms * 2 > hi ? hi : *ms * 2;
	inf->wait_until = now_ms() + jitter(*ms);
	inf->state = INF_WAIT;
	log_warnx("%s: %s: %s; again in %u ms", inf->cl->name,
	    res_names(inf->res), why, *ms);
	snprintf(err, sizeof(err), "%s: %s: %s", inf->cl->name,
	    res_names(inf->res), why);
	health_set_error(err);
}

static void
backoff(struct informer *inf, const char *why)
{
	pause_for(inf, &inf->backoff, BACKOFF_MIN, BACKOFF_MAX, why);
}

/*
 * The watch is to start again from the last resourceVersion after a short
 * pause: a line we could not read is sent again, and the error backoff
 * does not grow for it.  The pause doubles only while no readable line
 * comes between, so that a server sending nothing else is not hammered.
 */
static void
restart_soon(struct informer *inf, const char *why)
{
	pause_for(inf, &inf->quick, QUICK_MIN, QUICK_MAX, why);
}

/* The cluster answered readably: whatever failed before is over. */
static void
healthy(struct informer *inf)
{
	inf->backoff = 0;
	inf->quick = 0;
	master_ok(inf->cl);
}

/*
 * A request failed in transport: 1 when it is tried again at once, on the
 * cluster's next master; 0 when the caller backs off.
 */
static int
other_master(struct informer *inf, const struct http_req *r)
{
	if (!master_failed(inf->cl, r))
		return 0;
	inf->state = INF_WAIT;
	inf->wait_until = 0;
	return 1;
}

static void	start_list(struct informer *);
static void	start_watch(struct informer *);

static const char *
obj_key(json_t *obj, char *buf, size_t len)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));

	if (name == NULL)
		return NULL;
	snprintf(buf, len, "%s/%s", ns ? ns : "", name);
	return buf;
}

static void
nul_object(struct informer *inf)
{
	log_warnx("%s: %s: an object with a NUL byte in a string was "
	    "ignored", inf->cl->name, res_names(inf->res));
}

static void
oversized(struct informer *inf, const char *key)
{
	log_warnx("%s: %s: %s: object larger than %u MiB refused, and "
	    "dropped", inf->cl->name, res_names(inf->res), key,
	    MAX_EVENT_BYTES >> 20);
}

static void
list_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	struct informer *inf = r->arg;
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	const char *cont, *rv;
	json_t *root, *items, *item, *md;
	char key[384], why[160], **gone;
	size_t i, ngone = 0;

	inf->req = NULL;
	if (r->too_big && inf->limit > 1) {
		/* the same page again, in smaller ones */
		inf->limit /= 2;
		log_warnx("%s: %s: list page over %u MiB, asking for pages of "
		    "%u", inf->cl->name, res_names(inf->res),
		    HTTP_MAX_BODY >> 20, inf->limit);
		start_list(inf);
		return;
	}
	if (code == 410 && inf->cont[0] != '\0') {
		/* the continue token expired: the list starts over */
		log_info("%s: %s: continue token expired, relisting",
		    inf->cl->name, res_names(inf->res));
		inf->cont[0] = '\0';
		start_list(inf);
		return;
	}
	if (err != NULL && !r->too_big && other_master(inf, r))
		return;
	if (code != 200) {
		if (code == 401)
			inf->ops->refused(inf->cl);
		if (r->too_big)
			snprintf(why, sizeof(why), "list: a page of one object "
			    "is over %u MiB", HTTP_MAX_BODY >> 20);
		else
			snprintf(why, sizeof(why), "list: %s%ld",
			    err ? "transport error, code " : "HTTP ", code);
		backoff(inf, why);
		return;
	}
	master_ok(inf->cl);
	/* pages came back small: ask for more items a page again */
	if (len < HTTP_MAX_BODY / 4 && inf->limit < PAGE_SIZE)
		inf->limit = inf->limit * 2 > PAGE_SIZE ? PAGE_SIZE :
		    inf->limit * 2;
	if ((root = json_untrusted(body, len)) == NULL ||
	    !json_is_array(items = json_object_get(root, "items")) ||
	    json_has_nul(json_object_get(root, "metadata"))) {
		json_decref(root);
		backoff(inf, "list: malformed JSON");
		return;
	}
	json_array_foreach(items, i, item) {
		/* not seen, so gone if we had it */
		if (json_has_nul(item)) {
			nul_object(inf);
			continue;
		}
		if (obj_key(item, key, sizeof(key)) == NULL)
			continue;
		/* as the watch would: an object over the cap is not seen */
		if (len > MAX_EVENT_BYTES && json_dumpb(item, NULL, 0,
		    JSON_COMPACT) > MAX_EVENT_BYTES) {
			oversized(inf, key);
			continue;
		}
		smap_put(&inf->seen, key, inf);
		inf->ops->object(inf->cl, inf->res, "ADDED", item);
	}
	md = json_object_get(root, "metadata");
	cont = json_string_value(json_object_get(md, "continue"));
	rv = json_string_value(json_object_get(md, "resourceVersion"));
	/*
	 * The watch goes on from the first page's resourceVersion: what
	 * changed while later pages were asked for is replayed to it, even
	 * from a server whose later pages are newer snapshots.
	 */
	if (inf->cont[0] == '\0')
		snprintf(inf->list_rv, sizeof(inf->list_rv), "%s", rv ? rv : "");
	if (cont != NULL && *cont != '\0') {
		/* cont lives in root: copied before root goes */
		if (strlen(cont) >= sizeof(inf->cont)) {
			json_decref(root);
			inf->cont[0] = '\0';
			backoff(inf, "list: continue token too long");
			return;
		}
		strcpy(inf->cont, cont);
		json_decref(root);
		start_list(inf);
		return;
	}
	inf->cont[0] = '\0';		/* the list is whole */
	memcpy(inf->rv, inf->list_rv, sizeof(inf->rv));
	json_decref(root);
	/* what the list did not show is gone */
	gone = calloc(inf->cl->objs[inf->res].n + 1, sizeof(*gone));
	if (gone == NULL)
		fatal("informer");
	while ((e = smap_next(&inf->cl->objs[inf->res], &it)) != NULL)
		if (smap_get(&inf->seen, e->key) == NULL &&
		    (gone[ngone++] = strdup(e->key)) == NULL)
			fatal("informer");
	for (i = 0; i < ngone; i++) {
		inf->ops->gone(inf->cl, inf->res, gone[i]);
		free(gone[i]);
	}
	free(gone);
	smap_free(&inf->seen);
	inf->listed = 1;
	healthy(inf);
	inf->ops->listed(inf->cl, inf->res);
	start_watch(inf);
}

static void
start_list(struct informer *inf)
{
	struct http_auth a;
	char path[128], url[8192], cont[3 * sizeof(inf->cont)];

	master_auth(inf->cl, &a);
	informer_path(inf, path, sizeof(path));
	if (inf->cont[0] != '\0' &&
	    http_escape(cont, sizeof(cont), inf->cont) == 0)
		snprintf(url, sizeof(url), "%s%s?limit=%u&continue=%s",
		    inf->cl->creds.server, path, inf->limit, cont);
	else {
		inf->cont[0] = '\0';
		smap_free(&inf->seen);
		snprintf(url, sizeof(url), "%s%s?limit=%u",
		    inf->cl->creds.server, path, inf->limit);
	}
	inf->state = INF_LIST;
	inf->req = http_start("GET", url, &a, NULL, NULL, 60000, list_done,
	    NULL, inf);
}

/*
 * The object of a watch event.  One that holds a NUL is dropped as a
 * relist would drop it: deleted, when its name itself is sound.
 */
static void
watch_object(struct informer *inf, const char *type, json_t *obj)
{
	json_t *md = json_object_get(obj, "metadata");

	if (!json_has_nul(obj)) {
		inf->ops->object(inf->cl, inf->res, type, obj);
		return;
	}
	nul_object(inf);
	if (!json_has_nul(json_object_get(md, "name")) &&
	    !json_has_nul(json_object_get(md, "namespace")))
		inf->ops->object(inf->cl, inf->res, "DELETED", obj);
}

/* One line of a watch stream; -1 ends the stream. */
static int
watch_line(struct informer *inf, const char *line, size_t len)
{
	json_t *ev, *obj, *md;
	const char *type, *rv, *reason;
	json_int_t code;
	char why[96];
	int expired;

	if (len == 0)
		return 0;
	if ((ev = json_untrusted(line, len)) == NULL) {
		metrics_inc(M_WATCH_RESTARTS, MV_RESTART_MALFORMED);
		restart_soon(inf, "watch: malformed event");
		return -1;
	}
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	md = json_object_get(obj, "metadata");
	rv = json_string_value(json_object_get(md, "resourceVersion"));
	if (type == NULL || !json_is_object(obj) ||
	    json_has_nul(json_object_get(ev, "type"))) {
		json_decref(ev);
		metrics_inc(M_WATCH_RESTARTS, MV_RESTART_MALFORMED);
		restart_soon(inf, "watch: event without type or object");
		return -1;
	}
	if (strcmp(type, "ERROR") == 0) {
		/* reason lives in ev: read before ev goes */
		code = json_integer_value(json_object_get(obj, "code"));
		reason = json_string_value(json_object_get(obj, "reason"));
		expired = code == 410 || (reason != NULL &&
		    (!strcmp(reason, "Expired") || !strcmp(reason, "Gone")));
		json_decref(ev);
		metrics_inc(M_WATCH_RESTARTS, expired ? MV_RESTART_410 :
		    MV_RESTART_ERROR);
		if (expired) {
			log_info("%s: %s: watch expired, relisting",
			    inf->cl->name, res_names(inf->res));
			inf->rv[0] = '\0';
			inf->state = INF_WAIT;
			inf->wait_until = 0;	/* relist at once */
			return -1;
		}
		snprintf(why, sizeof(why), "watch: server sent an ERROR "
		    "event, code %lld", (long long)code);
		backoff(inf, why);
		return -1;
	}
	inf->watch_good = 1;
	healthy(inf);
	if (rv != NULL && strlen(rv) < sizeof(inf->rv) &&
	    !json_has_nul(json_object_get(md, "resourceVersion")))
		strcpy(inf->rv, rv);
	if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0 ||
	    strcmp(type, "DELETED") == 0)
		watch_object(inf, type, obj);
	json_decref(ev);
	return 0;
}

/*
 * The string value of the first "key" at or after from in buf, when it is
 * made of the characters of Kubernetes names and resourceVersions only;
 * else "".  Reads an event too large to parse, whose metadata the
 * apiserver writes before the labels and annotations that make it large.
 */
static void
peek_string(const char *buf, size_t len, const char *from, const char *key,
    char *out, size_t outlen)
{
	const char *p, *end = buf + len;
	char pat[32];
	size_t n, plen;

	out[0] = '\0';
	plen = (size_t)snprintf(pat, sizeof(pat), "\"%s\"", key);
	if (from == NULL || (p = memmem(from, (size_t)(end - from), pat,
	    plen)) == NULL)
		return;
	for (p += plen; p < end && (*p == ' ' || *p == ':'); p++)
		;
	if (p >= end || *p++ != '"')
		return;
	for (n = 0; p + n < end && n + 1 < outlen && (isalnum((unsigned char)
	    p[n]) || p[n] == '-' || p[n] == '.'); n++)
		;
	if (p + n < end && p[n] == '"') {
		memcpy(out, p, n);
		out[n] = '\0';
	}
}

/*
 * An event over MAX_EVENT_BYTES has ended: what we kept of it (its first
 * MAX_EVENT_BYTES) names the object.  The object is dropped, as a relist
 * would drop it, and the watch goes on after it: a restart from the same
 * resourceVersion would only be sent the same event again.
 */
static void
watch_oversized(struct informer *inf)
{
	const char *md;
	char ns[64], name[254], rv[sizeof(inf->rv)], key[384];

	md = memmem(inf->line, inf->linelen, "\"metadata\"", 10);
	peek_string(inf->line, inf->linelen, md, "name", name, sizeof(name));
	peek_string(inf->line, inf->linelen, md, "namespace", ns, sizeof(ns));
	peek_string(inf->line, inf->linelen, md, "resourceVersion", rv,
	    sizeof(rv));
	inf->linelen = 0;
	inf->skipping = 0;
	if (name[0] == '\0') {
		backoff(inf, "watch: an event larger than the cap, of an "
		    "object without a readable name, refused");
		return;
	}
	snprintf(key, sizeof(key), "%s/%s", informer_namespaced(inf->res) ?
	    ns : "", name);
	oversized(inf, key);
	inf->ops->gone(inf->cl, inf->res, key);
	if (rv[0] != '\0')
		strcpy(inf->rv, rv);
}

static int
watch_data(struct http_req *r, const char *data, size_t len)
{
	struct informer *inf = r->arg;
	const char *nl;
	size_t n, cap;
	char *b;

	while (len > 0) {
		nl = memchr(data, '\n', len);
		n = nl ? (size_t)(nl - data) : len;
		if (inf->skipping)
			n = 0;
		else if (inf->linelen + n > MAX_EVENT_BYTES) {
			/* keep the head, skip the rest up to the newline */
			inf->skipping = 1;
			n = MAX_EVENT_BYTES - inf->linelen;
		}
		if (inf->linelen + n + 1 > inf->linecap) {
			cap = inf->linecap ? inf->linecap : 8192;
			while (cap < inf->linelen + n + 1)
				cap *= 2;
			if ((b = realloc(inf->line, cap)) == NULL)
				fatal("informer");
			inf->line = b;
			inf->linecap = cap;
		}
		memcpy(inf->line + inf->linelen, data, n);
		inf->linelen += n;
		n = nl ? (size_t)(nl - data) : len;
		data += n;
		len -= n;
		if (nl != NULL) {
			data++;
			len--;
			if (inf->skipping) {
				watch_oversized(inf);
				if (inf->state == INF_WAIT)
					return -1;
				continue;
			}
			n = inf->linelen;
			inf->linelen = 0;
			if (watch_line(inf, inf->line, n) == -1)
				return -1;
		}
	}
	return 0;
}

static void
watch_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	struct informer *inf = r->arg;
	char why[160];

	(void)body;
	(void)len;
	inf->req = NULL;
	inf->linelen = 0;
	inf->skipping = 0;
	if (inf->state == INF_WAIT)
		return;			/* watch_line decided already */
	if (err != NULL && other_master(inf, r)) {
		metrics_inc(M_WATCH_RESTARTS, MV_RESTART_ERROR);
		return;
	}
	if (code == 401)
		inf->ops->refused(inf->cl);
	if (code == 200 && err == NULL) {
		/* a normal end: resume, at once unless it was empty and brief */
		if (!inf->watch_good && now_ms() - inf->watch_at < WATCH_BRIEF)
			restart_soon(inf, "watch: ended at once");
		else
			start_watch(inf);
		return;
	}
	metrics_inc(M_WATCH_RESTARTS, code == 410 ? MV_RESTART_410 :
	    MV_RESTART_ERROR);
	if (code == 410) {
		inf->rv[0] = '\0';
		start_list(inf);
		return;
	}
	snprintf(why, sizeof(why), "watch: %s%ld",
	    err ? "transport error, code " : "HTTP ", code);
	backoff(inf, why);
}

static void
start_watch(struct informer *inf)
{
	struct http_auth a;
	char path[128], url[4096], rv[3 * sizeof(inf->rv)];

	if (inf->rv[0] == '\0' || http_escape(rv, sizeof(rv), inf->rv) == -1) {
		start_list(inf);
		return;
	}
	master_auth(inf->cl, &a);
	informer_path(inf, path, sizeof(path));
	snprintf(url, sizeof(url), "%s%s?watch=1&resourceVersion=%s"
	    "&allowWatchBookmarks=true&timeoutSeconds=%u",
	    inf->cl->creds.server, path, rv, conf.watch_timeout);
	inf->state = INF_WATCH;
	inf->linelen = 0;
	inf->skipping = 0;
	inf->watch_at = now_ms();
	inf->watch_good = 0;
	inf->req = http_start("GET", url, &a, NULL, NULL, 0, watch_done,
	    watch_data, inf);
}

void
informer_timer(struct informer *inf, uint64_t now)
{
	switch (inf->state) {
	case INF_IDLE:
		start_list(inf);
		break;
	case INF_WAIT:
		if (now >= inf->wait_until) {
			/* after an error, resume the watch if we can */
			if (inf->listed && inf->rv[0] != '\0')
				start_watch(inf);
			else
				start_list(inf);
		}
		break;
	case INF_WATCH:
		if (inf->req != NULL && now - inf->req->last_byte >
		    (uint64_t)conf.watch_idle * 1000) {
			/* a master that went silent: another, if there is one */
			master_failed(inf->cl, inf->req);
			http_cancel(inf->req);
			inf->req = NULL;
			metrics_inc(M_WATCH_RESTARTS, MV_RESTART_IDLE);
			log_info("%s: %s: watch idle for %u s, restarting",
			    inf->cl->name, res_names(inf->res),
			    conf.watch_idle);
			start_watch(inf);
		}
		break;
	}
}
