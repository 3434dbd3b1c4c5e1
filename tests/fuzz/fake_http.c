/*
 * tests/fuzz — watcherd's HTTP seam, faked (see fake_http.h).
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "fake_http.h"

#define FAKE_MAX	256		/* one cluster never has this many */

struct http_req	*__wrap_http_start(const char *, const char *,
		    const struct http_auth *, const char *, const char *, long,
		    http_done_fn, http_data_fn, void *);
void		 __wrap_http_cancel(struct http_req *);
int		 __wrap_getaddrinfo_a(int, struct gaicb *[], int,
		    struct sigevent *);
int		 __wrap_gai_error(struct gaicb *);

static struct http_req	*pending[FAKE_MAX];
static char		*what[FAKE_MAX];	/* "METHOD URL" */
static size_t		 npending;

struct http_req *
__wrap_http_start(const char *method, const char *url,
    const struct http_auth *a, const char *ctype, const char *body,
    long timeout_ms, http_done_fn done, http_data_fn data, void *arg)
{
	struct http_req *r;

	(void)a;
	(void)ctype;
	(void)timeout_ms;
	if (npending == FAKE_MAX)
		abort();		/* requests pile up without end */
	if ((r = calloc(1, sizeof(*r))) == NULL)
		abort();
	r->done = done;
	r->data = data;
	r->arg = arg;
	r->last_byte = now_ms();
	if (body != NULL && (r->post = strdup(body)) == NULL)
		abort();
	if (asprintf(&what[npending], "%s %s", method, url) == -1)
		abort();
	pending[npending++] = r;
	return r;
}

/* Off the queue, and freed as http.c frees it. */
static void
forget(struct http_req *r)
{
	size_t i;

	for (i = 0; i < npending; i++)
		if (pending[i] == r)
			break;
	if (i == npending)
		abort();		/* not ours, or freed twice */
	free(what[i]);
	memmove(&pending[i], &pending[i + 1], (npending - i - 1) *
	    sizeof(pending[0]));
	memmove(&what[i], &what[i + 1], (npending - i - 1) *
	    sizeof(what[0]));
	npending--;
	free(r->body);
	free(r->post);
	free(r);
}

void
__wrap_http_cancel(struct http_req *r)
{
	if (r != NULL)
		forget(r);
}

/*
 * Names are looked up by no resolver: one that starts with "a" resolves
 * to 192.0.2.1 (a numeric lookup, no query), any other to nothing, and
 * at once.
 */
int
__wrap_getaddrinfo_a(int mode, struct gaicb *list[], int n,
    struct sigevent *sev)
{
	struct addrinfo hints;
	int i;

	(void)mode;
	(void)sev;
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST;
	hints.ai_socktype = SOCK_STREAM;
	for (i = 0; i < n; i++) {
		list[i]->ar_result = NULL;
		if (list[i]->ar_name[0] == 'a' && getaddrinfo("192.0.2.1",
		    NULL, &hints, &list[i]->ar_result) != 0)
			list[i]->ar_result = NULL;
	}
	return 0;
}

int
__wrap_gai_error(struct gaicb *req)
{
	return req->ar_result != NULL ? 0 : EAI_NONAME;
}

struct http_req *
fake_http_find(const char *s)
{
	size_t i;

	for (i = 0; i < npending; i++)
		if (s == NULL || strstr(what[i], s) != NULL)
			return pending[i];
	return NULL;
}

void
fake_http_answer(struct http_req *r, long code, const char *body,
    size_t len, const char *err, size_t chunk)
{
	size_t off, n;
	char *b;

	/* http.c hands a buffered body over NUL-terminated */
	if ((b = malloc(len + 1)) == NULL)
		abort();
	memcpy(b, body, len);
	b[len] = '\0';
	body = b;
	if (r->data != NULL && code == 200 && err == NULL) {
		r->code = code;
		for (off = 0; off < len; off += n) {
			n = chunk == 0 || len - off < chunk ? len - off : chunk;
			if (r->data(r, body + off, n) == -1) {
				/* curl: the write callback failed */
				r->done(r, 0, NULL, 0, "Failure writing output "
				    "to destination");
				forget(r);
				free(b);
				return;
			}
		}
		r->done(r, 200, "", 0, NULL);
	} else
		r->done(r, code, body, len, err);
	forget(r);
	free(b);
}

void
fake_http_drain(void)
{
	int rounds;

	for (rounds = 0; npending > 0; rounds++) {
		if (rounds == 4 * FAKE_MAX)
			abort();
		fake_http_answer(pending[0], 0, "", 0, "Connection closed",
		    0);
	}
}

size_t
fake_http_pending(void)
{
	return npending;
}
