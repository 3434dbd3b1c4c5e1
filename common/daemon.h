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
	int		 foreground;
	int		 verbose;
	int		 check;
	int		 sigfd;
};

/*
 * Parse -f -n -d -v (and -p when needs_proxy), load the config (or exit 1
 * with the error naming the key and line), print it and exit 0 under -n,
 * set up logging, the run folder and the signalfd.
 */
void	daemon_start(struct daemon *, int argc, char **argv, const char *name,
	    int needs_proxy, struct config *);

/* The next signal waiting on the signalfd, 0 if none. */
int	daemon_signal(struct daemon *);

#endif
