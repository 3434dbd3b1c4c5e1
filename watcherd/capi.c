/*
 * watcherd — the Cluster API source.
 *
 * A management cluster, reached with the kubeconfig [capi] names, holds
 * cluster.x-k8s.io Clusters.  Every poll interval they are listed (in
 * pages, in every namespace or in those [capi] names); one is routed when
 * it is Provisioned and its control plane is ready, at
 * spec.controlPlaneEndpoint.  Its credentials are the kubeconfig Cluster
 * API keeps in the Secret <cluster>-kubeconfig (key "value") of its
 * namespace, read every secret_interval and when the workload cluster
 * refuses them (401), and taken again when its resourceVersion changed:
 * the cluster keeps its routes meanwhile.
 *
 * Everything the management cluster says is hostile: names are checked,
 * sizes and counts bounded, the endpoint (an IP address, or a name
 * resolved off the loop) may be no loopback, link-local or other address
 * a backend may not have, and the Secret's kubeconfig may name no file of
 * ours.  Nothing from a Secret is
 * logged.  The cluster's id is its Cluster's metadata.uid (unique in the
 * management cluster, where a name is only unique in its namespace); its
 * host is <name>.<domain>, or <name>.<namespace>.<domain> with
 * namespace_in_host, and a host another cluster holds stays with it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsafe.h"
#include "health.h"
#include "kcfile.h"
#include "log.h"
#include "valid.h"
#include "watcherd.h"

#define CAPI_GROUP		"cluster.x-k8s.io"
#define CAPI_PAGE		100		/* Clusters a list page asks for */
#define CAPI_MAX_OBJECT		(256u << 10)	/* one Cluster, as JSON */
#define CAPI_MAX_SECRET		(1u << 20)	/* the API's own cap */
#define CAPI_SECRETS_INFLIGHT	8

/* What the source keeps of a routed Cluster: where its Secret is. */
struct capi_cl {
	char		 ns[64];
	char		 name[64];
	char		 rv[64];	/* of the Secret last read, good or not */
	struct http_req	*req;
	uint64_t	 at;		/* when to read the Secret again */
	unsigned	 backoff;
	int		 have;		/* credentials from it were taken */
	int		 said;		/* its 401, until another version */
	int		 force;		/* taken again even if the same */
};

static struct creds	 mgmt;		/* the management cluster's */
static int		 have_mgmt;
static struct stat	 mgmt_st;
static char		 version[16];	/* cluster.x-k8s.io version served */
static struct http_req	*disc_req, *list_req;
static struct smap	 cls;		/* cluster id -> struct capi_cl */
static uint64_t		 next_poll;
static unsigned		 backoff;
static int		 polled_ok, poll_again;
static char		 last_err[160];

/* The pass in progress: namespace index, page, what it has seen. */
static size_t		 pass_ns;
static char		 pass_cont[2048];
static size_t		 pass_count, pass_refused;
static int		 pass_full;	/* max_clusters reached: it ends */
static char		 pass_why[2048];
static char		 last_refused[2048];

static void	list_page(void);

static int
capi_polled(void)
{
	return conf.capi_kubeconfig[0] == '\0' || polled_ok;
}

static void
capi_failed(const char *what)
{
	char err[200];

	if (strcmp(what, last_err) != 0) {
		log_warnx("capi: %s; keeping the routes we have", what);
		snprintf(err, sizeof(err), "capi: %s", what);
		health_set_error(err);
		snprintf(last_err, sizeof(last_err), "%s", what);
	}
	backoff = backoff ? (backoff * 2 > 60000 ? 60000 : backoff * 2) :
	    1000;
	next_poll = now_ms() + jitter(backoff);
}

/* The folder of the management cluster's kubeconfig. */
static void
mgmt_dir(char *dir, size_t len)
{
	char *slash;

	snprintf(dir, len, "%s", conf.capi_kubeconfig);
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		snprintf(dir, len, ".");
}

/* The same file, its tokenFile rotated: the token is read again. */
static void
mgmt_token(void)
{
	static int tok_err;	/* the failure last said */
	char dir[PATH_MAX], why[256], *tok;
	int rc, state;

	if (mgmt.token_file == NULL)
		return;
	mgmt_dir(dir, sizeof(dir));
	kcfile_places(dir, conf.kubeconfig_allow);
	rc = token_read(&mgmt, &tok, why, sizeof(why));
	state = rc != -1 ? 0 : errno != 0 ? errno : -1;
	kcfile_places(conf.kubeconfig_dir, conf.kubeconfig_allow);
	if (rc == -1 && state != tok_err)
		log_warnx("capi: token file: %s; keeping the token we have",
		    why);
	tok_err = state;
	if (rc != 1)
		return;
	explicit_bzero(mgmt.token, strlen(mgmt.token));
	free(mgmt.token);
	mgmt.token = tok;
	log_info("capi: the management cluster's token file changed, read "
	    "again");
}

