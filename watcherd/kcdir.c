/*
 * watcherd — the kubeconfig-folder source, for fleets without PKS.
 *
 * One kubeconfig per cluster: <name>.yaml, .yml, .json or .kubeconfig.  The
 * file name names the cluster (a DNS label), the server URL gives the API's
 * address (an IP, or a name resolved when the file is read), the current
 * context gives the credentials.  The folder is read every poll interval; a
 * file that changed is read again, one that went takes its cluster along.
 * A user's tokenFile is looked at every poll too, and on a 401: Kubernetes
 * rotates the tokens it projects into such files.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
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
};

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

/* The API's addresses: the host itself when it is an IP, else resolved. */
static size_t
resolve(const char *host, char masters[][EV_IPLEN])
{
	struct addrinfo hints, *res, *ai;
	size_t n = 0;

	if (valid_ip(host)) {
		strcpy(masters[0], host);
		return 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return 0;
	for (ai = res; ai != NULL && n < EV_MAX_MASTERS; ai = ai->ai_next) {
		void *a = ai->ai_family == AF_INET ?
		    (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr :
		    (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;

		if (inet_ntop(ai->ai_family, a, masters[n], EV_IPLEN) != NULL)
			n++;
	}
	freeaddrinfo(res);
	return n;
}

/*
 * A kubeconfig of the folder: itself under the places kcfile allows (a
 * link to a kubeconfig elsewhere is refused), and private to us when it
 * holds a secret inline.
 */
static void
load(const char *dir, const char *file, const char *name)
{
	char path[PATH_MAX + 512], err[256], host[254];
	char masters[EV_MAX_MASTERS][EV_IPLEN];
	struct cluster *cl;
	struct creds c;
	struct stat st;
	json_t *root;
	size_t len, n;
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
	memset(masters, 0, sizeof(masters));
	if ((n = resolve(c.host, masters)) == 0) {
		log_warnx("kubeconfigs: %s: %s does not resolve", file,
		    c.host);
		creds_free(&c);
		return;
	}
	if ((size_t)snprintf(host, sizeof(host), "%s.%s", name, conf.domain) >=
	    sizeof(host) || (cl = cluster_upsert(name, name, host, masters, n, c.port,
	    &kcdir_source)) == NULL) {
		log_warnx("kubeconfigs: %s: not a routable cluster", file);
		creds_free(&c);
		return;
	}
	cluster_set_creds(cl, &c);
	((struct kcfile *)smap_get(&files, name))->ok = 1;
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
		if (stat(path, &st) == -1 || !S_ISREG(st.st_mode)) {
			/* said once, not at every scan; never opened */
			if (!f->odd)
				log_warnx("kubeconfigs: %s: not a regular file; "
				    "ignored", de->d_name);
			f->odd = 1;
			f->ok = 0;
			continue;
		}
		f->odd = 0;
		cl = cluster_find(name);
		if (f->ok && cl != NULL && f->size == st.st_size &&
		    f->mtime.tv_sec == st.st_mtim.tv_sec &&
		    f->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			cl->seen = 1;
			kcdir_token(cl);
			continue;
		}
		f->ok = 0;
		f->size = st.st_size;
		f->mtime = st.st_mtim;
		load(conf.kubeconfig_dir, de->d_name, name);
		/* a file that does not read now keeps what it gave before */
		if (!f->ok && (cl = cluster_find(name)) != NULL)
			cl->seen = 1;
	}
	closedir(d);
	clusters_sweep(&kcdir_source);
	scanned = 1;
}

static void
kcdir_timer(uint64_t now)
{
	if (conf.kubeconfig_dir[0] == '\0' || now < next_scan)
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
	.poll_soon = kcdir_scan_soon,
};
