/*
 * applyd — runs beside one proxy and makes it serve what renderd rendered.
 *
 * For each new CONFIG: write it to a temporary file, validate it with the
 * proxy's own checker, rename it over the served file, and reload (or start)
 * the proxy.  Whatever fails, the last good configuration stays in place on
 * disk and in the running proxy, and the apply is retried with backoff.  The
 * generation served is acknowledged to allocd, which writes an address back
 * only once every proxy serves it.
 *
 * The check and the reload (or start) are jobs (job.c) that the loop
 * follows while it goes on reading the bus and acknowledging: applying a
 * generation goes idle -> checking -> reloading or starting -> idle, the
 * generation served (acked) or failed (the last good kept, a retry after a
 * backoff).  A generation that arrives meanwhile waits in want, the latest
 * replacing any other, and is applied once the job ends.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "proxy.h"

#define ACK_EVERY_MS	5000
#define RETRY_MIN_MS	500
#define RETRY_MAX_MS	30000

static struct config		 conf;
static const struct proxy_conf	*pc;
static struct proxy		 proxy;
static struct consumer		 feed;
static void			*alloc_sock;
static struct event		 want;		/* latest CONFIG received */
static struct event		 cur;		/* the one being applied */
static enum { IDLE, CHECKING, RELOADING, STARTING } state;
static const char *const	 states[] = { "idle", "checking", "reloading",
				     "starting" };
static char			 check_path[PATH_MAX + 8];
static char			*good;		/* text the proxy serves */
static uint64_t			 good_gen;
static uint64_t			 retry_at, retry_ms = RETRY_MIN_MS;
static uint64_t			 ack_seq;
static unsigned long		 failures;
static uint64_t			 fail_gen;	/* the last that failed */
static char			 fail_what[64];

/* The latest CONFIG becomes want, its ~2 MB text taken, not copied. */
static void
on_config(struct event *ev, void *arg)
{
	(void)arg;
	if (ev->type != EV_CONFIG || strcmp(ev->kind, pc->kind) != 0)
		return;
	if (state != IDLE && want.type != EV_CONFIG)
		log_info("generation %llu waits for the %s of %llu",
		    (unsigned long long)ev->seq, states[state],
		    (unsigned long long)cur.seq);
	else if (state != IDLE)		/* the one waiting is replaced */
		log_debug("generation %llu replaces %llu, waiting",
		    (unsigned long long)ev->seq,
		    (unsigned long long)want.seq);
	if (feed.syncing)
		ev->has &= ~F_WT;	/* caught up: it converged before */
	metrics_superseded(ev, &want);	/* want's changes wait in ev */
	event_free(&want);
	want = *ev;
	ev->text = NULL;
	ev->backends = NULL;
	ev->held = NULL;
	retry_at = 0;
	retry_ms = RETRY_MIN_MS;
}

static const struct consumer_ops feed_ops = { .take = on_config };

/* Write text to path atomically: a temporary file, fsync, rename. */
static int
write_file(const char *path, const char *text, size_t len)
{
	char tmp[PATH_MAX + 8];

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	if (proxy_put_file(tmp, text, len, 0600) == -1)
		return -1;
	return rename(tmp, path);
}

static int
cmp_u16(const void *x, const void *y)
{
	return (int)*(const uint16_t *)x - (int)*(const uint16_t *)y;
}

/*
 * The status allocd writes addresses by: the generation served, the routed
 * ports in it that another program holds (not served), and the last
 * generation that could not be applied, while it stands.
 */
static void
ack(void)
{
	/*
	 * While a job runs, the driver's held ports are those of the
	 * candidate (probed for its check), not of what is served: the
	 * last ones said stand until it ends.
	 */
	static uint16_t held[EV_MAX_HELD];
	static size_t n;
	struct event ev;
	size_t i;

	if (state == IDLE) {
		n = proxy.ops->held == NULL ? 0 :
		    proxy.ops->held(&proxy, good, held, EV_MAX_HELD);
		qsort(held, n, sizeof(held[0]), cmp_u16);
	}
	if (good_gen == 0 && fail_gen == 0)
		return;
	event_init(&ev, EV_APPLIED);
	ev.seq = ++ack_seq;
	ev.time = now_ms();
	event_set_str(&ev, F_PROXY, pc->name);
	ev.gen = good_gen;
	ev.has |= F_GEN;
	for (i = 0; i < n; i++)
		event_add_held(&ev, held[i]);	/* a repeat is dropped */
	if (fail_gen > good_gen) {
		ev.fgen = fail_gen;
		ev.has |= F_FGEN;
		event_set_str(&ev, F_WHY, fail_what);
	}
	if (bus_send(alloc_sock, &ev) == -1)
		log_warn("APPLIED");
	event_free(&ev);
}

