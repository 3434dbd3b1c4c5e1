/*
 * portico — daemon start-up, the pid file, and SIGHUP.
 */
#include <sys/signalfd.h>

#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "control.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "loop.h"
#include "zap.h"
#include "version.h"		/* made by the Makefile from git describe */

static char daemon_pidfile[PATH_MAX + 64];

static void
usage(const char *name, int flags)
{
	fprintf(stderr, "usage: %s [-dnVv] [-f config] [-l text|logfmt]%s%s%s%s\n",
	    name,
	    (flags & DAEMON_PROXY) ? " -p proxy" : "",
	    (flags & DAEMON_REPLAY) ? " [-R store]" : "",
	    (flags & DAEMON_RENDER) ? " [-T statefile]" : "",
	    (flags & DAEMON_SHARD) ? " [-s index[/count]]" : "");
	exit(1);
}

/* -l over [portico] log_format; the more verbose of -v and log_level. */
static void
daemon_logconf(const struct daemon *d)
{
	int level = strcmp(d->conf->log_level, "debug") == 0;

	log_setformat(d->log_format != -1 ? d->log_format :
	    log_format_parse(d->conf->log_format));
	log_setverbose(d->verbose > level ? d->verbose : level);
}

struct reload {
	const struct daemon	*d;
	const struct config	*next;
	int			 applied;
	int			 restart;
};

/*
 * What SIGHUP may change under a running daemon: how it logs, watcherd's
 * count of shards, and the
 * [limits] but allow_backends, which only allocd reads, afresh at each decision, and which
 * bind only what is asked for next (a cluster already over a lowered limit
 * keeps what it holds, as after a restart).  Everything else is bound into
 * sockets, the store, watches or a proxy's configuration.
 */
static int
reload_live(const char *section, const char *key)
{
	if (key == NULL)
		return 0;
	/*
	 * allow_backends narrowed must take routes off what they serve: a
	 * restart does it (the resync re-checks every route), SIGHUP would
	 * leave them serving until each is seen again.
	 */
	if (strcmp(section, "limits") == 0)
		return strcmp(key, "allow_backends") != 0;
	/* watcherd -s I lets go of, and takes, clusters (watcherd.8) */
	if (strcmp(section, "clusters") == 0 && strcmp(key, "shards") == 0)
		return 1;
	return strcmp(section, "portico") == 0 &&
	    (strcmp(key, "log_format") == 0 || strcmp(key, "log_level") == 0);
}

/*
 * Whether a daemon reads a section at all, so that a change there needs its
 * restart: [store] is allocd's; [pks], [kubeconfigs], [clusters] and
 * [cluster.NAME] are watcherd's; [proxy.NAME] is allocd's and that proxy's
 * renderd's and applyd's.  Every other section is everyone's.
 */
static int
reload_reads(const struct daemon *d, const char *section)
{
	if (strcmp(section, "store") == 0)
		return strcmp(d->name, "allocd") == 0;
	if (strcmp(section, "metrics") == 0)
		return strcmp(d->name, "watcherd") == 0 ||
		    strcmp(d->name, "allocd") == 0;
	if (strcmp(section, "pks") == 0 ||
	    strcmp(section, "kubeconfigs") == 0 ||
	    strcmp(section, "clusters") == 0 ||
	    strncmp(section, "cluster.", 8) == 0)
		return strcmp(d->name, "watcherd") == 0;
	if (strncmp(section, "proxy.", 6) == 0)
		return strcmp(d->name, "allocd") == 0 ||
		    (d->proxy != NULL && strcmp(section + 6, d->proxy) == 0);
	return 1;
}

static void
reload_key(void *arg, const char *section, const char *key)
{
	struct reload *r = arg;

	if (!reload_reads(r->d, section))
		return;
	if (reload_live(section, key)) {
		config_copy_key(r->d->conf, r->next, section, key);
		log_info("config: [%s] %s changed; applied", section, key);
		r->applied++;
	} else if (key == NULL) {
		log_warnx("config: [%s] added or removed; restart %s to apply",
		    section, r->d->name);
		r->restart++;
	} else {
		log_warnx("config: [%s] %s changed; restart %s to apply",
		    section, key, r->d->name);
		r->restart++;
	}
}

/* SIGHUP: see daemon_signal in daemon.h. */
static void
daemon_reload(struct daemon *d)
{
	struct reload r;
	struct config *next;
	char err[1024];

	if ((next = malloc(sizeof(*next))) == NULL) {
		log_warn("config: reload");
		return;
	}
	if (config_load(d->conf_path, next, err, sizeof(err)) == -1)
		log_warnx("config: %s; keeping the running configuration",
		    err);
	else {
		memset(&r, 0, sizeof(r));
		r.d = d;
		r.next = next;
		config_diff(d->conf, next, reload_key, &r);
		daemon_logconf(d);
		log_info("config: reloaded %s: %d change(s) applied, %d need "
		    "a restart", d->conf_path, r.applied, r.restart);
	}
	free(next);
}

