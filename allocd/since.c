/*
 * allocd — SINCE answered: from the log while it still reaches back to
 * the consumer, else with the whole state; a slice at a time between
 * batches of decisions, so that a consumer catching up never holds them
 * up.  allocd.c asks for the answers and gives them their turns.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "bus.h"
#include "log.h"
#include "metrics.h"
#include "since.h"
#include "store.h"

#define SINCE_MAX	50000	/* log records in one SINCE answer */

static struct store	*st;
static struct alloc	*al;
static void		*sync_sock;

void
since_init(struct store *store, struct alloc *alloc, void *sock)
{
	st = store;
	al = alloc;
	sync_sock = sock;
}

/*
 * SINCE answered from the log: the records after seq up to the log's last
 * when it was asked, at most SINCE_MAX, then SINCE_END.  They go out a
 * slice at a time between batches, so that a consumer far behind does not
 * hold decisions up; an answer older than half the consumer's patience
 * (BUS_SYNC_TIMEOUT_MS) is finished at once.  A record compacted away
 * meanwhile, or one the consumer could not take, ends the answer early,
 * as SINCE_MAX does: the consumer, short of last, asks again (and is
 * given the state when the log no longer reaches back to it).
 *
 * When the log no longer holds seq + 1, the answer is the whole state as
 * it is when its first slice goes, bracketed by STATE and SINCE_END at
 * that seq, in slices too (100,000 owners took 100-200 ms to send in one
 * go): the tables are read into memory in slices of one read transaction,
 * which keeps it one state and ends once they are read (held through the
 * sending, it made the map fill under churn), then sent.  If any of it
 * cannot be sent, no SINCE_END goes: the consumer, still waiting, asks
 * again rather than take a part for the whole.
 */
#define ANSWERS_MAX	64
#define SLICE_US	2000	/* sending, in one slice */
#define SLICE_MIN	256	/* records in a slice, at least */

static struct answer {
	zmq_msg_t	id;
	uint64_t	next;		/* the next record to send */
	uint64_t	last;		/* SINCE_END's seq */
	size_t		left;		/* records it may still send */
	uint64_t	asked;		/* ms */
	int		state;		/* the whole state, not the log */
	int		begun;		/* the state's reading */
	MDB_txn		*txn;		/* the state's, while it is read */
	struct alloc_state_iter it;
} answers[ANSWERS_MAX];
static size_t	nanswers;

static void
answer_drop(size_t i)
{
	alloc_state_end(&answers[i].it);
	if (answers[i].txn != NULL)
		mdb_txn_abort(answers[i].txn);
	zmq_msg_close(&answers[i].id);
	memmove(&answers[i], &answers[i + 1],
	    (--nanswers - i) * sizeof(answers[0]));
}

/*
 * The map is about to grow, which no open transaction may see: a state
 * still being read is given up (its consumer asks again).
 */
void
since_unread(void)
{
	size_t i;

	for (i = nanswers; i-- > 0;)
		if (answers[i].txn != NULL) {
			log_info("SINCE: the state being read given up: "
			    "the store grows");
			answer_drop(i);
		}
}

/* Queue the answer; one asked again by the same consumer replaces it. */
static void
answer_queue(zmq_msg_t *id, uint64_t seq, uint64_t last, int state)
{
	struct answer *a;
	size_t i;

	for (i = 0; i < nanswers; i++)
		if (zmq_msg_size(&answers[i].id) == zmq_msg_size(id) &&
		    memcmp(zmq_msg_data(&answers[i].id), zmq_msg_data(id),
		    zmq_msg_size(id)) == 0) {
			answer_drop(i);
			break;
		}
	if (nanswers == ANSWERS_MAX)
		answer_drop(0);		/* the likeliest given up on */
	a = &answers[nanswers++];
	memset(a, 0, sizeof(*a));
	zmq_msg_init(&a->id);
	zmq_msg_copy(&a->id, id);
	a->next = seq + 1;
	a->last = last;
	a->left = SINCE_MAX;
	a->asked = now_ms();
	a->state = state;
}

/* A slice: until when it may go on (0: no limit), records so far. */
struct slice {
	void		*sock;
	zmq_msg_t	*id;
	uint64_t	 until;		/* µs */
	size_t		 records;	/* read or sent */
};

static int
slice_send(const struct event *ev, void *arg)
{
	struct slice *sl = arg;

	return bus_send_to(sl->sock, sl->id, ev);
}

