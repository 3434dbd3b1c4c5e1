/*
 * applyd — workload ports another program holds (see held.c).
 */
#ifndef APPLYD_HELD_H
#define APPLYD_HELD_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct held {
	unsigned char	bits[65536 / 8];
	unsigned	n;
	char		ip[64];		/* the address they were probed on */
	int		reuseport;	/* probed as the proxy's listeners bind */
};

/* Start a new probe on ip; what was held is forgotten. */
void	 held_reset(struct held *, const char *ip, int reuseport);
int	 held_has(const struct held *, unsigned port);
/* Is port bound by another program?  If so it is held from now on. */
int	 held_probe(struct held *, unsigned port);
/* Log the held ports after a probe (before: how many were held ahead). */
void	 held_log(const struct held *, unsigned before);
/* Has another program let go of a held port?  1 (logged): reload. */
int	 held_freed(const struct held *);
/*
 * The ports pid listens on (its descriptors, in /proc/net/tcp and tcp6),
 * as a bit set; -1 if /proc cannot tell.
 */
int	 held_listening(pid_t, unsigned char bits[65536 / 8]);

#define HELD_BIT(b, p)	((b)[(p) >> 3] & (1u << ((p) & 7)))

#endif
