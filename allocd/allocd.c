/*
 * allocd — the single writer of portico's durable state.
 *
 * Observations arrive on a ROUTER (from watcherd and the applyds).  All that
 * are waiting go into one LMDB write transaction (group commit), each logged
 * with the decisions it causes; the transaction is committed durably, and
 * only then is everything it logged published on PUB and the senders
 * acknowledged.  A second ROUTER answers SINCE <seq> from the log, so a
 * consumer that missed anything catches up by itself.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bus.h"
#include "daemon.h"
#include "log.h"
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
			fatalx("allocd: begin: %s", mdb_strerror(rc));
		for (i = 0, rc = 0; i < n && (rc == 0 || rc == 1); i++)
			rc = alloc_observe(&al, txn, &batch[i]);
		if (rc == 0 || rc == 1)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc == 0 || rc == 1)
			return;
		al.seq = seq0;
		alloc_clear(&al);
		if (rc != MDB_MAP_FULL)
			fatalx("allocd: commit: %s", mdb_strerror(rc));
		mdb_env_info(st.env, &info);
		log_info("allocd: store full at %zu MB, growing",
		    info.me_mapsize >> 20);
		if ((rc = mdb_env_set_mapsize(st.env, info.me_mapsize * 2)))
			fatalx("allocd: grow: %s", mdb_strerror(rc));
	}
}

static void
on_input(void)
{
	static struct event batch[BATCH_MAX];
	struct sender senders[SENDERS_MAX];
	struct event ack;
	zmq_msg_t id;
	size_t n = 0, ns = 0, i;
	uint64_t now = now_ms();
	int rc;

	while (n < BATCH_MAX && (rc = bus_recv(in_sock, &batch[n], &id)) != 0) {
		if (rc == -1)
			continue;
		if (!is_observation(batch[n].type)) {
			ignored++;
			log_debug("allocd: ignored %s on input",
			    event_name(batch[n].type));
			event_free(&batch[n]);
			zmq_msg_close(&id);
			continue;
		}
		for (i = 0; i < ns; i++)
			if (zmq_msg_size(&senders[i].id) == zmq_msg_size(&id) &&
			    memcmp(zmq_msg_data(&senders[i].id),
			    zmq_msg_data(&id), zmq_msg_size(&id)) == 0)
				break;
		if (i == ns && ns < SENDERS_MAX) {
			zmq_msg_init(&senders[ns].id);
			zmq_msg_move(&senders[ns].id, &id);
			senders[ns++].seq = 0;
		}
		if (i < ns && batch[n].seq > senders[i].seq)
			senders[i].seq = batch[n].seq;
		zmq_msg_close(&id);
		/* allocd's clock stamps the observation: replay reuses it */
		batch[n++].time = now;
	}
	if (n == 0)
		return;
	commit_batch(batch, n);
	publish();
	for (i = 0; i < n; i++)
		event_free(&batch[i]);
	for (i = 0; i < ns; i++) {
		event_init(&ack, EV_ACK);
		ack.seq = senders[i].seq;
		ack.time = now;
		bus_send_to(in_sock, &senders[i].id, &ack);
		zmq_msg_close(&senders[i].id);
	}
}

