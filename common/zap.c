/*
 * portico — who may speak on the bus: CURVE keys and the ZAP handler.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "bus.h"
#include "keys.h"
#include "log.h"
#include "loop.h"
#include "valid.h"
#include "zap.h"

enum door {
	DOOR_ALLOC_IN,
	DOOR_ALLOC_FEED,
	DOOR_RENDER_FEED,
	DOOR_COUNT
};

#define R(x)	(1u << (x))

static const struct {
	const char	*name;
	int		 server;	/* the role that binds it */
	unsigned	 admits;	/* R(role) of the clients */
} doors[DOOR_COUNT] = {
	[DOOR_ALLOC_IN] = { "alloc_in", ROLE_ALLOCD,
	    R(ROLE_WATCHERD) | R(ROLE_APPLYD) },
	[DOOR_ALLOC_FEED] = { "alloc_feed", ROLE_ALLOCD,
	    R(ROLE_RENDERD) | R(ROLE_WATCHERD) | R(ROLE_PORTICOCTL) },
	[DOOR_RENDER_FEED] = { "render_feed", ROLE_RENDERD,
	    R(ROLE_APPLYD) | R(ROLE_PORTICOCTL) },
};

#define ZAP_ENDPOINT	"inproc://zeromq.zap.01"	/* RFC 27 */
#define ZAP_MAXPARTS	8
#define ZAP_SEEN	16	/* refusals told apart in the log */
#define ZAP_REPEAT_MS	60000	/* the same refusal logged once a minute */
#define ZAP_LOG_BURST	10	/* refusal lines a second, at most */
#define ZAP_MONITORS	(2 * CONF_MAX_PROXIES + 4)

unsigned long zap_refused;

static const struct config *conf;
static int		 myrole = -1;
static int		 have_keys;
static struct keys_pair	 mine;
/* the keys each role may present, for the roles our doors admit */
static struct keys_list	 allowed[ROLE_COUNT];
/* the server key of allocd and renderd: the first of their .pub */
static unsigned char	 server_key[ROLE_COUNT][KEYS_BIN];
static int		 have_server_key[ROLE_COUNT];
static void		*zap_sock;
static int		 nmonitors;

struct zap_monitor {
	const char	*door;
	void		*pair;		/* the monitor's events */
};

static int
tcp(const char *ep)
{
	return strncmp(ep, "tcp://", 6) == 0;
}

/* The door an endpoint of the configuration is, or -1. */
static int
door_of(const char *ep)
{
	int j;

	if (conf == NULL)
		return -1;
	if (strcmp(ep, conf->alloc_in) == 0)
		return DOOR_ALLOC_IN;
	if (strcmp(ep, conf->alloc_pub) == 0 ||
	    strcmp(ep, conf->alloc_sync) == 0)
		return DOOR_ALLOC_FEED;
	for (j = 0; j < conf->nproxies; j++)
		if (strcmp(ep, conf->proxies[j].pub) == 0 ||
		    strcmp(ep, conf->proxies[j].sync) == 0)
			return DOOR_RENDER_FEED;
	return -1;
}

/* Does any door that server role binds use tcp://? */
static int
server_on_tcp(int server)
{
	int j;

	if (server == ROLE_ALLOCD)
		return tcp(conf->alloc_in) || tcp(conf->alloc_pub) ||
		    tcp(conf->alloc_sync);
	for (j = 0; j < conf->nproxies; j++)
		if (tcp(conf->proxies[j].pub) || tcp(conf->proxies[j].sync))
			return 1;
	return 0;
}

static int
read_list(int role, struct keys_list *kl, char *err, size_t errlen)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s.pub", conf->bus_keys,
	    keys_role_name(role));
	return keys_read_list(path, kl, err, errlen);
}

/*
 * A client takes the first key of the server role's .pub as the server's:
 * ours must be that one (replicas behind one Service share a key pair).
 */
