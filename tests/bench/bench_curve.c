/*
 * bench_curve — the bus with CURVE against the bus without, in one run.
 * Prints JSON lines:
 *	{"bench": "curve", "mode": "ipc"|"curve", "metric": "...",
 *	 "value": N, "unit": "..."}
 *
 *	bench_curve BINDIR WORKDIR
 *
 * Two fleets side by side, each a real allocd and a renderd (-p haproxy)
 * on its own store and run folder: "ipc" on the default ipc:// endpoints
 * (NULL mechanism, ZAP checking the peer's uid), "curve" with every
 * endpoint on tcp:// over loopback and keys made by porticoctl keygen.
 * They are measured in turns, so that whatever else the machine runs
 * weighs on both alike.  The bench is a client of the role applyd (which
 * allocd's input and renderd's feed both admit), through common/bus.c and
 * zap.c as the daemons are:
 *
 * 1. handshake: HANDSHAKES new DEALERs to allocd's input, each timed from
 *    connect to the monitor's HANDSHAKE_SUCCEEDED (the connect, the ZMTP
 *    greeting, CURVE's four commands and allocd's ZAP answer from its
 *    loop); p50 and p99.
 * 2. throughput: ROUNDS rounds of OWNERS ROUTE observations sent to
 *    allocd's input (at most WINDOW unacknowledged), each with new
 *    backends, so each is a decision (PORT_SET) that renderd turns into
 *    an RT_PORT on its feed; events/s from the first send to the last
 *    RT_PORT received, each round and the median, and the CPU seconds
 *    allocd and renderd spent on them (every thread, libzmq's I/O
 *    thread and its cryptography included).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "zap.h"

#define OWNERS		5000
#define ROUNDS		11
#define WINDOW		2500
#define HANDSHAKES	200
#define ADDR		"127.0.0.1"

static const char	*bindir, *work;

static void
emit(const char *mode, const char *metric, double value, const char *unit)
{
	printf("{\"bench\": \"curve\", \"mode\": \"%s\", \"metric\": \"%s\", "
	    "\"value\": %.6g, \"unit\": \"%s\"}\n", mode, metric, value, unit);
	fflush(stdout);
}

/* A TCP port on ADDR that nothing listens on now. */
static int
free_port(void)
{
	char ep[64];
	void *s = zmq_socket(bus_ctx(), ZMQ_PAIR);
	size_t len = sizeof(ep);
	int port;

	if (s == NULL || zmq_bind(s, "tcp://" ADDR ":*") == -1 ||
	    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len) == -1)
		fatal("free_port");
	port = atoi(strrchr(ep, ':') + 1);
	zmq_close(s);
	return port;
}

static void
run_cmd(const char *cmd)
{
	if (system(cmd) != 0)
		fatalx("failed: %s", cmd);
}

static pid_t
start(const char *dir, const char *conf, const char *name, const char *pidname,
    const char *arg1, const char *arg2)
{
	char bin[512], pidfile[512], logfile[512];
	struct stat st;
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/%s", bindir, name);
	snprintf(pidfile, sizeof(pidfile), "%s/run/%s.pid", dir, pidname);
	snprintf(logfile, sizeof(logfile), "%s/%s.log", dir, pidname);
	if ((pid = fork()) == 0) {
		int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd == -1 || dup2(fd, 2) == -1)
			_exit(126);
		execl(bin, name, "-d", "-f", conf, arg1, arg2, (char *)NULL);
		_exit(127);
	}
	while (stat(pidfile, &st) == -1) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			fatalx("%s exited at start: see %s", name, logfile);
		usleep(1000);
	}
	return pid;
}

