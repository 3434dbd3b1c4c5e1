/*
 * allocd — the single writer of portico's durable state.
 *
 * Observations arrive on a ROUTER (from watcherd and the applyds).  All that
 * are waiting go into one LMDB write transaction (group commit), each logged
 * with the decisions it causes; the transaction is committed durably, and
 * only then is everything it logged published on PUB and the senders
 * acknowledged.  A second ROUTER answers SINCE <seq> from the log, so a
 * consumer that missed anything catches up by itself.  Started on an empty
 * store, allocd first holds what it hears, and the SINCE asked meanwhile,
 * until the clusters are resynced (adopt.c), so that the ports written on
 * objects are adopted before anything new is given out.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adopt.h"
#include "alloc.h"
#include "bus.h"
#include "daemon.h"
#include "hash.h"
#include "log.h"
#include "proof.h"
#include "replay.h"
#include "store.h"

#define BATCH_MAX	4096	/* observations in one transaction */
#define SINCE_MAX	50000	/* log records in one SINCE answer */
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

static void
publish(void)
{
	size_t i;

	for (i = 0; i < al.nout; i++)
		if (bus_send(pub_sock, &al.out[i]) == -1)
			log_debug("publish: seq %llu dropped (consumers "
			    "repair by SINCE)",
			    (unsigned long long)al.out[i].seq);
	alloc_clear(&al);
}

static int
is_observation(int type)
{
	return type >= EV_CLUSTER_UP && type <= EV_APPLIED;	/* not TICK */
}

/*
 * Run the batch in one transaction.  When the map is full, grow it and run
 * the whole batch again: nothing of the failed attempt was committed.
 */
static void
commit_batch(struct event *batch, size_t n)
{
	MDB_envinfo info;
	MDB_txn *txn;
	uint64_t seq0 = al.seq;
	size_t i;
	int rc;

	for (;;) {
		if ((rc = store_begin(&st, &txn, 0)) != 0)
			fatalx("begin: %s", mdb_strerror(rc));
		for (i = 0, rc = 0; i < n && (rc == 0 || rc == 1); i++)
			rc = alloc_observe(&al, txn, &batch[i]);
		if (rc == 0 || rc == 1)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc == 0 || rc == 1)
			return;
		alloc_rollback(&al, seq0);
		if (rc != MDB_MAP_FULL)
			fatalx("commit: %s", mdb_strerror(rc));
		mdb_env_info(st.env, &info);
		log_info("store full at %zu MB, growing",
		    info.me_mapsize >> 20);
		if ((rc = mdb_env_set_mapsize(st.env, info.me_mapsize * 2)))
			fatalx("grow: %s", mdb_strerror(rc));
	}
}

/* Remember that the sender id sent seq (its own sequence, to ACK). */
static void
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
}

/* What each sender sent is committed: say so, and forget them. */
static void
senders_ack(struct sender *senders, size_t *ns)
{
	struct event ack;
	size_t i;

	for (i = 0; i < *ns; i++) {
		event_init(&ack, EV_ACK);
		ack.seq = senders[i].seq;
		ack.time = now_ms();
		bus_send_to(in_sock, &senders[i].id, &ack);
		zmq_msg_close(&senders[i].id);
	}
	*ns = 0;
}

/* Acks owed for what is held, sent once it is committed. */
static struct sender	held_senders[SENDERS_MAX];
static size_t		nheld_senders;

static void
on_input(void)
{
	static struct event batch[BATCH_MAX];
	struct sender senders[SENDERS_MAX];
	zmq_msg_t id;
	size_t n = 0, ns = 0, i;
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
		sender_note(adopt.active ? held_senders : senders,
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
		commit_batch(batch, n);
		publish();
	}
	for (i = 0; i < n; i++)
		event_free(&batch[i]);
	senders_ack(senders, &ns);
}

struct peer {
	void		*sock;
	zmq_msg_t	*id;
	size_t		 n;
};

static int
send_state(const struct event *ev, void *arg)
{
	struct peer *p = arg;

	if (bus_send_to(p->sock, p->id, ev) == -1)
		return -1;
	p->n++;
	return 0;
}

/*
 * The records after seq are gone (compacted): send the whole state as it
 * is now, bracketed by STATE and SINCE_END at our seq.  If any of it could
 * not be sent, no SINCE_END goes: the consumer, still waiting, asks again
 * rather than taking a partial state for the whole.
 */
