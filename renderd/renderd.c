/*
 * renderd — publishes the route table of one proxy, built from allocd's
 * decisions.
 *
 * It consumes allocd's decisions (catching up by SINCE, repairing gaps by
 * itself) and keeps the route table in memory (routes.c).  Each decision
 * that touches a route becomes one item on its feed (EV_RT_*): the entry
 * as it stands after it, numbered by the decision's allocd seq, and naming
 * the generation before it (F_PREV), so that a consumer tells a gap
 * although the numbers are not contiguous.  A change costs the bytes of
 * the routes it touches, never the table's.  Every replica of renderd
 * publishes the same items under the same numbers, so an applyd may
 * follow any of them.
 *
 * Its own SINCE is answered by the whole table: STATE at the generation,
 * every item, SINCE_END.  Nothing is published, and no SINCE answered,
 * before the first catch-up is complete: a partial table would take
 * routes away.  The proxy's text is rendered by applyd, with the same
 * renderers (-T renders a state file here, for tests and operators).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "routes.h"

#define PENDING_MAX	64	/* SINCE asked before the first catch-up */
#define RECENT_MAX	4096	/* items kept to answer a SINCE with */

static struct config		 conf;
static const struct proxy_conf	*px;
static struct routes		 routes;
static struct consumer		 alloc_feed;
static void			*pub_sock, *sync_sock;
static uint64_t			 gen;		/* the last item's seq */
static int			 rebased;	/* table rebuilt from a STATE */
static unsigned long		 items_sent;
static zmq_msg_t		 pending[PENDING_MAX];
static uint64_t			 pending_since[PENDING_MAX];
static size_t			 npending;
/*
 * The latest items published, oldest first (a ring): a consumer that
 * missed a few, or followed another replica to the same chain, gets only
 * what it lacks.
 */
static struct event		 recent[RECENT_MAX];
static size_t			 recent_first, nrecent;

static void
recent_clear(void)
{
	size_t i;

	for (i = 0; i < nrecent; i++)
		event_free(&recent[(recent_first + i) % RECENT_MAX]);
	recent_first = nrecent = 0;
}

static void
recent_keep(const struct event *ev)
{
	struct event *slot;

	if (nrecent == RECENT_MAX) {
		event_free(&recent[recent_first]);
		recent_first = (recent_first + 1) % RECENT_MAX;
		nrecent--;
	}
	slot = &recent[(recent_first + nrecent) % RECENT_MAX];
	if (event_copy(slot, ev) == -1)
		fatal("recent_keep");
	nrecent++;
}

/* Publish what decision ev made of the table, as one item. */
static void
publish(const struct event *d)
{
	struct event ev;

	event_init(&ev, EV_NONE);
	if (routes_item(&routes, d, &ev) == -1) {
		event_free(&ev);
		return;
	}
	ev.seq = d->seq;
	ev.time = now_ms();
	ev.prev = gen;
	ev.has |= F_PREV;
	if (d->has & F_WT) {
		ev.wt = d->wt;
		ev.has |= F_WT;
	}
	metrics_published(&ev);
	if (bus_send(pub_sock, &ev) == -1)
		log_warn("publish");
	recent_keep(&ev);
	items_sent++;
	event_free(&ev);
}

/* Each generation once: what the askers of SINCE get, what was published. */
static void
log_generation(void)
{
	static uint64_t logged = (uint64_t)-1;

	if (logged == gen)
		return;
	logged = gen;
	log_info("generation %llu: %zu api routes, %u ports, %zu sni routes; "
	    "%lu decisions left out so far", (unsigned long long)gen,
	    routes.napi, routes.nports, routes.nsni, routes.refused);
}

static void
on_apply(const struct event *ev, void *arg)
{
	unsigned long refused = routes.refused;

	(void)arg;
	if (!routes_apply(&routes, ev))
		return;
	/* a port left out changed nothing (a cluster left out is deleted) */
	if (routes.refused != refused && ev->type == EV_PORT_SET)
		return;
	/*
	 * A STATE's events carry no history: the table is rebuilt, and its
	 * generation is the state's (set once the answer ends).
	 */
	if (alloc_feed.instate || !alloc_feed.synced_once) {
		rebased |= alloc_feed.instate;
		if (!alloc_feed.instate)
			gen = ev->seq;
		return;
	}
	metrics_folded(ev);	/* a change now: it converges from here */
	publish(ev);
	gen = ev->seq;
	log_generation();
}

static void
on_reset(void *arg)
{
	(void)arg;
	routes_clear(&routes);
	recent_clear();
	rebased = 1;
}

static void answer(zmq_msg_t *, uint64_t);

/*
 * Caught up.  After a rebuild, the generation is allocd's seq: no item
 * leads to it, so every consumer sees a gap and asks for the table.
 */
static void
on_synced(void *arg)
{
	size_t i;

	(void)arg;
	if (rebased) {
		recent_clear();		/* no chain leads to the new generation */
		gen = alloc_feed.last;
		rebased = 0;
		log_info("table rebuilt from allocd's state");
	}
	log_generation();
	health_set_ready(1, NULL);
	for (i = 0; i < npending; i++) {
		answer(&pending[i], pending_since[i]);
		zmq_msg_close(&pending[i]);
	}
	npending = 0;
}

static const struct consumer_ops feed_ops = {
	.apply = on_apply,
	.reset = on_reset,
	.synced = on_synced,
};

/* The whole configuration for the route table: a pure function of it. */
static int
render_text(FILE *fp)
{
	return routes_render(&routes, &conf, px, fp);
}

struct asker {
	zmq_msg_t	*id;
	uint64_t	 gen;
	int		 failed;
};

