/*
 * Unit tests for applyd/job.c: a check, a start or a reload followed as a
 * job, the way applyd's loop does it (poll with proxy_job_wait, reap, run),
 * with small shell commands for checkers and masters.  What matters most:
 * each outcome reaches p->done with its reason, and no call holds the
 * caller while a child takes its time.
 */
#include <sys/wait.h>

#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../applyd/proxy.h"
#include "event.h"
#include "log.h"

struct fx {
	struct config		 conf;
	struct proxy_conf	 pc;
	struct proxy		 p;
	char			 err[512];
	int			 ended;		/* p->done calls */
	int			 rc;
	char			 why[512];	/* what p->done was told */
	pid_t			 reaped;	/* the last ops->reaped */
	uint64_t		 longest;	/* the longest proxy_job_run, ms */
};

static struct fx	*fx;
static int		 no_reap;	/* drive() leaves SIGCHLD's work undone */

static void
fake_reaped(struct proxy *p, pid_t pid, int status)
{
	(void)p;
	(void)status;
	fx->reaped = pid;
}

static const struct proxy_ops fake_ops = {
	.kind = "fake", .checker = "fake -c", .comm = "sh",
	.stopsig = SIGTERM, .reaped = fake_reaped,
};

static void
done(struct proxy *p, int rc, const char *err)
{
	(void)p;
	fx->ended++;
	fx->rc = rc;
	snprintf(fx->why, sizeof(fx->why), "%s", err);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->pc.name, "edge");
	strcpy(f->pc.kind, "fake");
	f->p.ops = &fake_ops;
	f->p.conf = &f->conf;
	f->p.pc = &f->pc;
	f->p.job.outfd = -1;
	f->p.done = done;
	fx = f;
	no_reap = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	int status;

	proxy_job_cancel(&f->p);
	if (f->p.pid > 0) {
		kill(f->p.pid, SIGKILL);
		waitpid(f->p.pid, &status, 0);
	}
	while (waitpid(-1, &status, WNOHANG) > 0)
		;
	free(f);
	return 0;
}

/*
 * applyd's loop in small: poll the job's pipe until its next look is due
 * (here at most 10 ms: no signalfd tells of an exit), reap, run; until the
 * job ends or limit ms pass.  Each run is timed.
 */
static void
drive(struct fx *f, unsigned limit)
{
	uint64_t start = now_ms(), t;
	struct pollfd pfd;
	long wait;

	while (proxy_job_busy(&f->p) && now_ms() - start < limit) {
		wait = proxy_job_wait(&f->p, now_ms());
		if (wait < 0 || wait > 10)
			wait = 10;
		pfd.fd = proxy_job_fd(&f->p);
		pfd.events = POLLIN;
		poll(&pfd, pfd.fd == -1 ? 0 : 1, (int)wait);
		if (!no_reap)
			proxy_reap(&f->p);
		t = now_ms();
		proxy_job_run(&f->p);
		if (now_ms() - t > f->longest)
			f->longest = now_ms() - t;
	}
}

static int
check(struct fx *f, const char *script)
{
	char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };

	return proxy_check(&f->p, argv, "[ALERT]", f->err, sizeof(f->err));
}

static void
test_check_passes(void **state)
{
	struct fx *f = *state;

	assert_int_equal(check(f, "echo fine; exit 0"), 1);
	assert_true(proxy_job_busy(&f->p));
	assert_int_not_equal(proxy_job_fd(&f->p), -1);
	drive(f, 5000);
	assert_false(proxy_job_busy(&f->p));
	assert_int_equal(f->ended, 1);
	assert_int_equal(f->rc, 0);
	assert_int_equal(proxy_job_fd(&f->p), -1);
	assert_int_equal(proxy_job_wait(&f->p, now_ms()), -1);
}

/* The first line holding the marker is the reason, quoted. */
static void
test_check_refuses(void **state)
{
	struct fx *f = *state;

	assert_int_equal(check(f, "echo '[WARNING] meh'; "
	    "echo '[ALERT] line 3: \"bad\"' >&2; echo '[ALERT] second'; "
	    "exit 2"), 1);
	drive(f, 5000);
	assert_int_equal(f->ended, 1);
	assert_int_equal(f->rc, -1);
	assert_non_null(strstr(f->why, "[ALERT] line 3: "));
	assert_null(strstr(f->why, "second"));
	assert_null(strstr(f->why, "WARNING"));
}

static void
test_check_silent_failure(void **state)
{
	struct fx *f = *state;

	assert_int_equal(check(f, "exit 4"), 1);
	drive(f, 5000);
	assert_int_equal(f->rc, -1);
	assert_string_equal(f->why, "exited 4, saying nothing");
}

/* More output than a pipe holds: read as it comes, the checker ends. */
static void
test_check_talks_a_lot(void **state)
{
	struct fx *f = *state;

	assert_int_equal(check(f, "i=0; while [ $i -lt 4000 ]; do "
	    "echo '[NOTICE] a line of some eighty bytes, to fill the pipe "
	    "many times over.'; i=$((i+1)); done; exit 0"), 1);
	drive(f, 10000);
	assert_int_equal(f->ended, 1);
	assert_int_equal(f->rc, 0);
}

/* A checker that takes a second holds no call for long. */
static void
test_slow_check_holds_nobody(void **state)
{
	struct fx *f = *state;
	uint64_t start = now_ms();

	assert_int_equal(check(f, "sleep 1; exit 0"), 1);
	drive(f, 5000);
	assert_int_equal(f->rc, 0);
	assert_true(now_ms() - start >= 900);
	print_message("a 1 s checker followed; the longest look took %llu ms\n",
	    (unsigned long long)f->longest);
	assert_true(f->longest < 100);
}

