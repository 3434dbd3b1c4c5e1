/*
 * porticoctl — main: global options, the command table, the store.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "porticoctl.h"
#include "valid.h"

#define DEFAULT_CONF	"/etc/portico/portico.conf"

static const struct {
	const char	*word;		/* first word */
	const char	*sub;		/* second word, or NULL */
	int		(*fn)(struct ctl *, int, char **);
} cmds[] = {
	{ "log",	"dump",		cmd_log_dump },
	{ "log",	"state",	cmd_log_state },
	{ "log",	"replay",	cmd_log_replay },
	{ "why",	NULL,		cmd_why },
	{ "clusters",	NULL,		cmd_clusters },
	{ "routes",	NULL,		cmd_routes },
	{ "ports",	NULL,		cmd_ports },
	{ "status",	NULL,		cmd_status },
	{ "keygen",	NULL,		cmd_keygen },
	{ "bus",	"since",	cmd_bus_since },
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: porticoctl [-j] [-f config] command [args] [STORE]\n"
	    "  log dump [--since SEQ] [--until SEQ] [--type T] [--owner O]\n"
	    "  log state --at SEQ\n"
	    "  log replay [--until SEQ]\n"
	    "  why OWNER      (cluster/ns/name/route, or cluster/ns/name)\n"
	    "  clusters\n"
	    "  routes [-c CLUSTER] [-n NAMESPACE]\n"
	    "  ports\n"
	    "  status         every daemon, asked on its control socket\n"
	    "  keygen ROLE [DIR]  a CURVE key pair for ROLE, into [bus] keys\n"
	    "  bus since [--since SEQ] [--proxy NAME]\n"
	    "                 allocd's (or NAME's renderd's) SINCE answer, "
	    "over the bus\n");
}

const struct config *
ctl_config(struct ctl *c, int quiet)
{
	static struct config conf;
	static int tried;
	static char err[512];

	if (!tried) {
		tried = 1;
		if (config_load(c->conf_path, &conf, err, sizeof(err)) == 0)
			c->conf = &conf;
	}
	if (c->conf == NULL && !quiet)
		fprintf(stderr, "porticoctl: %s\n", err);
	return c->conf;
}

int
ctl_open(struct ctl *c, const char *store)
{
	const struct config *conf;
	int rc, nolock;

	if (store == NULL) {
		if ((conf = ctl_config(c, 0)) == NULL)
			return CTL_USAGE;
		store = conf->store;
	}
	if (store_open_reader(&c->st, store, &nolock) == -1)
		return CTL_STORE;
	if (nolock)
		log_warnx("%s: read without LMDB's lock file, which may not "
		    "be written here: safe only while no allocd writes it",
		    store);
	if ((rc = store_begin(&c->st, &c->txn, 1)) != 0) {
		log_warnx("%s: %s", store, mdb_strerror(rc));
		store_close(&c->st);
		return CTL_STORE;
	}
	return CTL_OK;
}

void
ctl_close(struct ctl *c)
{
	if (c->txn != NULL)
		mdb_txn_abort(c->txn);
	c->txn = NULL;
	store_close(&c->st);
}

