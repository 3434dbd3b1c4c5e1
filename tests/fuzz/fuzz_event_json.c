/*
 * fuzz_event_json — a line of a state file (renderd -T, the golden
 * inputs) through event_from_json(), parsed the way renderd/state.c
 * parses it.
 *
 * An event the file may say is one the bus could carry: whatever
 * event_from_json() accepts must encode and decode again.
 */
#include <stdint.h>
#include <stdlib.h>

#include "event.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct event ev, again;
	unsigned char *buf;
	size_t len;
	char err[256];
	json_t *j;

	j = json_loadb((const char *)data, size, JSON_ALLOW_NUL |
	    JSON_REJECT_DUPLICATES, NULL);
	if (j == NULL)
		return 0;
	err[0] = '\0';
	if (event_from_json(&ev, j, err, sizeof(err)) == -1) {
		json_decref(j);
		if (err[0] == '\0')
			abort();	/* a refusal always says why */
		return 0;
	}
	json_decref(j);
	if ((j = event_json(&ev)) == NULL)
		abort();
	json_decref(j);
	if (event_encode(&ev, &buf, &len) == -1 ||
	    event_decode(&again, buf, len, err, sizeof(err)) == -1)
		abort();
	free(buf);
	event_free(&again);
	event_free(&ev);
	return 0;
}
