/*
 * applyd — the driver table, and what every driver does the same way:
 * running the checker, spawning the master, knowing it again from its pid
 * file, and stopping it.
 *
 * A proxy is only ever signalled when it is ours: its PID came from our
 * pid file or our fork, /proc says it runs the proxy's binary, and its
 * command line names our configuration file.  Another nginx or HAProxy on
 * the machine (the distribution's own, another fleet's) is never touched.
 */
#include <sys/resource.h>
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

#define START_WAIT_MS	15000
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

void
proxy_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * Run argv, wait for it, keep the start of what it printed in out (the
 * first complaint names the line at fault).  The output is untrusted as
 * far as logs go: callers quote it.
 */
static int
proxy_run(char *const argv[], char *out, size_t outlen)
{
	char buf[4096];
	size_t have = 0, k;
	ssize_t n;
	pid_t pid;
	int fds[2], status;

	if (pipe2(fds, O_CLOEXEC) == -1)
		return -1;
	if ((pid = fork()) == -1) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n == -1 &&
	    errno == EINTR)) {
		if (n <= 0 || have + 1 >= outlen)
			continue;
		k = (size_t)n < outlen - 1 - have ? (size_t)n : outlen - 1 - have;
		memcpy(out + have, buf, k);
		have += k;
	}
	out[have] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/*
 * Run a checker on a candidate: 0 when it passes, else -1 with the first
 * line holding marker (the checker's own error tag), quoted, in err.
 */
int
proxy_check(char *const argv[], const char *marker, char *err,
    size_t errlen)
{
	char out[2048], *line;

	if (proxy_run(argv, out, sizeof(out)) == 0)
		return 0;
	if ((line = strstr(out, marker)) == NULL)
		line = out;
	line[strcspn(line, "\n")] = '\0';
	log_quote(err, errlen, line, strlen(line));
	return -1;
}

/*
 * The master runs in a session of its own, so that it outlives us (an
 * applyd killed outright leaves the proxy serving), with the signal mask
 * cleared (ours blocks what the signalfd reads) and the open-file limit
 * raised to the hard one: every listening port costs a descriptor.
 */
static pid_t
proxy_spawn(char *const argv[])
{
	struct rlimit rl;
	sigset_t none;
	pid_t pid;

	if ((pid = fork()) != 0)
		return pid;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	execv(argv[0], argv);
	_exit(127);
}

/*
 * Start the master (argv) and wait until up() says it serves: then it is
 * our child.  It exiting first, or START_WAIT_MS passing, is a failed
 * start; why, when up() filled it, says what the proxy complained of.
 */
int
proxy_start(struct proxy *p, char *const argv[], proxy_up_fn *up, void *arg,
    const char *why, char *err, size_t errlen)
{
	unsigned waited;
	int status;
	pid_t pid;

	if ((pid = proxy_spawn(argv)) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	for (waited = 0; waited < START_WAIT_MS; waited += 50) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			up(p, pid, arg);	/* its last words */
			snprintf(err, errlen, "%s exited at start (%d): %s",
			    p->pc->kind, WIFEXITED(status) ?
			    WEXITSTATUS(status) : 128 + WTERMSIG(status),
			    why != NULL && *why != '\0' ? why : "see its log");
			return -1;
		}
		if (up(p, pid, arg) == 1) {
			p->pid = pid;
			p->child = 1;
			log_info("%s started, master %ld", p->pc->kind,
			    (long)pid);
			return 0;
		}
		proxy_sleep_ms(50);
	}
	kill(pid, SIGTERM);
	snprintf(err, errlen, "%s did not come up in %u ms", p->pc->kind,
	    START_WAIT_MS);
	return -1;
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