static int
server_first(const struct config *c, char *err, size_t errlen)
{
	struct keys_list kl;
	unsigned char pub[KEYS_BIN];
	int rc;

	if ((rc = read_list(myrole, &kl, err, errlen)) == -1)
		return -1;
	if (keys_z85(mine.pub, KEYS_Z85, pub) == 0 && kl.n > 0 &&
	    memcmp(kl.key[0], pub, KEYS_BIN) == 0)
		return 0;
	snprintf(err, errlen, "%s/%s.pub: %s: the clients take its first key "
	    "as the server's, and that is not the public key of %s.key",
	    c->bus_keys, keys_role_name(myrole), rc == 1 ? "missing" :
	    kl.n == 0 ? "no key" : keys_listed(&kl, pub) ? "ours is not the "
	    "first" : "ours is not listed", keys_role_name(myrole));
	return -1;
}

int
zap_init(const struct config *c, const char *role, char *err, size_t errlen)
{
	struct keys_list kl;
	char path[PATH_MAX + 32];
	unsigned admits = 0;
	int d, r, rc;

	conf = c;
	if ((myrole = keys_role(role)) == -1) {
		snprintf(err, errlen, "%s: not a role of the bus", role);
		return -1;
	}
	if (c->bus_keys[0] == '\0')
		return 0;
	snprintf(path, sizeof(path), "%s/%s.key", c->bus_keys, role);
	if (keys_read_pair(path, &mine, err, errlen) == -1)
		return -1;
	for (d = 0; d < DOOR_COUNT; d++) {
		if (doors[d].server == myrole) {
			admits |= doors[d].admits;
			continue;
		}
		r = doors[d].server;
		if (!(doors[d].admits & R(myrole)) || have_server_key[r])
			continue;
		rc = read_list(r, &kl, err, errlen);
		if (rc == -1)
			return -1;
		if (kl.n == 0 && server_on_tcp(r)) {
			snprintf(err, errlen, "%s/%s.pub: no key: a client of "
			    "%s takes the first key listed as the server's",
			    c->bus_keys, keys_role_name(r), keys_role_name(r));
			return -1;
		}
		if (kl.n > 0) {
			memcpy(server_key[r], kl.key[0], KEYS_BIN);
			have_server_key[r] = 1;
		}
	}
	/* a server whose key its clients do not take would hear nothing */
	if ((myrole == ROLE_ALLOCD || myrole == ROLE_RENDERD) &&
	    server_on_tcp(myrole) && server_first(c, err, errlen) == -1)
		return -1;
	/* a role without a .pub is admitted nowhere: no one holds its key */
	for (r = 0; r < ROLE_COUNT; r++)
		if ((admits & R(r)) &&
		    read_list(r, &allowed[r], err, errlen) == -1)
			return -1;
	have_keys = 1;
	return 0;
}

/* The door's roles that hold key, as "renderd" or NULL. */
static const char *
who(int door, const unsigned char *key)
{
	int r;

	for (r = 0; r < ROLE_COUNT; r++)
		if ((doors[door].admits & R(r)) && keys_listed(&allowed[r], key))
			return keys_role_name(r);
	return NULL;
}

static int
door_by_domain(const char *domain, size_t len, int *ipc)
{
	char buf[32];
	int d;

	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, domain, len);
	buf[len] = '\0';
	for (d = 0; d < DOOR_COUNT; d++) {
		size_t n = strlen(doors[d].name);

		if (strncmp(buf, doors[d].name, n) != 0)
			continue;
		if (strcmp(buf + n, "/ipc") == 0 || strcmp(buf + n, "/tcp") == 0) {
			*ipc = buf[n + 1] == 'i';
			return d;
		}
	}
	return -1;
}

/*
 * The peer of an ipc connection as libzmq tells ZAP: "<address>:uid:gid:
 * pid" when it could ask the kernel (SO_PEERCRED).  The uid, or -1.
 */
