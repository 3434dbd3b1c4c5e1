/*
 * renderd — the route table from a state file (-T), for golden tests and
 * for looking at what a state renders to without a bus.
 *
 * The file holds JSON lines, one event a line in the shape event_json()
 * writes.  Each line passes event_from_json(), the validators the bus
 * uses, before routes_apply() sees it: a state file can put nothing into a
 * config that an event from allocd could not.  Blank lines are skipped;
 * anything else that is not a valid event stops the load.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

static int
blank(const char *s)
{
	return s[strspn(s, " \t\r\n")] == '\0';
}

int
state_load(struct routes *r, const char *path, char *err, size_t errlen)
{
	char *line = NULL, why[256];
	size_t cap = 0;
	unsigned long lineno = 0;
	json_error_t jerr;
	struct event ev;
	ssize_t n;
	json_t *j;
	FILE *fp;
	int rc = -1;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, fp)) != -1) {
		lineno++;
		if ((size_t)n == strlen(line) && blank(line))
			continue;
		/*
		 * NULs get past the parser so that event_from_json() refuses
		 * them field by field, as event_decode() does.
		 */
		j = json_loadb(line, (size_t)n, JSON_ALLOW_NUL |
		    JSON_REJECT_DUPLICATES, &jerr);
		if (j == NULL) {
			snprintf(err, errlen, "%s:%lu: not JSON: %s", path,
			    lineno, jerr.text);
			goto done;
		}
		if (event_from_json(&ev, j, why, sizeof(why)) == -1) {
			json_decref(j);
			snprintf(err, errlen, "%s:%lu: %s", path, lineno, why);
			goto done;
		}
		json_decref(j);
		routes_apply(r, &ev);
		event_free(&ev);
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	rc = 0;
 done:
	free(line);
	fclose(fp);
	return rc;
}
