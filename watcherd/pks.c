/*
 * watcherd — the Enterprise PKS / TKGI source.
 *
 * A token from UAA, renewed at 80% of its life: the client_credentials
 * grant, or the password grant when [pks] names a username (the client
 * still authenticates with HTTP Basic, as the PKS CLI's public client
 * pks_cli does with an empty secret).  GET /v1/clusters every poll
 * interval; a 401 renews the token once and retries.  A cluster is routed
 * when its last action succeeded (or an UPDATE is in progress on a cluster
 * already routed) and its master IPs parse; DELETE or disappearance
 * removes it.  Credentials for a cluster's API come from
 * POST /v1/clusters/{name}/binds.  When PKS is down or says nonsense, the
 * routes we have stay as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "log.h"
#include "valid.h"
#include "watcherd.h"

static char		*token;		/* never logged */
static uint64_t		 token_renew;
static struct http_req	*token_req, *poll_req;
static uint64_t		 next_poll;
static unsigned		 backoff;
static int		 retried, polled_ok, poll_again;
static char		 last_err[160];
static char		 last_refused[2048];	/* why clusters were refused */

static void	poll_clusters(void);

static int
pks_polled(void)
{
	return conf.pks_url[0] == '\0' || polled_ok;
}

/* Log a failure once per change of what failed; back off with jitter. */
static void
pks_failed(const char *what)
{
	char err[200];

	if (strcmp(what, last_err) != 0) {
		log_warnx("pks: %s; keeping the routes we have", what);
		snprintf(err, sizeof(err), "pks: %s", what);
		health_set_error(err);
		snprintf(last_err, sizeof(last_err), "%s", what);
	}
	backoff = backoff ? (backoff * 2 > 60000 ? 60000 : backoff * 2) :
	    1000;
	next_poll = now_ms() + jitter(backoff);
}

static void
pks_recovered(void)
{
	if (last_err[0] != '\0')
		log_info("pks: answering again");
	last_err[0] = '\0';
	backoff = 0;
}

/* Which grant, and for whom, so that a refusal says whose credentials. */
static void
token_what(char *buf, size_t len)
{
	char q[64];

	if (conf.pks_username[0] != '\0')
		snprintf(buf, len, "password grant for user \"%s\"",
		    log_quote(q, sizeof(q), conf.pks_username,
		    strlen(conf.pks_username)));
	else
		snprintf(buf, len, "client_credentials for client \"%s\"",
		    log_quote(q, sizeof(q), conf.pks_client_id,
		    strlen(conf.pks_client_id)));
}

static void
token_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	json_t *root;
	const char *tok;
	json_int_t ttl;
	char why[160], what[96];

	(void)r;
	token_req = NULL;
	if (code != 200) {
		token_what(what, sizeof(what));
		snprintf(why, sizeof(why), "UAA token (%s): %s%ld%s", what,
		    err ? "transport error, code " : "HTTP ", code,
		    code == 401 ? ", credentials refused" : "");
		pks_failed(why);
		return;
	}
	root = json_loadb(body, len, 0, NULL);
	tok = json_string_value(json_object_get(root, "access_token"));
	ttl = json_integer_value(json_object_get(root, "expires_in"));
	if (tok == NULL || *tok == '\0' || strlen(tok) > 16384) {
		json_decref(root);
		pks_failed("UAA token: malformed answer");
		return;
	}
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	free(token);
	if ((token = strdup(tok)) == NULL)
		fatal("pks");
	json_decref(root);
	if (ttl < 10)
		ttl = 10;
	if (ttl > 86400)
		ttl = 86400;
	token_renew = now_ms() + (uint64_t)ttl * 800;	/* 80% of its life */
	poll_clusters();
}

/*
 * The form of the token request.  The password grant's values are
 * percent-encoded whole (a password may hold '&', '=' or '+'); the client
 * is authenticated by HTTP Basic either way.  buf is sized by the caller
 * for the longest values config allows; the caller wipes it.
 */
static void
token_form(char *buf, size_t len)
{
	char user[3 * sizeof(conf.pks_username)];
	char pass[3 * sizeof(conf.pks_password)];
	int n;

	if (conf.pks_username[0] == '\0') {
		snprintf(buf, len, "grant_type=client_credentials");
		return;
	}
	if (http_escape(user, sizeof(user), conf.pks_username) == -1 ||
	    http_escape(pass, sizeof(pass), conf.pks_password) == -1)
		fatalx("pks: token form: escape buffer too small");
	n = snprintf(buf, len, "grant_type=password&username=%s&password=%s",
	    user, pass);
	explicit_bzero(pass, sizeof(pass));
	if (n < 0 || (size_t)n >= len)
		fatalx("pks: token form too long");
}

