/*
 * portico — the bus.
 */
#include <sys/random.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "metrics.h"
#include "zap.h"

unsigned long bus_garbage;

static void *ctx;

void *
bus_ctx(void)
{
	if (ctx == NULL && (ctx = zmq_ctx_new()) == NULL)
		fatal("zmq_ctx_new");
	return ctx;
}

void *
bus_socket(int type)
{
	int64_t maxmsg = BUS_MAXMSG;
	int linger = 0, sndhwm = BUS_SNDHWM, rcvhwm = BUS_RCVHWM;
	void *s;

	if ((s = zmq_socket(bus_ctx(), type)) == NULL)
		fatal("zmq_socket");
	if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) ||
	    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)) ||
	    zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof(sndhwm)) ||
	    zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof(rcvhwm)))
		fatal("zmq_setsockopt");
	if (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0))
		fatal("zmq_setsockopt SUBSCRIBE");
	return s;
}

static char	bind_addr[64];

void
bus_bind_on(const char *addr)
{
	snprintf(bind_addr, sizeof(bind_addr), "%s", addr);
}

int
bus_bind(void *s, const char *ep)
{
	char where[512];
	const char *port;

	/* a socket file left by a previous run of ours would refuse the bind */
	if (strncmp(ep, "ipc://", 6) == 0 && unlink(ep + 6) == -1 &&
	    errno != ENOENT)
		log_warn("unlink %s", ep + 6);
	zap_server(s, ep);		/* the door is the endpoint as written */
	if (bind_addr[0] != '\0' && strncmp(ep, "tcp://", 6) == 0 &&
	    (port = strrchr(ep, ':')) != NULL) {
		snprintf(where, sizeof(where), strchr(bind_addr, ':') != NULL ?
		    "tcp://[%s]%s" : "tcp://%s%s", bind_addr, port);
		log_info("bind %s on %s", ep, where);
		ep = where;
	}
	if (zmq_bind(s, ep) == -1) {
		log_warn("bind %s", ep);
		return -1;
	}
	return 0;
}

int
bus_connect(void *s, const char *ep)
{
	zap_client(s, ep);
	if (zmq_connect(s, ep) == -1) {
		log_warn("connect %s", ep);
		return -1;
	}
	return 0;
}

void
bus_close(void *s)
{
	if (s != NULL)
		zmq_close(s);
}

void
bus_term(void)
{
	zap_close();
	if (ctx != NULL)
		zmq_ctx_term(ctx);
	ctx = NULL;
}

static void
free_buf(void *data, void *hint)
{
	(void)hint;
	free(data);
}

static int
send_event(void *s, const struct event *ev, int flags)
{
	unsigned char *buf;
	size_t len;
	zmq_msg_t m;

	if (event_encode(ev, &buf, &len) == -1)
		fatalx("event_encode: %s lacks a required field",
		    event_name(ev->type));
	zmq_msg_init_data(&m, buf, len, free_buf, NULL);
	if (zmq_msg_send(&m, s, flags) == -1) {
		zmq_msg_close(&m);
		return -1;
	}
	return 0;
}

int
bus_send(void *s, const struct event *ev)
{
	return send_event(s, ev, ZMQ_DONTWAIT);
}

int
bus_send_to(void *router, const zmq_msg_t *id, const struct event *ev)
{
	zmq_msg_t copy;

	zmq_msg_init(&copy);
	zmq_msg_copy(&copy, (zmq_msg_t *)id);
	if (zmq_msg_send(&copy, router, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
		zmq_msg_close(&copy);
		return -1;
	}
	return send_event(router, ev, ZMQ_DONTWAIT);
}

static void
drain_parts(void *s)
{
	zmq_msg_t m;
	int more;
	size_t len = sizeof(more);

	for (;;) {
		if (zmq_getsockopt(s, ZMQ_RCVMORE, &more, &len) == -1 || !more)
			return;
		zmq_msg_init(&m);
		zmq_msg_recv(&m, s, ZMQ_DONTWAIT);
		zmq_msg_close(&m);
	}
}

int
bus_recv(void *s, struct event *ev, zmq_msg_t *id)
{
	char err[128];
	zmq_msg_t m;
	int type;
	size_t len = sizeof(type);

	zmq_getsockopt(s, ZMQ_TYPE, &type, &len);
	if (type == ZMQ_ROUTER) {
		zmq_msg_init(id);
		if (zmq_msg_recv(id, s, ZMQ_DONTWAIT) == -1) {
			zmq_msg_close(id);
			return errno == EAGAIN ? 0 : -1;
		}
	}
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) == -1) {
		zmq_msg_close(&m);
		if (type == ZMQ_ROUTER)
			zmq_msg_close(id);
		return errno == EAGAIN ? 0 : -1;
	}
	drain_parts(s);
	if (event_decode(ev, zmq_msg_data(&m), zmq_msg_size(&m), err,
	    sizeof(err)) == -1) {
		bus_garbage++;
		log_warnx("bus: dropped a %zu-byte message: %s",
		    zmq_msg_size(&m), err);
		zmq_msg_close(&m);
		if (type == ZMQ_ROUTER)
			zmq_msg_close(id);
		return -1;
	}
	zmq_msg_close(&m);
	return 1;
}

