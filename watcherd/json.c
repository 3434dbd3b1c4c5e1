/*
 * watcherd — JSON from the clusters and from PKS, where one object must not
 * be able to hide the others.
 *
 * Kubernetes and PKS carry any string, \u0000 included.  jansson refuses a
 * whole document for one of them, so a single annotation holding a NUL
 * would fail every list of its cluster, and every watch would stop at it,
 * forever.  These documents are parsed with NULs allowed instead, and each
 * object that holds one is dropped by itself: C would read its strings cut
 * short at the NUL, and "21000\0x" is not "21000".
 */
#include <string.h>

#include "watcherd.h"

json_t *
json_untrusted(const char *buf, size_t len)
{
	return json_loadb(buf, len, JSON_ALLOW_NUL, NULL);
}

/*
 * 1 when a string anywhere in v holds a NUL (keys cannot: jansson refuses
 * those at parse time).  The recursion is bounded by jansson's own limit
 * on nesting.
 */
int
json_has_nul(const json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;

	if (v == NULL)
		return 0;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return strlen(json_string_value(v)) != json_string_length(v);
	case JSON_ARRAY:
		json_array_foreach(v, i, e)
			if (json_has_nul(e))
				return 1;
		return 0;
	case JSON_OBJECT:
		json_object_foreach((json_t *)v, key, e)
			if (json_has_nul(e))
				return 1;
		return 0;
	default:
		return 0;
	}
}
