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
 * file.  The check and the reload (or start) are jobs (job.c) the loop
 * follows while it goes on reading the bus and acknowledging: idle ->
 * checking -> reloading or starting -> idle, with the table as it was
 * when the job began (the candidate); what arrives meanwhile waits in the
 * table for the next apply.  Whatever fails, the last good configuration
 * stays in place on disk and in the running proxy, and the apply is
 * retried with backoff.
 * The generation served is acknowledged to allocd, which writes an address
 * back only once every proxy serves it.
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
/*
 * After a live change the files follow (render, write, fsync, rename: 5 ms
 * and more at 10,000 ports, all of it on the loop) once no other live
 * change came for SYNC_QUIET_MS, and at the latest SYNC_MAX_MS after the
 * first one they lack: not in the way of the proxy's first connections
 * to what just went live, and once for a burst of changes.  What allocd
 * is told waits for them (ack).
 */
#define SYNC_QUIET_MS	20
#define SYNC_MAX_MS	200

static struct config		 conf;
static const struct proxy_conf	*pc;
static struct proxy		 proxy;
static struct consumer		 feed;
static void			*alloc_sock;

static struct routes		 table;		/* received, at feed.last */
static struct routes		 served;	/* the proxy's, at good_gen */
static struct routes		 cand;		/* a job's, at cand_gen */
static uint64_t			 cand_gen;
static enum { IDLE, CHECKING, RELOADING, STARTING } state;
static const char *const	 states[] = { "idle", "checking", "reloading",
				     "starting" };
static int			 told;		/* "waits" said for this job */
static char			 check_path[PATH_MAX + 8];
/*
 * The oldest watch event (wt) and item (its time) not served yet, and
 * those of a job's candidate: what convergence is measured from.
 */
static uint64_t			 pend_wt, pend_t, cand_wt, cand_t;
static int			 have_good;	/* served was served once */
static int			 live_ok;	/* the running proxy serves it */
static int			 pending;	/* table is newer than served */
static int			 full_diff;	/* compare every entry */
static int			 files_stale;	/* disk lags behind served */
static uint64_t			 disk_gen;	/* the generation on disk */
static uint64_t			 sync_by;	/* ms, the latest file write */
static struct loop_timer	*sync_timer;
static unsigned char		 dirty[65536 / 8];
static unsigned			 dlist[65536];	/* the dirty ports */
static unsigned			 ndirty;
static int			 api_dirty;
/* a TLSRoute hostname came, went or changed (with api: the SNI names) */
static int			 sni_dirty;

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
	if (state != IDLE && !told) {
		log_info("generation %llu waits for the %s of %llu",
		    (unsigned long long)ev->seq, states[state],
		    (unsigned long long)cand_gen);
		told = 1;
	}
	/* a catch-up is history: it converged before */
	if (!feed.syncing && !feed.instate) {
		if ((ev->has & F_WT) && ev->wt != 0 &&
		    (pend_wt == 0 || ev->wt < pend_wt))
			pend_wt = ev->wt;
		if (pend_t == 0)
			pend_t = ev->time;
	}
	switch (ev->type) {
	case EV_RT_PORT:
	case EV_RT_PORT_DEL:
		mark_port((unsigned)ev->port);
		break;
	case EV_RT_API:
	case EV_RT_API_DEL:
		api_dirty = 1;
		break;
	case EV_RT_SNI:
	case EV_RT_SNI_DEL:
		sni_dirty = 1;
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
	sni_dirty = 1;
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
	if (sni_dirty && routes_sni_same(&served, &table))
		sni_dirty = 0;
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
 * The status allocd writes addresses by: the generation served and on
 * disk (while the files lag behind a live change, the one they hold: a
 * restart serves what is on disk), the routed ports in it that another
 * program holds (not served), and the last generation that could not be
 * applied, while it stands.
 */
static void
ack(void)
{
	static uint16_t held[EV_MAX_HELD];
	static size_t nheld;
	const unsigned char *busy;
	struct event ev;
	unsigned p;
	size_t i;

	if (good_gen == 0 && fail_gen == 0)
		return;
	event_init(&ev, EV_APPLIED);
	ev.seq = ++ack_seq;
	ev.time = now_ms();
	event_set_str(&ev, F_PROXY, pc->name);
	ev.gen = files_stale ? disk_gen : good_gen;
	ev.has |= F_GEN;
	/*
	 * During a job the host was probed for the candidate, and a port
	 * that came free is not bound until the reload ends: the held ports
	 * of what is served are those said before the job.
	 */
	if (state == IDLE) {
		nheld = 0;
		if ((busy = busy_ports(&served, 0)) != NULL)
			for (p = 1; p < 65536 && nheld < EV_MAX_HELD; p++)
				if (served.ports[p] != NULL &&
				    (busy[p >> 3] & (1u << (p & 7))))
					held[nheld++] = (uint16_t)p;
	}
	for (i = 0; i < nheld; i++)
		event_add_held(&ev, held[i]);
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
	    (unsigned long long)feed.last, what, err);
	health_set_error(msg);
	state = IDLE;
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
	    write_files(&served) == -1) {
		log_warn("restore %s", pc->config);
		return;
	}
	files_stale = 0;
	sync_by = 0;
	disk_gen = good_gen;
}

