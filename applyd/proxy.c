/*
 * applyd — the driver table, and what every driver does the same way:
 * knowing the master again from its pid file, and stopping it (the
 * checker and the master's start are jobs: job.c).
 *
 * A proxy is only ever signalled when it is ours: its PID came from our
 * pid file or our fork, /proc says it runs the proxy's binary, and its
 * command line names our configuration file.  Another nginx or HAProxy on
 * the machine (the distribution's own, another fleet's) is never touched.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"

#define STOP_WAIT_MS	5000

static const struct proxy_ops *const drivers[] = { &haproxy_ops, &nginx_ops,
    &envoy_ops };

int
proxy_init(struct proxy *p, const struct config *c,
    const struct proxy_conf *pc)
{
	size_t i;

	memset(p, 0, sizeof(*p));
	p->conf = c;
	p->pc = pc;
	p->job.outfd = -1;
	config_proxy_file(c, pc, "master.pid", p->pidfile, sizeof(p->pidfile));
	for (i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (strcmp(drivers[i]->kind, pc->kind) == 0)
			p->ops = drivers[i];
	if (p->ops == NULL)
		return -1;
	if (p->ops->init != NULL)
		p->ops->init(p);
	return 0;
}

/* Only where applyd exits (proxy_stop): its loop never sleeps. */
static void
proxy_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

ssize_t
proxy_readfile(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/*
 * /proc/PID: not a zombie, comm is the proxy's, and the command line (the
 * arguments, or the title nginx sets from them) holds the configuration
 * file as a word of its own.
 */
int
proxy_ours(struct proxy *p, pid_t pid)
{
	char path[64], buf[4096], word[PATH_MAX + 2], *s;
	ssize_t n, i;

	if (pid <= 1 || kill(pid, 0) == -1)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (proxy_readfile(path, buf, sizeof(buf)) == -1 ||
	    (s = strrchr(buf, ')')) == NULL || strncmp(s, ") Z", 3) == 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
	if (proxy_readfile(path, buf, sizeof(buf)) == -1 ||
	    strncmp(buf, p->ops->comm, strlen(p->ops->comm)) != 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	buf[0] = ' ';
	if ((n = proxy_readfile(path, buf + 1, sizeof(buf) - 2)) == -1)
		return 0;
	for (i = 1; i <= n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n + 1] = ' ';
	buf[n + 2] = '\0';
	snprintf(word, sizeof(word), " %s ", p->pc->config);
	return strstr(buf, word) != NULL;
}

pid_t
proxy_pidfile(struct proxy *p)
{
	char buf[32];
	pid_t pid;

	if (proxy_readfile(p->pidfile, buf, sizeof(buf)) == -1)
		return 0;
	pid = (pid_t)strtol(buf, NULL, 10);
	return proxy_ours(p, pid) ? pid : 0;
}

int
proxy_adopt(struct proxy *p)
{
	pid_t pid = proxy_pidfile(p);

	if (pid <= 0)
		return -1;
	p->pid = pid;
	p->child = 0;
	log_info("adopted the running %s master %ld", p->pc->kind,
	    (long)pid);
	return 0;
}

int
proxy_running(struct proxy *p)
{
	if (p->pid <= 0)
		return 0;
	if (!p->child && !proxy_ours(p, p->pid)) {
		log_warnx("%s master %ld is gone", p->pc->kind,
		    (long)p->pid);
		p->pid = 0;
	}
	return p->pid > 0;
}

void
proxy_reaped(struct proxy *p, pid_t pid, int status)
{
	if (pid != p->pid)
		return;
	log_warnx("%s master %ld exited (%d)", p->pc->kind, (long)pid,
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	p->pid = 0;
}

void
proxy_stop(struct proxy *p)
{
	unsigned waited;
	int status;

	if (!proxy_running(p))
		return;
	kill(p->pid, p->ops->stopsig);
	for (waited = 0; waited < STOP_WAIT_MS; waited += 50) {
		if (p->child ? waitpid(p->pid, &status, WNOHANG) == p->pid :
		    !proxy_ours(p, p->pid))
			break;
		proxy_sleep_ms(50);
	}
	if (waited >= STOP_WAIT_MS)
		kill(p->pid, SIGTERM);
	p->pid = 0;
}
