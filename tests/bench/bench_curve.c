/*
 * bench_curve — the bus with CURVE against the bus without, in one run.
 * Prints JSON lines:
 *	{"bench": "curve", "mode": "ipc"|"curve", "metric": "...",
 *	 "value": N, "unit": "..."}
 *
 *	bench_curve BINDIR WORKDIR
 *
 * For each mode, a real allocd and a renderd (-p haproxy) on their own
 * store and run folder: "ipc" with the default ipc:// endpoints (NULL
 * mechanism, ZAP checking the peer's uid), "curve" with every endpoint on
 * tcp:// over loopback with keys made by porticoctl keygen.  The bench is
 * a client of the role applyd (which allocd's input and renderd's feed
 * both admit), through common/bus.c and zap.c as the daemons are:
 *
 * 1. handshake: HANDSHAKES new DEALERs to allocd's input, each
 *    timed from connect to the monitor's HANDSHAKE_SUCCEEDED (the TCP
 *    connect, the ZMTP greeting, CURVE's four commands and allocd's ZAP
 *    answer from its loop); p50 and p99.
 * 2. throughput: OWNERS ROUTE observations of distinct owners sent to
 *    allocd's input (at most WINDOW unacknowledged), each a decision
 *    (PORT_SET) that renderd turns into an RT_PORT on its feed; events/s
 *    from the first send to the last RT_PORT received, and the CPU
 *    seconds allocd and renderd spent on them.
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

#define OWNERS		20000
#define WINDOW		5000
#define HANDSHAKES	200
#define ADDR		"127.0.0.1"

struct mode {
	const char	*name;
	int		 curve;
	double		 evps;
};

static const char	*bindir, *work;

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

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
route(struct event *ev, uint64_t seq, unsigned owner)
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
	event_add_backend(ev, "10.0.0.1", 30000, 1);
	event_add_backend(ev, "10.0.0.2", 30000, 1);
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

/* Time HANDSHAKES handshakes with allocd's input. */
static void
handshakes(const struct config *c, const char *mode)
{
	static double ms[HANDSHAKES];
	char ep[64];
	zmq_msg_t m;
	uint16_t ev;
	uint64_t t0;
	void *s, *mon;
	int i;

	for (i = 0; i < HANDSHAKES; i++) {
		s = bus_socket(ZMQ_DEALER);
		snprintf(ep, sizeof(ep), "inproc://bench.mon.%s.%d", mode, i);
		if (zmq_socket_monitor(s, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
		    ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
		    ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == -1 ||
		    (mon = zmq_socket(bus_ctx(), ZMQ_PAIR)) == NULL ||
		    zmq_connect(mon, ep) == -1)
			fatal("monitor");
		t0 = now_us();
		if (bus_connect(s, c->alloc_in) == -1)
			fatalx("connect %s", c->alloc_in);
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, mon, 0) == -1 || zmq_msg_size(&m) != 6)
			fatal("monitor event");
		ms[i] = (double)(now_us() - t0) / 1000.0;
		memcpy(&ev, zmq_msg_data(&m), 2);
		zmq_msg_close(&m);
		if (ev != ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
			fatalx("%s: handshake failed (event %u)", mode, ev);
		while (zmq_msg_init(&m) == 0 &&
		    zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) != -1)
			zmq_msg_close(&m);
		zmq_msg_close(&m);
		bus_close(s);
		zmq_close(mon);
	}
	qsort(ms, HANDSHAKES, sizeof(ms[0]), cmp);
	emit(mode, "handshake_p50", ms[HANDSHAKES / 2], "ms");
	emit(mode, "handshake_p99", ms[HANDSHAKES * 99 / 100], "ms");
}

static void
bench(struct mode *md)
{
	char dir[512], conf[600], err[1024], cmd[600];
	static struct config c;
	uint64_t seq = 0, acked = 0, t0, deadline;
	double cpu_a, cpu_r;
	unsigned ports = 0, i;
	struct event ev;
	pid_t alloc, rend;
	void *in, *sub;
	int api = 0;

	snprintf(dir, sizeof(dir), "%s/%s", work, md->name);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s", dir);
	run_cmd(cmd);
	snprintf(conf, sizeof(conf), "%s/portico.conf", dir);
	if (md->curve)
		make_keys(dir);
	write_conf(dir, conf, md->curve);
	if (config_load(conf, &c, err, sizeof(err)) == -1 ||
	    zap_init(&c, "applyd", err, sizeof(err)) == -1)
		fatalx("%s", err);
	alloc = start(dir, conf, "allocd", "allocd", NULL, NULL);
	rend = start(dir, conf, "renderd", "renderd-haproxy", "-p", "haproxy");

	handshakes(&c, md->name);

	in = bus_socket(ZMQ_DEALER);
	sub = bus_socket(ZMQ_SUB);
	if (bus_connect(in, c.alloc_in) == -1 ||
	    bus_connect(sub, c.proxies[0].pub) == -1)
		fatalx("connect");
	/* renderd's heartbeat first: our subscription has arrived */
	if (zmq_poll(&(zmq_pollitem_t){ sub, 0, ZMQ_POLLIN, 0 }, 1, 60000) != 1)
		fatalx("%s: no heartbeat from renderd in 60 s", md->name);
	cluster(in, &seq);
	/* renderd's feed reaches us: its table has the cluster's API route */
	for (deadline = now_us() + 60000000; !api; )
		if (now_us() > deadline)
			fatalx("%s: no RT_API from renderd in 60 s", md->name);
		else
			drain(in, sub, &acked, &ports, &api, 100);

	cpu_a = cpu_s(alloc);
	cpu_r = cpu_s(rend);
	t0 = now_us();
	for (i = 0; i < OWNERS; i++) {
		while (seq - acked >= WINDOW)
			drain(in, sub, &acked, &ports, &api, 10);
		route(&ev, ++seq, i);
		send_ev(in, &ev);
		if ((i & 255) == 0)
			drain(in, sub, &acked, &ports, &api, 0);
	}
	for (deadline = now_us() + 120000000; ports < OWNERS; )
		if (now_us() > deadline)
			fatalx("%s: %u of %u RT_PORTs in 120 s", md->name,
			    ports, OWNERS);
		else
			drain(in, sub, &acked, &ports, &api, 100);
	md->evps = OWNERS / ((double)(now_us() - t0) / 1e6);
	emit(md->name, "events_per_s", md->evps, "events/s");
	emit(md->name, "allocd_cpu_per_1000", (cpu_s(alloc) - cpu_a) * 1000 /
	    OWNERS, "s");
	emit(md->name, "renderd_cpu_per_1000", (cpu_s(rend) - cpu_r) * 1000 /
	    OWNERS, "s");
	bus_close(in);
	bus_close(sub);
	stop(rend);
	stop(alloc);
}

int
main(int argc, char **argv)
{
	struct mode modes[] = { { "ipc", 0, 0 }, { "curve", 1, 0 } };
	size_t i;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_curve BINDIR WORKDIR\n");
		return 1;
	}
	bindir = argv[1];
	work = argv[2];
	log_init("bench_curve", 1, 0);
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		bench(&modes[i]);
	printf("{\"bench\": \"curve\", \"metric\": \"curve_over_ipc\", "
	    "\"value\": %.3f, \"unit\": \"ratio of events/s\"}\n",
	    modes[1].evps / modes[0].evps);
	return 0;
}
