/*
 * portico — daemon start-up.
 */
#include <sys/signalfd.h>

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

static void
usage(const char *name, int flags)
{
	fprintf(stderr, "usage: %s [-dnv] [-f config]%s%s%s\n", name,
	    (flags & DAEMON_PROXY) ? " -p proxy" : "",
	    (flags & DAEMON_REPLAY) ? " [-R store]" : "",
	    (flags & DAEMON_RENDER) ? " [-T statefile]" : "");
	exit(1);
}

void
daemon_start(struct daemon *d, int argc, char **argv, const char *name,
    int flags, struct config *conf)
{
	int needs_proxy = flags & DAEMON_PROXY;
	char err[1024], opts[16] = "df:nv";
	sigset_t set;
	int ch;

	memset(d, 0, sizeof(*d));
	d->name = name;
	d->conf_path = "/etc/portico/portico.conf";
	if (flags & DAEMON_PROXY)
		strcat(opts, "p:");
	if (flags & DAEMON_REPLAY)
		strcat(opts, "R:");
	if (flags & DAEMON_RENDER)
		strcat(opts, "T:");
	while ((ch = getopt(argc, argv, opts)) != -1) {
		switch (ch) {
		case 'd':
			d->foreground = 1;
			break;
		case 'f':
			d->conf_path = optarg;
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
	if (d->check) {
		config_print(conf, stdout);
		if (!(flags & DAEMON_CHECK))
			exit(0);
		return;		/* the daemon checks more, then exits */
	}
	if (d->replay != NULL || d->render != NULL)
		return;		/* a command, not a daemon: no run folder */
	log_init(name, d->foreground, d->verbose);
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
}

int
daemon_signal(struct daemon *d)
{
	struct signalfd_siginfo si;

	if (read(d->sigfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}
