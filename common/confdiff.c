/*
 * portico — what changed between two configurations, key by key, driven by
 * config.c's keyword table: what SIGHUP applies and what it says needs a
 * restart (daemon.c).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

static int
named(const char *section)
{
	return strcmp(section, "proxy") == 0 || strcmp(section, "cluster") == 0;
}

/*
 * The keys whose bytes differ: of section sect (a "proxy" or "cluster"
 * struct, reported under label), or with sect NULL of the unnamed sections
 * of struct config.  Both configurations were made by config_load from
 * zeroed memory, so equal values are equal bytes, to the end of each field.
 */
static int
diff_keys(const char *sect, const char *label, const char *a, const char *b,
    config_diff_cb *fn, void *arg)
{
	struct config_key k;
	size_t i;
	int n = 0;

	for (i = 0; i < config_nkeys(); i++) {
		config_key(i, &k);
		if ((sect != NULL ? strcmp(k.section, sect) != 0 :
		    named(k.section)) ||
		    memcmp(a + k.off, b + k.off, k.size) == 0)
			continue;
		fn(arg, sect != NULL ? label : k.section, k.key);
		n++;
	}
	return n;
}

/* The i-th of n structs of size stride whose name (the first field) is name. */
static const char *
find_named(const char *base, int n, size_t stride, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(base + (size_t)i * stride, name) == 0)
			return base + (size_t)i * stride;
	return NULL;
}

/*
 * [proxy.NAME] or [cluster.NAME] sections, matched by name: the keys that
 * changed in those both have, once with key NULL each one only a or b has.
 */
static int
diff_named(const char *sect, const char *a, int na, const char *b, int nb,
    size_t stride, config_diff_cb *fn, void *arg)
{
	char label[96];
	const char *x, *y;
	int i, n = 0;

	for (i = 0; i < na; i++) {
		x = a + (size_t)i * stride;
		snprintf(label, sizeof(label), "%s.%s", sect, x);
		if ((y = find_named(b, nb, stride, x)) != NULL)
			n += diff_keys(sect, label, x, y, fn, arg);
		else {
			fn(arg, label, NULL);
			n++;
		}
	}
	for (i = 0; i < nb; i++) {
		y = b + (size_t)i * stride;
		if (find_named(a, na, stride, y) != NULL)
			continue;
		snprintf(label, sizeof(label), "%s.%s", sect, y);
		fn(arg, label, NULL);
		n++;
	}
	return n;
}

int
config_diff(const struct config *a, const struct config *b,
    config_diff_cb *fn, void *arg)
{
	int n;

	n = diff_keys(NULL, NULL, (const char *)a, (const char *)b, fn, arg);
	n += diff_named("proxy", (const char *)a->proxies, a->nproxies,
	    (const char *)b->proxies, b->nproxies, sizeof(a->proxies[0]),
	    fn, arg);
	n += diff_named("cluster", (const char *)a->clusters, a->nclusters,
	    (const char *)b->clusters, b->nclusters, sizeof(a->clusters[0]),
	    fn, arg);
	return n;
}

void
config_copy_key(struct config *dst, const struct config *src,
    const char *section, const char *key)
{
	struct config_key k;
	size_t i;

	for (i = 0; i < config_nkeys(); i++) {
		config_key(i, &k);
		if (strcmp(k.section, section) == 0 && strcmp(k.key, key) == 0)
			memcpy((char *)dst + k.off, (const char *)src + k.off,
			    k.size);
	}
}
