/*
 * watcherd — its share of the fleet, when several split it.
 *
 * Shard I of N owns the clusters whose id hashes to I (hash_shard():
 * FNV-1a 64 of the cluster's id — the PKS uuid, the kubeconfig file's
 * name, the Cluster API Cluster's uid — modulo N).  Every shard reads the
 * whole of every source, but upserts, watches, resyncs and takes down
 * only its own clusters: each source skips another's first (shard_mine),
 * and cluster_upsert refuses one as a net.  allocd needs no notion of
 * shards: a resync (SYNC_BEGIN .. SYNC_END) is already the truth for one
 * cluster alone, and a CLUSTER_DOWN names one cluster.  So a shard's
 * start, stop or resync never reaches another shard's clusters, and a
 * shard that dies leaves its clusters routed as they were (last good
 * state) until it, or whoever owns them next, resyncs them.
 *
 * Changing N is restarting the shards with the new count, or SIGHUP
 * with a new [clusters] shards (shard_recount, then the clusters let go
 * and the sources poll: watcherd.c).  A cluster that moves is never taken
 * down: its old owner just stops watching it (a process that exits sends
 * nothing; a recount lets go without a word), its new owner upserts and
 * resyncs it, and its ports, being the owner's, do not move.  For a while
 * two shards may both own a cluster (or shards disagree on N): both watch
 * and resync it.  That is made harmless here, by sync ids no two
 * watcherds share (shard_sync_id), since allocd ends a sync only on the
 * id that began it last; and by taking a cluster down only on polls that
 * were asked after allocd had it (shard_polled_upto, for
 * clusters_reconcile_alloc).
 *
 * A leaf: the sources and cluster.c ask it, it calls none of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "daemon.h"
#include "hash.h"
#include "log.h"
#include "loop.h"
#include "watcherd.h"

/* Low bits of a sync id that tell one watcherd's from another's. */
#define SYNC_TAG_BITS	20

static unsigned		 shard_index, shard_count = 1;
static int		 shard_fixed = 1;	/* the count is not the config's */
static char		 shard_label[32];	/* "I/N" */
/* by SRC_*, allocd's seq + 1 (0: none): a poll asked, one completed */
static uint64_t		 asking[SRC_MAX], asked[SRC_MAX];
unsigned long		 shard_downs;	/* clusters the reconcile took down */

/* A usage error: said where whoever started us looks, then fatal. */
static void
shard_bad(const struct daemon *d, const char *why)
{
	if (!d->foreground)
		fprintf(stderr, "watcherd: %s\n", why);
	fatalx("%s", why);
}

/*
 * "-s I/N", or "-s I" with N from [clusters] shards.  Without -s a
 * watcherd is the only one (0/1); a configuration that says there are
 * several must then say which this is.
 */
void
shard_init(struct daemon *d)
{
	unsigned long i, n = conf.shards;
	char *end, why[128];

	loop_counter("shard_downs", &shard_downs);
	if (d->shard == NULL) {
		snprintf(why, sizeof(why), "[clusters] shards is %u: which "
		    "one is this? (-s index)", conf.shards);
		if (conf.shards > 1)
			shard_bad(d, why);
		return;
	}
	snprintf(why, sizeof(why), "-s %.32s: not index or index/count, the "
	    "index below the count, the count 1 to %d", d->shard,
	    HASH_SHARDS_MAX);
	i = strtoul(d->shard, &end, 10);
	if (*d->shard < '0' || *d->shard > '9' || (*end != '\0' &&
	    *end != '/'))
		shard_bad(d, why);
	if (*end == '/') {
		if (end[1] < '0' || end[1] > '9')
			shard_bad(d, why);
		n = strtoul(end + 1, &end, 10);
		if (*end != '\0')
			shard_bad(d, why);
	} else
		shard_fixed = 0;	/* SIGHUP may change it: shard_recount */
	if (n < 1 || n > HASH_SHARDS_MAX || i >= n)
		shard_bad(d, why);
	if (n != conf.shards && conf.shards > 1)
		log_warnx("-s %s: [clusters] shards says %u; the count of "
		    "-s is the one used", d->shard, conf.shards);
	shard_index = (unsigned)i;
	shard_count = (unsigned)n;
	snprintf(shard_label, sizeof(shard_label), "%u/%u", shard_index,
	    shard_count);
	d->shard = shard_label;		/* the control socket's status */
}

