/*
 * Unit tests for common/metrics.c: the OpenMetrics text, histogram
 * buckets, the classes of refusal reasons, and the listen addresses that
 * the configuration accepts for it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "event.h"
#include "metrics.h"

static char *
render(void)
{
	char *buf = NULL;

	assert_true(metrics_render(&buf) > 0);
	return buf;
}

/* The line of sample name (with its labels) holds value. */
static void
assert_sample(const char *text, const char *name, const char *value)
{
	char want[256];

	snprintf(want, sizeof(want), "\n%s %s\n", name, value);
	if (strstr(text, want) == NULL)
		fail_msg("no \"%s %s\" in:\n%s", name, value, text);
}

static void
test_families_and_eof(void **state)
{
	char *t;

	(void)state;
	t = render();
	assert_non_null(strstr(t, "# TYPE portico_decisions counter\n"));
	assert_non_null(strstr(t, "# TYPE portico_route_convergence_seconds "
	    "histogram\n"));
	assert_non_null(strstr(t, "# TYPE portico_ports gauge\n"));
	assert_sample(t, "portico_bus_gaps_total", "0");
	/* every value of a label is there from the start, "other" is not */
	assert_sample(t, "portico_refusals_total{reason=\"limit\"}", "0");
	assert_null(strstr(t, "reason=\"other\""));
	assert_int_equal(strcmp(t + strlen(t) - 6, "# EOF\n"), 0);
	free(t);
}

static void
test_histogram_buckets(void **state)
{
	char *t;

	(void)state;
	metrics_observe_us(M_TABLE_PROXY, 700);	/* 0.5 ms < x <= 1 ms */
	metrics_observe_us(M_TABLE_PROXY, 1000);	/* on a bound: in it */
	metrics_observe_us(M_TABLE_PROXY, 60000000);	/* past 30 s */
	t = render();
	assert_sample(t, "portico_table_to_proxy_seconds_bucket{le=\"0.0005\"}",
	    "0");
	assert_sample(t, "portico_table_to_proxy_seconds_bucket{le=\"0.001\"}",
	    "2");
	assert_sample(t, "portico_table_to_proxy_seconds_bucket{le=\"30.0\"}",
	    "2");
	assert_sample(t, "portico_table_to_proxy_seconds_bucket{le=\"+Inf\"}",
	    "3");
	assert_sample(t, "portico_table_to_proxy_seconds_count", "3");
	assert_sample(t, "portico_table_to_proxy_seconds_sum", "60.001700");
	free(t);
}

static void
test_labels_and_other(void **state)
{
	struct event ev;
	char *t;

	(void)state;
	metrics_inc(M_WATCH_RESTARTS, MV_RESTART_410);
	metrics_inc(M_WATCH_RESTARTS, 999);		/* out of range */
	metrics_set(M_PORTS, MV_PORTS_FREE, 12);
	event_init(&ev, EV_PORT_SET);
	ev.has |= F_WT;
	ev.wt = now_ms();
	metrics_logged(&ev);
	event_init(&ev, EV_ROUTE);
	metrics_logged(&ev);
	event_init(&ev, EV_REFUSED);
	snprintf(ev.why, sizeof(ev.why), "port 21005 is taken");
	metrics_logged(&ev);
	t = render();
	assert_sample(t, "portico_watch_restarts_total{cause=\"410\"}", "1");
	assert_sample(t, "portico_watch_restarts_total{cause=\"other\"}", "1");
	assert_sample(t, "portico_ports{state=\"free\"}", "12");
	assert_sample(t, "portico_decisions_total{type=\"port_set\"}", "1");
	assert_sample(t, "portico_decisions_total{type=\"refused\"}", "1");
	assert_sample(t, "portico_observations_total{type=\"route\"}", "1");
	assert_sample(t, "portico_refusals_total{reason=\"port_unavailable\"}",
	    "1");
	assert_sample(t, "portico_watch_to_decision_seconds_count", "1");
	free(t);
}

