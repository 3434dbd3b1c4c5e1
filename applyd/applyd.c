/*
 * applyd — runs beside one proxy and makes it serve renderd's route table.
 *
 * It follows renderd's feed: the whole table when it catches up, then one
 * item for each route that changes (renderd/routes.h).  It keeps two
 * tables: the latest received, and the one its proxy serves.  From those
 * two alone it decides what can change at run time (the driver's update
 * op, HAProxy's runtime API) and what needs a reload, and it renders the
 * files its proxy reads with the very renderers renderd -T uses.  Nothing
 * here reads a configuration back.
 *
 * Small changes do not wait behind big ones: the ports that changed are
 * taken cluster by cluster, the cluster with the fewest server changes
 * first, a bounded number of server changes a loop turn; a cluster whose
 * change is too large for the runtime API goes in one reload, after the
 * small ones are live.
 *
 * A reload or a start writes the configuration to a temporary file,
 * validates it with the proxy's own checker, renames it over the served
 * file.  Whatever fails, the last good configuration stays in place on
 * disk and in the running proxy, and the apply is retried with backoff.
 * The generation served is acknowledged to allocd, which writes an address
 * back only once every proxy serves it.
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
#include "log.h"
#include "plan.h"
#include "proxy.h"

#define ACK_EVERY_MS	5000
#define RETRY_MIN_MS	500
#define RETRY_MAX_MS	30000
/*
 * Server changes (a server added, removed or reweighted; a map key) for
 * one loop turn of runtime API commands, and the most one cluster's change
 * may cost before it is cheaper to reload (HAProxy takes ~20 us a command
 * and ~1 s a reload with 10,000 ports).
 */
#define LIVE_SLICE	512
#define LIVE_CLUSTER_MAX	20000

static struct config		 conf;
static const struct proxy_conf	*pc;
static struct proxy		 proxy;
static struct consumer		 feed;
static void			*alloc_sock;

static struct routes		 table;		/* received, at feed.last */
static struct routes		 served;	/* the proxy's, at good_gen */
static int			 have_good;	/* served was served once */
static int			 live_ok;	/* the running proxy serves it */
static int			 pending;	/* table is newer than served */
static int			 full_diff;	/* compare every entry */
static int			 files_stale;	/* disk lags behind served */
static unsigned char		 dirty[65536 / 8];
static unsigned			 dlist[65536];	/* the dirty ports */
static unsigned			 ndirty;
static int			 api_dirty;

static uint64_t			 good_gen;
static uint64_t			 retry_at, retry_ms = RETRY_MIN_MS;
static uint64_t			 ack_seq;
static unsigned long		 failures, reloads, lives;
static uint64_t			 fail_gen;	/* the last that failed */
static char			 fail_what[64];

#define DIRTY(p)	(dirty[(p) >> 3] & (1u << ((p) & 7)))

static void
mark_port(unsigned p)
{
	if (DIRTY(p))
		return;
	dirty[p >> 3] |= 1u << (p & 7);
	dlist[ndirty++] = p;
}

static void
on_item(const struct event *ev, void *arg)
{
	(void)arg;
	if (!routes_apply(&table, ev))
		return;
	switch (ev->type) {
	case EV_RT_PORT:
	case EV_RT_PORT_DEL:
		mark_port((unsigned)ev->port);
		break;
	case EV_RT_API:
	case EV_RT_API_DEL:
		api_dirty = 1;
		break;
	}
	pending = 1;
}

/* A new table follows (renderd's STATE): compared whole once it is in. */
static void
on_reset(void *arg)
{
	(void)arg;
	routes_clear(&table);
	full_diff = 1;
	pending = 1;
}

static void
on_synced(void *arg)
{
	(void)arg;
	pending = 1;	/* an empty table is applied too: the proxy starts */
}

static const struct consumer_ops feed_ops = {
	.apply = on_item,
	.reset = on_reset,
	.synced = on_synced,
};

/* Every port whose entry differs between served and table is dirty. */
static void
diff_all(void)
{
	unsigned p;

	for (p = 1; p < 65536; p++)
		if (!routes_port_same(served.ports[p], table.ports[p]))
			mark_port(p);
	api_dirty = 1;
}

/* Drop from the dirty list what is the same in both tables. */
static void
dirty_prune(void)
{
	unsigned i, n = 0, p;

	for (i = 0; i < ndirty; i++) {
		p = dlist[i];
		if (routes_port_same(served.ports[p], table.ports[p]))
			dirty[p >> 3] &= ~(1u << (p & 7));
		else
			dlist[n++] = p;
	}
	ndirty = n;
	if (api_dirty && routes_api_same(&served, &table))
		api_dirty = 0;
}

static void
dirty_clear(void)
{
	memset(dirty, 0, sizeof(dirty));
	ndirty = 0;
	api_dirty = 0;
}

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

/* The held ports of the proxy (NULL: none); probe: look again. */
static const unsigned char *
busy_ports(struct routes *r, int probe)
{
	return proxy.ops->busy == NULL ? NULL :
	    proxy.ops->busy(&proxy, r, probe);
}

