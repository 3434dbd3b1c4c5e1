/*
 * fuzz_event — event_decode() on untrusted bytes, as the bus, allocd's log
 * and its snapshots hand them over.
 *
 * Beyond "does not crash": an event that decodes is one allocd would act
 * on, so it must encode again (every required field there), decode from
 * that encoding, and encode to the same bytes a second time; its copy and
 * its JSON dump must not fail either.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct event ev, again, copy;
	unsigned char *b1, *b2;
	size_t l1, l2;
	char err[256];
	json_t *j;

	err[0] = '\0';
	if (event_decode(&ev, data, size, err, sizeof(err)) == -1) {
		if (err[0] == '\0')
			abort();	/* a refusal always says why */
		return 0;
	}
	if ((j = event_json(&ev)) == NULL)
		abort();
	json_decref(j);
	if (event_copy(&copy, &ev) == -1)
		abort();
	event_free(&copy);
	if (!event_known(ev.type)) {
		event_free(&ev);
		return 0;
	}
	if (event_encode(&ev, &b1, &l1) == -1 ||
	    event_decode(&again, b1, l1, err, sizeof(err)) == -1 ||
	    event_encode(&again, &b2, &l2) == -1)
		abort();
	if (l1 != l2 || memcmp(b1, b2, l1) != 0)
		abort();
	free(b1);
	free(b2);
	event_free(&again);
	event_free(&ev);
	return 0;
}
