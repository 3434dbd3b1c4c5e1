/*
 * applyd — the HAProxy driver.
 *
 * HAProxy runs in master-worker mode, in the foreground as our child, with
 * a master CLI socket.  A reload is SIGUSR2 to the master; its outcome is
 * read from the master's own counters in "show proc" (reloads and
 * [failed: N]), so a configuration that passed "haproxy -c" but cannot bind
 * a port is seen failing, and the old workers keep serving meanwhile.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "hapruntime.h"
#include "held.h"
#include "log.h"
#include "proxy.h"

#define RELOAD_WAIT_MS	30000
#define RELOAD_EVERY_MS	20
/*
 * How long the master CLI may keep the loop: a master that answers does so
 * in well under a millisecond; one that does not is asked again later.
 */
#define CLI_ONCE_MS	1000
#define CLI_STEP_MS	100
#define CLI_WAIT_MS	2000	/* before a reload: a master that never answers */

static void
haproxy_init(struct proxy *p)
{
	config_proxy_file(p->conf, p->pc, "master.sock", p->master_sock,
	    sizeof(p->master_sock));
	/* the worker's, as renderd writes it: <run_dir>/<name>.sock */
	snprintf(p->stats_sock, sizeof(p->stats_sock), "%s/%s.sock",
	    p->conf->run_dir, p->pc->name);
}

static int
haproxy_check(struct proxy *p, const char *path, char *err, size_t errlen)
{
	char *argv[] = { (char *)p->pc->binary, "-c", "-f", (char *)path,
	    NULL };

	/* the first [ALERT] line says what is wrong */
	return proxy_check(p, argv, "[ALERT]", err, errlen);
}

/*
 * One master CLI command; the answer into out.  -1 if no answer within
 * ms (the master re-executing itself for a reload does not answer).
 */
static int
master_cmd(struct proxy *p, const char *cmd, char *out, size_t outlen,
    unsigned ms)
{
	struct sockaddr_un sun;
	struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };
	size_t have = 0;
	ssize_t n;
	int s;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(p->master_sock) >= sizeof(sun.sun_path))
		return -1;
	strcpy(sun.sun_path, p->master_sock);
	if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    write(s, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) ||
	    shutdown(s, SHUT_WR) == -1) {
		close(s);
		return -1;
	}
	/* the master answers once our side is shut */
	while (have + 1 < outlen &&
	    (n = read(s, out + have, outlen - 1 - have)) > 0)
		have += (size_t)n;
	out[have] = '\0';
	close(s);
	return have > 0 ? 0 : -1;
}

struct proc_state {
	long	reloads;
	long	failed;
	int	workers;
};

/*
 * Parse "show proc":
 *	<pid> master <reloads> [failed: <n>] <uptime> <version>
 *	# workers
 *	<pid> worker ...
 */
static int
proc_state(struct proxy *p, struct proc_state *ps, unsigned ms)
{
	char out[8192], *line, *save = NULL, *f;
	int in_workers = 0, have_master = 0;

	memset(ps, 0, sizeof(*ps));
	if (master_cmd(p, "show proc\n", out, sizeof(out), ms) == -1)
		return -1;
	for (line = strtok_r(out, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#') {
			in_workers = strncmp(line, "# workers", 9) == 0;
			continue;
		}
		if (strstr(line, " master ") != NULL &&
		    sscanf(line, "%*d master %ld", &ps->reloads) == 1) {
			have_master = 1;
			if ((f = strstr(line, "[failed: ")) != NULL)
				ps->failed = strtol(f + 9, NULL, 10);
		} else if (in_workers && strstr(line, " worker ") != NULL)
			ps->workers++;
	}
	return have_master ? 0 : -1;
}

/* An adopted master must answer on its CLI: reloads are read there. */
static int
haproxy_adopt(struct proxy *p)
{
	struct proc_state ps;

	if (proxy_adopt(p) == -1)
		return -1;
	if (proc_state(p, &ps, CLI_ONCE_MS) == -1) {
		log_warnx("haproxy master %ld: no master CLI at %s",
		    (long)p->pid, p->master_sock);
		p->pid = 0;
		return -1;
	}
	return 0;
}

/* Up once the master lists a worker. */
static int
haproxy_up(struct proxy *p, void *arg, char *err, size_t errlen)
{
	struct proc_state ps;

	(void)arg;
	(void)err;
	(void)errlen;
	if (proc_state(p, &ps, CLI_STEP_MS) == -1 || ps.workers == 0)
		return 1;
	hap_forget_given();	/* its servers are the configuration's */
	hap_reconnect();
	return 0;
}