int
shard_mine(const char *id)
{
	return hash_shard(id, shard_count) == shard_index;
}

/*
 * "watcherd", or "watcherd-I" when started with -s: its pid file and
 * control socket, which keep their name when the count changes.
 */
const char *
shard_name(void)
{
	static char name[32];

	if (shard_label[0] == '\0')
		return "watcherd";
	snprintf(name, sizeof(name), "watcherd-%u", shard_index);
	return name;
}

/*
 * SIGHUP read [clusters] shards again (it is live for watcherd).  A shard
 * started with -s I takes the new count: 1 when it did, and the caller
 * then lets go of the clusters that are no longer its own, without a
 * CLUSTER_DOWN (their new owner resyncs them, their ports stay), and has
 * the sources poll for those that are now.  Until those polls, no
 * cluster is taken down: what the last ones did not name may be another's
 * no more, and a poll under way began under the old count.
 */
int
shard_recount(void)
{
	if (conf.shards == shard_count)
		return 0;
	if (shard_fixed || conf.shards <= shard_index) {
		log_warnx("[clusters] shards is %u now; this watcherd stays "
		    "%s until it is restarted%s", conf.shards,
		    shard_describe(), shard_label[0] == '\0' ?
		    " with -s index" : shard_fixed ? " (-s says the count)" :
		    ": its index has no place in the new count");
		return 0;
	}
	log_info("shard %u of %u now, was of %u", shard_index, conf.shards,
	    shard_count);
	shard_count = conf.shards;
	snprintf(shard_label, sizeof(shard_label), "%u/%u", shard_index,
	    shard_count);
	shard_polls_void();
	return 1;
}

/*
 * The polls asked so far speak for nothing allocd has: after a recount
 * (a poll under way is read half under the old count), and when allocd's
 * feed starts over (its seqs may too).  Until every source polls again,
 * no cluster is taken down.
 */
void
shard_polls_void(void)
{
	size_t i;

	for (i = 0; i < SRC_MAX; i++) {
		asking[i] = 0;
		if (asked[i] != 0)
			asked[i] = 1;	/* before anything allocd said */
	}
}

const char *
shard_describe(void)
{
	static char buf[48];

	if (shard_label[0] == '\0')
		return "the only watcherd";
	snprintf(buf, sizeof(buf), "shard %s", shard_label);
	return buf;
}

/*
 * A sync id.  allocd ends a cluster's sync only on the id that began it
 * last; were two watcherds (two owners during a change of N, or an old
 * and a new pod of one shard) to share one, one's SYNC_END could end the
 * other's sync before its routes were in, and allocd would release them.
 * So: the clock at start, counted up, shifted over a tag drawn at start.
 * The clock keeps a restarted watcherd from reusing its own ids.
 */
uint64_t
shard_sync_id(void)
{
	static uint64_t count;

	if (count == 0)
		count = now_ms();
	return (++count << SYNC_TAG_BITS) | shard_sync_tag();
}

/* The low bits of every sync id this watcherd sends: its log says them. */
unsigned
shard_sync_tag(void)
{
	return (unsigned)(bus_boot_id() & ((1u << SYNC_TAG_BITS) - 1));
}

/* Source src asks for its clusters while allocd's feed is at seq. */
void
shard_poll_asked(int src, uint64_t seq)
{
	if (src > 0 && src < SRC_MAX)
		asking[src] = seq + 1;
}

/*
 * Source src has its answer, all of it: it speaks for the clusters
 * allocd had when it was asked.  One asked before a recount speaks for
 * nothing: part of it was read under the old count.
 */
void
shard_polled(int src)
{
	if (src > 0 && src < SRC_MAX && asking[src] != 0)
		asked[src] = asking[src];
}

/*
 * The last of allocd's seqs every source's last poll speaks for: a
 * cluster allocd had by then and none of them named is gone.  0: none.
 */
uint64_t
shard_polled_upto(void)
{
	uint64_t upto = UINT64_MAX;
	size_t i;

	for (i = 0; i < SRC_MAX; i++)
		if (asked[i] != 0 && asked[i] - 1 < upto)
			upto = asked[i] - 1;
	return upto == UINT64_MAX ? 0 : upto;
}
