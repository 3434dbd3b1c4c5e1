/*
 * Unit tests for allocd/alloc.c: observations in, decisions out, over a real
 * LMDB store in a temporary directory.  The clock is each observation's own
 * time field, set here by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../allocd/alloc.h"
#include "../../allocd/alloc_impl.h"
#include "../../allocd/proof.h"
#include "hash.h"

#define LO	20000
#define HI	20009
#define API	8443
#define QSEC	60
#define QMS	(QSEC * 1000ULL)
#define T0	1700000000000ULL
#define MAXLOG	16384

struct fx {
	char		 dir[64];
	struct store	 st;
	struct config	 conf;
	struct alloc	 a;
	uint64_t	 now;
	/* every event logged so far, by seq: its type */
	int		 logged[MAXLOG];
	void		*model;		/* the property test's, freed here */
};

/* Fixture. */

static void
fx_open(struct fx *f)
{
	MDB_txn *txn;

	assert_int_equal(store_open(&f->st, f->dir, 64 << 20, 0), 0);
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	alloc_init(&f->a, &f->st, &f->conf, store_last_seq(&f->st, txn));
	mdb_txn_abort(txn);
}

static void
fx_close(struct fx *f)
{
	alloc_free(&f->a);
	store_close(&f->st);
}

/* Close the store and open it again; the log carries on where it was. */
static void
fx_reopen(struct fx *f)
{
	uint64_t seq = f->a.seq;

	fx_close(f);
	fx_open(f);
	assert_true(f->a.seq == seq);
}

static int
setup(void **state)
{
	struct fx *f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/portico-test-alloc-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	f->conf.port_lo = LO;
	f->conf.port_hi = HI;
	f->conf.ports.n = 1;
	f->conf.ports.r[0].lo = LO;
	f->conf.ports.r[0].hi = HI;
	f->conf.api_port = API;
	f->conf.quarantine = QSEC;
	f->conf.nproxies = 1;
	snprintf(f->conf.proxies[0].name, sizeof(f->conf.proxies[0].name),
	    "haproxy");
	snprintf(f->conf.proxies[0].kind, sizeof(f->conf.proxies[0].kind),
	    "haproxy");
	f->now = T0;
	proof_set_key("a key of thirty-two bytes, or so", 32);
	fx_open(f);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char path[128];

	fx_close(f);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f->model);
	free(f);
	return 0;
}

/* Observations. */

static void
ev_route(struct event *ev, int type, const char *c, const char *name,
    uint64_t time)
{
	event_init(ev, type);
	assert_int_equal(event_set_str(ev, F_CLUSTER, c), 0);
	assert_int_equal(event_set_str(ev, F_NS, "default"), 0);
	assert_int_equal(event_set_str(ev, F_NAME, name), 0);
	ev->route = 1;
	ev->has |= F_ROUTE;
	ev->time = time;
}

/* A ROUTE with one backend, ip:30080. */
static void
ev_expose(struct event *ev, const char *c, const char *name, const char *ip,
    uint64_t time)
{
	ev_route(ev, EV_ROUTE, c, name, time);
	assert_int_equal(event_add_backend(ev, ip, 30080, 1), 0);
}

static void
ev_cluster(struct event *ev, int type, const char *c, uint64_t time)
{
	event_init(ev, type);
	assert_int_equal(event_set_str(ev, F_CLUSTER, c), 0);
	ev->time = time;
	if (type == EV_CLUSTER_UP) {
		char host[128];

		/* each cluster its own host: one host is one cluster's */
		snprintf(host, sizeof(host), "api.%s.example.com", c);
		assert_int_equal(event_set_str(ev, F_CNAME, "prod"), 0);
		assert_int_equal(event_set_str(ev, F_HOST, host), 0);
		strcpy(ev->masters[0], "10.1.0.1");
		strcpy(ev->masters[1], "fd00::1");
		ev->nmasters = 2;
		ev->mport = 8443;
		ev->has |= F_MASTERS | F_MPORT;
	}
}

static void
ev_sync(struct event *ev, int type, const char *c, uint64_t sid,
    uint64_t time)
{
	ev_cluster(ev, type, c, time);
	ev->sid = sid;
	ev->has |= F_SID;
}

static void
ev_applied(struct event *ev, const char *proxy, uint64_t gen, uint64_t time)
{
	event_init(ev, EV_APPLIED);
	assert_int_equal(event_set_str(ev, F_PROXY, proxy), 0);
	ev->gen = gen;
	ev->has |= F_GEN;
	ev->time = time;
}

/*
 * Run one observation in its own write transaction and commit.  Whatever
 * it returns, the queued decisions must be the observation itself first,
 * then the decisions, under consecutive seqs after the last one, all
 * stamped with the observation's time.  Returns alloc_observe's answer.
 */
static int
observe_(struct fx *f, const struct event *ev, const char *file, int line)
{
	MDB_txn *txn;
	uint64_t seq0 = f->a.seq;
	size_t i;
	int rc;

	alloc_clear(&f->a);
	assert_int_equal(store_begin(&f->st, &txn, 0), 0);
	rc = alloc_observe(&f->a, txn, ev);
	if (rc != 0 && rc != 1) {
		mdb_txn_abort(txn);
		print_error("alloc_observe: %s\n", mdb_strerror(rc));
		_fail(file, line);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	if (rc == 1) {
		if (f->a.nout != 0 || f->a.seq != seq0) {
			print_error("ignored observation logged something\n");
			_fail(file, line);
		}
		return rc;
	}
	if (f->a.nout < 1 || f->a.out[0].type != ev->type ||
	    f->a.out[0].has != ev->has) {
		print_error("the observation is not logged first\n");
		_fail(file, line);
	}
	for (i = 0; i < f->a.nout; i++) {
		if (f->a.out[i].seq != seq0 + 1 + i ||
		    f->a.out[i].time != ev->time) {
			print_error("out[%zu]: seq %llu time %llu\n", i,
			    (unsigned long long)f->a.out[i].seq,
			    (unsigned long long)f->a.out[i].time);
			_fail(file, line);
		}
		if (f->a.out[i].seq < MAXLOG)
			f->logged[f->a.out[i].seq] = f->a.out[i].type;
	}
	if (f->a.seq != seq0 + f->a.nout) {
		print_error("a.seq %llu after %zu events from %llu\n",
		    (unsigned long long)f->a.seq, f->a.nout,
		    (unsigned long long)seq0);
		_fail(file, line);
	}
	return rc;
}
#define observe(f, ev)	observe_((f), (ev), __FILE__, __LINE__)

/* Observe ev and free it; the number of decisions it caused. */
static size_t
run(struct fx *f, struct event *ev)
{
	observe(f, ev);
	event_free(ev);
	return f->a.nout > 0 ? f->a.nout - 1 : 0;
}

/* The k-th (from 0) decision of type in the last run, or NULL. */
static const struct event *
decision(struct fx *f, int type, size_t k)
{
	size_t i;

	for (i = 1; i < f->a.nout; i++)
		if (f->a.out[i].type == type && k-- == 0)
			return &f->a.out[i];
	return NULL;
}

static size_t
ndecisions(struct fx *f, int type)
{
	size_t i, n = 0;

	for (i = 1; i < f->a.nout; i++)
		n += f->a.out[i].type == type;
	return n;
}

static unsigned
port_of(struct fx *f, const char *c, const char *name)
{
	char owner[EV_OWNERLEN];
	MDB_txn *txn;
	unsigned p;

	snprintf(owner, sizeof(owner), "%s/default/%s/1", c, name);
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_int_equal(alloc_port_of(&f->a, txn, owner, &p), 0);
	mdb_txn_abort(txn);
	return p;
}

/* Expose c/name at time t; the port of the PORT_SET it causes, 0 if none. */
static unsigned
expose(struct fx *f, const char *c, const char *name, uint64_t want,
    uint64_t t)
{
	const struct event *d;
	struct event ev;

	ev_expose(&ev, c, name, "10.0.0.1", t);
	if (want) {
		ev.want = want;
		ev.has |= F_WANT;
	}
	run(f, &ev);
	if ((d = decision(f, EV_PORT_SET, 0)) == NULL)
		return 0;
	assert_string_equal(d->cluster, c);
	assert_string_equal(d->name, name);
	return (unsigned)d->port;
}

static void
unexpose(struct fx *f, const char *c, const char *name, uint64_t t)
{
	struct event ev;

	ev_route(&ev, EV_ROUTE_GONE, c, name, t);
	run(f, &ev);
}

/* The last run refused c/name with a reason containing s. */
static void
assert_refused_(struct fx *f, const char *name, const char *s,
    const char *file, int line)
{
	const struct event *d = decision(f, EV_REFUSED, 0);

	if (d == NULL || strcmp(d->name, name) != 0 ||
	    strstr(d->why, s) == NULL || ndecisions(f, EV_PORT_SET) != 0) {
		print_error("no REFUSED for %s saying \"%s\" (got \"%s\")\n",
		    name, s, d ? d->why : "nothing");
		_fail(file, line);
	}
}
#define assert_refused(f, n, s) assert_refused_((f), (n), (s), __FILE__, \
	__LINE__)

/* Tests. */

/* A new owner gets a port in range, with its backends, held in the tables. */
static void
test_assign_in_range(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;
	unsigned seen[HI - LO + 1] = { 0 }, p;
	char name[16];
	int i;

	ev_expose(&ev, "c1", "web", "10.0.0.1", f->now);
	assert_int_equal(event_add_backend(&ev, "fd00::7", 31000, 256), 0);
	assert_int_equal(run(f, &ev), 1);
	assert_int_equal(f->a.nout, 2);
	assert_int_equal(f->a.out[0].type, EV_ROUTE);
	assert_non_null(d = decision(f, EV_PORT_SET, 0));
	assert_in_range(d->port, LO, HI);
	assert_string_equal(d->cluster, "c1");
	assert_string_equal(d->ns, "default");
	assert_string_equal(d->name, "web");
	assert_true(d->route == 1);
	assert_int_equal(d->nbackends, 2);
	assert_string_equal(d->backends[0].ip, "10.0.0.1");
	assert_int_equal(d->backends[0].port, 30080);
	assert_string_equal(d->backends[1].ip, "fd00::7");
	assert_int_equal(d->backends[1].weight, 256);
	assert_int_equal(port_of(f, "c1", "web"), d->port);
	seen[d->port - LO] = 1;
	/* more owners: each its own port */
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "app%d", i);
		p = expose(f, "c1", name, 0, f->now);
		assert_in_range(p, LO, HI);
		assert_int_equal(seen[p - LO], 0);
		seen[p - LO] = 1;
		assert_int_equal(port_of(f, "c1", name), p);
	}
	assert_int_equal(port_of(f, "c1", "nobody"), 0);
}

/*
 * An owner keeps its port across repeated observations (which decide
 * nothing) and across closing and reopening the store.
 */
static void
test_keeps_port(void **state)
{
	struct fx *f = *state;
	struct event ev;
	unsigned p, q;
	int i;

	p = expose(f, "c1", "web", 0, f->now);
	assert_in_range(p, LO, HI);
	q = expose(f, "c1", "other", 0, f->now);
	for (i = 0; i < 5; i++) {
		f->now += 1000;
		ev_expose(&ev, "c1", "web", "10.0.0.1", f->now);
		assert_int_equal(run(f, &ev), 0);
		assert_int_equal(port_of(f, "c1", "web"), p);
	}
	fx_reopen(f);
	assert_int_equal(port_of(f, "c1", "web"), p);
	assert_int_equal(port_of(f, "c1", "other"), q);
	ev_expose(&ev, "c1", "web", "10.0.0.1", f->now);
	assert_int_equal(run(f, &ev), 0);
	/* the reopened allocator still knows what web holds */
	unexpose(f, "c1", "web", f->now);
	assert_non_null(decision(f, EV_PORT_FREE, 0));
	assert_int_equal(decision(f, EV_PORT_FREE, 0)->port, p);
	fx_reopen(f);
	assert_int_equal(expose(f, "c1", "web", 0, f->now + 1000), p);
}

/* A changed backend list re-emits PORT_SET with the same port. */
static void
test_backends_change(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;
	unsigned p;

	p = expose(f, "c1", "web", 0, f->now);
	ev_expose(&ev, "c1", "web", "10.0.0.2", f->now);
	assert_int_equal(event_add_backend(&ev, "fd00::2", 30081, 0), 0);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_PORT_SET, 0));
	assert_int_equal(d->port, p);
	assert_int_equal(d->nbackends, 2);
	assert_string_equal(d->backends[0].ip, "10.0.0.2");
	assert_string_equal(d->backends[1].ip, "fd00::2");
	/* the same list again: nothing */
	ev_expose(&ev, "c1", "web", "10.0.0.2", f->now);
	assert_int_equal(event_add_backend(&ev, "fd00::2", 30081, 0), 0);
	assert_int_equal(run(f, &ev), 0);
	/* a weight alone changes the list */
	ev_expose(&ev, "c1", "web", "10.0.0.2", f->now);
	assert_int_equal(event_add_backend(&ev, "fd00::2", 30081, 1), 0);
	assert_int_equal(run(f, &ev), 1);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->port, p);
	/* no backends at all is a list too */
	ev_route(&ev, EV_ROUTE, "c1", "web", f->now);
	ev.has |= F_BACKENDS;
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_PORT_SET, 0));
	assert_int_equal(d->port, p);
	assert_int_equal(d->nbackends, 0);
}

/*
 * ROUTE_GONE frees the port into quarantine: another owner asking for it is
 * refused until the quarantine ends, and gets it after.
 */
