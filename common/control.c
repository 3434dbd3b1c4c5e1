/*
 * portico — the control socket.
 *
 * Each client is a small state machine on the loop: reading its line
 * (bounded), then writing its answer (non-blocking, as the socket takes
 * it), then closed; a one-shot timer closes it at its deadline whatever
 * it is doing.  Answers are built with jansson from our own values only:
 * nothing the client sent is echoed back.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "loop.h"

struct client {
	int		 fd;
	struct loop_io	*io;
	struct loop_timer *deadline;
	char		 line[CONTROL_LINE_MAX];
	size_t		 len;
	char		*out;
	size_t		 outlen, outoff;
};

static struct {
	struct daemon	*d;
	char		 name[96];
	char		 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int		 fd;
	struct client	*clients[CONTROL_CLIENTS];
	size_t		 nclients;
	dev_t		 dev;		/* the socket file we made */
	ino_t		 ino;
	unsigned long	 served, refused, bad;
} C = { .fd = -1 };

static void
client_close(struct client *cl)
{
	size_t i;

	for (i = 0; i < C.nclients; i++)
		if (C.clients[i] == cl) {
			C.clients[i] = C.clients[--C.nclients];
			break;
		}
	loop_io_del(cl->io);
	loop_timer_del(cl->deadline);
	close(cl->fd);
	free(cl->out);
	free(cl);
}

static void
add_counter(const char *name, unsigned long value, void *arg)
{
	json_object_set_new(arg, name, json_integer((json_int_t)value));
}

static json_t *
counters_json(void)
{
	json_t *j = json_object();

	loop_counters(add_counter, j);
	return j;
}

static json_t *
status_json(void)
{
	char waiting[128], err[256];
	uint64_t seq, gen, errt;
	json_t *j;
	int ready;

	ready = health_ready(waiting, sizeof(waiting));
	health_position(&seq, &gen);
	errt = health_error(err, sizeof(err));
	j = json_object();
	json_object_set_new(j, "name", json_string(C.name));
	json_object_set_new(j, "daemon", json_string(C.d->name));
	json_object_set_new(j, "proxy", C.d->proxy != NULL ?
	    json_string(C.d->proxy) : json_null());
	if (C.d->shard != NULL)		/* watcherd's "I/N" */
		json_object_set_new(j, "shard", json_string(C.d->shard));
	json_object_set_new(j, "version", json_string(daemon_version()));
	json_object_set_new(j, "pid", json_integer(getpid()));
	json_object_set_new(j, "uptime_ms",
	    json_integer((json_int_t)loop_uptime_ms()));
	json_object_set_new(j, "ready", json_boolean(ready));
	json_object_set_new(j, "waiting", ready ? json_null() :
	    json_string(waiting));
	json_object_set_new(j, "seq", json_integer((json_int_t)seq));
	json_object_set_new(j, "gen", json_integer((json_int_t)gen));
	json_object_set_new(j, "error", errt != 0 ? json_string(err) :
	    json_null());
	json_object_set_new(j, "error_ms", json_integer((json_int_t)errt));
	json_object_set_new(j, "counters", counters_json());
	return j;
}

/* The answer to one request line, as a JSON text ending in a newline. */
static char *
answer(const char *req)
{
	json_t *j;
	char *s, *t;

	if (strcmp(req, "status") == 0)
		j = status_json();
	else if (strcmp(req, "counters") == 0)
		j = counters_json();
	else {
		C.bad++;
		j = json_pack("{s:s}", "error",
		    "unknown request; try status or counters");
	}
	s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (s == NULL || (t = realloc(s, strlen(s) + 2)) == NULL) {
		free(s);
		return NULL;
	}
	strcat(t, "\n");
	return t;
}

static void client_io(void *, int);

