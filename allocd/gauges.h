/*
 * allocd — clusters, routes and ports as Prometheus gauges (gauges.c).
 */
#ifndef ALLOCD_GAUGES_H
#define ALLOCD_GAUGES_H

#include "config.h"
#include "store.h"

struct gauges {
	struct store		*st;
	const struct config	*conf;
	unsigned		 capacity;	/* ports that can be given out */
};

/* Count on every scrape (metrics_on_scrape), from the HTTP thread. */
void	gauges_init(struct gauges *, struct store *, const struct config *);
void	gauges_scrape(void *);

#endif
