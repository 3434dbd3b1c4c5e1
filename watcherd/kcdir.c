/*
 * watcherd — the kubeconfig-folder source, for fleets without PKS.
 *
 * One kubeconfig per cluster: <name>.yaml, .yml, .json or .kubeconfig.  The
 * file name names the cluster (a DNS label), the server URL gives the API's
 * address (an IP, or a name), the current context gives the credentials.
 * The folder is read every poll interval; a file that changed is read
 * again, one that went takes its cluster along.  A user's tokenFile is
 * looked at every poll too, and on a 401: Kubernetes rotates the tokens it
 * projects into such files.
 *
 * A server given by name is resolved off the loop (resolve.c): whoever
 * writes one kubeconfig may name a host whose DNS server answers late or
 * never, and that must not hold up the other clusters.  The file waits,
 * its credentials read, until the name answers; a file that changes
 * meanwhile replaces what waited, so that only the answer for the name it
 * names now is taken.  Its cluster, if an older file gave it one, keeps
 * routing as it did.  The names of the clusters that run are looked up
 * again every minute (kcdir_refresh), and their API routes and requests
 * follow the addresses; a name that stops resolving keeps the last ones.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsafe.h"
#include "kcfile.h"
#include "log.h"
#include "valid.h"
#include "watcherd.h"

struct kcfile {
	struct timespec	mtime;
	off_t		size;
	int		ok;
	int		odd;		/* "not a regular file" was said */
	int		seen;		/* in the folder at this scan */
	int		waiting;	/* pending waits for its server's name */
	struct creds	pending;
	char		file[256];	/* its name in the folder */
	char		said[320];	/* the failure to resolve last logged */
	char		refused[320];	/* the address refused last logged */
};

#define KCDIR_REFRESH_MS	60000

static struct smap	files;		/* name -> struct kcfile */
static uint64_t		next_scan;
static int		scanned;

static int
kcdir_polled(void)
{
	return conf.kubeconfig_dir[0] == '\0' || scanned;
}

