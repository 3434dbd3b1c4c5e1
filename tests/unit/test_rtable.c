/*
 * The route table between renderd and applyd: a decision becomes an item,
 * items and snapshots rebuild the same table (rendered byte for byte the
 * same), and applyd's choices from two tables (what goes first, what
 * needs a reload) depend on the tables alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hash.h"
#include "hapruntime.h"
#include "log.h"
#include "plan.h"
#include "routes.h"
#include "slots.h"

#define CONF	"tests/golden/portico.conf"
#define C1	"7f3c9e2a-5b1d-4c8e-9a6f-0d2b4e8c1a37"
#define C2	"a1c0ffee-0000-4000-8000-000000000001"

static struct config		 conf;
static const struct proxy_conf	*px;

static void
api_set(struct event *ev, uint64_t seq, const char *cluster, const char *cn,
    const char *ip)
{
	char host[128];

	event_init(ev, EV_API_SET);
	ev->seq = seq;
	snprintf(host, sizeof(host), "%s.k8s.example.test", cn);
	assert_int_equal(event_set_str(ev, F_CLUSTER, cluster), 0);
	assert_int_equal(event_set_str(ev, F_CNAME, cn), 0);
	assert_int_equal(event_set_str(ev, F_HOST, host), 0);
	strcpy(ev->masters[0], ip);
	ev->nmasters = 1;
	ev->mport = 8443;
	ev->has |= F_MASTERS | F_MPORT;
}

static void
port_set(struct event *ev, uint64_t seq, unsigned port, const char *cluster,
    unsigned nb)
{
	char ip[32];
	unsigned i;

	event_init(ev, EV_PORT_SET);
	ev->seq = seq;
	ev->port = port;
	assert_int_equal(event_set_str(ev, F_CLUSTER, cluster), 0);
	assert_int_equal(event_set_str(ev, F_NS, "payments"), 0);
	assert_int_equal(event_set_str(ev, F_NAME, "web"), 0);
	ev->route = 0;
	ev->has |= F_PORT | F_ROUTE | F_BACKENDS;
	for (i = 0; i < nb; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", port % 200, i / 250,
		    i % 250 + 1);
		assert_int_equal(event_add_backend(ev, ip, 30000 + i % 7,
		    1 + i % 3), 0);
	}
}

static void
port_free(struct event *ev, uint64_t seq, unsigned port, const char *cluster)
{
	event_init(ev, EV_PORT_FREE);
	ev->seq = seq;
	ev->port = port;
	assert_int_equal(event_set_str(ev, F_CLUSTER, cluster), 0);
	assert_int_equal(event_set_str(ev, F_NS, "payments"), 0);
	assert_int_equal(event_set_str(ev, F_NAME, "web"), 0);
	ev->has |= F_PORT | F_ROUTE;
}

/* A TLSRoute hostname of cluster C1: SNI_SET (nb backends) or SNI_DEL. */
static void
sni_set(struct event *ev, int type, uint64_t seq, const char *host,
    unsigned nb)
{
	char ip[32];
	unsigned i;

	event_init(ev, type);
	ev->seq = seq;
	assert_int_equal(event_set_str(ev, F_CLUSTER, C1), 0);
	assert_int_equal(event_set_str(ev, F_NS, "shop"), 0);
	assert_int_equal(event_set_str(ev, F_NAME, "web"), 0);
	assert_int_equal(event_set_str(ev, F_HOST, host), 0);
	ev->route = 0;
	ev->has |= F_ROUTE;
	if (type != EV_SNI_SET)
		return;
	ev->has |= F_BACKENDS;
	for (i = 0; i < nb; i++) {
		snprintf(ip, sizeof(ip), "10.30.0.%u", i + 1);
		assert_int_equal(event_add_backend(ev, ip, 30443, 1 + i), 0);
	}
}

/* The table as HAProxy's configuration: what must match byte for byte. */
static char *
rendered(const struct routes *r)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp;

	assert_non_null(fp = open_memstream(&text, &len));
	assert_int_equal(routes_render(r, &conf, px, fp), 0);
	assert_int_equal(fclose(fp), 0);
	return text;
}