uint64_t
bus_boot_id(void)
{
	static uint64_t boot;

	while (boot == 0)
		if (getrandom(&boot, sizeof(boot), 0) != sizeof(boot))
			fatal("getrandom");
	return boot;
}

/* The consumer. */

void
consumer_init(struct consumer *c, const char *name, const char *pub,
    const char *sync, int latest_only, const struct consumer_ops *ops,
    void *arg)
{
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->pub_ep = pub;
	c->sync_ep = sync;
	c->latest_only = latest_only;
	c->ops = ops;
	c->arg = arg;
	c->sub = bus_socket(ZMQ_SUB);
	if (bus_connect(c->sub, pub) == -1)
		fatalx("%s: cannot connect to %s", name, pub);
	c->heard = now_ms();
}

/*
 * Ask the producer for everything after c->last.  The DEALER is made anew
 * each time, so that a late answer to an earlier request cannot be mistaken
 * for the answer to this one.
 */
static void
consumer_ask(struct consumer *c)
{
	struct event ev;

	bus_close(c->sync);
	c->sync = bus_socket(ZMQ_DEALER);
	if (bus_connect(c->sync, c->sync_ep) == -1)
		fatalx("%s: cannot connect to %s", c->name, c->sync_ep);
	event_init(&ev, EV_SINCE);
	ev.seq = c->last;
	ev.time = now_ms();
	if (bus_send(c->sync, &ev) == -1)
		log_warn("%s: SINCE", c->name);
	c->syncing = 1;
	c->instate = 0;
	c->sync_sent = now_ms();
	metrics_inc(M_BUS_RESYNCS, 0);
	log_debug("%s: asked SINCE %llu", c->name,
	    (unsigned long long)c->last);
}

static void
consumer_drop_buf(struct consumer *c)
{
	size_t i;

	for (i = 0; i < c->nbuf; i++)
		event_free(&c->buf[i]);
	c->nbuf = 0;
}

static void
consumer_give(struct consumer *c, struct event *ev)
{
	if (c->ops->take != NULL)
		c->ops->take(ev, c->arg);
	else
		c->ops->apply(ev, c->arg);
}

/* Apply one event if it is the next one; 1 applied, 0 old, -1 gap. */
static int
consumer_offer(struct consumer *c, struct event *ev)
{
	/* a latest-only producer's first state may carry seq 0 */
	if (ev->seq <= c->last && (c->have || c->latest_only != 1))
		return 0;
	/* a chained producer's event names the seq before it */
	if (c->latest_only == CONSUMER_CHAINED ? !(ev->has & F_PREV) ||
	    ev->prev != c->last : !c->latest_only && ev->seq != c->last + 1)
		return -1;
	consumer_give(c, ev);
	c->last = ev->seq;
	c->have = 1;
	return 1;
}

static void
consumer_hold(struct consumer *c, const struct event *ev)
{
	struct event *nb;
	size_t cap;

	if (c->overflow)
		return;
	if (c->nbuf == BUS_MAXBUF) {
		/* the reply is taking long: forget these, ask again after */
		consumer_drop_buf(c);
		c->overflow = 1;
		return;
	}
	if (c->nbuf == c->capbuf) {
		cap = c->capbuf ? c->capbuf * 2 : 64;
		if ((nb = realloc(c->buf, cap * sizeof(*nb))) == NULL)
			fatal("consumer buffer");
		c->buf = nb;
		c->capbuf = cap;
	}
	if (event_copy(&c->buf[c->nbuf], ev) == -1)
		fatal("consumer buffer");
	c->nbuf++;
}