static long
ipc_uid(const char *addr)
{
	const char *p[3];
	const char *end = addr + strlen(addr);
	char *e;
	long uid;
	int i;

	/* the address before them may be empty, or hold colons itself */
	for (i = 0; i < 3; i++) {
		while (end > addr && end[-1] != ':')
			end--;
		if (end == addr && i < 2)
			return -1;
		p[i] = end;
		if (end > addr)
			end--;
	}
	/* p[2] is the uid, p[1] the gid, p[0] the pid */
	errno = 0;
	uid = strtol(p[2], &e, 10);
	if (errno != 0 || e == p[2] || *e != ':' || uid < 0)
		return -1;
	return uid;
}

/*
 * Log a refusal, but not a flood of them: a refused client reconnects
 * every 100 ms.  The same line (door, peer, key or reason) is logged once
 * a minute with how many it stood for, and at most ZAP_LOG_BURST lines a
 * second in all (a client with a new key each time is new each time).
 */
static void
refused(const char *door, const char *addr, const char *what)
{
	static struct {
		char		 line[192];
		uint64_t	 at;
		unsigned long	 more;
	} seen[ZAP_SEEN];
	static uint64_t second;
	static unsigned lines;
	char a[64], line[192];
	uint64_t now = now_ms();
	int i, slot = 0;

	zap_refused++;
	valid_sanitize(a, sizeof(a), addr);
	snprintf(line, sizeof(line), "bus: %s: refused %s: %s", door,
	    a[0] ? a : "a client", what);
	for (i = 0; i < ZAP_SEEN; i++) {
		if (strcmp(seen[i].line, line) == 0) {
			slot = i;
			break;
		}
		if (seen[i].at < seen[slot].at)
			slot = i;
	}
	if (i < ZAP_SEEN && now - seen[slot].at < ZAP_REPEAT_MS) {
		seen[slot].more++;
		return;
	}
	if (now - second >= 1000) {
		second = now;
		lines = 0;
	}
	if (lines++ >= ZAP_LOG_BURST)
		return;
	if (i < ZAP_SEEN && seen[slot].more > 0)
		log_warnx("%s (and %lu more like it since)", line,
		    seen[slot].more);
	else
		log_warnx("%s", line);
	strcpy(seen[slot].line, line);
	seen[slot].at = now;
	seen[slot].more = 0;
}

/*
 * Decide one ZAP request (RFC 27): parts are version, request id, domain,
 * address, routing id, mechanism, credentials.  Returns the role admitted,
 * or NULL after logging why not.
 */
static const char *
decide(zmq_msg_t *part, int n)
{
	static int warned;
	char addr[128], mech[16], key[KEYS_Z85 + 1], why[96];
	const unsigned char *cred;
	const char *role;
	size_t len;
	long uid;
	int door, ipc, r;

	if (n < 6)
		return NULL;
	len = zmq_msg_size(&part[3]);
	if (len >= sizeof(addr))
		len = sizeof(addr) - 1;
	memcpy(addr, zmq_msg_data(&part[3]), len);
	addr[len] = '\0';
	if ((door = door_by_domain(zmq_msg_data(&part[2]),
	    zmq_msg_size(&part[2]), &ipc)) == -1) {
		refused("?", addr, "not a door of ours");
		return NULL;
	}
	len = zmq_msg_size(&part[5]);
	snprintf(mech, sizeof(mech), "%.*s", (int)(len < 8 ? len : 8),
	    (const char *)zmq_msg_data(&part[5]));
	if (ipc) {
		if (strcmp(mech, "NULL") != 0) {
			refused(doors[door].name, addr, "not the NULL mechanism");
			return NULL;
		}
		if ((uid = ipc_uid(addr)) == -1) {
			/* a libzmq that cannot ask the kernel: the folder */
			if (!warned++)
				log_warnx("bus: %s: libzmq does not say who is "
				    "on the other end of ipc://; the run "
				    "folder's mode is the only guard",
				    doors[door].name);
			return "local";
		}
		if (uid == 0 || (uid_t)uid == geteuid())
			return "local";
		snprintf(why, sizeof(why), "uid %ld is neither ours nor root's",
		    uid);
		refused(doors[door].name, addr, why);
		return NULL;
	}
	if (strcmp(mech, "CURVE") != 0 || n < 7 ||
	    zmq_msg_size(&part[6]) != KEYS_BIN) {
		refused(doors[door].name, addr, "not CURVE");
		return NULL;
	}
	cred = zmq_msg_data(&part[6]);
	if ((role = who(door, cred)) != NULL)
		return role;
	if (zmq_z85_encode(key, cred, KEYS_BIN) == NULL)
		strcpy(key, "?");
	/* the first characters name the key for whoever reads the log */
	snprintf(why, sizeof(why), "key %.8s... is not listed for", key);
	for (r = 0; r < ROLE_COUNT; r++)
		if (doors[door].admits & R(r))
			snprintf(why + strlen(why), sizeof(why) - strlen(why),
			    " %s", keys_role_name(r));
	refused(doors[door].name, addr, why);
	return NULL;
}