static size_t
answer_state(MDB_txn *txn, zmq_msg_t *id, uint64_t last)
{
	struct peer p = { sync_sock, id, 0 };
	struct event ev;

	event_init(&ev, EV_STATE);
	ev.seq = last;
	ev.time = now_ms();
	if (bus_send_to(sync_sock, id, &ev) == -1 ||
	    alloc_state(&al, txn, send_state, &p) == -1)
		return 0;
	event_init(&ev, EV_SINCE_END);
	ev.seq = last;
	ev.time = now_ms();
	bus_send_to(sync_sock, id, &ev);
	return p.n;
}

/* The log records after seq, at most SINCE_MAX, then SINCE_END. */
static size_t
answer_log(MDB_txn *txn, zmq_msg_t *id, uint64_t seq, uint64_t last)
{
	struct event end;
	unsigned char k[8];
	MDB_cursor *cur;
	MDB_val key, val;
	size_t n = 0;
	int op;

	if (mdb_cursor_open(txn, st.log, &cur) != 0)
		fatalx("cursor");
	store_key_u64(k, seq + 1);
	key.mv_size = 8;
	key.mv_data = k;
	for (op = MDB_SET_RANGE; n < SINCE_MAX &&
	    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
		if (bus_send_raw_to(sync_sock, id, val.mv_data,
		    val.mv_size) == -1)
			break;	/* the consumer will ask again */
		n++;
	}
	mdb_cursor_close(cur);
	event_init(&end, EV_SINCE_END);
	end.seq = last;
	end.time = now_ms();
	bus_send_to(sync_sock, id, &end);
	return n;
}

/*
 * Answer SINCE seq: from the log when it still holds seq + 1, else with the
 * whole state (the log was compacted past seq, or is a new store's).
 */
static void
answer_since(zmq_msg_t *id, uint64_t seq)
{
	MDB_txn *txn;
	uint64_t first, last;
	size_t n;

	if (store_begin(&st, &txn, 1) != 0)
		fatalx("read transaction");
	first = store_first_seq(&st, txn);
	last = store_last_seq(&st, txn);
	if (first > seq + 1)
		n = answer_state(txn, id, last);
	else
		n = answer_log(txn, id, seq, last);
	mdb_txn_abort(txn);
	log_debug("SINCE %llu: %zu %s", (unsigned long long)seq, n,
	    first > seq + 1 ? "state events" : "records");
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
			answer_since(&id, req.seq);
		event_free(&req);
		zmq_msg_close(&id);
	}
}

/*
 * Compaction by policy: when the log holds more than compact_records
 * records or compact_mb MiB, or its oldest record after the snapshot is
 * older than compact_age.  A SNAPSHOT record is logged and the tables are copied
 * beside it, in one durable transaction that also drops everything before
 * it; consumers that were further behind get the state instead.
 */
static uint64_t	first_seq;

/*
 * The pages the log takes: records of up to 1,024 backends make a count
 * of records a poor bound on bytes, so compact_mb bounds them too.
 */
static uint64_t
log_bytes(MDB_txn *txn)
{
	MDB_stat ms;

	if (mdb_stat(txn, st.log, &ms) != 0)
		return 0;
	return (uint64_t)(ms.ms_branch_pages + ms.ms_leaf_pages +
	    ms.ms_overflow_pages) * ms.ms_psize;
}

static int
compact_due(uint64_t now, int by_age)
{
	struct event ev;
	MDB_txn *txn;
	MDB_val key, val;
	unsigned char k[8];
	char err[128];
	uint64_t seq = first_seq, t = 0;

	if (al.seq >= first_seq + conf.compact_records)
		return 1;
	if (al.seq <= first_seq)
		return 0;
	if (store_begin(&st, &txn, 1) != 0)
		fatalx("read transaction");
	if (log_bytes(txn) >= (uint64_t)conf.compact_mb << 20) {
		mdb_txn_abort(txn);
		return 1;
	}
	if (!by_age || conf.compact_age == 0) {
		mdb_txn_abort(txn);
		return 0;
	}
	for (;; seq++) {
		store_key_u64(k, seq);
		key.mv_size = 8;
		key.mv_data = k;
		if (mdb_get(txn, st.log, &key, &val) != 0 || event_decode(&ev,
		    val.mv_data, val.mv_size, err, sizeof(err)) == -1)
			break;
		/* event_free() clears the event: read it first */
		if (ev.type != EV_SNAPSHOT) {
			t = ev.time;
			event_free(&ev);
			break;
		}
		event_free(&ev);
	}
	mdb_txn_abort(txn);
	return t != 0 && now > t + (uint64_t)conf.compact_age * 1000;
}