/*
 * The management cluster's kubeconfig, read again when the file changes:
 * from its own folder or [kubeconfigs] allow_dirs, private to us when it
 * holds a secret.  The places kcfile allows are the kubeconfig folder's
 * again afterwards.
 */
static int
mgmt_load(void)
{
	char dir[PATH_MAX], err[256], *buf;
	struct creds c;
	struct stat st;
	json_t *root;
	size_t len;

	if (stat(conf.capi_kubeconfig, &st) == -1) {
		snprintf(err, sizeof(err), "kubeconfig: %s", strerror(errno));
		capi_failed(err);
		return -1;
	}
	if (have_mgmt && st.st_size == mgmt_st.st_size &&
	    st.st_mtim.tv_sec == mgmt_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == mgmt_st.st_mtim.tv_nsec &&
	    st.st_ino == mgmt_st.st_ino) {
		mgmt_token();
		return 0;
	}
	mgmt_dir(dir, sizeof(dir));
	kcfile_places(dir, conf.kubeconfig_allow);
	root = NULL;
	if ((buf = kcfile_read(conf.capi_kubeconfig, 0, 1 << 20, &len, &st,
	    err, sizeof(err))) != NULL) {
		root = yaml_parse(buf, len, err, sizeof(err));
		free(buf);
	}
	if (root != NULL && kubeconfig_holds_secret(root) &&
	    fsafe_secret_mode(&st, "the file", err, sizeof(err)) == -1) {
		json_decref(root);
		root = NULL;
	}
	if (root != NULL && kubeconfig_creds(root, dir, &c, err,
	    sizeof(err)) == 0) {
		json_decref(root);
		kcfile_places(conf.kubeconfig_dir, conf.kubeconfig_allow);
		if (have_mgmt)
			creds_free(&mgmt);
		mgmt = c;
		mgmt_st = st;
		have_mgmt = 1;
		log_info("capi: management cluster at %s", mgmt.server);
		return 0;
	}
	json_decref(root);
	kcfile_places(conf.kubeconfig_dir, conf.kubeconfig_allow);
	{
		char why[300];

		snprintf(why, sizeof(why), "kubeconfig: %s", err);
		capi_failed(why);
	}
	return -1;
}

static void
mgmt_auth(struct http_auth *a)
{
	memset(a, 0, sizeof(*a));
	a->ca_pem = mgmt.ca_pem;
	a->bearer = mgmt.token;
	a->cert_pem = mgmt.cert_pem;
	a->key_pem = mgmt.key_pem;
}

/* Which version of the group to read: v1beta1, else v1beta2. */
static void
disc_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	static const char *prefer[] = { "v1beta1", "v1beta2" };
	json_t *root, *v;
	const char *s;
	size_t i, k;
	char why[128];

	(void)r;
	disc_req = NULL;
	root = code == 200 ? json_untrusted(body, len) : NULL;
	for (k = 0; root != NULL && k < 2 && version[0] == '\0'; k++)
		json_array_foreach(json_object_get(root, "versions"), i, v)
			if ((s = json_string_value(json_object_get(v,
			    "version"))) != NULL && strcmp(s, prefer[k]) == 0)
				strcpy(version, prefer[k]);
	json_decref(root);
	if (version[0] != '\0') {
		log_info("capi: Clusters at %s/%s", CAPI_GROUP, version);
		list_page();
		return;
	}
	snprintf(why, sizeof(why), "%s not served (%s%ld)", CAPI_GROUP,
	    err ? "transport error, code " : "HTTP ", code);
	capi_failed(why);
}

/* The namespace the pass lists next into ns ("": all); 0 when done. */
static int
pass_namespace(char *ns, size_t len)
{
	const char *p = conf.capi_namespaces;
	size_t i, n;

	ns[0] = '\0';
	for (i = 0;; i++) {
		p += strspn(p, ", ");
		if (*p == '\0')
			return conf.capi_namespaces[strspn(
			    conf.capi_namespaces, ", ")] == '\0' && pass_ns == 0;
		n = strcspn(p, ", ");
		if (i == pass_ns) {
			snprintf(ns, len, "%.*s", (int)n, p);
			return 1;
		}
		p += n;
	}
}

