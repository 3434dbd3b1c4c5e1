/*
 * allocd — the single writer of portico's durable state.
 *
 * Observations arrive on a ROUTER (from watcherd and the applyds).  All that
 * are waiting go into one LMDB write transaction (group commit; a backlog
 * into several, each bounded in time), each logged with the decisions it
 * causes; the transaction is committed durably, and only then is
 * everything it logged published on PUB and the senders acknowledged.  A
 * second ROUTER answers SINCE <seq> from the log or with the state
 * (since.c), so a consumer that missed anything catches up by itself.
 * Started on an empty store, allocd first holds what it hears, and the
 * SINCE asked meanwhile, until the clusters are resynced (adopt.c), so
 * that the ports written on objects are adopted before anything new is
 * given out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adopt.h"
#include "alloc.h"
#include "bus.h"
#include "compact.h"
#include "daemon.h"
#include "gauges.h"
#include "hash.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "loop.h"
#include "proof.h"
#include "replay.h"
#include "since.h"
#include "store.h"

#define BATCH_MAX	4096	/* observations in one transaction */
#define SENDERS_MAX	256

struct sender {
	zmq_msg_t	id;
	uint64_t	seq;	/* the sender's own sequence, to ACK */
};

static struct config	 conf;
static struct store	 st;
static struct alloc	 al;
static void		*in_sock, *pub_sock, *sync_sock;
static unsigned long	 ignored;
static struct adopt	 adopt;		/* started on an empty store */
static struct gauges	 gauges;
static struct compact	 cp;

/* What the batch logged, on PUB: the bytes the log was given. */
static void
publish(void)
{
	size_t i;

	for (i = 0; i < al.nout; i++)
		metrics_logged(&al.out[i]);
	for (i = 0; i < al.nout; i++)
		if (zmq_send(pub_sock, al.outenc[i], al.outlen[i],
		    ZMQ_DONTWAIT) == -1)
			log_debug("publish: seq %llu dropped (consumers "
			    "repair by SINCE)",
			    (unsigned long long)al.out[i].seq);
	alloc_clear(&al);
}

static int
is_observation(int type)
{
	/* not TICK: allocd's own */
	return (type >= EV_CLUSTER_UP && type <= EV_APPLIED) ||
	    type == EV_SNI_ROUTE || type == EV_SNI_GONE;
}

/*
 * The map is full: double it.  No transaction may be open meanwhile, so a
 * compaction's copy, which holds one, is given up (the next starts over).
 */
static void
grow(void)
{
	MDB_envinfo info;
	int rc;

	compact_abort(&cp);
	since_unread();
	mdb_env_info(st.env, &info);
	log_info("store full at %zu MB, growing", info.me_mapsize >> 20);
	if ((rc = mdb_env_set_mapsize(st.env, info.me_mapsize * 2)))
		fatalx("grow: %s", mdb_strerror(rc));
}

/*
 * A read transaction about to be held across turns (a compaction's copy)
 * makes every write meanwhile take new pages: grow the map now when it is
 * half full, rather than give the reader up when it is full.
 */
static void
grow_early(void)
{
	MDB_envinfo info;
	MDB_stat ms;

	mdb_env_info(st.env, &info);
	mdb_env_stat(st.env, &ms);
	if ((info.me_last_pgno + 1) * ms.ms_psize > info.me_mapsize / 2)
		grow();
}

/*
 * How long a batch's observations may be decided before it is committed:
 * every observation of a batch waits for its last one and for the commit,
 * so a backlog (after the process was preempted, or a slow fsync) is cut
 * into batches of about BATCH_US of the loop's CPU (half the 20 ms aim
 * between two decisions; the rest is the commit's) rather than decided in
 * one: 4,096 observations took 40-60 ms.  But a commit costs an fsync
 * however small the batch: deciding for at least as long as the last
 * commit took keeps a slow disk from starving the throughput (at worst
 * half of what one batch would do).
 */
#define BATCH_US	10000
static uint64_t		commit_us;	/* the last batch's commit took */

