/*
 * portico — what every daemon does at start: options, config, logging,
 * the run folder, and signals delivered on a signalfd.
 */
#ifndef PORTICO_DAEMON_H
#define PORTICO_DAEMON_H

#include "config.h"

struct daemon {
	const char	*name;
	const char	*conf_path;
	const char	*proxy;		/* -p, renderd and applyd */
	const char	*replay;	/* -R, allocd */
	const char	*render;	/* -T, renderd: a state file */
	int		 foreground;
	int		 verbose;
	int		 check;
	int		 sigfd;
};

/*
 * Parse -f -n -d -v (and -p, -R, -T by flags), load the config (or exit 1
 * with the error naming the key and line), print it and exit 0 under -n,
 * set up logging, the run folder and the signalfd.
 */
#define DAEMON_PROXY	0x1	/* takes -p proxy */
#define DAEMON_REPLAY	0x2	/* takes -R store (allocd) */
#define DAEMON_RENDER	0x4	/* takes -T statefile (renderd) */
#define DAEMON_CHECK	0x8	/* -n returns: the daemon checks more */

void	daemon_start(struct daemon *, int argc, char **argv, const char *name,
	    int flags, struct config *);

/* The next signal waiting on the signalfd, 0 if none. */
int	daemon_signal(struct daemon *);

#endif