static void
client_write(struct client *cl)
{
	ssize_t n;

	while (cl->outoff < cl->outlen) {
		n = send(cl->fd, cl->out + cl->outoff, cl->outlen - cl->outoff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;		/* the rest when it can take it */
		if (n <= 0) {
			client_close(cl);
			return;
		}
		cl->outoff += (size_t)n;
	}
	C.served++;
	client_close(cl);
}

static void
client_answer(struct client *cl, const char *req)
{
	if ((cl->out = answer(req)) == NULL) {
		client_close(cl);
		return;
	}
	cl->outlen = strlen(cl->out);
	loop_io_events(cl->io, ZMQ_POLLOUT);
	client_write(cl);
}

static void
client_read(struct client *cl)
{
	char *nl;
	ssize_t n;

	n = recv(cl->fd, cl->line + cl->len, sizeof(cl->line) - 1 - cl->len,
	    MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {
		client_close(cl);
		return;
	}
	cl->len += (size_t)n;
	cl->line[cl->len] = '\0';
	if ((nl = memchr(cl->line, '\n', cl->len)) != NULL) {
		*nl = '\0';
		if (nl > cl->line && nl[-1] == '\r')
			nl[-1] = '\0';
		client_answer(cl, cl->line);
	} else if (cl->len == sizeof(cl->line) - 1) {
		C.bad++;
		client_close(cl);	/* no request is that long */
	}
}

static void
client_io(void *arg, int revents)
{
	struct client *cl = arg;

	if (cl->out != NULL)
		client_write(cl);
	else if (revents & (ZMQ_POLLIN | ZMQ_POLLERR))
		client_read(cl);
}

static void
client_deadline(void *arg)
{
	client_close(arg);
}

static void
control_accept(void *arg, int revents)
{
	struct client *cl;
	int fd;

	(void)arg;
	(void)revents;
	while ((fd = accept4(C.fd, NULL, NULL,
	    SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
		if (C.nclients == CONTROL_CLIENTS ||
		    (cl = calloc(1, sizeof(*cl))) == NULL) {
			C.refused++;
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->io = loop_fd(fd, ZMQ_POLLIN, client_io, cl);
		cl->deadline = loop_timer(CONTROL_DEADLINE_MS, 0,
		    client_deadline, cl);
		C.clients[C.nclients++] = cl;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
	    errno != ECONNABORTED)
		log_warn("control: accept");
}

/* At exit: our socket file, unless a newer daemon has made its own. */
static void
control_unlink(void)
{
	struct stat sb;

	if (stat(C.path, &sb) == 0 && sb.st_dev == C.dev && sb.st_ino == C.ino)
		unlink(C.path);
}

int
control_open(struct daemon *d, const char *name)
{
	struct sockaddr_un sun;
	struct stat sb;
	mode_t old;
	int n;

	C.d = d;
	snprintf(C.name, sizeof(C.name), "%s", name);
	n = snprintf(C.path, sizeof(C.path), "%s/%s.ctl", d->conf->run_dir,
	    name);
	if (n < 0 || (size_t)n >= sizeof(C.path)) {
		log_warnx("control: %s/%s.ctl: path too long for a unix "
		    "socket", d->conf->run_dir, name);
		return -1;
	}
	if ((C.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		log_warn("control: socket");
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, C.path, strlen(C.path) + 1);
	/* a socket left by a run of ours that died: the pid file says so */
	if (unlink(C.path) == -1 && errno != ENOENT)
		log_warn("control: unlink %s", C.path);
	old = umask(0177);
	n = bind(C.fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (n == -1 || listen(C.fd, CONTROL_CLIENTS) == -1) {
		log_warn("control: %s", C.path);
		close(C.fd);
		C.fd = -1;
		return -1;
	}
	if (stat(C.path, &sb) == 0) {
		C.dev = sb.st_dev;
		C.ino = sb.st_ino;
		atexit(control_unlink);
	}
	loop_fd(C.fd, ZMQ_POLLIN, control_accept, NULL);
	loop_counter("control_served", &C.served);
	loop_counter("control_refused", &C.refused);
	loop_counter("control_bad", &C.bad);
	return 0;
}
