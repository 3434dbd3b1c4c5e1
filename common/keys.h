/*
 * portico — the bus's CURVE keys on disk ([bus] keys = DIR).
 *
 * Per role (allocd, watcherd, renderd, applyd, porticoctl), DIR holds:
 *	<role>.key	the key pair of a process of that role, two lines
 *			"public = <Z85>" and "secret = <Z85>" (40 characters
 *			each; blank lines and # comments allowed); group and
 *			others may not read it, as ssh asks of a private key;
 *	<role>.pub	the public keys allowed for that role, one Z85 a line,
 *			blank lines and # comments allowed (# is a Z85
 *			character, but no key begins with it).  Replicas of one
 *			role may share a key pair or list several keys; a
 *			client of a server role (allocd, renderd) takes the
 *			first key of its .pub as the server's key.
 * A process reads only its own role's .key.
 */
#ifndef PORTICO_KEYS_H
#define PORTICO_KEYS_H

#include <stddef.h>

#define KEYS_Z85	40		/* a CURVE key in Z85 */
#define KEYS_BIN	32		/* ... and in bytes */
#define KEYS_MAX	64		/* keys one .pub file may list */
#define KEYS_FILE_MAX	(64 << 10)	/* a .key or .pub file, in bytes */

enum keys_role {
	ROLE_ALLOCD,
	ROLE_WATCHERD,
	ROLE_RENDERD,
	ROLE_APPLYD,
	ROLE_PORTICOCTL,
	ROLE_COUNT
};

const char *keys_role_name(int role);
/* The role named, or -1. */
int	keys_role(const char *name);

struct keys_pair {
	char		pub[KEYS_Z85 + 1];	/* Z85, NUL-terminated */
	char		sec[KEYS_Z85 + 1];
};

struct keys_list {
	size_t		n;
	unsigned char	key[KEYS_MAX][KEYS_BIN];
};

/* s is 40 characters of Z85 that decode to a key: 0 with it in bin, or -1. */
int	keys_z85(const char *s, size_t len, unsigned char bin[KEYS_BIN]);

/*
 * Read a key pair file: a regular file (a symlink to one is followed, as
 * Kubernetes mounts Secrets), no access for group or others, both keys
 * given once, in Z85, and the public key the one the secret key makes.
 * 0, or -1 with "path:line: reason" in err (never a key's text).
 */
int	keys_read_pair(const char *path, struct keys_pair *, char *err,
	    size_t errlen);

/*
 * Read a list of public keys.  0; 1 when the file does not exist (no key
 * is allowed for that role); -1 with "path:line: reason" in err.
 */
int	keys_read_list(const char *path, struct keys_list *, char *err,
	    size_t errlen);

/* Is bin one of the list's keys? */
int	keys_listed(const struct keys_list *, const unsigned char *bin);

/*
 * porticoctl keygen: a new key pair written to DIR/<role>.key (mode 0600,
 * made with O_EXCL: an existing one is never overwritten), its public key
 * appended to DIR/<role>.pub (made 0644 if absent) and copied into pub.
 * 0, or -1 with the reason in err.
 */
int	keys_generate(const char *dir, const char *role, char pub[KEYS_Z85 + 1],
	    char *err, size_t errlen);

#endif