static void
stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* CPU seconds (user + system) the process has used. */
static double
cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void
write_conf(const char *dir, const char *conf, int curve)
{
	FILE *fp;
	int fd;

	if ((fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    (fp = fdopen(fd, "w")) == NULL)
		fatal("%s", conf);
	fprintf(fp, "[portico]\ndomain = bench.test\nrun_dir = %s/run\n"
	    "listen = " ADDR "\nports = 10000-29999\n\n"
	    "[store]\npath = %s/store\n\n[kubeconfigs]\ndir = %s\n\n"
	    "[limits]\nroutes_per_cluster = 0\nports_per_cluster = 0\n"
	    "backends_per_cluster = 0\nbytes_per_cluster = 0\n"
	    "bytes_total = 0\n", dir, dir, dir);
	if (curve) {
		fprintf(fp, "\n[bus]\nkeys = %s/keys\n"
		    "alloc_in = tcp://" ADDR ":%d\n"
		    "alloc_pub = tcp://" ADDR ":%d\n"
		    "alloc_sync = tcp://" ADDR ":%d\n", dir, free_port(),
		    free_port(), free_port());
		fprintf(fp, "\n[proxy.haproxy]\npub = tcp://" ADDR ":%d\n"
		    "sync = tcp://" ADDR ":%d\n", free_port(), free_port());
	}
	if (fclose(fp) == EOF)
		fatal("%s", conf);
}

static void
make_keys(const char *dir)
{
	static const char *roles[] = { "allocd", "watcherd", "renderd",
	    "applyd", "porticoctl" };
	char cmd[1024];
	size_t i;

	snprintf(cmd, sizeof(cmd), "mkdir -m 700 -p %s/keys", dir);
	run_cmd(cmd);
	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s/porticoctl keygen %s %s/keys "
		    ">/dev/null", bindir, roles[i], dir);
		run_cmd(cmd);
	}
}

static void
send_ev(void *s, struct event *ev)
{
	while (bus_send(s, ev) == -1)
		usleep(100);
	event_free(ev);
}

/* The bench cluster: up, and resynced with nothing (allocd holds none). */
static void
cluster(void *in, uint64_t *seq)
{
	struct event ev;
	int i;

	event_init(&ev, EV_CLUSTER_UP);
	ev.seq = ++*seq;
	event_set_str(&ev, F_CLUSTER, "bench");
	event_set_str(&ev, F_CNAME, "bench");
	event_set_str(&ev, F_HOST, "bench.bench.test");
	strcpy(ev.masters[0], "10.0.0.9");
	ev.nmasters = 1;
	ev.mport = 8443;
	ev.has |= F_MASTERS | F_MPORT;
	send_ev(in, &ev);
	for (i = 0; i < 2; i++) {
		event_init(&ev, i == 0 ? EV_SYNC_BEGIN : EV_SYNC_END);
		ev.seq = ++*seq;
		event_set_str(&ev, F_CLUSTER, "bench");
		ev.sid = 1;
		ev.has |= F_SID;
		send_ev(in, &ev);
	}
}

static void
route(struct event *ev, uint64_t seq, unsigned owner, unsigned bport)
{
	char name[32];

	event_init(ev, EV_ROUTE);
	ev->seq = seq;
	ev->time = now_ms();
	event_set_str(ev, F_CLUSTER, "bench");
	event_set_str(ev, F_NS, "ns");
	snprintf(name, sizeof(name), "vs-%u", owner);
	event_set_str(ev, F_NAME, name);
	ev->has |= F_ROUTE;
	event_add_backend(ev, "10.0.0.1", bport, 1);
	event_add_backend(ev, "10.0.0.2", bport, 1);
}