static void
test_quarantine(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	unsigned p, q;

	p = expose(f, "c1", "a", 0, f->now);
	f->now += 5000;
	unexpose(f, "c1", "a", f->now);
	assert_int_equal(f->a.nout, 2);
	assert_non_null(d = decision(f, EV_PORT_FREE, 0));
	assert_int_equal(d->port, p);
	assert_string_equal(d->name, "a");
	assert_int_equal(port_of(f, "c1", "a"), 0);
	/* gone again: nothing more to say */
	unexpose(f, "c1", "a", f->now + 1);
	assert_int_equal(f->a.nout, 1);

	assert_int_equal(expose(f, "c1", "b", p, f->now + 1000), 0);
	/* the reason never names the holder: another tenant, maybe */
	assert_refused(f, "b", "is quarantined for 59 s more");
	assert_null(strstr(decision(f, EV_REFUSED, 0)->why, "default/a"));
	assert_int_equal(port_of(f, "c1", "b"), 0);
	assert_int_equal(expose(f, "c2", "b", p, f->now + QMS - 1), 0);
	assert_refused(f, "b", "quarantine");
	/* nor does a plain request land on it */
	q = expose(f, "c1", "plain", 0, f->now + QMS - 1);
	assert_int_not_equal(q, p);
	assert_int_not_equal(q, 0);
	/* the quarantine is over */
	assert_int_equal(expose(f, "c1", "b", p, f->now + QMS), p);
	assert_int_equal(port_of(f, "c1", "b"), p);
	/* and a, coming back late, gets another */
	q = expose(f, "c1", "a", 0, f->now + QMS + 1);
	assert_in_range(q, LO, HI);
	assert_int_not_equal(q, p);
}

/*
 * An owner coming back within its quarantine finds its old port, even one
 * it moved to with `want` rather than the one its hash would pick.
 */
static void
test_return_within_quarantine(void **state)
{
	struct fx *f = *state;
	unsigned h, w;

	h = expose(f, "c1", "a", 0, f->now);
	w = h == HI ? LO : h + 1;
	assert_int_equal(expose(f, "c1", "a", w, f->now), w);
	assert_int_equal(decision(f, EV_PORT_FREE, 0)->port, h);
	unexpose(f, "c1", "a", f->now);
	assert_int_equal(decision(f, EV_PORT_FREE, 0)->port, w);
	assert_int_equal(expose(f, "c1", "a", 0, f->now + QMS - 1), w);
	unexpose(f, "c1", "a", f->now + QMS);
	assert_int_equal(expose(f, "c1", "a", 0, f->now + QMS + 30000), w);
}

/* `want` is honoured when free, refused when taken, outside or reserved. */
static void
test_want(void **state)
{
	struct fx *f = *state;
	unsigned p;

	f->conf.api_port = LO + 7;	/* inside the range this time */
	assert_int_equal(expose(f, "c1", "a", LO + 5, f->now), LO + 5);
	assert_int_equal(expose(f, "c1", "b", LO + 5, f->now), 0);
	assert_refused(f, "b", "port 20005 is taken");
	assert_int_equal(port_of(f, "c1", "b"), 0);
	/* saying it again says nothing new */
	assert_int_equal(expose(f, "c1", "b", LO + 5, f->now), 0);
	assert_int_equal(f->a.nout, 1);
	/* b without want gets some other port; asking again keeps it */
	p = expose(f, "c1", "b", 0, f->now);
	assert_in_range(p, LO, HI);
	assert_int_not_equal(p, LO + 5);
	assert_int_equal(expose(f, "c1", "b", LO + 5, f->now), 0);
	assert_refused(f, "b", "is taken");
	assert_int_equal(port_of(f, "c1", "b"), p);
	/* outside the range, either side */
	assert_int_equal(expose(f, "c1", "a", LO - 1, f->now), 0);
	assert_refused(f, "a", "outside");
	assert_int_equal(expose(f, "c1", "a", HI + 1, f->now), 0);
	assert_refused(f, "a", "outside");
	assert_int_equal(expose(f, "c1", "c", 0xffff, f->now), 0);
	assert_refused(f, "c", "outside");
	assert_int_equal(port_of(f, "c1", "a"), LO + 5);
	/* the API port */
	assert_int_equal(expose(f, "c1", "c", LO + 7, f->now), 0);
	assert_refused(f, "c", "reserved");
	assert_int_equal(expose(f, "c1", "a", LO + 7, f->now), 0);
	assert_refused(f, "a", "reserved");
	/* a free port moves a: the old one is freed first */
	p = p == LO + 8 ? LO + 9 : LO + 8;
	assert_int_equal(expose(f, "c1", "a", p, f->now), p);
	assert_int_equal(f->a.nout, 3);
	assert_int_equal(f->a.out[1].type, EV_PORT_FREE);
	assert_int_equal(f->a.out[1].port, LO + 5);
	assert_int_equal(port_of(f, "c1", "a"), p);
	/* wanting what it has changes nothing */
	assert_int_equal(expose(f, "c1", "a", p, f->now), 0);
	assert_int_equal(f->a.nout, 1);
}

/* A full range refuses with "no free port", and gives one after quarantine. */
/* Is a TICK due at time t (read-only)? */
static int
tick_due(struct fx *f, uint64_t t)
{
	MDB_txn *txn;
	int due;

	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	due = alloc_tick_due(&f->a, txn, t);
	mdb_txn_abort(txn);
	return due;
}

/* A TICK at time t; the port it gave name, 0 if none. */
static unsigned
tick(struct fx *f, const char *name, uint64_t t)
{
	const struct event *d;
	struct event ev;
	size_t k;

	event_init(&ev, EV_TICK);
	ev.time = t;
	run(f, &ev);
	for (k = 0; (d = decision(f, EV_PORT_SET, k)) != NULL; k++)
		if (strcmp(d->name, name) == 0)
			return (unsigned)d->port;
	return 0;
}

/*
 * Owners refused for want of a port wait; when a port comes out of
 * quarantine, a TICK gives it to the one that asked first, with the
 * backends it last observed.  An owner that goes away stops waiting; one
 * that asked for a specific port does not wait.
 */
static void
test_waiting_owners(void **state)
{
	struct fx *f = *state;
	unsigned ports[HI - LO + 1], p;
	char name[16];
	int i;

	for (i = 0; i <= HI - LO; i++) {
		snprintf(name, sizeof(name), "o%d", i);
		ports[i] = expose(f, "c1", name, 0, f->now);
	}
	assert_int_equal(expose(f, "c1", "first", 0, f->now + 1), 0);
	assert_int_equal(expose(f, "c1", "second", 0, f->now + 2), 0);
	assert_int_equal(expose(f, "c1", "gone", 0, f->now + 3), 0);
	unexpose(f, "c1", "gone", f->now + 4);
	assert_int_equal(expose(f, "c1", "picky", ports[5], f->now + 5), 0);
	assert_refused(f, "picky", "is taken");
	/* seen again later: still waits in its first place */
	assert_int_equal(expose(f, "c1", "first", 0, f->now + 6), 0);

	assert_false(tick_due(f, f->now + 10));
	unexpose(f, "c1", "o3", f->now + 10);
	assert_false(tick_due(f, f->now + 10 + QMS - 1));
	assert_int_equal(tick(f, "first", f->now + 10 + QMS - 1), 0);
	assert_true(tick_due(f, f->now + 10 + QMS));
	p = tick(f, "first", f->now + 10 + QMS);
	assert_int_equal(p, ports[3]);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 1);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->nbackends, 1);
	assert_int_equal(port_of(f, "c1", "first"), ports[3]);
	assert_false(tick_due(f, f->now + 10 + QMS));

	unexpose(f, "c1", "o7", f->now + 20 + QMS);
	assert_int_equal(tick(f, "second", f->now + 20 + 2 * QMS), ports[7]);
	/* nobody waits now: "gone" went, "picky" asked for a port */
	unexpose(f, "c1", "o8", f->now + 30 + 2 * QMS);
	assert_false(tick_due(f, f->now + 30 + 3 * QMS));
	assert_int_equal(port_of(f, "c1", "gone"), 0);
	assert_int_equal(port_of(f, "c1", "picky"), 0);
}

/*
 * A set of ranges and single ports, less the reserved ones: every port
 * given out lies in the set and not on a reserved port; asking for a port
 * between the ranges is "outside", for a reserved one "reserved"; the set
 * runs out after exactly its size.
 */
static void
test_port_ranges(void **state)
{
	struct fx *f = *state;
	unsigned p, seen[HI - LO + 1] = { 0 };
	char name[16];
	int i;

	assert_int_equal(ports_parse(&f->conf.ports,
	    "20008-20009, 20000-20002,20005", 1024, 65535), 0);
	assert_int_equal(ports_parse(&f->conf.reserved, "20001", 1, 65535), 0);
	assert_int_equal(ports_count(&f->conf.ports), 6);
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "o%d", i);
		p = expose(f, "c1", name, 0, f->now);
		assert_true(p == 20000 || p == 20002 || p == 20005 ||
		    p == 20008 || p == 20009);
		assert_int_equal(seen[p - LO]++, 0);
	}
	assert_int_equal(expose(f, "c1", "late", 0, f->now), 0);
	assert_refused(f, "late",
	    "no free port in 20000-20002, 20005, 20008-20009");
	assert_int_equal(expose(f, "c1", "gap", 20003, f->now), 0);
	assert_refused(f, "gap", "outside");
	assert_int_equal(expose(f, "c1", "res", 20001, f->now), 0);
	assert_refused(f, "res", "reserved");
	/* malformed sets are refused whole */
	assert_int_equal(ports_parse(&f->conf.reserved, "20-10", 1, 65535), -1);
	assert_int_equal(ports_parse(&f->conf.reserved, "1-5, 4", 1, 65535), -1);
	assert_int_equal(ports_parse(&f->conf.reserved, "80", 1024, 65535), -1);
}

/*
 * The ports shrink: owners stranded off the new set are named by
 * alloc_stranded; they stay put until allow_shrink, then a TICK moves each
 * to a port of the new set (PORT_FREE of the old one, PORT_SET of the new)
 * and nobody else moves.
 */
static void
test_shrink(void **state)
{
	struct fx *f = *state;
	unsigned pa, pb, np;
	MDB_txn *txn;
	char **list;
	const struct event *d;

	pa = expose(f, "c1", "a", LO, f->now);
	pb = expose(f, "c1", "b", HI, f->now);
	assert_int_equal(pa, LO);
	assert_int_equal(pb, HI);
	/* the set loses HI */
	f->conf.ports.r[0].hi = HI - 1;
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	list = alloc_stranded(&f->a, txn);
	mdb_txn_abort(txn);
	assert_non_null(list[0]);
	assert_null(list[1]);
	assert_string_equal(list[0], "c1/default/b/1");
	free(list[0]);
	free(list);

	assert_int_equal(tick(f, "b", f->now + 1), 0);	/* not allowed */
	assert_int_equal(port_of(f, "c1", "b"), HI);
	f->conf.allow_shrink = 1;
	np = tick(f, "b", f->now + 2);
	assert_in_range(np, LO + 1, HI - 1);
	d = decision(f, EV_PORT_FREE, 0);
	assert_non_null(d);
	assert_int_equal(d->port, HI);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 1);
	assert_int_equal(port_of(f, "c1", "a"), LO);
	assert_int_equal(port_of(f, "c1", "b"), np);
	/* HI is not given out any more */
	assert_int_equal(expose(f, "c1", "c", HI, f->now + 3), 0);
	assert_refused(f, "c", "outside");
}

static void
test_exhaustion(void **state)
{
	struct fx *f = *state;
	unsigned seen[HI - LO + 1] = { 0 }, p, first = 0;
	char name[16];
	int i;

	for (i = 0; i <= HI - LO; i++) {
		snprintf(name, sizeof(name), "o%d", i);
		p = expose(f, "c1", name, 0, f->now);
		assert_in_range(p, LO, HI);
		assert_int_equal(seen[p - LO]++, 0);
		if (i == 0)
			first = p;
	}
	assert_int_equal(expose(f, "c1", "late", 0, f->now), 0);
	assert_refused(f, "late", "no free port in 20000-20009");
	assert_int_equal(port_of(f, "c1", "late"), 0);
	unexpose(f, "c1", "o0", f->now);
	f->now += 1000;
	assert_int_equal(expose(f, "c1", "late", 0, f->now), 0);
	assert_int_equal(expose(f, "c1", "late", 0, f->now + QMS - 1001), 0);
	assert_int_equal(expose(f, "c1", "late", 0, f->now + QMS), first);
	assert_int_equal(expose(f, "c1", "o0", 0, f->now + QMS), 0);
	assert_refused(f, "o0", "no free port");
}

/*
 * SYNC_END(sid) releases the owners of its cluster not seen since
 * SYNC_BEGIN(sid), and nothing of other clusters; a SYNC_END with another
 * sid releases nothing.
 */
