/*
 * applyd — jobs: a proxy's check, start or reload, followed without
 * waiting for it.
 *
 * applyd's loop must keep reading the bus (a producer silent for 3.5 s is
 * reconnected to and caught up with), send its acknowledgements and drive
 * HAProxy's runtime API, while a checker reads a 2 MB configuration or a
 * master re-executes itself, which can take seconds.  So each of these is
 * a job the loop follows: a child's exit arrives as SIGCHLD on the loop's
 * signalfd (proxy_reap), a checker's output through a non-blocking pipe,
 * and "is it up yet" is a step function the loop calls at short intervals
 * (its poll timeout is proxy_job_wait) until a deadline.  When the job
 * ends, p->done is told its outcome; nothing here ever sleeps.
 */
#include <sys/resource.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "proxy.h"

/*
 * A checker reads the whole configuration: seconds at 20,000 routes on a
 * busy machine; one that takes longer than this is stuck.
 */
#define CHECK_WAIT_MS	120000
#define START_WAIT_MS	15000
#define START_EVERY_MS	50

static const char *const kinds[] = { "none", "check", "start", "reload" };

/* The exit status as a number: the code, or 128 + the signal. */
static int
exit_code(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) :
	    128 + WTERMSIG(status);
}

static int
job_begin(struct proxy *p, int kind, unsigned limit)
{
	struct proxy_job *j = &p->job;
	uint64_t now = now_ms();

	if (j->kind != JOB_NONE)
		fatalx("%s job begun while a %s job runs", kinds[kind],
		    kinds[j->kind]);
	memset(j, 0, sizeof(*j));
	j->kind = kind;
	j->outfd = -1;
	j->limit = limit;
	j->next = now;
	j->deadline = now + limit;
	return 1;
}

/*
 * Whether the job's child exited, asked directly: SIGCHLD tells the loop
 * (proxy_reap), and this makes the job right even where a loop does not.
 */
static int
job_exited(struct proxy_job *j)
{
	int status;

	if (!j->exited && j->pid > 0 &&
	    waitpid(j->pid, &status, WNOHANG) == j->pid) {
		j->exited = 1;
		j->status = status;
	}
	return j->exited;
}

/* The job is over: forget it, then say how it went. */
static void
job_end(struct proxy *p, int rc, const char *err)
{
	struct proxy_job *j = &p->job;

	if (j->outfd != -1)
		close(j->outfd);
	memset(j, 0, sizeof(*j));
	j->outfd = -1;
	if (p->done != NULL)
		p->done(p, rc, err);
}

/*
 * Take what the checker wrote: the start of it is kept (the first
 * complaint names the line at fault), the rest read and dropped so that
 * it never blocks on a full pipe.  The pipe is closed at its end.
 */
static void
job_read(struct proxy_job *j)
{
	char buf[4096];
	size_t k;
	ssize_t n;

	while (j->outfd != -1) {
		if ((n = read(j->outfd, buf, sizeof(buf))) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			n = 0;		/* an error ends it as well */
		}
		if (n == 0) {
			close(j->outfd);
			j->outfd = -1;
			return;
		}
		k = sizeof(j->out) - 1 - j->outlen;
		if ((size_t)n < k)
			k = (size_t)n;
		memcpy(j->out + j->outlen, buf, k);
		j->outlen += k;
		j->out[j->outlen] = '\0';
	}
}

/*
 * Run a checker on a candidate as a child, its output (stdout and stderr)
 * into a pipe the loop reads.
 */
int
proxy_check(struct proxy *p, char *const argv[], const char *marker,
    char *err, size_t errlen)
{
	struct proxy_job *j = &p->job;
	sigset_t none;
	int fds[2];
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		/* ours blocks what the signalfd reads: a shell would hang */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) == -1)
		log_warn("checker pipe");	/* read at its end only, then */
	job_begin(p, JOB_CHECK, CHECK_WAIT_MS);
	j->pid = pid;
	j->outfd = fds[0];
	j->marker = marker;
	j->next = j->deadline;		/* no steps: its exit says it all */
	return 1;
}

/*
 * A checker that exited: 0 when it passed, else -1 with the first line
 * holding its error tag (or its first line), quoted: its output is
 * untrusted as far as logs go.
 */