/* Read what is waiting: ACKs from allocd, RT_PORTs (and any RT_API). */
static void
drain(void *in, void *sub, uint64_t *acked, unsigned *ports, int *api,
    int block_ms)
{
	zmq_pollitem_t it[2] = { { in, 0, ZMQ_POLLIN, 0 },
	    { sub, 0, ZMQ_POLLIN, 0 } };
	struct event ev;

	if (zmq_poll(it, 2, block_ms) <= 0)
		return;
	while (bus_recv(in, &ev, NULL) == 1) {
		if (ev.type == EV_ACK && ev.seq > *acked)
			*acked = ev.seq;
		event_free(&ev);
	}
	while (bus_recv(sub, &ev, NULL) == 1) {
		if (ev.type == EV_RT_PORT)
			(*ports)++;
		else if (ev.type == EV_RT_API)
			*api = 1;
		event_free(&ev);
	}
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct fleet {
	const char	*name;
	int		 curve;
	char		 dir[512];
	struct config	 c;
	pid_t		 alloc, rend;
	void		*in, *sub;
	uint64_t	 seq, acked;
	unsigned	 ports;
	int		 api;
	double		 hs[HANDSHAKES];
	double		 evps[ROUNDS];
	double		 cpu_alloc, cpu_rend;
};

/* One handshake with allocd's input: ms from connect to its success. */
static double
handshake(struct fleet *f, int i)
{
	char ep[64];
	zmq_msg_t m;
	uint16_t ev;
	uint64_t t0;
	void *s, *mon;
	double ms;

	s = bus_socket(ZMQ_DEALER);
	snprintf(ep, sizeof(ep), "inproc://bench.mon.%s.%d", f->name, i);
	if (zmq_socket_monitor(s, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
	    ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
	    ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == -1 ||
	    (mon = zmq_socket(bus_ctx(), ZMQ_PAIR)) == NULL ||
	    zmq_connect(mon, ep) == -1)
		fatal("monitor");
	t0 = clock_us(CLOCK_MONOTONIC);
	if (bus_connect(s, f->c.alloc_in) == -1)
		fatalx("connect %s", f->c.alloc_in);
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, mon, 0) == -1 || zmq_msg_size(&m) != 6)
		fatal("monitor event");
	ms = (double)(clock_us(CLOCK_MONOTONIC) - t0) / 1000.0;
	memcpy(&ev, zmq_msg_data(&m), 2);
	zmq_msg_close(&m);
	if (ev != ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
		fatalx("%s: handshake failed (event %u)", f->name, ev);
	bus_close(s);
	zmq_close(mon);
	return ms;
}

static void
fleet_start(struct fleet *f)
{
	char conf[600], err[1024], cmd[600];

	snprintf(f->dir, sizeof(f->dir), "%s/%s", work, f->name);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s", f->dir);
	run_cmd(cmd);
	snprintf(conf, sizeof(conf), "%s/portico.conf", f->dir);
	if (f->curve)
		make_keys(f->dir);
	write_conf(f->dir, conf, f->curve);
	/* the curve fleet's keys are the ones zap.c holds: ipc needs none */
	if (config_load(conf, &f->c, err, sizeof(err)) == -1 ||
	    (f->curve && zap_init(&f->c, "applyd", err, sizeof(err)) == -1))
		fatalx("%s", err);
	f->alloc = start(f->dir, conf, "allocd", "allocd", NULL, NULL);
	f->rend = start(f->dir, conf, "renderd", "renderd-haproxy", "-p",
	    "haproxy");
	f->in = bus_socket(ZMQ_DEALER);
	f->sub = bus_socket(ZMQ_SUB);
	if (bus_connect(f->in, f->c.alloc_in) == -1 ||
	    bus_connect(f->sub, f->c.proxies[0].pub) == -1)
		fatalx("connect");
}

/* The cluster, and renderd's feed reaching us with its API route. */
static void
fleet_ready(struct fleet *f)
{
	uint64_t deadline;

	/* renderd's heartbeat first: our subscription has arrived */
	if (zmq_poll(&(zmq_pollitem_t){ f->sub, 0, ZMQ_POLLIN, 0 }, 1, 60000)
	    != 1)
		fatalx("%s: no heartbeat from renderd in 60 s", f->name);
	cluster(f->in, &f->seq);
	for (deadline = clock_us(CLOCK_MONOTONIC) + 60000000; !f->api; )
		if (clock_us(CLOCK_MONOTONIC) > deadline)
			fatalx("%s: no RT_API from renderd in 60 s", f->name);
		else
			drain(f->in, f->sub, &f->acked, &f->ports, &f->api,
			    100);
}

/*
 * Round r: every owner observed with backends on port 30000 + r, a new
 * decision each, until renderd has published every RT_PORT they cause.
 */
static void
fleet_round(struct fleet *f, int r)
{
	uint64_t t0, deadline;
	double ca = cpu_s(f->alloc), cr = cpu_s(f->rend);
	unsigned i, want = f->ports + OWNERS;
	struct event ev;

	t0 = clock_us(CLOCK_MONOTONIC);
	for (i = 0; i < OWNERS; i++) {
		while (f->seq - f->acked >= WINDOW)
			drain(f->in, f->sub, &f->acked, &f->ports, &f->api,
			    10);
		route(&ev, ++f->seq, i, 30000 + (unsigned)r);
		send_ev(f->in, &ev);
		if ((i & 255) == 0)
			drain(f->in, f->sub, &f->acked, &f->ports, &f->api,
			    0);
	}
	deadline = clock_us(CLOCK_MONOTONIC) + 120000000;
	while (f->ports < want)
		if (clock_us(CLOCK_MONOTONIC) > deadline)
			fatalx("%s: %u of %u RT_PORTs in 120 s", f->name,
			    f->ports, want);
		else
			drain(f->in, f->sub, &f->acked, &f->ports, &f->api,
			    100);
	f->evps[r] = OWNERS / ((double)(clock_us(CLOCK_MONOTONIC) - t0) / 1e6);
	f->cpu_alloc += cpu_s(f->alloc) - ca;
	f->cpu_rend += cpu_s(f->rend) - cr;
}

static double
median(double *v, size_t n)
{
	qsort(v, n, sizeof(v[0]), cmp);
	return v[n / 2];
}

static void
fleet_report(struct fleet *f)
{
	int i;

	qsort(f->hs, HANDSHAKES, sizeof(f->hs[0]), cmp);
	emit(f->name, "handshake_p50", f->hs[HANDSHAKES / 2], "ms");
	emit(f->name, "handshake_p99", f->hs[HANDSHAKES * 99 / 100], "ms");
	for (i = 0; i < ROUNDS; i++)
		emit(f->name, "events_per_s_round", f->evps[i], "events/s");
	emit(f->name, "events_per_s_median", median(f->evps, ROUNDS),
	    "events/s");
	emit(f->name, "allocd_cpu_per_1000", f->cpu_alloc * 1000 /
	    (OWNERS * ROUNDS), "s");
	emit(f->name, "renderd_cpu_per_1000", f->cpu_rend * 1000 /
	    (OWNERS * ROUNDS), "s");
}

static void
fleet_stop(struct fleet *f)
{
	bus_close(f->in);
	bus_close(f->sub);
	stop(f->rend);
	stop(f->alloc);
}

int
main(int argc, char **argv)
{
	static struct fleet f[2] = { { .name = "ipc" },
	    { .name = "curve", .curve = 1 } };
	int i, j, r;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_curve BINDIR WORKDIR\n");
		return 1;
	}
	bindir = argv[1];
	work = argv[2];
	log_init("bench_curve", 1, 0);
	/*
	 * Both fleets side by side, measured in turns, so that what else
	 * the machine runs weighs on both alike.
	 */
	for (i = 0; i < 2; i++)
		fleet_start(&f[i]);
	for (j = 0; j < HANDSHAKES; j++)
		for (i = 0; i < 2; i++)
			f[i].hs[j] = handshake(&f[i], j);
	for (i = 0; i < 2; i++)
		fleet_ready(&f[i]);
	for (r = 0; r < ROUNDS; r++)
		for (i = 0; i < 2; i++)
			fleet_round(&f[(r + i) % 2], r);
	for (i = 0; i < 2; i++) {
		fleet_report(&f[i]);
		fleet_stop(&f[i]);
	}
	printf("{\"bench\": \"curve\", \"metric\": \"curve_over_ipc\", "
	    "\"value\": %.3f, \"unit\": \"ratio of median events/s\"}\n",
	    median(f[1].evps, ROUNDS) / median(f[0].evps, ROUNDS));
	return 0;
}