static void
assert_same(const struct routes *a, const struct routes *b)
{
	char *ta, *tb;
	unsigned p;

	assert_true(routes_api_same(a, b));
	assert_true(routes_sni_same(a, b));
	for (p = 0; p < 65536; p++)
		assert_true(routes_port_same(a->ports[p], b->ports[p]));
	assert_int_equal(a->nports, b->nports);
	ta = rendered(a);
	tb = rendered(b);
	assert_string_equal(ta, tb);
	free(ta);
	free(tb);
}

/*
 * Apply d to src (renderd's table) and its item to dst (applyd's), the
 * way the bus carries it: encoded and decoded.
 */
static void
relay(struct routes *src, struct routes *dst, struct event *d)
{
	struct event item, back;
	unsigned char *buf;
	size_t len;
	char err[256];

	routes_apply(src, d);
	event_init(&item, EV_NONE);
	assert_int_equal(routes_item(src, d, &item), 0);
	item.seq = d->seq;
	item.prev = d->seq - 1;
	item.has |= F_PREV;
	assert_int_equal(event_encode(&item, &buf, &len), 0);
	assert_int_equal(event_decode(&back, buf, len, err, sizeof(err)), 0);
	assert_int_equal(back.prev, d->seq - 1);
	routes_apply(dst, &back);
	free(buf);
	event_free(&item);
	event_free(&back);
	event_free(d);
}

static void
build(struct routes *src, struct routes *dst)
{
	struct event d;

	api_set(&d, 1, C1, "payments", "10.20.0.11");
	relay(src, dst, &d);
	api_set(&d, 2, C2, "beta", "10.21.0.11");
	relay(src, dst, &d);
	port_set(&d, 3, 21000, C1, 3);
	relay(src, dst, &d);
	port_set(&d, 4, 21001, C1, 40);
	relay(src, dst, &d);
	port_set(&d, 5, 21417, C2, 1);
	relay(src, dst, &d);
	/* a port the configuration reserves: left out of both */
	port_set(&d, 6, 21008, C2, 1);
	relay(src, dst, &d);
	port_set(&d, 7, 21000, C1, 5);		/* its backends change */
	relay(src, dst, &d);
	port_free(&d, 8, 21001, C1);
	relay(src, dst, &d);
	event_init(&d, EV_API_DEL);
	d.seq = 9;
	event_set_str(&d, F_CLUSTER, C2);
	relay(src, dst, &d);
	/* TLSRoute hostnames: set, changed, deleted */
	sni_set(&d, EV_SNI_SET, 10, "shop.payments.k8s.example.test", 2);
	relay(src, dst, &d);
	sni_set(&d, EV_SNI_SET, 11, "a.payments.k8s.example.test", 1);
	relay(src, dst, &d);
	sni_set(&d, EV_SNI_SET, 12, "z.payments.k8s.example.test", 1);
	relay(src, dst, &d);
	sni_set(&d, EV_SNI_SET, 13, "shop.payments.k8s.example.test", 3);
	relay(src, dst, &d);
	sni_set(&d, EV_SNI_DEL, 14, "a.payments.k8s.example.test", 0);
	relay(src, dst, &d);
}

static void
test_items_rebuild_the_table(void **state)
{
	struct routes src, dst;

	(void)state;
	routes_init(&src, &conf);
	routes_init(&dst, &conf);
	build(&src, &dst);
	assert_null(dst.ports[21008]);
	assert_null(dst.ports[21001]);
	assert_non_null(dst.ports[21000]);
	assert_int_equal(dst.ports[21000]->nbackends, 5);
	assert_int_equal(dst.napi, 1);
	assert_int_equal(dst.nsni, 2);
	assert_string_equal(dst.sni[0].host, "shop.payments.k8s.example.test");
	assert_int_equal(dst.sni[0].nbackends, 3);
	assert_int_equal(dst.sni[0].backends[2].weight, 3);
	assert_same(&src, &dst);
	routes_clear(&src);
	routes_clear(&dst);
}

static int
into(struct event *ev, void *arg)
{
	routes_apply(arg, ev);
	return 0;
}