/*
 * Run the first observations of the batch in one transaction, until
 * budget_us is spent (0: all n); how many were.  When the map is full,
 * grow it and run them again: nothing of the failed attempt was committed.
 */
static size_t
commit_batch(struct event *batch, size_t n, uint64_t budget_us)
{
	MDB_txn *txn;
	uint64_t seq0 = al.seq, t0;
	size_t i;
	int rc;

	for (;;) {
		if ((rc = store_begin(&st, &txn, 0)) != 0)
			fatalx("begin: %s", mdb_strerror(rc));
		t0 = clock_us(CLOCK_THREAD_CPUTIME_ID);
		for (i = 0, rc = 0; i < n && (rc == 0 || rc == 1);) {
			rc = alloc_observe(&al, txn, &batch[i++]);
			if (budget_us != 0 && i % 16 == 0 &&
			    clock_us(CLOCK_THREAD_CPUTIME_ID) - t0 >= budget_us)
				break;
		}
		t0 = clock_us(CLOCK_MONOTONIC);
		if (rc == 0 || rc == 1)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc == 0 || rc == 1) {
			commit_us = clock_us(CLOCK_MONOTONIC) - t0;
			metrics_observe_us(M_STORE_COMMIT, commit_us);
			return i;
		}
		alloc_rollback(&al, seq0);
		if (rc != MDB_MAP_FULL)
			fatalx("commit: %s", mdb_strerror(rc));
		grow();
	}
}

/* Remember that the sender id sent seq (its own sequence, to ACK): which. */
static size_t
sender_note(struct sender *senders, size_t *ns, const zmq_msg_t *id,
    uint64_t seq)
{
	size_t i;

	for (i = 0; i < *ns; i++)
		if (zmq_msg_size(&senders[i].id) == zmq_msg_size(id) &&
		    memcmp(zmq_msg_data(&senders[i].id),
		    zmq_msg_data((zmq_msg_t *)id), zmq_msg_size(id)) == 0)
			break;
	if (i == *ns && *ns < SENDERS_MAX) {
		zmq_msg_init(&senders[i].id);
		zmq_msg_copy(&senders[i].id, (zmq_msg_t *)id);
		senders[(*ns)++].seq = 0;
	}
	if (i < *ns && seq > senders[i].seq)
		senders[i].seq = seq;
	return i;
}

static void
sender_ack(struct sender *s, uint64_t seq)
{
	struct event ack;

	event_init(&ack, EV_ACK);
	ack.seq = seq;
	ack.time = now_ms();
	bus_send_to(in_sock, &s->id, &ack);
}

/* What each sender sent is committed: say so, and forget them. */
static void
senders_ack(struct sender *senders, size_t *ns)
{
	size_t i;

	for (i = 0; i < *ns; i++) {
		sender_ack(&senders[i], senders[i].seq);
		zmq_msg_close(&senders[i].id);
	}
	*ns = 0;
}

/* Acks owed for what is held, sent once it is committed. */
static struct sender	held_senders[SENDERS_MAX];
static size_t		nheld_senders;

/*
 * The observations waiting, in batches (commit_batch) each published and
 * acknowledged as soon as it is committed: a sender's ACK covers what it
 * sent up to the last observation of the batch.
 */