static void
consumer_gap(struct consumer *c, uint64_t seen)
{
	c->gaps++;
	metrics_inc(M_BUS_GAPS, 0);
	log_info("%s: gap after %llu (saw %llu), catching up", c->name,
	    (unsigned long long)c->last, (unsigned long long)seen);
	consumer_ask(c);
}

static void
consumer_heartbeat(struct consumer *c, const struct event *ev)
{
	if (c->boot != ev->boot) {
		if (c->boot != 0) {
			log_info("%s: producer restarted", c->name);
			if (c->ops->restarted != NULL)
				c->ops->restarted(c->arg);
		}
		c->boot = ev->boot;
	}
	if (ev->seq < c->last) {
		/* the producer's history is shorter than ours: start over */
		log_warnx("%s: producer is at %llu, behind our %llu; "
		    "starting over", c->name, (unsigned long long)ev->seq,
		    (unsigned long long)c->last);
		c->last = 0;
		c->have = 0;
		if (c->ops->reset != NULL)
			c->ops->reset(c->arg);
		consumer_ask(c);
	} else if (!c->syncing && (ev->seq > c->last ||
	    (c->latest_only && !c->have)))
		consumer_gap(c, ev->seq);
}

/*
 * What we asked for was compacted away: the producer sends its whole state
 * instead.  Start from nothing; what follows, up to SINCE_END, is applied
 * as it comes and brings us to the state's seq.
 */
static void
consumer_state(struct consumer *c, const struct event *ev)
{
	log_info("%s: the log after %llu is compacted; taking the state at %llu",
	    c->name, (unsigned long long)c->last,
	    (unsigned long long)ev->seq);
	c->last = 0;
	c->have = 0;
	if (c->ops->reset != NULL)
		c->ops->reset(c->arg);
	c->instate = 1;
	c->state_seq = ev->seq;
}

static void
consumer_end(struct consumer *c, const struct event *end)
{
	size_t i;
	int gap = 0;

	if (c->instate) {
		c->instate = 0;
		c->last = c->state_seq;
		c->have = 1;
	}

	if (end->seq < c->last) {
		c->last = 0;
		c->have = 0;
		if (c->ops->reset != NULL)
			c->ops->reset(c->arg);
		consumer_drop_buf(c);
		consumer_ask(c);
		return;
	}
	c->syncing = 0;
	for (i = 0; i < c->nbuf && !gap; i++)
		gap = consumer_offer(c, &c->buf[i]) == -1;
	consumer_drop_buf(c);
	if (gap || c->overflow || c->last < end->seq) {
		c->overflow = 0;
		consumer_ask(c);
		return;
	}
	if (!c->synced_once)
		log_info("%s: caught up at %llu", c->name,
		    (unsigned long long)c->last);
	c->synced_once = 1;
	if (c->ops->synced != NULL)
		c->ops->synced(c->arg);
}

int
consumer_pollitems(struct consumer *c, zmq_pollitem_t *items)
{
	if (c->sync == NULL)
		consumer_ask(c);
	items[0] = (zmq_pollitem_t){ c->sub, 0, ZMQ_POLLIN, 0 };
	items[1] = (zmq_pollitem_t){ c->sync, 0, ZMQ_POLLIN, 0 };
	return 2;
}

void
consumer_dispatch(struct consumer *c, const zmq_pollitem_t *items)
{
	struct event ev;
	int rc, n;

	/* the reply to SINCE first: it is what live events wait for */
	for (n = 0; n < 10000 && (items[1].revents & ZMQ_POLLIN); n++) {
		if ((rc = bus_recv(c->sync, &ev, NULL)) == 0)
			break;
		if (rc == -1)
			continue;
		c->heard = now_ms();
		if (!c->syncing) {
			event_free(&ev);
			continue;
		}
		if (ev.type == EV_STATE)
			consumer_state(c, &ev);
		else if (ev.type == EV_SINCE_END)
			consumer_end(c, &ev);
		else if (c->instate && event_known(ev.type))
			consumer_give(c, &ev);
		else if (event_known(ev.type) && consumer_offer(c, &ev) == -1)
			consumer_gap(c, ev.seq);
		event_free(&ev);
	}
	for (n = 0; n < 10000 && (items[0].revents & ZMQ_POLLIN); n++) {
		if ((rc = bus_recv(c->sub, &ev, NULL)) == 0)
			break;
		if (rc == -1)
			continue;
		c->heard = now_ms();
		if (ev.type == EV_HEARTBEAT)
			consumer_heartbeat(c, &ev);
		else if (!event_known(ev.type))
			;	/* counted by nobody, ignored by design */
		else if (c->syncing)
			consumer_hold(c, &ev);
		else if (consumer_offer(c, &ev) == -1)
			consumer_gap(c, ev.seq);
		event_free(&ev);
	}
}

