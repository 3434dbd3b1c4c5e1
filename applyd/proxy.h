/*
 * applyd — the proxy driver interface.  One driver per proxy kind; each
 * validates a candidate configuration with the proxy's own checker and
 * starts, reloads, watches and stops the proxy.
 */
#ifndef APPLYD_PROXY_H
#define APPLYD_PROXY_H

#include <sys/types.h>

#include <stddef.h>

#include "config.h"

struct proxy {
	const struct config	*conf;
	const struct proxy_conf	*pc;
	pid_t			 pid;		/* master, 0 if not running */
	int			 child;		/* pid is our child */
	char			 master_sock[CONF_RUNDIR + 80];
	char			 pidfile[CONF_RUNDIR + 80];
};

void	hap_init(struct proxy *, const struct config *,
	    const struct proxy_conf *);
/* 0 valid; -1 with the checker's first complaint in err. */
int	hap_check(struct proxy *, const char *path, char *err, size_t);
/* Adopt a master left running by an earlier applyd. */
int	hap_adopt(struct proxy *);
int	hap_start(struct proxy *, char *err, size_t);
int	hap_reload(struct proxy *, char *err, size_t);
int	hap_running(struct proxy *);
/* A child of ours exited: forget it if it was the master. */
void	hap_reaped(struct proxy *, pid_t, int status);
void	hap_stop(struct proxy *);

#endif
