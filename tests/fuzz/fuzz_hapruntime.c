/*
 * fuzz_hapruntime — what HAProxy's runtime API answers applyd
 * (applyd/hapruntime.c): the answer reader that waits for the prompt, and
 * what hap_update() and hap_drain() decide from each answer.
 *
 * A fake HAProxy listens on a unix socket in a thread: for each command
 * applyd sends, it answers with the next part of the input (parts
 * separated by form feeds), and closes the connection after a part that
 * does not end with the prompt, or when the parts run out.  applyd applies
 * a fixed change (weights, servers added and removed, map keys added and
 * deleted), forwards or (flags bit 0) backwards, then drains.
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

#define SKELETON_HEAD							\
	"global\n\tstats socket /run/fuzz/edge.sock mode 600 level admin\n\n" \
	"frontend api\n\tbind 127.0.0.1:443\n"				\
	"\tuse_backend %[req_ssl_sni,lower,map(/run/fuzz/edge-api.map)]\n\n" \
	"backend api0\n\t# sni a.k8s.example.test\n"			\
	"\tserver 10.0.0.1_8443 10.0.0.1:8443 check inter 5s\n\n"	\
	"backend api1\n\n"						\
	"frontend ports\n\tbind 127.0.0.1:21000-21003\n"		\
	"\tuse_backend %[dst_port,map(/run/fuzz/edge-ports.map)]\n\n"

static const char conf_a[] = SKELETON_HEAD
	"backend p21000\n"
	"\tserver 10.1.0.1_30000 10.1.0.1:30000 weight 10\n\n"
	"backend p21001\n"
	"\tserver 10.1.0.2_30001 10.1.0.2:30001 weight 1\n"
	"\tserver 10.1.0.3_30001 10.1.0.3:30001 weight 1\n\n"
	"backend p21002\n\n"
	"backend p21003\n"
	"\tserver 10.1.0.6_30003 10.1.0.6:30003 weight 1\n";

static const char conf_b[] = SKELETON_HEAD
	"backend p21000\n"
	"\tserver 10.1.0.1_30000 10.1.0.1:30000 weight 20\n\n"
	"backend p21001\n"
	"\tserver 10.1.0.3_30001 10.1.0.3:30001 weight 1\n"
	"\tserver 10.1.0.4_30001 10.1.0.4:30001 weight 1 check\n\n"
	"backend p21002\n"
	"\tserver 10.1.0.5_30002 10.1.0.5:30002 weight 1\n\n"
	"backend p21003\n";

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
	const char *from, *to;
	pthread_t t;
	uint64_t t0;
	char err[512], c;

	if (size < 1)
		return 0;
	from = data[0] & 1 ? conf_b : conf_a;
	to = data[0] & 1 ? conf_a : conf_b;
	answers = (const char *)data + 1;
	answers_len = size - 1;
	if (pipe(stop_fd) == -1 ||
	    pthread_create(&t, NULL, serve, NULL) != 0)
		abort();
	t0 = now_ms();
	err[0] = '\0';
	if (hap_update(sock_path, from, to, err, sizeof(err)) == -1 &&
	    err[0] == '\0')
		abort();		/* a failure always says why */
	hap_drain(sock_path);
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