/* status.controlPlaneReady, or the condition that says the same. */
static int
cp_ready(json_t *status)
{
	json_t *c, *init;
	const char *t, *s;
	size_t i;

	if (json_is_true(json_object_get(status, "controlPlaneReady")))
		return 1;
	init = json_object_get(status, "initialization");
	if (json_is_true(json_object_get(init, "controlPlaneInitialized")))
		return 1;
	json_array_foreach(json_object_get(status, "conditions"), i, c) {
		t = json_string_value(json_object_get(c, "type"));
		s = json_string_value(json_object_get(c, "status"));
		if (t != NULL && s != NULL && strcmp(s, "True") == 0 &&
		    (strcmp(t, "ControlPlaneReady") == 0 ||
		    strcmp(t, "ControlPlaneAvailable") == 0))
			return 1;
	}
	return 0;
}

/* The Secret of cl is to be read now. */
static struct capi_cl *
capi_entry(const char *id, const char *ns, const char *name)
{
	struct capi_cl *e = smap_get(&cls, id);

	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			fatal("capi");
		smap_put(&cls, id, e);
	}
	if (strcmp(e->ns, ns) != 0 || strcmp(e->name, name) != 0) {
		/* another Secret: read it, whatever its version */
		snprintf(e->ns, sizeof(e->ns), "%s", ns);
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->rv[0] = '\0';
		e->at = 0;
	}
	return e;
}

/*
 * One Cluster of a list: 1 when routed, 0 when not (not ready, being
 * deleted), -1 when refused, with the reason in why, which names the
 * Cluster only once its name and namespace are known to be sane.
 */
static int
capi_cluster(json_t *c, char *why, size_t whylen)
{
	json_t *md = json_object_get(c, "metadata");
	json_t *status = json_object_get(c, "status");
	json_t *ep = json_object_get(json_object_get(c, "spec"),
	    "controlPlaneEndpoint");
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *uid = json_string_value(json_object_get(md, "uid"));
	const char *phase = json_string_value(json_object_get(status,
	    "phase"));
	const char *ip = json_string_value(json_object_get(ep, "host"));
	json_int_t port = json_integer_value(json_object_get(ep, "port"));
	char masters[EV_MAX_MASTERS][EV_IPLEN], host[254], w[224], bad[64];
	char what[120];
	struct cluster *cl;
	size_t size;
	int i, n;

	/* another watcherd's, however it looks: its owner says so */
	if (uid != NULL && valid_cluster_id(uid) && !shard_mine(uid))
		return 0;
	if ((size = json_dumpb(c, NULL, 0, JSON_COMPACT)) > CAPI_MAX_OBJECT) {
		snprintf(why, whylen, "a Cluster of %zu bytes (at most %u)",
		    size, CAPI_MAX_OBJECT);
		return -1;
	}
	if (json_has_nul(c)) {
		snprintf(why, whylen, "a Cluster holds a NUL byte");
		return -1;
	}
	if (ns == NULL || !valid_dns_label(ns) || name == NULL ||
	    !valid_dns_label(name)) {
		snprintf(why, whylen, "a Cluster's name or namespace is not a "
		    "DNS label");
		return -1;
	}
	if (uid == NULL || !valid_cluster_id(uid)) {
		snprintf(why, whylen, "%s/%s: uid is not [a-z0-9-]{1,63}", ns,
		    name);
		return -1;
	}
	if (json_object_get(md, "deletionTimestamp") != NULL ||
	    phase == NULL || strcmp(phase, "Provisioned") != 0 ||
	    !cp_ready(status))
		return 0;
	if (ip == NULL || port < 1 || port > 65535) {
		snprintf(why, whylen, "%s/%s: no controlPlaneEndpoint host and "
		    "port", ns, name);
		return -1;
	}
	memset(masters, 0, sizeof(masters));
	if (strlen(ip) < EV_IPLEN && valid_ip(ip)) {
		strcpy(masters[0], ip);
		n = 1;
	} else if (strlen(ip) < sizeof(host) && valid_dns_subdomain(ip)) {
		if ((n = resolve_name(SRC_CAPI, ip,
		    (uint64_t)conf.capi_poll * 1000, masters, w,
		    sizeof(w))) == 0)
			return 0;	/* routed once it resolves */
	} else {
		snprintf(w, sizeof(w), "controlPlaneEndpoint.host is neither "
		    "an IP address nor a DNS name");
		n = -1;
	}
	for (i = 0; n > 0 && i < n; i++) {
		if (strcmp(masters[i], ip) == 0)
			snprintf(what, sizeof(what), "%.45s", masters[i]);
		else
			snprintf(what, sizeof(what), "%.64s (%.45s)", ip,
			    masters[i]);
		if (master_allowed(masters[i], bad, sizeof(bad)) == -1) {
			snprintf(w, sizeof(w), "controlPlaneEndpoint %s %s",
			    what, bad);
			n = -1;
		}
	}
	if (n < 0) {
		snprintf(why, whylen, "%s/%s: %s", ns, name, w);
		return -1;
	}
	if ((cl = cluster_find(uid)) != NULL && cl->src != &capi_source) {
		snprintf(why, whylen, "%s/%s: uid is another source's cluster "
		    "id", ns, name);
		return -1;
	}
	if ((size_t)(conf.capi_ns_host ? snprintf(host, sizeof(host),
	    "%s.%s.%s", name, ns, conf.domain) : snprintf(host, sizeof(host),
	    "%s.%s", name, conf.domain)) >= sizeof(host) ||
	    !valid_dns_subdomain(host)) {
		snprintf(why, whylen, "%s/%s: its host name would be too long",
		    ns, name);
		return -1;
	}
	if (cluster_upsert(uid, name, host, masters, (size_t)n, (unsigned)port,
	    &capi_source) == NULL) {
		snprintf(why, whylen, "%s/%s: not a routable cluster", ns,
		    name);
		return -1;
	}
	capi_entry(uid, ns, name);
	return 1;
}