/*
 * Applying cur failed: the last good keeps serving.  A newer generation
 * waiting is applied at once; else cur is tried again after a backoff.
 */
static void
failed(const char *what, const char *err)
{
	char msg[640];

	failures++;
	metrics_inc(M_APPLY_FAILURES, 0);
	snprintf(msg, sizeof(msg), "generation %llu: %s: %s",
	    (unsigned long long)cur.seq, what, err);
	health_set_error(msg);
	fail_gen = cur.seq;
	if (want.type == EV_CONFIG) {
		log_warnx("generation %llu: %s: %s; last good generation "
		    "%llu keeps serving, %llu is next",
		    (unsigned long long)cur.seq, what, err,
		    (unsigned long long)good_gen,
		    (unsigned long long)want.seq);
		event_free(&cur);
	} else {
		log_warnx("generation %llu: %s: %s; last good generation "
		    "%llu keeps serving, retry in %llu ms",
		    (unsigned long long)cur.seq, what, err,
		    (unsigned long long)good_gen,
		    (unsigned long long)retry_ms);
		want = cur;
		event_init(&cur, EV_NONE);
		retry_at = now_ms() + retry_ms;
		retry_ms = retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS :
		    retry_ms * 2;
	}
	state = IDLE;
	/* the routes waiting for it are told why: nothing outside in it */
	snprintf(fail_what, sizeof(fail_what), "%s", what);
	ack();
}

/*
 * A rendered configuration on disk, as the proxy must read it (HAProxy:
 * without the ports another program holds); probe at a start or reload.
 */
static int
write_config(const char *path, const char *text, size_t len, int probe)
{
	char *s = NULL;
	int rc;

	if (proxy.ops->served != NULL)
		s = proxy.ops->served(&proxy, text, probe);
	rc = s != NULL ? write_file(path, s, strlen(s)) :
	    write_file(path, text, len);
	free(s);
	return rc;
}

/* What a configuration needs beside it (HAProxy's maps), on disk. */
static int
write_files(const char *text)
{
	return proxy.ops->files == NULL ? 0 : proxy.ops->files(&proxy, text);
}

/* Put the last good configuration back on disk, for the next (re)start. */
static void
restore_good(void)
{
	if (good == NULL)
		return;
	if (write_config(pc->config, good, strlen(good), 0) == -1 ||
	    write_files(good) == -1)
		log_warn("restore %s", pc->config);
}

/* cur's text is served now: it moves to good (cur is done with it). */
static void
now_good(void)
{
	free(good);
	good = cur.text;
	cur.text = NULL;
	cur.textlen = 0;
	good_gen = cur.seq;
}

/*
 * cur is served (how: MV_CHANGE_*): acknowledged, and the next generation
 * may go.
 */
static void
served(unsigned how)
{
	static const char *const said[] = {
		[MV_CHANGE_RELOAD] = "reloaded", [MV_CHANGE_START] = "started",
	};

	metrics_served(&cur, how);
	now_good();
	if (how < sizeof(said) / sizeof(said[0]) && said[how] != NULL)
		log_info("serving generation %llu (%s)",
		    (unsigned long long)good_gen, said[how]);
	state = IDLE;		/* before ack(): the held ports are good's now */
	ack();
	event_free(&cur);
	retry_at = 0;
	retry_ms = RETRY_MIN_MS;
}

/*
 * Change the running proxy without a reload when the driver can: 1 done,
 * 0 not possible this time.  The files on disk follow, so that a reload
 * or a restart serves the same.
 */
static int
apply_live(void)
{
	char err[512];
	int rc;

	if (proxy.ops->update == NULL || good == NULL || !pc->live)
		return 0;
	if ((rc = proxy.ops->update(&proxy, good, cur.text, err,
	    sizeof(err))) == 1)
		return 0;
	if (rc == -1) {
		log_warnx("generation %llu: %s; reloading instead",
		    (unsigned long long)cur.seq, err);
		return 0;
	}
	if (write_config(pc->config, cur.text, cur.textlen, 0) == -1 ||
	    write_files(cur.text) == -1)
		log_warn("%s", pc->config);
	served(MV_CHANGE_RUNTIME);
	log_debug("serving generation %llu (live)",
	    (unsigned long long)good_gen);
	return 1;
}

