/*
 * watcherd — allocd's decisions, as the write-back needs them: by owner,
 * the port, whether every proxy serves it (and the proof), a refusal's
 * reason or a proxy's fault; and the clusters allocd routes.  A leaf: the
 * caller (cluster.c) looks at the object a decision concerns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "watcherd.h"

int			 alloc_synced;
static struct smap	 decisions;	/* owner -> struct decision */
static struct smap	 alloc_clusters;	/* id -> seq of its API_SET */
static uint64_t		 feed_seq;		/* the last seq seen */

void
decision_owner(char *buf, size_t len, const char *id, const char *rk,
    const char *ns, const char *name, size_t r)
{
	if (rk != NULL && rk[0] != '\0')
		snprintf(buf, len, "%s/%s/%s/%zu/%s", id, ns, name, r, rk);
	else
		snprintf(buf, len, "%s/%s/%s/%zu", id, ns, name, r);
}

const struct decision *
decision_get(const char *owner)
{
	return smap_get(&decisions, owner);
}

int
decisions_apply(const struct event *ev)
{
	char owner[EV_OWNERLEN + 24];
	struct decision *a;
	uint64_t *since;

	if (ev->seq > feed_seq)
		feed_seq = ev->seq;
	switch (ev->type) {
	case EV_API_SET:
		/* since when: a poll asked before speaks not for it */
		if (smap_get(&alloc_clusters, ev->cluster) != NULL)
			return 0;
		if ((since = malloc(sizeof(*since))) == NULL)
			fatal("decisions");
		*since = ev->seq;
		smap_put(&alloc_clusters, ev->cluster, since);
		return 0;
	case EV_API_DEL:
		free(smap_del(&alloc_clusters, ev->cluster));
		return 0;
	case EV_PORT_SET:
	case EV_PORT_LIVE:
	case EV_PORT_FREE:
	case EV_REFUSED:
	case EV_PORT_FAULT:
	case EV_SNI_SET:
	case EV_SNI_DEL:
		break;
	default:
		return 0;
	}
	if (!(ev->has & F_ROUTE))
		return 0;
	/* an SNI decision is a TLSRoute's hostname's */
	decision_owner(owner, sizeof(owner), ev->cluster, ev->type ==
	    EV_SNI_SET || ev->type == EV_SNI_DEL ? "tls" : ev->has & F_RKIND ?
	    ev->rkind : "", ev->ns, ev->name, (size_t)ev->route);
	if (ev->type == EV_PORT_FREE || ev->type == EV_SNI_DEL) {
		free(smap_del(&decisions, owner));
		return 1;
	}
	if ((a = smap_get(&decisions, owner)) == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL)
			fatal("calloc");
		smap_put(&decisions, owner, a);
	}
	switch (ev->type) {
	case EV_PORT_SET:
		if (a->port != ev->port) {
			a->live = 0;
			a->fault[0] = '\0';
			a->pf[0] = '\0';
		}
		a->port = (unsigned)ev->port;
		a->why[0] = '\0';
		break;
	case EV_PORT_LIVE:
		if (a->port == ev->port)
			a->live = 1;
		if (a->port == ev->port && (ev->has & F_PROOF))
			memcpy(a->pf, ev->pf, sizeof(a->pf));
		break;
	case EV_REFUSED:
		snprintf(a->why, sizeof(a->why), "%s", ev->why);
		break;
	case EV_SNI_SET:
		a->live = 1;
		a->why[0] = '\0';
		break;
	case EV_PORT_FAULT:
		if (a->port == ev->port)
			snprintf(a->fault, sizeof(a->fault), "%s",
			    ev->has & F_WHY ? ev->why : "");
		break;
	}
	return 1;
}

void
decisions_reset(void)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;

	while ((e = smap_next(&decisions, &it)) != NULL)
		free(e->val);
	smap_free(&decisions);
	it = (struct smap_iter){ 0, NULL };
	while ((e = smap_next(&alloc_clusters, &it)) != NULL)
		free(e->val);
	smap_free(&alloc_clusters);
	feed_seq = 0;
}

const char *
decisions_cluster_next(struct smap_iter *it, uint64_t *since)
{
	struct smap_ent *e = smap_next(&alloc_clusters, it);

	if (e == NULL)
		return NULL;
	*since = *(uint64_t *)e->val;
	return e->key;
}

uint64_t
decisions_seq(void)
{
	return feed_seq;
}