void
daemon_start(struct daemon *d, int argc, char **argv, const char *name,
    int flags, struct config *conf)
{
	int needs_proxy = flags & DAEMON_PROXY;
	char err[1024], opts[24] = "df:l:nVv";
	sigset_t set;
	int ch;

	memset(d, 0, sizeof(*d));
	d->name = name;
	d->conf = conf;
	d->log_format = -1;
	d->conf_path = "/etc/portico/portico.conf";
	if (flags & DAEMON_PROXY)
		strcat(opts, "p:");
	if (flags & DAEMON_REPLAY)
		strcat(opts, "R:");
	if (flags & DAEMON_RENDER)
		strcat(opts, "T:");
	if (flags & DAEMON_SHARD)
		strcat(opts, "s:");
	while ((ch = getopt(argc, argv, opts)) != -1) {
		switch (ch) {
		case 'd':
			d->foreground = 1;
			break;
		case 'f':
			d->conf_path = optarg;
			break;
		case 'l':
			if ((d->log_format = log_format_parse(optarg)) == -1)
				usage(name, flags);
			break;
		case 'n':
			d->check = 1;
			break;
		case 'p':
			d->proxy = optarg;
			break;
		case 'R':
			d->replay = optarg;
			break;
		case 'T':
			d->render = optarg;
			break;
		case 's':
			d->shard = optarg;
			break;
		case 'V':
			printf("%s %s\n", name, PORTICO_VERSION);
			exit(0);
		case 'v':
			d->verbose++;
			break;
		default:
			usage(name, flags);
		}
	}
	if (optind != argc)
		usage(name, flags);
	if (config_load(d->conf_path, conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\n", name, err);
		exit(1);
	}
	if (needs_proxy) {
		if (d->proxy == NULL && conf->nproxies == 1)
			d->proxy = conf->proxies[0].name;
		if (d->proxy == NULL || config_proxy(conf, d->proxy) == NULL) {
			fprintf(stderr, "%s: %s: no [proxy.%s] section\n",
			    name, d->conf_path, d->proxy ? d->proxy : "?");
			exit(1);
		}
	}
	bus_bind_on(conf->bus_bind);
	/* the bus's keys are checked by -n too; commands need none */
	if (d->replay == NULL && d->render == NULL &&
	    zap_init(conf, name, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: [bus] keys: %s\n", name, err);
		exit(1);
	}
	if (d->check) {
		config_print(conf, stdout);
		if (!(flags & DAEMON_CHECK))
			exit(0);
		return;		/* the daemon checks more, then exits */
	}
	if (d->replay != NULL || d->render != NULL)
		return;		/* a command, not a daemon: no run folder */
	log_init(name, d->foreground, d->verbose);
	daemon_logconf(d);
	/*
	 * A CONFIG is megabytes, made and freed for every generation: keep
	 * freed memory for the next one rather than give it back and take
	 * page faults on every byte of it again.
	 */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (config_mkrundir(conf, err, sizeof(err)) == -1)
		fatalx("run folder %s", err);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	if ((d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd");
	signal(SIGPIPE, SIG_IGN);
	loop_init(d);
}

const char *
daemon_version(void)
{
	return PORTICO_VERSION;
}

int
daemon_signal(struct daemon *d)
{
	struct signalfd_siginfo si;

	if (read(d->sigfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (si.ssi_signo == SIGHUP)
		daemon_reload(d);
	return (int)si.ssi_signo;
}

/* At exit: our pid file, unless another process has written it since. */
static void
daemon_unlink_pid(void)
{
	char buf[32];
	FILE *fp;

	if ((fp = fopen(daemon_pidfile, "r")) == NULL)
		return;
	if (fgets(buf, sizeof(buf), fp) != NULL &&
	    strtol(buf, NULL, 10) == (long)getpid())
		unlink(daemon_pidfile);
	fclose(fp);
}

int
daemon_ready(struct daemon *d, const char *name)
{
	metrics_start(d);	/* before the pid file: ready means served */
	/* the control socket first: a pid file says it can be asked */
	if (control_open(d, name) == -1)
		return -1;
	loop_counter("bus_garbage", &bus_garbage);
	if (config_ready(d->conf, name) == -1)
		return -1;
	if (daemon_pidfile[0] == '\0')
		atexit(daemon_unlink_pid);
	snprintf(daemon_pidfile, sizeof(daemon_pidfile), "%s/%s.pid",
	    d->conf->run_dir, name);
	return 0;
}