static int
slice_enough(void *arg)
{
	struct slice *sl = arg;

	sl->records++;
	return sl->until != 0 && sl->records >= SLICE_MIN &&
	    sl->records % 32 == 0 && clock_us(CLOCK_MONOTONIC) >= sl->until;
}

/* The answer's end: SINCE_END at its seq; the answer is dropped. */
static void
answer_end(struct answer *a)
{
	struct event end;

	event_init(&end, EV_SINCE_END);
	end.seq = a->last;
	end.time = now_ms();
	bus_send_to(sync_sock, &a->id, &end);
	answer_drop(0);
}

/*
 * One slice of the oldest answer, a state: the tables are read first, in
 * slices of a read transaction that ends when they are all read, then
 * sent from memory.
 */
static void
state_some(struct answer *a, uint64_t until)
{
	struct slice sl = { sync_sock, &a->id, until, 0 };
	struct event ev;
	int rc;

	if (!a->begun) {
		if (store_begin(st, &a->txn, 1) != 0)
			fatalx("read transaction");
		a->last = store_last_seq(st, a->txn);
		alloc_state_begin(&a->it, a->txn);
		a->begun = 1;
	}
	if (a->txn != NULL) {
		if (alloc_state_read(al, &a->it, slice_enough, &sl) == 0)
			return;
		mdb_txn_abort(a->txn);
		a->txn = NULL;
		event_init(&ev, EV_STATE);
		ev.seq = a->last;
		ev.time = now_ms();
		if (bus_send_to(sync_sock, &a->id, &ev) == -1) {
			answer_drop(0);
			return;
		}
		if (until != 0)
			return;		/* the sending in the next slices */
	}
	if ((rc = alloc_state_some(&a->it, slice_send, &sl, slice_enough,
	    &sl)) == 0)
		return;
	if (rc == 1) {
		log_debug("SINCE %llu: the state at %llu, %llu ms",
		    (unsigned long long)(a->next - 1),
		    (unsigned long long)a->last,
		    (unsigned long long)(now_ms() - a->asked));
		answer_end(a);
	} else
		answer_drop(0);
}

/* One slice of the oldest answer. */
void
since_some(void)
{
	struct answer *a = &answers[0];
	unsigned char k[8];
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val key, val;
	uint64_t until = now_ms() - a->asked < BUS_SYNC_TIMEOUT_MS / 2 ?
	    clock_us(CLOCK_MONOTONIC) + SLICE_US : 0;
	size_t n = 0;
	int op, cut = 0;	/* ended early */

	if (a->state) {
		state_some(a, until);
		return;
	}
	if (store_begin(st, &txn, 1) != 0 ||
	    mdb_cursor_open(txn, st->log, &cur) != 0)
		fatalx("read transaction");
	store_key_u64(k, a->next);
	key.mv_size = 8;
	key.mv_data = k;
	for (op = MDB_SET_RANGE; a->left > 0 && a->next <= a->last &&
	    (n < SLICE_MIN || n % 64 != 0 || until == 0 ||
	    clock_us(CLOCK_MONOTONIC) < until); op = MDB_NEXT) {
		if (mdb_cursor_get(cur, &key, &val, op) != 0 ||
		    store_u64_key(key.mv_data) != a->next ||
		    bus_send_raw_to(sync_sock, &a->id, val.mv_data,
		    val.mv_size) == -1) {
			cut = 1;
			break;
		}
		a->next++;
		a->left--;
		n++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (!cut && a->left > 0 && a->next <= a->last)
		return;
	answer_end(a);
}

/*
 * Answer SINCE seq: from the log when it still holds seq + 1, else with the
 * whole state (the log was compacted past seq, or is a new store's).
 */
void
since_answer(zmq_msg_t *id, uint64_t seq)
{
	MDB_txn *txn;
	uint64_t first, last;

	metrics_inc(M_SINCE_SERVED, 0);
	if (store_begin(st, &txn, 1) != 0)
		fatalx("read transaction");
	first = store_first_seq(st, txn);
	last = store_last_seq(st, txn);
	mdb_txn_abort(txn);
	answer_queue(id, seq, last, first > seq + 1);
}

int
since_busy(void)
{
	return nanswers > 0;
}

void
since_close(void)
{
	while (nanswers > 0)
		answer_drop(0);
}
