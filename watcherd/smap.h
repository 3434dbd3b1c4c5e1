/*
 * watcherd — a string-keyed hash map (chained, power-of-two buckets).
 */
#ifndef WATCHERD_SMAP_H
#define WATCHERD_SMAP_H

#include <stddef.h>

struct smap_ent {
	struct smap_ent	*next;
	char		*key;
	void		*val;
};

struct smap {
	struct smap_ent	**b;
	size_t		  nb;
	size_t		  n;
};

void	*smap_get(const struct smap *, const char *);
/* Insert or replace; returns the value replaced, or NULL. */
void	*smap_put(struct smap *, const char *, void *);
/* Remove; returns the value removed, or NULL. */
void	*smap_del(struct smap *, const char *);
/* Free the table (not the values: take them out with smap_next first). */
void	 smap_free(struct smap *);

/* Iterate: it starts zeroed; returns NULL at the end.  No writes between. */
struct smap_iter {
	size_t		 i;
	struct smap_ent	*e;
};
struct smap_ent *smap_next(const struct smap *, struct smap_iter *);

#endif