static void
on_input(void)
{
	static struct event batch[BATCH_MAX];
	static size_t from[BATCH_MAX];		/* its sender */
	struct sender senders[SENDERS_MAX];
	uint64_t upto[SENDERS_MAX];
	zmq_msg_t id;
	size_t n = 0, ns = 0, i, j, k, done;
	uint64_t now = now_ms();
	int rc;

	while (n < BATCH_MAX && (rc = bus_recv(in_sock, &batch[n], &id)) != 0) {
		if (rc == -1)
			continue;
		if (!is_observation(batch[n].type) || (!adopt.active &&
		    batch[n].type == EV_APPLIED && batch[n].gen > al.seq)) {
			/* a generation above ours is a lost store's */
			ignored++;
			log_debug("ignored %s on input",
			    event_name(batch[n].type));
			event_free(&batch[n]);
			zmq_msg_close(&id);
			continue;
		}
		from[n] = sender_note(adopt.active ? held_senders : senders,
		    adopt.active ? &nheld_senders : &ns, &id, batch[n].seq);
		zmq_msg_close(&id);
		/* allocd's clock stamps the observation: replay reuses it */
		batch[n++].time = now;
	}
	if (n == 0)
		return;
	if (adopt.active) {
		/* held: acked once adopt_finish() has committed it */
		for (i = 0; i < n; i++)
			adopt_hold(&adopt, &batch[i]);
	} else {
		for (done = 0; done < n; done += k) {
			k = commit_batch(batch + done, n - done,
			    commit_us > BATCH_US ? commit_us : BATCH_US);
			publish();
			if (done + k == n)
				break;		/* the rest: all acked below */
			memset(upto, 0, ns * sizeof(upto[0]));
			for (i = done; i < done + k; i++)
				if (from[i] < ns && batch[i].seq > upto[from[i]])
					upto[from[i]] = batch[i].seq;
			for (j = 0; j < ns; j++)
				if (upto[j] != 0)
					sender_ack(&senders[j], upto[j]);
		}
	}
	for (i = 0; i < n; i++)
		event_free(&batch[i]);
	senders_ack(senders, &ns);
}

/* SINCE asked while claims are held: answered once they are decided. */
#define SINCE_HELD	64
static struct {
	zmq_msg_t	id;
	uint64_t	seq;
	uint64_t	at;	/* ms; the asker gives up on it after a while */
} since_held[SINCE_HELD];
static size_t	nsince_held;

static void
since_hold(zmq_msg_t *id, uint64_t seq)
{
	size_t i;

	adopt_learn(&adopt, seq);
	if (nsince_held == SINCE_HELD) {
		/* the oldest is the likeliest given up on */
		for (i = 1; i < SINCE_HELD; i++) {
			zmq_msg_move(&since_held[i - 1].id, &since_held[i].id);
			since_held[i - 1].seq = since_held[i].seq;
			since_held[i - 1].at = since_held[i].at;
		}
		zmq_msg_close(&since_held[--nsince_held].id);
	}
	zmq_msg_init(&since_held[nsince_held].id);
	zmq_msg_copy(&since_held[nsince_held].id, id);
	since_held[nsince_held].at = now_ms();
	since_held[nsince_held++].seq = seq;
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
		if (req.type != EV_SINCE) {
			event_free(&req);
			zmq_msg_close(&id);
			continue;
		}
		if (adopt.active)
			since_hold(&id, req.seq);
		else
			since_answer(&id, req.seq);
		event_free(&req);
		zmq_msg_close(&id);
	}
}

/*
 * Compaction by policy (compact.c): when the log holds more than
 * compact_records records or compact_mb MiB, or its oldest record after
 * the snapshot is older than compact_age.  A SNAPSHOT record is logged
 * alone in its transaction; the copy of the tables at it and the deletion
 * of the log before it go on in steps, one after each batch, so that no
 * decision waits for more than one step.  Consumers that were further
 * behind than the log reaches get the state instead.
 */
static void
snapshot(uint64_t now)
{
	struct event ev;

	event_init(&ev, EV_SNAPSHOT);
	ev.time = now;
	commit_batch(&ev, 1, 0);
	publish();
	grow_early();
	compact_begin(&cp, al.seq, now);
}

static void
compact_some(void)
{
	int rc;

	if ((rc = compact_step(&cp, al.seq)) == MDB_MAP_FULL)
		grow();
	else if (rc != 0)
		fatalx("compact: %s", mdb_strerror(rc));
}

/*
 * Ports came free (a quarantine ran out) while owners wait for one: log a
 * TICK, which hands them out.  Looked at once a second, read-only, so an
 * idle allocd writes nothing.
 */