/* At exit, a checker under way is killed and waited for. */
static void
test_cancel_check(void **state)
{
	struct fx *f = *state;
	pid_t pid;

	assert_int_equal(check(f, "exec sleep 30"), 1);
	pid = f->p.job.pid;
	proxy_job_cancel(&f->p);
	assert_false(proxy_job_busy(&f->p));
	assert_int_equal(kill(pid, 0), -1);	/* reaped: gone */
	assert_int_equal(f->ended, 0);
}

static int	up_after;	/* the step says "up" at this call */

static int
up(struct proxy *p, void *arg, char *err, size_t errlen)
{
	int *calls = arg;

	(void)p;
	(void)err;
	(void)errlen;
	return ++*calls >= up_after ? 0 : 1;
}

static int
start(struct fx *f, const char *script, int *calls)
{
	char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };

	return proxy_start(&f->p, argv, up, calls, "it said so", f->err,
	    sizeof(f->err));
}

static void
test_start_comes_up(void **state)
{
	struct fx *f = *state;
	int calls = 0;
	pid_t pid;

	up_after = 3;
	assert_int_equal(start(f, "exec sleep 30", &calls), 1);
	pid = f->p.job.pid;
	assert_int_equal(f->p.pid, 0);		/* not before it is up */
	drive(f, 5000);
	assert_int_equal(f->rc, 0);
	assert_int_equal(calls, 3);
	assert_int_equal(f->p.pid, pid);
	assert_int_equal(f->p.child, 1);
	/* its later exit is the driver's */
	kill(pid, SIGKILL);
	while (f->reaped != pid)
		proxy_reap(&f->p);
}

static void
test_start_exits(void **state)
{
	struct fx *f = *state;
	int calls = 0;

	up_after = 1000;
	assert_int_equal(start(f, "exit 3", &calls), 1);
	drive(f, 5000);
	assert_int_equal(f->rc, -1);
	assert_string_equal(f->why, "fake exited at start (3): it said so");
	assert_int_equal(f->p.pid, 0);
}

/* At exit, a master being started is kept for ops->stop to stop. */
static void
test_cancel_start(void **state)
{
	struct fx *f = *state;
	int calls = 0;
	pid_t pid;

	up_after = 1000;
	assert_int_equal(start(f, "exec sleep 30", &calls), 1);
	pid = f->p.job.pid;
	proxy_job_cancel(&f->p);
	assert_int_equal(f->p.pid, pid);
	assert_int_equal(f->p.child, 1);
}

static int	steps;

static int
reloaded(struct proxy *p, void *arg, char *err, size_t errlen)
{
	(void)p;
	if (++steps < 3)
		return 1;
	if (arg != NULL) {
		snprintf(err, errlen, "%s", (const char *)arg);
		return -1;
	}
	return 0;
}

static void
test_reload_followed(void **state)
{
	struct fx *f = *state;

	steps = 0;
	assert_int_equal(proxy_follow(&f->p, reloaded, NULL, 20, 5000), 1);
	assert_int_equal(proxy_job_wait(&f->p, now_ms()), 0);	/* at once */
	drive(f, 5000);
	assert_int_equal(f->rc, 0);
	assert_int_equal(steps, 3);
}

static void
test_reload_refused(void **state)
{
	struct fx *f = *state;

	steps = 0;
	assert_int_equal(proxy_follow(&f->p, reloaded, "no bind", 20, 5000),
	    1);
	drive(f, 5000);
	assert_int_equal(f->rc, -1);
	assert_string_equal(f->why, "no bind");
}

static void
test_reload_deadline(void **state)
{
	struct fx *f = *state;

	steps = -1000000;	/* never done */
	assert_int_equal(proxy_follow(&f->p, reloaded, NULL, 20, 200), 1);
	drive(f, 5000);
	assert_int_equal(f->rc, -1);
	assert_string_equal(f->why, "reload did not finish in 200 ms");
}

/* A child that is not the job's goes to the driver. */
static void
test_reap_others(void **state)
{
	struct fx *f = *state;
	pid_t pid;

	assert_int_equal(check(f, "sleep 1"), 1);
	if ((pid = fork()) == 0)
		_exit(0);
	while (f->reaped != pid)
		proxy_reap(&f->p);
	assert_false(f->p.job.exited);
	drive(f, 5000);
	assert_int_equal(f->rc, 0);
}

/* A loop that does not reap on SIGCHLD: the jobs see their exits anyway. */
static void
test_without_sigchld(void **state)
{
	struct fx *f = *state;
	int calls = 0;

	no_reap = 1;
	assert_int_equal(check(f, "echo '[ALERT] no'; exit 1"), 1);
	drive(f, 5000);
	assert_int_equal(f->ended, 1);
	assert_int_equal(f->rc, -1);
	up_after = 1000;
	assert_int_equal(start(f, "exit 5", &calls), 1);
	drive(f, 5000);
	assert_int_equal(f->ended, 2);
	assert_string_equal(f->why, "fake exited at start (5): it said so");
}

#define T(fn)	cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_check_passes),
		T(test_check_refuses),
		T(test_check_silent_failure),
		T(test_check_talks_a_lot),
		T(test_slow_check_holds_nobody),
		T(test_cancel_check),
		T(test_start_comes_up),
		T(test_start_exits),
		T(test_cancel_start),
		T(test_reload_followed),
		T(test_reload_refused),
		T(test_reload_deadline),
		T(test_reap_others),
		T(test_without_sigchld),
	};

	log_init("test_job", 1, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