static void
get_token(void)
{
	struct http_auth a = { .ca_file = conf.pks_ca,
	    .basic_user = conf.pks_client_id,
	    .basic_pass = conf.pks_client_secret };
	char url[600], form[64 + 3 * (sizeof(conf.pks_username) +
	    sizeof(conf.pks_password))];

	token_form(form, sizeof(form));
	snprintf(url, sizeof(url), "%s/oauth/token", conf.uaa_url);
	token_req = http_start("POST", url, &a,
	    "application/x-www-form-urlencoded", form, 30000, token_done,
	    NULL, NULL);
	explicit_bzero(form, sizeof(form));
}

static void
forget_token(void)
{
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	free(token);
	token = NULL;
}

/*
 * One cluster of the list: 1 when it is to be routed, 0 when it is not
 * (being created or deleted), -1 when it is refused, with the reason in
 * why: what it says cannot be trusted to reach a config or a log.
 */
static int
pks_cluster(json_t *c, char *why, size_t whylen)
{
	const char *uuid = json_string_value(json_object_get(c, "uuid"));
	const char *name = json_string_value(json_object_get(c, "name"));
	const char *action = json_string_value(json_object_get(c,
	    "last_action"));
	const char *state = json_string_value(json_object_get(c,
	    "last_action_state"));
	json_t *params = json_object_get(c, "parameters"), *ips, *ip;
	const char *mhost = json_string_value(json_object_get(params,
	    "kubernetes_master_host"));
	json_int_t mport = json_integer_value(json_object_get(params,
	    "kubernetes_master_port"));
	char masters[EV_MAX_MASTERS][EV_IPLEN], host[254];
	struct cluster *cl;
	size_t i, n, dlen;

	if (uuid == NULL || !valid_cluster_id(uuid) || json_has_nul(c)) {
		snprintf(why, whylen, "%s", uuid != NULL &&
		    valid_cluster_id(uuid) ? "a string holds a NUL byte" :
		    "uuid is not [a-z0-9-]{1,63}");
		return -1;
	}
	if (!shard_mine(uuid))
		return 0;		/* another watcherd's */
	if (name == NULL || !valid_dns_label(name)) {
		snprintf(why, whylen, "uuid %s: name is not a DNS label", uuid);
		return -1;
	}
	cl = cluster_find(uuid);
	if (action != NULL && strcmp(action, "DELETE") == 0)
		return 0;
	if (state == NULL || strcmp(state, "succeeded") != 0) {
		/*
		 * An update in progress keeps the route it had; one we do
		 * not know yet (we restarted) is routed if its IPs parse.
		 */
		if (action == NULL || strcmp(action, "UPDATE") != 0)
			return 0;
		if (cl != NULL) {
			cl->seen = 1;
			return 1;
		}
	}
	ips = json_object_get(c, "kubernetes_master_ips");
	n = json_array_size(ips);
	if (n == 0 || n > EV_MAX_MASTERS) {
		snprintf(why, whylen, "%s: %zu master IPs", name, n);
		return -1;
	}
	memset(masters, 0, sizeof(masters));
	json_array_foreach(ips, i, ip) {
		const char *s = json_string_value(ip);

		if (s == NULL || !valid_ip(s) || strlen(s) >= EV_IPLEN) {
			snprintf(why, whylen, "%s: a master IP is not an IP "
			    "address", name);
			return -1;
		}
		strcpy(masters[i], s);
	}
	/* the master host is the SNI name when it lies under our domain */
	dlen = strlen(conf.domain);
	if (mhost != NULL && valid_dns_subdomain(mhost) &&
	    strlen(mhost) > dlen + 1 && mhost[strlen(mhost) - dlen - 1] ==
	    '.' && strcmp(mhost + strlen(mhost) - dlen, conf.domain) == 0)
		snprintf(host, sizeof(host), "%s", mhost);
	else if ((size_t)snprintf(host, sizeof(host), "%s.%s", name,
	    conf.domain) >= sizeof(host))
		return 0;
	if (mport <= 0 || mport > 65535)
		mport = 8443;
	return cluster_upsert(uuid, name, host, masters, n, (unsigned)mport,
	    &pks_source) != NULL;
}

static void
poll_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	json_t *root, *c;
	char why[128], refused[sizeof(last_refused)];
	size_t i, o, routed = 0, nrefused = 0;

	(void)r;
	poll_req = NULL;
	if (code == 401 && !retried) {
		/* the token went stale early: renew once, then retry */
		retried = 1;
		forget_token();
		get_token();
		return;
	}
	if (code != 200) {
		snprintf(why, sizeof(why), "GET /v1/clusters: %s%ld",
		    err ? "transport error, code " : "HTTP ", code);
		pks_failed(why);
		return;
	}
	if ((root = json_untrusted(body, len)) == NULL ||
	    !json_is_array(root)) {
		json_decref(root);
		pks_failed("GET /v1/clusters: malformed JSON");
		return;
	}
	pks_recovered();
	refused[0] = '\0';
	json_array_foreach(root, i, c) {
		switch (pks_cluster(c, why, sizeof(why))) {
		case 1:
			routed++;
			break;
		case -1:
			nrefused++;
			o = strlen(refused);
			snprintf(refused + o, sizeof(refused) - o, "%s%s",
			    o ? "; " : "", why);
			break;
		}
	}
	json_decref(root);
	/* once per change, not once per poll */
	if (strcmp(refused, last_refused) != 0 && nrefused > 0)
		log_warnx("pks: %zu clusters refused: %s", nrefused, refused);
	memcpy(last_refused, refused, sizeof(refused));
	clusters_sweep(&pks_source);
	polled_ok = 1;
	log_debug("pks: %zu clusters routed", routed);
	next_poll = poll_again ? 0 : now_ms() + (uint64_t)conf.pks_poll * 1000;
	poll_again = 0;
}