static int
send_item(struct event *ev, void *arg)
{
	struct asker *a = arg;

	ev->seq = a->gen;
	ev->time = now_ms();
	if (bus_send_to(sync_sock, a->id, ev) == -1)
		a->failed = 1;
	return a->failed ? -1 : 0;
}

/*
 * SINCE since: nothing but SINCE_END when the asker has our generation,
 * the items it lacks when they are recent, otherwise the whole table, one message an entry (each bounded by the
 * event limits, so the answer is never one huge message).
 */
/*
 * The items after since, when the ring holds the one that follows it;
 * 1 sent, 0 not there.
 */
static int
answer_recent(zmq_msg_t *id, uint64_t since)
{
	size_t i, j;

	for (i = 0; i < nrecent; i++)
		if (recent[(recent_first + i) % RECENT_MAX].prev == since)
			break;
	if (since == 0 || i == nrecent)
		return 0;
	for (j = i; j < nrecent; j++)
		if (bus_send_to(sync_sock, id,
		    &recent[(recent_first + j) % RECENT_MAX]) == -1)
			return 1;	/* the asker sees the gap, asks again */
	return 1;
}

static void
answer(zmq_msg_t *id, uint64_t since)
{
	struct asker a = { id, gen, 0 };
	struct event ev;

	if (since != gen && answer_recent(id, since))
		;
	else if (since != gen || gen == 0) {
		event_init(&ev, EV_STATE);
		ev.seq = gen;
		ev.time = now_ms();
		/* how far into allocd's log the table is, for tools and tests */
		ev.gen = alloc_feed.last;
		ev.has |= F_GEN;
		bus_send_to(sync_sock, id, &ev);
		routes_items(&routes, send_item, &a);
		if (a.failed)
			log_warnx("SINCE %llu: the table did not fit the "
			    "socket's queue; the asker will ask again",
			    (unsigned long long)since);
	}
	event_init(&ev, EV_SINCE_END);
	ev.seq = gen;
	ev.time = now_ms();
	bus_send_to(sync_sock, id, &ev);
}

static void
on_since(void)
{
	struct event req;
	zmq_msg_t id;
	int rc;

	while ((rc = bus_recv(sync_sock, &req, &id)) != 0) {
		if (rc == -1)
			continue;
		if (req.type == EV_SINCE && !alloc_feed.synced_once &&
		    npending < PENDING_MAX) {
			/* answered once the table is whole */
			pending_since[npending] = req.seq;
			pending[npending++] = id;
			event_free(&req);
			continue;
		}
		if (req.type == EV_SINCE && alloc_feed.synced_once) {
			metrics_inc(M_SINCE_SERVED, 0);
			answer(&id, req.seq);
		}
		event_free(&req);
		zmq_msg_close(&id);
	}
}

/*
 * -T: render a state file to stdout and exit, with no bus, run folder or
 * pid file.  Nothing is printed unless every line of the file is valid.
 */
static int
render_state(const char *path)
{
	char err[512];

	if (state_load(&routes, path, err, sizeof(err)) == -1) {
		fprintf(stderr, "renderd: %s\n", err);
		return 1;
	}
	if (render_text(stdout) == -1 || fflush(stdout) == EOF) {
		fprintf(stderr, "renderd: cannot write the config\n");
		return 1;
	}
	routes_clear(&routes);
	return 0;
}

/* The generation, once caught up: a consumer takes 0 for a reset. */
static int
heartbeat_seq(void *arg, uint64_t *seq)
{
	(void)arg;
	*seq = gen;
	return alloc_feed.synced_once ? 0 : -1;
}

static struct bus_heartbeat	hb;

static void
on_sync_sock(void *arg, int revents)
{
	(void)arg;
	(void)revents;
	on_since();
}

static void
after_turn(void *arg)
{
	(void)arg;
	health_set_position(alloc_feed.last, gen);
}

int
main(int argc, char **argv)
{
	struct daemon d;
	char ready[96];
	size_t i;

	daemon_start(&d, argc, argv, "renderd", DAEMON_PROXY | DAEMON_RENDER,
	    &conf);
	px = config_proxy(&conf, d.proxy);
	routes_init(&routes, &conf);
	if (d.render != NULL)
		return render_state(d.render);
	health_set_ready(0, "catching up with allocd");

	pub_sock = bus_socket(ZMQ_PUB);
	sync_sock = bus_socket(ZMQ_ROUTER);
	if (bus_bind(pub_sock, px->pub) == -1 ||
	    bus_bind(sync_sock, px->sync) == -1)
		fatalx("cannot bind the bus");
	consumer_init(&alloc_feed, "allocd feed", conf.alloc_pub,
	    conf.alloc_sync, 0, &feed_ops, NULL);
	consumer_register(&alloc_feed);
	loop_socket(sync_sock, ZMQ_POLLIN, on_sync_sock, NULL);
	bus_heartbeat(&hb, pub_sock, heartbeat_seq, NULL, BUS_HEARTBEAT_MS);
	loop_after(after_turn, NULL);
	loop_counter("items_published", &items_sent);
	snprintf(ready, sizeof(ready), "renderd-%s", px->name);
	if (daemon_ready(&d, ready) == -1)
		fatal("pid file");
	health_set_ready(0, "catching up with allocd's whole table");
	log_info("ready for proxy %s (%s)", px->name, px->kind);

	loop_run();
	log_info("exiting");
	loop_free();
	consumer_close(&alloc_feed);
	bus_close(pub_sock);
	bus_close(sync_sock);
	bus_term();
	log_info("%lu items published", items_sent);
	for (i = 0; i < npending; i++)
		zmq_msg_close(&pending[i]);
	recent_clear();
	routes_clear(&routes);
	return 0;
}