static void
test_sync(void **state)
{
	struct fx *f = *state;
	struct event ev;
	unsigned pa, pb, pc, px, py;

	pa = expose(f, "c1", "a", 0, f->now);
	pb = expose(f, "c1", "b", 0, f->now);
	pc = expose(f, "c1", "c", 0, f->now);
	px = expose(f, "c2", "x", 0, f->now);
	py = expose(f, "c1x", "y", 0, f->now);	/* "c1" is a prefix */
	ev_route(&ev, EV_ROUTE, "c1", "bad", f->now);
	ev.has |= F_BACKENDS | F_WHY;
	snprintf(ev.why, sizeof(ev.why), "bad annotation");
	assert_int_equal(run(f, &ev), 1);
	assert_refused(f, "bad", "bad annotation");

	ev_sync(&ev, EV_SYNC_BEGIN, "c1", 5, f->now);
	assert_int_equal(run(f, &ev), 0);
	assert_int_equal(expose(f, "c1", "a", 0, f->now), 0);
	assert_int_equal(expose(f, "c1", "b", 0, f->now), 0);
	ev_sync(&ev, EV_SYNC_END, "c1", 5, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_PORT_FREE, 0));
	assert_string_equal(decision(f, EV_PORT_FREE, 0)->name, "c");
	assert_int_equal(decision(f, EV_PORT_FREE, 0)->port, pc);
	assert_int_equal(port_of(f, "c1", "a"), pa);
	assert_int_equal(port_of(f, "c1", "b"), pb);
	assert_int_equal(port_of(f, "c1", "c"), 0);
	assert_int_equal(port_of(f, "c2", "x"), px);
	assert_int_equal(port_of(f, "c1x", "y"), py);

	/* an END that does not match the BEGIN releases nothing */
	ev_sync(&ev, EV_SYNC_BEGIN, "c1", 6, f->now);
	assert_int_equal(run(f, &ev), 0);
	assert_int_equal(expose(f, "c1", "a", 0, f->now), 0);
	ev_sync(&ev, EV_SYNC_END, "c1", 7, f->now);
	assert_int_equal(run(f, &ev), 0);
	ev_sync(&ev, EV_SYNC_END, "c2", 6, f->now);
	assert_int_equal(run(f, &ev), 0);
	assert_int_equal(port_of(f, "c1", "b"), pb);
	assert_int_equal(port_of(f, "c2", "x"), px);
	/* and the matching one, late, still works, across a reopen */
	fx_reopen(f);
	ev_sync(&ev, EV_SYNC_END, "c1", 6, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_string_equal(decision(f, EV_PORT_FREE, 0)->name, "b");
	assert_int_equal(port_of(f, "c1", "a"), pa);
	assert_int_equal(port_of(f, "c2", "x"), px);
}

/*
 * CLUSTER_UP emits API_SET (once for the same facts); CLUSTER_DOWN emits
 * API_DEL after it and releases every port of that cluster, only.
 */
static void
test_cluster_down(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;
	unsigned pa, pb, px;

	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_API_SET, 0));
	assert_string_equal(d->cluster, "c1");
	assert_string_equal(d->cname, "prod");
	assert_string_equal(d->host, "api.c1.example.com");
	assert_int_equal(d->nmasters, 2);
	assert_string_equal(d->masters[1], "fd00::1");
	assert_int_equal(d->mport, 8443);
	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	assert_int_equal(run(f, &ev), 0);
	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	strcpy(ev.masters[1], "fd00::2");
	assert_int_equal(run(f, &ev), 1);
	assert_string_equal(decision(f, EV_API_SET, 0)->masters[1],
	    "fd00::2");

	pa = expose(f, "c1", "a", 0, f->now);
	pb = expose(f, "c1", "b", 0, f->now);
	px = expose(f, "c2", "x", 0, f->now);
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c1", f->now);
	assert_int_equal(run(f, &ev), 3);
	assert_int_equal(f->a.out[1].type, EV_API_DEL);
	assert_string_equal(f->a.out[1].cluster, "c1");
	assert_int_equal(ndecisions(f, EV_PORT_FREE), 2);
	assert_true((decision(f, EV_PORT_FREE, 0)->port == pa &&
	    decision(f, EV_PORT_FREE, 1)->port == pb) ||
	    (decision(f, EV_PORT_FREE, 0)->port == pb &&
	    decision(f, EV_PORT_FREE, 1)->port == pa));
	assert_int_equal(port_of(f, "c1", "a"), 0);
	assert_int_equal(port_of(f, "c1", "b"), 0);
	assert_int_equal(port_of(f, "c2", "x"), px);
	/* down again: nothing left to do */
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c1", f->now);
	assert_int_equal(run(f, &ev), 0);
	/* a cluster never up still has its ports released, without API_DEL */
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c2", f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_int_equal(decision(f, EV_PORT_FREE, 0)->port, px);
	/* up again: a fresh API_SET; its owners come back to their ports */
	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_API_SET, 0));
	assert_int_equal(expose(f, "c1", "a", 0, f->now + 1000), pa);
}

/*
 * APPLIED(gen) makes live every port set at or before gen, once; a repeat
 * of the same gen is not even logged; unknown proxies are ignored.
 */
static void
test_applied(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;
	uint64_t s, seq;
	unsigned p;

	p = expose(f, "c1", "a", 0, f->now);
	s = decision(f, EV_PORT_SET, 0)->seq;
	ev_applied(&ev, "haproxy", s - 1, f->now);
	assert_int_equal(run(f, &ev), 0);
	assert_int_equal(f->a.nout, 1);
	ev_applied(&ev, "haproxy", s, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_PORT_LIVE, 0));
	assert_int_equal(d->port, p);
	assert_string_equal(d->cluster, "c1");
	assert_string_equal(d->name, "a");
	/* the same gen again: 1, nothing logged */
	seq = f->a.seq;
	ev_applied(&ev, "haproxy", s, f->now);
	assert_int_equal(observe(f, &ev), 1);
	assert_int_equal(f->a.nout, 0);
	assert_true(f->a.seq == seq);
	ev_applied(&ev, "haproxy", s - 1, f->now);
	assert_int_equal(observe(f, &ev), 1);
	/* a later gen: logged, but a is live already */
	ev_applied(&ev, "haproxy", f->a.seq, f->now);
	assert_int_equal(observe(f, &ev), 0);
	assert_int_equal(f->a.nout, 1);
	/* a new backend list on the same port stays live */
	ev_expose(&ev, "c1", "a", "10.0.0.9", f->now);
	run(f, &ev);
	ev_applied(&ev, "haproxy", f->a.seq, f->now);
	assert_int_equal(run(f, &ev), 0);
	/* gone and back: live again only once applied again */
	unexpose(f, "c1", "a", f->now);
	assert_int_equal(expose(f, "c1", "a", 0, f->now), p);
	s = decision(f, EV_PORT_SET, 0)->seq;
	ev_applied(&ev, "haproxy", s, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_PORT_LIVE, 0));
	/* an unknown proxy */
	seq = f->a.seq;
	ev_applied(&ev, "nginx", s + 100, f->now);
	assert_int_equal(observe(f, &ev), 1);
	assert_true(f->a.seq == seq);
	/* and all of that survives a reopen */
	fx_reopen(f);
	ev_applied(&ev, "haproxy", s, f->now);
	assert_int_equal(observe(f, &ev), 1);
}

/* With two proxies, a port is live once both serve its generation. */
static void
test_applied_two_proxies(void **state)
{
	struct fx *f = *state;
	struct event ev;
	uint64_t s;

	f->conf.nproxies = 2;
	snprintf(f->conf.proxies[1].name, sizeof(f->conf.proxies[1].name),
	    "edge");
	expose(f, "c1", "a", 0, f->now);
	s = decision(f, EV_PORT_SET, 0)->seq;
	ev_applied(&ev, "haproxy", s + 5, f->now);
	assert_int_equal(run(f, &ev), 0);
	ev_applied(&ev, "edge", s - 1, f->now);
	assert_int_equal(run(f, &ev), 0);
	ev_applied(&ev, "edge", s, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_PORT_LIVE, 0));
}

struct collected {
	int		type[16];
	char		name[16][256];
	unsigned	port[16];
	size_t		n;
};

static int
collect(const struct event *ev, void *arg)
{
	struct collected *c = arg;

	assert_true(c->n < 16);
	c->type[c->n] = ev->type;
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s",
	    ev->type == EV_API_SET ? ev->cluster : ev->name);
	c->port[c->n++] = (unsigned)ev->port;
	return 0;
}

/*
 * The state a consumer is given when the log it asks for is compacted: the
 * clusters, the held ports (live ones said to be live), the standing
 * refusals; nothing of what only allocd needs (a quarantined port).  A
 * SNAPSHOT (where a compaction starts) changes none of that.
 */
static int
always(void *arg)
{
	(void)arg;
	return 1;
}

static void
test_state(void **state)
{
	struct fx *f = *state;
	struct collected c = { .n = 0 }, s = { .n = 0 };
	struct alloc_state_iter it;
	struct event ev;
	MDB_txn *txn;
	unsigned pa, pb, pd;
	size_t i;
	int rc, slices;

	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	run(f, &ev);
	pa = expose(f, "c1", "a", 0, f->now);
	ev_applied(&ev, "haproxy", f->a.seq, f->now);
	run(f, &ev);
	pb = expose(f, "c1", "b", 0, f->now);
	ev_expose(&ev, "c1", "c", "10.0.0.1", f->now);
	event_set_str(&ev, F_WHY, "no tcp route");
	run(f, &ev);
	pd = expose(f, "c1", "d", 0, f->now);
	unexpose(f, "c1", "d", f->now);

	event_init(&ev, EV_SNAPSHOT);
	ev.time = f->now;
	assert_int_equal(run(f, &ev), 0);
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_true(store_last_seq(&f->st, txn) == f->a.seq);
	assert_int_equal(alloc_state(&f->a, txn, collect, &c), 0);
	mdb_txn_abort(txn);

	assert_int_equal(c.n, 5);
	assert_int_equal(c.type[0], EV_API_SET);
	assert_string_equal(c.name[0], "c1");
	assert_int_equal(c.type[1], EV_PORT_SET);
	assert_string_equal(c.name[1], "a");
	assert_int_equal(c.port[1], pa);
	assert_int_equal(c.type[2], EV_PORT_LIVE);
	assert_int_equal(c.port[2], pa);
	assert_int_equal(c.type[3], EV_PORT_SET);
	assert_string_equal(c.name[3], "b");
	assert_int_equal(c.port[3], pb);
	assert_int_equal(c.type[4], EV_REFUSED);
	assert_string_equal(c.name[4], "c");

	/* a record a slice, the same state, in the same order */
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	alloc_state_begin(&it, txn);
	for (slices = 0; alloc_state_read(&f->a, &it, always, NULL) == 0;
	    slices++)
		assert_true(slices < 100);
	mdb_txn_abort(txn);		/* what is left is in memory */
	assert_true(slices >= 5);
	for (slices = 0; (rc = alloc_state_some(&it, collect, &s, always,
	    NULL)) == 0; slices++)
		assert_true(slices < 100);
	assert_int_equal(rc, 1);
	alloc_state_end(&it);
	assert_true(slices >= 4);
	assert_int_equal(s.n, c.n);
	for (i = 0; i < c.n; i++) {
		assert_int_equal(s.type[i], c.type[i]);
		assert_string_equal(s.name[i], c.name[i]);
		assert_int_equal(s.port[i], c.port[i]);
	}

	/* the next decisions carry on from the compacted log: d's claim too */
	assert_int_equal(expose(f, "c1", "d", 0, f->now), pd);
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_true(store_last_seq(&f->st, txn) == f->a.seq);
	mdb_txn_abort(txn);
}

/* APPLIED from haproxy serving gen, holding port held (0: none). */
static void
ev_status(struct event *ev, uint64_t gen, unsigned held, uint64_t fgen,
    const char *why, uint64_t time)
{
	ev_applied(ev, "haproxy", gen, time);
	if (held != 0)
		assert_int_equal(event_add_held(ev, held), 0);
	if (fgen != 0) {
		ev->fgen = fgen;
		ev->has |= F_FGEN;
		assert_int_equal(event_set_str(ev, F_WHY, why), 0);
	}
}

static void
assert_fault(const struct event *d, const char *name, unsigned port,
    const char *why)
{
	assert_non_null(d);
	assert_string_equal(d->name, name);
	assert_int_equal(d->port, port);
	if (why == NULL)
		assert_false(d->has & F_WHY);
	else
		assert_string_equal(d->why, why);
}

/*
 * A port another program holds on a proxy's host is not live there: no
 * address, and a PORT_FAULT that says why, once; let go, it goes live and
 * the fault is withdrawn.  A generation a proxy could not apply: the owners
 * waiting for it are told, until a later one serves them.  A standing fault
 * is part of the state.
 */