static void
test_snapshot_and_copy(void **state)
{
	struct routes src, dst, snap, copy;

	(void)state;
	routes_init(&src, &conf);
	routes_init(&dst, &conf);
	routes_init(&snap, &conf);
	routes_init(&copy, &conf);
	build(&src, &dst);
	assert_int_equal(routes_items(&src, into, &snap), 0);
	assert_same(&src, &snap);
	routes_copy(&copy, &src);
	assert_same(&src, &copy);
	/* one entry copied: the rest untouched */
	routes_copy_port(&copy, &dst, 21417);
	assert_same(&src, &copy);
	/* the SNI routes apart: a table that lacks them differs there only */
	routes_copy_sni(&snap, &dst);
	assert_same(&src, &snap);
	routes_clear(&snap);
	routes_copy_api(&snap, &src);
	assert_false(routes_sni_same(&src, &snap));
	routes_copy_sni(&snap, &src);
	assert_true(routes_sni_same(&src, &snap));
	routes_clear(&src);
	routes_clear(&dst);
	routes_clear(&snap);
	routes_clear(&copy);
}

static void
test_small_cluster_goes_first(void **state)
{
	struct routes old, new;
	struct event d;
	unsigned dirty[16], out[16], n = 0, p;
	size_t k;

	(void)state;
	routes_init(&old, &conf);
	routes_init(&new, &conf);
	/* cluster C1: 8 ports of 300 backends; C2: one port of one */
	for (p = 21000; p < 21008; p++) {
		port_set(&d, p, p, C1, 300);
		routes_apply(&new, &d);
		event_free(&d);
		dirty[n++] = p;
	}
	port_set(&d, 100, 21999, C2, 1);
	routes_apply(&new, &d);
	event_free(&d);
	dirty[n++] = 21999;

	k = plan_slice(&old, &new, dirty, n, 512, 20000, out);
	assert_true(k >= 1);
	assert_int_equal(out[0], 21999);	/* C2 first, though last */
	/* a budget: C2 and one port of C1 (at least one port goes) */
	assert_int_equal(k, 2);
	/* C1 beyond what the runtime API takes: only C2 goes live */
	k = plan_slice(&old, &new, dirty, n, 100000, 1000, out);
	assert_int_equal(k, 1);
	assert_int_equal(out[0], 21999);
	/* the same tables, the same plan */
	assert_int_equal(plan_slice(&old, &new, dirty, n, 100000, 1000, out),
	    1);
	routes_clear(&old);
	routes_clear(&new);
}

static void
test_live_or_reload_from_tables(void **state)
{
	struct routes old, new;
	struct proxy_conf small;
	struct event d;
	char cid[64], cn[32];
	unsigned i;

	(void)state;
	routes_init(&old, &conf);
	routes_init(&new, &conf);
	api_set(&d, 1, C1, "payments", "10.20.0.11");
	routes_apply(&old, &d);
	routes_apply(&new, &d);
	event_free(&d);
	/* servers only: live */
	port_set(&d, 2, 21000, C1, 3);
	routes_apply(&new, &d);
	event_free(&d);
	assert_int_equal(hap_needs_reload(&conf, px, &old, &new, 0), 0);
	/* a cluster that comes takes a free slot: live */
	api_set(&d, 3, C2, "beta", "10.21.0.11");
	routes_apply(&new, &d);
	event_free(&d);
	assert_int_equal(hap_needs_reload(&conf, px, &old, &new, 1), 0);
	/* more clusters than half the pool: it doubles, a reload */
	for (i = 0; i < 8; i++) {
		snprintf(cid, sizeof(cid), "c0c0c0c0-0000-4000-8000-%012u", i);
		snprintf(cn, sizeof(cn), "c%u", i);
		api_set(&d, 10 + i, cid, cn, "10.22.0.11");
		routes_apply(&new, &d);
		event_free(&d);
	}
	assert_int_equal(hap_needs_reload(&conf, px, &old, &new, 1), 1);
	/* health checks that stop fitting the descriptors: a reload */
	routes_clear(&new);
	routes_copy(&new, &old);
	small = *px;
	small.fd_limit = 2 * small.maxconn + 200 + 13 + 1 + 3;
	port_set(&d, 20, 21000, C1, 1);
	routes_apply(&old, &d);
	event_free(&d);
	port_set(&d, 21, 21000, C1, 200);
	routes_apply(&new, &d);
	event_free(&d);
	assert_int_equal(haproxy_checks(&old, &conf, &small), 1);
	assert_int_equal(haproxy_checks(&new, &conf, &small), 0);
	assert_int_equal(hap_needs_reload(&conf, &small, &old, &new, 0), 1);
	assert_int_equal(hap_needs_reload(&conf, &small, &old, &old, 0), 0);
	routes_clear(&old);
	routes_clear(&new);
}

