/*
 * bench_tick — the TICK that hands out a port with 70,000 owners waiting,
 * and the first look for a waiting owner after a start (issue 12).
 *
 * The allocator itself (alloc_observe in LMDB write transactions, every
 * commit durable), without the bus: 30,768 ports (2000-32767, as in
 * bench_alloc) and 100,000 owners of one cluster, so 69,232 wait.  No
 * quarantine, so that a port let go is free at once: each round, a holder
 * goes, a look says a TICK is due, and the TICK gives the port to the
 * first owner waiting (then finds no port for the next).
 *
 *	bench_tick WORKDIR
 *
 * prints JSON lines like bench_alloc: tick_first_look (the look after a
 * start, nothing remembered), then the medians over ROUNDS of tick_look,
 * tick_decide (the TICK's decisions in its transaction) and tick_commit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../allocd/alloc.h"
#include "../../allocd/proof.h"
#include "log.h"

#define OWNERS	100000
#define BATCH	4096
#define ROUNDS	9

static struct store	st;
static struct config	conf;
static struct alloc	al;
static uint64_t		now = 1700000000000ULL;
static double		decide_ms, commit_ms;

static void
emit(const char *metric, double v, const char *unit)
{
	printf("{\"bench\": \"tick\", \"metric\": \"%s\", \"value\": %g, "
	    "\"unit\": \"%s\"}\n", metric, v, unit);
	fflush(stdout);
}

/* The events in one write transaction, committed: how long each took. */
static void
observe(struct event *ev, size_t n)
{
	MDB_txn *txn;
	uint64_t t0 = clock_us(CLOCK_MONOTONIC), t1;
	size_t i;
	int rc;

	alloc_clear(&al);
	if (store_begin(&st, &txn, 0) != 0)
		fatalx("begin");
	for (i = 0; i < n; i++)
		if ((rc = alloc_observe(&al, txn, &ev[i])) != 0 && rc != 1)
			fatalx("observe: %s", mdb_strerror(rc));
	t1 = clock_us(CLOCK_MONOTONIC);
	if (mdb_txn_commit(txn) != 0)
		fatalx("commit");
	decide_ms = (double)(t1 - t0) / 1000.0;
	commit_ms = (double)(clock_us(CLOCK_MONOTONIC) - t1) / 1000.0;
	alloc_clear(&al);
}

static void
route(struct event *ev, int type, int i)
{
	char name[32];

	event_init(ev, type);
	snprintf(name, sizeof(name), "r%06d", i);
	if (event_set_str(ev, F_CLUSTER, "c1") == -1 ||
	    event_set_str(ev, F_NS, "default") == -1 ||
	    event_set_str(ev, F_NAME, name) == -1)
		fatalx("route");
	ev->route = 1;
	ev->has |= F_ROUTE;
	ev->time = now;
	if (type == EV_ROUTE && event_add_backend(ev, "10.0.0.1", 30080, 1))
		fatalx("route");
}

/* Would a TICK hand out a port now?  How long the look took. */
static double
look(int *due)
{
	MDB_txn *txn;
	uint64_t t0;

	if (store_begin(&st, &txn, 1) != 0)
		fatalx("begin");
	t0 = clock_us(CLOCK_MONOTONIC);
	*due = alloc_tick_due(&al, txn, now);
	t0 = clock_us(CLOCK_MONOTONIC) - t0;
	mdb_txn_abort(txn);
	return (double)t0 / 1000.0;
}

static int
cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

static double
median(double *v)
{
	qsort(v, ROUNDS, sizeof(*v), cmp);
	return v[ROUNDS / 2];
}

int
main(int argc, char **argv)
{
	static struct event batch[BATCH];
	double looks[ROUNDS], decides[ROUNDS], commits[ROUNDS];
	struct event ev;
	size_t i, k, j;
	int due, r;

	if (argc != 2) {
		fprintf(stderr, "usage: bench_tick WORKDIR\n");
		return 1;
	}
	log_init("bench_tick", 1, 0);
	conf.ports.n = 1;
	conf.ports.r[0].lo = conf.port_lo = 2000;
	conf.ports.r[0].hi = conf.port_hi = 32767;
	conf.api_port = 1500;
	conf.quarantine = 0;
	conf.nproxies = 1;
	snprintf(conf.proxies[0].name, sizeof(conf.proxies[0].name),
	    "haproxy");
	snprintf(conf.proxies[0].kind, sizeof(conf.proxies[0].kind),
	    "haproxy");
	proof_set_key("a key of thirty-two bytes, or so", 32);
	if (store_open(&st, argv[1], (size_t)4096 << 20, 0) != 0)
		fatalx("store");
	alloc_init(&al, &st, &conf, 0);

	event_init(&ev, EV_CLUSTER_UP);
	if (event_set_str(&ev, F_CLUSTER, "c1") == -1 ||
	    event_set_str(&ev, F_CNAME, "prod") == -1 ||
	    event_set_str(&ev, F_HOST, "api.c1.example.com") == -1)
		fatalx("cluster");
	snprintf(ev.masters[0], sizeof(ev.masters[0]), "10.1.0.1");
	ev.nmasters = 1;
	ev.mport = 8443;
	ev.has |= F_MASTERS | F_MPORT;
	ev.time = now;
	observe(&ev, 1);
	event_free(&ev);
	for (i = 0; i < OWNERS; i += k) {
		for (k = 0; k < BATCH && i + k < OWNERS; k++)
			route(&batch[k], EV_ROUTE, (int)(i + k));
		observe(batch, k);
		for (j = 0; j < k; j++)
			event_free(&batch[j]);
	}

	/* as after a start: nothing remembered about the set */
	alloc_free(&al);
	alloc_init(&al, &st, &conf, al.seq);
	emit("tick_waiting_owners", OWNERS - 30768, "owners");
	emit("tick_first_look", look(&due), "ms");
	if (due)
		fatalx("a TICK due with every port held");

	for (r = 0; r < ROUNDS; r++) {
		/* a holder goes: with no quarantine, its port is free */
		now += 1000;
		route(&ev, EV_ROUTE_GONE, r);
		ev.time = now;
		observe(&ev, 1);
		event_free(&ev);
		looks[r] = look(&due);
		if (!due)
			fatalx("no TICK due with a port free");
		event_init(&ev, EV_TICK);
		ev.time = now;
		observe(&ev, 1);
		decides[r] = decide_ms;
		commits[r] = commit_ms;
	}
	emit("tick_look_p50", median(looks), "ms");
	emit("tick_decide_p50", median(decides), "ms");
	emit("tick_commit_p50", median(commits), "ms");
	alloc_free(&al);
	store_close(&st);
	return 0;
}