/* Clusters that went take their Secret's state along. */
static void
prune(void)
{
	struct smap_iter it;
	struct smap_ent *e;
	struct capi_cl *c;

	for (;;) {
		it = (struct smap_iter){ 0, NULL };
		while ((e = smap_next(&cls, &it)) != NULL)
			if (cluster_find(e->key) == NULL)
				break;
		if (e == NULL)
			return;
		c = e->val;
		if (c->req != NULL)
			free(c->req->arg);
		http_cancel(c->req);
		free(smap_del(&cls, e->key));
	}
}

static void
pass_end(void)
{
	if (strcmp(pass_why, last_refused) != 0 && pass_refused > 0)
		log_warnx("capi: %zu Clusters refused: %s", pass_refused,
		    pass_why);
	memcpy(last_refused, pass_why, sizeof(last_refused));
	clusters_sweep(&capi_source);
	prune();
	resolve_forget_unasked(SRC_CAPI);
	if (!polled_ok)
		log_info("capi: %zu Clusters listed", pass_count);
	else
		log_debug("capi: %zu Clusters listed", pass_count);
	polled_ok = 1;
	if (last_err[0] != '\0')
		log_info("capi: the management cluster answers again");
	last_err[0] = '\0';
	backoff = 0;
	next_poll = poll_again ? 0 : now_ms() + (uint64_t)conf.capi_poll *
	    1000;
	poll_again = 0;
}

static void
refuse(const char *why)
{
	size_t o = strlen(pass_why);

	pass_refused++;
	snprintf(pass_why + o, sizeof(pass_why) - o, "%s%s", o ? "; " : "",
	    why);
}

static void
list_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	json_t *root, *items, *c;
	const char *cont;
	char why[256];
	size_t i;

	(void)r;
	list_req = NULL;
	if (code == 404)
		version[0] = '\0';	/* the group moved: discover again */
	if (code != 200) {
		snprintf(why, sizeof(why), "list Clusters: %s%ld",
		    err ? "transport error, code " : "HTTP ", code);
		capi_failed(why);
		return;
	}
	if ((root = json_untrusted(body, len)) == NULL ||
	    !json_is_array(items = json_object_get(root, "items"))) {
		json_decref(root);
		capi_failed("list Clusters: malformed JSON");
		return;
	}
	cont = json_string_value(json_object_get(json_object_get(root,
	    "metadata"), "continue"));
	if (cont != NULL && *cont != '\0' && (strlen(cont) >=
	    sizeof(pass_cont) || !valid_text(cont))) {
		/* the rest cannot be asked for: this pass proves nothing */
		json_decref(root);
		capi_failed("list Clusters: a continue token we cannot send");
		return;
	}
	json_array_foreach(items, i, c) {
		if (pass_count >= conf.capi_max_clusters) {
			snprintf(why, sizeof(why), "more than %u Clusters "
			    "(max_clusters)", conf.capi_max_clusters);
			refuse(why);
			pass_full = 1;
			break;
		}
		pass_count++;
		if (capi_cluster(c, why, sizeof(why)) == -1)
			refuse(why);
	}
	if (cont != NULL && *cont != '\0' && !pass_full)
		snprintf(pass_cont, sizeof(pass_cont), "%s", cont);
	else {
		pass_cont[0] = '\0';
		pass_ns++;
	}
	json_decref(root);
	list_page();
}

