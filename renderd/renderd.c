/*
 * renderd — turns allocd's route table into one proxy's configuration.
 *
 * It consumes allocd's decisions (catching up by SINCE, repairing gaps by
 * itself), keeps the route table in memory, and after each burst renders the
 * whole configuration and publishes it as one CONFIG event whose seq is the
 * allocd seq it reflects.  Its own SINCE answers with the latest CONFIG, so
 * an applyd that starts late or restarts has it at once.  Nothing is
 * published before the first catch-up is complete: a partial table would
 * take routes away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "loop.h"
#include "routes.h"

static struct config		 conf;
static const struct proxy_conf	*px;
static struct routes		 routes;
static struct consumer		 alloc_feed;
static struct event		 latest;	/* the last CONFIG published */

/*
 * The text is rendered into one of two buffers that outlive generations:
 * the latest CONFIG holds one, the next is written into the other.  A
 * fresh multi-megabyte buffer every generation cost more in page faults
 * and reallocations than the rendering itself.
 */
struct textbuf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};
static struct textbuf		 spare;
static size_t			 latest_cap;

static ssize_t
textbuf_write(void *cookie, const char *data, size_t n)
{
	struct textbuf *b = cookie;
	size_t cap;
	char *p;

	if (b->len + n + 1 > b->cap) {
		for (cap = b->cap ? b->cap : 1 << 16; cap < b->len + n + 1;
		    cap *= 2)
			;
		if ((p = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return (ssize_t)n;
}
static void			*pub_sock, *sync_sock;
static int			 dirty;
static unsigned long		 oversize;	/* generations not published */
static int			 oversize_now;	/* the latest was one */

static void
on_apply(const struct event *ev, void *arg)
{
	(void)arg;
	if (routes_apply(&routes, ev))
		dirty = 1;
	/*
	 * Only what changes the table waits for a generation; a catch-up or
	 * a whole state is history: nothing converges now.
	 */
	if (dirty && alloc_feed.synced_once && !alloc_feed.instate)
		metrics_folded(ev);
}

static void
on_reset(void *arg)
{
	(void)arg;
	routes_clear(&routes);
	dirty = 1;
}

static const struct consumer_ops feed_ops = {
	.apply = on_apply,
	.reset = on_reset,
};

/* A renderer per proxy kind (the config accepts these kinds only). */
static const struct {
	const char	*kind;
	int		(*render)(const struct routes *, const struct config *,
			    const struct proxy_conf *, FILE *);
} renderers[] = {
	{ "haproxy",	haproxy_render },
	{ "nginx",	nginx_render },
	{ "envoy",	envoy_render },
};

/* The whole configuration for the route table: a pure function of it. */
static int
render_text(FILE *fp)
{
	size_t i;

	for (i = 0; i < sizeof(renderers) / sizeof(renderers[0]); i++)
		if (strcmp(renderers[i].kind, px->kind) == 0)
			return renderers[i].render(&routes, &conf, px, fp);
	log_warnx("no renderer for proxy kind %s", px->kind);
	return -1;
}

/*
 * Is a configuration of len bytes more than one CONFIG carries?  Then it
 * is not published: applyd keeps serving the latest that was, and the
 * next generation that fits is published as usual.  The state's size is
 * the input's (a cluster with thousands of nodes and hundreds of routes),
 * so this is no reason to exit: renderd would only render it again at
 * every restart.  Logged when generations start and stop being too large,
 * and counted.
 */
static int
too_large(size_t len)
{
	char err[160];

	if (len <= EV_MAX_TEXT) {
		if (oversize_now)
			log_info("generation %llu is %zu bytes and is "
			    "published; %lu generations too large were not",
			    (unsigned long long)alloc_feed.last, len, oversize);
		oversize_now = 0;
		return 0;
	}
	oversize++;
	snprintf(err, sizeof(err), "generation %llu is %zu bytes, more than "
	    "a config event carries: not published",
	    (unsigned long long)alloc_feed.last, len);
	health_set_error(err);
	if (!oversize_now)
		log_warnx("generation %llu is %zu bytes, more than a "
		    "config event carries (%u): not published, the proxy "
		    "keeps generation %llu until one fits",
		    (unsigned long long)alloc_feed.last, len, EV_MAX_TEXT,
		    (unsigned long long)latest.seq);
	else
		log_debug("generation %llu is %zu bytes: not "
		    "published either", (unsigned long long)alloc_feed.last,
		    len);
	oversize_now = 1;
	return 1;
}

static void
render(void)
{
	static const cookie_io_functions_t io = { .write = textbuf_write };
	struct event ev;
	size_t len, cap;
	char *text;
	FILE *fp;

	spare.len = 0;
	if ((fp = fopencookie(&spare, "w", io)) == NULL)
		fatal("fopencookie");
	if (render_text(fp) == -1 || fclose(fp) != 0 || spare.p == NULL)
		fatalx("render failed");
	text = spare.p;
	len = spare.len;
	cap = spare.cap;
	dirty = 0;
	if (too_large(len))
		return;
	event_init(&ev, EV_CONFIG);
	ev.seq = alloc_feed.last;
	ev.time = now_ms();
	event_set_str(&ev, F_KIND, px->kind);
	/* the buffer itself (NUL-terminated), not a copy */
	ev.text = text;
	ev.textlen = len;
	ev.has |= F_TEXT;
	metrics_published(&ev);
	if (bus_send(pub_sock, &ev) == -1)
		log_warn("publish");
	log_info("generation %llu: %zu api routes, %u ports, "
	    "%zu bytes; %lu decisions left out so far",
	    (unsigned long long)ev.seq, routes.napi, routes.nports, len,
	    routes.refused);
	/* the latest's buffer is the next one written */
	spare.p = latest.text;
	spare.cap = latest.text != NULL ? latest_cap : 0;
	latest.text = NULL;
	event_free(&latest);
	latest = ev;
	latest_cap = cap;
}

static void
on_since(void)
{
	struct event req, end;
	zmq_msg_t id;
	int rc;

	while ((rc = bus_recv(sync_sock, &req, &id)) != 0) {
		if (rc == -1)
			continue;
		metrics_inc(M_SINCE_SERVED, 0);
		/* one message: the latest is always sent, the asker sorts */
		if (req.type == EV_SINCE && latest.type == EV_CONFIG)
			bus_send_to(sync_sock, &id, &latest);
		if (req.type == EV_SINCE) {
			event_init(&end, EV_SINCE_END);
			end.seq = latest.seq;
			end.time = now_ms();
			bus_send_to(sync_sock, &id, &end);
		}
		event_free(&req);
		zmq_msg_close(&id);
	}
}

/*
 * -T: render a state file to stdout and exit, with no bus, run folder or
 * pid file.  Nothing is printed unless every line of the file is valid.
 */
static int
render_state(const char *path)
{
	char err[512];

	if (state_load(&routes, path, err, sizeof(err)) == -1) {
		fprintf(stderr, "renderd: %s\n", err);
		return 1;
	}
	if (render_text(stdout) == -1 || fflush(stdout) == EOF) {
		fprintf(stderr, "renderd: cannot write the config\n");
		return 1;
	}
	routes_clear(&routes);
	return 0;
}

static uint64_t
heartbeat_seq(void *arg)
{
	(void)arg;
	return latest.seq;
}

static void
on_sync_sock(void *arg, int revents)
{
	(void)arg;
	(void)revents;
	on_since();
}

/*
 * After each turn: once caught up, render what changed.  The first
 * publish waits for a complete table: a partial one would take routes
 * away.  Ready from then on.
 */
static void
after_turn(void *arg)
{
	static int published;

	(void)arg;
	if (alloc_feed.synced_once && !alloc_feed.syncing &&
	    (dirty || !published)) {
		render();
		if (!published)
			health_set_ready(1, NULL);
		published = 1;
	}
	health_set_position(alloc_feed.last, latest.seq);
}

int
main(int argc, char **argv)
{
	struct daemon d;
	struct bus_heartbeat hb;
	char ready[96];

	daemon_start(&d, argc, argv, "renderd", DAEMON_PROXY | DAEMON_RENDER,
	    &conf);
	px = config_proxy(&conf, d.proxy);
	routes_init(&routes, &conf);
	if (d.render != NULL)
		return render_state(d.render);
	event_init(&latest, EV_NONE);
	health_set_ready(0, "catching up with allocd");

	pub_sock = bus_socket(ZMQ_PUB);
	sync_sock = bus_socket(ZMQ_ROUTER);
	if (bus_bind(pub_sock, px->pub) == -1 ||
	    bus_bind(sync_sock, px->sync) == -1)
		fatalx("cannot bind the bus");
	consumer_init(&alloc_feed, "allocd feed", conf.alloc_pub,
	    conf.alloc_sync, 0, &feed_ops, NULL);
	consumer_register(&alloc_feed);
	loop_socket(sync_sock, ZMQ_POLLIN, on_sync_sock, NULL);
	bus_heartbeat(&hb, pub_sock, heartbeat_seq, NULL, BUS_HEARTBEAT_MS);
	loop_after(after_turn, NULL);
	loop_counter("oversize", &oversize);
	snprintf(ready, sizeof(ready), "renderd-%s", px->name);
	if (daemon_ready(&d, ready) == -1)
		fatal("pid file");
	health_set_ready(0, "catching up with allocd's whole table");
	log_info("ready for proxy %s (%s)", px->name, px->kind);

	loop_run();
	log_info("exiting");
	loop_free();
	consumer_close(&alloc_feed);
	bus_close(pub_sock);
	bus_close(sync_sock);
	zmq_ctx_term(bus_ctx());
	routes_clear(&routes);
	event_free(&latest);
	free(spare.p);
	return 0;
}
