/*
 * watcherd — discovery: which versions of each API group a cluster serves,
 * and from them each resource's version (informer.c's table).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "watcherd.h"

/*
 * Discovery of an API group: the versions it serves, from which each of
 * its resources picks the first of its own preferred ones.  A group that
 * is not served (404) is an answer when it is optional (the Gateway API
 * need not be installed): looked for again a minute later.
 */
static void
disc_done(struct http_req *req, long code, const char *body, size_t len,
    const char *err)
{
	struct disc *d = req->arg;
	struct cluster *cl = d->cl;
	const char *const *pref;
	json_t *root, *v;
	const char *s;
	size_t i;
	int r, g = d->grp, any = 0;

	d->req = NULL;
	if (err == NULL)
		master_ok(cl);
	d->served[0] = '\0';
	root = code == 200 ? json_loadb(body, len, 0, NULL) : NULL;
	json_array_foreach(json_object_get(root, "versions"), i, v) {
		s = json_string_value(json_object_get(v, "version"));
		if (s != NULL && strlen(s) < 16 && strlen(d->served) + strlen(s)
		    + 2 < sizeof(d->served))
			snprintf(d->served + strlen(d->served),
			    sizeof(d->served) - strlen(d->served), "%s%s,",
			    d->served[0] ? "" : ",", s);
	}
	json_decref(root);
	for (r = 0; r < RES_COUNT; r++) {
		if (informer_group(r) != g)
			continue;
		cl->ver[r][0] = '\0';
		for (pref = informer_versions(r); *pref != NULL; pref++) {
			char pat[20];

			snprintf(pat, sizeof(pat), ",%s,", *pref);
			if (strstr(d->served, pat) != NULL) {
				strcpy(cl->ver[r], *pref);
				any = 1;
				log_info("%s: %ss at %s/%s", cl->name,
				    informer_kind(r), informer_group_name(g),
				    *pref);
				break;
			}
		}
	}
	if (any) {
		d->known = 1;
		d->backoff = 0;
		return;
	}
	if ((code == 404 || code == 200) && !informer_group_required(g)) {
		/* none of ours here: looked for again a minute later */
		d->known = 1;
		d->served[0] = '\0';
		d->at = now_ms() + jitter(60000);
		return;
	}
	if (err != NULL && master_failed(cl, req)) {
		d->at = 0;	/* another master, at once */
		return;
	}
	d->backoff = d->backoff ? (d->backoff * 2 > 60000 ? 60000 :
	    d->backoff * 2) : 1000;
	d->at = now_ms() + jitter(d->backoff);
	log_warnx("%s: %s not served (%s%ld); again in %u ms", cl->name,
	    informer_group_name(g), err ? "transport error, code " : "HTTP ",
	    code, d->backoff);
}

void
discover(struct cluster *cl, uint64_t now)
{
	struct http_auth a;
	struct disc *d;
	char url[1024];
	int g;

	for (g = 0; g < GRP_COUNT; g++) {
		d = &cl->disc[g];
		if (informer_group_name(g) == NULL) {
			d->known = 1;	/* the core API: always there */
			continue;
		}
		/* served: done; absent: looked for again now and then */
		if ((d->known && d->served[0] != '\0') || d->req != NULL ||
		    now < d->at)
			continue;
		master_auth(cl, &a);
		snprintf(url, sizeof(url), "%s/apis/%s", cl->creds.server,
		    informer_group_name(g));
		d->cl = cl;
		d->grp = g;
		d->req = http_start("GET", url, &a, NULL, NULL, 30000,
		    disc_done, NULL, d);
	}
}

