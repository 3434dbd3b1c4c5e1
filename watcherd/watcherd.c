/*
 * watcherd — portico's eyes on the provisioning API and the clusters.
 *
 * One loop: the bus (observations out on a DEALER to allocd, allocd's
 * decisions in through a consumer, for the write-back), every HTTP request
 * of every cluster through one curl multi handle, a signalfd and a tick for
 * the timers.  watcherd keeps no durable state: after a restart of either
 * side it sends allocd a full resync of every cluster.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "health.h"
#include "metrics.h"
#include "loop.h"
#include "watcherd.h"

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))

#define TICK_MS		200
#define ACK_WAIT_MS	10000

struct config		 conf;
static void		*alloc_sock;
static struct consumer	 feed;
static uint64_t		 retry_at;

/*
 * The cluster sources.  One more (capi.c) is one more line here; each
 * says itself whether it is configured.
 */
static const struct cluster_source *sources[] = {
	&pks_source,
	&kcdir_source,
	&capi_source,
};

/* Every configured source has completed its first poll. */
static int
sources_polled(void)
{
	size_t i;

	for (i = 0; i < nitems(sources); i++)
		if (sources[i]->enabled() && !sources[i]->polled())
			return 0;
	return 1;
}

static void
on_acks(void)
{
	struct event ev;
	int rc;

	while ((rc = bus_recv(alloc_sock, &ev, NULL)) != 0) {
		if (rc == 1 && ev.type == EV_ACK && ev.seq > obs_acked &&
		    ev.seq <= obs_seq) {
			obs_acked = ev.seq;
			obs_unacked_since = obs_acked == obs_seq ? 0 : now_ms();
		}
		if (rc == 1)
			event_free(&ev);
	}
}

static void
on_decision(const struct event *ev, void *arg)
{
	(void)arg;
	clusters_alloc_event(ev);
}

static void
on_reset(void *arg)
{
	(void)arg;
	clusters_alloc_reset();
}

static void
on_restarted(void *arg)
{
	(void)arg;
	log_info("allocd restarted, resyncing every cluster");
	clusters_resync_all();
}

static void
on_synced(void *arg)
{
	(void)arg;
	alloc_synced = 1;		/* after_turn tells readiness */
	clusters_dirty_all();	/* the write-backs held until now */
}

static const struct consumer_ops feed_ops = {
	.apply = on_decision,
	.reset = on_reset,
	.restarted = on_restarted,
	.synced = on_synced,
};

/*
 * SIGHUP, after the configuration was read again: a new count of shards
 * lets go of the clusters that are another's now (without a CLUSTER_DOWN)
 * and asks the sources at once for those that are ours.
 */
static void
on_hup(void *arg)
{
	size_t i;

	(void)arg;
	if (!shard_recount())
		return;
	clusters_let_go();
	for (i = 0; i < nitems(sources); i++)
		if (sources[i]->enabled() && sources[i]->poll_soon != NULL)
			sources[i]->poll_soon();
}

static void
on_alloc_sock(void *arg, int revents)
{
	(void)arg;
	(void)revents;
	on_acks();
}

/* curl's sockets, as many as it has, through the loop. */
static int
http_src_items(void *arg, zmq_pollitem_t *items, int max)
{
	(void)arg;
	return http_pollitems(items, max);
}

static void
http_src_dispatch(void *arg, const zmq_pollitem_t *items, int n)
{
	int i;

	(void)arg;
	for (i = 0; i < n && obs_read_us == 0; i++)
		if (items[i].revents != 0)
			obs_read_us = obs_now_us();
	http_dispatch(items, n);
	http_timer();
}

static long
http_src_timeout(void *arg)
{
	(void)arg;
	return http_timeout();
}

static const struct loop_source http_src = {
	.pollitems = http_src_items,
	.dispatch = http_src_dispatch,
	.timeout = http_src_timeout,
};

/* What runs on time: the acknowledgements owed, the sources' polls. */
static void
tick(void *arg)
{
	static unsigned long swept;
	uint64_t now = now_ms();
	size_t i;

	(void)arg;
	if (obs_unacked_since != 0 && now - obs_unacked_since > ACK_WAIT_MS) {
		/* allocd lost what we sent: the truth, again */
		log_warnx("observations %llu-%llu not "
		    "acknowledged, resyncing",
		    (unsigned long long)obs_acked + 1,
		    (unsigned long long)obs_seq);
		obs_unacked_since = 0;
		clusters_resync_all();
	}
	if (obs_failed && now - retry_at > 1000) {
		/* the queue to allocd was full: all again, later */
		obs_failed = 0;
		retry_at = now;
		clusters_resync_all();
	}
	for (i = 0; i < nitems(sources); i++)
		if (sources[i]->enabled())
			sources[i]->timer(now);
	/* clusters allocd routes that no source knows any more go */
	if (clusters_sweeps != swept && sources_polled()) {
		swept = clusters_sweeps;
		clusters_reconcile_alloc();
	}
}

/*
 * After each turn: the clusters whose objects changed send what changed
 * (at once, not at the next tick).  Ready once the sources have been read
 * and every cluster they name has sent its first resync.
 */
static void
after_turn(void *arg)
{
	static int ready;
	char why[128];
	const char *cl;

	(void)arg;
	clusters_timer(now_ms());
	obs_read_us = 0;	/* what this turn read sent no route */
	health_set_position(feed.last, obs_seq);
	if (ready)
		return;
	if (!alloc_synced)
		health_set_ready(0, "catching up with allocd's decisions");
	else if (!sources_polled())
		health_set_ready(0, "reading the cluster sources");
	else if ((cl = clusters_unsynced()) != NULL) {
		snprintf(why, sizeof(why), "the first sync of cluster %s", cl);
		health_set_ready(0, why);
	} else {
		health_set_ready(1, NULL);
		ready = 1;
	}
}

int
main(int argc, char **argv)
{
	struct daemon d;
	size_t i;

	daemon_start(&d, argc, argv, "watcherd", DAEMON_SHARD, &conf);
	shard_init(&d);
	health_set_ready(0, "reading the cluster sources");
	http_init();
	for (i = 0; i < nitems(sources); i++)
		if (sources[i]->init != NULL)
			sources[i]->init();
	alloc_sock = bus_socket(ZMQ_DEALER);
	if (bus_connect(alloc_sock, conf.alloc_in) == -1)
		fatalx("cannot connect to allocd");
	obs_init(alloc_sock, (unsigned int)bus_boot_id());
	consumer_init(&feed, "allocd feed", conf.alloc_pub, conf.alloc_sync, 0,
	    &feed_ops, NULL);
	consumer_register(&feed);
	loop_socket(alloc_sock, ZMQ_POLLIN, on_alloc_sock, NULL);
	loop_source(&http_src, NULL);
	loop_timer(TICK_MS, 1, tick, NULL);
	loop_after(after_turn, NULL);
	loop_signal(SIGHUP, on_hup, NULL);
	if (daemon_ready(&d, shard_name()) == -1)
		fatal("pid file");
	health_set_ready(0, "catching up with allocd's decisions");
	log_info("ready; sources:%s%s%s; clusters: %s; sync ids end in %05x",
	    conf.pks_url[0] ? " pks" : "",
	    conf.kubeconfig_dir[0] ? " kubeconfigs" : "",
	    conf.capi_kubeconfig[0] ? " capi" : "", shard_describe(),
	    shard_sync_tag());

	tick(NULL);
	loop_run();
	log_info("exiting");
	loop_free();
	consumer_close(&feed);
	bus_close(alloc_sock);
	bus_term();
	return 0;
}
