/*
 * applyd — HAProxy changes through the runtime API (see hapruntime.c).
 */
#ifndef APPLYD_HAPRUNTIME_H
#define APPLYD_HAPRUNTIME_H

#include <stddef.h>

/*
 * Apply the change from configuration old to new through the worker's
 * runtime API at sock: 0 done, 1 it needs a reload (more than servers and
 * map keys changed), -1 the API refused something (reason in err: reload).
 */
int	hap_update(const char *sock, const char *old, const char *new,
	    char *err, size_t);

/* Write the map files a configuration names, derived from its backends. */
int	hap_write_maps(const char *text);

/* Delete the servers left in maintenance whose connections have ended. */
void	hap_drain(const char *sock);
/* A reload replaced every server: nothing is draining any more. */
void	hap_forget_drains(void);

#endif
