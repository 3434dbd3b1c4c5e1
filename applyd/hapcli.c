/*
 * applyd — HAProxy's runtime API, the client: one connection kept from
 * one update to the next, and the commands of an update in one write.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "hapcli.h"
#include "hapruntime.h"

#define CLI_TIMEOUT_MS	5000

/*
 * The runtime API, in prompt mode, on one connection kept from one update
 * to the next: a connect and its prompt cost as much as the commands of a
 * one-port change.  It is kept for CLI_KEEP_MS only, well inside
 * HAProxy's idle timeout for it (`stats timeout`, 10 s by default), and
 * dropped at a reload or a start (hap_reconnect): it would still speak to
 * the old worker.
 *
 * The commands of an update are written together and their answers read
 * after (HAProxy runs them in order, one by one): one round trip for a
 * port that goes live, not one a command.  A command that fails does not
 * stop the ones after it, but the update fails, and a reload follows; a
 * command whose answer decides what comes next is asked alone (hapcli_ask).
 */
#define CLI_KEEP_MS	2000
#define CLI_QUEUE	4096	/* bytes of commands before their answers */

struct hapcli {
	int		fd;
	int		broken;		/* no answer: the stream is lost */
	int		failed;		/* a command of this update failed */
	uint64_t	used;		/* ms, its last command */
	char		path[PATH_MAX];
	char		err[512];	/* the first failure's */
	char		q[CLI_QUEUE];	/* written, answers owed */
	size_t		qlen;
	char		buf[8192];	/* read, answers not taken yet */
	size_t		n;
};

static struct hapcli	kept = { .fd = -1 };

/*
 * The next answer (each ends with the prompt, "\n> "), its start in out:
 * what went wrong.  0, or -1 when nothing more can be read.
 */
static int
cli_read(struct hapcli *cl, char *out, size_t outlen)
{
	struct pollfd pfd = { cl->fd, POLLIN, 0 };
	char *end;
	size_t len;
	ssize_t r;
	int started = 0;

	while ((end = memmem(cl->buf, cl->n, "\n> ", 3)) == NULL) {
		if (cl->n == sizeof(cl->buf)) {
			/*
			 * A long answer: keep its start, and the tail that
			 * may hold the start of a prompt.
			 */
			if (!started) {
				len = cl->n < outlen ? cl->n : outlen - 1;
				memcpy(out, cl->buf, len);
				out[len] = '\0';
				started = 1;
			}
			memmove(cl->buf, cl->buf + cl->n - 2, 2);
			cl->n = 2;
		}
		if (poll(&pfd, 1, CLI_TIMEOUT_MS) != 1 ||
		    (r = read(cl->fd, cl->buf + cl->n, sizeof(cl->buf) -
		    cl->n)) <= 0) {
			cl->broken = 1;
			return -1;
		}
		cl->n += (size_t)r;
	}
	len = (size_t)(end - cl->buf);
	if (!started) {
		while (len > 0 && (cl->buf[len - 1] == '\n' ||
		    cl->buf[len - 1] == ' '))
			len--;
		if (len >= outlen)
			len = outlen - 1;
		memcpy(out, cl->buf, len);
		out[len] = '\0';
	}
	len = (size_t)(end - cl->buf) + 3;
	memmove(cl->buf, cl->buf + len, cl->n - len);
	cl->n -= len;
	return 0;
}