/* allocd's own sentences, each in its class; anything else is the object. */
static void
test_refusal_classes(void **state)
{
	(void)state;
	assert_int_equal(metrics_refusal("no free port in 21000-21009"),
	    MV_REFUSAL_NO_PORT);
	assert_int_equal(metrics_refusal("portico.dev/address was not "
	    "written by portico for this object (no valid portico.dev/proof)"),
	    MV_REFUSAL_CLAIM);
	assert_int_equal(metrics_refusal("the cluster holds 500 ports, its "
	    "quota (ports_per_cluster)"), MV_REFUSAL_LIMIT);
	assert_int_equal(metrics_refusal("the route has 2000 backends, more "
	    "than the 1024 a route may have"), MV_REFUSAL_LIMIT);
	assert_int_equal(metrics_refusal("the proxies' configuration is full "
	    "(bytes_total)"), MV_REFUSAL_LIMIT);
	assert_int_equal(metrics_refusal("backend 127.0.0.1 is loopback"),
	    MV_REFUSAL_BACKENDS);
	assert_int_equal(metrics_refusal("port 21008 is reserved"),
	    MV_REFUSAL_PORT);
	assert_int_equal(metrics_refusal("port 21001 is quarantined for 30 s "
	    "more"), MV_REFUSAL_PORT);
	assert_int_equal(metrics_refusal("port 80 is outside 21000-21009"),
	    MV_REFUSAL_PORT);
	assert_int_equal(metrics_refusal("Service payments/x has no port "
	    "5432"), MV_REFUSAL_INVALID);
	assert_int_equal(metrics_refusal(""), MV_REFUSAL_INVALID);
	assert_int_equal(metrics_refusal("hostname a.b.example.com is not "
	    "under the cluster's host (*.c.example.com)"), MV_REFUSAL_NAME);
	assert_int_equal(metrics_refusal("hostname c.example.com is a "
	    "cluster's API host"), MV_REFUSAL_NAME);
	assert_int_equal(metrics_refusal("hostname a.c.example.com is held "
	    "by another route"), MV_REFUSAL_NAME);
	assert_int_equal(metrics_refusal("the cluster holds 256 SNI names, "
	    "the most it may have (sni_per_cluster)"), MV_REFUSAL_LIMIT);
}

/* renderd folds decisions into a generation; applyd keeps the oldest. */
static void
test_generation_carries_oldest(void **state)
{
	struct event d, g, older;
	char *t;

	(void)state;
	event_init(&d, EV_PORT_SET);
	d.has |= F_WT;
	d.wt = 5000;
	metrics_folded(&d);
	d.wt = 4000;
	metrics_folded(&d);
	event_init(&g, EV_CONFIG);
	g.seq = 7;
	metrics_published(&g);
	assert_true(g.has & F_WT);
	assert_int_equal(g.wt, 4000);
	event_init(&g, EV_CONFIG);
	metrics_published(&g);			/* nothing folded since */
	assert_false(g.has & F_WT);

	event_init(&older, EV_CONFIG);
	older.has |= F_WT;
	older.wt = 3000;
	metrics_superseded(&g, &older);
	assert_int_equal(g.wt, 3000);
	older.wt = 9000;			/* newer: g keeps its own */
	metrics_superseded(&g, &older);
	assert_int_equal(g.wt, 3000);
	t = render();
	assert_sample(t, "portico_generations_published_total", "2");
	free(t);
}

/* config_load of a small file with [metrics] allocd = v: 0 or -1. */
static int
load_with(const char *v)
{
	static struct config c;
	char path[] = "/tmp/pt-metrics-XXXXXX", err[512];
	FILE *fp;
	int fd, rc;

	assert_true((fd = mkstemp(path)) != -1);
	assert_non_null(fp = fdopen(fd, "w"));
	fprintf(fp, "[portico]\ndomain = k8s.example.test\n"
	    "ports = 21000-21009\n\n[kubeconfigs]\ndir = /nonexistent\n\n"
	    "[metrics]\nallocd = %s\n", v);
	fclose(fp);
	rc = config_load(path, &c, err, sizeof(err));
	unlink(path);
	if (rc == -1 && strstr(err, "allocd: not IP:PORT") == NULL)
		fail_msg("%s: unexpected error: %s", v, err);
	return rc;
}

static void
test_listen_addresses(void **state)
{
	(void)state;
	assert_int_equal(load_with("127.0.0.1:9100"), 0);
	assert_int_equal(load_with("127.0.0.1:0"), 0);
	assert_int_equal(load_with("[::1]:9100"), 0);
	assert_int_equal(load_with(""), 0);
	assert_int_equal(load_with("::1:9100"), -1);
	assert_int_equal(load_with("127.0.0.1"), -1);
	assert_int_equal(load_with("127.0.0.1:"), -1);
	assert_int_equal(load_with("127.0.0.1:65536"), -1);
	assert_int_equal(load_with("localhost:9100"), -1);
	assert_int_equal(load_with("127.0.0.1:91 00"), -1);
	assert_int_equal(load_with(":9100"), -1);
	assert_int_equal(load_with("[127.0.0.1:9100"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_families_and_eof),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_labels_and_other),
		cmocka_unit_test(test_refusal_classes),
		cmocka_unit_test(test_generation_carries_oldest),
		cmocka_unit_test(test_listen_addresses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
