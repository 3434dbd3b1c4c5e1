/*
 * applyd — the nginx driver.
 *
 * nginx runs in the foreground as our child ("daemon off;", its own
 * session), with the pid file and error log that renderd's nginx.conf names
 * in the run folder (config_proxy_file).  "nginx -t" does not bind, so it
 * cannot see a port another program holds; and a reload (SIGHUP) is
 * asynchronous: the master re-reads the configuration, and when a port
 * cannot be bound it logs the error and keeps the old workers, saying
 * nothing to whoever sent the signal.  So a reload's outcome is read where
 * the master writes it, its error log (kept at "notice"): after our offset,
 * a line from the master's PID saying it started worker processes is a
 * reload that took; an [emerg] that is not one of its bind retries (it
 * tries a port in use five times, 500 ms apart) is one that did not.
 *
 * A reload that took is done only once the old workers stop accepting: the
 * master tells them 100 ms after the new ones start, and until then a new
 * connection may still be routed by the old configuration (a route just
 * removed would still answer).  A worker that is shutting down says so in
 * its title, so the reload waits for every worker that was accepting before
 * it to be shutting down or gone.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "held.h"
#include "log.h"
#include "proxy.h"

#define RELOAD_WAIT_MS	30000
#define RELOAD_EVERY_MS	20
#define MAX_WORKERS	64	/* worker_processes is small: renderd says 1 */

/* What one master has said in the error log since off. */
struct log_watch {
	off_t	off;
	pid_t	master;
	char	why[256];	/* its first [emerg], quoted */
};

static void
nginx_init(struct proxy *p)
{
	config_proxy_file(p->conf, p->pc, "error.log", p->errlog,
	    sizeof(p->errlog));
}

/* Lines written from now on are the ones to read. */
static void
watch_begin(struct proxy *p, struct log_watch *w)
{
	struct stat st;

	w->off = stat(p->errlog, &st) == 0 ? st.st_size : 0;
	w->master = 0;
	w->why[0] = '\0';
}

/* One line, "<date> <time> [<level>] <pid>#<tid>: <message>". */
static int
watch_line(struct log_watch *w, const char *line)
{
	char tag[32], inuse[32];
	const char *msg;

	snprintf(tag, sizeof(tag), "] %ld#", (long)w->master);
	if ((msg = strstr(line, tag)) == NULL ||
	    (msg = strstr(msg, ": ")) == NULL)
		return 0;		/* a worker's, or another master's */
	msg += 2;
	if (strcmp(msg, "start worker processes") == 0)
		return 1;
	if (strstr(line, " [emerg] ") == NULL)
		return 0;
	if (w->why[0] == '\0')
		log_quote(w->why, sizeof(w->why), msg, strlen(msg));
	snprintf(inuse, sizeof(inuse), "failed (%d: ", EADDRINUSE);
	if (strncmp(msg, "bind() to ", 10) == 0 && strstr(msg, inuse) != NULL)
		return 0;		/* it tries again */
	return -1;
}

/*
 * Read the complete lines added since the last call: 1 once the master
 * started its workers, -1 once it gave up (why says on what), else 0.
 */