static void sync_soon(void);

/* Generation g is served, how (MV_CHANGE_*), of changes from wt and t. */
static void
observe_served(uint64_t g, unsigned how, uint64_t wt, uint64_t t)
{
	struct event ev;

	event_init(&ev, EV_NONE);
	ev.seq = g;
	ev.time = t != 0 ? t : now_ms();
	if (wt != 0) {
		ev.wt = wt;
		ev.has |= F_WT;
	}
	metrics_served(&ev, how);
}

/*
 * served is the table now, and the proxy serves it (how: for the log, or
 * NULL when the caller says it).  The files follow soon, and the ack
 * after them (the proxy serves the change already: the first byte does
 * not wait for them), so that what allocd is told is on disk.
 */
static void
now_served(const char *how)
{
	observe_served(feed.last, strcmp(how, "live") == 0 ?
	    MV_CHANGE_RUNTIME : MV_CHANGE_SAME, pend_wt, pend_t);
	pend_wt = pend_t = 0;
	good_gen = feed.last;
	have_good = live_ok = 1;
	pending = 0;
	retry_at = 0;
	retry_ms = RETRY_MIN_MS;
	sync_soon();
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
	/* the names on the shared TLS port: clusters' and TLSRoutes' */
	int rc, api = api_dirty || sni_dirty;

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
	if (api) {
		routes_copy_api(&served, &table);
		routes_copy_sni(&served, &table);
	}
	api_dirty = sni_dirty = 0;
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

/* A job's candidate is served: it becomes served, and is acknowledged. */
static void
reload_done(void)
{
	int started = state == STARTING;

	state = IDLE;
	routes_copy(&served, &cand);
	routes_clear(&cand);
	good_gen = disk_gen = cand_gen;
	have_good = live_ok = 1;
	files_stale = 0;
	sync_by = 0;
	reloads++;
	retry_at = 0;
	retry_ms = RETRY_MIN_MS;
	observe_served(good_gen, started ? MV_CHANGE_START : MV_CHANGE_RELOAD,
	    cand_wt, cand_t);
	cand_wt = cand_t = 0;
	/* what came meanwhile differs from served still: the next apply */
	dirty_prune();
	pending = ndirty > 0 || api_dirty || sni_dirty ||
	    good_gen != feed.last;
	ack();
	log_info("serving generation %llu (%s): %zu api routes, %u ports",
	    (unsigned long long)good_gen, started ? "started" : "reloaded",
	    served.napi, served.nports);
}

/* The candidate failed: the last good serves, the table waits for a retry. */
static void
reload_failed(const char *what, const char *err)
{
	routes_clear(&cand);
	/* its changes are not served: they still converge from then */
	if (cand_wt != 0 && (pend_wt == 0 || cand_wt < pend_wt))
		pend_wt = cand_wt;
	if (cand_t != 0 && (pend_t == 0 || cand_t < pend_t))
		pend_t = cand_t;
	cand_wt = cand_t = 0;
	restore_good();
	failed(what, err);
}

/* The checker passed: the candidate is installed, and reloaded or started. */
static void
checked(void)
{
	char err[512];
	int rc, running = proxy.ops->running(&proxy);

	if (rename(check_path, pc->config) == -1) {
		snprintf(err, sizeof(err), "rename: %s", strerror(errno));
		reload_failed("install failed", err);
		return;
	}
	state = running ? RELOADING : STARTING;
	rc = running ? proxy.ops->reload(&proxy, err, sizeof(err)) :
	    proxy.ops->start(&proxy, err, sizeof(err));
	if (rc == 0)
		reload_done();
	else if (rc == -1)
		reload_failed(running ? "reload failed" : "start failed", err);
}

static void
check_failed(const char *err)
{
	char what[64];

	snprintf(what, sizeof(what), "%s refused it", proxy.ops->checker);
	unlink(check_path);
	reload_failed(what, err);
}

/* A job ended (job.c): the next step of the reload. */
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
			reload_done();
		else
			reload_failed(state == RELOADING ? "reload failed" :
			    "start failed", err);
		break;
	case IDLE:
		fatalx("a proxy job ended with no reload under way");
	}
}

