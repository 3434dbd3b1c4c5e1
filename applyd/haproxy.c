/*
 * applyd — the HAProxy driver.
 *
 * HAProxy runs in master-worker mode, in the foreground as our child, with
 * a master CLI socket.  A reload is SIGUSR2 to the master; its outcome is
 * read from the master's own counters in "show proc" (reloads and
 * [failed: N]), so a configuration that passed "haproxy -c" but cannot bind
 * a port is seen failing, and the old workers keep serving meanwhile.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "proxy.h"

#define START_WAIT_MS	15000
#define RELOAD_WAIT_MS	30000

void
hap_init(struct proxy *p, const struct config *c, const struct proxy_conf *pc)
{
	memset(p, 0, sizeof(*p));
	p->conf = c;
	p->pc = pc;
	snprintf(p->master_sock, sizeof(p->master_sock), "%s/%s-master.sock",
	    c->run_dir, pc->name);
	snprintf(p->pidfile, sizeof(p->pidfile), "%s/%s-master.pid",
	    c->run_dir, pc->name);
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * Run argv, wait for it, keep the tail of what it printed in out.  The
 * output is untrusted as far as logs go: callers quote it.
 */
static int
run(char *const argv[], char *out, size_t outlen)
{
	char buf[4096];
	size_t have = 0;
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
		if (n <= 0)
			continue;
		/* keep the first complaint: it names the line at fault */
		if (have + 1 < outlen) {
			size_t k = (size_t)n < outlen - 1 - have ?
			    (size_t)n : outlen - 1 - have;
			memcpy(out + have, buf, k);
			have += k;
		}
	}
	out[have] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int
hap_check(struct proxy *p, const char *path, char *err, size_t errlen)
{
	char *argv[] = { (char *)p->pc->binary, "-c", "-f", (char *)path,
	    NULL };
	char out[2048], *alert;

	if (run(argv, out, sizeof(out)) == 0)
		return 0;
	/* the first [ALERT] line says what is wrong */
	if ((alert = strstr(out, "[ALERT]")) == NULL)
		alert = out;
	alert[strcspn(alert, "\n")] = '\0';
	log_quote(err, errlen, alert, strlen(alert));
	return -1;
}

/* One master CLI command; the answer into out.  -1 if no answer. */
static int
master_cmd(struct proxy *p, const char *cmd, char *out, size_t outlen)
{
	struct sockaddr_un sun;
	struct timeval tv = { 1, 0 };
	size_t have = 0;
	ssize_t n;
	int s;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(p->master_sock) >= sizeof(sun.sun_path))
		return -1;
	strcpy(sun.sun_path, p->master_sock);
	if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    write(s, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) ||
	    shutdown(s, SHUT_WR) == -1) {
		close(s);
		return -1;
	}
	/* the master answers once our side is shut */
	while (have + 1 < outlen &&
	    (n = read(s, out + have, outlen - 1 - have)) > 0)
		have += (size_t)n;
	out[have] = '\0';
	close(s);
	return have > 0 ? 0 : -1;
}

struct proc_state {
	long	reloads;
	long	failed;
	int	workers;
};

/*
 * Parse "show proc":
 *	<pid> master <reloads> [failed: <n>] <uptime> <version>
 *	# workers
 *	<pid> worker ...
 */
static int
proc_state(struct proxy *p, struct proc_state *ps)
{
	char out[8192], *line, *save = NULL, *f;
	int in_workers = 0, have_master = 0;

	memset(ps, 0, sizeof(*ps));
	if (master_cmd(p, "show proc\n", out, sizeof(out)) == -1)
		return -1;
	for (line = strtok_r(out, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#') {
			in_workers = strncmp(line, "# workers", 9) == 0;
			continue;
		}
		if (strstr(line, " master ") != NULL &&
		    sscanf(line, "%*d master %ld", &ps->reloads) == 1) {
			have_master = 1;
			if ((f = strstr(line, "[failed: ")) != NULL)
				ps->failed = strtol(f + 9, NULL, 10);
		} else if (in_workers && strstr(line, " worker ") != NULL)
			ps->workers++;
	}
	return have_master ? 0 : -1;
}

/* The start of a small file, NUL-terminated; -1 if it cannot be read. */
static int
read_small(const char *path, char *buf, size_t len)
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
	return 0;
}

