/*
 * applyd — HAProxy's runtime API, the client (see hapcli.c).
 */
#ifndef APPLYD_HAPCLI_H
#define APPLYD_HAPCLI_H

#include <stddef.h>

struct hapcli;

/* The connection to the runtime API at path, for one update; NULL: none. */
struct hapcli	*hapcli_get(const char *path);
/* A command for the next round trip: -1 when the stream is lost. */
int	hapcli_queue(struct hapcli *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/*
 * A command whose answer decides what follows, after those queued: 0 when
 * it succeeded, -1 with its answer in out (not the update's failure).
 */
int	hapcli_ask(struct hapcli *, char *out, size_t outlen,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The update's end: 0, or -1 with its first failure in err. */
int	hapcli_done(struct hapcli *, char *err, size_t errlen);
/* The stream is lost: nothing more can be asked on it. */
int	hapcli_broken(const struct hapcli *);

#endif
