/*
 * applyd — the proxy driver interface.  One driver per proxy kind; each
 * validates a candidate configuration with the proxy's own checker and
 * starts, reloads, watches and stops the proxy.  applyd.c calls the driver
 * through its ops only.
 */
#ifndef APPLYD_PROXY_H
#define APPLYD_PROXY_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "routes.h"

struct proxy;

/*
 * Each returns 0, or -1 with the reason in err (quoted, fit for a log).
 * check, start and reload may also return 1: the work goes on as a job
 * (see below) and p->done says how it ended.  The drivers' tables are
 * positional: keep this order.
 */
struct proxy_ops {
	const char	*kind;
	const char	*checker;	/* for messages: "haproxy -c" */
	const char	*comm;		/* its /proc/PID/comm */
	int		 stopsig;	/* graceful stop: connections finish */
	void	(*init)(struct proxy *);
	/* Validate the candidate at path; nothing running is touched. */
	int	(*check)(struct proxy *, const char *path, char *err, size_t);
	/* Adopt a proxy left running by an earlier applyd. */
	int	(*adopt)(struct proxy *);
	/* Start, or reload, with pc->config; done only once it serves it. */
	int	(*start)(struct proxy *, char *err, size_t);
	int	(*reload)(struct proxy *, char *err, size_t);
	int	(*running)(struct proxy *);
	/* A child of ours exited: forget it if it was the master. */
	void	(*reaped)(struct proxy *, pid_t, int status);
	void	(*stop)(struct proxy *);
	/*
	 * Optional, and given route tables, never text.  files: write what a
	 * configuration needs beside it (map files) for table r, before it is
	 * checked or served.  update: change the running proxy from table
	 * old to new without a reload, for the ports listed and (api) the
	 * names on the shared TLS port (API routes and TLSRoute hostnames,
	 * both): 0 done, 1 it needs a reload, -1 failed (err; a reload
	 * follows).  idle: called every few seconds; 1 asks for a reload of
	 * what is served (a port left out came free).  busy: the ports of r
	 * another program holds, a bit each, which the proxy must not bind
	 * (NULL: none); probe: look at the host again, for a start or a
	 * reload.
	 */
	int	(*files)(struct proxy *, const struct routes *r);
	int	(*update)(struct proxy *, const struct routes *old,
		    const struct routes *new, const unsigned *ports,
		    size_t nports, int api, char *err, size_t);
	int	(*idle)(struct proxy *);
	const unsigned char *(*busy)(struct proxy *, const struct routes *r,
		    int probe);
};

/*
 * A job: a check, a start or a reload under way.  applyd's loop never
 * waits on its proxy: a driver begins the job and returns 1, the loop
 * follows it (a child's exit through SIGCHLD, its output through a pipe,
 * and a step function called at short intervals until a deadline), and
 * p->done is told the outcome.  One job at a time.
 */
enum { JOB_NONE, JOB_CHECK, JOB_START, JOB_RELOAD };

/* A job's step: 1 not yet, 0 done, -1 failed (the reason in err). */
typedef int proxy_step_fn(struct proxy *, void *arg, char *err, size_t);

struct proxy_job {
	int		 kind;
	pid_t		 pid;		/* the child it follows, 0 if none */
	int		 exited;	/* pid was reaped, with status */
	int		 status;
	int		 outfd;		/* the checker's output, or -1 */
	char		 out[2048];	/* the start of that output */
	size_t		 outlen;
	const char	*marker;	/* the checker's error tag */
	const char	*why;		/* start: what the proxy complained of */
	proxy_step_fn	*step;
	void		*arg;
	unsigned	 every;		/* ms between two steps */
	unsigned	 limit;		/* ms it may take in all */
	uint64_t	 next;		/* the next step, ms */
	uint64_t	 deadline;	/* ms */
};

struct proxy {
	const struct proxy_ops	*ops;
	const struct config	*conf;
	const struct proxy_conf	*pc;
	pid_t			 pid;		/* master, 0 if not running */
	int			 child;		/* pid is our child */
	char			 pidfile[PATH_MAX];
	char			 master_sock[PATH_MAX];	/* HAProxy */
	char			 stats_sock[PATH_MAX];	/* HAProxy's runtime API */
	char			 errlog[PATH_MAX];	/* nginx */
	int			 installed;	/* Envoy: our files are in place */
	struct proxy_job	 job;
	/* A job ended: rc 0 done, -1 failed with the reason in err. */
	void			(*done)(struct proxy *, int rc, const char *err);
};

extern const struct proxy_ops haproxy_ops;
extern const struct proxy_ops nginx_ops;
extern const struct proxy_ops envoy_ops;

/* The driver for pc->kind, initialised; -1 if there is none. */
int	proxy_init(struct proxy *, const struct config *,
	    const struct proxy_conf *);

/*
 * For the drivers (job.c).  Each begins a job and returns 1, or -1 with
 * the reason in err.
 *
 * proxy_check: run a checker; it passes when it exits 0, else the first
 * line of its output holding marker is the reason.
 * proxy_start: start argv as the master; done once up (a step, called
 * with p->job.pid) returns 0; it exiting first, or START_WAIT_MS passing,
 * is a failed start (why, when up filled it, says what it complained of).
 * proxy_follow: a reload; step (at once, then every ms) signals the
 * proxy and says when it is done; failed after limit ms.
 */
int	proxy_check(struct proxy *, char *const argv[], const char *marker,
	    char *err, size_t);
int	proxy_start(struct proxy *, char *const argv[], proxy_step_fn *up,
	    void *arg, const char *why, char *err, size_t);
int	proxy_follow(struct proxy *, proxy_step_fn *, void *arg,
	    unsigned every, unsigned limit);

/*
 * For applyd's loop (job.c).  proxy_job_fd: a descriptor to poll for
 * input, or -1; proxy_job_wait: ms until the job wants a look, -1 when
 * there is no job; proxy_job_run: look at it (after every poll), which
 * may end it; proxy_reap: on SIGCHLD, the job's child is kept for it and
 * the others go to ops->reaped; proxy_job_cancel: at exit, drop the job
 * (a master being started is kept, for ops->stop).
 */
int	proxy_job_busy(const struct proxy *);
int	proxy_job_fd(const struct proxy *);
long	proxy_job_wait(const struct proxy *, uint64_t now);
void	proxy_job_run(struct proxy *);
void	proxy_reap(struct proxy *);
void	proxy_job_cancel(struct proxy *);
/* Write len bytes to a new path (fsafe_create), complete and fsynced; -1. */
int	proxy_put_file(const char *path, const char *text, size_t len,
	    mode_t mode);
/* The start of a small file, NUL-terminated; its length, or -1. */
ssize_t	proxy_readfile(const char *path, char *buf, size_t len);
/* The PID in the pid file when it is our proxy (see proxy_ours), or 0. */
pid_t	proxy_pidfile(struct proxy *);
/* pid is alive and is this proxy: its binary, serving pc->config. */
int	proxy_ours(struct proxy *, pid_t);
/* Take the master in the pid file as ours (not our child); -1 if none. */
int	proxy_adopt(struct proxy *);
int	proxy_running(struct proxy *);
void	proxy_reaped(struct proxy *, pid_t, int status);
/* ops->stopsig asks the master to stop gracefully; SIGTERM after 5 s. */
void	proxy_stop(struct proxy *);

#endif