static void
test_proxy_faults(void **state)
{
	struct fx *f = *state;
	struct collected c = { .n = 0 };
	char why[256];
	struct event ev;
	MDB_txn *txn;
	uint64_t s, s2, seq;
	unsigned pa, pb, pc, pd;

	pa = expose(f, "c1", "a", 0, f->now);
	pb = expose(f, "c1", "b", 0, f->now);
	s = f->a.seq;
	ev_status(&ev, s, pb, 0, NULL, f->now);
	assert_int_equal(run(f, &ev), 2);
	assert_int_equal(decision(f, EV_PORT_LIVE, 0)->port, pa);
	assert_null(decision(f, EV_PORT_LIVE, 1));
	snprintf(why, sizeof(why), "port %u is held by another program on "
	    "proxy haproxy", pb);
	assert_fault(decision(f, EV_PORT_FAULT, 0), "b", pb, why);
	/* said once: the same status is not even logged */
	seq = f->a.seq;
	ev_status(&ev, s, pb, 0, NULL, f->now);
	assert_int_equal(observe(f, &ev), 1);
	event_free(&ev);
	assert_true(f->a.seq == seq);
	/* the fault stands in the state, after b's PORT_SET */
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_int_equal(alloc_state(&f->a, txn, collect, &c), 0);
	mdb_txn_abort(txn);
	assert_int_equal(c.n, 4);
	assert_int_equal(c.type[3], EV_PORT_FAULT);
	assert_string_equal(c.name[3], "b");
	assert_int_equal(c.port[3], pb);
	/* and across a reopen */
	fx_reopen(f);
	ev_status(&ev, s, pb, 0, NULL, f->now);
	assert_int_equal(observe(f, &ev), 1);
	event_free(&ev);
	/* let go: live, and the fault withdrawn */
	ev_status(&ev, s, 0, 0, NULL, f->now);
	assert_int_equal(run(f, &ev), 2);
	assert_int_equal(decision(f, EV_PORT_LIVE, 0)->port, pb);
	assert_fault(decision(f, EV_PORT_FAULT, 0), "b", pb, NULL);

	/* c waits for a generation that failed; a and b are not concerned */
	pc = expose(f, "c1", "c", 0, f->now);
	s2 = f->a.seq;
	ev_status(&ev, s, 0, s2, "reload failed", f->now);
	assert_int_equal(run(f, &ev), 1);
	snprintf(why, sizeof(why), "proxy haproxy cannot apply its "
	    "configuration (reload failed); port %u is not served yet", pc);
	assert_fault(decision(f, EV_PORT_FAULT, 0), "c", pc, why);
	/* another reason: said again */
	ev_status(&ev, s, 0, s2, "haproxy -c refused it", f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(strstr(decision(f, EV_PORT_FAULT, 0)->why,
	    "(haproxy -c refused it)"));
	/* served: live, fault withdrawn */
	ev_status(&ev, s2, 0, 0, NULL, f->now);
	assert_int_equal(run(f, &ev), 2);
	assert_int_equal(decision(f, EV_PORT_LIVE, 0)->port, pc);
	assert_fault(decision(f, EV_PORT_FAULT, 0), "c", pc, NULL);

	/* a fault on an owner that goes is forgotten with it */
	ev_status(&ev, s2, pa, 0, NULL, f->now);
	assert_int_equal(run(f, &ev), 1);
	unexpose(f, "c1", "a", f->now);
	c.n = 0;
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_int_equal(alloc_state(&f->a, txn, collect, &c), 0);
	mdb_txn_abort(txn);
	for (seq = 0; seq < c.n; seq++)
		assert_int_not_equal(c.type[seq], EV_PORT_FAULT);
	ev_status(&ev, f->a.seq, 0, 0, NULL, f->now);
	assert_int_equal(run(f, &ev), 0);	/* nothing to withdraw */

	/* restarted, and its proxy would not start: an older gen, heard */
	pd = expose(f, "c1", "d", 0, f->now);
	ev_status(&ev, 0, 0, f->a.seq, "start failed", f->now);
	assert_int_equal(run(f, &ev), 1);
	snprintf(why, sizeof(why), "proxy haproxy cannot apply its "
	    "configuration (start failed); port %u is not served yet", pd);
	assert_fault(decision(f, EV_PORT_FAULT, 0), "d", pd, why);
	/* started after all, at gen 1: the fault is withdrawn, d waits */
	ev_status(&ev, 1, 0, 0, NULL, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_fault(decision(f, EV_PORT_FAULT, 0), "d", pd, NULL);
	/* an older gen that says no failure is stale: not logged */
	ev_status(&ev, 0, 0, 0, NULL, f->now);
	assert_int_equal(observe(f, &ev), 1);
	event_free(&ev);
}

/*
 * The owners not live yet are indexed, so that an APPLIED looks at them
 * only.  A store from before the index (no index, no mark) gets it built
 * by its first APPLIED, and nobody waiting is forgotten.
 */
static void
test_unlive_index(void **state)
{
	struct fx *f = *state;
	MDB_val key = { strlen("unlive.indexed"), (void *)"unlive.indexed" };
	MDB_cursor *cur;
	MDB_val k, v;
	struct event ev;
	MDB_txn *txn;
	uint64_t s;
	int n = 0;

	expose(f, "c1", "a", 0, f->now);
	expose(f, "c1", "b", 0, f->now);
	s = f->a.seq;
	ev_applied(&ev, "haproxy", 1, f->now);	/* serves neither yet */
	assert_int_equal(run(f, &ev), 0);
	/* as an older allocd left it: no index */
	assert_int_equal(store_begin(&f->st, &txn, 0), 0);
	assert_int_equal(mdb_cursor_open(txn, f->st.meta, &cur), 0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		if (k.mv_size > 7 && memcmp(k.mv_data, "unlive/", 7) == 0) {
			assert_int_equal(mdb_cursor_del(cur, 0), 0);
			n++;
		}
	mdb_cursor_close(cur);
	assert_int_equal(n, 2);
	assert_int_equal(mdb_del(txn, f->st.meta, &key, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	fx_reopen(f);
	ev_applied(&ev, "haproxy", s, f->now);
	assert_int_equal(run(f, &ev), 2);
	assert_string_equal(decision(f, EV_PORT_LIVE, 0)->name, "a");
	assert_string_equal(decision(f, EV_PORT_LIVE, 1)->name, "b");
	/* live ones leave the index; a new one joins it */
	expose(f, "c1", "c", 0, f->now);
	ev_applied(&ev, "haproxy", f->a.seq, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_string_equal(decision(f, EV_PORT_LIVE, 0)->name, "c");
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_int_equal(mdb_cursor_open(txn, f->st.meta, &cur), 0);
	for (n = 0; mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0; )
		n += k.mv_size > 7 && memcmp(k.mv_data, "unlive/", 7) == 0;
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	assert_int_equal(n, 0);
}

/* The log holds exactly seqs 1..a.seq, in order, each the event queued. */
static void
test_log(void **state)
{
	struct fx *f = *state;
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val key, val;
	struct event ev;
	char err[128];
	uint64_t n = 0;
	int op;

	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	run(f, &ev);
	expose(f, "c1", "a", 0, f->now);
	expose(f, "c1", "b", LO + 3, f->now);
	expose(f, "c1", "c", LO + 3, f->now);
	ev_applied(&ev, "haproxy", f->a.seq, f->now);
	run(f, &ev);
	ev_applied(&ev, "haproxy", f->a.seq - 1, f->now);
	observe(f, &ev);
	fx_reopen(f);
	unexpose(f, "c1", "a", f->now);
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c1", f->now);
	run(f, &ev);
	assert_true(f->a.seq > 10);

	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_true(store_last_seq(&f->st, txn) == f->a.seq);
	assert_int_equal(mdb_cursor_open(txn, f->st.log, &cur), 0);
	for (op = MDB_FIRST; mdb_cursor_get(cur, &key, &val, op) == 0;
	    op = MDB_NEXT) {
		n++;
		assert_int_equal(key.mv_size, 8);
		assert_true(store_u64_key(key.mv_data) == n);
		if (event_decode(&ev, val.mv_data, val.mv_size, err,
		    sizeof(err)) != 0)
			fail_msg("seq %llu: %s", (unsigned long long)n, err);
		assert_true(ev.seq == n);
		assert_int_equal(ev.type, f->logged[n]);
		event_free(&ev);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	assert_true(n == f->a.seq);
}

/*
 * An exposed owner that is seen during a sync keeps its port at SYNC_END,
 * whatever else its observation says.
 *
 * Regression (found in allocd/alloc.c, fixed): on_route sets rec.seen_sid
 * in memory only; when the route is refused with the same reason as last
 * time (a `want` that is still "is taken" someone, or the same F_WHY),
 * refuse() returns early without put_owner, so the stored seen_sid stays
 * old and SYNC_END releases an owner the sync did see: PORT_FREE for a
 * route that never went away.
 */
static void
test_sync_keeps_refused_want(void **state)
{
	struct fx *f = *state;
	struct event ev;
	unsigned pa, pb;

	pa = expose(f, "c1", "a", 0, f->now);
	pb = expose(f, "c1", "b", 0, f->now);
	assert_int_equal(expose(f, "c1", "a", pb, f->now), 0);
	assert_refused(f, "a", "is taken");
	ev_sync(&ev, EV_SYNC_BEGIN, "c1", 9, f->now);
	run(f, &ev);
	assert_int_equal(expose(f, "c1", "a", pb, f->now), 0);
	assert_int_equal(expose(f, "c1", "b", 0, f->now), 0);
	ev_sync(&ev, EV_SYNC_END, "c1", 9, f->now);
	run(f, &ev);
	assert_null(decision(f, EV_PORT_FREE, 0));
	assert_int_equal(port_of(f, "c1", "a"), pa);
}

/*
 * An owner whose port is quarantined for it keeps that claim when it asks,
 * in vain, for another port: back without `want`, it gets its old port.
 *
 * Regression (found in allocd/alloc.c, fixed): a refused `want` sets
 * rec.state = OWN_REFUSED even for an OWN_QUARANTINED owner.  The owner
 * then no longer takes the "coming back within quarantine" branch (490-492)
 * but port_pick's hash probe, which may land elsewhere, while its old port
 * stays quarantined in its name; a ROUTE_GONE in between even deletes the
 * record (release(), 420-422).  Here: a moves to w by want, goes, asks for a
 * port outside the range, and comes back within quarantine to its hash
 * port h instead of w.
 */
static void
test_refused_want_keeps_quarantine(void **state)
{
	struct fx *f = *state;
	unsigned h, w;

	h = expose(f, "c1", "a", 0, f->now);
	w = h == HI ? LO : h + 1;
	assert_int_equal(expose(f, "c1", "a", w, f->now), w);
	unexpose(f, "c1", "a", f->now);
	assert_int_equal(expose(f, "c1", "a", HI + 1, f->now + 1000), 0);
	assert_refused(f, "a", "outside");
	assert_int_equal(expose(f, "c1", "a", 0, f->now + 2000), w);
}

/*
 * A sync releases what it did not see even when its sid was used before.
 *
 * Regression (found in allocd/alloc.c, fixed): "seen" was
 * rec.seen_sid == sid, and every ROUTE stored the cluster's
 * current sid, so an owner seen under an earlier sync with the same number
 * counts as seen.  watcherd's sid_counter is a static starting at 0, so
 * after a watcherd restart the sids 1, 2, ... come again and a resync keeps
 * routes that no longer exist.  Either allocd should mark a sync with
 * something of its own (the SYNC_BEGIN's seq), or watcherd should never
 * reuse a sid (seed it from the clock).
 */
static void
test_sync_sid_reused(void **state)
{
	struct fx *f = *state;
	struct event ev;
	unsigned pb;

	expose(f, "c1", "a", 0, f->now);
	pb = expose(f, "c1", "b", 0, f->now);
	ev_sync(&ev, EV_SYNC_BEGIN, "c1", 1, f->now);
	run(f, &ev);
	expose(f, "c1", "a", 0, f->now);
	expose(f, "c1", "b", 0, f->now);
	ev_sync(&ev, EV_SYNC_END, "c1", 1, f->now);
	assert_int_equal(run(f, &ev), 0);
	/* watcherd restarts; b is gone from the cluster meanwhile */
	ev_sync(&ev, EV_SYNC_BEGIN, "c1", 1, f->now);
	run(f, &ev);
	expose(f, "c1", "a", 0, f->now);
	ev_sync(&ev, EV_SYNC_END, "c1", 1, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_PORT_FREE, 0));
	assert_int_equal(decision(f, EV_PORT_FREE, 0)->port, pb);
}

/* Property test. */

#define PCL	3
#define POW	8
#define PN	(PCL * POW)
#define PLO	20000
#define PHI	20011
#define PAPI	20005
#define PSTEPS	2000

static uint64_t rng;

static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

static unsigned
rndn(unsigned n)
{
	return (unsigned)(rnd() % n);
}

struct model {
	char		 key[PN][EV_OWNERLEN];
	unsigned	 held[PN];	/* from PORT_SET/PORT_FREE */
	unsigned	 last[PN];	/* last port set */
	uint64_t	 freed_at[PN];	/* when last freed, 0 never */
	int		 exposed[PN];	/* what the world says */
	unsigned	 want[PN];
	int		 pfree_by[PHI - PLO + 1];	/* -1: nobody */
	uint64_t	 pfree_at[PHI - PLO + 1];
	uint64_t	 sync_sid[PCL];	/* 0 when none open */
	int		 seen[PN];
	uint64_t	 next_sid;
	unsigned long	 nset, nfree, nrefused, nlive, nmoves;
	unsigned long	 step;
	unsigned long long seed;
};

#define VIOLATION(m, ...) do {						\
	print_error("seed %llu step %lu: ", (m)->seed, (m)->step);	\
	fail_msg(__VA_ARGS__);						\
} while (0)

static int
model_owner(struct model *m, const struct event *d)
{
	char k[EV_OWNERLEN];
	int i;

	assert_int_equal(event_owner(d, k, sizeof(k)), 0);
	for (i = 0; i < PN; i++)
		if (strcmp(m->key[i], k) == 0)
			return i;
	fail_msg("decision for unknown owner %s", k);
	return -1;
}

static void
pname(char *buf, size_t len, int o)
{
	snprintf(buf, len, "o%d", o % POW);
}

static const char *
pcluster(int o)
{
	static const char *cl[PCL] = { "c0", "c1", "c2" };

	return cl[o / POW];
}

/* With PORTICO_TRACE set, print each observation and its decisions. */
/* A port owner o could have at now, by the model; 0 if none. */
static unsigned
model_free_port(const struct model *m, int o, uint64_t now)
{
	unsigned p;
	int x, held;

	for (p = PLO; p <= PHI; p++) {
		for (x = 0, held = p == PAPI; x < PN && !held; x++)
			held = m->held[x] == p;
		if (!held && (m->pfree_by[p - PLO] < 0 ||
		    m->pfree_by[p - PLO] == o ||
		    now >= m->pfree_at[p - PLO] + QMS))
			return p;
	}
	return 0;
}

static void
trace(struct model *m, struct fx *f)
{
	static int on = -1;
	json_t *j;
	char *s;
	size_t k;

	if (on == -1)
		on = getenv("PORTICO_TRACE") != NULL;
	if (!on)
		return;
	for (k = 0; k < f->a.nout; k++) {
		j = event_json(&f->a.out[k]);
		s = json_dumps(j, JSON_COMPACT);
		printf("%lu %s%s\n", m->step, k ? "  -> " : "", s);
		free(s);
		json_decref(j);
	}
}

/* Check the decisions of the last observation obs against the model. */
static void
model_apply(struct model *m, struct fx *f, const struct event *obs)
{
	const struct event *d;
	int obs_o = -1, o, i;
	size_t k;
	unsigned p;

	trace(m, f);

	if (obs->type == EV_ROUTE || obs->type == EV_ROUTE_GONE)
		obs_o = model_owner(m, obs);
	if (obs->type == EV_ROUTE && m->sync_sid[obs_o / POW] != 0)
		m->seen[obs_o] = 1;
	for (k = 1; k < f->a.nout; k++) {
		d = &f->a.out[k];
		switch (d->type) {
		case EV_PORT_SET:
			o = model_owner(m, d);
			p = (unsigned)d->port;
			m->nset++;
			if (p < PLO || p > PHI || p == PAPI)
				VIOLATION(m, "port %u set", p);
			if (obs->type != EV_ROUTE || o != obs_o)
				VIOLATION(m, "PORT_SET for %s by %s",
				    m->key[o], event_name(obs->type));
			if (m->held[o] != 0 && m->held[o] != p)
				VIOLATION(m, "%s moved %u -> %u without "
				    "a free", m->key[o], m->held[o], p);
			for (i = 0; i < PN; i++)
				if (i != o && m->held[i] == p)
					VIOLATION(m, "port %u given to %s "
					    "while %s holds it", p, m->key[o],
					    m->key[i]);
			if (m->pfree_by[p - PLO] >= 0 &&
			    m->pfree_by[p - PLO] != o &&
			    obs->time < m->pfree_at[p - PLO] + QMS)
				VIOLATION(m, "port %u given to %s %llu ms "
				    "into %s's quarantine", p, m->key[o],
				    (unsigned long long)(obs->time -
				    m->pfree_at[p - PLO]),
				    m->key[m->pfree_by[p - PLO]]);
			if (m->held[o] == 0 && !(obs->has & F_WANT) &&
			    m->freed_at[o] != 0 &&
			    obs->time < m->freed_at[o] + QMS &&
			    p != m->last[o])
				VIOLATION(m, "%s came back within its "
				    "quarantine to %u, not %u", m->key[o], p,
				    m->last[o]);
			if (m->held[o] == 0 && m->last[o] != 0 &&
			    m->last[o] != p)
				m->nmoves++;
			m->held[o] = p;
			m->last[o] = p;
			m->pfree_by[p - PLO] = -1;
			break;
		case EV_PORT_FREE:
			o = model_owner(m, d);
			p = (unsigned)d->port;
			m->nfree++;
			if (m->held[o] != p)
				VIOLATION(m, "%s freed %u holding %u",
				    m->key[o], p, m->held[o]);
			if (!((obs->type == EV_ROUTE_GONE && o == obs_o) ||
			    (obs->type == EV_ROUTE && o == obs_o &&
			    (obs->has & F_WANT)) ||
			    (obs->type == EV_CLUSTER_DOWN &&
			    strcmp(obs->cluster, d->cluster) == 0) ||
			    (obs->type == EV_SYNC_END &&
			    strcmp(obs->cluster, d->cluster) == 0 &&
			    m->sync_sid[o / POW] == obs->sid &&
			    !m->seen[o])))
				VIOLATION(m, "%s lost port %u to %s",
				    m->key[o], p, event_name(obs->type));
			m->held[o] = 0;
			m->freed_at[o] = obs->time;
			m->pfree_by[p - PLO] = o;
			m->pfree_at[p - PLO] = obs->time;
			break;
		case EV_REFUSED:
			o = model_owner(m, d);
			m->nrefused++;
			if (obs->type != EV_ROUTE || o != obs_o ||
			    (m->held[o] != 0 &&
			    !(obs->has & (F_WANT | F_WHY))))
				VIOLATION(m, "REFUSED %s (%s) by %s",
				    m->key[o], d->why, event_name(obs->type));
			if (strstr(d->why, "no free port") != NULL &&
			    (p = model_free_port(m, o, obs->time)) != 0)
				VIOLATION(m, "%s refused while port %u was "
				    "free", m->key[o], p);
			break;
		case EV_PORT_LIVE:
			o = model_owner(m, d);
			m->nlive++;
			if (obs->type != EV_APPLIED || m->held[o] != d->port)
				VIOLATION(m, "PORT_LIVE %s %u holding %u",
				    m->key[o], (unsigned)d->port, m->held[o]);
			break;
		case EV_API_SET:
			if (obs->type != EV_CLUSTER_UP)
				VIOLATION(m, "API_SET by %s",
				    event_name(obs->type));
			break;
		case EV_API_DEL:
			if (obs->type != EV_CLUSTER_DOWN)
				VIOLATION(m, "API_DEL by %s",
				    event_name(obs->type));
			break;
		default:
			VIOLATION(m, "decision %s", event_name(d->type));
		}
	}
	/* after the sync's end, all it did not see is released */
	if (obs->type == EV_SYNC_END) {
		int c = obs->cluster[1] - '0';

		if (m->sync_sid[c] == obs->sid) {
			for (o = c * POW; o < (c + 1) * POW; o++)
				if (!m->seen[o] && m->held[o] != 0)
					VIOLATION(m, "%s unseen by sync %llu "
					    "but kept", m->key[o],
					    (unsigned long long)obs->sid);
			m->sync_sid[c] = 0;
		}
	}
	if (obs->type == EV_CLUSTER_DOWN)
		m->sync_sid[obs->cluster[1] - '0'] = 0;
	if (obs->type == EV_SYNC_BEGIN) {
		int c = obs->cluster[1] - '0';

		m->sync_sid[c] = obs->sid;
		for (o = c * POW; o < (c + 1) * POW; o++)
			m->seen[o] = 0;
	}
}

/*
 * The waiting index (meta "wait/") holds exactly the owners refused for
 * want of a port, each under the seq its record says it waits since.
 */
static void
model_check_waiting(struct model *m, struct fx *f, MDB_txn *txn)
{
	char k[STORE_WAIT_KEYLEN];
	struct owner_rec rec;
	MDB_cursor *cur;
	MDB_val key, val, wk, ev;
	int op, nwaiting = 0, nkeys = 0;

	assert_int_equal(mdb_cursor_open(txn, f->st.owners, &cur), 0);
	for (op = MDB_FIRST; mdb_cursor_get(cur, &key, &val, op) == 0;
	    op = MDB_NEXT) {
		assert_int_equal(store_owner_decode(&val, &rec, &ev), 0);
		if (rec.state != OWN_REFUSED || !rec.waiting)
			continue;
		nwaiting++;
		assert_int_equal(store_wait_key(&wk, k, sizeof(k),
		    rec.set_seq, key.mv_data, key.mv_size), 0);
		if (store_meta_get(&f->st, txn, &wk, &ev) != 0)
			VIOLATION(m, "%.*s waits, not in the index",
			    (int)key.mv_size, (char *)key.mv_data);
	}
	mdb_cursor_close(cur);
	assert_int_equal(mdb_cursor_open(txn, f->st.meta, &cur), 0);
	key.mv_size = strlen(STORE_META_WAIT);
	key.mv_data = STORE_META_WAIT;
	for (op = MDB_SET_RANGE; mdb_cursor_get(cur, &key, &val, op) == 0 &&
	    key.mv_size > 5 && memcmp(key.mv_data, STORE_META_WAIT, 5) == 0;
	    op = MDB_NEXT)
		nkeys++;
	mdb_cursor_close(cur);
	if (nkeys != nwaiting)
		VIOLATION(m, "%d owners wait, %d in the index", nwaiting,
		    nkeys);
}

/* The tables agree with the model: no port held twice, none lost. */
static void
model_check_tables(struct model *m, struct fx *f)
{
	unsigned char owners_of[PHI - PLO + 1] = { 0 };
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val key, val, holder;
	char k[EV_OWNERLEN];
	unsigned p;
	uint64_t released;
	int op, o, nheld = 0;

	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	for (o = 0; o < PN; o++) {
		assert_int_equal(alloc_port_of(&f->a, txn, m->key[o], &p), 0);
		if (p != m->held[o])
			VIOLATION(m, "%s: table says %u, decisions %u",
			    m->key[o], p, m->held[o]);
		if (p != 0) {
			nheld++;
			if (owners_of[p - PLO]++ != 0)
				VIOLATION(m, "port %u held twice", p);
		}
	}
	/* ports: port -> when released (0 while held) and owner (store.h) */
	assert_int_equal(mdb_cursor_open(txn, f->st.ports, &cur), 0);
	for (op = MDB_FIRST; mdb_cursor_get(cur, &key, &val, op) == 0;
	    op = MDB_NEXT) {
		assert_int_equal(store_port_decode(&key, &val, &p, &released,
		    &holder), 0);
		if (p < PLO || p > PHI || p == PAPI)
			VIOLATION(m, "ports table has %u", p);
		assert_true(holder.mv_size < sizeof(k));
		memcpy(k, holder.mv_data, holder.mv_size);
		k[holder.mv_size] = '\0';
		if (released == 0) {
			nheld--;
			for (o = 0; o < PN; o++)
				if (strcmp(m->key[o], k) == 0)
					break;
			if (o == PN || m->held[o] != p)
				VIOLATION(m, "ports table: %u held by %s", p,
				    k);
		}
	}
	mdb_cursor_close(cur);
	model_check_waiting(m, f, txn);
	mdb_txn_abort(txn);
	if (nheld != 0)
		VIOLATION(m, "%d held ports missing from the ports table",
		    nheld);
}

/* One ROUTE for owner o as the world sees it, observed and checked. */
static void
prop_route(struct model *m, struct fx *f, int o, uint64_t now)
{
	static const char *ips[] = { "10.0.0.1", "10.0.0.2", "fd00::1" };
	struct event ev;
	char name[16];
	unsigned i, n;

	pname(name, sizeof(name), o);
	ev_route(&ev, EV_ROUTE, pcluster(o), name, now);
	ev.has |= F_BACKENDS;
	n = rndn(4) == 0 ? rndn(4) : 1;
	for (i = 0; i < n; i++)
		assert_int_equal(event_add_backend(&ev, ips[rndn(3)],
		    30000 + rndn(2), rndn(3) == 0 ? rndn(257) : 1), 0);
	if (m->want[o]) {
		ev.want = m->want[o];
		ev.has |= F_WANT;
	}
	if (rndn(40) == 0) {
		snprintf(ev.why, sizeof(ev.why), "bad annotation %u",
		    rndn(2));
		ev.has |= F_WHY;
	}
	observe(f, &ev);
	model_apply(m, f, &ev);
	event_free(&ev);
	m->exposed[o] = 1;
}

static void
prop_other(struct model *m, struct fx *f, struct event *ev)
{
	observe(f, ev);
	model_apply(m, f, ev);
	event_free(ev);
}

/*
 * 2,000 random steps over 3 clusters of 8 owners and a 12-port range: after
 * each, no port is held twice, an exposed owner never moves unless it asked,
 * a quarantined port never goes to another owner early, and the tables
 * agree with the decisions.  PORTICO_SEED=n replays a run, PORTICO_TRACE=1
 * prints every observation and decision.
 */
static void
test_property(void **state)
{
	struct fx *f = *state;
	struct model *m;
	struct event ev;
	const char *env;
	char name[16];
	int o, c, i;
	unsigned r;

	assert_non_null(m = calloc(1, sizeof(*m)));
	f->model = m;
	if ((env = getenv("PORTICO_SEED")) != NULL)
		m->seed = strtoull(env, NULL, 10);
	else
		m->seed = (unsigned long long)time(NULL) ^
		    ((unsigned long long)getpid() << 20);
	if (m->seed == 0)
		m->seed = 1;
	rng = m->seed;
	printf("[ SEED     ] PORTICO_SEED=%llu\n", m->seed);
	fflush(stdout);

	f->conf.port_lo = PLO;
	f->conf.port_hi = PHI;
	f->conf.ports.n = 1;
	f->conf.ports.r[0].lo = PLO;
	f->conf.ports.r[0].hi = PHI;
	f->conf.api_port = PAPI;
	for (o = 0; o < PN; o++) {
		pname(name, sizeof(name), o);
		snprintf(m->key[o], sizeof(m->key[o]), "%s/default/%s/1",
		    pcluster(o), name);
	}
	for (i = 0; i <= PHI - PLO; i++)
		m->pfree_by[i] = -1;
	m->next_sid = 100;

	for (m->step = 0; m->step < PSTEPS; m->step++) {
		/* time: mostly seconds, sometimes across a quarantine */
		r = rndn(100);
		if (r < 5)
			f->now += QMS + rndn(30000);
		else if (r < 15)
			f->now += QMS / 2 + rndn(20000);
		else
			f->now += rndn(3000);
		o = (int)rndn(PN);
		c = (int)rndn(PCL);
		r = rndn(100);
		if (r < 40) {				/* expose */
			if (rndn(6) == 0)
				m->want[o] = PLO - 1 + rndn(PHI - PLO + 3);
			else if (rndn(4) == 0)
				m->want[o] = 0;
			prop_route(m, f, o, f->now);
		} else if (r < 60) {			/* unexpose */
			pname(name, sizeof(name), o);
			ev_route(&ev, EV_ROUTE_GONE, pcluster(o), name,
			    f->now);
			prop_other(m, f, &ev);
			m->exposed[o] = 0;
			m->want[o] = 0;
		} else if (r < 67) {			/* sync begin */
			ev_sync(&ev, EV_SYNC_BEGIN, pcluster(c * POW),
			    ++m->next_sid, f->now);
			prop_other(m, f, &ev);
		} else if (r < 75) {			/* sync routes */
			for (o = c * POW; o < (c + 1) * POW; o++)
				if (m->exposed[o] && rndn(5) != 0)
					prop_route(m, f, o, f->now);
		} else if (r < 81) {			/* sync end */
			uint64_t sid = m->sync_sid[c];

			if (sid == 0 && rndn(4) != 0)
				continue;
			if (sid == 0 || rndn(5) == 0)
				sid = m->next_sid + 1 + rndn(3);
			ev_sync(&ev, EV_SYNC_END, pcluster(c * POW), sid,
			    f->now);
			prop_other(m, f, &ev);
		} else if (r < 84) {			/* cluster down */
			ev_cluster(&ev, EV_CLUSTER_DOWN, pcluster(c * POW),
			    f->now);
			prop_other(m, f, &ev);
			for (o = c * POW; o < (c + 1) * POW; o++) {
				m->exposed[o] = 0;
				m->want[o] = 0;
			}
		} else if (r < 89) {			/* cluster up */
			ev_cluster(&ev, EV_CLUSTER_UP, pcluster(c * POW),
			    f->now);
			if (rndn(2))
				strcpy(ev.masters[0], "10.1.0.2");
			prop_other(m, f, &ev);
		} else if (r < 95) {			/* applied */
			uint64_t g = f->a.seq > 20 ? f->a.seq - rndn(20) :
			    f->a.seq;

			ev_applied(&ev, rndn(10) ? "haproxy" : "nginx", g,
			    f->now);
			prop_other(m, f, &ev);
		} else if (r < 97) {			/* reopen */
			fx_reopen(f);
			alloc_clear(&f->a);
		} else if (r < 98) {			/* compact */
			event_init(&ev, EV_SNAPSHOT);
			ev.time = f->now;
			prop_other(m, f, &ev);
		} else {			/* many at once, same instant */
			for (i = 0; i < 6; i++) {
				o = (int)rndn(PN);
				prop_route(m, f, o, f->now);
			}
		}
		model_check_tables(m, f);
	}
	print_message("[ STATS    ] %lu sets, %lu frees, %lu refusals, "
	    "%lu live, %lu owners back on another port, seq %llu\n",
	    m->nset, m->nfree, m->nrefused, m->nlive, m->nmoves,
	    (unsigned long long)f->a.seq);
	/* enough happened for the run to mean something */
	assert_true(m->nset > 100 && m->nfree > 100 && m->nrefused > 10);
}


/* A CLUSTER_UP of c claiming host. */
static void
ev_claim(struct event *ev, const char *c, const char *host, uint64_t t)
{
	ev_cluster(ev, EV_CLUSTER_UP, c, t);
	assert_int_equal(event_set_str(ev, F_HOST, host), 0);
}

/*
 * A host is one cluster's: the first to claim it keeps it across a
 * restart; a newcomer is not routed, and takes the host only when the
 * holder lets it go.
 */
static void
test_host_first_holder(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;

	ev_claim(&ev, "c1", "prod.example.com", f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_string_equal(decision(f, EV_API_SET, 0)->host,
	    "prod.example.com");
	/* the impostor: nothing routed, however often it says so */
	ev_claim(&ev, "c2", "prod.example.com", f->now);
	assert_int_equal(run(f, &ev), 0);
	fx_reopen(f);
	ev_claim(&ev, "c2", "prod.example.com", f->now);
	assert_int_equal(run(f, &ev), 0);
	/* the holder changes its masters: still its own */
	ev_claim(&ev, "c1", "prod.example.com", f->now);
	strcpy(ev.masters[0], "10.1.0.9");
	assert_int_equal(run(f, &ev), 1);
	assert_string_equal(decision(f, EV_API_SET, 0)->cluster, "c1");
	/* a third waits behind the second */
	ev_claim(&ev, "c3", "prod.example.com", f->now);
	assert_int_equal(run(f, &ev), 0);
	/* the holder goes: the first waiting claim is routed */
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c1", f->now);
	assert_int_equal(run(f, &ev), 2);
	assert_string_equal(decision(f, EV_API_DEL, 0)->cluster, "c1");
	assert_non_null(d = decision(f, EV_API_SET, 0));
	assert_string_equal(d->cluster, "c2");
	assert_string_equal(d->host, "prod.example.com");
	/* and the old holder back is a newcomer now */
	ev_claim(&ev, "c1", "prod.example.com", f->now);
	assert_int_equal(run(f, &ev), 0);
	/* the waiting one that goes is forgotten: c1 is next, not c3 */
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c3", f->now);
	assert_int_equal(run(f, &ev), 0);
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c2", f->now);
	assert_int_equal(run(f, &ev), 2);
	assert_string_equal(decision(f, EV_API_SET, 0)->cluster, "c1");
}

/*
 * A cluster whose masters are where the proxies must not send traffic is
 * not routed; one routed already keeps its route.
 */
static void
test_host_bad_masters(void **state)
{
	struct fx *f = *state;
	struct event ev;

	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	strcpy(ev.masters[1], "169.254.169.254");
	assert_int_equal(run(f, &ev), 0);
	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	assert_int_equal(run(f, &ev), 1);
	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	strcpy(ev.masters[0], "127.0.0.1");
	assert_int_equal(run(f, &ev), 0);
	/* allowed by a range */
	assert_int_equal(addr_nets_parse("127.0.0.0/8",
	    &f->conf.allow_backends), 0);
	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	strcpy(ev.masters[0], "127.0.0.1");
	assert_int_equal(run(f, &ev), 1);
	assert_string_equal(decision(f, EV_API_SET, 0)->masters[0],
	    "127.0.0.1");
}

/* A holder that moves to another host lets go of the first. */
static void
test_host_moves(void **state)
{
	struct fx *f = *state;
	struct event ev;

	ev_claim(&ev, "c1", "a.example.com", f->now);
	run(f, &ev);
	ev_claim(&ev, "c2", "a.example.com", f->now);
	assert_int_equal(run(f, &ev), 0);
	ev_claim(&ev, "c1", "b.example.com", f->now);
	assert_int_equal(run(f, &ev), 2);
	assert_string_equal(decision(f, EV_API_SET, 0)->cluster, "c2");
	assert_string_equal(decision(f, EV_API_SET, 0)->host, "a.example.com");
	assert_string_equal(decision(f, EV_API_SET, 1)->cluster, "c1");
	assert_string_equal(decision(f, EV_API_SET, 1)->host, "b.example.com");
}

/* A route naming backend ip: refused saying s, or (s NULL) given a port. */
static void
backend_is(struct fx *f, const char *name, const char *ip, const char *s)
{
	struct event ev;

	ev_expose(&ev, "c1", name, ip, f->now);
	run(f, &ev);
	if (s != NULL)
		assert_refused(f, name, s);
	else
		assert_non_null(decision(f, EV_PORT_SET, 0));
}

/*
 * Backends that would turn a public port into a way into the proxy's host
 * or its network are refused, naming the address and what it is, unless
 * a range allows them; a proxy's own address never.
 */
static void
test_backend_classes(void **state)
{
	struct fx *f = *state;
	struct event ev;
	unsigned p;

	backend_is(f, "a", "127.0.0.1", "backend 127.0.0.1 is loopback");
	backend_is(f, "a", "::1", "backend ::1 is loopback");
	backend_is(f, "a", "::ffff:127.0.0.2", "is loopback");
	backend_is(f, "a", "0.0.0.0", "backend 0.0.0.0 is unspecified");
	backend_is(f, "a", "::", "backend :: is unspecified");
	backend_is(f, "a", "169.254.169.254",
	    "backend 169.254.169.254 is link-local");
	backend_is(f, "a", "fe80::1", "is link-local");
	backend_is(f, "a", "224.0.0.1", "is multicast");
	backend_is(f, "a", "ff02::1", "is multicast");
	backend_is(f, "a", "255.255.255.255", "is broadcast");
	assert_int_equal(port_of(f, "c1", "a"), 0);
	/* one bad backend among good ones: refused whole */
	ev_expose(&ev, "c1", "a", "10.0.0.1", f->now);
	assert_int_equal(event_add_backend(&ev, "169.254.169.254", 80, 1), 0);
	run(f, &ev);
	assert_refused(f, "a", "169.254.169.254 is link-local");
	/* allowed explicitly */
	assert_int_equal(addr_nets_parse("127.0.0.0/8, fe80::/64",
	    &f->conf.allow_backends), 0);
	backend_is(f, "a", "127.0.0.1", NULL);
	backend_is(f, "b", "fe80::1", NULL);
	backend_is(f, "c", "fe80:0:0:1::1", "is link-local");
	/* a proxy's own address, even inside an allowed range */
	strcpy(f->conf.proxies[0].listen, "127.0.0.9");
	backend_is(f, "d", "127.0.0.9",
	    "backend 127.0.0.9 is the address proxy haproxy listens on");
	/* a held route asking for a bad backend keeps its port and list */
	p = port_of(f, "c1", "a");
	backend_is(f, "a", "127.0.0.9", "listens on");
	assert_int_equal(port_of(f, "c1", "a"), p);
	backend_is(f, "a", "10.0.0.7", NULL);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->port, p);
}

/*
 * One cluster's ports are bounded: past its quota its routes are refused,
 * portico.dev/port requests included, while another cluster's still get
 * theirs; a port let go makes room again.
 */
static void
test_limit_ports(void **state)
{
	struct fx *f = *state;

	f->conf.lim_ports = 3;
	assert_int_not_equal(expose(f, "c1", "a", 0, f->now), 0);
	assert_int_not_equal(expose(f, "c1", "b", 0, f->now), 0);
	assert_int_not_equal(expose(f, "c1", "c", LO + 9, f->now), 0);
	assert_int_equal(expose(f, "c1", "d", 0, f->now), 0);
	assert_refused(f, "d", "the cluster holds 3 ports, its quota");
	assert_int_equal(expose(f, "c1", "e", LO + 8, f->now), 0);
	assert_refused(f, "e", "its quota");
	/* a route held may move within its quota */
	assert_int_equal(expose(f, "c1", "c", LO + 7, f->now), LO + 7);
	assert_int_not_equal(expose(f, "c2", "a", 0, f->now), 0);
	/* a port let go: the first refused (d, not e) takes the room */
	unexpose(f, "c1", "a", f->now);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 1);
	assert_string_equal(decision(f, EV_PORT_SET, 0)->name, "d");
	assert_int_equal(ndecisions(f, EV_REFUSED), 0);
	/* and after a restart the sums are the same */
	fx_reopen(f);
	assert_int_equal(expose(f, "c1", "f", 0, f->now), 0);
	assert_refused(f, "f", "holds 3 ports");
	/* by namespace: all of c2's are in "default" */
	f->conf.lim_ports_ns = 1;
	assert_int_equal(expose(f, "c2", "b", 0, f->now), 0);
	assert_refused(f, "b", "namespace default holds 1 ports, its quota");
}

/* Backends per route and per cluster, and bytes of the proxy's table. */
static void
test_limit_backends(void **state)
{
	struct fx *f = *state;
	struct event ev;
	unsigned p;
	int i;

	f->conf.lim_backends_route = 3;
	f->conf.lim_backends = 5;
	ev_expose(&ev, "c1", "a", "10.0.0.1", f->now);
	for (i = 2; i <= 4; i++)
		assert_int_equal(event_add_backend(&ev, "10.0.0.1", 30080 + i,
		    1), 0);
	run(f, &ev);
	assert_refused(f, "a", "the route has 4 backends, more than the 3");
	ev_expose(&ev, "c1", "a", "10.0.0.1", f->now);
	assert_int_equal(event_add_backend(&ev, "10.0.0.2", 30080, 1), 0);
	assert_int_equal(event_add_backend(&ev, "10.0.0.3", 30080, 1), 0);
	run(f, &ev);
	p = decision(f, EV_PORT_SET, 0)->port;
	ev_expose(&ev, "c1", "b", "10.0.0.1", f->now);
	assert_int_equal(event_add_backend(&ev, "10.0.0.2", 30080, 1), 0);
	run(f, &ev);
	assert_non_null(decision(f, EV_PORT_SET, 0));
	ev_expose(&ev, "c1", "c", "10.0.0.1", f->now);
	run(f, &ev);
	assert_refused(f, "c", "would have 6 backends, more than its 5");
	/* another cluster is not bound by c1's */
	assert_int_not_equal(expose(f, "c2", "c", 0, f->now), 0);
	/* fewer backends on a: room for c, at once */
	ev_expose(&ev, "c1", "a", "10.0.0.1", f->now);
	run(f, &ev);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->port, p);
	assert_string_equal(decision(f, EV_PORT_SET, 1)->name, "c");
	/* bytes: about 150 for a route of one backend */
	f->conf.lim_bytes = 200;
	assert_int_equal(expose(f, "c2", "d", 0, f->now), 0);
	assert_refused(f, "d", "bytes of a proxy's configuration, more "
	    "than its 200 (bytes_per_cluster)");
	/* and all clusters together, without a figure of the others' */
	f->conf.lim_bytes = 0;
	f->conf.lim_bytes_total = 700;
	assert_int_equal(expose(f, "c3", "e", 0, f->now), 0);
	assert_refused(f, "e", "the proxies' configuration is full "
	    "(bytes_total)");
	unexpose(f, "c1", "b", f->now);
	assert_int_not_equal(expose(f, "c3", "e", 0, f->now), 0);
}

/*
 * Routes held or waiting for a port are bounded too, and an owner waiting
 * when its cluster's quota fills is refused by the TICK that would have
 * given it a port.
 */
static void
test_limit_routes(void **state)
{
	struct fx *f = *state;
	struct event ev;
	char name[16];
	int i;

	f->conf.quarantine = 0;
	for (i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		assert_int_not_equal(expose(f, "c2", name, 0, f->now), 0);
	}
	f->conf.lim_routes = 2;
	f->conf.lim_ports = 1;
	assert_int_equal(expose(f, "c1", "a", 0, f->now), 0);
	assert_refused(f, "a", "no free port");
	assert_int_equal(expose(f, "c1", "b", 0, f->now), 0);
	assert_refused(f, "b", "no free port");
	assert_int_equal(expose(f, "c1", "c", 0, f->now), 0);
	assert_refused(f, "c", "the cluster has 2 routes, the most it may "
	    "have");
	unexpose(f, "c2", "r0", f->now);
	unexpose(f, "c2", "r1", f->now);
	event_init(&ev, EV_TICK);
	ev.time = f->now + 1;
	run(f, &ev);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 1);
	assert_string_equal(decision(f, EV_PORT_SET, 0)->name, "a");
	assert_string_equal(decision(f, EV_REFUSED, 0)->name, "b");
	assert_non_null(strstr(decision(f, EV_REFUSED, 0)->why, "quota"));
	/* and b has the room a leaves */
	unexpose(f, "c1", "a", f->now + 2);
	assert_string_equal(decision(f, EV_PORT_SET, 0)->name, "b");
}

/*
 * What a cluster makes allocd keep of its routes refused by a limit is
 * bounded (routes_per_cluster of them): past that a refused route is said
 * and forgotten, and room made goes to the kept ones, first refused first.
 */
static void
test_limited_kept_bounded(void **state)
{
	struct fx *f = *state;
	struct event ev;
	char name[16];
	int i;

	f->conf.quarantine = 0;
	f->conf.lim_routes = 2;
	assert_int_not_equal(expose(f, "c1", "a", 0, f->now), 0);
	assert_int_not_equal(expose(f, "c1", "b", 0, f->now), 0);
	for (i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "x%d", i);
		assert_int_equal(expose(f, "c1", name, 0, f->now), 0);
		assert_refused(f, name, "the most it may have");
	}
	unexpose(f, "c1", "a", f->now + 1);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 1);
	assert_string_equal(decision(f, EV_PORT_SET, 0)->name, "x0");
	unexpose(f, "c1", "b", f->now + 2);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 1);
	assert_string_equal(decision(f, EV_PORT_SET, 0)->name, "x1");
	/* x2 and x3 were not kept: nothing of theirs is decided again */
	unexpose(f, "c1", "x0", f->now + 3);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 0);
	event_init(&ev, EV_TICK);
	ev.time = f->now + 4;
	run(f, &ev);
	assert_int_equal(ndecisions(f, EV_PORT_SET), 0);
	/* until watcherd sends them again */
	assert_int_not_equal(expose(f, "c1", "x2", 0, f->now + 5), 0);
}