static void
compact(uint64_t now)
{
	struct event ev;
	uint64_t before = first_seq;

	event_init(&ev, EV_SNAPSHOT);
	ev.time = now;
	commit_batch(&ev, 1);
	publish();
	first_seq = al.seq;
	log_info("compacted the log: %llu records before seq %llu "
	    "dropped in %llu ms", (unsigned long long)(al.seq - before),
	    (unsigned long long)al.seq, (unsigned long long)(now_ms() - now));
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
	commit_batch(&ev, 1);
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
		commit_batch(&ev, 1);
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
	al.seq = adopt_base(&adopt);
	first_seq = al.seq + 1;
	commit_batch(batch, n);
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
	    (unsigned long long)(first_seq - 1), (unsigned long long)learned);
	publish();
	senders_ack(held_senders, &nheld_senders);
	for (i = 0; i < n; i++)
		event_free(&batch[i]);
	free(batch);
	for (i = 0; i < nsince_held; i++) {
		/* one the consumer has given up on, it has asked again */
		if (now_ms() - since_held[i].at < BUS_SYNC_TIMEOUT_MS)
			answer_since(&since_held[i].id, since_held[i].seq);
		zmq_msg_close(&since_held[i].id);
	}
	nsince_held = 0;
}

static void
heartbeat(void)
{
	struct event hb;

	event_init(&hb, EV_HEARTBEAT);
	/* while claims are held: where the new store will go on from */
	hb.seq = adopt.active ? adopt_ahead(&adopt) : al.seq;
	hb.time = now_ms();
	hb.boot = bus_boot_id();
	hb.has = F_BOOT;
	bus_send(pub_sock, &hb);
}

int
main(int argc, char **argv)
{
	struct daemon d;
	zmq_pollitem_t items[3];
	uint64_t next_hb = 0, now;
	MDB_txn *txn;
	char ports[CONF_MAX_RANGES * 12];
	int sig, timeout, created;

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
	if ((first_seq = store_first_seq(&st, txn)) == 0)
		first_seq = al.seq + 1;		/* an empty log */
	mdb_txn_abort(txn);
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

	in_sock = bus_socket(ZMQ_ROUTER);
	pub_sock = bus_socket(ZMQ_PUB);
	sync_sock = bus_socket(ZMQ_ROUTER);
	if (bus_bind(in_sock, conf.alloc_in) == -1 ||
	    bus_bind(pub_sock, conf.alloc_pub) == -1 ||
	    bus_bind(sync_sock, conf.alloc_sync) == -1)
		fatalx("cannot bind the bus");
	if (daemon_ready(&d, "allocd") == -1)
		fatal("pid file");
	ports_format(&conf.ports, ports, sizeof(ports));
	log_info("ready at seq %llu, ports %s",
	    (unsigned long long)al.seq, ports);

	for (;;) {
		now = now_ms();
		if (adopt.active && adopt_due(&adopt, now))
			adopt_finish(now);
		if (now >= next_hb) {
			if (!adopt.active)
				tick(now);
			if (!adopt.active && compact_due(now, 1))
				compact(now);
			heartbeat();
			/* holding: soon, so that a restart is heard at once */
			next_hb = now + (adopt.active ? 200 : BUS_HEARTBEAT_MS);
		}
		items[0] = (zmq_pollitem_t){ in_sock, 0, ZMQ_POLLIN, 0 };
		items[1] = (zmq_pollitem_t){ sync_sock, 0, ZMQ_POLLIN, 0 };
		items[2] = (zmq_pollitem_t){ NULL, d.sigfd, ZMQ_POLLIN, 0 };
		timeout = (int)(next_hb - now);
		if (zmq_poll(items, 3, timeout) == -1 && errno != EINTR)
			fatal("zmq_poll");
		if (items[0].revents & ZMQ_POLLIN) {
			on_input();
			if (!adopt.active && compact_due(0, 0))
				compact(now_ms());
		}
		if (items[1].revents & ZMQ_POLLIN)
			on_since();
		if ((items[2].revents & ZMQ_POLLIN) &&
		    (sig = daemon_signal(&d)) != 0 && sig != SIGCHLD &&
		    sig != SIGHUP)
			break;
	}
	log_info("exiting at seq %llu", (unsigned long long)al.seq);
	bus_close(in_sock);
	bus_close(pub_sock);
	bus_close(sync_sock);
	zmq_ctx_term(bus_ctx());
	alloc_free(&al);
	store_close(&st);
	return 0;
}
