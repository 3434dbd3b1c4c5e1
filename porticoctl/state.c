/*
 * porticoctl log state — the state at a seq, as the file `renderd -T` reads:
 * the decisions renderd applies (API_SET, API_DEL, PORT_SET, PORT_FREE,
 * SNI_SET, SNI_DEL), folded as renderd folds them, then written one
 * standing event a line: each cluster's API_SET by cluster id, each port's
 * PORT_SET by port, each TLSRoute hostname's SNI_SET by host.  So
 * `porticoctl log state --at G | renderd -T /dev/stdin` renders again the
 * configuration of generation G (renderd's generation is the seq of the
 * last decision it applied).  A compacted log starts from the tables its
 * SNAPSHOT saved (their records decoded by store.h).
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
	struct event	*sni;		/* sorted by host */
	size_t		 nsni;
	size_t		 capsni;
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

/* Where host's SNI_SET is in f->sni, or goes (*found 0). */
static size_t
sni_find(const struct fold *f, const char *host, int *found)
{
	size_t lo = 0, hi = f->nsni, mid;
	int c;

	*found = 0;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if ((c = strcmp(f->sni[mid].host, host)) == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
fold_sni(struct fold *f, const struct event *ev)
{
	struct event *s;
	size_t i, cap;
	int found;

	i = sni_find(f, ev->host, &found);
	if (found) {
		event_free(&f->sni[i]);
		if (ev->type == EV_SNI_SET)
			return event_copy(&f->sni[i], ev);
		memmove(&f->sni[i], &f->sni[i + 1],
		    (f->nsni - i - 1) * sizeof(*f->sni));
		f->nsni--;
		return 0;
	}
	if (ev->type == EV_SNI_DEL)
		return 0;
	if (f->nsni == f->capsni) {
		cap = f->capsni ? f->capsni * 2 : 16;
		if ((s = reallocarray(f->sni, cap, sizeof(*s))) == NULL)
			return -1;
		f->sni = s;
		f->capsni = cap;
	}
	memmove(&f->sni[i + 1], &f->sni[i], (f->nsni - i) * sizeof(*f->sni));
	f->nsni++;
	return event_copy(&f->sni[i], ev);
}

static int
fold_one(struct ctl *c, const struct event *ev, void *arg)
{
	(void)c;
	switch (ev->type) {
	case EV_SNI_SET:
	case EV_SNI_DEL:
		return fold_sni(arg, ev);
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
	for (i = 0; i < f->nsni; i++)
		if (ctl_print_json(event_json(&f->sni[i])) == -1)
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
	for (i = 0; i < f->nsni; i++)
		event_free(&f->sni[i]);
	free(f->sni);
	free(f);
}

/*
 * One record of snap, tagged by its table's letter: a cluster that is up
 * gives its API_SET, an owner holding a port its PORT_SET, a TLSRoute
 * hostname held (meta "sni/<owner>") its SNI_SET (what
 * alloc_state() gives a consumer from the live tables); 0 for anything
 * else, -1 if the record is not what allocd writes.
 */
static int
snap_event(const MDB_val *key, const MDB_val *val, struct event *ev)
{
	const size_t plen = strlen(STORE_META_SNI);
	struct cluster_rec crec;
	struct owner_rec orec;
	MDB_val rest;
	uint64_t seen;
	char err[256];
	int want;

	if (key->mv_size < 1)
		return -1;
	switch (*(const char *)key->mv_data) {
	case 'c':
		if (store_cluster_decode(val, &crec, &rest) == -1)
			return -1;
		if (!crec.up || rest.mv_size == 0)
			return 0;
		want = EV_API_SET;
		break;
	case 'o':
		if (store_owner_decode(val, &orec, &rest) == -1)
			return -1;
		if (orec.state != OWN_ACTIVE)
			return 0;
		want = EV_PORT_SET;
		break;
	case 'm':
		if (key->mv_size <= 1 + plen || memcmp((const char *)
		    key->mv_data + 1, STORE_META_SNI, plen) != 0)
			return 0;
		if (store_sni_decode(val, &seen, &rest) == -1)
			return -1;
		want = EV_SNI_SET;
		break;
	default:
		return 0;
	}
	if (event_decode(ev, rest.mv_data, rest.mv_size, err,
	    sizeof(err)) == -1) {
		log_warnx("snapshot: a %s record: %s", want == EV_API_SET ?
		    "cluster" : want == EV_SNI_SET ? "hostname" : "owner", err);
		return -1;
	}
	if (ev->type != want) {
		/* a hostname refused is kept as its SNI_ROUTE: not state */
		int r = want == EV_SNI_SET && ev->type == EV_SNI_ROUTE ? 0 : -1;

		event_free(ev);
		return r;
	}
	return 1;
}

/* The state the compaction saved beside its SNAPSHOT record, folded. */
static int
fold_snapshot(struct ctl *c, struct fold *f)
{
	MDB_cursor *cur;
	MDB_val key, val;
	struct event ev;
	int rc, op, r = 0;

	if ((rc = mdb_cursor_open(c->txn, store_snap(&c->st, c->txn, 0),
	    &cur)) != 0)
		return rc;
	for (op = MDB_FIRST; r == 0 && (rc = mdb_cursor_get(cur, &key, &val,
	    op)) == 0; op = MDB_NEXT) {
		if ((r = snap_event(&key, &val, &ev)) == -1) {
			c->bad++;
			r = 0;
			continue;
		}
		if (r == 1) {
			r = fold_one(c, &ev, f);
			event_free(&ev);
		}
	}
	mdb_cursor_close(cur);
	if (r == -1)
		return -1;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Can the log say what the state was at seq?  From its start on: a
 * compacted log starts with a SNAPSHOT whose tables (store_snap()) are the
 * state there; *snapped says so.  Records before it, left over while a
 * compaction deletes them, count as compacted away.
 */
static int
state_reachable(struct ctl *c, uint64_t at, int *snapped)
{
	uint64_t first = store_start_seq(&c->st, c->txn);
	uint64_t last = store_last_seq(&c->st, c->txn);
	uint64_t snap;

	*snapped = store_get_u64(&c->st, c->txn, STORE_META_SNAPSHOT,
	    &snap) == 0 && snap == first;
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
	if (first > 1 && !*snapped) {
		fprintf(stderr, "porticoctl: the log starts at seq %llu "
		    "without the snapshot of that seq\n",
		    (unsigned long long)first);
		return CTL_STORE;
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
	int ch, rc, have = 0, snapped;

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
	    (rc = state_reachable(c, at, &snapped)) != CTL_OK)
		return rc;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		fatal("state");
	if ((snapped && (rc = fold_snapshot(c, f)) != 0) ||
	    (rc = ctl_walk(c, store_start_seq(&c->st, c->txn), at, fold_one,
	    f)) != 0) {
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
