/*
 * porticoctl log state — the state at a seq, as the file `renderd -T` reads:
 * the decisions renderd applies (API_SET, API_DEL, PORT_SET, PORT_FREE),
 * folded as renderd folds them, then written one standing event a line:
 * each cluster's API_SET by cluster id, each port's PORT_SET by port.  So
 * `porticoctl log state --at G | renderd -T /dev/stdin` renders again the
 * configuration of generation G (renderd's generation is the seq of the
 * last decision it applied).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "porticoctl.h"

struct fold {
	struct event	*api;		/* sorted by cluster id */
	size_t		 napi;
	size_t		 capapi;
	struct event	*ports[65536];
};

/* The API_SET of a cluster, by id: a fleet has hundreds, not millions. */
static struct event *
fold_cluster(struct fold *f, const char *cluster)
{
	size_t i;

	for (i = 0; i < f->napi; i++)
		if (strcmp(f->api[i].cluster, cluster) == 0)
			return &f->api[i];
	return NULL;
}

static int
fold_api(struct fold *f, const struct event *ev)
{
	struct event *a;
	size_t cap;

	if ((a = fold_cluster(f, ev->cluster)) != NULL) {
		event_free(a);
		if (ev->type == EV_API_DEL) {
			/* the last takes its place: order is made at print */
			*a = f->api[--f->napi];
			return 0;
		}
		return event_copy(a, ev);
	}
	if (ev->type == EV_API_DEL)
		return 0;
	if (f->napi == f->capapi) {
		cap = f->capapi ? f->capapi * 2 : 16;
		if ((a = reallocarray(f->api, cap, sizeof(*a))) == NULL)
			return -1;
		f->api = a;
		f->capapi = cap;
	}
	return event_copy(&f->api[f->napi++], ev);
}

static int
cluster_cmp(const void *a, const void *b)
{
	return strcmp(((const struct event *)a)->cluster,
	    ((const struct event *)b)->cluster);
}

static int
fold_port(struct fold *f, const struct event *ev)
{
	struct event *p = f->ports[ev->port & 0xffff];

	if (p != NULL)
		event_free(p);
	free(p);
	f->ports[ev->port & 0xffff] = NULL;
	if (ev->type == EV_PORT_FREE)
		return 0;
	if ((p = malloc(sizeof(*p))) == NULL || event_copy(p, ev) == -1) {
		free(p);
		return -1;
	}
	f->ports[ev->port & 0xffff] = p;
	return 0;
}

static int
fold_one(struct ctl *c, const struct event *ev, void *arg)
{
	(void)c;
	switch (ev->type) {
	case EV_API_SET:
	case EV_API_DEL:
		return fold_api(arg, ev);
	case EV_PORT_SET:
	case EV_PORT_FREE:
		/* a port past 65535 is not decoded: PORT fields are checked */
		return fold_port(arg, ev);
	}
	return 0;
}

static int
fold_print(struct fold *f)
{
	size_t i;

	qsort(f->api, f->napi, sizeof(*f->api), cluster_cmp);
	for (i = 0; i < f->napi; i++)
		if (ctl_print_json(event_json(&f->api[i])) == -1)
			return -1;
	for (i = 0; i < 65536; i++)
		if (f->ports[i] != NULL &&
		    ctl_print_json(event_json(f->ports[i])) == -1)
			return -1;
	return 0;
}

static void
fold_free(struct fold *f)
{
	size_t i;

	for (i = 0; i < f->napi; i++)
		event_free(&f->api[i]);
	free(f->api);
	for (i = 0; i < 65536; i++) {
		if (f->ports[i] != NULL)
			event_free(f->ports[i]);
		free(f->ports[i]);
	}
	free(f);
}

/*
 * Can the log say what the state was at seq?  Only from its first record
 * on, and only if that record is not a compaction's SNAPSHOT: the tables
 * it stands for are allocd's own records, which this tool does not read.
 */
static int
state_reachable(struct ctl *c, uint64_t at)
{
	uint64_t first = store_first_seq(&c->st, c->txn);
	uint64_t last = store_last_seq(&c->st, c->txn);

	if (first == 0) {
		fprintf(stderr, "porticoctl: the log is empty\n");
		return CTL_USAGE;
	}
	if (at < first) {
		fprintf(stderr, "porticoctl: seq %llu is before the log's "
		    "first record (%llu): compacted away\n",
		    (unsigned long long)at, (unsigned long long)first);
		return CTL_USAGE;
	}
	if (at > last) {
		fprintf(stderr, "porticoctl: seq %llu is after the log's last "
		    "record (%llu)\n", (unsigned long long)at,
		    (unsigned long long)last);
		return CTL_USAGE;
	}
	if (first > 1) {
		fprintf(stderr, "porticoctl: the log was compacted at seq "
		    "%llu; a state after it needs the snapshot's tables, "
		    "which porticoctl does not read yet\n",
		    (unsigned long long)first);
		return CTL_USAGE;
	}
	return CTL_OK;
}

int
cmd_log_state(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "at",	required_argument,	NULL, 'a' },
		{ NULL,	0,			NULL, 0 },
	};
	struct fold *f;
	uint64_t at = 0;
	int ch, rc, have = 0;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'a' || ctl_seq(optarg, &at) == -1) {
			fprintf(stderr, "porticoctl: log state --at SEQ\n");
			return CTL_USAGE;
		}
		have = 1;
	}
	if (!have || argc - optind > 1) {
		fprintf(stderr, "porticoctl: log state --at SEQ [STORE]\n");
		return CTL_USAGE;
	}
	if ((rc = ctl_open(c, argv[optind])) != CTL_OK ||
	    (rc = state_reachable(c, at)) != CTL_OK)
		return rc;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		fatal("porticoctl: state");
	if ((rc = ctl_walk(c, 0, at, fold_one, f)) != 0) {
		if (rc == -1)
			log_warnx("out of memory");
		else
			log_warnx("log: %s", mdb_strerror(rc));
		fold_free(f);
		return CTL_STORE;
	}
	rc = c->bad > 0 ? CTL_STORE : CTL_OK;
	if (rc == CTL_OK && fold_print(f) == -1) {
		log_warn("stdout");
		rc = CTL_STORE;
	}
	fold_free(f);
	return rc;
}