/* Answer SINCE s with the log records after s, then SINCE_END at our seq. */
static void
on_since(void)
{
	struct event req, end;
	unsigned char k[8];
	MDB_cursor *cur;
	MDB_val key, val;
	MDB_txn *txn;
	zmq_msg_t id;
	size_t n = 0;
	int rc, op;

	while ((rc = bus_recv(sync_sock, &req, &id)) != 0) {
		if (rc == -1)
			continue;
		if (req.type != EV_SINCE) {
			event_free(&req);
			zmq_msg_close(&id);
			continue;
		}
		if (store_begin(&st, &txn, 1) != 0)
			fatalx("allocd: read transaction");
		if (mdb_cursor_open(txn, st.log, &cur) != 0)
			fatalx("allocd: cursor");
		store_key_u64(k, req.seq + 1);
		key.mv_size = 8;
		key.mv_data = k;
		for (op = MDB_SET_RANGE; n < SINCE_MAX &&
		    mdb_cursor_get(cur, &key, &val, op) == 0; op = MDB_NEXT) {
			if (bus_send_raw_to(sync_sock, &id, val.mv_data,
			    val.mv_size) == -1)
				break;	/* the consumer will ask again */
			n++;
		}
		event_init(&end, EV_SINCE_END);
		end.seq = store_last_seq(&st, txn);
		end.time = now_ms();
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
		bus_send_to(sync_sock, &id, &end);
		log_debug("allocd: SINCE %llu: %zu records",
		    (unsigned long long)req.seq, n);
		event_free(&req);
		zmq_msg_close(&id);
	}
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
		fatalx("allocd: read transaction");
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
 * Owners on ports the configuration no longer gives out: with
 * allow_shrink they move now (a TICK does it, logged); without it allocd
 * will not start, and says who would move.
 */
static void
check_stranded(void)
{
	struct event ev;
	MDB_txn *txn;
	char **list;
	size_t n;

	if (store_begin(&st, &txn, 1) != 0)
		fatalx("allocd: read transaction");
	list = alloc_stranded(&al, txn);
	mdb_txn_abort(txn);
	for (n = 0; list[n] != NULL; n++)
		if (!conf.allow_shrink && n < 20)
			log_warnx("allocd: %s holds a port no longer in the "
			    "configured ports", list[n]);
	for (n = 0; list[n] != NULL; n++)
		free(list[n]);
	free(list);
	if (n == 0)
		return;
	if (!conf.allow_shrink)
		fatalx("allocd: %zu owners would move; set allow_shrink = 1 "
		    "to move them, or give their ports back", n);
	log_info("allocd: moving %zu owners off ports no longer configured",
	    n);
	event_init(&ev, EV_TICK);
	ev.time = now_ms();
	commit_batch(&ev, 1);
	alloc_clear(&al);	/* nobody listens yet: consumers catch up */
}

static void
heartbeat(void)
{
	struct event hb;

	event_init(&hb, EV_HEARTBEAT);
	hb.seq = al.seq;
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
	int sig, timeout;

	daemon_start(&d, argc, argv, "allocd", DAEMON_REPLAY, &conf);
	if (d.replay != NULL) {
		log_init("allocd", 1, d.verbose);
		return replay_run(&conf, d.replay);
	}
	if (store_open(&st, conf.store, (size_t)conf.map_size_mb << 20, 0))
		fatalx("allocd: cannot open the store at %s", conf.store);
	if (store_begin(&st, &txn, 1) != 0)
		fatalx("allocd: read transaction");
	alloc_init(&al, &st, &conf, store_last_seq(&st, txn));
	mdb_txn_abort(txn);
	check_stranded();

	in_sock = bus_socket(ZMQ_ROUTER);
	pub_sock = bus_socket(ZMQ_PUB);
	sync_sock = bus_socket(ZMQ_ROUTER);
	if (bus_bind(in_sock, conf.alloc_in) == -1 ||
	    bus_bind(pub_sock, conf.alloc_pub) == -1 ||
	    bus_bind(sync_sock, conf.alloc_sync) == -1)
		fatalx("allocd: cannot bind the bus");
	if (config_ready(&conf, "allocd") == -1)
		fatal("allocd: pid file");
	ports_format(&conf.ports, ports, sizeof(ports));
	log_info("allocd: ready at seq %llu, ports %s",
	    (unsigned long long)al.seq, ports);

	for (;;) {
		now = now_ms();
		if (now >= next_hb) {
			tick(now);
			heartbeat();
			next_hb = now + BUS_HEARTBEAT_MS;
		}
		items[0] = (zmq_pollitem_t){ in_sock, 0, ZMQ_POLLIN, 0 };
		items[1] = (zmq_pollitem_t){ sync_sock, 0, ZMQ_POLLIN, 0 };
		items[2] = (zmq_pollitem_t){ NULL, d.sigfd, ZMQ_POLLIN, 0 };
		timeout = (int)(next_hb - now);
		if (zmq_poll(items, 3, timeout) == -1 && errno != EINTR)
			fatal("zmq_poll");
		if (items[0].revents & ZMQ_POLLIN)
			on_input();
		if (items[1].revents & ZMQ_POLLIN)
			on_since();
		if ((items[2].revents & ZMQ_POLLIN) &&
		    (sig = daemon_signal(&d)) != 0 && sig != SIGCHLD &&
		    sig != SIGHUP)
			break;
	}
	log_info("allocd: exiting at seq %llu", (unsigned long long)al.seq);
	bus_close(in_sock);
	bus_close(pub_sock);
	bus_close(sync_sock);
	zmq_ctx_term(bus_ctx());
	alloc_free(&al);
	store_close(&st);
	return 0;
}