/*
 * A route that serves a backend no longer allowed (allow_backends
 * narrowed, then the route seen again) stops: its port is let go and the
 * reason said, as for a route that went.
 */
static void
test_forbidden_backends_stop(void **state)
{
	struct fx *f = *state;
	struct event ev;
	unsigned p;

	assert_int_equal(addr_nets_parse("127.0.0.0/8", &f->conf.allow_backends),
	    0);
	backend_is(f, "a", "127.0.0.5", NULL);
	assert_int_not_equal(p = port_of(f, "c1", "a"), 0);
	memset(&f->conf.allow_backends, 0, sizeof(f->conf.allow_backends));
	ev_expose(&ev, "c1", "a", "127.0.0.5", f->now + 1);
	run(f, &ev);
	assert_int_equal(ndecisions(f, EV_PORT_FREE), 1);
	assert_int_equal(decision(f, EV_PORT_FREE, 0)->port, p);
	assert_refused(f, "a", "backend 127.0.0.5 is loopback");
}

/* A store from before the sums: they are built from the owners it holds. */
static void
test_limits_index(void **state)
{
	struct fx *f = *state;
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, v;

	assert_int_not_equal(expose(f, "c1", "a", 0, f->now), 0);
	assert_int_not_equal(expose(f, "c1", "b", 0, f->now), 0);
	assert_int_equal(store_begin(&f->st, &txn, 0), 0);
	assert_int_equal(mdb_cursor_open(txn, f->st.meta, &cur), 0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		if (k.mv_size >= 3 && memcmp(k.mv_data, "lim", 3) == 0)
			assert_int_equal(mdb_cursor_del(cur, 0), 0);
	mdb_cursor_close(cur);
	assert_int_equal(mdb_txn_commit(txn), 0);
	fx_reopen(f);		/* a new allocd on the store from before */
	f->conf.lim_ports = 2;
	assert_int_equal(expose(f, "c1", "c", 0, f->now), 0);
	assert_refused(f, "c", "holds 2 ports");
}

/* Store loss and proofs. */

/* The store is gone: an empty one in its place, a new alloc over it. */
static void
fx_lose(struct fx *f)
{
	char path[128];

	fx_close(f);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
	unlink(path);
	memset(f->logged, 0, sizeof(f->logged));
	fx_open(f);
	assert_true(f->a.seq == 0);
}

/* A ROUTE of c/name for the object uid, claiming port had with proof pf. */
static void
ev_proven(struct event *ev, const char *c, const char *name, const char *uid,
    uint64_t had, const char *pf)
{
	ev_expose(ev, c, name, "10.0.0.1", 0);
	assert_int_equal(event_set_str(ev, F_UID, uid), 0);
	if (had != 0) {
		ev->had = had;
		ev->has |= F_HAD;
	}
	if (pf != NULL)
		assert_int_equal(event_set_str(ev, F_PROOF, pf), 0);
}

/* Expose c/name for uid and make it live; its port, and its proof in pf. */
static unsigned
expose_live(struct fx *f, const char *c, const char *name, const char *uid,
    char pf[64])
{
	const struct event *d;
	struct event ev;
	unsigned p;

	ev_proven(&ev, c, name, uid, 0, NULL);
	ev.time = f->now;
	run(f, &ev);
	assert_non_null(d = decision(f, EV_PORT_SET, 0));
	assert_string_equal(d->uid, uid);
	p = (unsigned)d->port;
	ev_applied(&ev, "haproxy", f->a.seq, f->now);
	run(f, &ev);
	assert_non_null(d = decision(f, EV_PORT_LIVE, 0));
	assert_true(d->has & F_PROOF);
	assert_int_equal(strlen(d->pf), PROOF_LEN);
	memcpy(pf, d->pf, 64);
	return p;
}

static void
ev_mark(struct event *ev, int type, uint64_t first, uint64_t time)
{
	event_init(ev, type);
	ev->time = time;
	if (type == EV_STORE_LOST) {
		ev->sfirst = first;
		ev->has |= F_SFIRST;
	}
}

/*
 * A proof holds for its owner, uid and port only; after a loss a proven
 * claim is adopted, a copy (elsewhere, or for another uid, or another port)
 * is refused naming nobody, and RECOVERED counts both.
 */
static void
test_proof_adopts(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;
	char pa[64], pb[64];
	unsigned a, b;

	a = expose_live(f, "c1", "a", "uid-a", pa);
	b = expose_live(f, "c2", "b", "uid-b", pb);
	assert_string_not_equal(pa, pb);
	ev_proven(&ev, "c1", "a", "uid-a", a, pa);
	assert_true(proof_holds(&ev));
	ev.had = b;
	assert_false(proof_holds(&ev));
	event_free(&ev);
	ev_proven(&ev, "c1", "a", "uid-x", a, pa);
	assert_false(proof_holds(&ev));
	event_free(&ev);

	fx_lose(f);
	ev_mark(&ev, EV_STORE_LOST, 0, f->now);
	assert_int_equal(run(f, &ev), 0);
	/* the copies come first: c1/copy with a's, c3/b with b's */
	ev_proven(&ev, "c1", "copy", "uid-c", a, pa);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_REFUSED, 0));
	assert_non_null(strstr(d->why, "was not written by portico"));
	assert_null(strstr(d->why, "c1/"));
	assert_null(strstr(d->why, "/a/"));
	ev_proven(&ev, "c3", "b", "uid-b", b, pb);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_REFUSED, 0));
	/* a recreated a (another uid) carrying the old annotations */
	ev_proven(&ev, "c1", "a", "uid-new", a, pa);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_REFUSED, 0));
	ev_proven(&ev, "c1", "a", "uid-a", a, pa);
	assert_int_equal(run(f, &ev), 1);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->port, a);
	ev_proven(&ev, "c2", "b", "uid-b", b, pb);
	assert_int_equal(run(f, &ev), 1);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->port, b);
	ev_mark(&ev, EV_ADOPT_END, 0, f->now);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_RECOVERED, 0));
	assert_true(d->sadopt == 2 && d->srefused == 3);
	/* the copier without the copy gets a port of its own */
	ev_proven(&ev, "c1", "copy", "uid-c", 0, NULL);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_PORT_SET, 0));
	assert_true(d->port != a && d->port != b);
}

