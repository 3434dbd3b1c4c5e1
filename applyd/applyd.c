/*
 * applyd — runs beside one proxy and makes it serve what renderd rendered.
 *
 * For each new CONFIG: write it to a temporary file, validate it with the
 * proxy's own checker, rename it over the served file, and reload (or start)
 * the proxy.  Whatever fails, the last good configuration stays in place on
 * disk and in the running proxy, and the apply is retried with backoff.  The
 * generation served is acknowledged to allocd, which writes an address back
 * only once every proxy serves it.
 */
#include <sys/wait.h>

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
#include "metrics.h"
#include "loop.h"
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
	uint16_t held[EV_MAX_HELD];
	struct event ev;
	size_t n = 0, i;

	if (good_gen == 0 && fail_gen == 0)
		return;
	event_init(&ev, EV_APPLIED);
	ev.seq = ++ack_seq;
	ev.time = now_ms();
	event_set_str(&ev, F_PROXY, pc->name);
	ev.gen = good_gen;
	ev.has |= F_GEN;
	if (proxy.ops->held != NULL)
		n = proxy.ops->held(&proxy, good, held, EV_MAX_HELD);
	qsort(held, n, sizeof(held[0]), cmp_u16);
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

static void
failed(const char *what, const char *err)
{
	char msg[640];

	failures++;
	metrics_inc(M_APPLY_FAILURES, 0);
	snprintf(msg, sizeof(msg), "generation %llu: %s: %s",
	    (unsigned long long)want.seq, what, err);
	health_set_error(msg);
	log_warnx("generation %llu: %s: %s; last good generation "
	    "%llu keeps serving, retry in %llu ms",
	    (unsigned long long)want.seq, what, err,
	    (unsigned long long)good_gen, (unsigned long long)retry_ms);
	retry_at = now_ms() + retry_ms;
	retry_ms = retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
	/* the routes waiting for it are told why: nothing outside in it */
	fail_gen = want.seq;
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

/* want's text is served now: it moves to good (want is done with it). */
static void
now_good(void)
{
	free(good);
	good = want.text;
	want.text = NULL;
	want.textlen = 0;
	good_gen = want.seq;
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
	if ((rc = proxy.ops->update(&proxy, good, want.text, err,
	    sizeof(err))) == 1)
		return 0;
	if (rc == -1) {
		log_warnx("generation %llu: %s; reloading instead",
		    (unsigned long long)want.seq, err);
		return 0;
	}
	if (write_config(pc->config, want.text, want.textlen, 0) == -1 ||
	    write_files(want.text) == -1)
		log_warn("%s", pc->config);
	now_good();
	log_debug("serving generation %llu (live)",
	    (unsigned long long)good_gen);
	return 1;
}

static void
apply(void)
{
	char path[PATH_MAX + 8], err[512], what[64];
	int running = proxy.ops->running(&proxy);

	if (want.type != EV_CONFIG || (retry_at != 0 && now_ms() < retry_at))
		return;
	if (running && good != NULL && strcmp(good, want.text) == 0) {
		/* the same text: nothing to reload, but a newer generation */
		good_gen = want.seq;
		metrics_served(&want, MV_CHANGE_SAME);
		goto done;
	}
	if (running && apply_live()) {
		metrics_served(&want, MV_CHANGE_RUNTIME);
		goto done;
	}
	snprintf(path, sizeof(path), "%s.check", pc->config);
	if (write_config(path, want.text, want.textlen, 1) == -1 ||
	    write_files(want.text) == -1) {
		snprintf(err, sizeof(err), "%s", strerror(errno));
		failed("write failed", err);
		return;
	}
	if (proxy.ops->check(&proxy, path, err, sizeof(err)) == -1) {
		snprintf(what, sizeof(what), "%s refused it", proxy.ops->checker);
		failed(what, err);
		unlink(path);
		restore_good();
		return;
	}
	if (rename(path, pc->config) == -1) {
		snprintf(err, sizeof(err), "rename: %s", strerror(errno));
		failed("install failed", err);
		return;
	}
	if ((running ? proxy.ops->reload(&proxy, err, sizeof(err)) :
	    proxy.ops->start(&proxy, err, sizeof(err))) == -1) {
		restore_good();
		failed(running ? "reload failed" : "start failed", err);
		return;
	}
	now_good();
	metrics_served(&want, running ? MV_CHANGE_RELOAD : MV_CHANGE_START);
	log_info("serving generation %llu (%s)",
	    (unsigned long long)good_gen, running ? "reloaded" : "started");
 done:
	ack();
	event_free(&want);
	retry_at = 0;
	retry_ms = RETRY_MIN_MS;
}

/* Apply what is served again, as a (re)start: the proxy died, or asks. */
static void
reapply_good(void)
{
	if (want.type == EV_CONFIG || good == NULL)
		return;		/* a newer one is on its way in anyway */
	event_init(&want, EV_CONFIG);
	event_set_str(&want, F_KIND, pc->kind);
	event_set_text(&want, good, strlen(good));
	want.seq = good_gen;
	free(good);
	good = NULL;
}

static void
reap(void *arg)
{
	pid_t pid;
	int status;

	(void)arg;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		proxy.ops->reaped(&proxy, pid, status);
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

/* Every ACK_EVERY_MS: allocd may have missed the last ack; idle work. */
static void
every_ack(void *arg)
{
	(void)arg;
	ack();
	if (proxy.ops->idle != NULL && proxy.ops->running(&proxy) &&
	    proxy.ops->idle(&proxy) == 1)
		reapply_good();
}

/* Its firing is a turn: the after-turn hook retries the apply. */
static void
retry_wake(void *arg)
{
	(void)arg;
}

/*
 * After each turn: a proxy that died gets back what it served, and the
 * latest CONFIG is applied (unless a retry waits; then the loop wakes for
 * it).  Ready while the proxy runs and serves a generation.
 */
static void
after_turn(void *arg)
{
	struct loop_timer *retry = arg;
	uint64_t now;
	int running;

	if (!proxy.ops->running(&proxy))
		reapply_good();	/* it died: bring back what it served */
	apply();
	if (retry_at != 0) {
		now = now_ms();
		loop_timer_set(retry, retry_at > now ? retry_at - now : 0);
	}
	running = proxy.ops->running(&proxy);
	if (running && good_gen != 0)
		health_set_ready(1, NULL);
	else
		health_set_ready(0, good_gen == 0 && !running ?
		    "waiting for a first generation from renderd" :
		    "waiting for the proxy to run again");
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
	loop_signal(SIGCHLD, reap, NULL);
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
	proxy.ops->stop(&proxy);
	consumer_close(&feed);
	bus_close(alloc_sock);
	zmq_ctx_term(bus_ctx());
	event_free(&want);
	free(good);
	return 0;
}