/* The next page of the pass, or its end. */
static void
list_page(void)
{
	struct http_auth a;
	char url[4096], ns[64], cont[3 * sizeof(pass_cont)];

	if (pass_full || !pass_namespace(ns, sizeof(ns))) {
		pass_end();
		return;
	}
	cont[0] = '\0';
	if (pass_cont[0] != '\0' && http_escape(cont, sizeof(cont),
	    pass_cont) == -1)
		cont[0] = '\0';
	snprintf(url, sizeof(url), "%s/apis/%s/%s%s%s/clusters?limit=%u%s%s",
	    mgmt.server, CAPI_GROUP, version, ns[0] ? "/namespaces/" : "", ns,
	    CAPI_PAGE, cont[0] ? "&continue=" : "", cont);
	mgmt_auth(&a);
	list_req = http_start("GET", url, &a, NULL, NULL, 30000, list_done,
	    NULL, NULL);
}

static void
poll_clusters(void)
{
	struct http_auth a;
	char url[700];

	if (mgmt_load() == -1)
		return;
	pass_ns = 0;
	pass_cont[0] = '\0';
	pass_count = pass_refused = 0;
	pass_full = 0;
	pass_why[0] = '\0';
	clusters_mark(&capi_source);
	if (version[0] != '\0') {
		list_page();
		return;
	}
	mgmt_auth(&a);
	snprintf(url, sizeof(url), "%s/apis/%s", mgmt.server, CAPI_GROUP);
	disc_req = http_start("GET", url, &a, NULL, NULL, 30000, disc_done,
	    NULL, NULL);
}

/*
 * The Secret's kubeconfig, when its resourceVersion is new: credentials
 * for the cluster (cluster_set_creds keeps them when nothing changed).
 * It may name no file (kubeconfig_creds with no folder).
 */
static int
secret_creds(struct cluster *cl, struct capi_cl *e, json_t *root,
    char *why, size_t whylen)
{
	const char *val = json_string_value(json_object_get(json_object_get(
	    root, "data"), "value"));
	json_t *kc;
	struct creds c;
	char *buf;

	if (val == NULL) {
		snprintf(why, whylen, "no data.value");
		return -1;
	}
	if ((buf = kubeconfig_b64decode(val)) == NULL) {
		snprintf(why, whylen, "data.value is not base64");
		return -1;
	}
	kc = yaml_parse(buf, strlen(buf), why, whylen);
	explicit_bzero(buf, strlen(buf));
	free(buf);
	if (kc == NULL)
		return -1;
	if (kubeconfig_creds(kc, NULL, &c, why, whylen) == -1) {
		json_decref(kc);
		return -1;
	}
	json_decref(kc);
	cluster_set_creds(cl, &c);
	if (!e->have)
		log_info("%s: credentials from Secret %s/%s-kubeconfig, API %s",
		    cl->name, e->ns, e->name, cl->creds.server);
	e->have = 1;
	return 0;
}