/*
 * The descriptors counted for the checks, to the one: each bound port
 * (the golden configuration's 15 but its reserved 21008), each master,
 * each port's backend as the table changes (a port set again, copied,
 * freed).
 */
static void
test_check_descriptors_exact(void **state)
{
	struct routes r, c;
	struct proxy_conf small;
	struct event d;
	size_t base;

	(void)state;
	routes_init(&r, &conf);
	routes_init(&c, &conf);
	small = *px;
	base = 2 * (size_t)small.maxconn + 200 + 14;
	api_set(&d, 1, C1, "payments", "10.20.0.11");
	routes_apply(&r, &d);
	event_free(&d);
	port_set(&d, 2, 21000, C1, 3);
	routes_apply(&r, &d);
	event_free(&d);
	port_set(&d, 3, 21001, C1, 4);
	routes_apply(&r, &d);
	event_free(&d);
	port_set(&d, 4, 21000, C1, 2);	/* 3 backends become 2 */
	routes_apply(&r, &d);
	event_free(&d);
	small.fd_limit = base + 1 + 2 + 4;
	assert_int_equal(haproxy_checks(&r, &conf, &small), 1);
	small.fd_limit--;
	assert_int_equal(haproxy_checks(&r, &conf, &small), 0);
	routes_copy(&c, &r);
	assert_int_equal(haproxy_checks(&c, &conf, &small), 0);
	port_free(&d, 5, 21001, C1);
	routes_apply(&r, &d);
	event_free(&d);
	small.fd_limit = base + 1 + 2;
	assert_int_equal(haproxy_checks(&r, &conf, &small), 1);
	routes_copy_port(&c, &r, 21001);
	assert_int_equal(haproxy_checks(&c, &conf, &small), 1);
	small.fd_limit--;
	assert_int_equal(haproxy_checks(&c, &conf, &small), 0);
	routes_clear(&r);
	routes_clear(&c);
}

/* A cluster id (prefix-0000-4000-8000-n) homed at slot home of 16. */
static void
id_homed(char *id, size_t len, const char *prefix, unsigned home)
{
	unsigned i;

	for (i = 0; i < 100000; i++) {
		snprintf(id, len, "%s-0000-4000-8000-%012u", prefix, i);
		if ((hash_fnv1a(id) & 15) == home)
			return;
	}
	fail();
}

static void
test_slot_moves_live_swaps_reload(void **state)
{
	struct routes old, new;
	struct event d;
	char first[64], comer[64], x[64], y[64];
	unsigned home;

	(void)state;
	routes_init(&old, &conf);
	routes_init(&new, &conf);
	/* a newcomer homed where a cluster is, sorting first, takes its slot */
	snprintf(first, sizeof(first), "f0000000-0000-4000-8000-000000000000");
	home = (unsigned)(hash_fnv1a(first) & 15);
	id_homed(comer, sizeof(comer), "00000000", home);
	api_set(&d, 1, first, "payments", "10.20.0.11");
	routes_apply(&old, &d);
	routes_apply(&new, &d);
	event_free(&d);
	api_set(&d, 2, comer, "beta", "10.21.0.11");
	routes_apply(&new, &d);
	event_free(&d);
	/* the cluster moves to the next slot, live; and back when it goes */
	assert_int_equal(hap_needs_reload(&conf, px, &old, &new, 1), 0);
	assert_int_equal(hap_needs_reload(&conf, px, &new, &old, 1), 0);
	routes_clear(&old);
	routes_clear(&new);

	/* two hosts that swap slots: a cycle, only a reload */
	routes_init(&old, &conf);
	routes_init(&new, &conf);
	id_homed(x, sizeof(x), "11111111", 3);
	id_homed(y, sizeof(y), "22222222", 4);
	api_set(&d, 1, x, "a", "10.20.0.11");
	routes_apply(&old, &d);
	event_free(&d);
	api_set(&d, 2, y, "b", "10.21.0.11");
	routes_apply(&old, &d);
	event_free(&d);
	api_set(&d, 3, x, "b", "10.20.0.11");
	routes_apply(&new, &d);
	event_free(&d);
	api_set(&d, 4, y, "a", "10.21.0.11");
	routes_apply(&new, &d);
	event_free(&d);
	assert_int_equal(hap_needs_reload(&conf, px, &old, &new, 1), 1);
	/* one of them only: the other's slot is free, a chain */
	routes_clear(&new);
	routes_init(&new, &conf);
	api_set(&d, 5, y, "a", "10.21.0.11");
	routes_apply(&new, &d);
	event_free(&d);
	assert_int_equal(hap_needs_reload(&conf, px, &old, &new, 1), 0);
	routes_clear(&old);
	routes_clear(&new);
}

