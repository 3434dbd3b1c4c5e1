/*
 * portico — the bus: events over ZeroMQ.
 *
 * A producer whose consumers must not miss anything binds a PUB socket for
 * live events and a ROUTER socket that answers SINCE <seq> (the ZeroMQ
 * guide's Clone pattern, fed from a durable log).  The consumer half lives
 * here: subscribe first, ask SINCE, buffer live events meanwhile, drop what
 * it already has, and repair any gap it sees by asking again.  Heartbeats
 * carry the producer's sequence and boot id, so silence and restarts are
 * noticed too.  Nothing relies on PUB never dropping.
 */
#ifndef PORTICO_BUS_H
#define PORTICO_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "event.h"
#include "loop.h"

/*
 * The largest message any socket takes: the largest legitimate event is a
 * route of EV_MAX_BACKENDS IPv6 backends, about 56 KiB (test_bus checks
 * it).  libzmq drops a bigger one, and the connection it came on, before
 * anything is decoded.  A peer makes us hold at most BUS_RCVHWM messages
 * per connection (128 MiB at worst, some 200 KiB as events are), and on
 * tcp:// only a peer whose key is listed gets that far (zap.h).  What we
 * send may queue up to BUS_SNDHWM: our own events, for a consumer that
 * lags (PUB drops past it, and the consumer catches up by SINCE).
 */
#define BUS_MAXMSG		(128 << 10)
#define BUS_RCVHWM		1000
#define BUS_SNDHWM		200000
#define BUS_HEARTBEAT_MS	1000
#define BUS_SYNC_TIMEOUT_MS	5000
#define BUS_SILENCE_MS		(3 * BUS_HEARTBEAT_MS + 500)
#define BUS_MAXBUF		100000

void	*bus_ctx(void);
void	*bus_socket(int type);
int	 bus_bind(void *, const char *endpoint);
/*
 * [bus] bind: bind every tcp:// endpoint on this address, with the
 * endpoint's port, while peers connect to the endpoint as written (a
 * Kubernetes Service's name, which no pod can bind).  "" binds as written.
 */
void	 bus_bind_on(const char *addr);
int	 bus_connect(void *, const char *endpoint);
void	 bus_close(void *);
/* At exit, every socket of ours closed: the bus's own, then the context. */
void	 bus_term(void);

/* Encode and send; more = ZMQ_SNDMORE handled by callers of bus_send_to. */
int	 bus_send(void *, const struct event *);
int	 bus_send_to(void *router, const zmq_msg_t *id, const struct event *);

/*
 * Receive one event without blocking.  Returns 1 when one was decoded, 0
 * when nothing is waiting, -1 when what arrived was not a valid event (it
 * is logged with the reason and counted in bus_garbage).  For a ROUTER,
 * id receives the sender's identity (the caller closes it).
 */
int	 bus_recv(void *, struct event *, zmq_msg_t *id);
extern unsigned long bus_garbage;

uint64_t bus_boot_id(void);

struct consumer;
struct consumer_ops {
	/* an event in order; the consumer frees it afterwards */
	void	(*apply)(const struct event *, void *);
	/*
	 * Instead of apply, optional: the same, but the callee may keep
	 * what the event holds (a CONFIG's text) by setting it to NULL.
	 */
	void	(*take)(struct event *, void *);
	/* the producer's history went backwards: drop everything */
	void	(*reset)(void *);
	/* the producer restarted (new boot id) */
	void	(*restarted)(void *);
	/* caught up: the reply to SINCE has been applied */
	void	(*synced)(void *);
};

struct consumer {
	const char		*name;
	const char		*pub_ep;
	const char		*sync_ep;
	void			*sub;
	void			*sync;
	int			 latest_only;	/* 1: a newer seq supersedes;
						 * CONSUMER_CHAINED: seqs are
						 * chained by F_PREV */
	const struct consumer_ops *ops;
	void			*arg;

	uint64_t		 last;		/* last seq applied */
	int			 have;		/* anything applied yet */
	uint64_t		 boot;
	int			 syncing;
	int			 instate;	/* applying a STATE answer */
	uint64_t		 state_seq;	/* the seq it brings us to */
	int			 synced_once;
	uint64_t		 sync_sent;
	uint64_t		 heard;		/* ms of the last message */
	struct event		*buf;		/* live events held while syncing */
	size_t			 nbuf;
	size_t			 capbuf;
	int			 overflow;
	unsigned long		 gaps;
};

/*
 * latest_only for a producer whose seqs are not contiguous (renderd's route
 * table, numbered by allocd's seqs): each event names the one before it.
 */
#define CONSUMER_CHAINED	2

void	consumer_init(struct consumer *, const char *name, const char *pub,
	    const char *sync, int latest_only, const struct consumer_ops *,
	    void *arg);
int	consumer_pollitems(struct consumer *, zmq_pollitem_t *);
void	consumer_dispatch(struct consumer *, const zmq_pollitem_t *);
void	consumer_timer(struct consumer *, uint64_t now);
void	consumer_close(struct consumer *);

/*
 * Register the consumer with the loop (loop.h): its two sockets each turn
 * (the SINCE one is made anew at each ask), a timer for its silence and
 * SINCE deadlines, and its gaps as the counter "bus_gaps".
 */
void	consumer_register(struct consumer *);

/*
 * A producer's heartbeat, on the loop: every period ms (and once at
 * once), a HEARTBEAT on pub carrying the seq that seq(arg, &seq) gives
 * and our boot id, so that consumers notice silence, gaps and restarts.
 * seq returns -1 while there is nothing to say (renderd before its
 * first catch-up: a consumer would take its 0 for a reset).
 */
struct bus_heartbeat {
	void			*pub;
	int			(*seq)(void *, uint64_t *);
	void			*arg;
	struct loop_timer	*timer;
	unsigned long		 sent;
};
void	bus_heartbeat(struct bus_heartbeat *, void *pub,
	    int (*seq)(void *, uint64_t *), void *arg, uint64_t period_ms);
/* Another period from now on (allocd beats faster while it holds). */
void	bus_heartbeat_period(struct bus_heartbeat *, uint64_t period_ms);

/* Send bytes already encoded (a log record) to a ROUTER peer. */
int	 bus_send_raw_to(void *router, const zmq_msg_t *id, const void *,
	    size_t);

#endif
