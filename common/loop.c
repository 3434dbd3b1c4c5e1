/*
 * portico — the daemon loop.
 *
 * Registrations live in small arrays of pointers, scanned each turn: a
 * daemon has a handful of descriptors and timers, so a scan costs less
 * than keeping a heap in order.  What is deleted during a turn is only
 * marked, and swept once the turn is over, so a callback may delete
 * anything, itself included.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "event.h"
#include "health.h"
#include "log.h"
#include "loop.h"

#define LOOP_MAX_WAIT_MS	1000	/* a turn at least this often */
#define LOOP_MAX_SIGNALS	4
#define LOOP_MAX_AFTER		8
#define LOOP_MAX_COUNTERS	64

struct loop_io {
	void		*sock;		/* or NULL and fd */
	int		 fd;
	int		 events;
	loop_io_fn	 fn;
	void		*arg;
	int		 dead;
};

struct loop_timer {
	uint64_t	 when;		/* ms; 0 disarmed */
	uint64_t	 period;	/* 0: one-shot */
	loop_fn		 fn;
	void		*arg;
	int		 dead;
};

struct loop_src {
	const struct loop_source *ops;
	void		*arg;
	int		 first, n;	/* its items in this turn's array */
};

struct loop_hook {
	int		 sig;		/* loop_signal only */
	loop_fn		 fn;
	void		*arg;
};

static struct {
	struct daemon	 *d;
	struct loop_io	**io;
	size_t		  nio, capio;
	struct loop_timer **tm;
	size_t		  ntm, captm;
	struct loop_src	 *src;
	size_t		  nsrc;
	struct loop_hook  after[LOOP_MAX_AFTER];
	size_t		  nafter;
	struct loop_hook  sig[LOOP_MAX_SIGNALS];
	size_t		  nsig;
	zmq_pollitem_t	 *items;
	size_t		  capitems;
	int		  sweep;	/* something is marked dead */
	int		  stop;		/* the signal that ends it, or -1 */
	uint64_t	  start;
} L;

/* The counters, and their values at the end of the last turn. */
static pthread_mutex_t	 cmtx = PTHREAD_MUTEX_INITIALIZER;
static const char	*cname[LOOP_MAX_COUNTERS];
static const unsigned long *cptr[LOOP_MAX_COUNTERS];
static unsigned long	 csnap[LOOP_MAX_COUNTERS];
static size_t		 ncounters;

static void *
grow(void *p, size_t *cap, size_t n, size_t size)
{
	size_t c;

	if (n < *cap)
		return p;
	c = *cap ? *cap * 2 : 16;
	if ((p = reallocarray(p, c, size)) == NULL)
		fatal("loop");
	*cap = c;
	return p;
}

static void
loop_on_signal(void *arg, int revents)
{
	struct daemon *d = arg;
	size_t i;
	int sig;

	(void)revents;
	while ((sig = daemon_signal(d)) != 0) {
		if (sig == SIGTERM || sig == SIGINT) {
			L.stop = sig;
			continue;
		}
		for (i = 0; i < L.nsig; i++)
			if (L.sig[i].sig == sig)
				L.sig[i].fn(L.sig[i].arg);
	}
}

void
loop_init(struct daemon *d)
{
	L.d = d;
	L.stop = -1;
	L.start = now_ms();
	if (d != NULL)
		loop_fd(d->sigfd, ZMQ_POLLIN, loop_on_signal, d);
}

static struct loop_io *
io_add(void *sock, int fd, int events, loop_io_fn fn, void *arg)
{
	struct loop_io *io;

	if ((io = calloc(1, sizeof(*io))) == NULL)
		fatal("loop");
	io->sock = sock;
	io->fd = fd;
	io->events = events;
	io->fn = fn;
	io->arg = arg;
	L.io = grow(L.io, &L.capio, L.nio, sizeof(*L.io));
	L.io[L.nio++] = io;
	return io;
}

struct loop_io *
loop_fd(int fd, int events, loop_io_fn fn, void *arg)
{
	return io_add(NULL, fd, events, fn, arg);
}

