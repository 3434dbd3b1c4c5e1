/*
 * applyd — the Envoy driver.  It installs Envoy's files; it does not run
 * Envoy.
 *
 * renderd's Envoy text holds three documents, each after a header line
 * "=== <name> <bytes>": bootstrap.json, cds.json, lds.json (see
 * renderd/envoy.c).  applyd serves the text as any other configuration
 * (pc->config, written by rename once checked), and installing it writes
 * each document to "<run_dir>/<proxy>-<name>", by rename too: Envoy's path
 * config source reloads a file when one is moved onto its path, and only
 * then (a file written in place could be read half done).  The documents
 * are all written first and then renamed, clusters before the listeners
 * that name them; the bootstrap is read by Envoy only when it starts.
 *
 * Envoy itself is the operator's: `envoy -c <run_dir>/<proxy>-bootstrap.json`
 * (Envoy cannot run on the machines portico is developed on, so no test
 * runs it).  So "running" here means what applyd can vouch for, that the
 * files it installed are in place; a file removed under us is written
 * again.  The check is ours as well: every section present once, in
 * order, each document JSON (jansson) with the resources Envoy expects,
 * every cluster a listener names defined, and the bootstrap pointing at
 * the files this driver writes.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "proxy.h"

#define TYPE_LISTENER	"type.googleapis.com/envoy.config.listener.v3.Listener"
#define TYPE_CLUSTER	"type.googleapis.com/envoy.config.cluster.v3.Cluster"

/* The sections, in the order of the text and of their install. */
enum { BOOTSTRAP, CDS, LDS, NFILES };
static const char *const names[NFILES] = {
	"bootstrap.json", "cds.json", "lds.json"
};

struct doc {
	const char	*text;
	size_t		 len;
};

static void
envoy_path(struct proxy *p, int i, char *buf, size_t len)
{
	config_proxy_file(p->conf, p->pc, names[i], buf, len);
}

static void
envoy_init(struct proxy *p)
{
	char path[PATH_MAX];

	envoy_path(p, BOOTSTRAP, path, sizeof(path));
	log_info("proxy %s is Envoy: applyd installs its files and "
	    "does not run it; start it with: envoy -c %s", p->pc->name, path);
}

/* The whole of a file, NUL-terminated, in *text (free it); -1 and errno. */
static int
read_all(const char *path, char **text, size_t *len)
{
	struct stat st;
	ssize_t n;
	size_t off = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1 ||
	    (*text = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return -1;
	}
	while (off < (size_t)st.st_size &&
	    (n = read(fd, *text + off, (size_t)st.st_size - off)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			free(*text);
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	close(fd);
	(*text)[off] = '\0';
	*len = off;
	return 0;
}

/*
 * The documents of a text: an optional "# " comment line, then each
 * section once, in order, its bytes ending in a newline, and nothing after
 * the last.  The counts make it exact: no guess at where JSON ends.
 */
static int
split(const char *text, size_t len, struct doc docs[NFILES], char *err,
    size_t errlen)
{
	const char *s = text, *end = text + len, *nl;
	char head[64], *e;
	unsigned long long n;
	int i;

	if (len > 2 && strncmp(s, "# ", 2) == 0 &&
	    (nl = memchr(s, '\n', len)) != NULL)
		s = nl + 1;
	for (i = 0; i < NFILES; i++) {
		snprintf(head, sizeof(head), "=== %s ", names[i]);
		if ((size_t)(end - s) < strlen(head) ||
		    strncmp(s, head, strlen(head)) != 0) {
			snprintf(err, errlen, "no section %s where expected",
			    names[i]);
			return -1;
		}
		s += strlen(head);
		errno = 0;
		n = strtoull(s, &e, 10);
		if (e == s || *e != '\n' || errno != 0 ||
		    n > (unsigned long long)(end - e - 1) || n == 0 ||
		    e[n] != '\n') {
			snprintf(err, errlen, "section %s: bad length",
			    names[i]);
			return -1;
		}
		docs[i].text = e + 1;
		docs[i].len = (size_t)n;
		s = e + 1 + n;
	}
	if (s != end) {
		snprintf(err, errlen, "%zu bytes after the last section",
		    (size_t)(end - s));
		return -1;
	}
	return 0;
}

static const char *
str_at(json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key));
}