static void
tick(uint64_t now)
{
	struct event ev;
	MDB_txn *txn;
	int due;

	if (store_begin(&st, &txn, 1) != 0)
		fatalx("read transaction");
	due = alloc_tick_due(&al, txn, now);
	mdb_txn_abort(txn);
	if (!due)
		return;
	event_init(&ev, EV_TICK);
	ev.time = now;
	commit_batch(&ev, 1, 0);
	publish();
}

/*
 * Owners on ports the configuration no longer gives out (the ports shrank),
 * each handed to say() with its port; how many there are.
 */
static size_t
stranded(void (*say)(const char *, unsigned, size_t))
{
	MDB_txn *txn;
	char **list;
	unsigned port;
	size_t n;

	if (store_begin(&st, &txn, 1) != 0)
		fatalx("read transaction");
	list = alloc_stranded(&al, txn);
	for (n = 0; list[n] != NULL; n++) {
		alloc_port_of(&al, txn, list[n], &port);
		say(list[n], port, n);
		free(list[n]);
	}
	mdb_txn_abort(txn);
	free(list);
	return n;
}

static void
warn_stranded(const char *owner, unsigned port, size_t i)
{
	if (!conf.allow_shrink && i < 20)
		log_warnx("%s holds port %u, no longer in the "
		    "configured ports", owner, port);
}

static void
print_stranded(const char *owner, unsigned port, size_t i)
{
	if (i == 0)
		printf("# owners on ports no longer configured, who %s:\n",
		    conf.allow_shrink ? "will move (allow_shrink = 1)" :
		    "would move");
	printf("#\t%s\tport %u\n", owner, port);
}

/* What decides who is stranded: the ports, reserved ports, API port. */
static uint64_t
ports_fingerprint(void)
{
	char buf[2 * CONF_MAX_RANGES * 12 + 32];
	size_t n;

	ports_format(&conf.ports, buf, sizeof(buf) / 2);
	n = strlen(buf);
	snprintf(buf + n, sizeof(buf) - n, ";%u;", conf.api_port);
	n = strlen(buf);
	ports_format(&conf.reserved, buf + n, sizeof(buf) - n);
	return hash_fnv1a(buf);
}

/*
 * Owners stranded off the ports (the configuration shrank): with
 * allow_shrink they move now (a TICK does it, logged); without it allocd
 * will not start, and says who would move.  The whole owner table is
 * looked at only when the ports changed since the last start.
 */
static void
check_stranded(void)
{
	uint64_t fp = ports_fingerprint(), was;
	struct event ev;
	MDB_txn *txn;
	size_t n;
	int rc;

	if (store_begin(&st, &txn, 1) != 0)
		fatalx("read transaction");
	rc = store_get_u64(&st, txn, STORE_META_PORTS, &was);
	mdb_txn_abort(txn);
	if (rc == 0 && was == fp)
		return;
	if ((n = stranded(warn_stranded)) > 0) {
		if (!conf.allow_shrink)
			fatalx("%zu owners would move; set "
			    "allow_shrink = 1 to move them, or give their "
			    "ports back", n);
		log_info("moving %zu owners off ports no longer "
		    "configured", n);
		event_init(&ev, EV_TICK);
		ev.time = now_ms();
		commit_batch(&ev, 1, 0);
		alloc_clear(&al);   /* nobody listens yet: consumers catch up */
	}
	if (store_begin(&st, &txn, 0) != 0 ||
	    store_put_u64(&st, txn, STORE_META_PORTS, fp) != 0 ||
	    mdb_txn_commit(txn) != 0)
		fatalx("cannot record the ports");
}

/*
 * allocd -n: the configuration is printed; then, against the store as it
 * is, who the configured ports would move.  Exit 1 when allocd would
 * refuse to start.
 */
