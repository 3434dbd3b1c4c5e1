/*
 * fuzz_hapruntime — what HAProxy's runtime API answers applyd
 * (applyd/hapruntime.c): the answer reader that waits for the prompt, and
 * what hap_update() and hap_drain() decide from each answer.
 *
 * A fake HAProxy listens on a unix socket in a thread: for each command
 * applyd sends, it answers with the next part of the input (parts
 * separated by form feeds), and closes the connection after a part that
 * does not end with the prompt, or when the parts run out.  applyd applies
 * a fixed change between two route tables (weights, servers added and
 * removed, map keys added and deleted), forwards or (flags bit 0)
 * backwards, then drains.
 *
 * The reader waits CLI_TIMEOUT_MS (5 s) for a prompt it was never sent;
 * an answer it was sent whole must never make it wait: an update that
 * takes longer than HANG_MS is a bug.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "hapruntime.h"
#include "log.h"

#define HANG_MS		2500

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define CONF	"tests/golden/portico.conf"
#define CLUSTER	"7f3c9e2a-5b1d-4c8e-9a6f-0d2b4e8c1a37"

/*
 * Two route tables over one API route and the ports 21000-21003: weights,
 * servers added and removed, a port that comes and one that goes.
 */
static struct config		 conf;
static const struct proxy_conf	*px;
static struct routes		 table_a, table_b;
static const unsigned		 ports[] = { 21000, 21001, 21002, 21003 };

struct b { const char *ip; unsigned port, weight; };

static void
port(struct routes *r, unsigned p, const struct b *bs, size_t n)
{
	struct event ev;
	size_t i;

	event_init(&ev, EV_PORT_SET);
	ev.port = p;
	event_set_str(&ev, F_CLUSTER, CLUSTER);
	event_set_str(&ev, F_NS, "payments");
	event_set_str(&ev, F_NAME, "web");
	for (i = 0; i < n; i++)
		event_add_backend(&ev, bs[i].ip, bs[i].port, bs[i].weight);
	routes_apply(r, &ev);
	event_free(&ev);
}

static void
tables(void)
{
	static const struct b a0[] = { { "10.1.0.1", 30000, 10 } };
	static const struct b a1[] = { { "10.1.0.2", 30001, 1 },
	    { "10.1.0.3", 30001, 1 } };
	static const struct b a3[] = { { "10.1.0.6", 30003, 1 } };
	static const struct b b0[] = { { "10.1.0.1", 30000, 20 } };
	static const struct b b1[] = { { "10.1.0.3", 30001, 1 },
	    { "10.1.0.4", 30001, 1 } };
	static const struct b b2[] = { { "10.1.0.5", 30002, 1 } };
	struct event api;
	char err[512];

	if (config_load(CONF, &conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "fuzz_hapruntime: %s: %s\n", CONF, err);
		abort();
	}
	px = &conf.proxies[0];
	routes_init(&table_a, &conf);
	routes_init(&table_b, &conf);
	event_init(&api, EV_API_SET);
	event_set_str(&api, F_CLUSTER, CLUSTER);
	event_set_str(&api, F_CNAME, "a");
	event_set_str(&api, F_HOST, "a.k8s.example.test");
	strcpy(api.masters[0], "10.0.0.1");
	api.nmasters = 1;
	api.mport = 8443;
	api.has |= F_MASTERS | F_MPORT;
	routes_apply(&table_a, &api);
	port(&table_a, 21000, a0, 1);
	port(&table_a, 21001, a1, 2);
	port(&table_a, 21003, a3, 1);
	routes_apply(&table_b, &api);
	port(&table_b, 21000, b0, 1);
	port(&table_b, 21001, b1, 2);
	port(&table_b, 21002, b2, 1);
}

static char	 sock_dir[] = "/tmp/portico-fuzz-XXXXXX";
static char	 sock_path[128];
static int	 listen_fd, stop_fd[2];

/* The answers left, shared with the fake HAProxy while it runs. */
static const char *answers;
static size_t	 answers_len;

static void
cleanup(void)
{
	unlink(sock_path);
	rmdir(sock_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	(void)argc;
	(void)argv;
	log_init("fuzz", 1, 0);
	signal(SIGPIPE, SIG_IGN);	/* as daemon_start() does */
	tables();
	if (mkdtemp(sock_dir) == NULL)
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/edge.sock", sock_dir);
	strcpy(sun.sun_path, sock_path);
	if ((listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) ==
	    -1 || bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) ==
	    -1 || listen(listen_fd, 8) == -1)
		abort();
	atexit(cleanup);
	return 0;
}

/* One connection: a part of the input for each command line. */
static void
converse(int fd)
{
	const char *part, *ff;
	size_t n, off;
	ssize_t w;
	char c;

	while (answers != NULL) {
		do {
			if (read(fd, &c, 1) != 1)
				return;
		} while (c != '\n');
		part = answers;
		ff = memchr(part, '\f', answers_len);
		n = ff ? (size_t)(ff - part) : answers_len;
		answers_len -= ff ? n + 1 : n;
		answers = ff ? ff + 1 : NULL;
		for (off = 0; off < n; off += (size_t)w)
			if ((w = write(fd, part + off, n - off)) <= 0)
				return;
		if (n < 3 || memcmp(part + n - 3, "\n> ", 3) != 0)
			return;		/* no prompt: HAProxy is gone */
	}
}

/* The fake HAProxy: every connection until stop_fd says stop. */
static void *
serve(void *arg)
{
	struct pollfd pfd[2] = { { listen_fd, POLLIN, 0 },
	    { stop_fd[0], POLLIN, 0 } };
	int fd;

	(void)arg;
	for (;;) {
		if (poll(pfd, 2, -1) == -1)
			abort();
		if (pfd[1].revents != 0)
			return NULL;
		if ((fd = accept(listen_fd, NULL, NULL)) == -1)
			continue;
		converse(fd);
		close(fd);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct routes *from, *to;
	pthread_t t;
	uint64_t t0;
	char err[512], c;

	if (size < 1)
		return 0;
	from = data[0] & 1 ? &table_b : &table_a;
	to = data[0] & 1 ? &table_a : &table_b;
	answers = (const char *)data + 1;
	answers_len = size - 1;
	if (pipe(stop_fd) == -1 ||
	    pthread_create(&t, NULL, serve, NULL) != 0)
		abort();
	t0 = now_ms();
	err[0] = '\0';
	if (hap_update(sock_path, &conf, px, from, to, ports,
	    sizeof(ports) / sizeof(ports[0]), 1, err, sizeof(err)) == -1 &&
	    err[0] == '\0')
		abort();		/* a failure always says why */
	hap_drain(sock_path);
	hap_reconnect();	/* the fake HAProxy's turn ends with the connection */
	if (now_ms() - t0 > HANG_MS) {
		/* it waited for what it had been sent */
		fprintf(stderr, "fuzz_hapruntime: the update took %llu ms\n",
		    (unsigned long long)(now_ms() - t0));
		abort();
	}
	c = 0;
	if (write(stop_fd[1], &c, 1) != 1 || pthread_join(t, NULL) != 0)
		abort();
	close(stop_fd[0]);
	close(stop_fd[1]);
	hap_forget_drains();
	return 0;
}
