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
	return proc_state(p, &ps, CLI_STEP_MS) == 0 && ps.workers > 0 ? 0 : 1;
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
haproxy_files(struct proxy *p, const char *text)
{
	(void)p;
	return hap_write_maps(text);
}

static int
haproxy_update(struct proxy *p, const char *old, const char *new, char *err,
    size_t errlen)
{
	return hap_update(p->stats_sock, old, new, err, errlen);
}

/*
 * The `ports` frontend binds around the ports another program holds (see
 * held.c).  HAProxy's listeners set SO_REUSEPORT: a probe that sets it
 * too reads HAProxy's own ports as free.
 */
static struct held	busy;

/* "\tbind ADDR:LO[-HI]" split; 0 if the line is not one. */
static int
bind_range(const char *line, char *ip, size_t iplen, unsigned *lo,
    unsigned *hi)
{
	const char *a = line + 6, *colon = strrchr(a, ':');

	if (strncmp(line, "\tbind ", 6) != 0 || colon == NULL ||
	    held_addr(a, colon, ip, iplen) == -1)
		return 0;
	*hi = *lo = 0;
	if (sscanf(colon + 1, "%u-%u", lo, hi) < 1 || *lo == 0 ||
	    *lo > 65535 || *hi > 65535)
		return 0;
	if (*hi < *lo)
		*hi = *lo;
	return 1;
}

/* The bind lines for lo..hi without the busy ports. */
static void
bind_free(FILE *fp, const char *line, unsigned lo, unsigned hi)
{
	const char *colon = strrchr(line, ':');
	unsigned p, from = 0;

	for (p = lo; p <= hi + 1; p++) {
		if (p <= hi && !held_has(&busy, p)) {
			if (from == 0)
				from = p;
			continue;
		}
		if (from != 0) {
			fprintf(fp, "%.*s:%u", (int)(colon - line), line, from);
			if (p - 1 != from)
				fprintf(fp, "-%u", p - 1);
			fputc('\n', fp);
		}
		from = 0;
	}
}

static char *
haproxy_served(struct proxy *p, const char *text, int probe)
{
	const char *line, *end;
	char ip[64], buf[256], *out = NULL;
	size_t outlen = 0;
	unsigned lo, hi, port, before = busy.n;
	int ports = 0, cut = 0;
	FILE *fp;

	(void)p;
	if (!probe && busy.n == 0)
		return NULL;	/* the usual case: nothing to leave out */
	if (probe)
		held_reset(&busy, "", 1);
	if ((fp = open_memstream(&out, &outlen)) == NULL)
		return NULL;
	for (line = text; *line != '\0'; line = end) {
		end = line + strcspn(line, "\n");
		if (*end == '\n')
			end++;
		if (*line != '\t' && *line != '\n')
			ports = strncmp(line, "frontend ports\n", 15) == 0;
		/* the line alone, without its newline */
		if (ports) {
			snprintf(buf, sizeof(buf), "%.*s", (int)(end - line),
			    line);
			buf[strcspn(buf, "\n")] = '\0';
		}
		if (!ports || !bind_range(buf, ip, sizeof(ip), &lo, &hi)) {
			fwrite(line, 1, (size_t)(end - line), fp);
			continue;
		}
		if (probe)
			snprintf(busy.ip, sizeof(busy.ip), "%s", ip);
		for (port = lo; probe && port <= hi; port++)
			held_probe(&busy, port);
		for (port = lo; !cut && port <= hi; port++)
			cut = held_has(&busy, port);
		bind_free(fp, buf, lo, hi);
	}
	return held_text(&busy, fp, &out, cut, probe, before);
}

static int
haproxy_idle(struct proxy *p)
{
	hap_drain(p->stats_sock);
	return held_freed(&busy);
}

/* "backend p<port>" followed by its route's comment: a routed port. */
static size_t
haproxy_held(struct proxy *p, const char *text, uint16_t *ports, size_t max)
{
	static int warned;
	const char *s;
	unsigned long port;
	size_t n = 0;
	char *end;

	(void)p;
	if (busy.n == 0 || text == NULL)
		return 0;
	for (s = text; (s = strstr(s, "\nbackend p")) != NULL; s = end) {
		port = strtoul(s + 10, &end, 10);
		if (strncmp(end, "\n\t#", 3) != 0 || !held_has(&busy, port))
			continue;
		if (n == max) {
			if (!warned++)
				log_warnx("more than %zu routed ports are "
				    "held by other programs; %lu and above "
				    "are not reported", max, port);
			break;
		}
		ports[n++] = (uint16_t)port;
	}
	return n;
}

/* SIGUSR1: soft stop, connections in flight finish (hard-stop-after) */
const struct proxy_ops haproxy_ops = {
	"haproxy", "haproxy -c", "haproxy", SIGUSR1, haproxy_init,
	haproxy_check, haproxy_adopt, haproxy_start, haproxy_reload,
	proxy_running, proxy_reaped, proxy_stop, haproxy_files,
	haproxy_update, haproxy_idle, haproxy_served, haproxy_held,
};