static void
zap_reply(zmq_msg_t *id, const char *role)
{
	const char *code = role != NULL ? "200" : "400";
	const char *text = role != NULL ? "OK" : "refused";

	zmq_send(zap_sock, "1.0", 3, ZMQ_SNDMORE);
	zmq_send(zap_sock, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
	zmq_send(zap_sock, code, 3, ZMQ_SNDMORE);
	zmq_send(zap_sock, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(zap_sock, role != NULL ? role : "", role != NULL ?
	    strlen(role) : 0, ZMQ_SNDMORE);
	zmq_send(zap_sock, "", 0, 0);
}

static void
zap_answer(void *arg, int revents)
{
	zmq_msg_t part[ZAP_MAXPARTS], extra;
	int more, n, i;
	size_t len = sizeof(more);

	(void)arg;
	(void)revents;
	for (;;) {
		zmq_msg_init(&part[0]);
		if (zmq_msg_recv(&part[0], zap_sock, ZMQ_DONTWAIT) == -1) {
			zmq_msg_close(&part[0]);
			return;
		}
		for (n = 1;; n++) {
			if (zmq_getsockopt(zap_sock, ZMQ_RCVMORE, &more, &len)
			    == -1 || !more)
				break;
			if (n == ZAP_MAXPARTS) {
				zmq_msg_init(&extra);
				zmq_msg_recv(&extra, zap_sock, 0);
				zmq_msg_close(&extra);
				n--;
				continue;
			}
			zmq_msg_init(&part[n]);
			zmq_msg_recv(&part[n], zap_sock, 0);
		}
		if (n >= 2)
			zap_reply(&part[1], decide(part, n));
		else
			zap_reply(&part[0], NULL);	/* keep REP in step */
		for (i = 0; i < n; i++)
			zmq_msg_close(&part[i]);
	}
}

static void
zap_start(void)
{
	if (zap_sock != NULL)
		return;
	if ((zap_sock = zmq_socket(bus_ctx(), ZMQ_REP)) == NULL ||
	    zmq_bind(zap_sock, ZAP_ENDPOINT) == -1)
		fatal("zap: %s", ZAP_ENDPOINT);
	loop_socket(zap_sock, ZMQ_POLLIN, zap_answer, NULL);
	loop_counter("bus_refused", &zap_refused);
}

/*
 * A handshake that failed before ZAP was asked: the monitor names no
 * peer (libzmq gives the local endpoint), only what went wrong.
 */
static void
monitor_event(void *arg, int revents)
{
	struct zap_monitor *zm = arg;
	const char *door = zm->door;
	void *pair = zm->pair;
	zmq_msg_t m;
	uint16_t ev;
	uint32_t val;
	int more;
	size_t len = sizeof(more);

	(void)revents;
	for (;;) {
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, pair, ZMQ_DONTWAIT) == -1) {
			zmq_msg_close(&m);
			return;
		}
		ev = 0;
		val = 0;
		if (zmq_msg_size(&m) == 6) {
			memcpy(&ev, zmq_msg_data(&m), 2);
			memcpy(&val, (char *)zmq_msg_data(&m) + 2, 4);
		}
		zmq_msg_close(&m);
		while (zmq_getsockopt(pair, ZMQ_RCVMORE, &more, &len) == 0 &&
		    more) {
			zmq_msg_init(&m);
			zmq_msg_recv(&m, pair, 0);
			zmq_msg_close(&m);
		}
		if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
			refused(door, "", val ==
			    ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ?
			    "handshake: a client without CURVE" : val ==
			    ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC ?
			    "handshake: a client that does not know our key, "
			    "or whose key we refused" :
			    "handshake: a protocol error");
		else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
			refused(door, "", "handshake: the client hung up "
			    "before it was done (one without CURVE?)");
	}
}

