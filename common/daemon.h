/*
 * portico — what every daemon does at start: options, config, logging,
 * the run folder, and signals delivered on a signalfd; its pid file, and
 * what SIGHUP means.
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
	const char	*shard;		/* -s, watcherd: "I/N" or "I" */
	int		 foreground;
	int		 verbose;
	int		 check;
	int		 sigfd;
	int		 log_format;	/* -l: LOG_*, or -1 for the config's */
	struct config	*conf;		/* the one the daemon runs with */
};

/*
 * Parse -f -n -d -v -l -V (and -p, -R, -T, -s by flags), load the config (or exit 1
 * with the error naming the key and line), print it and exit 0 under -n,
 * set up logging, the run folder and the signalfd.
 */
#define DAEMON_PROXY	0x1	/* takes -p proxy */
#define DAEMON_REPLAY	0x2	/* takes -R store (allocd) */
#define DAEMON_RENDER	0x4	/* takes -T statefile (renderd) */
#define DAEMON_CHECK	0x8	/* -n returns: the daemon checks more */
#define DAEMON_SHARD	0x10	/* takes -s shard (watcherd) */

void	daemon_start(struct daemon *, int argc, char **argv, const char *name,
	    int flags, struct config *);

/*
 * The next signal waiting on the signalfd, 0 if none.  SIGHUP is handled
 * here before it is returned: the configuration file is read again; a bad
 * one is logged and the running one kept; of a good one, the keys that are
 * safe to change live are applied ([portico] log_format and log_level,
 * every [limits] key, which allocd reads at each decision), and each other
 * changed key of a section the daemon reads is logged as needing a restart.
 */
int	daemon_signal(struct daemon *);

/*
 * Open the control socket "<run_dir>/<name>.ctl" (control.h) on the loop
 * that daemon_start() set up, then write "<run_dir>/<name>.pid"
 * (config_ready); remove both at exit, normal or fatal, if they are still
 * ours.  -1 if either cannot be made.
 */
int	daemon_ready(struct daemon *, const char *name);

/* The version, from git describe at build time ("unknown" outside git). */
const char *daemon_version(void);

#endif
