/*
 * porticoctl status — every daemon asked on its control socket.
 *
 * The daemons expected are those the configuration implies (allocd, a
 * renderd and an applyd per [proxy.NAME], watcherd), and any other
 * <name>.ctl found in the run folder; one that does not answer is a row
 * saying so, and the exit code is 1.  allocd is asked last, so that no
 * one else can be ahead of the seq the lags are counted from.
 *
 * Lag: how many of allocd's seqs a daemon has still to apply.  renderd
 * and watcherd apply every seq; an applyd serves generations, which
 * renderd makes only when the table changes, so an applyd serving its
 * renderd's latest generation is as far along as that renderd.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "event.h"
#include "porticoctl.h"

#define STATUS_MAX_DAEMONS	(2 * CONF_MAX_PROXIES + 16)
#define STATUS_TIMEOUT_MS	3000
#define STATUS_MAX_ANSWER	(1 << 20)

struct row {
	char	 name[96];
	json_t	*st;		/* the answer, or NULL */
	char	 why[128];	/* why there is none */
};

static struct config	conf;

/* Ask <run_dir>/<name>.ctl for its status; the answer, or NULL and why. */
static json_t *
ask(const char *name, char *why, size_t whylen)
{
	struct sockaddr_un sun;
	struct pollfd pfd;
	json_error_t jerr;
	uint64_t deadline = now_ms() + STATUS_TIMEOUT_MS, now;
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	json_t *j = NULL;
	ssize_t n;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s.ctl",
	    conf.run_dir, name) >= sizeof(sun.sun_path)) {
		snprintf(why, whylen, "control socket path too long");
		return NULL;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(why, whylen, "not answering (%s)", strerror(errno));
		if (fd != -1)
			close(fd);
		return NULL;
	}
	if (send(fd, "status\n", 7, MSG_NOSIGNAL) != 7) {
		snprintf(why, whylen, "not answering (%s)", strerror(errno));
		close(fd);
		return NULL;
	}
	for (;;) {
		now = now_ms();
		pfd = (struct pollfd){ fd, POLLIN, 0 };
		if (now >= deadline || poll(&pfd, 1,
		    (int)(deadline - now)) == 0) {
			snprintf(why, whylen, "not answering (no answer in "
			    "%d ms)", STATUS_TIMEOUT_MS);
			goto out;
		}
		if (len + 4096 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > STATUS_MAX_ANSWER ||
			    (nb = realloc(buf, cap)) == NULL) {
				snprintf(why, whylen, "answer too large");
				goto out;
			}
			buf = nb;
		}
		if ((n = read(fd, buf + len, cap - len - 1)) == -1 &&
		    errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(why, whylen, "not answering (%s)",
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (buf == NULL || (j = json_loadb(buf, len, 0, &jerr)) == NULL ||
	    !json_is_object(j)) {
		snprintf(why, whylen, "answered something that is not a "
		    "status");
		json_decref(j);
		j = NULL;
	}
 out:
	free(buf);
	close(fd);
	return j;
}

static int
row_find(struct row *rows, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(rows[i].name, name) == 0)
			return 1;
	return 0;
}

static void
row_add(struct row *rows, size_t *n, const char *name)
{
	if (*n == STATUS_MAX_DAEMONS || row_find(rows, *n, name))
		return;
	memset(&rows[*n], 0, sizeof(rows[*n]));
	snprintf(rows[*n].name, sizeof(rows[*n].name), "%s", name);
	(*n)++;
}

/*
 * Shards started with -s I/N alone ([clusters] shards left at 1): their
 * sockets were found, and the plain watcherd expected is not there.
 */
