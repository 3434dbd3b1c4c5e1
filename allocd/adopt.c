/*
 * allocd — holding observations after a start on an empty store, and the
 * order in which they are then decided.
 */
#include <stdlib.h>
#include <string.h>

#include "adopt.h"
#include "log.h"
#include "proof.h"

/*
 * Nothing says a store was lost: start after this at the latest, longer
 * than applyd's acks are apart (a live one would have said).
 */
#define ADOPT_QUIET_MS	6000
/*
 * The clock's share of the base: seqs of a store made at t start above
 * t * 1000, so a store made later continues above any earlier one that
 * logged fewer than a million events a second (with the clocks agreeing).
 */
#define ADOPT_PER_MS	1000

enum {
	PH_CLUSTER,		/* CLUSTER_UP/DOWN, SYNC_BEGIN */
	PH_PROVEN,		/* a port on the object, proven */
	PH_UNPROVEN,		/* a port on the object, first store only */
	PH_WANT,		/* a port asked for */
	PH_ROUTE,		/* the rest of the routes */
	PH_AFTER,		/* SYNC_END, APPLIED */
	PH_DROP			/* superseded */
};

void
adopt_begin(struct adopt *ad, uint64_t now, unsigned wait_s, int first)
{
	memset(ad, 0, sizeof(*ad));
	ad->active = 1;
	ad->first = first;
	/* a key made before an empty store: a store was there, under it */
	ad->loss = !first;
	ad->start = now;
	ad->deadline = now + (uint64_t)wait_s * 1000;
	ad->floor = now * ADOPT_PER_MS;
}

void
adopt_learn(struct adopt *ad, uint64_t seq)
{
	if (seq > 0)
		ad->loss = 1;
	if (seq > ad->learned)
		ad->learned = seq;
}

uint64_t
adopt_ahead(const struct adopt *ad)
{
	return ad->learned + 1 > ad->floor ? ad->learned + 1 : ad->floor;
}

/*
 * Above everything the lost store's consumers may have seen; from 1 when
 * nothing says there was a store before (a first start logs from 1).
 */
uint64_t
adopt_base(const struct adopt *ad)
{
	return ad->loss ? adopt_ahead(ad) : 0;
}

static struct adopt_cluster *
adopt_cluster(struct adopt *ad, const char *id)
{
	struct adopt_cluster *c;
	size_t i;

	for (i = 0; i < ad->ncl; i++)
		if (strcmp(ad->cl[i].id, id) == 0)
			return &ad->cl[i];
	if (ad->ncl == ad->capcl) {
		ad->capcl = ad->capcl ? ad->capcl * 2 : 16;
		if ((c = reallocarray(ad->cl, ad->capcl, sizeof(*c))) == NULL)
			fatal("adopt: clusters");
		ad->cl = c;
	}
	c = &ad->cl[ad->ncl++];
	memset(c, 0, sizeof(*c));
	memcpy(c->id, id, sizeof(c->id));
	return c;
}

void
adopt_hold(struct adopt *ad, const struct event *ev)
{
	struct adopt_cluster *c = NULL;
	struct event *h;

	if (ad->nheld == ad->capheld) {
		ad->capheld = ad->capheld ? ad->capheld * 2 : 256;
		if ((h = reallocarray(ad->held, ad->capheld,
		    sizeof(*h))) == NULL)
			fatal("adopt: hold");
		ad->held = h;
	}
	if (event_copy(&ad->held[ad->nheld], ev) == -1)
		fatal("adopt: hold");
	if (ev->has & F_CLUSTER)
		c = adopt_cluster(ad, ev->cluster);
	switch (ev->type) {
	case EV_CLUSTER_UP:
		c->up = 1;
		break;
	case EV_CLUSTER_DOWN:
		c->up = 0;
		break;
	case EV_SYNC_BEGIN:
		c->begun = ev->sid;
		c->begun_at = ad->nheld;
		break;
	case EV_SYNC_END:
		c->ended = ev->sid;
		break;
	case EV_ROUTE:
		if (ev->has & F_HAD)
			ad->loss = 1;
		break;
	case EV_APPLIED:
		adopt_learn(ad, ev->gen);
		break;
	}
	ad->nheld++;
}

/*
 * Done when every cluster heard of has been resynced, or adopt_wait has
 * passed; or, when nothing says a store was there before (the key is new,
 * no consumer had seen a seq, no object carries an address), after
 * ADOPT_QUIET_MS: a first start does not wait for clusters that cannot be
 * listed.
 */