static int
cli_open(struct hapcli *cl, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char junk[64];

	if (strlen(path) >= sizeof(sun.sun_path))
		return -1;
	strcpy(sun.sun_path, path);
	if ((cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	cl->broken = 0;
	cl->n = 0;
	if (connect(cl->fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    write(cl->fd, "prompt\n", 7) != 7 ||
	    cli_read(cl, junk, sizeof(junk)) == -1) {
		close(cl->fd);
		cl->fd = -1;
		return -1;
	}
	snprintf(cl->path, sizeof(cl->path), "%s", path);
	return 0;
}

void
hap_reconnect(void)
{
	if (kept.fd != -1)
		close(kept.fd);
	kept.fd = -1;
}

/*
 * The kept connection to the runtime API at path, opened again unless it
 * was used lately and nothing came on it since (between two updates an
 * answered prompt is silent: what is readable is its end).
 */
struct hapcli *
hapcli_get(const char *path)
{
	struct pollfd pfd = { kept.fd, POLLIN, 0 };

	if (kept.fd != -1 && (kept.broken || kept.n > 0 ||
	    strcmp(kept.path, path) != 0 ||
	    now_ms() - kept.used > CLI_KEEP_MS || poll(&pfd, 1, 0) != 0))
		hap_reconnect();
	if (kept.fd == -1 && cli_open(&kept, path) == -1)
		return NULL;
	kept.failed = 0;
	kept.qlen = 0;
	kept.err[0] = '\0';
	return &kept;
}

/* The update fails, the first reason said. */
static void
cli_fail(struct hapcli *cl, const char *fmt, ...)
{
	va_list ap;

	if (cl->failed)
		return;
	cl->failed = 1;
	va_start(ap, fmt);
	vsnprintf(cl->err, sizeof(cl->err), fmt, ap);
	va_end(ap);
}

/* HAProxy's answers on success: nothing, or one of its confirmations. */
static int
cli_ok(const char *out)
{
	return out[0] == '\0' || strcmp(out, "New server registered.") == 0 ||
	    strcmp(out, "Server deleted.") == 0;
}

/*
 * The commands queued are written, and their answers read: 0, or -1 when
 * the stream is lost.  The first that failed is kept in cl->err.
 */
static int
cli_sync(struct hapcli *cl)
{
	char out[512], *cmd, *nl;
	size_t off = 0;
	ssize_t w;

	while (off < cl->qlen) {
		if ((w = write(cl->fd, cl->q + off, cl->qlen - off)) <= 0) {
			cl->broken = 1;
			break;
		}
		off += (size_t)w;
	}
	for (cmd = cl->q; cmd < cl->q + cl->qlen; cmd = nl + 1) {
		nl = memchr(cmd, '\n', (size_t)(cl->q + cl->qlen - cmd));
		if (cl->broken || cli_read(cl, out, sizeof(out)) == -1) {
			cli_fail(cl, "runtime API: no answer to %.*s",
			    (int)(nl - cmd), cmd);
			break;
		}
		if (!cli_ok(out))
			cli_fail(cl, "runtime API: %.*s: %s", (int)(nl - cmd),
			    cmd, out);
	}
	cl->qlen = 0;
	return cl->broken ? -1 : 0;
}

/* One command for the next round trip: -1 when the stream is lost. */
static int
cli_vqueue(struct hapcli *cl, const char *fmt, va_list ap)
{
	char cmd[1024];
	int n;

	n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(cmd) - 1) {
		cli_fail(cl, "runtime API: command too long");
		return 0;
	}
	cmd[n++] = '\n';
	if (cl->qlen + (size_t)n > sizeof(cl->q) && cli_sync(cl) == -1)
		return -1;
	memcpy(cl->q + cl->qlen, cmd, (size_t)n);
	cl->qlen += (size_t)n;
	return 0;
}

int
hapcli_queue(struct hapcli *cl, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = cli_vqueue(cl, fmt, ap);
	va_end(ap);
	return rc;
}

/*
 * One command whose answer decides what follows, after those queued: 0
 * when it succeeded, -1 with its answer in out.  Its failure is not the
 * update's.
 */
int
hapcli_ask(struct hapcli *cl, char *out, size_t outlen, const char *fmt,
    ...)
{
	va_list ap;
	int rc;

	if (cli_sync(cl) == -1)
		return -1;
	va_start(ap, fmt);
	rc = cli_vqueue(cl, fmt, ap);
	va_end(ap);
	if (rc == -1 || cl->qlen == 0)
		return -1;
	if (write(cl->fd, cl->q, cl->qlen) != (ssize_t)cl->qlen ||
	    cli_read(cl, out, outlen) == -1) {
		cl->broken = 1;
		snprintf(out, outlen, "no answer");
		cl->qlen = 0;
		return -1;
	}
	cl->qlen = 0;
	return cli_ok(out) ? 0 : -1;
}

/*
 * The update's end: the answers still owed are read.  0 when every
 * command succeeded, -1 with the first failure in err.  The connection
 * is kept unless its stream is lost.
 */
int
hapcli_done(struct hapcli *cl, char *err, size_t errlen)
{
	cli_sync(cl);
	cl->used = now_ms();
	if (cl->broken) {
		cli_fail(cl, "runtime API %s: the connection was lost",
		    cl->path);
		hap_reconnect();
	}
	if (!cl->failed)
		return 0;
	snprintf(err, errlen, "%s", cl->err);
	return -1;
}

int
hapcli_broken(const struct hapcli *cl)
{
	return cl->broken;
}