static size_t
shards_only(struct row *rows, size_t n)
{
	char path[PATH_MAX + 16];
	size_t i, w = n, shards = 0;

	for (i = 0; i < n; i++) {
		if (strcmp(rows[i].name, "watcherd") == 0)
			w = i;
		else if (strncmp(rows[i].name, "watcherd-", 9) == 0)
			shards++;
	}
	snprintf(path, sizeof(path), "%s/watcherd.ctl", conf.run_dir);
	if (w == n || shards == 0 || access(path, F_OK) == 0)
		return n;
	memmove(&rows[w], &rows[w + 1], (n - w - 1) * sizeof(rows[0]));
	return n - 1;
}

/*
 * The daemons: allocd first in the table (asked last), renderd and applyd
 * per proxy, watcherd, then whatever else has a control socket here.
 */
static size_t
rows_expected(struct row *rows)
{
	char name[96];
	struct dirent *de;
	size_t n = 0, i, l;
	DIR *dir;

	row_add(rows, &n, "allocd");
	for (i = 0; i < (size_t)conf.nproxies; i++) {
		snprintf(name, sizeof(name), "renderd-%s",
		    conf.proxies[i].name);
		row_add(rows, &n, name);
		snprintf(name, sizeof(name), "applyd-%s",
		    conf.proxies[i].name);
		row_add(rows, &n, name);
	}
	/* watcherd, or each of its shards (watcherd.8, SHARDS) */
	if (conf.shards == 1)
		row_add(rows, &n, "watcherd");
	for (i = 0; conf.shards > 1 && i < conf.shards; i++) {
		snprintf(name, sizeof(name), "watcherd-%zu", i);
		row_add(rows, &n, name);
	}
	if ((dir = opendir(conf.run_dir)) == NULL)
		return n;
	while ((de = readdir(dir)) != NULL) {
		l = strlen(de->d_name);
		if (l > 4 && l - 4 < sizeof(name) &&
		    strcmp(de->d_name + l - 4, ".ctl") == 0) {
			snprintf(name, sizeof(name), "%.*s", (int)(l - 4),
			    de->d_name);
			row_add(rows, &n, name);
		}
	}
	closedir(dir);
	return shards_only(rows, n);
}

static uint64_t
num(json_t *st, const char *key)
{
	json_t *v = json_object_get(st, key);

	return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static const char *
str(json_t *st, const char *key)
{
	const char *s = json_string_value(json_object_get(st, key));

	return s != NULL ? s : "";
}

static json_t *
row_of(struct row *rows, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(rows[i].name, name) == 0)
			return rows[i].st;
	return NULL;
}

/* How many of allocd's seqs the daemon has to apply; -1 unknown. */
static int64_t
lag(struct row *rows, size_t n, struct row *r, json_t *alloc)
{
	char name[96];
	json_t *rd;
	uint64_t top, seq;

	if (r->st == NULL || alloc == NULL)
		return -1;
	top = num(alloc, "seq");
	if (strcmp(str(r->st, "daemon"), "allocd") == 0)
		return 0;
	seq = num(r->st, "seq");
	if (strcmp(str(r->st, "daemon"), "applyd") == 0) {
		snprintf(name, sizeof(name), "renderd-%s",
		    str(r->st, "proxy"));
		if ((rd = row_of(rows, n, name)) == NULL)
			return -1;
		seq = num(r->st, "gen") == num(rd, "gen") ?
		    num(rd, "seq") : num(r->st, "gen");
	}
	return seq >= top ? 0 : (int64_t)(top - seq);
}