/*
 * The plan's order: a newcomer takes a slot, the two clusters after it
 * each move one on; the last slot is free, so its move goes first.
 */
static void
test_slot_moves_in_chain_order(void **state)
{
	struct routes old, new;
	struct slots_plan sp;
	struct event d;
	char n[64], a[64], b[64];

	(void)state;
	routes_init(&old, &conf);
	routes_init(&new, &conf);
	id_homed(n, sizeof(n), "00000000", 5);
	id_homed(a, sizeof(a), "10000000", 5);
	id_homed(b, sizeof(b), "20000000", 6);
	api_set(&d, 1, a, "a", "10.20.0.11");
	routes_apply(&old, &d);
	routes_apply(&new, &d);
	event_free(&d);
	api_set(&d, 2, b, "b", "10.21.0.11");
	routes_apply(&old, &d);
	routes_apply(&new, &d);
	event_free(&d);
	api_set(&d, 3, n, "n", "10.22.0.11");
	routes_apply(&new, &d);
	event_free(&d);
	assert_int_equal(slots_plan(&old, &new, 0, &sp), 0);
	assert_int_equal(sp.pool, 16);
	assert_string_equal(slots_host(&old, 0, sp.os[5]), "a.k8s.example.test");
	assert_string_equal(slots_host(&new, 0, sp.ns[5]), "n.k8s.example.test");
	assert_int_equal(sp.to[5], 6);
	assert_int_equal(sp.to[6], 7);
	assert_int_equal(sp.from[5], -1);
	assert_int_equal(sp.nmoves, 2);
	assert_int_equal(sp.moves[0], 7);	/* b into the free slot */
	assert_int_equal(sp.moves[1], 6);	/* then a into b's */
	slots_plan_free(&sp);
	/* back: b moves into a's slot once a moved into n's */
	assert_int_equal(slots_plan(&new, &old, 0, &sp), 0);
	assert_int_equal(sp.nmoves, 2);
	assert_int_equal(sp.moves[0], 5);
	assert_int_equal(sp.moves[1], 6);
	assert_int_equal(sp.to[7], 6);
	slots_plan_free(&sp);
	/* no TLSRoute hostname in either: no pool, nothing moves */
	assert_int_equal(slots_plan(&old, &new, 1, &sp), 0);
	assert_int_equal(sp.pool, 0);
	assert_int_equal(sp.nmoves, 0);
	slots_plan_free(&sp);
	routes_clear(&old);
	routes_clear(&new);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_items_rebuild_the_table),
		cmocka_unit_test(test_snapshot_and_copy),
		cmocka_unit_test(test_small_cluster_goes_first),
		cmocka_unit_test(test_live_or_reload_from_tables),
		cmocka_unit_test(test_check_descriptors_exact),
		cmocka_unit_test(test_slot_moves_live_swaps_reload),
		cmocka_unit_test(test_slot_moves_in_chain_order),
	};
	char err[512];

	log_init("test_rtable", 0, 0);
	if (config_load(CONF, &conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\n", CONF, err);
		return 1;
	}
	px = &conf.proxies[0];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