static int
haproxy_start(struct proxy *p, char *err, size_t errlen)
{
	char sock[PATH_MAX + 16];
	char *argv[] = { (char *)p->pc->binary, "-W", "-db", "-f",
	    (char *)p->pc->config, "-p", p->pidfile, "-S", sock, NULL };

	snprintf(sock, sizeof(sock), "%s,mode,600", p->master_sock);
	unlink(p->master_sock);
	return proxy_start(p, argv, haproxy_up, NULL, NULL, err, errlen);
}

/*
 * The reload under way.  First the master's counters are read (asked
 * again at each step until it answers, for at most CLI_WAIT_MS), then it
 * is signalled; then it is done once the master counts one more reload
 * and lists workers, failed when it counts one more failure (the old
 * workers keep serving) or is gone.  While it re-executes itself it does
 * not answer: not yet.
 */
static struct proc_state	reload_from;	/* its counters before */
static int			reload_sent;
static uint64_t			reload_asked;	/* ms, the first ask */

static int
haproxy_reloaded(struct proxy *p, void *arg, char *err, size_t errlen)
{
	struct proc_state now;

	(void)arg;
	/* one we adopted keeps its PID while it re-executes itself */
	if (p->pid == 0 || (!p->child && kill(p->pid, 0) == -1 &&
	    errno == ESRCH)) {
		snprintf(err, errlen, "the haproxy master is gone");
		return -1;
	}
	if (!reload_sent) {
		if (proc_state(p, &reload_from, CLI_STEP_MS) == -1) {
			if (now_ms() - reload_asked < CLI_WAIT_MS)
				return 1;
			snprintf(err, errlen, "master CLI does not answer");
			return -1;
		}
		if (kill(p->pid, SIGUSR2) == -1) {
			snprintf(err, errlen, "signal master: %s",
			    strerror(errno));
			return -1;
		}
		reload_sent = 1;
		return 1;
	}
	if (proc_state(p, &now, CLI_STEP_MS) == -1 ||
	    now.reloads == reload_from.reloads)
		return 1;
	if (now.failed > reload_from.failed) {
		snprintf(err, errlen, "haproxy refused the new "
		    "configuration (see its log); the old workers "
		    "keep serving");
		return -1;
	}
	if (now.workers == 0)
		return 1;
	hap_forget_drains();	/* the new workers have none */
	hap_forget_given();	/* their servers are the configuration's */
	hap_reconnect();
	return 0;
}

static int
haproxy_reload(struct proxy *p, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	reload_sent = 0;
	reload_asked = now_ms();
	return proxy_follow(p, haproxy_reloaded, NULL, RELOAD_EVERY_MS,
	    RELOAD_WAIT_MS);
}

static int
haproxy_files(struct proxy *p, const struct routes *r)
{
	return hap_write_maps(p->conf, p->pc, r);
}

static int
haproxy_update(struct proxy *p, const struct routes *old,
    const struct routes *new, const unsigned *ports, size_t nports, int api,
    char *err, size_t errlen)
{
	return hap_update(p->stats_sock, p->conf, p->pc, old, new, ports,
	    nports, api, err, errlen);
}

/*
 * The `ports` frontend binds every workload port of the configuration
 * but those another program holds (see held.c).  HAProxy's listeners set
 * SO_REUSEPORT: a probe that sets it too reads HAProxy's own ports as
 * free.
 */
static struct held	busy;

static const unsigned char *
haproxy_busy(struct proxy *p, const struct routes *r, int probe)
{
	unsigned k, n, port, before = busy.n;

	(void)r;
	if (probe) {
		held_reset(&busy, p->pc->listen, 1);
		n = ports_count(&p->conf->ports);
		for (k = 0; k < n; k++)
			if (routes_port_allowed(p->conf,
			    port = ports_nth(&p->conf->ports, k)))
				held_probe(&busy, port);
		held_log(&busy, before);
	}
	return busy.n > 0 ? busy.bits : NULL;
}

static int
haproxy_idle(struct proxy *p)
{
	hap_drain(p->stats_sock);
	if (hap_given_stale()) {
		log_info("a cluster's check interval changed under its "
		    "servers: reloading to keep its check budget");
		return 1;
	}
	return held_freed(&busy);
}

/* SIGUSR1: soft stop, connections in flight finish (hard-stop-after) */
const struct proxy_ops haproxy_ops = {
	"haproxy", "haproxy -c", "haproxy", SIGUSR1, haproxy_init,
	haproxy_check, haproxy_adopt, haproxy_start, haproxy_reload,
	proxy_running, proxy_reaped, proxy_stop, haproxy_files,
	haproxy_update, haproxy_idle, haproxy_busy,
};
