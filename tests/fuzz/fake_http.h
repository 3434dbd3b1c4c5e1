/*
 * tests/fuzz — watcherd's HTTP seam, faked for the harnesses.
 *
 * The harnesses link watcherd whole but for main() and the network:
 * http_start() and http_cancel() are wrapped at link time (--wrap), so
 * that a request only queues, and the harness answers it, as the server
 * it stands for, through the callbacks watcherd gave, as http.c would call
 * them.  Everything else is the daemon's own code.
 */
#ifndef FUZZ_FAKE_HTTP_H
#define FUZZ_FAKE_HTTP_H

#include <stddef.h>

#include "http.h"

/*
 * The oldest request outstanding whose method and URL ("GET https://...")
 * contain s (NULL: any), or NULL.  It stays queued until answered.
 */
struct http_req	*fake_http_find(const char *s);

/*
 * Answer r and forget it.  A stream (a watch) that the server accepts
 * (200, err NULL) gets body through its data callback in pieces of chunk
 * bytes (0: whole) before it ends; any other answer goes to done whole.
 */
void	 fake_http_answer(struct http_req *r, long code, const char *body,
	    size_t len, const char *err, size_t chunk);

/*
 * Every request still outstanding ends as a closed connection would end
 * it.  Aborts if answering keeps making new ones: a client that retries
 * at once, without a backoff, would hammer the server.
 */
void	 fake_http_drain(void);

/* Requests outstanding. */
size_t	 fake_http_pending(void);

#endif