static void
secret_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	struct cluster *cl = cluster_find(r->arg);
	struct capi_cl *e = smap_get(&cls, r->arg);
	const char *v;
	char why[256], rv[sizeof(e->rv)];
	json_t *root = NULL;
	int rc;

	free(r->arg);
	if (cl == NULL || e == NULL)
		return;
	e->req = NULL;
	why[0] = '\0';
	if (code == 200 && len <= 2 * CAPI_MAX_SECRET &&
	    (root = json_untrusted(body, len)) != NULL && json_has_nul(root)) {
		json_decref(root);
		root = NULL;
	}
	if (root != NULL) {
		v = json_string_value(json_object_get(json_object_get(root,
		    "metadata"), "resourceVersion"));
		snprintf(rv, sizeof(rv), "%s", v != NULL && strlen(v) <
		    sizeof(rv) ? v : "");
		rc = rv[0] != '\0' && strcmp(rv, e->rv) == 0 && !e->force ?
		    0 : secret_creds(cl, e, root, why, sizeof(why));
		e->force = 0;
		json_decref(root);
		if (rc == 0 || rv[0] != '\0') {
			/*
			 * A Secret that is refused is said once: it is
			 * looked at again when its resourceVersion changes.
			 */
			if (rc == -1)
				log_warnx("%s: Secret %s/%s-kubeconfig: %s",
				    cl->name, e->ns, e->name, why);
			if (strcmp(e->rv, rv) != 0)
				e->said = 0;	/* another version */
			memcpy(e->rv, rv, sizeof(e->rv));
			e->backoff = 0;
			e->at = now_ms() + jitter((uint64_t)
			    conf.capi_secret_poll * 1000);
			return;
		}
	} else if (code == 200)
		snprintf(why, sizeof(why), "not a Secret of at most %u bytes",
		    2 * CAPI_MAX_SECRET);
	else
		snprintf(why, sizeof(why), "%s%ld%s", err ?
		    "transport error, code " : "HTTP ", code,
		    code == 404 ? ", not there (yet)" : "");
	e->backoff = e->backoff ? (e->backoff * 2 > 60000 ? 60000 :
	    e->backoff * 2) : 1000;
	e->at = now_ms() + jitter(e->backoff);
	log_warnx("%s: Secret %s/%s-kubeconfig: %s; again in %u ms", cl->name,
	    e->ns, e->name, why, e->backoff);
}

/* The Secrets due, a few at a time. */
static void
secrets_timer(uint64_t now)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct capi_cl *c;
	struct http_auth a;
	size_t inflight = 0;
	char url[1024], *id;

	while ((e = smap_next(&cls, &it)) != NULL)
		inflight += ((struct capi_cl *)e->val)->req != NULL;
	it = (struct smap_iter){ 0, NULL };
	while (inflight < CAPI_SECRETS_INFLIGHT &&
	    (e = smap_next(&cls, &it)) != NULL) {
		c = e->val;
		if (c->req != NULL || now < c->at)
			continue;
		if ((id = strdup(e->key)) == NULL)
			fatal("capi");
		snprintf(url, sizeof(url),
		    "%s/api/v1/namespaces/%s/secrets/%s-kubeconfig",
		    mgmt.server, c->ns, c->name);
		mgmt_auth(&a);
		c->req = http_start("GET", url, &a, NULL, NULL, 30000,
		    secret_done, NULL, id);
		inflight++;
	}
}

/* The workload cluster said 401: its Secret is read again at once. */
static void
capi_refused(struct cluster *cl)
{
	struct capi_cl *c = smap_get(&cls, cl->id);

	if (c == NULL)
		return;
	if (!c->said)
		log_warnx("%s: credentials refused (401), reading Secret "
		    "%s/%s-kubeconfig again", cl->name, c->ns, c->name);
	c->said = 1;
	c->force = 1;
	if (c->req == NULL && c->at > now_ms() + 1000)
		c->at = now_ms() + 1000;
}

static void
capi_timer(uint64_t now)
{
	if (conf.capi_kubeconfig[0] == '\0')
		return;
	if (resolve_timer(SRC_CAPI))
		next_poll = 0;		/* Clusters wait for what moved */
	if (have_mgmt)
		secrets_timer(now);
	if (disc_req != NULL || list_req != NULL || now < next_poll)
		return;
	poll_clusters();
}

/*
 * A recount: the next pass now, or right after the one under way (read
 * half under the old count, it speaks for nothing: shard.c).
 */
static void
capi_poll_soon(void)
{
	if (disc_req != NULL || list_req != NULL)
		poll_again = 1;
	else
		next_poll = 0;
}

static int
capi_enabled(void)
{
	return conf.capi_kubeconfig[0] != '\0';
}

/* Requests go to controlPlaneEndpoint, whatever the Secret's server. */
const struct cluster_source capi_source = {
	.name = "capi",
	.id = SRC_CAPI,
	.enabled = capi_enabled,
	.timer = capi_timer,
	.polled = capi_polled,
	.refused = capi_refused,
	.via_masters = 1,
	.poll_soon = capi_poll_soon,
};
