/*
 * watcherd — portico's eyes on the provisioning API and the clusters.
 *
 * One loop: the bus (observations out on a DEALER to allocd, allocd's
 * decisions in through a consumer, for the write-back), every HTTP request
 * of every cluster through one curl multi handle, a signalfd and a tick for
 * the timers.  watcherd keeps no durable state: after a restart of either
 * side it sends allocd a full resync of every cluster.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "daemon.h"
#include "log.h"
#include "health.h"
#include "metrics.h"
#include "watcherd.h"

#define MAX_ITEMS	4096
#define TICK_MS		200
#define ACK_WAIT_MS	10000

struct config		 conf;
int			 alloc_synced;
int			 obs_failed;
static void		*alloc_sock;
static struct consumer	 feed;
static uint64_t		 obs_seq, obs_acked, unacked_since, retry_at;
static unsigned int	 seed;

uint64_t
jitter(uint64_t ms)
{
	/* 75% to 125%: peers that failed together do not retry together */
	return ms * 3 / 4 + (ms > 1 ? (uint64_t)rand_r(&seed) % (ms / 2) : 0);
}

void
obs_send(struct event *ev)
{
	ev->seq = obs_seq + 1;
	ev->time = now_ms();
	/* sent in the loop turn that read the watch event: its arrival */
	if (ev->type == EV_ROUTE) {
		ev->wt = ev->time;
		ev->has |= F_WT;
	}
	if (bus_send(alloc_sock, ev) == -1) {
		/* no seq is spent on it: allocd acks only what it got */
		if (!obs_failed)
			log_warn("observations not sent");
		obs_failed = 1;
		return;
	}
	obs_seq++;
	metrics_inc(M_SENT, metrics_type(ML_OBS, ev->type));
	if (unacked_since == 0)
		unacked_since = ev->time;
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
			unacked_since = obs_acked == obs_seq ? 0 : now_ms();
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
	alloc_synced = 1;
	health_set_ready(1, NULL);
	clusters_dirty_all();	/* the write-backs held until now */
}

static const struct consumer_ops feed_ops = {
	.apply = on_decision,
	.reset = on_reset,
	.restarted = on_restarted,
	.synced = on_synced,
};

int
main(int argc, char **argv)
{
	static zmq_pollitem_t items[MAX_ITEMS];
	struct daemon d;
	uint64_t now;
	long timeout;
	int n, nh, sig;

	daemon_start(&d, argc, argv, "watcherd", 0, &conf);
	seed = (unsigned int)bus_boot_id();
	http_init();
	pks_init();
	alloc_sock = bus_socket(ZMQ_DEALER);
	if (bus_connect(alloc_sock, conf.alloc_in) == -1)
		fatalx("cannot connect to allocd");
	consumer_init(&feed, "allocd feed", conf.alloc_pub, conf.alloc_sync, 0,
	    &feed_ops, NULL);
	if (daemon_ready(&d, "watcherd") == -1)
		fatal("pid file");
	health_set_ready(0, "catching up with allocd's decisions");
	log_info("ready; sources:%s%s", conf.pks_url[0] ?
	    " pks" : "", conf.kubeconfig_dir[0] ? " kubeconfigs" : "");

	for (;;) {
		health_beat();
		now = now_ms();
		consumer_timer(&feed, now);
		if (unacked_since != 0 && now - unacked_since > ACK_WAIT_MS) {
			/* allocd lost what we sent: the truth, again */
			log_warnx("observations %llu-%llu not "
			    "acknowledged, resyncing",
			    (unsigned long long)obs_acked + 1,
			    (unsigned long long)obs_seq);
			unacked_since = 0;
			clusters_resync_all();
		}
		if (obs_failed && now - retry_at > 1000) {
			/* the queue to allocd was full: all again, later */
			obs_failed = 0;
			retry_at = now;
			clusters_resync_all();
		}
		pks_timer(now);
		kcdir_timer(now);
		clusters_timer(now);

		n = consumer_pollitems(&feed, items);
		items[n++] = (zmq_pollitem_t){ alloc_sock, 0, ZMQ_POLLIN, 0 };
		items[n++] = (zmq_pollitem_t){ NULL, d.sigfd, ZMQ_POLLIN, 0 };
		nh = http_pollitems(items + n, MAX_ITEMS - n);
		timeout = http_timeout();
		if (timeout < 0 || timeout > TICK_MS)
			timeout = TICK_MS;
		if (zmq_poll(items, n + nh, timeout) == -1 && errno != EINTR)
			fatal("zmq_poll");
		consumer_dispatch(&feed, items);
		if (items[2].revents & ZMQ_POLLIN)
			on_acks();
		if ((items[3].revents & ZMQ_POLLIN) &&
		    (sig = daemon_signal(&d)) != 0 && sig != SIGCHLD &&
		    sig != SIGHUP)
			break;
		http_dispatch(items + n, nh);
		http_timer();
	}
	log_info("exiting");
	consumer_close(&feed);
	bus_close(alloc_sock);
	zmq_ctx_term(bus_ctx());
	return 0;
}
