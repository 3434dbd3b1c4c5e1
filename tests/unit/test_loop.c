/*
 * Unit tests for common/loop.c: timers (one-shot, periodic, re-armed,
 * deleted from their own callback, fired earliest first), descriptors
 * with callbacks, the after-turn hooks, and the counters' snapshot.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "event.h"
#include "loop.h"

static char	order[64];
static size_t	norder;

struct tick {
	char			 mark;
	int			 fired;
	struct loop_timer	*t;
	int			 del_after;	/* delete itself at this count */
	int			 rearm_ms;	/* one-shot: arm again */
};

static void
on_tick(void *arg)
{
	struct tick *k = arg;

	k->fired++;
	if (norder < sizeof(order) - 1)
		order[norder++] = k->mark;
	if (k->del_after != 0 && k->fired == k->del_after)
		loop_timer_del(k->t);
	else if (k->rearm_ms != 0)
		loop_timer_set(k->t, (uint64_t)k->rearm_ms);
}

static int
setup(void **state)
{
	(void)state;
	loop_init(NULL);
	memset(order, 0, sizeof(order));
	norder = 0;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	loop_free();
	return 0;
}

/* Turn until ms have passed. */
static void
run_for(uint64_t ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		loop_once((long)(end - now_ms()));
}

static void
test_one_shot(void **state)
{
	struct tick k = { .mark = 'a' };
	uint64_t t0 = now_ms();

	(void)state;
	k.t = loop_timer(30, 0, on_tick, &k);
	loop_once(1000);		/* waits for the timer, not 1 s */
	assert_int_equal(k.fired, 1);
	assert_true(now_ms() - t0 >= 30);
	assert_true(now_ms() - t0 < 500);
	assert_false(loop_timer_armed(k.t));
	run_for(80);
	assert_int_equal(k.fired, 1);	/* disarmed, not fired again */
	loop_timer_set(k.t, 10);
	run_for(60);
	assert_int_equal(k.fired, 2);
	loop_timer_del(k.t);
}

static void
test_periodic_and_delete_from_callback(void **state)
{
	struct tick p = { .mark = 'p' }, d = { .mark = 'd', .del_after = 2 };

	(void)state;
	p.t = loop_timer(20, 1, on_tick, &p);
	d.t = loop_timer(10, 1, on_tick, &d);
	run_for(230);
	/* about 11 in 230 ms; a loaded machine fires fewer, never more */
	assert_true(p.fired >= 3 && p.fired <= 12);
	assert_int_equal(d.fired, 2);	/* deleted by its own callback */
	loop_timer_stop(p.t);
	p.fired = 0;
	run_for(60);
	assert_int_equal(p.fired, 0);
}

static void
test_earliest_first(void **state)
{
	struct tick a = { .mark = 'a' }, b = { .mark = 'b' },
	    c = { .mark = 'c' };

	(void)state;
	c.t = loop_timer(30, 0, on_tick, &c);
	a.t = loop_timer(10, 0, on_tick, &a);
	b.t = loop_timer(20, 0, on_tick, &b);
	usleep(50 * 1000);		/* all three due in one turn */
	loop_once(0);
	assert_string_equal(order, "abc");
}

static void
test_rearm_from_callback(void **state)
{
	struct tick k = { .mark = 'r', .rearm_ms = 10 };

	(void)state;
	k.t = loop_timer(10, 0, on_tick, &k);
	run_for(120);
	assert_true(k.fired >= 3);
}

static int	io_calls;

static void
on_readable(void *arg, int revents)
{
	char buf[16];
	int *fds = arg;

	assert_true(revents & ZMQ_POLLIN);
	assert_int_equal(read(fds[0], buf, sizeof(buf)), 1);
	io_calls++;
}

static int	afters;

static void
on_after(void *arg)
{
	(void)arg;
	afters++;
}

static void
test_fd_and_after(void **state)
{
	struct loop_io *io;
	int fds[2];

	(void)state;
	io_calls = afters = 0;
	assert_int_equal(pipe(fds), 0);
	io = loop_fd(fds[0], ZMQ_POLLIN, on_readable, fds);
	loop_after(on_after, NULL);
	loop_once(0);
	assert_int_equal(io_calls, 0);
	assert_int_equal(afters, 1);
	assert_int_equal(write(fds[1], "x", 1), 1);
	loop_once(1000);
	assert_int_equal(io_calls, 1);
	assert_int_equal(afters, 2);
	loop_io_del(io);
	assert_int_equal(write(fds[1], "y", 1), 1);
	loop_once(20);
	assert_int_equal(io_calls, 1);	/* deleted: not called */
	close(fds[0]);
	close(fds[1]);
}

static void
sum_counter(const char *name, unsigned long v, void *arg)
{
	if (strcmp(name, "things") == 0)
		*(unsigned long *)arg = v;
}

static void
test_counters_snapshot(void **state)
{
	unsigned long things = 3, seen = 0;

	(void)state;
	loop_counter("things", &things);
	assert_int_equal(loop_counters(sum_counter, &seen), 1);
	assert_int_equal(seen, 3);
	things = 7;		/* seen as of the end of the next turn */
	loop_counters(sum_counter, &seen);
	assert_int_equal(seen, 3);
	loop_once(0);
	loop_counters(sum_counter, &seen);
	assert_int_equal(seen, 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_shot, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_periodic_and_delete_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_earliest_first, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rearm_from_callback,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_and_after, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_counters_snapshot, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