/*
 * The checker passed: the candidate becomes the served file, and the
 * proxy reloads it (or starts with it).  rc 1: a job follows.
 */
static void
checked(void)
{
	char err[512];
	int rc, running = proxy.ops->running(&proxy);

	if (rename(check_path, pc->config) == -1) {
		snprintf(err, sizeof(err), "rename: %s", strerror(errno));
		failed("install failed", err);
		return;
	}
	state = running ? RELOADING : STARTING;
	rc = running ? proxy.ops->reload(&proxy, err, sizeof(err)) :
	    proxy.ops->start(&proxy, err, sizeof(err));
	if (rc == 0)
		served(running ? MV_CHANGE_RELOAD : MV_CHANGE_START);
	else if (rc == -1) {
		restore_good();
		failed(running ? "reload failed" : "start failed", err);
	}
}

static void
check_failed(const char *err)
{
	char what[64];

	snprintf(what, sizeof(what), "%s refused it", proxy.ops->checker);
	unlink(check_path);
	restore_good();
	failed(what, err);
}

/* A job ended (job.c): the next step of the apply. */
static void
job_done(struct proxy *p, int rc, const char *err)
{
	(void)p;
	switch (state) {
	case CHECKING:
		if (rc == 0)
			checked();
		else
			check_failed(err);
		break;
	case RELOADING:
	case STARTING:
		if (rc == 0)
			served(state == RELOADING ? MV_CHANGE_RELOAD :
			    MV_CHANGE_START);
		else {
			restore_good();
			failed(state == RELOADING ? "reload failed" :
			    "start failed", err);
		}
		break;
	case IDLE:
		fatalx("a proxy job ended with no apply under way");
	}
}

/*
 * Begin applying the latest generation received, unless a job runs or a
 * retry waits: at once when it is what is served or the runtime API can
 * make it so, else through a check and a reload (or start).
 */
static void
apply(void)
{
	char err[512];
	int rc;

	if (state != IDLE || want.type != EV_CONFIG ||
	    (retry_at != 0 && now_ms() < retry_at))
		return;
	cur = want;
	event_init(&want, EV_NONE);
	if (proxy.ops->running(&proxy) && good != NULL &&
	    strcmp(good, cur.text) == 0) {
		/* the same text: nothing to reload, but a newer generation */
		served(MV_CHANGE_SAME);
		return;
	}
	if (proxy.ops->running(&proxy) && apply_live())
		return;
	snprintf(check_path, sizeof(check_path), "%s.check", pc->config);
	if (write_config(check_path, cur.text, cur.textlen, 1) == -1 ||
	    write_files(cur.text) == -1) {
		snprintf(err, sizeof(err), "%s", strerror(errno));
		failed("write failed", err);
		return;
	}
	state = CHECKING;
	log_info("generation %llu: %s checks it", (unsigned long long)cur.seq,
	    proxy.ops->checker);
	if ((rc = proxy.ops->check(&proxy, check_path, err,
	    sizeof(err))) == 0)
		checked();
	else if (rc == -1)
		check_failed(err);
}

/* Apply what is served again, as a (re)start: the proxy died, or asks. */
static void
reapply_good(void)
{
	if (state != IDLE || want.type == EV_CONFIG || good == NULL)
		return;		/* a newer one is on its way in anyway */
	event_init(&want, EV_CONFIG);
	event_set_str(&want, F_KIND, pc->kind);
	event_set_text(&want, good, strlen(good));
	want.seq = good_gen;
	free(good);
	good = NULL;
}

static void
on_alloc_sock(void *arg, int revents)
{
	struct event ev;
	int rc;

	(void)arg;
	(void)revents;
	while ((rc = bus_recv(alloc_sock, &ev, NULL)) != 0)
		if (rc == 1)
			event_free(&ev);
}

static void
on_sigchld(void *arg)
{
	(void)arg;
	proxy_reap(&proxy);
}

/*
 * Every ACK_EVERY_MS: allocd may have missed the last ack; the driver's
 * idle work, but not during a job: its workers are changing.
 */
