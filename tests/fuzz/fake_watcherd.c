/*
 * tests/fuzz — watcherd.c's and obs.c's part, faked: the configuration,
 * and the bus to allocd.  obs_send() is where the harnesses check what watcherd made
 * of its input: every observation must encode (watcherd exits when one
 * does not) and decode as allocd decodes it (else allocd drops it, and the
 * route is lost).
 */
#include <stdlib.h>
#include <string.h>

#include "fake_watcherd.h"
#include "log.h"
#include "watcherd.h"

struct config	conf;
int		obs_failed;
struct event	fake_obs[FAKE_OBS_MAX];
size_t		fake_nobs;

uint64_t
jitter(uint64_t ms)
{
	return ms;
}

void
obs_send(struct event *ev)
{
	unsigned char *buf;
	char err[256];
	size_t len;
	struct event dec;

	ev->seq = 1;
	ev->time = now_ms();
	if (event_encode(ev, &buf, &len) == -1)
		abort();
	if (event_decode(&dec, buf, len, err, sizeof(err)) == -1)
		abort();
	free(buf);
	if (fake_nobs == FAKE_OBS_MAX)
		event_free(&dec);
	else
		fake_obs[fake_nobs++] = dec;
}

void
fake_obs_clear(void)
{
	while (fake_nobs > 0)
		event_free(&fake_obs[--fake_nobs]);
}

/* Clusters named "np" route to nodes, "ep" to EndpointSlices. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz", 1, 0);
	memset(&conf, 0, sizeof(conf));
	strcpy(conf.domain, "k8s.example.test");
	strcpy(conf.backend, "nodeport");
	strcpy(conf.clusters[0].name, "ep");
	strcpy(conf.clusters[0].backend, "endpoints");
	conf.nclusters = 1;
	conf.watch_timeout = 300;
	conf.watch_idle = 60;
	conf.pks_poll = 10;
	strcpy(conf.pks_url, "https://pks.example.test:9021");
	strcpy(conf.uaa_url, "https://pks.example.test:8443");
	strcpy(conf.pks_client_id, "portico");
	strcpy(conf.pks_client_secret, "secret");
	return 0;
}

void
fake_alloc_decide(void)
{
	struct event d;
	size_t i, n = fake_nobs;

	for (i = 0; i < n; i++) {
		if (fake_obs[i].type != EV_ROUTE)
			continue;
		if (event_copy(&d, &fake_obs[i]) == -1)
			abort();
		if (d.has & F_WHY) {
			d.type = EV_REFUSED;
			clusters_alloc_event(&d);
		} else {
			d.type = EV_PORT_SET;
			d.port = 20000 + i;
			d.has |= F_PORT;
			clusters_alloc_event(&d);
			d.type = EV_PORT_LIVE;
			clusters_alloc_event(&d);
		}
		event_free(&d);
	}
}