static int
check_config(void)
{
	char path[PATH_MAX + 16];
	MDB_txn *txn;
	size_t n;

	snprintf(path, sizeof(path), "%s/data.mdb", conf.store);
	if (access(path, F_OK) == -1) {
		printf("# no store at %s yet: nobody to move\n", conf.store);
		return 0;
	}
	if (store_open(&st, conf.store, (size_t)conf.map_size_mb << 20, 1))
		return 1;
	if (store_begin(&st, &txn, 1) != 0)
		fatalx("read transaction");
	alloc_init(&al, &st, &conf, store_last_seq(&st, txn));
	mdb_txn_abort(txn);
	n = stranded(print_stranded);
	if (n == 0)
		printf("# nobody moves: every held port is still configured\n");
	else if (!conf.allow_shrink)
		printf("# allocd would not start: %zu owners would move; set "
		    "allow_shrink = 1 to move them\n", n);
	store_close(&st);
	return n > 0 && !conf.allow_shrink;
}

/*
 * The claims held since an empty start are decided, in their order, in one
 * transaction above every seq a consumer had seen; then the consumers that
 * asked meanwhile get the new store's state.
 */
static void
adopt_finish(uint64_t now)
{
	struct event *batch;
	uint64_t learned = adopt.learned, waited = now - adopt.start;
	size_t n, i;

	batch = adopt_batch(&adopt, now, &n);
	health_set_ready(1, NULL);
	al.seq = adopt_base(&adopt);
	cp.first = al.seq + 1;
	commit_batch(batch, n, 0);
	if (adopt.first && proof_keep(&conf) == -1)
		fatalx("cannot keep the proof key");
	log_info("%s: adopted %llu owners, refused %llu "
	    "claims (%llu without a valid proof, %llu on a port already "
	    "held), after holding %zu observations %llu ms; seqs continue "
	    "above %llu (consumers had seen %llu)", adopt.loss ?
	    "store lost" : "a first store", (unsigned long long)al.nadopted,
	    (unsigned long long)(al.nbadproof + al.ntaken),
	    (unsigned long long)al.nbadproof, (unsigned long long)al.ntaken,
	    n - 2, (unsigned long long)waited,
	    (unsigned long long)(cp.first - 1), (unsigned long long)learned);
	publish();
	senders_ack(held_senders, &nheld_senders);
	for (i = 0; i < n; i++)
		event_free(&batch[i]);
	free(batch);
	for (i = 0; i < nsince_held; i++) {
		/* one the consumer has given up on, it has asked again */
		if (now_ms() - since_held[i].at < BUS_SYNC_TIMEOUT_MS)
			since_answer(&since_held[i].id, since_held[i].seq);
		zmq_msg_close(&since_held[i].id);
	}
	nsince_held = 0;
}

/* While claims are held: where the new store will go on from. */
static int
heartbeat_seq(void *arg, uint64_t *seq)
{
	(void)arg;
	*seq = adopt.active ? adopt_ahead(&adopt) : al.seq;
	return 0;
}

static struct bus_heartbeat	hb;

static void
on_in_sock(void *arg, int revents)
{
	(void)arg;
	(void)revents;
	on_input();
	if (!adopt.active && compact_due(&cp, al.seq, 0, 0))
		snapshot(now_ms());
}

static void
on_sync_sock(void *arg, int revents)
{
	(void)arg;
	(void)revents;
	on_since();
}

/* Once a second: ports out of quarantine, and compaction by age. */
static void
every_second(void *arg)
{
	uint64_t now = now_ms();

	(void)arg;
	if (adopt.active)
		return;
	tick(now);
	if (compact_due(&cp, al.seq, now, 1))
		snapshot(now);
}

/* Armed at 0 ms while there is work between turns: the poll waits not. */
static struct loop_timer	*more_work;

static void
no_op(void *arg)
{
	(void)arg;
}

/*
 * After each turn: one step of a compaction and one slice of the SINCE
 * answers under way, between batches of decisions, never in their place.
 * The claims held since an empty start are decided once adopt says so;
 * allocd is ready from then on (at once on a store that has a history).
 */
static void
after_turn(void *arg)
{
	uint64_t now;

	(void)arg;
	if (since_busy())
		since_some();
	if (compact_busy(&cp))
		compact_some();
	if (since_busy() || compact_busy(&cp))
		loop_timer_set(more_work, 0);
	now = now_ms();
	if (adopt.active && adopt_due(&adopt, now)) {
		adopt_finish(now);
		bus_heartbeat_period(&hb, BUS_HEARTBEAT_MS);
		health_set_ready(1, NULL);
	}
	health_set_position(al.seq, 0);
}