static void
every_ack(void *arg)
{
	(void)arg;
	ack();
	if (proxy.ops->idle != NULL && state == IDLE &&
	    proxy.ops->running(&proxy) && proxy.ops->idle(&proxy) == 1)
		reapply_good();
}

/* The job under way, as a source of the loop: its pipe, its next look. */
static int
job_pollitems(void *arg, zmq_pollitem_t *items, int max)
{
	(void)arg;
	if (max < 1 || proxy_job_fd(&proxy) == -1)
		return 0;
	items[0] = (zmq_pollitem_t){ NULL, proxy_job_fd(&proxy), ZMQ_POLLIN,
	    0 };
	return 1;
}

static void
job_dispatch(void *arg, const zmq_pollitem_t *items, int n)
{
	(void)arg;
	(void)items;
	(void)n;
	proxy_job_run(&proxy);	/* the job's next step, if it is due */
}

static long
job_timeout(void *arg)
{
	(void)arg;
	return proxy_job_wait(&proxy, now_ms());
}

static const struct loop_source job_source = {
	job_pollitems, job_dispatch, job_timeout
};

/* Its firing is a turn: the after-turn hook retries the apply. */
static void
retry_wake(void *arg)
{
	(void)arg;
}

/*
 * After each turn: a proxy that died gets back what it served, and the
 * latest CONFIG is applied (unless a job runs or a retry waits; then the
 * loop wakes for it).  Not asked during a job whether the proxy runs: a
 * master that re-executes itself for a reload is not itself in /proc for
 * a moment, and the job sees a real exit anyway.  Ready while the proxy
 * runs and serves a generation.
 */
static void
after_turn(void *arg)
{
	struct loop_timer *retry = arg;
	uint64_t now;
	int running;

	if (state == IDLE && !proxy.ops->running(&proxy))
		reapply_good();
	apply();
	if (retry_at != 0) {
		now = now_ms();
		loop_timer_set(retry, retry_at > now ? retry_at - now : 0);
	}
	if (state == IDLE) {
		running = proxy.ops->running(&proxy);
		if (running && good_gen != 0)
			health_set_ready(1, NULL);
		else
			health_set_ready(0, good_gen == 0 && !running ?
			    "waiting for a first generation from renderd" :
			    "waiting for the proxy to run again");
	}
	health_set_position(feed.last, good_gen);
}

int
main(int argc, char **argv)
{
	struct daemon d;
	char ready[96];

	daemon_start(&d, argc, argv, "applyd", DAEMON_PROXY, &conf);
	pc = config_proxy(&conf, d.proxy);
	if (proxy_init(&proxy, &conf, pc) == -1)
		fatalx("no driver for proxy kind %s", pc->kind);
	event_init(&want, EV_NONE);
	event_init(&cur, EV_NONE);
	proxy.done = job_done;
	/*
	 * An adopted proxy may not serve what is on disk (an earlier applyd
	 * may have died between rename and reload): with no last good text,
	 * the first CONFIG reloads it for certain.
	 */
	proxy.ops->adopt(&proxy);

	alloc_sock = bus_socket(ZMQ_DEALER);
	if (bus_connect(alloc_sock, conf.alloc_in) == -1)
		fatalx("cannot connect to allocd");
	consumer_init(&feed, "renderd feed", pc->pub, pc->sync, 1, &feed_ops,
	    NULL);
	consumer_register(&feed);
	loop_socket(alloc_sock, ZMQ_POLLIN, on_alloc_sock, NULL);
	loop_signal(SIGCHLD, on_sigchld, NULL);
	loop_source(&job_source, NULL);
	loop_timer(ACK_EVERY_MS, 1, every_ack, NULL);
	loop_after(after_turn, loop_timer(0, 0, retry_wake, NULL));
	loop_counter("apply_failures", &failures);
	snprintf(ready, sizeof(ready), "applyd-%s", pc->name);
	if (daemon_ready(&d, ready) == -1)
		fatal("pid file");
	health_set_ready(0, "waiting for a first generation from renderd");
	log_info("ready for proxy %s, serving %s", pc->name,
	    pc->config);

	every_ack(NULL);
	loop_run();
	log_info("stopping %s and exiting", pc->kind);
	loop_free();
	proxy_job_cancel(&proxy);
	proxy.ops->stop(&proxy);
	consumer_close(&feed);
	bus_close(alloc_sock);
	zmq_ctx_term(bus_ctx());
	event_free(&want);
	event_free(&cur);
	free(good);
	return 0;
}