struct loop_io *
loop_socket(void *zsock, int events, loop_io_fn fn, void *arg)
{
	return io_add(zsock, -1, events, fn, arg);
}

void
loop_io_events(struct loop_io *io, int events)
{
	io->events = events;
}

void
loop_io_del(struct loop_io *io)
{
	if (io == NULL)
		return;
	io->dead = 1;
	L.sweep = 1;
}

void
loop_source(const struct loop_source *ops, void *arg)
{
	struct loop_src *s;

	if ((s = reallocarray(L.src, L.nsrc + 1, sizeof(*s))) == NULL)
		fatal("loop");
	L.src = s;
	L.src[L.nsrc++] = (struct loop_src){ ops, arg, 0, 0 };
}

struct loop_timer *
loop_timer(uint64_t ms, int periodic, loop_fn fn, void *arg)
{
	struct loop_timer *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		fatal("loop");
	t->fn = fn;
	t->arg = arg;
	t->period = periodic ? (ms ? ms : 1) : 0;
	loop_timer_set(t, ms);
	L.tm = grow(L.tm, &L.captm, L.ntm, sizeof(*L.tm));
	L.tm[L.ntm++] = t;
	return t;
}

void
loop_timer_set(struct loop_timer *t, uint64_t ms)
{
	t->when = now_ms() + ms;
	if (t->when == 0)
		t->when = 1;
	if (t->period != 0 && ms != 0)
		t->period = ms;
}

void
loop_timer_stop(struct loop_timer *t)
{
	t->when = 0;
}

int
loop_timer_armed(const struct loop_timer *t)
{
	return t->when != 0;
}

void
loop_timer_del(struct loop_timer *t)
{
	if (t == NULL)
		return;
	t->when = 0;
	t->dead = 1;
	L.sweep = 1;
}

void
loop_after(loop_fn fn, void *arg)
{
	if (L.nafter == LOOP_MAX_AFTER)
		fatalx("loop: too many after-turn hooks");
	L.after[L.nafter++] = (struct loop_hook){ 0, fn, arg };
}

void
loop_signal(int sig, loop_fn fn, void *arg)
{
	if (L.nsig == LOOP_MAX_SIGNALS)
		fatalx("loop: too many signal hooks");
	L.sig[L.nsig++] = (struct loop_hook){ sig, fn, arg };
}

void
loop_counter(const char *name, const unsigned long *value)
{
	pthread_mutex_lock(&cmtx);
	if (ncounters == LOOP_MAX_COUNTERS) {
		pthread_mutex_unlock(&cmtx);
		fatalx("loop: too many counters (%s)", name);
	}
	cname[ncounters] = name;
	cptr[ncounters] = value;
	csnap[ncounters++] = *value;
	pthread_mutex_unlock(&cmtx);
}

size_t
loop_counters(void (*fn)(const char *, unsigned long, void *), void *arg)
{
	size_t i, n;

	pthread_mutex_lock(&cmtx);
	n = ncounters;
	for (i = 0; i < n; i++)
		fn(cname[i], csnap[i], arg);
	pthread_mutex_unlock(&cmtx);
	return n;
}

/* The counters' values, for readers on other threads. */
static void
counters_snapshot(void)
{
	size_t i;

	pthread_mutex_lock(&cmtx);
	for (i = 0; i < ncounters; i++)
		csnap[i] = *cptr[i];
	pthread_mutex_unlock(&cmtx);
}

/* Free what was deleted during the turn, keeping the order of the rest. */
static void
loop_sweep(void)
{
	size_t i, j;

	if (!L.sweep)
		return;
	for (i = j = 0; i < L.nio; i++)
		if (L.io[i]->dead)
			free(L.io[i]);
		else
			L.io[j++] = L.io[i];
	L.nio = j;
	for (i = j = 0; i < L.ntm; i++)
		if (L.tm[i]->dead)
			free(L.tm[i]);
		else
			L.tm[j++] = L.tm[i];
	L.ntm = j;
	L.sweep = 0;
}