/*
 * The first store under proofs adopts unproven claims, and only while it
 * adopts; a proven claim with a request for another port keeps its own and
 * has the request refused.
 */
static void
test_first_store_and_requests(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;
	char pa[64], pb[64];
	unsigned a, b;

	a = expose_live(f, "c1", "a", "uid-a", pa);
	b = expose_live(f, "c1", "b", "uid-b", pb);
	fx_lose(f);
	ev_mark(&ev, EV_STORE_LOST, 1, f->now);
	run(f, &ev);
	ev_proven(&ev, "c1", "a", "uid-a", a, NULL);	/* written before proofs */
	assert_int_equal(run(f, &ev), 1);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->port, a);
	ev_proven(&ev, "c1", "b", "uid-b", b, pb);
	ev.want = a;
	ev.has |= F_WANT;
	assert_int_equal(run(f, &ev), 2);
	assert_int_equal(decision(f, EV_PORT_SET, 0)->port, b);
	assert_non_null(d = decision(f, EV_REFUSED, 0));
	assert_non_null(strstr(d->why, "is taken"));
	ev_mark(&ev, EV_ADOPT_END, 0, f->now);
	run(f, &ev);
	assert_non_null(d = decision(f, EV_RECOVERED, 0));
	assert_true(d->sadopt == 2 && d->srefused == 0);
	/* adoption over: an unproven claim is refused */
	ev_proven(&ev, "c1", "late", "uid-l", b + 1, NULL);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_REFUSED, 0));
	/* a live owner whose object lacks the proof is made live again, with it */
	ev_applied(&ev, "haproxy", f->a.seq, f->now);
	run(f, &ev);
	ev_proven(&ev, "c1", "a", "uid-a", a, NULL);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_PORT_LIVE, 0));
	ev_proven(&ev, "c1", "a", "uid-a", a, d->pf);
	assert_int_equal(run(f, &ev), 0);
}