int
ctl_walk(struct ctl *c, uint64_t since, uint64_t until,
    int (*fn)(struct ctl *, const struct event *, void *), void *arg)
{
	unsigned char k[8];
	char err[256];
	MDB_cursor *cur;
	MDB_val key, val;
	struct event ev;
	uint64_t seq;
	int rc, op, r = 0;

	if ((rc = mdb_cursor_open(c->txn, c->st.log, &cur)) != 0)
		return rc;
	store_key_u64(k, since);
	key.mv_data = k;
	key.mv_size = sizeof(k);
	for (op = MDB_SET_RANGE; (rc = mdb_cursor_get(cur, &key, &val, op))
	    == 0; op = MDB_NEXT) {
		if (key.mv_size != 8) {
			rc = MDB_CORRUPTED;
			break;
		}
		if ((seq = store_u64_key(key.mv_data)) > until)
			break;
		if (event_decode(&ev, val.mv_data, val.mv_size, err,
		    sizeof(err)) == -1) {
			/* the decoder's reasons name fields, not bytes */
			log_warnx("seq %llu: not an event: %s",
			    (unsigned long long)seq, err);
			c->bad++;
			continue;
		}
		r = fn(c, &ev, arg);
		event_free(&ev);
		if (r != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (r == -1)
		return -1;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
ctl_owner_parse(struct ctl_owner *o, const char *s)
{
	char buf[EV_OWNERLEN], *part[5], *p, *tok;
	size_t n = 0, len = strlen(s);

	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len + 1);
	for (p = buf; (tok = strsep(&p, "/")) != NULL; part[n++] = tok)
		if (n == 5)
			return -1;
	if (n < 3 || !valid_cluster_id(part[0]) ||
	    !valid_dns_label(part[1]) || !valid_k8s_name(part[2]))
		return -1;
	if (n >= 4 && (part[3][0] == '\0' || strlen(part[3]) > 19 ||
	    strspn(part[3], "0123456789") != strlen(part[3])))
		return -1;
	/* a route kind but Istio's: "tcp", "tls" */
	if (n == 5 && (!valid_token(part[4]) || strlen(part[4]) > 15))
		return -1;
	memcpy(o->key, s, len + 1);
	o->prefix = n == 3;
	return 0;
}

/*
 * The kind of object an owner key's route comes from: the rk after its
 * route index, or none for an Istio VirtualService.
 */
const char *
ctl_owner_kind(const char *owner)
{
	const char *p = owner;
	int i;

	for (i = 0; i < 4; i++)
		if ((p = strchr(p, '/')) == NULL)
			return "VirtualService";
		else
			p++;
	if (strcmp(p, "tcp") == 0)
		return "TCPRoute";
	if (strcmp(p, "tls") == 0)
		return "TLSRoute";
	return "unknown";
}

int
ctl_event_owner(const struct event *ev, char *buf, size_t len)
{
	const uint32_t need = F_CLUSTER | F_NS | F_NAME | F_ROUTE;

	struct event k;

	if ((ev->has & need) != need)
		return -1;
	switch (ev->type) {
	case EV_SNI_ROUTE:
	case EV_SNI_GONE:
	case EV_SNI_SET:
	case EV_SNI_DEL:
		/* a TLSRoute's hostname: its events leave the kind unsaid */
		k = *ev;
		memcpy(k.rkind, "tls", sizeof("tls"));
		k.has |= F_RKIND;
		return event_owner(&k, buf, len);
	}
	return event_owner(ev, buf, len);
}

int
ctl_owner_match(const struct ctl_owner *o, const struct event *ev)
{
	char key[EV_OWNERLEN];
	size_t n = strlen(o->key);

	if (ctl_event_owner(ev, key, sizeof(key)) == -1)
		return 0;
	if (!o->prefix)
		return strcmp(key, o->key) == 0;
	return strncmp(key, o->key, n) == 0 && key[n] == '/';
}

int
ctl_seq(const char *s, uint64_t *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

const char *
ctl_time(char *buf, size_t len, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL)
		snprintf(buf, len, "?");
	else
		snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
	return buf;
}

int
ctl_print_json(json_t *j)
{
	int rc;

	if (j == NULL)
		return -1;
	rc = json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (rc == -1 || putchar('\n') == EOF)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	struct ctl c;
	size_t i;
	int ch, rc, skip;

	memset(&c, 0, sizeof(c));
	c.conf_path = DEFAULT_CONF;
	log_init("porticoctl", 1, 0);
	while ((ch = getopt(argc, argv, "+f:jh")) != -1) {
		switch (ch) {
		case 'f':
			c.conf_path = optarg;
			break;
		case 'j':
			c.json = 1;
			break;
		default:
			usage();
			return CTL_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	for (i = 0; argc > 0 && i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmds[i].word, argv[0]) != 0)
			continue;
		if (cmds[i].sub != NULL &&
		    (argc < 2 || strcmp(cmds[i].sub, argv[1]) != 0))
			continue;
		skip = cmds[i].sub != NULL ? 1 : 0;
		optind = 1;		/* the command parses from its word */
		rc = cmds[i].fn(&c, argc - skip, argv + skip);
		ctl_close(&c);
		if (fflush(stdout) == EOF) {
			fprintf(stderr, "porticoctl: stdout: %s\n",
			    strerror(errno));
			return CTL_STORE;
		}
		return rc;
	}
	usage();
	return CTL_USAGE;
}