int
main(int argc, char **argv)
{
	struct daemon d;
	MDB_txn *txn;
	char ports[CONF_MAX_RANGES * 12];
	int created;

	daemon_start(&d, argc, argv, "allocd", DAEMON_REPLAY | DAEMON_CHECK,
	    &conf);
	if (d.check) {
		log_init("allocd", 1, d.verbose);
		return check_config();
	}
	if (d.replay != NULL) {
		log_init("allocd", 1, d.verbose);
		return replay_run(&conf, d.replay);
	}
	if (store_open(&st, conf.store, (size_t)conf.map_size_mb << 20, 0))
		fatalx("cannot open the store at %s", conf.store);
	if (store_begin(&st, &txn, 1) != 0)
		fatalx("read transaction");
	alloc_init(&al, &st, &conf, store_last_seq(&st, txn));
	mdb_txn_abort(txn);
	compact_open(&cp, &st, &conf, al.seq);
	if (proof_load(&conf, 1, &created) == -1)
		fatalx("cannot read the proof key");
	if (created)
		log_info("made a new proof key: addresses written "
		    "before it prove nothing now");
	if (created && al.seq != 0 && proof_keep(&conf) == -1)
		fatalx("cannot keep the proof key");
	if (al.seq == 0) {
		adopt_begin(&adopt, now_ms(), conf.adopt_wait, created);
		log_info("the store is empty: holding observations "
		    "until every cluster is resynced (at most %u s), so that "
		    "proven addresses are adopted first%s", conf.adopt_wait,
		    created ? "; a new key: unproven ones are adopted too, "
		    "this once" : "");
	}
	check_stranded();
	gauges_init(&gauges, &st, &conf);

	in_sock = bus_socket(ZMQ_ROUTER);
	pub_sock = bus_socket(ZMQ_PUB);
	sync_sock = bus_socket(ZMQ_ROUTER);
	if (bus_bind(in_sock, conf.alloc_in) == -1 ||
	    bus_bind(pub_sock, conf.alloc_pub) == -1 ||
	    bus_bind(sync_sock, conf.alloc_sync) == -1)
		fatalx("cannot bind the bus");
	loop_socket(in_sock, ZMQ_POLLIN, on_in_sock, NULL);
	since_init(&st, &al, sync_sock);
	loop_socket(sync_sock, ZMQ_POLLIN, on_sync_sock, NULL);
	/* holding: soon, so that a restart is heard at once */
	bus_heartbeat(&hb, pub_sock, heartbeat_seq, NULL,
	    adopt.active ? 200 : BUS_HEARTBEAT_MS);
	loop_timer(1000, 1, every_second, NULL);
	more_work = loop_timer(0, 0, no_op, NULL);
	loop_timer_stop(more_work);
	loop_after(after_turn, NULL);
	loop_counter("ignored", &ignored);
	if (adopt.active)
		health_set_ready(0, "holding observations until every "
		    "cluster is resynced");
	else
		health_set_ready(1, NULL);
	health_set_position(al.seq, 0);
	if (daemon_ready(&d, "allocd") == -1)
		fatal("pid file");
	health_set_ready(!adopt.active, "on an empty store, holding "
	    "observations until every cluster is resynced");
	ports_format(&conf.ports, ports, sizeof(ports));
	log_info("ready at seq %llu, ports %s",
	    (unsigned long long)al.seq, ports);

	every_second(NULL);
	loop_run();
	log_info("exiting at seq %llu", (unsigned long long)al.seq);
	metrics_stop();		/* its scrapes read the store */
	compact_close(&cp);
	since_close();
	loop_free();
	bus_close(in_sock);
	bus_close(pub_sock);
	bus_close(sync_sock);
	bus_term();
	alloc_free(&al);
	store_close(&st);
	return 0;
}