/*
 * A TCPRoute (rk "tcp") is another owner than the VirtualService of the
 * same cluster/ns/name/route: each holds its own port, every decision
 * about it says its kind, and a VirtualService's key stays as it was.
 * Quotas count both kinds together.
 */
static void
test_route_kinds(void **state)
{
	struct fx *f = *state;
	const struct event *d;
	struct event ev;
	unsigned vs, tcp;
	MDB_txn *txn;

	vs = expose(f, "c1", "db", 0, f->now);
	assert_int_not_equal(vs, 0);
	assert_false(decision(f, EV_PORT_SET, 0)->has & F_RKIND);
	ev_expose(&ev, "c1", "db", "10.0.0.2", f->now);
	assert_int_equal(event_set_str(&ev, F_RKIND, "tcp"), 0);
	run(f, &ev);
	assert_non_null(d = decision(f, EV_PORT_SET, 0));
	assert_true(d->has & F_RKIND);
	assert_string_equal(d->rkind, "tcp");
	tcp = (unsigned)d->port;
	assert_int_not_equal(tcp, vs);
	assert_int_equal(port_of(f, "c1", "db"), vs);
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_int_equal(alloc_port_of(&f->a, txn, "c1/default/db/1/tcp", &tcp),
	    0);
	mdb_txn_abort(txn);
	assert_int_equal(tcp, d->port);
	/* a kind that takes no port is dropped, nothing decided */
	ev_expose(&ev, "c1", "db", "10.0.0.3", f->now);
	assert_int_equal(event_set_str(&ev, F_RKIND, "tls"), 0);
	assert_int_equal(run(f, &ev), 0);
	/* the quota counts both kinds */
	f->conf.lim_ports = 2;
	ev_expose(&ev, "c1", "web", "10.0.0.4", f->now);
	assert_int_equal(event_set_str(&ev, F_RKIND, "tcp"), 0);
	run(f, &ev);
	assert_refused(f, "web", "the cluster holds 2 ports, its quota");
	assert_string_equal(decision(f, EV_REFUSED, 0)->rkind, "tcp");
	/* the TCPRoute goes: its port only, and its PORT_FREE says its kind */
	ev_route(&ev, EV_ROUTE_GONE, "c1", "db", f->now);
	assert_int_equal(event_set_str(&ev, F_RKIND, "tcp"), 0);
	run(f, &ev);
	assert_non_null(d = decision(f, EV_PORT_FREE, 0));
	assert_int_equal(d->port, tcp);
	assert_string_equal(d->rkind, "tcp");
	assert_int_equal(port_of(f, "c1", "db"), vs);
	/* room made: the refused TCPRoute takes it, as its kind */
	assert_non_null(d = decision(f, EV_PORT_SET, 0));
	assert_string_equal(d->name, "web");
	assert_string_equal(d->rkind, "tcp");
}