static int
watch_poll(struct proxy *p, struct log_watch *w)
{
	char buf[16384], *line, *nl;
	struct stat st;
	ssize_t n;
	int fd, rc = 0;

	if ((fd = open(p->errlog, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	if (fstat(fd, &st) == 0 && st.st_size < w->off)
		w->off = 0;		/* truncated under us */
	while (rc == 0 && (n = pread(fd, buf, sizeof(buf) - 1, w->off)) > 0) {
		buf[n] = '\0';
		for (line = buf; rc == 0 && (nl = strchr(line, '\n')) != NULL;
		    line = nl + 1) {
			*nl = '\0';
			w->off += nl - line + 1;
			rc = watch_line(w, line);
		}
		if (line == buf && (size_t)n < sizeof(buf) - 1)
			break;		/* half a line: the rest comes later */
		if (line == buf)
			w->off += n;	/* longer than nginx writes: skip */
	}
	close(fd);
	return rc;
}

/* pid is a worker of master's that accepts connections. */
static int
worker_accepts(pid_t master, pid_t pid)
{
	static const char title[] = "nginx: worker process";
	char path[64], buf[512], *s;
	long ppid;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (proxy_readfile(path, buf, sizeof(buf)) == -1 ||
	    (s = strrchr(buf, ')')) == NULL ||
	    sscanf(s, ") %*c %ld", &ppid) != 1 || ppid != (long)master)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	return proxy_readfile(path, buf, sizeof(buf)) != -1 &&
	    strcmp(buf, title) == 0;
}

/* The workers of master's that accept connections, at most max. */
static size_t
accepting(pid_t master, pid_t *pids, size_t max)
{
	struct dirent *de;
	size_t n = 0;
	pid_t pid;
	DIR *d;

	if ((d = opendir("/proc")) == NULL)
		return 0;
	while (n < max && (de = readdir(d)) != NULL)
		if ((pid = (pid_t)strtol(de->d_name, NULL, 10)) > 0 &&
		    worker_accepts(master, pid))
			pids[n++] = pid;
	closedir(d);
	return n;
}

static int
nginx_check(struct proxy *p, const char *path, char *err, size_t errlen)
{
	char *argv[] = { (char *)p->pc->binary, "-t", "-q", "-e", "stderr",
	    "-p", (char *)p->conf->run_dir, "-c", (char *)path, NULL };

	return proxy_check(p, argv, "[emerg]", err, errlen);
}

/*
 * The start or the reload under way: the master's lines in the error log,
 * and (a reload) the workers that accepted connections before it.
 */
static struct log_watch	watch;
static pid_t		old[MAX_WORKERS];
static size_t		nold;
static int		started;

/* Up once its master, listening already, has started its workers. */
static int
nginx_up(struct proxy *p, void *arg, char *err, size_t errlen)
{
	(void)arg;
	(void)err;
	(void)errlen;
	watch.master = p->job.pid;
	return watch_poll(p, &watch) == 1 ? 0 : 1;
}

static int
nginx_start(struct proxy *p, char *err, size_t errlen)
{
	char *argv[] = { (char *)p->pc->binary, "-e", "stderr", "-p",
	    (char *)p->conf->run_dir, "-c", (char *)p->pc->config, "-g",
	    "daemon off;", NULL };

	watch_begin(p, &watch);
	return proxy_start(p, argv, nginx_up, NULL, watch.why, err, errlen);
}

/*
 * Done once the master started its new workers and none of the old ones
 * accepts any more; failed when it logged an [emerg] (the old workers
 * keep serving) or is gone.
 */
static int
nginx_reloaded(struct proxy *p, void *arg, char *err, size_t errlen)
{
	size_t i;

	(void)arg;
	if (!started && (started = watch_poll(p, &watch)) == -1) {
		snprintf(err, errlen, "nginx refused the new "
		    "configuration: %s; the old workers keep serving",
		    watch.why);
		return -1;
	}
	for (i = 0; started && i < nold; i++)
		if (worker_accepts(p->pid, old[i]))
			break;
	if (started && i == nold)
		return 0;
	if (p->pid == 0 || !proxy_ours(p, p->pid)) {
		snprintf(err, errlen, "the nginx master is gone");
		return -1;
	}
	return 1;
}

static int
nginx_reload(struct proxy *p, char *err, size_t errlen)
{
	nold = accepting(p->pid, old, MAX_WORKERS);
	started = 0;
	watch_begin(p, &watch);
	watch.master = p->pid;
	if (kill(p->pid, SIGHUP) == -1) {
		snprintf(err, errlen, "signal master: %s", strerror(errno));
		return -1;
	}
	return proxy_follow(p, nginx_reloaded, NULL, RELOAD_EVERY_MS,
	    RELOAD_WAIT_MS);
}

/*
 * Ports another program holds (held.c): nginx's listeners do not set
 * SO_REUSEPORT, so a bind would read nginx's own ports as taken.  Its
 * master's listening sockets are looked up in /proc, and only the other
 * routed ports are probed.  A held port's server block is left out of
 * what nginx reads (the renderer skips it); its upstream stays, unused.
 */
static struct held	busy;

static const unsigned char *
nginx_busy(struct proxy *p, const struct routes *r, int probe)
{
	unsigned char own[65536 / 8];
	unsigned port, before = busy.n;

	if (probe) {
		held_reset(&busy, p->pc->listen, 0);
		/* not running: no port is nginx's; /proc cannot tell: none */
		memset(own, 0, sizeof(own));
		if (p->pid == 0 || held_listening(p->pid, own) == 0)
			for (port = 1; port < 65536; port++)
				if (r->ports[port] != NULL &&
				    !HELD_BIT(own, port))
					held_probe(&busy, port);
		held_log(&busy, before);
	}
	return busy.n > 0 ? busy.bits : NULL;
}

static int
nginx_idle(struct proxy *p)
{
	(void)p;
	return held_freed(&busy);
}

/* SIGQUIT: graceful, connections finish (worker_shutdown_timeout) */
const struct proxy_ops nginx_ops = {
	"nginx", "nginx -t", "nginx", SIGQUIT, nginx_init, nginx_check,
	proxy_adopt, nginx_start, nginx_reload, proxy_running, proxy_reaped,
	proxy_stop, NULL, NULL,		/* no maps; every change reloads */
	nginx_idle, nginx_busy,
};
