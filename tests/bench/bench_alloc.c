/*
 * bench_alloc — allocd under load, through its real socket and its real,
 * fsynced LMDB store.  Prints JSON lines:
 *	{"bench": "alloc", "metric": "...", "value": N, "unit": "..."}
 *
 *	bench_alloc ALLOCD WORKDIR
 *
 * 1. throughput: OWNERS owners observed ROUNDS times, each observation
 *    with new backends, so each one causes a decision; at most WINDOW
 *    unacknowledged at a time.
 * 2. decision latency at a steady RATE: from the send of an observation to
 *    the ACK that covers it (the ACK comes after the durable commit).  The
 *    client sends what is due each millisecond and sleeps in between.
 * 3. start-up: allocd restarted on that store; time to its pid file, RSS;
 *    then again with WAITERS more owners, who find the ports full and
 *    wait (100,000 owners in all), and allocd's CPU while idle with them
 *    (it looks once a second whether a waiter can have a port).
 * 4. a compaction at 100,000 owners, under churn paced at GAP_RATE: the
 *    longest gap between two ACKs while observations were waiting (every
 *    observation causes a decision), and the ACK latency through it.
 * 5. a consumer's SINCE 0 answered with the whole state of the 100,000
 *    owners (the log was compacted past it) while churn is paced at
 *    GAP_RATE: the longest gap between two ACKs meanwhile, and how long
 *    the state took to arrive.
 * 6. churn: CHURN expose/unexpose observations under the default
 *    compaction policy; ACK latency through it (compactions included), the
 *    store's size and the log's length after.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "event.h"
#include "log.h"
#include "store.h"

#define OWNERS	30000
#define ROUNDS	6
#define WINDOW	20000
#define RATE	50000		/* obs/s, the target */
#define PACED	(RATE * 3)
#define CHURN	1000000
#define CHURN_OWNERS 2000
#define WAITERS	70000		/* owners beyond the ports: 100,000 in all */
#define IDLE_S	5
#define GAP_RATE 20000		/* obs/s while a compaction is timed */
#define GAP_CHUNKS 60		/* at most, of one second each */

static const char	*allocd, *work;
static char		 conf[600], pidfile[600], logfile[600];
static uint64_t		*sent_at;	/* by seq */
static double		*lat;
static size_t		 nlat;
static uint64_t		 last_ack_us;	/* when the last ACK came */
static double		 gap_max;	/* ms, between ACKs, work waiting */

static void
emit(const char *metric, double value, const char *unit)
{
	printf("{\"bench\": \"alloc\", \"metric\": \"%s\", \"value\": %.6g, "
	    "\"unit\": \"%s\"}\n", metric, value, unit);
	fflush(stdout);
}

static pid_t
start_allocd(double *ms)
{
	uint64_t t0 = clock_us(CLOCK_MONOTONIC);
	struct stat st;
	pid_t pid;

	unlink(pidfile);
	if ((pid = fork()) == 0) {
		int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd == -1 || dup2(fd, 2) == -1)
			_exit(126);
		execl(allocd, "allocd", "-d", "-f", conf, (char *)NULL);
		_exit(127);
	}
	while (stat(pidfile, &st) == -1) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			fatalx("allocd exited at start");
		usleep(200);
	}
	*ms = (double)(clock_us(CLOCK_MONOTONIC) - t0) / 1000.0;
	return pid;
}

static void
stop_allocd(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

static long
rss_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	long kb = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, field, strlen(field)) == 0)
			kb = strtol(line + strlen(field) + 1, NULL, 10);
	fclose(fp);
	return kb;
}

static void
route(struct event *ev, uint64_t seq, unsigned owner, unsigned bport,
    int gone)
{
	char name[32];

	event_init(ev, gone ? EV_ROUTE_GONE : EV_ROUTE);
	ev->seq = seq;
	event_set_str(ev, F_CLUSTER, "bench");
	event_set_str(ev, F_NS, "ns");
	snprintf(name, sizeof(name), "vs-%u", owner);
	event_set_str(ev, F_NAME, name);
	ev->has |= F_ROUTE;
	if (!gone) {
		event_add_backend(ev, "10.0.0.1", bport, 1);
		event_add_backend(ev, "10.0.0.2", bport, 1);
	}
}

