/*
 * allocd — the gauges of its state (clusters, routes, ports), read from the
 * store when Prometheus asks, on the HTTP thread, in a read transaction of
 * its own: the loop does not count anything, nor wait for anyone who does.
 */
#include "gauges.h"
#include "log.h"
#include "metrics.h"

/* Ports of the set that can be given out: not reserved, not the API's. */
static unsigned
capacity(const struct config *c)
{
	unsigned i, n = ports_count(&c->ports), p, cap = 0;

	for (i = 0; i < n; i++) {
		p = ports_nth(&c->ports, i);
		if (p != c->api_port && !ports_contain(&c->reserved, p))
			cap++;
	}
	return cap;
}

void
gauges_init(struct gauges *g, struct store *st, const struct config *c)
{
	g->st = st;
	g->conf = c;
	g->capacity = capacity(c);
	metrics_on_scrape(gauges_scrape, g);
}

static void
count_ports(struct gauges *g, MDB_txn *txn, uint64_t now)
{
	uint64_t q = (uint64_t)g->conf->quarantine * 1000;
	unsigned used = 0, quar = 0, p;
	uint64_t released;
	MDB_cursor *cur;
	MDB_val k, v, owner;
	MDB_cursor_op op;

	if (mdb_cursor_open(txn, g->st->ports, &cur) != 0)
		return;
	for (op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0;
	    op = MDB_NEXT) {
		if (store_port_decode(&k, &v, &p, &released, &owner) == -1)
			continue;
		if (!ports_contain(&g->conf->ports, p))
			continue;	/* stranded: not the pool's to count */
		if (released == 0)
			used++;
		else if (released + q > now)
			quar++;
	}
	mdb_cursor_close(cur);
	metrics_set(M_PORTS, MV_PORTS_USED, used);
	metrics_set(M_PORTS, MV_PORTS_QUARANTINED, quar);
	metrics_set(M_PORTS, MV_PORTS_FREE, used + quar > g->capacity ? 0 :
	    (int64_t)(g->capacity - used - quar));
}

static void
count_clusters(struct gauges *g, MDB_txn *txn)
{
	struct cluster_rec cr;
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_cursor_op op;
	int64_t up = 0;

	if (mdb_cursor_open(txn, g->st->clusters, &cur) != 0)
		return;
	for (op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0;
	    op = MDB_NEXT) {
		if (store_cluster_decode(&v, &cr, NULL) == -1)
			continue;
		up += cr.up != 0;
	}
	mdb_cursor_close(cur);
	metrics_set(M_CLUSTERS, 0, up);
}

void
gauges_scrape(void *arg)
{
	struct gauges *g = arg;
	MDB_stat ms;
	MDB_txn *txn;

	if (store_begin(g->st, &txn, 1) != 0) {
		log_warnx("metrics: no read transaction for the gauges");
		return;
	}
	count_ports(g, txn, now_ms());
	count_clusters(g, txn);
	if (mdb_stat(txn, g->st->owners, &ms) == 0)
		metrics_set(M_ROUTES, 0, (int64_t)ms.ms_entries);
	mdb_txn_abort(txn);
}
