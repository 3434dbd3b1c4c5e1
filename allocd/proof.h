/*
 * allocd — proof that portico wrote an address for an object.
 *
 * Beside each address it writes back, watcherd writes the proof allocd
 * made when the port went live: an HMAC-SHA256, under a key only allocd
 * holds, over the owner (cluster, namespace, name, route), the object's
 * uid and the port.  A tenant can copy an address and its proof onto
 * another object, but the copy proves nothing there: after a store loss
 * only proven claims are adopted.
 */
#ifndef ALLOCD_PROOF_H
#define ALLOCD_PROOF_H

#include <stddef.h>

#include "config.h"
#include "event.h"

#define PROOF_KEY_MIN	32
#define PROOF_KEY_MAX	4096
#define PROOF_LEN	43		/* base64url of 32 bytes, no padding */

/*
 * Read the key named by [store] proof_key, or <store>-proof.key when none
 * is named.  With create, a missing default key is made (32 random bytes,
 * 0600) as <store>-proof.key.new, and *created says so (also when that is
 * read again: no store was kept under it); a named key is never made.  A
 * key file must be a regular file of ours, mode 0600 or stricter, 32 to
 * 4095 bytes.  Returns 0, or -1 with the reason logged.
 */
int	proof_load(const struct config *, int create, int *created);
/* A store is committed under the key made at this start: name it. */
int	proof_keep(const struct config *);
/* The key, given directly (tests). */
void	proof_set_key(const void *, size_t);
/* The key file's path for conf into buf. */
void	proof_path(const struct config *, char *, size_t);

/* Set d->pf: the proof of d's owner at d->port for the object uid. */
void	proof_put(struct event *d, const char *uid);
/*
 * Does the observation prove its claim: the port on the object (had) with
 * a proof made for this owner, this uid and that port?
 */
int	proof_holds(const struct event *obs);

#endif