/* An SNI_ROUTE (or SNI_GONE) for c/default/name's hostname, one backend. */
static void
ev_sni(struct event *ev, int type, const char *c, const char *name,
    const char *host, const char *ip)
{
	ev_route(ev, type, c, name, 0);
	ev->route = 0;
	ev->time = T0;
	if (type != EV_SNI_ROUTE)
		return;
	assert_int_equal(event_set_str(ev, F_HOST, host), 0);
	assert_int_equal(event_add_backend(ev, ip, 8443, 3), 0);
}

/* The last run refused the SNI route name, rk "tls", saying s. */
static void
assert_sni_refused_(struct fx *f, const char *name, const char *s,
    const char *file, int line)
{
	const struct event *d = decision(f, EV_REFUSED, 0);

	if (d == NULL || strcmp(d->name, name) != 0 ||
	    strcmp(d->rkind, "tls") != 0 || strstr(d->why, s) == NULL ||
	    ndecisions(f, EV_SNI_SET) != 0) {
		print_error("no REFUSED (tls) for %s saying \"%s\" (got "
		    "\"%s\")\n", name, s, d ? d->why : "nothing");
		_fail(file, line);
	}
}
#define assert_sni_refused(f, n, s) assert_sni_refused_((f), (n), (s), \
	__FILE__, __LINE__)

static void
test_sni(void **state)
{
	struct fx *f = *state;
	struct collected c = { .n = 0 };
	const struct event *d;
	struct event ev;
	MDB_txn *txn;

	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	run(f, &ev);
	ev_cluster(&ev, EV_CLUSTER_UP, "c2", f->now);
	run(f, &ev);
	/* a cluster whose host lies under c1's */
	ev_cluster(&ev, EV_CLUSTER_UP, "c3", f->now);
	assert_int_equal(event_set_str(&ev, F_HOST, "c3.api.c1.example.com"),
	    0);
	run(f, &ev);

	ev_sni(&ev, EV_SNI_ROUTE, "c1", "web", "app.api.c1.example.com",
	    "10.0.0.1");
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_SNI_SET, 0));
	assert_string_equal(d->host, "app.api.c1.example.com");
	assert_int_equal(d->nbackends, 1);
	assert_int_equal(d->backends[0].weight, 3);
	/* seen again: nothing to say */
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "web", "app.api.c1.example.com",
	    "10.0.0.1");
	assert_int_equal(run(f, &ev), 0);
	/* first holder keeps it */
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "web2", "app.api.c1.example.com",
	    "10.0.0.2");
	run(f, &ev);
	assert_sni_refused(f, "web2", "is held by another route");
	/* said once */
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "web2", "app.api.c1.example.com",
	    "10.0.0.2");
	assert_int_equal(run(f, &ev), 0);
	/* another cluster's names, its own API host, a nested cluster's */
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "x", "x.api.c2.example.com",
	    "10.0.0.1");
	run(f, &ev);
	assert_sni_refused(f, "x", "is not under the cluster's host "
	    "(*.api.c1.example.com)");
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "x", "api.c1.example.com", "10.0.0.1");
	run(f, &ev);
	assert_sni_refused(f, "x", "is not under");
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "x", "c3.api.c1.example.com",
	    "10.0.0.1");
	run(f, &ev);
	assert_sni_refused(f, "x", "is a cluster's API host");
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "x", "a.c3.api.c1.example.com",
	    "10.0.0.1");
	run(f, &ev);
	assert_sni_refused(f, "x", "is under another cluster's API host");
	/* backends as a port route's */
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "x", "x.api.c1.example.com",
	    "169.254.169.254");
	run(f, &ev);
	assert_sni_refused(f, "x", "link-local");
	/* the cluster's bound */
	f->conf.lim_sni = 1;
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "x", "x.api.c1.example.com",
	    "10.0.0.1");
	run(f, &ev);
	assert_sni_refused(f, "x", "holds 1 SNI names");
	f->conf.lim_sni = 0;

	/* the state after a reset: the name held, the refusals standing */
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	assert_int_equal(alloc_state(&f->a, txn, collect, &c), 0);
	mdb_txn_abort(txn);
	assert_int_equal(c.n, 6);
	assert_int_equal(c.type[3], EV_SNI_SET);
	assert_string_equal(c.name[3], "web");
	assert_int_equal(c.type[4], EV_REFUSED);
	assert_int_equal(c.type[5], EV_REFUSED);

	/* gone: the name is free for the next */
	ev_sni(&ev, EV_SNI_GONE, "c1", "web", NULL, NULL);
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(d = decision(f, EV_SNI_DEL, 0));
	assert_string_equal(d->host, "app.api.c1.example.com");
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "web2", "app.api.c1.example.com",
	    "10.0.0.2");
	assert_int_equal(run(f, &ev), 1);
	assert_non_null(decision(f, EV_SNI_SET, 0));

	/* a resync that does not see it lets it go */
	ev_sync(&ev, EV_SYNC_BEGIN, "c1", 7, f->now);
	run(f, &ev);
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "x", "x.api.c1.example.com",
	    "10.0.0.1");
	run(f, &ev);
	assert_non_null(decision(f, EV_SNI_SET, 0));
	ev_sync(&ev, EV_SYNC_END, "c1", 7, f->now);
	run(f, &ev);
	assert_int_equal(ndecisions(f, EV_SNI_DEL), 1);
	assert_string_equal(decision(f, EV_SNI_DEL, 0)->name, "web2");

	/* an API host that appears takes the name from a route */
	ev_cluster(&ev, EV_CLUSTER_UP, "c4", f->now);
	assert_int_equal(event_set_str(&ev, F_HOST, "x.api.c1.example.com"),
	    0);
	run(f, &ev);
	assert_non_null(decision(f, EV_API_SET, 0));
	assert_non_null(decision(f, EV_SNI_DEL, 0));
	assert_sni_refused(f, "x", "is a cluster's API host");

	/* the cluster's host moves: its names not under it go */
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "web", "app.api.c1.example.com",
	    "10.0.0.1");
	run(f, &ev);
	assert_non_null(decision(f, EV_SNI_SET, 0));
	ev_cluster(&ev, EV_CLUSTER_UP, "c1", f->now);
	assert_int_equal(event_set_str(&ev, F_HOST, "new.c1.example.com"), 0);
	run(f, &ev);
	assert_non_null(decision(f, EV_API_SET, 0));
	assert_int_equal(ndecisions(f, EV_SNI_DEL), 1);
	assert_sni_refused(f, "web", "is not under the cluster's host "
	    "(*.new.c1.example.com)");

	/* the cluster gone: its names go */
	ev_sni(&ev, EV_SNI_ROUTE, "c1", "web", "app.new.c1.example.com",
	    "10.0.0.1");
	run(f, &ev);
	assert_non_null(decision(f, EV_SNI_SET, 0));
	ev_cluster(&ev, EV_CLUSTER_DOWN, "c1", f->now);
	run(f, &ev);
	assert_int_equal(ndecisions(f, EV_SNI_DEL), 1);
	assert_int_equal(store_begin(&f->st, &txn, 1), 0);
	c.n = 0;
	assert_int_equal(alloc_state(&f->a, txn, collect, &c), 0);
	mdb_txn_abort(txn);
	for (size_t i = 0; i < c.n; i++)
		assert_int_not_equal(c.type[i], EV_SNI_SET);
}

/*
 * The probe for a free port walks the ports table with one cursor: it must
 * pick what a lookup of each port in turn would.  Random tables over three
 * ranges out of order, with reserved ports and the API port among them:
 * ports free, taken, quarantined, lapsed, or the asker's own.
 */
static unsigned
pick_by_lookups(struct fx *f, const char *owner, uint64_t now)
{
	unsigned size = ports_count(&f->conf.ports), i, k, p = 0;
	char why[256];
	MDB_txn *txn;

	assert_int_equal(store_begin(&f->st, &txn, 0), 0);
	k = (unsigned)(hash_fnv1a(owner) % size);
	for (i = 0; i < size; i++, k = k + 1 == size ? 0 : k + 1)
		if (alloc_port_avail(&f->a, txn, ports_nth(&f->conf.ports, k),
		    owner, now, why, sizeof(why)) == 0) {
			p = ports_nth(&f->conf.ports, k);
			break;
		}
	mdb_txn_abort(txn);
	return p;
}

static void
test_probe_walks_as_lookups(void **state)
{
	struct fx *f = *state;
	unsigned long long x = 0x9e3779b97f4a7c15ULL;
	char owner[32], holder[32];
	unsigned p, got, want, round, i, nfree = 0;
	MDB_txn *txn;

	f->conf.ports.n = 3;
	f->conf.ports.r[0].lo = 20100;
	f->conf.ports.r[0].hi = 20139;
	f->conf.ports.r[1].lo = 20000;
	f->conf.ports.r[1].hi = 20019;
	f->conf.ports.r[2].lo = 20050;
	f->conf.ports.r[2].hi = 20059;
	f->conf.reserved.n = 1;
	f->conf.reserved.r[0].lo = 20005;
	f->conf.reserved.r[0].hi = 20006;
	f->conf.api_port = 20101;
	for (round = 0; round < 300; round++) {
		assert_int_equal(store_begin(&f->st, &txn, 0), 0);
		for (p = 19990; p < 20150; p++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			snprintf(holder, sizeof(holder), "c/ns/h%u", p);
			/*
			 * Mostly taken, so that probes go far and wrap; one
			 * round in four, nearly all, so that some find none.
			 */
			switch ((unsigned)(x >> 33) % (round % 4 ? 16 : 600)) {
			case 0:
				assert_int_equal(store_port_del(&f->st, txn,
				    p), 0);
				break;
			case 1:		/* quarantined */
				assert_int_equal(store_port_put(&f->st, txn,
				    p, holder, f->now - QMS / 2), 0);
				break;
			case 2:		/* lapsed */
				assert_int_equal(store_port_put(&f->st, txn,
				    p, holder, f->now - QMS), 0);
				break;
			case 3:		/* the asker's own */
				assert_int_equal(store_port_put(&f->st, txn,
				    p, "c/ns/me", f->now - QMS / 2), 0);
				break;
			default:
				assert_int_equal(store_port_put(&f->st, txn,
				    p, holder, 0), 0);
			}
		}
		assert_int_equal(mdb_txn_commit(txn), 0);
		for (i = 0; i < 8; i++) {
			if (i == 0)	/* the one with ports of its own */
				snprintf(owner, sizeof(owner), "c/ns/me");
			else
				snprintf(owner, sizeof(owner), "c/ns/o%u-%u",
				    round, i);
			alloc_forget_full(&f->a);
			want = pick_by_lookups(f, owner, f->now);
			assert_int_equal(store_begin(&f->st, &txn, 1), 0);
			got = alloc_port_pick_dry(&f->a, txn, owner, f->now, 1);
			mdb_txn_abort(txn);
			if (got != want)
				fail_msg("round %u, %s: the walk picked %u, "
				    "lookups %u", round, owner, got, want);
			nfree += want != 0;
		}
	}
	/* both outcomes were seen: some probes found nothing */
	assert_true(nfree > 0 && nfree < 300 * 8);
}

#define T(fn)	cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_assign_in_range),
		T(test_keeps_port),
		T(test_backends_change),
		T(test_quarantine),
		T(test_return_within_quarantine),
		T(test_want),
		T(test_exhaustion),
		T(test_shrink),
		T(test_port_ranges),
		T(test_waiting_owners),
		T(test_sync),
		T(test_cluster_down),
		T(test_applied),
		T(test_applied_two_proxies),
		T(test_log),
		T(test_state),
		T(test_proxy_faults),
		T(test_unlive_index),
		T(test_sync_keeps_refused_want),
		T(test_refused_want_keeps_quarantine),
		T(test_sync_sid_reused),
		T(test_property),
		T(test_host_first_holder),
		T(test_host_moves),
		T(test_host_bad_masters),
		T(test_backend_classes),
		T(test_limit_ports),
		T(test_limit_backends),
		T(test_limit_routes),
		T(test_limits_index),
		T(test_limited_kept_bounded),
		T(test_forbidden_backends_stop),
		T(test_proof_adopts),
		T(test_first_store_and_requests),
		T(test_route_kinds),
		T(test_sni),
		T(test_probe_walks_as_lookups),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
