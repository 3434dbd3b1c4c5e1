/*
 * applyd — small changes before big ones.
 *
 * A generation that adds 300 routes of 1,024 backends for one cluster is
 * about 300,000 runtime API commands; a route for another cluster that
 * arrives meanwhile must not wait behind them.  So a change is taken a
 * cluster at a time, the cluster with the fewest server changes first,
 * a bounded number of server changes at a time, and a cluster too large
 * for the runtime API is left to a reload.  A pure function of the two
 * tables: the same change is always planned the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "plan.h"

struct change {
	unsigned	 port;
	const char	*cluster;
	size_t		 cost;		/* server changes, at most */
	size_t		 ccost;		/* its cluster's */
};

size_t
plan_cost(const struct routes *old, const struct routes *new, unsigned p)
{
	const struct port_route *o = old->ports[p], *n = new->ports[p];

	/* the map key, and every server out and in (an upper bound) */
	return 1 + (o != NULL ? o->nbackends : 0) +
	    (n != NULL ? n->nbackends : 0);
}

static int
cmp_cluster(const void *x, const void *y)
{
	const struct change *a = x, *b = y;
	int c = strcmp(a->cluster, b->cluster);

	return c != 0 ? c : (a->port > b->port) - (a->port < b->port);
}

static int
cmp_small_first(const void *x, const void *y)
{
	const struct change *a = x, *b = y;

	if (a->ccost != b->ccost)
		return a->ccost < b->ccost ? -1 : 1;
	return cmp_cluster(x, y);
}

size_t
plan_slice(const struct routes *old, const struct routes *new,
    const unsigned *dirty, size_t ndirty, size_t budget, size_t cluster_max,
    unsigned *out)
{
	const struct port_route *pr;
	struct change *ch;
	size_t i, j, k, sum, n = 0, spent = 0;

	if ((ch = calloc(ndirty + 1, sizeof(*ch))) == NULL)
		fatal("plan_slice");
	for (i = 0; i < ndirty; i++) {
		/* a route that moved between clusters counts for the new */
		pr = new->ports[dirty[i]] != NULL ? new->ports[dirty[i]] :
		    old->ports[dirty[i]];
		ch[i].port = dirty[i];
		ch[i].cluster = pr != NULL ? pr->cluster : "";
		ch[i].cost = plan_cost(old, new, dirty[i]);
	}
	qsort(ch, ndirty, sizeof(*ch), cmp_cluster);
	for (i = 0; i < ndirty; i = j) {
		for (sum = 0, j = i; j < ndirty &&
		    strcmp(ch[j].cluster, ch[i].cluster) == 0; j++)
			sum += ch[j].cost;
		for (k = i; k < j; k++)
			ch[k].ccost = sum;
	}
	qsort(ch, ndirty, sizeof(*ch), cmp_small_first);
	for (i = 0; i < ndirty && ch[i].ccost <= cluster_max &&
	    (n == 0 || spent + ch[i].cost <= budget); i++) {
		out[n++] = ch[i].port;
		spent += ch[i].cost;
	}
	free(ch);
	return n;
}
