/*
 * allocd — limits (see limits.h).
 *
 * Each owner's use is counted into its cluster's sums whenever its record
 * is written, so a check costs one read, whatever the cluster's size.  A
 * limit is checked only where a route would take more than it holds: a
 * route that holds a port keeps it when a limit is lowered under what its
 * cluster holds, and is refused only when it asks for more.  A limit of 0
 * is no limit.
 */
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "limits.h"
#include "log.h"

#define LIM_PREFIX	STORE_META_LIM

/*
 * Bytes of a proxy's table, roughly as HAProxy's configuration spells a
 * route: a backend section naming the owner, a map key, and a server line
 * per backend ("\tserver IP_PORT IP:PORT weight W check inter 5s\n").
 */
#define LIM_ROUTE_BYTES		64
#define LIM_BACKEND_BYTES	56

void
limits_use(struct lim_use *u, int held, int waiting, int limited,
    const struct event *set)
{
	size_t i;

	memset(u, 0, sizeof(*u));
	u->limited = limited;
	u->routes = held || waiting;
	if (!held)
		return;
	u->ports = 1;
	if (set == NULL)
		return;
	u->backends = set->nbackends;
	u->bytes = LIM_ROUTE_BYTES + strlen(set->cluster) + strlen(set->ns) +
	    strlen(set->name);
	for (i = 0; i < set->nbackends; i++)
		u->bytes += LIM_BACKEND_BYTES + 2 * strlen(set->backends[i].ip);
}

static int
get_sum(struct alloc *a, MDB_txn *txn, const char *cluster, const char *ns,
    struct lim_use *u)
{
	char buf[sizeof(LIM_PREFIX) + EV_OWNERLEN];
	uint64_t v[STORE_LIM_N];
	MDB_val key;
	int rc;