static pid_t
read_pidfile(const char *path)
{
	char buf[32];

	return read_small(path, buf, sizeof(buf)) == -1 ? 0 :
	    (pid_t)strtol(buf, NULL, 10);
}

static int
is_haproxy(pid_t pid)
{
	char path[64], comm[64];

	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
	return read_small(path, comm, sizeof(comm)) == 0 &&
	    strncmp(comm, "haproxy", 7) == 0;
}

int
hap_adopt(struct proxy *p)
{
	struct proc_state ps;
	pid_t pid = read_pidfile(p->pidfile);

	if (pid <= 0 || !is_haproxy(pid) || proc_state(p, &ps) == -1)
		return -1;
	p->pid = pid;
	p->child = 0;
	log_info("applyd: adopted the running haproxy master %ld",
	    (long)pid);
	return 0;
}

int
hap_start(struct proxy *p, char *err, size_t errlen)
{
	char sock[CONF_RUNDIR + 96];
	char *argv[] = { (char *)p->pc->binary, "-W", "-db", "-f",
	    (char *)p->pc->config, "-p", p->pidfile, "-S", sock, NULL };
	struct proc_state ps;
	unsigned waited;
	int status;
	pid_t pid;

	snprintf(sock, sizeof(sock), "%s,mode,600", p->master_sock);
	unlink(p->master_sock);
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		sigset_t none;

		/* our signal mask and session are not haproxy's */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		execv(argv[0], argv);
		_exit(127);
	}
	for (waited = 0; waited < START_WAIT_MS; waited += 50) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			snprintf(err, errlen, "haproxy exited at start (%d); "
			    "see its log", WIFEXITED(status) ?
			    WEXITSTATUS(status) : 128 + WTERMSIG(status));
			return -1;
		}
		if (proc_state(p, &ps) == 0 && ps.workers > 0) {
			p->pid = pid;
			p->child = 1;
			log_info("applyd: haproxy started, master %ld",
			    (long)pid);
			return 0;
		}
		sleep_ms(50);
	}
	kill(pid, SIGTERM);
	snprintf(err, errlen, "haproxy did not come up in %u ms",
	    START_WAIT_MS);
	return -1;
}

int
hap_reload(struct proxy *p, char *err, size_t errlen)
{
	struct proc_state before, now;
	unsigned waited;

	if (proc_state(p, &before) == -1) {
		snprintf(err, errlen, "master CLI does not answer");
		return -1;
	}
	if (kill(p->pid, SIGUSR2) == -1) {
		snprintf(err, errlen, "signal master: %s", strerror(errno));
		return -1;
	}
	for (waited = 0; waited < RELOAD_WAIT_MS; waited += 20) {
		sleep_ms(20);
		if (proc_state(p, &now) == -1 || now.reloads == before.reloads)
			continue;
		if (now.failed > before.failed) {
			snprintf(err, errlen, "haproxy refused the new "
			    "configuration (see its log); the old workers "
			    "keep serving");
			return -1;
		}
		if (now.workers > 0)
			return 0;
	}
	snprintf(err, errlen, "reload did not finish in %u ms",
	    RELOAD_WAIT_MS);
	return -1;
}

int
hap_running(struct proxy *p)
{
	if (p->pid <= 0)
		return 0;
	if (!p->child && (kill(p->pid, 0) == -1 || !is_haproxy(p->pid))) {
		log_warnx("applyd: haproxy master %ld is gone", (long)p->pid);
		p->pid = 0;
	}
	return p->pid > 0;
}

void
hap_reaped(struct proxy *p, pid_t pid, int status)
{
	if (pid != p->pid)
		return;
	log_warnx("applyd: haproxy master %ld exited (%d)", (long)pid,
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	p->pid = 0;
}

void
hap_stop(struct proxy *p)
{
	unsigned waited;
	int status;

	if (!hap_running(p))
		return;
	/* SIGUSR1: soft stop, connections in flight finish (hard-stop-after) */
	kill(p->pid, SIGUSR1);
	for (waited = 0; waited < 5000; waited += 50) {
		if (p->child ? waitpid(p->pid, &status, WNOHANG) == p->pid :
		    kill(p->pid, 0) == -1)
			break;
		sleep_ms(50);
	}
	if (waited >= 5000)
		kill(p->pid, SIGTERM);
	p->pid = 0;
}