static int
cluster_name(const char *file, char *name, size_t len)
{
	static const char *exts[] = { ".yaml", ".yml", ".json", ".kubeconfig" };
	const char *dot = strrchr(file, '.');
	size_t i, n;

	if (dot == NULL)
		return -1;
	for (i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
		if (strcmp(dot, exts[i]) == 0)
			break;
	n = (size_t)(dot - file);
	if (i == sizeof(exts) / sizeof(exts[0]) || n >= len)
		return -1;
	memcpy(name, file, n);
	name[n] = '\0';
	return valid_dns_label(name) ? 0 : -1;
}

/*
 * How old a running cluster's addresses may get: a minute, or the poll
 * interval when longer.  Asking at every poll would be a lookup a second
 * for 10,000 clusters named in the folder, for answers that DNS lets live
 * for minutes.
 */
static uint64_t
kcdir_refresh(void)
{
	uint64_t poll = (uint64_t)conf.kubeconfig_poll * 1000;

	return poll > KCDIR_REFRESH_MS ? poll : KCDIR_REFRESH_MS;
}

/*
 * The server's addresses are ones watcherd may connect to with the file's
 * credentials (master_allowed); a refusal is said once, until it changes.
 */
static int
kcdir_allowed(struct kcfile *f, const char *server,
    char masters[][EV_IPLEN], size_t n)
{
	char bad[64], why[320];
	size_t i;

	for (i = 0; i < n; i++) {
		if (master_allowed(masters[i], bad, sizeof(bad)) == 0)
			continue;
		snprintf(why, sizeof(why), "server %.64s: %.45s %s", server,
		    masters[i], bad);
		if (strcmp(why, f->refused) != 0)
			log_warnx("kubeconfigs: %s: %s; not connected to",
			    f->file, why);
		snprintf(f->refused, sizeof(f->refused), "%s", why);
		return -1;
	}
	f->refused[0] = '\0';
	return 0;
}

/* c (taken) for cluster name, at these addresses. */
static int
kcdir_up(const char *name, struct kcfile *f, struct creds *c,
    char masters[][EV_IPLEN], size_t n)
{
	char host[254];
	struct cluster *cl;

	if (kcdir_allowed(f, c->host, masters, n) == -1) {
		creds_free(c);
		return -1;
	}
	if ((size_t)snprintf(host, sizeof(host), "%s.%s", name, conf.domain) >=
	    sizeof(host) || (cl = cluster_upsert(name, name, host, masters, n,
	    c->port, &kcdir_source)) == NULL) {
		log_warnx("kubeconfigs: %s: not a routable cluster", f->file);
		creds_free(c);
		return -1;
	}
	cluster_set_creds(cl, c);
	return 0;
}

static void
drop_wait(struct kcfile *f)
{
	if (f->waiting)
		creds_free(&f->pending);
	f->waiting = 0;
	f->said[0] = '\0';
}

/*
 * A file that waits for its server's name: up once it answers.  A failure
 * is logged when it is not the one said last; the name (checked a DNS name
 * by kubeconfig_creds) is asked again with a backoff.
 */
static void
try_wait(const char *name, struct kcfile *f)
{
	char masters[EV_MAX_MASTERS][EV_IPLEN], why[320];
	int n;

	memset(masters, 0, sizeof(masters));
	n = resolve_name(SRC_KUBECONFIG, f->pending.host, kcdir_refresh(),
	    masters, why, sizeof(why));
	if (n == 0)
		return;
	if (n < 0) {
		if (strcmp(why, f->said) != 0)
			log_warnx("kubeconfigs: %s: %s; its cluster waits for "
			    "it", f->file, why);
		snprintf(f->said, sizeof(f->said), "%s", why);
		return;
	}
	if (f->said[0] != '\0')
		log_info("kubeconfigs: %s: %s resolves now", f->file,
		    f->pending.host);
	f->waiting = 0;
	f->said[0] = '\0';
	if (kcdir_up(name, f, &f->pending, masters, (size_t)n) == 0)
		f->ok = 1;
	memset(&f->pending, 0, sizeof(f->pending));
}

/*
 * A running cluster whose server is a name follows its addresses.  One
 * that does not resolve any more keeps the addresses it had, and says so
 * once.
 */
static void
follow(struct cluster *cl, struct kcfile *f)
{
	char masters[EV_MAX_MASTERS][EV_IPLEN], why[320];
	int n;

	if (valid_ip(cl->creds.host))
		return;
	memset(masters, 0, sizeof(masters));
	n = resolve_name(SRC_KUBECONFIG, cl->creds.host, kcdir_refresh(),
	    masters, why, sizeof(why));
	if (n < 0) {
		if (strcmp(why, f->said) != 0)
			log_warnx("kubeconfigs: %s: %s; keeping the addresses "
			    "it had", f->file, why);
		snprintf(f->said, sizeof(f->said), "%s", why);
		return;
	}
	if (n == 0 || kcdir_allowed(f, cl->creds.host, masters, (size_t)n) ==
	    -1)
		return;
	f->said[0] = '\0';
	if ((size_t)n == cl->nmasters &&
	    memcmp(masters, cl->masters, (size_t)n * EV_IPLEN) == 0)
		return;
	log_info("kubeconfigs: %s: %s resolves to %s%s now", f->file,
	    cl->creds.host, masters[0], n > 1 ? " and others" : "");
	cluster_upsert(cl->id, cl->name, cl->host, masters, (size_t)n,
	    cl->mport, &kcdir_source);
}

/*
 * A kubeconfig of the folder: itself under the places kcfile allows (a
 * link to a kubeconfig elsewhere is refused), and private to us when it
 * holds a secret inline.  Its cluster comes up now when the server is an
 * IP, else once the name answers (try_wait).
 */
static void
load(const char *dir, const char *file, const char *name, struct kcfile *f)
{
	char path[PATH_MAX + 512], err[256];
	char masters[EV_MAX_MASTERS][EV_IPLEN];
	struct creds c;
	struct stat st;
	json_t *root;
	size_t len;
	char *buf;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if ((buf = kcfile_read(path, 0, 1 << 20, &len, &st, err,
	    sizeof(err))) == NULL) {
		log_warnx("kubeconfigs: %s: %s", file, err);
		return;
	}
	err[0] = '\0';
	root = yaml_parse(buf, len, err, sizeof(err));
	free(buf);
	if (root != NULL && kubeconfig_holds_secret(root) &&
	    fsafe_secret_mode(&st, "the file", err, sizeof(err)) == -1) {
		json_decref(root);
		log_warnx("kubeconfigs: %s: %s", file, err);
		return;
	}
	if (root == NULL || kubeconfig_creds(root, dir, &c, err,
	    sizeof(err)) == -1) {
		json_decref(root);
		log_warnx("kubeconfigs: %s: %s", file, err);
		return;
	}
	json_decref(root);
	snprintf(f->file, sizeof(f->file), "%s", file);
	if (valid_ip(c.host)) {
		memset(masters, 0, sizeof(masters));
		strcpy(masters[0], c.host);
		if (kcdir_up(name, f, &c, masters, 1) == 0)
			f->ok = 1;
		return;
	}
	f->pending = c;
	f->waiting = 1;
	try_wait(name, f);
}

/*
 * A token file that changed gives the cluster its new token, and its
 * requests start over with it as with any new credentials.  One that
 * cannot be read or is empty keeps the token we have; that is logged once,
 * until the file's state changes again.  The token itself is never logged.
 */
static void
kcdir_token(struct cluster *cl)
{
	struct creds *o = &cl->creds, c;
	char *tok, path[256], why[256];
	int rc, state;

	if (o->token_file == NULL)
		return;
	rc = token_read(o, &tok, why, sizeof(why));
	state = rc != -1 ? 0 : errno != 0 ? errno : -1;
	if (rc != 1 && state == o->token_err)
		return;
	log_quote(path, sizeof(path), o->token_file, strlen(o->token_file));
	if (rc == -1)
		log_warnx("%s: token file %s: %s; keeping the token we have",
		    cl->name, path, why);
	else if (rc == 0)
		log_info("%s: token file %s: readable again, unchanged",
		    cl->name, path);
	o->token_err = state;
	if (rc != 1)
		return;
	log_info("%s: token file %s changed, read again", cl->name, path);
	creds_copy(&c, o, tok);
	cluster_set_creds(cl, &c);
}

/* Same size and mtime as when it was read last. */
static int
unchanged(const struct kcfile *f, const struct stat *st)
{
	return f->size == st->st_size &&
	    f->mtime.tv_sec == st->st_mtim.tv_sec &&
	    f->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* The files of the folder that went, or are another shard's now. */
static void
drop_unseen(void)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct kcfile *f;

	while ((e = smap_next(&files, &it)) != NULL) {
		f = e->val;
		if (!f->seen)
			drop_wait(f);
		f->seen = 0;
	}
}

static void
scan(void)
{
	struct dirent *de;
	struct kcfile *f;
	struct stat st;
	struct cluster *cl;
	char name[64], path[PATH_MAX + 512];
	DIR *d;

	kcfile_places(conf.kubeconfig_dir, conf.kubeconfig_allow);
	if ((d = opendir(conf.kubeconfig_dir)) == NULL) {
		log_warn("kubeconfigs: %s", conf.kubeconfig_dir);
		return;		/* keep what we have */
	}
	clusters_mark(&kcdir_source);
	while ((de = readdir(d)) != NULL) {
		if (cluster_name(de->d_name, name, sizeof(name)) == -1 ||
		    !shard_mine(name))	/* another watcherd's */
			continue;
		snprintf(path, sizeof(path), "%s/%s", conf.kubeconfig_dir,
		    de->d_name);
		if ((f = smap_get(&files, name)) == NULL) {
			if ((f = calloc(1, sizeof(*f))) == NULL)
				fatal("kubeconfigs");
			smap_put(&files, name, f);
		}
		f->seen = 1;
		if (stat(path, &st) == -1 || !S_ISREG(st.st_mode)) {
			/* said once, not at every scan; never opened */
			if (!f->odd)
				log_warnx("kubeconfigs: %s: not a regular file; "
				    "ignored", de->d_name);
			f->odd = 1;
			f->ok = 0;
			drop_wait(f);
			continue;
		}
		f->odd = 0;
		cl = cluster_find(name);
		if (f->waiting && unchanged(f, &st))
			try_wait(name, f);
		else if (f->ok && cl != NULL && unchanged(f, &st))
			follow(cl, f);
		else {
			/* new or changed: what waited for the old one goes */
			drop_wait(f);
			f->ok = 0;
			f->size = st.st_size;
			f->mtime = st.st_mtim;
			load(conf.kubeconfig_dir, de->d_name, name, f);
		}
		/* a file that does not read now keeps what it gave before */
		if ((cl = cluster_find(name)) != NULL) {
			cl->seen = 1;
			if (f->ok || f->waiting)
				kcdir_token(cl);
		}
	}
	closedir(d);
	drop_unseen();
	clusters_sweep(&kcdir_source);
	resolve_forget_unasked(SRC_KUBECONFIG);
	scanned = 1;
}

/*
 * The folder every poll interval, and at once when a name's addresses
 * moved: a file waiting for them comes up, a cluster follows them.
 */
static void
kcdir_timer(uint64_t now)
{
	if (conf.kubeconfig_dir[0] == '\0')
		return;
	if (resolve_timer(SRC_KUBECONFIG))
		next_scan = 0;
	if (now < next_scan)
		return;
	scan();
	next_scan = now + (uint64_t)conf.kubeconfig_poll * 1000;
}

static void
kcdir_refused(struct cluster *cl)
{
	log_warnx("%s: credentials refused (401), waiting for a new "
	    "kubeconfig%s", cl->name, cl->creds.token_file ?
	    " or token file" : "");
	kcdir_token(cl);
}

static void
kcdir_scan_soon(void)
{
	next_scan = 0;
}

static int
kcdir_enabled(void)
{
	return conf.kubeconfig_dir[0] != '\0';
}

const struct cluster_source kcdir_source = {
	.name = "kubeconfigs",
	.id = SRC_KUBECONFIG,
	.enabled = kcdir_enabled,
	.timer = kcdir_timer,
	.polled = kcdir_polled,
	.refused = kcdir_refused,
	.via_masters = 1,
	.poll_soon = kcdir_scan_soon,
};