int
adopt_due(const struct adopt *ad, uint64_t now)
{
	size_t i, n = 0;

	if (now >= ad->deadline ||
	    (!ad->loss && now >= ad->start + ADOPT_QUIET_MS))
		return 1;
	for (i = 0; i < ad->ncl; i++) {
		if (!ad->cl[i].up && ad->cl[i].begun == 0)
			continue;
		if (ad->cl[i].begun == 0 || ad->cl[i].ended != ad->cl[i].begun)
			return 0;
		n++;
	}
	return n > 0;
}

struct slot {
	size_t		 at;		/* where it was held */
	int		 phase;
	char		 owner[EV_OWNERLEN];
};

static int
cmp_owner(const void *x, const void *y)
{
	const struct slot *a = *(struct slot * const *)x;
	const struct slot *b = *(struct slot * const *)y;
	int c = strcmp(a->owner, b->owner);

	return c != 0 ? c : a->at < b->at ? -1 : a->at > b->at;
}

static int
cmp_phase(const void *x, const void *y)
{
	const struct slot *a = x, *b = y;

	if (a->phase != b->phase)
		return a->phase - b->phase;
	return a->at < b->at ? -1 : a->at > b->at;
}

static int
adopt_phase(const struct adopt *ad, const struct event *ev)
{
	switch (ev->type) {
	case EV_CLUSTER_UP:
	case EV_CLUSTER_DOWN:
	case EV_SYNC_BEGIN:
		return PH_CLUSTER;
	case EV_ROUTE:
		if (ev->has & F_WHY)
			return PH_ROUTE;
		/* a request for another port than its own comes later */
		if ((ev->has & F_WANT) && (!(ev->has & F_HAD) ||
		    ev->want != ev->had))
			return PH_WANT;
		if ((ev->has & F_HAD) && proof_holds(ev))
			return PH_PROVEN;
		if ((ev->has & F_HAD) && ad->first)
			return PH_UNPROVEN;
		return PH_ROUTE;
	case EV_ROUTE_GONE:
	case EV_SNI_ROUTE:	/* no port: nothing to adopt, a route still */
	case EV_SNI_GONE:
		return PH_ROUTE;
	}
	return PH_AFTER;
}

/*
 * Of the routes, only each owner's latest observation counts, and none
 * made before its cluster's last resync began (the resync says it all).
 */
static void
adopt_supersede(struct adopt *ad, struct slot *s)
{
	struct adopt_cluster *c;
	struct slot **r;
	size_t i, n = 0;

	if ((r = calloc(ad->nheld + 1, sizeof(*r))) == NULL)
		fatal("adopt: order");
	for (i = 0; i < ad->nheld; i++) {
		if (ad->held[i].type != EV_ROUTE &&
		    ad->held[i].type != EV_ROUTE_GONE)
			continue;
		c = adopt_cluster(ad, ad->held[i].cluster);
		if ((c->begun != 0 && i < c->begun_at) ||
		    event_owner(&ad->held[i], s[i].owner,
		    sizeof(s[i].owner)) == -1)
			s[i].phase = PH_DROP;
		else
			r[n++] = &s[i];
	}
	qsort(r, n, sizeof(*r), cmp_owner);
	for (i = 0; i + 1 < n; i++)
		if (strcmp(r[i]->owner, r[i + 1]->owner) == 0)
			r[i]->phase = PH_DROP;
	free(r);
}

struct event *
adopt_batch(struct adopt *ad, uint64_t now, size_t *n)
{
	struct event *out;
	struct slot *s;
	size_t i, k = 0;

	if ((s = calloc(ad->nheld + 1, sizeof(*s))) == NULL ||
	    (out = calloc(ad->nheld + 2, sizeof(*out))) == NULL)
		fatal("adopt: order");
	for (i = 0; i < ad->nheld; i++) {
		s[i].at = i;
		s[i].phase = adopt_phase(ad, &ad->held[i]);
	}
	adopt_supersede(ad, s);
	qsort(s, ad->nheld, sizeof(*s), cmp_phase);

	event_init(&out[k], EV_STORE_LOST);
	out[k].time = ad->start;
	out[k].gen = ad->learned;
	out[k].sfirst = (uint64_t)ad->first;
	out[k++].has = F_GEN | F_SFIRST;
	for (i = 0; i < ad->nheld; i++) {
		if (s[i].phase == PH_DROP)
			event_free(&ad->held[s[i].at]);
		else
			out[k++] = ad->held[s[i].at];	/* handed over */
	}
	event_init(&out[k], EV_ADOPT_END);
	out[k++].time = now;
	*n = k;

	free(s);
	free(ad->held);
	free(ad->cl);
	ad->held = NULL;
	ad->cl = NULL;
	ad->nheld = ad->capheld = ad->ncl = ad->capcl = 0;
	ad->active = 0;
	return out;
}