/* ms to the nearest armed timer or source's wish, at most max_ms. */
static long
loop_wait(long max_ms, uint64_t now)
{
	long ms = max_ms, t;
	size_t i;

	for (i = 0; i < L.ntm; i++) {
		if (L.tm[i]->when == 0)
			continue;
		t = L.tm[i]->when <= now ? 0 : (long)(L.tm[i]->when - now);
		if (t < ms)
			ms = t;
	}
	for (i = 0; i < L.nsrc; i++)
		if (L.src[i].ops->timeout != NULL &&
		    (t = L.src[i].ops->timeout(L.src[i].arg)) >= 0 && t < ms)
			ms = t;
	return ms;
}

/*
 * Fire each timer due at now, earliest first.  A periodic one is armed
 * again from now (no burst to catch up after a long turn); a timer armed
 * by a callback for now or earlier waits for the next turn.
 */
static void
loop_timers(uint64_t now)
{
	struct loop_timer *t;
	size_t i, n;

	for (n = L.ntm; n > 0; n--) {
		t = NULL;
		for (i = 0; i < L.ntm; i++)
			if (L.tm[i]->when != 0 && L.tm[i]->when <= now &&
			    (t == NULL || L.tm[i]->when < t->when))
				t = L.tm[i];
		if (t == NULL)
			return;
		t->when = t->period ? now + t->period : 0;
		t->fn(t->arg);
		if (t->when != 0 && t->when <= now)
			t->when = now + 1;
	}
}

static size_t
loop_items(void)
{
	size_t i, n, need;

	need = L.nio + L.nsrc * LOOP_SOURCE_ITEMS;
	if (need > L.capitems) {
		free(L.items);
		if ((L.items = calloc(need, sizeof(*L.items))) == NULL)
			fatal("loop");
		L.capitems = need;
	}
	for (i = 0; i < L.nio; i++)
		L.items[i] = (zmq_pollitem_t){ L.io[i]->sock, L.io[i]->fd,
		    (short)L.io[i]->events, 0 };
	n = L.nio;
	for (i = 0; i < L.nsrc; i++) {
		L.src[i].first = (int)n;
		L.src[i].n = L.src[i].ops->pollitems(L.src[i].arg,
		    L.items + n, LOOP_SOURCE_ITEMS);
		n += (size_t)L.src[i].n;
	}
	return n;
}

void
loop_once(long max_ms)
{
	size_t i, n, nio;
	uint64_t now;

	n = loop_items();
	nio = L.nio;
	if (zmq_poll(L.items, (int)n, loop_wait(max_ms, now_ms())) == -1 &&
	    errno != EINTR)
		fatal("zmq_poll");
	/* the descriptors registered before the poll, in their order */
	for (i = 0; i < nio; i++)
		if (!L.io[i]->dead && L.items[i].revents != 0)
			L.io[i]->fn(L.io[i]->arg, L.items[i].revents);
	for (i = 0; i < L.nsrc; i++)
		L.src[i].ops->dispatch(L.src[i].arg, L.items + L.src[i].first,
		    L.src[i].n);
	now = now_ms();
	loop_timers(now);
	for (i = 0; i < L.nafter; i++)
		L.after[i].fn(L.after[i].arg);
	loop_sweep();
	counters_snapshot();
	health_beat();
}

int
loop_run(void)
{
	while (L.stop == -1)
		loop_once(LOOP_MAX_WAIT_MS);
	return L.stop;
}

void
loop_stop(void)
{
	L.stop = 0;
}

uint64_t
loop_uptime_ms(void)
{
	return now_ms() - L.start;
}

void
loop_free(void)
{
	size_t i;

	for (i = 0; i < L.nio; i++)
		free(L.io[i]);
	for (i = 0; i < L.ntm; i++)
		free(L.tm[i]);
	free(L.io);
	free(L.tm);
	free(L.src);
	free(L.items);
	pthread_mutex_lock(&cmtx);
	ncounters = 0;
	pthread_mutex_unlock(&cmtx);
	memset(&L, 0, sizeof(L));
	L.stop = -1;
}
