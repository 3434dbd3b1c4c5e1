/*
 * applyd — where the hosts of a pool of HAProxy slots go from one route
 * table to the next (the API's `api<n>`, the TLSRoutes' `tls<n>`;
 * renderd/haproxy.c places them), and in which order they can move
 * through the runtime API (hapruntime.c), or that only a reload can.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "slots.h"

struct slot_key {
	const char	*host;
	size_t		 slot;
};

static int
cmp_slot_key(const void *x, const void *y)
{
	return strcmp(((const struct slot_key *)x)->host,
	    ((const struct slot_key *)y)->host);
}

const char *
slots_host(const struct routes *r, int sni, long i)
{
	return sni ? r->sni[i].host : r->api[i].host;
}

void
slots_plan_free(struct slots_plan *sp)
{
	free(sp->os);
	free(sp->ns);
	free(sp->to);
	free(sp->from);
	free(sp->moves);
	memset(sp, 0, sizeof(*sp));
}

/* The keys of a table's occupied slots, sorted; their number. */
static size_t
slot_keys(const struct routes *r, int sni, const long *occ, size_t pool,
    struct slot_key *k)
{
	size_t s, n = 0;

	for (s = 0; s < pool; s++)
		if (occ[s] != -1) {
			k[n].host = slots_host(r, sni, occ[s]);
			k[n++].slot = s;
		}
	qsort(k, n, sizeof(*k), cmp_slot_key);
	return n;
}

int
slots_plan(const struct routes *old, const struct routes *new, int sni,
    struct slots_plan *sp)
{
	struct slot_key *ok, *nk;
	size_t opool, no, nn, i, j, s, k;
	char *pending, *freed;
	int c, rc = 0;

	memset(sp, 0, sizeof(*sp));
	if ((sp->os = (sni ? haproxy_sni_slots : haproxy_api_slots)(old,
	    &opool)) == NULL ||
	    (sp->ns = (sni ? haproxy_sni_slots : haproxy_api_slots)(new,
	    &sp->pool)) == NULL)
		fatal("slots_plan");
	if (opool != sp->pool) {
		slots_plan_free(sp);
		return -1;	/* the pool resized (or came): every slot moves */
	}
	if ((sp->to = calloc(sp->pool + 1, sizeof(*sp->to))) == NULL ||
	    (sp->from = calloc(sp->pool + 1, sizeof(*sp->from))) == NULL ||
	    (sp->moves = calloc(sp->pool + 1, sizeof(*sp->moves))) == NULL ||
	    (ok = calloc(sp->pool + 1, sizeof(*ok))) == NULL ||
	    (nk = calloc(sp->pool + 1, sizeof(*nk))) == NULL ||
	    (pending = calloc(sp->pool + 1, 1)) == NULL ||
	    (freed = calloc(sp->pool + 1, 1)) == NULL)
		fatal("slots_plan");
	for (s = 0; s < sp->pool; s++)
		sp->to[s] = sp->from[s] = -1;
	no = slot_keys(old, sni, sp->os, sp->pool, ok);
	nn = slot_keys(new, sni, sp->ns, sp->pool, nk);
	for (i = j = 0; i < no && j < nn; ) {
		if ((c = strcmp(ok[i].host, nk[j].host)) < 0)
			i++;
		else if (c > 0)
			j++;
		else {
			sp->to[ok[i].slot] = (long)nk[j].slot;
			sp->from[nk[j].slot] = (long)ok[i].slot;
			if (!sni && ok[i].slot == nk[j].slot &&
			    strcmp(old->api[sp->os[ok[i].slot]].cluster,
			    new->api[sp->ns[nk[j].slot]].cluster) != 0)
				rc = -1;	/* another cluster's, in place */
			i++;
			j++;
		}
	}
	for (s = 0; s < sp->pool; s++) {
		freed[s] = sp->os[s] == -1 || sp->to[s] == -1;
		pending[s] = sp->from[s] != -1 && sp->from[s] != (long)s;
	}
	/* each chain from a free slot: the slot its mover leaves is next */
	for (s = 0; s < sp->pool; s++)
		if (pending[s] && freed[s])
			for (k = s; pending[k]; k = (size_t)sp->from[k]) {
				pending[k] = 0;
				sp->moves[sp->nmoves++] = k;
			}
	for (s = 0; s < sp->pool; s++)
		if (pending[s])
			rc = -1;	/* hosts that swap slots */
	free(ok);
	free(nk);
	free(pending);
	free(freed);
	if (rc == -1)
		slots_plan_free(sp);
	return rc;
}