/*
 * The whole table through the checker, then a reload (or a start): jobs,
 * on a copy of the table as it is now.
 */
static void
apply_reload(void)
{
	char err[512];
	int rc;

	routes_clear(&cand);
	routes_copy(&cand, &table);
	cand_gen = feed.last;
	told = 0;
	cand_wt = pend_wt;
	cand_t = pend_t;
	pend_wt = pend_t = 0;
	snprintf(check_path, sizeof(check_path), "%s.check", pc->config);
	if (write_config(check_path, &cand, 1) == -1 ||
	    write_files(&cand) == -1) {
		snprintf(err, sizeof(err), "%s", strerror(errno));
		reload_failed("write failed", err);
		return;
	}
	state = CHECKING;
	log_info("generation %llu: %s checks it", (unsigned long long)cand_gen,
	    proxy.ops->checker);
	if ((rc = proxy.ops->check(&proxy, check_path, err,
	    sizeof(err))) == 0)
		checked();
	else if (rc == -1)
		check_failed(err);
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

	if (state != IDLE || !pending || !feed.have || feed.syncing ||
	    (retry_at != 0 && now_ms() < retry_at))
		return 0;
	running = proxy.ops->running(&proxy);
	if (full_diff) {
		diff_all();
		full_diff = 0;
	}
	dirty_prune();
	if (running && live_ok) {
		if (ndirty == 0 && !api_dirty && !sni_dirty) {
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
	(void)running;
	apply_reload();
	return 0;
}

/*
 * The files on disk follow what the runtime API did, so that a reload or a
 * restart serves the same; written once the proxy serves the whole table,
 * and not during a job (it writes them: its end says what is on disk).
 */
static void
sync_files(void)
{
	if (!files_stale || pending || state != IDLE)
		return;
	if (write_config(pc->config, &served, 0) == -1 ||
	    write_files(&served) == -1)
		log_warn("%s", pc->config);
	files_stale = 0;
	sync_by = 0;
	disk_gen = good_gen;
}

static void
sync_due(void *arg)
{
	(void)arg;
	sync_files();
	if (!files_stale)
		ack();
	else	/* a job or a newer table in the way: look again soon */
		loop_timer_set(sync_timer, SYNC_QUIET_MS);
}

/* The files after a quiet moment (SYNC_QUIET_MS), or an ack now. */
static void
sync_soon(void)
{
	uint64_t now = now_ms(), at;

	if (!files_stale) {
		ack();
		return;
	}
	if (sync_by == 0)
		sync_by = now + SYNC_MAX_MS;
	at = now + SYNC_QUIET_MS < sync_by ? now + SYNC_QUIET_MS : sync_by;
	loop_timer_set(sync_timer, at > now ? at - now : 0);
}

/* Serve the table again by a (re)start or reload: the proxy died, or asks. */
static void
reapply(void)
{
	live_ok = 0;
	pending = 1;
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
 * idle work, but not during a job (its workers are changing) nor while a
 * change goes in (a reload it asks for would take the rest at once).
 */
static void
every_ack(void *arg)
{
	(void)arg;
	ack();
	if (proxy.ops->idle != NULL && state == IDLE && !pending &&
	    proxy.ops->running(&proxy) && proxy.ops->idle(&proxy) == 1)
		reapply();
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

/* Its firing is a turn: the after-turn hook applies (a retry, a slice). */
static void
wake(void *arg)
{
	(void)arg;
}

/*
 * After each turn: a proxy that died gets the table again, and the table
 * is applied (unless a job runs or a retry waits; then the loop wakes for
 * it; the next slice of a big change after the bus, at once).  Not asked
 * during a job whether the proxy runs: a master that re-executes itself
 * for a reload is not itself in /proc for a moment, and the job sees a
 * real exit anyway.  Ready while the proxy runs and serves a table.
 */
static void
after_turn(void *arg)
{
	struct loop_timer *t = arg;
	uint64_t now;
	int running;

	if (state == IDLE && live_ok && !proxy.ops->running(&proxy))
		reapply();	/* it died: bring it back */
	if (apply())
		loop_timer_set(t, 0);
	else if (retry_at != 0) {
		now = now_ms();
		loop_timer_set(t, retry_at > now ? retry_at - now : 0);
	}
	if (state == IDLE) {
		running = proxy.ops->running(&proxy);
		if (running && have_good)
			health_set_ready(1, NULL);
		else
			health_set_ready(0, !have_good ?
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
	routes_init(&table, &conf);
	routes_init(&served, &conf);
	routes_init(&cand, &conf);
	proxy.done = job_done;
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
	consumer_register(&feed);
	loop_socket(alloc_sock, ZMQ_POLLIN, on_alloc_sock, NULL);
	loop_signal(SIGCHLD, on_sigchld, NULL);
	loop_source(&job_source, NULL);
	loop_timer(ACK_EVERY_MS, 1, every_ack, NULL);
	loop_after(after_turn, loop_timer(0, 0, wake, NULL));
	sync_timer = loop_timer(0, 0, sync_due, NULL);
	loop_timer_stop(sync_timer);
	loop_counter("apply_failures", &failures);
	loop_counter("reloads", &reloads);
	loop_counter("live_changes", &lives);
	snprintf(ready, sizeof(ready), "applyd-%s", pc->name);
	if (daemon_ready(&d, ready) == -1)
		fatal("pid file");
	health_set_ready(0, "waiting for a first generation from renderd");
	log_info("ready for proxy %s, serving %s", pc->name,
	    pc->config);

	every_ack(NULL);
	loop_run();
	log_info("stopping %s and exiting", pc->kind);
	sync_files();	/* what the proxy serves, for the next start */
	loop_free();
	proxy_job_cancel(&proxy);
	proxy.ops->stop(&proxy);
	consumer_close(&feed);
	bus_close(alloc_sock);
	bus_term();
	log_info("%lu reloads, %lu live changes, %lu failures", reloads,
	    lives, failures);
	routes_clear(&table);
	routes_clear(&served);
	routes_clear(&cand);
	return 0;
}
