/*
 * portico — who may speak on the bus.
 *
 * Each server socket of the bus is a door, and each door admits the roles
 * that may speak there:
 *	alloc_in		allocd's input: watcherd, applyd
 *	alloc_feed		allocd's PUB and SINCE: renderd, watcherd (its
 *				write-backs), porticoctl (read only)
 *	render_feed		renderd's PUB and SINCE: applyd, porticoctl
 * On tcp:// every socket speaks CURVE ([bus] keys, keys.h): a server
 * presents its role's key pair and asks the ZAP handler here about every
 * client's public key, which must be listed in the .pub of a role the
 * door admits; a client presents its own pair and takes the first key of
 * its server role's .pub as the server's.  On ipc:// (the 0700 run
 * folder) the ZAP handler is asked too, with the NULL mechanism, and
 * checks the uid the kernel gives for the peer (libzmq puts SO_PEERCRED's
 * uid:gid:pid in the address it hands ZAP): ours, or root's.
 *
 * The ZAP handler answers on the daemon's loop.  A refusal is logged (the
 * door, the peer's address, the first characters of its key: never a
 * secret) and counted as "bus_refused", as is a handshake that fails
 * before ZAP is asked (a client without CURVE, or one that does not know
 * the server's key), which the server's socket monitor tells.
 */
#ifndef PORTICO_ZAP_H
#define PORTICO_ZAP_H

#include <stddef.h>

#include "config.h"

/*
 * Read the keys that a process of role (keys.h's names) needs: its own
 * pair, the public keys of the roles its doors admit, and the server keys
 * of the doors it knocks at.  Without [bus] keys, nothing (config_load
 * refuses tcp:// then).  conf is kept: the endpoints name the doors.
 * 0, or -1 with the reason in err.
 */
int	zap_init(const struct config *, const char *role, char *err,
	    size_t errlen);

/*
 * Before a bind (bus_bind) or a connect (bus_connect) of ep: the socket
 * options that make it a CURVE server or client, or ask ZAP about ipc
 * peers.  The first server socket starts the ZAP handler on the loop.
 * A tcp:// endpoint without keys, or one that is no door of the
 * configuration, is fatal: nothing unauthenticated is ever bound.
 */
void	zap_server(void *sock, const char *ep);
void	zap_client(void *sock, const char *ep);

/* Close the ZAP handler and the monitors (bus_term, at exit). */
void	zap_close(void);

/* Clients refused, by ZAP or in the handshake. */
extern unsigned long zap_refused;

#endif