static void
poll_clusters(void)
{
	struct http_auth a = { .ca_file = conf.pks_ca, .bearer = token };
	char url[600];

	snprintf(url, sizeof(url), "%s/v1/clusters", conf.pks_url);
	clusters_mark(&pks_source);	/* when asked: shard.c */
	poll_req = http_start("GET", url, &a, NULL, NULL, 30000, poll_done,
	    NULL, NULL);
}

static void
pks_init(void)
{
	next_poll = 0;
}

static void
pks_timer(uint64_t now)
{
	if (conf.pks_url[0] == '\0' || token_req != NULL || poll_req != NULL)
		return;
	if (token != NULL && now >= token_renew)
		forget_token();
	if (now < next_poll)
		return;
	retried = 0;
	if (token == NULL)
		get_token();
	else
		poll_clusters();
}

/* Credentials: POST /v1/clusters/{name}/binds returns a kubeconfig. */
static void
bind_done(struct http_req *r, long code, const char *body, size_t len,
    const char *err)
{
	struct cluster *cl = cluster_find(r->arg);
	struct creds c;
	char why[160];
	json_t *root;

	free(r->arg);
	if (cl == NULL)
		return;
	cl->bind_req = NULL;
	/* any 2xx: a POST that creates a binding may well say 201 */
	if (code >= 200 && code < 300 &&
	    (root = json_loadb(body, len, 0, NULL)) != NULL) {
		if (kubeconfig_creds(root, NULL, &c, why, sizeof(why)) == 0) {
			json_decref(root);
			cluster_set_creds(cl, &c);
			cl->bind_backoff = 0;
			log_info("%s: credentials from PKS, API %s", cl->name,
			    cl->creds.server);
			return;
		}
		json_decref(root);
	} else
		snprintf(why, sizeof(why), "%s%ld%s",
		    err ? "transport error, code " : "HTTP ", code,
		    code >= 200 && code < 300 ? ", not JSON" : "");
	cl->bind_backoff = cl->bind_backoff ? (cl->bind_backoff * 2 > 60000 ?
	    60000 : cl->bind_backoff * 2) : 1000;
	cl->bind_at = now_ms() + jitter(cl->bind_backoff);
	log_warnx("%s: binds: %s; again in %u ms", cl->name, why,
	    cl->bind_backoff);
}

static void
pks_bind(struct cluster *cl)
{
	struct http_auth a = { .ca_file = conf.pks_ca, .bearer = token };
	char url[700], *id;

	if (token == NULL)
		return;			/* the next poll brings one */
	if ((id = strdup(cl->id)) == NULL)
		fatal("pks");
	snprintf(url, sizeof(url), "%s/v1/clusters/%s/binds", conf.pks_url,
	    cl->name);
	cl->bind_req = http_start("POST", url, &a, "application/json", "{}",
	    30000, bind_done, NULL, id);
}

/* No credentials yet: a bind, when the last one is over and due. */
static void
pks_unbound(struct cluster *cl, uint64_t now)
{
	if (cl->bind_req == NULL && now >= cl->bind_at)
		pks_bind(cl);
}

static void
pks_refused(struct cluster *cl)
{
	if (cl->bind_req != NULL)
		return;
	log_warnx("%s: credentials refused (401), asking PKS for new ones",
	    cl->name);
	pks_bind(cl);
}

/*
 * A recount: the next poll now, or right after the one that is out (its
 * answer is taken, but it was asked under the old count: shard.c).
 */
static void
pks_poll_soon(void)
{
	if (poll_req != NULL || token_req != NULL)
		poll_again = 1;
	else
		next_poll = 0;
}

static int
pks_enabled(void)
{
	return conf.pks_url[0] != '\0';
}

const struct cluster_source pks_source = {
	.name = "pks",
	.id = SRC_PKS,
	.enabled = pks_enabled,
	.init = pks_init,
	.timer = pks_timer,
	.polled = pks_polled,
	.bind = pks_unbound,
	.refused = pks_refused,
	.via_masters = 1,
	.poll_soon = pks_poll_soon,
};