static json_t *
status_json(struct row *rows, size_t n, json_t *alloc)
{
	json_t *out = json_object(), *ds = json_array(), *px = json_array();
	json_t *d, *st;
	char name[96];
	int64_t l;
	size_t i;

	for (i = 0; i < n; i++) {
		d = rows[i].st != NULL ? json_deep_copy(rows[i].st) :
		    json_object();
		json_object_set_new(d, "name", json_string(rows[i].name));
		json_object_set_new(d, "answering",
		    json_boolean(rows[i].st != NULL));
		if (rows[i].st == NULL)
			json_object_set_new(d, "why", json_string(rows[i].why));
		l = lag(rows, n, &rows[i], alloc);
		json_object_set_new(d, "lag", l < 0 ? json_null() :
		    json_integer(l));
		json_array_append_new(ds, d);
	}
	for (i = 0; i < (size_t)conf.nproxies; i++) {
		snprintf(name, sizeof(name), "applyd-%s",
		    conf.proxies[i].name);
		st = row_of(rows, n, name);
		json_array_append_new(px, json_pack("{s:s,s:s,s:o}",
		    "proxy", conf.proxies[i].name,
		    "kind", conf.proxies[i].kind,
		    "gen", st != NULL && num(st, "gen") != 0 ?
		    json_integer((json_int_t)num(st, "gen")) : json_null()));
	}
	json_object_set_new(out, "daemons", ds);
	json_object_set_new(out, "proxies", px);
	return out;
}

/* A number, or "-" for none. */
static const char *
fmt(char *buf, size_t len, int64_t v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%lld", (long long)v);
	return buf;
}

static void
status_table(struct row *rows, size_t n, json_t *alloc)
{
	char seq[24], gen[24], lg[24], note[512];
	const char *err;
	json_t *st;
	size_t i;
	int ready;

	printf("%-24s %-16s %8s %-5s %10s %10s %6s  %s\n", "DAEMON", "VERSION",
	    "PID", "READY", "SEQ", "GEN", "LAG", "LAST ERROR");
	for (i = 0; i < n; i++) {
		if ((st = rows[i].st) == NULL) {
			printf("%-24s %s\n", rows[i].name, rows[i].why);
			continue;
		}
		ready = json_is_true(json_object_get(st, "ready"));
		err = str(st, "error");
		snprintf(note, sizeof(note), "%s%s%s%s", *err ? err : "-",
		    ready ? "" : " (not ready: waiting for ",
		    ready ? "" : str(st, "waiting"), ready ? "" : ")");
		printf("%-24s %-16.16s %8llu %-5s %10s %10s %6s  %s\n",
		    rows[i].name, str(st, "version"),
		    (unsigned long long)num(st, "pid"), ready ? "yes" : "no",
		    fmt(seq, sizeof(seq), (int64_t)num(st, "seq")),
		    fmt(gen, sizeof(gen), num(st, "gen") ?
		    (int64_t)num(st, "gen") : -1),
		    fmt(lg, sizeof(lg), lag(rows, n, &rows[i], alloc)), note);
	}
	printf("\n%-24s %-8s %s\n", "PROXY", "KIND", "SERVES GEN");
	for (i = 0; i < (size_t)conf.nproxies; i++) {
		snprintf(seq, sizeof(seq), "applyd-%s", conf.proxies[i].name);
		st = row_of(rows, n, seq);
		printf("%-24s %-8s %s\n", conf.proxies[i].name,
		    conf.proxies[i].kind, fmt(gen, sizeof(gen), st != NULL &&
		    num(st, "gen") != 0 ? (int64_t)num(st, "gen") : -1));
	}
}

int
cmd_status(struct ctl *c, int argc, char **argv)
{
	static struct row rows[STATUS_MAX_DAEMONS];
	char err[512];
	json_t *alloc;
	size_t n, i;
	int rc = CTL_OK;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: porticoctl [-j] [-f config] status\n");
		return CTL_USAGE;
	}
	if (config_load(c->conf_path, &conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "porticoctl: %s\n", err);
		return CTL_USAGE;
	}
	n = rows_expected(rows);
	for (i = n; i-- > 0;)	/* allocd, the first, asked last */
		if ((rows[i].st = ask(rows[i].name, rows[i].why,
		    sizeof(rows[i].why))) == NULL)
			rc = CTL_USAGE;
	alloc = row_of(rows, n, "allocd");
	if (c->json) {
		if (ctl_print_json(status_json(rows, n, alloc)) == -1)
			rc = CTL_STORE;
	} else
		status_table(rows, n, alloc);
	for (i = 0; i < n; i++)
		json_decref(rows[i].st);
	return rc;
}
