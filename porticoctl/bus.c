/*
 * porticoctl bus since — a daemon's SINCE answer, asked over the bus as a
 * consumer asks it: allocd's log after a seq (or its whole state, when
 * that part of the log is compacted), or with --proxy that proxy's
 * renderd's route table.  Read only: porticoctl's key (on tcp://) opens
 * allocd's and renderd's feeds, never allocd's input.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "porticoctl.h"
#include "zap.h"

#define BUS_SINCE_TIMEOUT_MS	10000

/* Print each event of the answer until SINCE_END; CTL_OK or an exit code. */
static int
read_answer(void *sock, const char *ep, unsigned long *n)
{
	zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
	uint64_t deadline = now_ms() + BUS_SINCE_TIMEOUT_MS, now;
	struct event ev;
	int rc, end = 0;

	while (!end) {
		now = now_ms();
		if (now >= deadline || zmq_poll(&item, 1,
		    (long)(deadline - now)) == 0) {
			fprintf(stderr, "porticoctl: %s: no answer in %d s "
			    "(is it up, and does it know porticoctl's key?)\n",
			    ep, BUS_SINCE_TIMEOUT_MS / 1000);
			return CTL_STORE;
		}
		while (!end && (rc = bus_recv(sock, &ev, NULL)) != 0) {
			if (rc == -1)
				continue;	/* said by bus_recv */
			end = ev.type == EV_SINCE_END;
			if (ctl_print_json(event_json(&ev)) == -1) {
				event_free(&ev);
				return CTL_STORE;
			}
			(*n)++;
			event_free(&ev);
		}
	}
	return CTL_OK;
}

int
cmd_bus_since(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since",	required_argument,	NULL, 's' },
		{ "proxy",	required_argument,	NULL, 'p' },
		{ NULL,		0,			NULL, 0 },
	};
	const struct config *conf;
	const struct proxy_conf *px;
	const char *proxy = NULL, *ep;
	struct event ev;
	char err[PATH_MAX + 256];
	unsigned long n = 0;
	uint64_t since = 0;
	void *sock;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			if (ctl_seq(optarg, &since) == -1) {
				fprintf(stderr, "porticoctl: --since %s: not a "
				    "seq\n", optarg);
				return CTL_USAGE;
			}
			break;
		case 'p':
			proxy = optarg;
			break;
		default:
			return CTL_USAGE;
		}
	}
	if (optind != argc)
		return CTL_USAGE;
	if ((conf = ctl_config(c, 0)) == NULL)
		return CTL_USAGE;
	ep = conf->alloc_sync;
	if (proxy != NULL) {
		if ((px = config_proxy(conf, proxy)) == NULL) {
			fprintf(stderr, "porticoctl: no [proxy.%s]\n", proxy);
			return CTL_USAGE;
		}
		ep = px->sync;
	}
	if (zap_init(conf, "porticoctl", err, sizeof(err)) == -1) {
		fprintf(stderr, "porticoctl: [bus] keys: %s\n", err);
		return CTL_USAGE;
	}
	sock = bus_socket(ZMQ_DEALER);
	if (bus_connect(sock, ep) == -1) {
		bus_close(sock);
		return CTL_STORE;
	}
	event_init(&ev, EV_SINCE);
	ev.seq = since;
	ev.time = now_ms();
	if (bus_send(sock, &ev) == -1) {
		log_warn("%s: SINCE", ep);
		bus_close(sock);
		return CTL_STORE;
	}
	rc = read_answer(sock, ep, &n);
	bus_close(sock);
	return rc;
}