static struct zap_monitor mon[ZAP_MONITORS];

static void
monitor(void *sock, int door)
{
	char ep[64];

	if (nmonitors == ZAP_MONITORS)
		fatalx("zap: more than %d server sockets", ZAP_MONITORS);
	snprintf(ep, sizeof(ep), "inproc://portico.monitor.%d", nmonitors);
	/*
	 * HANDSHAKE_FAILED_NO_DETAIL too: a client without CURVE sees the
	 * mismatch as soon as we do and may hang up first, which is all we
	 * see then.  (One refused by ZAP is HANDSHAKE_FAILED_AUTH, counted
	 * where ZAP refused it.)
	 */
	if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
	    ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == -1)
		fatal("zmq_socket_monitor");
	mon[nmonitors].door = doors[door].name;
	if ((mon[nmonitors].pair = zmq_socket(bus_ctx(), ZMQ_PAIR)) == NULL ||
	    zmq_connect(mon[nmonitors].pair, ep) == -1)
		fatal("zap: %s", ep);
	loop_socket(mon[nmonitors].pair, ZMQ_POLLIN, monitor_event,
	    &mon[nmonitors]);
	nmonitors++;
}

static void
setopt(void *sock, int opt, const void *v, size_t len, const char *what)
{
	if (zmq_setsockopt(sock, opt, v, len) == -1)
		fatal("zmq_setsockopt %s", what);
}

void
zap_server(void *sock, const char *ep)
{
	char domain[32];
	int door = door_of(ep), one = 1;

	if (!tcp(ep) && door == -1)
		return;			/* not ours to guard: a test's */
	if (door == -1)
		fatalx("bus: %s is no endpoint of the configuration", ep);
	if (tcp(ep) && !have_keys)
		fatalx("bus: %s: tcp:// without CURVE keys ([bus] keys)", ep);
	zap_start();
	snprintf(domain, sizeof(domain), "%s/%s", doors[door].name,
	    tcp(ep) ? "tcp" : "ipc");
	setopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain), "ZAP_DOMAIN");
	if (!tcp(ep))
		return;
	setopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one), "CURVE_SERVER");
	setopt(sock, ZMQ_CURVE_SECRETKEY, mine.sec, KEYS_Z85 + 1,
	    "CURVE_SECRETKEY");
	monitor(sock, door);
}

void
zap_client(void *sock, const char *ep)
{
	int door, server;

	if (!tcp(ep))
		return;
	if ((door = door_of(ep)) == -1)
		fatalx("bus: %s is no endpoint of the configuration", ep);
	server = doors[door].server;
	if (!have_keys || !have_server_key[server])
		fatalx("bus: %s: tcp:// without CURVE keys ([bus] keys, "
		    "%s.pub)", ep, keys_role_name(server));
	setopt(sock, ZMQ_CURVE_SERVERKEY, server_key[server], KEYS_BIN,
	    "CURVE_SERVERKEY");
	setopt(sock, ZMQ_CURVE_PUBLICKEY, mine.pub, KEYS_Z85 + 1,
	    "CURVE_PUBLICKEY");
	setopt(sock, ZMQ_CURVE_SECRETKEY, mine.sec, KEYS_Z85 + 1,
	    "CURVE_SECRETKEY");
}

void
zap_close(void)
{
	int i;

	for (i = 0; i < nmonitors; i++)
		zmq_close(mon[i].pair);
	nmonitors = 0;
	if (zap_sock != NULL)
		zmq_close(zap_sock);
	zap_sock = NULL;
	explicit_bzero(&mine, sizeof(mine));
}