/*
 * Table r rendered to path, as the proxy must read it (without the ports
 * another program holds: probe looks again, at a start or reload).
 */
static int
write_config(const char *path, struct routes *r, int probe)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp;
	int rc;

	r->held = busy_ports(r, probe);
	if ((fp = open_memstream(&text, &len)) == NULL)
		return -1;
	rc = routes_render(r, &conf, pc, fp);
	if (fclose(fp) != 0)
		rc = -1;
	r->held = NULL;
	if (rc == 0)
		rc = write_file(path, text, len);
	free(text);
	return rc;
}

/* What a configuration needs beside it (HAProxy's maps), on disk. */
static int
write_files(const struct routes *r)
{
	return proxy.ops->files == NULL ? 0 : proxy.ops->files(&proxy, r);
}

/*
 * The status allocd writes addresses by: the generation served, the routed
 * ports in it that another program holds (not served), and the last
 * generation that could not be applied, while it stands.
 */
static void
ack(void)
{
	const unsigned char *busy;
	struct event ev;
	unsigned p;

	if (good_gen == 0 && fail_gen == 0)
		return;
	event_init(&ev, EV_APPLIED);
	ev.seq = ++ack_seq;
	ev.time = now_ms();
	event_set_str(&ev, F_PROXY, pc->name);
	ev.gen = good_gen;
	ev.has |= F_GEN;
	if ((busy = busy_ports(&served, 0)) != NULL)
		for (p = 1; p < 65536 && ev.nheld < EV_MAX_HELD; p++)
			if (served.ports[p] != NULL &&
			    (busy[p >> 3] & (1u << (p & 7))))
				event_add_held(&ev, p);
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
	failures++;
	log_warnx("generation %llu: %s: %s; last good generation "
	    "%llu keeps serving, retry in %llu ms",
	    (unsigned long long)feed.last, what, err,
	    (unsigned long long)good_gen, (unsigned long long)retry_ms);
	retry_at = now_ms() + retry_ms;
	retry_ms = retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
	/* the routes waiting for it are told why: nothing outside in it */
	fail_gen = feed.last;
	snprintf(fail_what, sizeof(fail_what), "%s", what);
	ack();
}

/* Put the last good configuration back on disk, for the next (re)start. */
static void
restore_good(void)
{
	if (!have_good)
		return;
	if (write_config(pc->config, &served, 0) == -1 ||
	    write_files(&served) == -1)
		log_warn("restore %s", pc->config);
}

static void sync_files(void);

/*
 * served is the table now, and the proxy serves it (how: for the log, or
 * NULL when the caller says it).  The files follow
 * before the ack (the proxy serves the change already: the first byte
 * does not wait for them), so that what allocd is told is on disk.
 */
static void
now_served(const char *how)
{
	good_gen = feed.last;
	have_good = live_ok = 1;
	pending = 0;
	retry_at = 0;
	retry_ms = RETRY_MIN_MS;
	sync_files();
	ack();
	if (how != NULL)
		log_debug("serving generation %llu (%s)",
		    (unsigned long long)good_gen, how);
}

/*
 * One slice of the change through the driver's update: 0 all of it is
 * served now, 1 more slices follow (next loop turn), 2 the rest needs a
 * reload (too large for the runtime API, or refused by it).
 */
static int
apply_live(void)
{
	unsigned *ports, i, n, left;
	char err[512];
	int rc, api = api_dirty;

	if (proxy.ops->update == NULL || !pc->live)
		return 2;
	if ((ports = calloc(ndirty + 1, sizeof(*ports))) == NULL)
		fatal("apply_live");
	n = (unsigned)plan_slice(&served, &table, dlist, ndirty, LIVE_SLICE,
	    LIVE_CLUSTER_MAX, ports);
	left = ndirty - n;
	if (n == 0 && !api) {
		free(ports);
		return 2;	/* every cluster left is too large */
	}
	rc = proxy.ops->update(&proxy, &served, &table, ports, n, api, err,
	    sizeof(err));
	if (rc != 0) {
		if (rc == -1)
			log_warnx("generation %llu: %s; reloading instead",
			    (unsigned long long)feed.last, err);
		free(ports);
		return 2;
	}
	for (i = 0; i < n; i++) {
		routes_copy_port(&served, &table, ports[i]);
		dirty[ports[i] >> 3] &= ~(1u << (ports[i] & 7));
	}
	if (api)
		routes_copy_api(&served, &table);
	api_dirty = 0;
	free(ports);
	files_stale = 1;
	lives++;
	dirty_prune();
	if (ndirty == 0)
		return 0;
	log_debug("generation %llu: %u ports live, %u to go",
	    (unsigned long long)feed.last, n, left);
	return 1;
}

