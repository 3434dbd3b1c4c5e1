/*
 * watcherd — string-keyed hash map.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "log.h"
#include "smap.h"

static size_t
hash(const char *s)
{
	return (size_t)hash_fnv1a(s);
}

static void
grow(struct smap *m)
{
	struct smap_ent **nb, *e, *next;
	size_t n = m->nb ? m->nb * 2 : 64, i;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		fatal("smap");
	for (i = 0; i < m->nb; i++)
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			e->next = nb[hash(e->key) & (n - 1)];
			nb[hash(e->key) & (n - 1)] = e;
		}
	free(m->b);
	m->b = nb;
	m->nb = n;
}

static struct smap_ent **
slot(const struct smap *m, const char *key)
{
	struct smap_ent **p;

	if (m->nb == 0)
		return NULL;
	for (p = &m->b[hash(key) & (m->nb - 1)]; *p != NULL; p = &(*p)->next)
		if (strcmp((*p)->key, key) == 0)
			return p;
	return p;
}

void *
smap_get(const struct smap *m, const char *key)
{
	struct smap_ent **p = slot(m, key);

	return p != NULL && *p != NULL ? (*p)->val : NULL;
}

void *
smap_put(struct smap *m, const char *key, void *val)
{
	struct smap_ent **p, *e;
	void *old;

	if (m->n >= m->nb)
		grow(m);
	p = slot(m, key);
	if (*p != NULL) {
		old = (*p)->val;
		(*p)->val = val;
		return old;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL ||
	    (e->key = strdup(key)) == NULL)
		fatal("smap");
	e->val = val;
	*p = e;
	m->n++;
	return NULL;
}

void *
smap_del(struct smap *m, const char *key)
{
	struct smap_ent **p = slot(m, key), *e;
	void *val;

	if (p == NULL || *p == NULL)
		return NULL;
	e = *p;
	*p = e->next;
	val = e->val;
	free(e->key);
	free(e);
	m->n--;
	return val;
}

void
smap_free(struct smap *m)
{
	struct smap_ent *e, *next;
	size_t i;

	for (i = 0; i < m->nb; i++)
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e->key);
			free(e);
		}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

struct smap_ent *
smap_next(const struct smap *m, struct smap_iter *it)
{
	if (it->e != NULL && it->e->next != NULL)
		return it->e = it->e->next;
	for (it->i = it->e == NULL ? 0 : it->i + 1; it->i < m->nb; it->i++)
		if (m->b[it->i] != NULL)
			return it->e = m->b[it->i];
	return it->e = NULL;
}