	memset(u, 0, sizeof(*u));
	/* "lim/<cluster>", or with ns "lim/<cluster>/<ns>" */
	alloc_meta_key(&key, buf, sizeof(buf), LIM_PREFIX, cluster, ns);
	if ((rc = store_get_u64s(a->st, txn, &key, v, STORE_LIM_N)) != 0) {
		if (rc == MDB_CORRUPTED)
			fatalx("limits: %s: bad record", buf);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	u->routes = v[0];
	u->ports = v[1];
	u->backends = v[2];
	u->bytes = v[3];
	u->limited = v[4];
	return 0;
}

static int
put_sum(struct alloc *a, MDB_txn *txn, const char *cluster, const char *ns,
    const struct lim_use *u)
{
	char buf[sizeof(LIM_PREFIX) + EV_OWNERLEN];
	uint64_t v[STORE_LIM_N] = { u->routes, u->ports, u->backends,
	    u->bytes, u->limited };
	MDB_val key;

	alloc_meta_key(&key, buf, sizeof(buf), LIM_PREFIX, cluster, ns);
	if (u->routes == 0 && u->ports == 0 && u->backends == 0 &&
	    u->bytes == 0 && u->limited == 0)
		return store_meta_del(a->st, txn, &key);
	return store_put_u64s(a->st, txn, &key, v, STORE_LIM_N);
}

/* x - old + now, never below zero (a sum is never less than a part). */
static uint64_t
moved(uint64_t x, uint64_t old, uint64_t now)
{
	return (x > old ? x - old : 0) + now;
}

static void
sum_move(struct lim_use *s, const struct lim_use *old,
    const struct lim_use *now)
{
	s->routes = moved(s->routes, old->routes, now->routes);
	s->ports = moved(s->ports, old->ports, now->ports);
	s->backends = moved(s->backends, old->backends, now->backends);
	s->bytes = moved(s->bytes, old->bytes, now->bytes);
	s->limited = moved(s->limited, old->limited, now->limited);
}

int
limits_account(struct alloc *a, MDB_txn *txn, const char *owner,
    const struct lim_use *old, const struct lim_use *now)
{
	char cluster[64], ns[64];
	struct lim_use s;
	size_t n;
	int rc;

	if (memcmp(old, now, sizeof(*old)) == 0)
		return 0;
	/* "cluster/ns/name/route": both are checked when the owner is made */
	n = strcspn(owner, "/");
	if (n >= sizeof(cluster) || owner[n] != '/')
		fatalx("limits: bad owner %s", owner);
	memcpy(cluster, owner, n);
	cluster[n] = '\0';
	owner += n + 1;
	if ((n = strcspn(owner, "/")) >= sizeof(ns))
		fatalx("limits: bad owner %s/%s", cluster, owner);
	memcpy(ns, owner, n);
	ns[n] = '\0';
	if ((rc = get_sum(a, txn, cluster, NULL, &s)) != 0)
		return rc;
	sum_move(&s, old, now);
	if ((rc = put_sum(a, txn, cluster, NULL, &s)) != 0)
		return rc;
	/* the fleet's sum: "lim/" (a cluster id is never empty) */
	if ((rc = get_sum(a, txn, "", NULL, &s)) != 0)
		return rc;
	sum_move(&s, old, now);
	if ((rc = put_sum(a, txn, "", NULL, &s)) != 0)
		return rc;
	if (old->ports == now->ports)
		return 0;
	/* a namespace's sum counts its ports only */
	if ((rc = get_sum(a, txn, cluster, ns, &s)) != 0)
		return rc;
	s.ports = moved(s.ports, old->ports, now->ports);
	return put_sum(a, txn, cluster, ns, &s);
}

int
limits_waiting(struct alloc *a, MDB_txn *txn, const char *cluster)
{
	struct lim_use s;

	return get_sum(a, txn, cluster, NULL, &s) == 0 && s.limited > 0;
}

int
limits_may_keep(struct alloc *a, MDB_txn *txn, const char *cluster)
{
	unsigned cap = a->conf->lim_routes ? a->conf->lim_routes : LIM_KEEP_MAX;
	struct lim_use s;

	return get_sum(a, txn, cluster, NULL, &s) == 0 && s.limited < cap;
}

int
limits_sum(struct alloc *a, MDB_txn *txn, const char *cluster,
    struct lim_use *u)
{
	return get_sum(a, txn, cluster, NULL, u);
}

int
limits_shrunk(const struct lim_use *before, const struct lim_use *after)
{
	return after->routes < before->routes || after->ports < before->ports ||
	    after->backends < before->backends || after->bytes < before->bytes;
}

int
limits_address(const struct config *c, const char *what, const char *ip,
    char *why, size_t whylen)
{
	struct addr_ip ad, own;
	enum addr_class k;
	int i;

	if (addr_parse(ip, &ad) == -1) {
		snprintf(why, whylen, "%s %s is not an IP address", what, ip);
		return -1;
	}
	for (i = 0; i < c->nproxies; i++)
		if (addr_parse(c->proxies[i].listen, &own) == 0 &&
		    addr_classify(&own) != ADDR_UNSPECIFIED &&
		    addr_equal(&ad, &own)) {
			snprintf(why, whylen, "%s %s is the address proxy %s "
			    "listens on", what, ip, c->proxies[i].name);
			return -1;
		}
	if (addr_in_nets(&ad, &c->allow_backends))
		return 0;
	if ((k = addr_classify(&ad)) != ADDR_OK) {
		snprintf(why, whylen, "%s %s is %s", what, ip,
		    addr_class_name(k));
		return -1;
	}
	return 0;
}

/* Would going from old to now take the sum past lim? */
static int
over(uint64_t sum, uint64_t old, uint64_t now, unsigned lim)
{
	return lim != 0 && now > old && moved(sum, old, now) > lim;
}

int
limits_route(struct alloc *a, MDB_txn *txn, const struct event *obs,
    const struct lim_use *old, char *why, size_t whylen)
{
	const struct config *c = a->conf;
	struct lim_use now, s, ns, all;
	size_t i;
	int rc;

	for (i = 0; i < obs->nbackends; i++)
		if (limits_address(c, "backend", obs->backends[i].ip, why,
		    whylen) == -1)
			return -1;
	if (c->lim_backends_route != 0 &&
	    obs->nbackends > c->lim_backends_route) {
		snprintf(why, whylen, "the route has %zu backends, more than "
		    "the %u a route may have", obs->nbackends,
		    c->lim_backends_route);
		return -1;
	}
	limits_use(&now, 1, 0, 0, obs);
	if ((rc = get_sum(a, txn, obs->cluster, NULL, &s)) != 0 ||
	    (rc = get_sum(a, txn, obs->cluster, obs->ns, &ns)) != 0 ||
	    (rc = get_sum(a, txn, "", NULL, &all)) != 0)
		fatalx("limits: %s: %s", obs->cluster, mdb_strerror(rc));
	if (over(s.routes, old->routes, now.routes, c->lim_routes))
		snprintf(why, whylen, "the cluster has %llu routes, the most "
		    "it may have (routes_per_cluster)",
		    (unsigned long long)s.routes);
	else if (over(s.ports, old->ports, now.ports, c->lim_ports))
		snprintf(why, whylen, "the cluster holds %llu ports, its "
		    "quota (ports_per_cluster)", (unsigned long long)s.ports);
	else if (over(ns.ports, old->ports, now.ports, c->lim_ports_ns))
		snprintf(why, whylen, "namespace %s holds %llu ports, its "
		    "quota (ports_per_namespace)", obs->ns,
		    (unsigned long long)ns.ports);
	else if (over(s.backends, old->backends, now.backends,
	    c->lim_backends))
		snprintf(why, whylen, "the cluster's routes would have %llu "
		    "backends, more than its %u (backends_per_cluster)",
		    (unsigned long long)moved(s.backends, old->backends,
		    now.backends), c->lim_backends);
	else if (over(s.bytes, old->bytes, now.bytes, c->lim_bytes))
		snprintf(why, whylen, "the cluster's routes would take about "
		    "%llu bytes of a proxy's configuration, more than its %u "
		    "(bytes_per_cluster)", (unsigned long long)moved(s.bytes,
		    old->bytes, now.bytes), c->lim_bytes);
	else if (over(all.bytes, old->bytes, now.bytes, c->lim_bytes_total))
		/* what the others take is theirs to know: no figures */
		snprintf(why, whylen, "the proxies' configuration is full "
		    "(bytes_total)");
	else
		return 0;
	return -1;
}