/* The whole table through the checker, then a reload (or a start). */
static void
apply_reload(int running)
{
	char path[PATH_MAX + 8], err[512], what[64];

	snprintf(path, sizeof(path), "%s.check", pc->config);
	if (write_config(path, &table, 1) == -1 || write_files(&table) == -1) {
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
	routes_copy(&served, &table);
	dirty_clear();
	files_stale = 0;
	reloads++;
	now_served(NULL);
	log_info("serving generation %llu (%s): %zu api routes, %u ports",
	    (unsigned long long)good_gen, running ? "reloaded" : "started",
	    served.napi, served.nports);
}

/*
 * Bring the proxy to the table: nothing when the two tables agree, the
 * runtime API when the driver can and the change is small, otherwise a
 * reload.  Decided from the tables alone.  1 when more is to be done at
 * once (the next slice).
 */
static int
apply(void)
{
	int running;

	if (!pending || !feed.have || feed.syncing ||
	    (retry_at != 0 && now_ms() < retry_at))
		return 0;
	running = proxy.ops->running(&proxy);
	if (full_diff) {
		diff_all();
		full_diff = 0;
	}
	dirty_prune();
	if (running && live_ok) {
		if (ndirty == 0 && !api_dirty) {
			now_served("unchanged");
			return 0;
		}
		switch (apply_live()) {
		case 0:
			now_served("live");
			return 0;
		case 1:
			return 1;
		}
	}
	apply_reload(running);
	return 0;
}

/*
 * The files on disk follow what the runtime API did, so that a reload or a
 * restart serves the same; written once the proxy serves the whole table.
 */
static void
sync_files(void)
{
	if (!files_stale || pending)
		return;
	if (write_config(pc->config, &served, 0) == -1 ||
	    write_files(&served) == -1)
		log_warn("%s", pc->config);
	files_stale = 0;
}

/* Serve the table again by a (re)start or reload: the proxy died, or asks. */
static void
reapply(void)
{
	live_ok = 0;
	pending = 1;
}

static void
reap(void)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		proxy.ops->reaped(&proxy, pid, status);
}

static void
drain_acks(void)
{
	struct event ev;
	int rc;

	while ((rc = bus_recv(alloc_sock, &ev, NULL)) != 0)
		if (rc == 1)
			event_free(&ev);
}

int
main(int argc, char **argv)
{
	struct daemon d;
	zmq_pollitem_t items[4];
	uint64_t now, next_ack = 0;
	char ready[96];
	long timeout;
	int n, sig, more = 0;

	daemon_start(&d, argc, argv, "applyd", DAEMON_PROXY, &conf);
	pc = config_proxy(&conf, d.proxy);
	if (proxy_init(&proxy, &conf, pc) == -1)
		fatalx("no driver for proxy kind %s", pc->kind);
	routes_init(&table, &conf);
	routes_init(&served, &conf);
	/*
	 * An adopted proxy may not serve what is on disk (an earlier applyd
	 * may have died between rename and reload): with no table served,
	 * the first table reloads it for certain.
	 */
	proxy.ops->adopt(&proxy);

	alloc_sock = bus_socket(ZMQ_DEALER);
	if (bus_connect(alloc_sock, conf.alloc_in) == -1)
		fatalx("cannot connect to allocd");
	consumer_init(&feed, "renderd feed", pc->pub, pc->sync,
	    CONSUMER_CHAINED, &feed_ops, NULL);
	snprintf(ready, sizeof(ready), "applyd-%s", pc->name);
	if (daemon_ready(&d, ready) == -1)
		fatal("pid file");
	log_info("ready for proxy %s, serving %s", pc->name,
	    pc->config);

	for (;;) {
		now = now_ms();
		consumer_timer(&feed, now);
		if (now >= next_ack) {
			ack();		/* allocd may have missed the last */
			next_ack = now + ACK_EVERY_MS;
			if (proxy.ops->idle != NULL &&
			    proxy.ops->running(&proxy) &&
			    proxy.ops->idle(&proxy) == 1)
				reapply();
		}
		n = consumer_pollitems(&feed, items);
		items[n++] = (zmq_pollitem_t){ alloc_sock, 0, ZMQ_POLLIN, 0 };
		items[n++] = (zmq_pollitem_t){ NULL, d.sigfd, ZMQ_POLLIN, 0 };
		timeout = BUS_HEARTBEAT_MS;
		if (retry_at != 0)
			timeout = retry_at > now ? (long)(retry_at - now) : 0;
		if (more)
			timeout = 0;	/* the next slice, after the bus */
		if (zmq_poll(items, n, timeout) == -1 && errno != EINTR)
			fatal("zmq_poll");
		consumer_dispatch(&feed, items);
		if (items[2].revents & ZMQ_POLLIN)
			drain_acks();
		if (items[3].revents & ZMQ_POLLIN) {
			sig = daemon_signal(&d);
			if (sig == SIGCHLD)
				reap();
			else if (sig == SIGTERM || sig == SIGINT)
				break;
		}
		if (!proxy.ops->running(&proxy) && live_ok)
			reapply();	/* it died: bring it back */
		more = apply();
	}
	log_info("stopping %s and exiting", pc->kind);
	proxy.ops->stop(&proxy);
	consumer_close(&feed);
	bus_close(alloc_sock);
	zmq_ctx_term(bus_ctx());
	log_info("%lu reloads, %lu live changes, %lu failures", reloads,
	    lives, failures);
	routes_clear(&table);
	routes_clear(&served);
	return 0;
}