/* The bootstrap reads its LDS and CDS from where install() puts them. */
static int
check_bootstrap(struct proxy *p, json_t *boot, char *err, size_t errlen)
{
	static const char *const key[NFILES] = { NULL, "cds_config",
	    "lds_config" };
	char want[PATH_MAX];
	const char *path;
	json_t *src;
	int i;

	for (i = CDS; i <= LDS; i++) {
		src = json_object_get(json_object_get(boot,
		    "dynamic_resources"), key[i]);
		path = str_at(json_object_get(src, "path_config_source"),
		    "path");
		envoy_path(p, i, want, sizeof(want));
		if (path == NULL || strcmp(path, want) != 0) {
			snprintf(err, errlen, "bootstrap.json: "
			    "dynamic_resources.%s does not read %s", key[i],
			    want);
			return -1;
		}
	}
	return 0;
}

/*
 * A DiscoveryResponse's resources: each of type, with a name not seen
 * before (Envoy refuses the whole update otherwise), added to seen.
 */
static int
check_resources(json_t *doc, int i, const char *type, json_t *seen,
    char *err, size_t errlen)
{
	json_t *res, *r;
	const char *name, *t;
	size_t k;

	if (!json_is_array(res = json_object_get(doc, "resources")) ||
	    !json_is_string(json_object_get(doc, "version_info"))) {
		snprintf(err, errlen, "%s: not a DiscoveryResponse", names[i]);
		return -1;
	}
	json_array_foreach(res, k, r) {
		t = str_at(r, "@type");
		name = str_at(r, "name");
		if (t == NULL || strcmp(t, type) != 0 || name == NULL ||
		    *name == '\0' || json_object_get(seen, name) != NULL) {
			snprintf(err, errlen, "%s: resource %zu: no type %s "
			    "or no name of its own", names[i], k, type);
			return -1;
		}
		if (json_object_set_new(seen, name, json_true()) == -1) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* Every tcp_proxy of every listener goes to a cluster that CDS defines. */
static int
check_clusters(json_t *lds, json_t *clusters, char *err, size_t errlen)
{
	json_t *l, *fc, *f;
	const char *c;
	size_t i, j, k;

	json_array_foreach(json_object_get(lds, "resources"), i, l)
	    json_array_foreach(json_object_get(l, "filter_chains"), j, fc)
		json_array_foreach(json_object_get(fc, "filters"), k, f) {
			c = str_at(json_object_get(f, "typed_config"),
			    "cluster");
			if (c == NULL || json_object_get(clusters, c) == NULL) {
				snprintf(err, errlen, "lds.json: listener %s "
				    "names a cluster CDS does not define",
				    str_at(l, "name"));
				return -1;
			}
		}
	return 0;
}

static int
check_docs(struct proxy *p, struct doc docs[NFILES], char *err,
    size_t errlen)
{
	json_t *j[NFILES] = { NULL, NULL, NULL }, *clusters, *listeners;
	json_error_t je;
	char why[200];
	int i, rc = -1;

	clusters = json_object();
	listeners = json_object();
	if (clusters == NULL || listeners == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < NFILES; i++)
		if ((j[i] = json_loadb(docs[i].text, docs[i].len,
		    JSON_REJECT_DUPLICATES, &je)) == NULL ||
		    !json_is_object(j[i])) {
			snprintf(err, errlen, "%s: line %d: %s", names[i],
			    j[i] == NULL ? je.line : 1, j[i] == NULL ?
			    log_quote(why, sizeof(why), je.text,
			    strlen(je.text)) : "not a JSON object");
			goto out;
		}
	if (check_bootstrap(p, j[BOOTSTRAP], err, errlen) == 0 &&
	    check_resources(j[CDS], CDS, TYPE_CLUSTER, clusters, err,
	    errlen) == 0 &&
	    check_resources(j[LDS], LDS, TYPE_LISTENER, listeners, err,
	    errlen) == 0 &&
	    check_clusters(j[LDS], clusters, err, errlen) == 0)
		rc = 0;
 out:
	for (i = 0; i < NFILES; i++)
		json_decref(j[i]);
	json_decref(clusters);
	json_decref(listeners);
	return rc;
}

static int
envoy_check(struct proxy *p, const char *path, char *err, size_t errlen)
{
	struct doc docs[NFILES];
	char *text;
	size_t len;
	int rc;

	if (read_all(path, &text, &len) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = split(text, len, docs, err, errlen) == -1 ? -1 :
	    check_docs(p, docs, err, errlen);
	free(text);
	return rc;
}

/*
 * Install the documents of the served text: all written to "<file>.new"
 * first, so that a full disk stops us before Envoy sees any of them, then
 * renamed in order.  Envoy reads them, so they are 0644 (run_dir itself is
 * 0700: the operator runs Envoy as our user or opens it to Envoy's).
 */
static int
install(struct proxy *p, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[NFILES][PATH_MAX + 8];
	struct doc docs[NFILES];
	char *text;
	size_t len;
	int i, rc = -1;

	if (read_all(p->pc->config, &text, &len) == -1) {
		snprintf(err, errlen, "%s: %s", p->pc->config,
		    strerror(errno));
		return -1;
	}
	if (split(text, len, docs, err, errlen) == -1)
		goto out;
	for (i = 0; i < NFILES; i++) {
		envoy_path(p, i, path, sizeof(path));
		snprintf(tmp[i], sizeof(tmp[i]), "%s.new", path);
		if (proxy_put_file(tmp[i], docs[i].text, docs[i].len, 0644) == -1) {
			snprintf(err, errlen, "%s: %s", tmp[i],
			    strerror(errno));
			goto out;
		}
	}
	for (i = 0; i < NFILES; i++) {
		envoy_path(p, i, path, sizeof(path));
		if (rename(tmp[i], path) == -1) {
			snprintf(err, errlen, "rename %s: %s", path,
			    strerror(errno));
			goto out;
		}
	}
	p->installed = 1;
	rc = 0;
 out:
	free(text);
	return rc;
}

static int
envoy_start(struct proxy *p, char *err, size_t errlen)
{
	char path[PATH_MAX];

	if (install(p, err, errlen) == -1)
		return -1;
	envoy_path(p, BOOTSTRAP, path, sizeof(path));
	log_info("Envoy's files are installed beside %s; applyd "
	    "does not run Envoy (envoy -c %s is the operator's)", path, path);
	return 0;
}

/* A running Envoy reloads LDS and CDS by itself once they are moved in. */
static int
envoy_reload(struct proxy *p, char *err, size_t errlen)
{
	return install(p, err, errlen);
}

/* What applyd can vouch for: the files it installed are all in place. */
static int
envoy_running(struct proxy *p)
{
	char path[PATH_MAX];
	int i;

	for (i = 0; p->installed && i < NFILES; i++) {
		envoy_path(p, i, path, sizeof(path));
		if (access(path, F_OK) == -1) {
			log_warnx("%s is gone; writing it again", path);
			p->installed = 0;
		}
	}
	return p->installed;
}

/* Files installed by an earlier applyd are written again, being unknown. */
static int
envoy_adopt(struct proxy *p)
{
	(void)p;
	return -1;
}

/* No child of ours is Envoy. */
static void
envoy_reaped(struct proxy *p, pid_t pid, int status)
{
	(void)p;
	(void)pid;
	(void)status;
}

/* The files stay: an Envoy that reads them keeps serving. */
static void
envoy_stop(struct proxy *p)
{
	if (p->installed)
		log_info("Envoy's files stay in place for %s",
		    p->pc->name);
	p->installed = 0;
}

const struct proxy_ops envoy_ops = {
	"envoy", "applyd's Envoy file check", "envoy", SIGTERM, envoy_init,
	envoy_check, envoy_adopt, envoy_start, envoy_reload, envoy_running,
	envoy_reaped, envoy_stop,
	NULL,	/* files: none before the check; install() writes them after */
	NULL, NULL, NULL,	/* every change is an install */
};