/* Wait for ACKs; record latencies of what they cover. */
static uint64_t
drain(void *s, uint64_t acked, uint64_t upto, uint64_t sent, int block)
{
	zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
	struct event ev;
	uint64_t t, q;

	while (acked < upto) {
		if (zmq_poll(&it, 1, block ? 10000 : 0) <= 0) {
			if (block)
				fatalx("no ACK in 10 s (acked %llu of %llu)",
				    (unsigned long long)acked,
				    (unsigned long long)sent);
			return acked;
		}
		while (bus_recv(s, &ev, NULL) == 1) {
			if (ev.type == EV_ACK && ev.seq > acked) {
				t = clock_us(CLOCK_MONOTONIC);
				/* sent and unacknowledged all along */
				if (last_ack_us != 0 && acked < sent &&
				    (double)(t - last_ack_us) / 1000.0 >
				    gap_max)
					gap_max = (double)(t - last_ack_us) /
					    1000.0;
				last_ack_us = t;
				for (q = acked + 1; q <= ev.seq; q++)
					if (lat != NULL)
						lat[nlat++] = (double)(t -
						    sent_at[q]) / 1000.0;
				acked = ev.seq;
			}
			event_free(&ev);
		}
		block = block || acked < upto;
	}
	return acked;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Send n observations made by make(i), at most rate a second (0: as fast
 * as the window allows); returns seconds taken.
 */
static double
run(void *s, uint64_t *seq, size_t n, unsigned rate,
    void (*make)(struct event *, uint64_t, size_t))
{
	uint64_t base = *seq, acked = *seq, t0 = clock_us(CLOCK_MONOTONIC);
	zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
	struct event ev;
	size_t i;

	for (i = 0; i < n; i++) {
		/*
		 * Paced: what is due is sent at once, and the client sleeps
		 * on the socket (1 ms at most) in between, rather than spin
		 * on a core that allocd needs on this two-core machine.
		 */
		while (rate != 0 && clock_us(CLOCK_MONOTONIC) - t0 <
		    (uint64_t)i * 1000000 / rate) {
			zmq_poll(&it, 1, 1);
			acked = drain(s, acked, *seq, *seq, 0);
		}
		while (*seq - acked >= WINDOW)
			acked = drain(s, acked, *seq - WINDOW / 2, *seq, 1);
		make(&ev, ++*seq, i);
		if (sent_at != NULL && *seq - base < (uint64_t)n + 1)
			sent_at[*seq] = clock_us(CLOCK_MONOTONIC);
		while (bus_send(s, &ev) == -1)
			acked = drain(s, acked, acked + 1, *seq, 1);
		event_free(&ev);
		if ((i & 1023) == 0)
			acked = drain(s, acked, *seq, *seq, 0);
	}
	drain(s, acked, *seq, *seq, 1);
	return (double)(clock_us(CLOCK_MONOTONIC) - t0) / 1e6;
}

static void
make_load(struct event *ev, uint64_t seq, size_t i)
{
	route(ev, seq, (unsigned)(i % OWNERS), 30000 + (unsigned)(i / OWNERS),
	    0);
}

/*
 * Each owner's backends move on from where make_load() left them: every
 * one of these causes a decision (a PORT_SET with the new backends).
 */
static void
make_change(struct event *ev, uint64_t seq, size_t i)
{
	route(ev, seq, (unsigned)(i % OWNERS), 30001 + (unsigned)(i / OWNERS),
	    0);
}

/* SYNC_BEGIN, SYNC_END: the bench cluster, resynced with nothing in it. */
static void
make_sync(struct event *ev, uint64_t seq, size_t i)
{
	event_init(ev, i == 0 ? EV_SYNC_BEGIN : EV_SYNC_END);
	ev->seq = seq;
	event_set_str(ev, F_CLUSTER, "bench");
	ev->sid = 1;
	ev->has |= F_SID;
}

static void
make_waiters(struct event *ev, uint64_t seq, size_t i)
{
	route(ev, seq, OWNERS + (unsigned)i, 30000, 0);
}

/* CPU seconds (user + system) the process has used. */
static double
cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, stime = 0;
	FILE *fp;
	int i;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), fp) == NULL || (p = strrchr(buf, ')')) ==
	    NULL) {
		fclose(fp);
		return -1;
	}
	fclose(fp);
	/* fields 14 and 15, counted after the command's closing paren */
	for (i = 3; i < 14 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %lu %lu", &ut, &stime) != 2)
		return -1;
	return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Records in the store's log, read the way any reader would. */
static double
log_records(const char *store)
{
	struct store st;
	MDB_txn *txn;
	MDB_stat ms;

	if (store_open(&st, store, 1 << 30, 1) == -1)
		return -1;
	if (store_begin(&st, &txn, 1) != 0 ||
	    mdb_stat(txn, st.log, &ms) != 0)
		fatalx("bench: stat the log");
	mdb_txn_abort(txn);
	store_close(&st);
	return (double)ms.ms_entries;
}

/* The longest compaction allocd logged, in ms; how many it logged. */
static double
compactions(double *longest)
{
	char line[512], *p;
	double n = 0, ms;
	FILE *fp;

	*longest = 0;
	if ((fp = fopen(logfile, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if ((p = strstr(line, "compacted the log")) != NULL &&
		    (p = strstr(p, " dropped in ")) != NULL &&
		    sscanf(p, " dropped in %lf ms", &ms) == 1) {
			n++;
			if (ms > *longest)
				*longest = ms;
		}
	fclose(fp);
	return n;
}

static double
file_mb(const char *store)
{
	char path[600];
	struct stat st;

	snprintf(path, sizeof(path), "%s/data.mdb", store);
	return stat(path, &st) == 0 ? (double)st.st_size / 1048576.0 : -1;
}

static void
make_churn(struct event *ev, uint64_t seq, size_t i)
{
	/* each owner exposed, then gone, then back: two decisions a pair */
	route(ev, seq, (unsigned)((i / 2) % CHURN_OWNERS), 30000, (int)(i & 1));
}

/*
 * Churn paced at GAP_RATE, one second at a time, until allocd has logged
 * one more compaction than before (and one second more): the longest gap
 * between decisions, and their latency, across it.
 */
static void
compaction_gap(const char *ep)
{
	uint64_t seq = 0;
	double longest;
	size_t i, n = (size_t)GAP_RATE * GAP_CHUNKS;
	int before = (int)compactions(&longest), after = 0;
	void *s;

	if ((sent_at = calloc(n + 2, sizeof(*sent_at))) == NULL ||
	    (lat = calloc(n + 2, sizeof(*lat))) == NULL)
		fatal("bench");
	s = bus_socket(ZMQ_DEALER);
	bus_connect(s, ep);
	nlat = 0;
	gap_max = 0;
	last_ack_us = 0;
	for (i = 0; i < GAP_CHUNKS && after < 2; i++) {
		run(s, &seq, GAP_RATE, GAP_RATE, make_churn);
		/* the gap between chunks is the client's, not allocd's */
		last_ack_us = 0;
		if (after > 0 || (int)compactions(&longest) > before)
			after++;
	}
	if (after == 0)
		fatalx("no compaction in %d s of churn", GAP_CHUNKS);
	emit("compaction_gap_rate", GAP_RATE, "obs/s");
	emit("compaction_gap_seconds", (double)i, "s");
	emit("compaction_decision_gap_max", gap_max, "ms");
	qsort(lat, nlat, sizeof(*lat), cmp);
	emit("compaction_decision_latency_p50", lat[nlat / 2], "ms");
	emit("compaction_decision_latency_p99", lat[nlat * 99 / 100], "ms");
	emit("compaction_decision_latency_max", lat[nlat - 1], "ms");
	bus_close(s);
	free(sent_at);
	free(lat);
	sent_at = NULL;
	lat = NULL;
}

/* The consumer asking SINCE 0 of allocd, on a thread of its own. */
struct since {
	char		 ep[600];
	uint64_t	 t0, t1;	/* µs: asked, SINCE_END */
	size_t		 n;		/* events between STATE and SINCE_END */
	int		 state;		/* STATE came */
	int		 asks;
	_Atomic int	 done;
};

static void *
since_thread(void *arg)
{
	struct since *sc = arg;
	zmq_pollitem_t it;
	struct event ev;
	void *s;

	s = bus_socket(ZMQ_DEALER);
	bus_connect(s, sc->ep);
	sc->t0 = clock_us(CLOCK_MONOTONIC);
	it.socket = s;
	it.events = ZMQ_POLLIN;
	while (!sc->done) {
		/* asked, and asked again after a silence, as bus.c does */
		if (sc->asks == 0 || zmq_poll(&it, 1, BUS_SYNC_TIMEOUT_MS) <=
		    0) {
			if (sc->asks++ == 5)
				fatalx("bench: SINCE unanswered");
			event_init(&ev, EV_SINCE);
			ev.seq = 0;
			sc->n = 0;
			if (bus_send(s, &ev) == -1)
				fatalx("bench: SINCE");
			continue;
		}
		while (!sc->done && bus_recv(s, &ev, NULL) == 1) {
			if (ev.type == EV_STATE)
				sc->state = 1;
			else if (ev.type == EV_SINCE_END) {
				sc->t1 = clock_us(CLOCK_MONOTONIC);
				sc->done = 1;
			} else
				sc->n++;
			event_free(&ev);
		}
	}
	bus_close(s);
	return NULL;
}

/*
 * While a consumer that asked SINCE 0 is given the whole state (the log
 * was compacted past 0), churn paced at GAP_RATE: the longest gap between
 * decisions, and how long the state took.
 */
static void
since_state_gap(const char *in_ep, const char *sync_ep)
{
	struct since sc;
	pthread_t th;
	uint64_t seq = 0;
	int i;
	void *s;

	memset(&sc, 0, sizeof(sc));
	snprintf(sc.ep, sizeof(sc.ep), "%s", sync_ep);
	s = bus_socket(ZMQ_DEALER);
	bus_connect(s, in_ep);
	gap_max = 0;
	last_ack_us = 0;
	/* a tenth of a second of churn first: ACKs flow when it is asked */
	run(s, &seq, GAP_RATE / 10, GAP_RATE, make_churn);
	if (pthread_create(&th, NULL, since_thread, &sc) != 0)
		fatalx("bench: thread");
	for (i = 0; i < GAP_CHUNKS && !sc.done; i++) {
		run(s, &seq, GAP_RATE / 10, GAP_RATE, make_churn);
		last_ack_us = 0;
	}
	pthread_join(th, NULL);
	if (!sc.state)
		fatalx("bench: SINCE 0 was not answered with the state");
	emit("since_state_events", (double)sc.n, "events");
	emit("since_state_time", (double)(sc.t1 - sc.t0) / 1000.0, "ms");
	emit("since_state_asks", (double)sc.asks, "SINCE");
	emit("since_state_decision_gap_max", gap_max, "ms");
	bus_close(s);
}

int
main(int argc, char **argv)
{
	char run_dir[256], store[256], ep[600], sync_ep[600];
	uint64_t seq = 0;
	double secs, ms, cpu;
	FILE *fp;
	void *s;
	pid_t pid;
	size_t n = (size_t)OWNERS * ROUNDS;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_alloc ALLOCD WORKDIR\n");
		return 1;
	}
	log_init("bench_alloc", 1, 0);
	allocd = argv[1];
	if (strlen(argv[2]) > 200)
		fatalx("WORKDIR too long");
	work = argv[2];
	snprintf(run_dir, sizeof(run_dir), "%s/run", work);
	snprintf(store, sizeof(store), "%s/store", work);
	snprintf(conf, sizeof(conf), "%s/portico.conf", work);
	snprintf(pidfile, sizeof(pidfile), "%s/allocd.pid", run_dir);
	snprintf(logfile, sizeof(logfile), "%s/allocd.log", work);
	if ((fp = fopen(conf, "w")) == NULL)
		fatal("%s", conf);
	/*
	 * 30,768 ports: below the kernel's ephemeral range, which allocd
	 * refuses unless the kernel reserves it.
	 */
	fprintf(fp, "[portico]\ndomain = bench.test\nrun_dir = %s\n"
	    "listen = 127.0.0.1\napi_port = 1500\nports = 2000-32767\n"
	    "[store]\npath = %s\n[kubeconfigs]\ndir = %s\n"
	    /* one cluster holds every owner: no per-cluster quota here */
	    "[limits]\nroutes_per_cluster = 0\nports_per_cluster = 0\n"
	    "backends_per_cluster = 0\nbytes_per_cluster = 0\n"
	    "bytes_total = 0\n", run_dir, store,
	    work);
	fclose(fp);

	pid = start_allocd(&ms);
	s = bus_socket(ZMQ_DEALER);
	snprintf(ep, sizeof(ep), "ipc://%s/alloc.in", run_dir);
	bus_connect(s, ep);
	/* a new store waits for its clusters' resync: this is the one */
	run(s, &seq, 2, 0, make_sync);
	seq = 0;		/* what is measured from 1: sent_at[] */
	if ((sent_at = calloc(n + 2, sizeof(*sent_at))) == NULL ||
	    (lat = calloc(n + 2, sizeof(*lat))) == NULL)
		fatal("bench");

	cpu = cpu_s(pid);
	secs = run(s, &seq, n - PACED, 0, make_load);
	emit("durable_observations_per_s", (double)(n - PACED) / secs,
	    "obs/s");
	emit("allocd_cpu_per_1000_obs", (cpu_s(pid) - cpu) * 1e6 /
	    (double)(n - PACED), "ms");
	nlat = 0;
	secs = run(s, &seq, PACED, RATE, make_change);
	emit("paced_rate", (double)PACED / secs, "obs/s");
	qsort(lat, nlat, sizeof(*lat), cmp);
	emit("decision_latency_p50", lat[nlat / 2], "ms");
	emit("decision_latency_p99", lat[nlat * 99 / 100], "ms");
	emit("assignments", OWNERS, "owners");
	emit("allocd_peak_rss_under_load", (double)rss_kb(pid, "VmHWM:") /
	    1024.0, "MB");
	stop_allocd(pid);
	if (getenv("BENCH_ALLOC_LATENCY_ONLY") != NULL) {
		/* the two first phases alone: to compare builds quickly */
		bus_close(s);
		zmq_ctx_term(bus_ctx());
		return 0;
	}

	pid = start_allocd(&ms);
	emit("startup_time_with_assignments", ms, "ms");
	emit("startup_rss_with_assignments", (double)rss_kb(pid, "VmRSS:") /
	    1024.0, "MB");
	emit("startup_rss_anon_with_assignments", (double)rss_kb(pid,
	    "RssAnon:") / 1024.0, "MB");

	/* a new sender: its seqs start over */
	bus_close(s);
	s = bus_socket(ZMQ_DEALER);
	bus_connect(s, ep);
	free(sent_at);
	free(lat);
	sent_at = NULL;
	lat = NULL;
	seq = 0;
	run(s, &seq, WAITERS, 0, make_waiters);
	stop_allocd(pid);
	pid = start_allocd(&ms);
	emit("owners", OWNERS + WAITERS, "owners");
	emit("startup_time_with_100k_owners", ms, "ms");
	emit("startup_rss_with_100k_owners", (double)rss_kb(pid, "VmRSS:") /
	    1024.0, "MB");
	emit("startup_rss_anon_with_100k_owners", (double)rss_kb(pid,
	    "RssAnon:") / 1024.0, "MB");
	secs = cpu_s(pid);
	sleep(IDLE_S);
	emit("idle_cpu_with_100k_owners", (cpu_s(pid) - secs) / IDLE_S *
	    100.0, "%");
	compaction_gap(ep);
	snprintf(sync_ep, sizeof(sync_ep), "ipc://%s/alloc.sync", run_dir);
	since_state_gap(ep, sync_ep);

	bus_close(s);
	s = bus_socket(ZMQ_DEALER);
	bus_connect(s, ep);
	seq = 0;
	secs = run(s, &seq, CHURN / 2, 0, make_churn);
	emit("store_file_after_half_churn", file_mb(store), "MB");
	secs += run(s, &seq, CHURN / 2, 0, make_churn);
	emit("churn_observations_per_s", CHURN / secs, "obs/s");
	stop_allocd(pid);
	emit("store_file_after_churn", file_mb(store), "MB");
	emit("log_records_after_churn", log_records(store), "records");
	emit("compactions", compactions(&ms), "compactions");
	emit("compaction_longest", ms, "ms");
	emit("churn_events", CHURN, "observations");
	bus_close(s);
	zmq_ctx_term(bus_ctx());
	return 0;
}