static int
check_ended(struct proxy_job *j, char *err, size_t errlen)
{
	char *line;

	if (j->status == 0)
		return 0;
	if ((line = strstr(j->out, j->marker)) == NULL)
		line = j->out;
	line[strcspn(line, "\n")] = '\0';
	if (*line == '\0')
		snprintf(err, errlen, "exited %d, saying nothing",
		    exit_code(j->status));
	else
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

int
proxy_start(struct proxy *p, char *const argv[], proxy_step_fn *up,
    void *arg, const char *why, char *err, size_t errlen)
{
	struct proxy_job *j = &p->job;
	pid_t pid;

	if ((pid = proxy_spawn(argv)) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	job_begin(p, JOB_START, START_WAIT_MS);
	j->pid = pid;
	j->step = up;
	j->arg = arg;
	j->why = why;
	j->every = START_EVERY_MS;
	return 1;
}

int
proxy_follow(struct proxy *p, proxy_step_fn *step, void *arg,
    unsigned every, unsigned limit)
{
	struct proxy_job *j = &p->job;

	job_begin(p, JOB_RELOAD, limit);
	j->step = step;
	j->arg = arg;
	j->every = every;		/* the first step at once */
	return 1;
}

/*
 * A master being started: up once its step says so, then our child; its
 * exit first is a failed start (its last words read by one more step).
 */
static int
start_step(struct proxy *p, uint64_t now, char *err, size_t errlen)
{
	struct proxy_job *j = &p->job;
	int rc;

	if (job_exited(j)) {
		j->step(p, j->arg, err, errlen);	/* its last words */
		snprintf(err, errlen, "%s exited at start (%d): %s",
		    p->pc->kind, exit_code(j->status),
		    j->why != NULL && *j->why != '\0' ? j->why :
		    "see its log");
		return -1;
	}
	if (now >= j->next) {
		j->next = now + j->every;
		if ((rc = j->step(p, j->arg, err, errlen)) == 0) {
			p->pid = j->pid;
			p->child = 1;
			log_info("%s started, master %ld", p->pc->kind,
			    (long)j->pid);
			return 0;
		}
		if (rc == -1) {
			kill(j->pid, SIGTERM);
			return -1;
		}
	}
	if (now >= j->deadline) {
		kill(j->pid, SIGTERM);	/* reaped as any child of ours */
		snprintf(err, errlen, "%s did not come up in %u ms",
		    p->pc->kind, j->limit);
		return -1;
	}
	return 1;
}

void
proxy_job_run(struct proxy *p)
{
	struct proxy_job *j = &p->job;
	char err[512] = "";
	uint64_t now = now_ms();
	int rc = 1;

	switch (j->kind) {
	case JOB_NONE:
		return;
	case JOB_CHECK:
		job_read(j);
		if (j->exited || (j->outfd == -1 && job_exited(j))) {
			/* what it wrote last; grandchildren may hold the pipe */
			job_read(j);
			rc = check_ended(j, err, sizeof(err));
		} else if (now >= j->deadline) {
			kill(j->pid, SIGKILL);	/* reaped as any child */
			snprintf(err, sizeof(err), "%s did not finish in "
			    "%u ms", p->ops->checker, j->limit);
			rc = -1;
		}
		break;
	case JOB_START:
		rc = start_step(p, now, err, sizeof(err));
		break;
	case JOB_RELOAD:
		if (now >= j->next) {
			j->next = now + j->every;
			rc = j->step(p, j->arg, err, sizeof(err));
		}
		if (rc == 1 && now >= j->deadline) {
			snprintf(err, sizeof(err), "reload did not finish in "
			    "%u ms", j->limit);
			rc = -1;
		}
		break;
	}
	if (rc != 1)
		job_end(p, rc, err);
}

int
proxy_job_busy(const struct proxy *p)
{
	return p->job.kind != JOB_NONE;
}

int
proxy_job_fd(const struct proxy *p)
{
	return p->job.outfd;
}

long
proxy_job_wait(const struct proxy *p, uint64_t now)
{
	const struct proxy_job *j = &p->job;
	uint64_t at;

	if (j->kind == JOB_NONE)
		return -1;
	if (j->kind == JOB_CHECK && j->exited)
		return 0;
	if (j->kind == JOB_CHECK && j->outfd == -1)
		return 10;	/* its output ended: its exit is near */
	at = j->next < j->deadline ? j->next : j->deadline;
	return at > now ? (long)(at - now) : 0;
}

/*
 * Reap every child that exited: the job's is kept for the job (its exit
 * is its outcome), the others are the driver's (a master, or a child
 * that a finished job left behind).
 */
void
proxy_reap(struct proxy *p)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (p->job.kind != JOB_NONE && pid == p->job.pid) {
			p->job.exited = 1;
			p->job.status = status;
		} else
			p->ops->reaped(p, pid, status);
}

/*
 * applyd exits: a checker is stopped and waited for (it touched
 * nothing); a master being started becomes the one ops->stop stops.
 */
void
proxy_job_cancel(struct proxy *p)
{
	struct proxy_job *j = &p->job;
	int status;

	if (j->kind == JOB_CHECK && !j->exited) {
		kill(j->pid, SIGKILL);
		while (waitpid(j->pid, &status, 0) == -1 && errno == EINTR)
			;
	} else if (j->kind == JOB_START && !j->exited) {
		p->pid = j->pid;
		p->child = 1;
	}
	if (j->outfd != -1)
		close(j->outfd);
	memset(j, 0, sizeof(*j));
	j->outfd = -1;
}
