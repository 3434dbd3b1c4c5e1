/*
 * allocd — proofs of written addresses: HMAC-SHA256 under allocd's key.
 */
#include <sys/random.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "log.h"
#include "proof.h"

static unsigned char	key[PROOF_KEY_MAX];
static size_t		keylen;

void
proof_set_key(const void *k, size_t len)
{
	if (len > sizeof(key))
		len = sizeof(key);
	memcpy(key, k, len);
	keylen = len;
}

void
proof_path(const struct config *conf, char *buf, size_t len)
{
	if (conf->proof_key[0] != '\0')
		snprintf(buf, len, "%s", conf->proof_key);
	else
		snprintf(buf, len, "%s-proof.key", conf->store);
}

/* 32 random bytes into a new file at path, 0600, durably. */
static int
proof_create(const char *path)
{
	unsigned char k[PROOF_KEY_MIN];
	int fd;

	if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
		log_warn("proof key: getrandom");
		return -1;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		log_warn("proof key: %s", path);
		return -1;
	}
	if (write(fd, k, sizeof(k)) != (ssize_t)sizeof(k) || fsync(fd) == -1) {
		log_warn("proof key: %s", path);
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

int
proof_load(const struct config *conf, int create, int *created)
{
	char path[PATH_MAX + 16];
	struct stat sb;
	ssize_t n;
	int fd, named = conf->proof_key[0] != '\0';

	*created = 0;
	proof_path(conf, path, sizeof(path));
	/*
	 * A key named in the configuration is the operator's: it may be
	 * reached through links (a Kubernetes Secret's ..data) and belong to
	 * root, readable by our group (fsGroup); the one allocd makes beside
	 * the store is ours alone.  Others never get any access.
	 */
	fd = open(path, O_RDONLY | O_CLOEXEC | (named ? 0 : O_NOFOLLOW));
	if (fd == -1 && errno == ENOENT && create &&
	    conf->proof_key[0] == '\0') {
		/*
		 * Made as <path>.new, and named <path> by proof_keep() once a
		 * store holds what it proves: a start that dies before that
		 * is a first start again.
		 */
		if (strlen(path) + 4 >= sizeof(path))
			return -1;
		strcat(path, ".new");
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) ==
		    -1 && errno == ENOENT) {
			if (proof_create(path) == -1)
				return -1;
			fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		}
		*created = 1;
	}
	if (fd == -1) {
		log_warn("proof key: %s", path);
		return -1;
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode) || (named ?
	    (sb.st_uid != geteuid() && sb.st_uid != 0) ||
	    (sb.st_mode & 027) != 0 :
	    sb.st_uid != geteuid() || (sb.st_mode & 077) != 0)) {
		log_warnx("proof key: %s must be a regular file of %s, mode "
		    "%s", path, named ? "ours or root's" : "ours",
		    named ? "0600 or 0640 (0400, 0440)" : "0600");
		close(fd);
		return -1;
	}
	n = read(fd, key, sizeof(key));
	close(fd);
	if (n < PROOF_KEY_MIN || n == (ssize_t)sizeof(key)) {
		log_warnx("proof key: %s must hold %d to %d bytes", path,
		    PROOF_KEY_MIN, PROOF_KEY_MAX - 1);
		keylen = 0;
		return -1;
	}
	keylen = (size_t)n;
	return 0;
}

int
proof_keep(const struct config *conf)
{
	char path[PATH_MAX + 16], fresh[PATH_MAX + 24], *slash;
	int fd;

	proof_path(conf, path, sizeof(path));
	snprintf(fresh, sizeof(fresh), "%s.new", path);
	if (rename(fresh, path) == -1) {
		log_warn("proof key: %s", path);
		return -1;
	}
	/* the rename is durable before anything is proven under it */
	if ((slash = strrchr(fresh, '/')) != NULL)
		*(slash == fresh ? slash + 1 : slash) = '\0';
	if ((fd = open(slash != NULL ? fresh : ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) != -1) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* base64url of the 32-byte mac, without padding: 43 characters. */
static void
proof_encode(const unsigned char *mac, char out[PROOF_LEN + 1])
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t v;
	size_t i, o = 0;

	for (i = 0; i + 3 <= 30; i += 3) {
		v = (uint32_t)mac[i] << 16 | (uint32_t)mac[i + 1] << 8 |
		    mac[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = b64[v >> 6 & 63];
		out[o++] = b64[v & 63];
	}
	v = (uint32_t)mac[30] << 16 | (uint32_t)mac[31] << 8;
	out[o++] = b64[v >> 18 & 63];
	out[o++] = b64[v >> 12 & 63];
	out[o++] = b64[v >> 6 & 63];
	out[o] = '\0';
}

/* The proof for cluster/ns/name/route, uid and port, into out. */
static void
proof_make(const struct event *ev, const char *uid, uint64_t port,
    char out[PROOF_LEN + 1])
{
	unsigned char msg[sizeof(ev->cluster) + sizeof(ev->ns) +
	    sizeof(ev->name) + sizeof(ev->uid) + 48], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	int n;

	if (keylen == 0)
		fatalx("proof: no key");
	/* NUL-separated: no field can run into the next */
	n = snprintf((char *)msg, sizeof(msg), "%s%c%s%c%s%c%" PRIu64 "%c%s%c"
	    "%" PRIu64, ev->cluster, 0, ev->ns, 0, ev->name, 0, ev->route, 0,
	    uid, 0, port);
	if (n < 0 || (size_t)n >= sizeof(msg) ||
	    HMAC(EVP_sha256(), key, (int)keylen, msg, (size_t)n, mac,
	    &maclen) == NULL || maclen != 32)
		fatalx("proof: HMAC");
	proof_encode(mac, out);
}

void
proof_put(struct event *d, const char *uid)
{
	char pf[PROOF_LEN + 1];

	proof_make(d, uid, d->port, pf);
	memcpy(d->pf, pf, sizeof(pf));
	d->has |= F_PROOF;
}

int
proof_holds(const struct event *obs)
{
	char pf[PROOF_LEN + 1];

	if ((obs->has & (F_HAD | F_PROOF)) != (F_HAD | F_PROOF) ||
	    strlen(obs->pf) != PROOF_LEN)
		return 0;
	proof_make(obs, obs->uid, obs->had, pf);
	return CRYPTO_memcmp(pf, obs->pf, PROOF_LEN) == 0;
}