void
consumer_timer(struct consumer *c, uint64_t now)
{
	if (now - c->heard > BUS_SILENCE_MS) {
		/*
		 * Not even a heartbeat: the connection is not what it seems.
		 * Start it again and catch up.
		 */
		log_info("%s: producer silent for %llu ms, reconnecting",
		    c->name, (unsigned long long)(now - c->heard));
		bus_close(c->sub);
		c->sub = bus_socket(ZMQ_SUB);
		if (bus_connect(c->sub, c->pub_ep) == -1)
			fatalx("%s: cannot connect to %s", c->name, c->pub_ep);
		c->heard = now;
		consumer_drop_buf(c);
		consumer_ask(c);
		return;
	}
	if (c->syncing && now - c->sync_sent > BUS_SYNC_TIMEOUT_MS) {
		log_info("%s: no answer to SINCE, asking again", c->name);
		consumer_drop_buf(c);
		consumer_ask(c);
	}
}

void
consumer_close(struct consumer *c)
{
	consumer_drop_buf(c);
	free(c->buf);
	bus_close(c->sub);
	bus_close(c->sync);
}

int
bus_send_raw_to(void *router, const zmq_msg_t *id, const void *data,
    size_t len)
{
	zmq_msg_t copy;

	zmq_msg_init(&copy);
	zmq_msg_copy(&copy, (zmq_msg_t *)id);
	if (zmq_msg_send(&copy, router, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
		zmq_msg_close(&copy);
		return -1;
	}
	return zmq_send(router, data, len, ZMQ_DONTWAIT) == -1 ? -1 : 0;
}

/* The consumer on the loop. */

#define CONSUMER_TIMER_MS	100

static int
consumer_src_items(void *arg, zmq_pollitem_t *items, int max)
{
	if (max < 2)
		fatalx("consumer: no room to poll");
	return consumer_pollitems(arg, items);
}

static void
consumer_src_dispatch(void *arg, const zmq_pollitem_t *items, int n)
{
	(void)n;
	consumer_dispatch(arg, items);
}

static void
consumer_tick(void *arg)
{
	consumer_timer(arg, now_ms());
}

static const struct loop_source consumer_src = {
	.pollitems = consumer_src_items,
	.dispatch = consumer_src_dispatch,
};

void
consumer_register(struct consumer *c)
{
	loop_source(&consumer_src, c);
	loop_timer(CONSUMER_TIMER_MS, 1, consumer_tick, c);
	loop_counter("bus_gaps", &c->gaps);
}

/* The producer's heartbeat. */

static void
heartbeat_send(void *arg)
{
	struct bus_heartbeat *hb = arg;
	struct event ev;

	event_init(&ev, EV_HEARTBEAT);
	if (hb->seq(hb->arg, &ev.seq) == -1)
		return;
	ev.time = now_ms();
	ev.boot = bus_boot_id();
	ev.has = F_BOOT;
	if (bus_send(hb->pub, &ev) == 0)
		hb->sent++;
}

void
bus_heartbeat(struct bus_heartbeat *hb, void *pub,
    int (*seq)(void *, uint64_t *), void *arg, uint64_t period_ms)
{
	memset(hb, 0, sizeof(*hb));
	hb->pub = pub;
	hb->seq = seq;
	hb->arg = arg;
	heartbeat_send(hb);
	hb->timer = loop_timer(period_ms, 1, heartbeat_send, hb);
}

void
bus_heartbeat_period(struct bus_heartbeat *hb, uint64_t period_ms)
{
	loop_timer_set(hb->timer, period_ms);
}
