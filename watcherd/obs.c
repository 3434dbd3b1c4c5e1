/*
 * watcherd — observations to allocd: sequenced, sent on the DEALER
 * watcherd.c connected, and counted until allocd acknowledges them.  The
 * bottom of every call in watcherd: it calls nothing of ours.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "log.h"
#include "metrics.h"
#include "watcherd.h"

int			 obs_failed;
static void		*sock;
static unsigned int	 seed;
uint64_t		 obs_seq, obs_acked, obs_unacked_since;
uint64_t		 obs_read_us;

uint64_t
obs_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
obs_init(void *s, unsigned sd)
{
	sock = s;
	seed = sd;
}

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
	if (ev->type == EV_ROUTE || ev->type == EV_SNI_ROUTE) {
		ev->wt = ev->time;
		ev->has |= F_WT;
		/* watcherd's share of a change: its first route only */
		if (obs_read_us != 0) {
			metrics_observe_us(M_WATCH_OBS, obs_now_us() -
			    obs_read_us);
			obs_read_us = 0;
		}
	}
	if (bus_send(sock, ev) == -1) {
		/* no seq is spent on it: allocd acks only what it got */
		if (!obs_failed)
			log_warn("observations not sent");
		obs_failed = 1;
		return;
	}
	obs_seq++;
	metrics_inc(M_SENT, metrics_type(ML_OBS, ev->type));
	if (obs_unacked_since == 0)
		obs_unacked_since = ev->time;
}
