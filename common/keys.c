/*
 * portico — the bus's CURVE keys on disk.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "fsafe.h"
#include "keys.h"

static const char *role_names[ROLE_COUNT] = {
	[ROLE_ALLOCD] = "allocd",
	[ROLE_WATCHERD] = "watcherd",
	[ROLE_RENDERD] = "renderd",
	[ROLE_APPLYD] = "applyd",
	[ROLE_PORTICOCTL] = "porticoctl",
};

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyz"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

const char *
keys_role_name(int role)
{
	return role >= 0 && role < ROLE_COUNT ? role_names[role] : "?";
}

int
keys_role(const char *name)
{
	int i;

	for (i = 0; i < ROLE_COUNT; i++)
		if (strcmp(role_names[i], name) == 0)
			return i;
	return -1;
}

/*
 * libzmq's decoder wants a NUL-terminated string whose length is a multiple
 * of 5; it is given exactly 40 characters of the alphabet, checked here
 * first, since what it accepts has varied between versions.
 */
int
keys_z85(const char *s, size_t len, unsigned char bin[KEYS_BIN])
{
	char buf[KEYS_Z85 + 1];
	size_t i;

	if (len != KEYS_Z85)
		return -1;
	for (i = 0; i < len; i++)
		if (s[i] == '\0' || strchr(z85_chars, s[i]) == NULL)
			return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return zmq_z85_decode(bin, buf) == NULL ? -1 : 0;
}

/*
 * Read a whole small file into a NUL-terminated buffer: a regular file of
 * at most KEYS_FILE_MAX bytes with no NUL in it.  secret: group and others
 * may not read it.
 */
static char *
slurp(const char *path, int secret, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	size_t len = 0;
	int fd, e;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		errno = e;		/* ENOENT: keys_read_list's "none" */
		return NULL;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if (secret && fsafe_secret_mode(&st, path, err, errlen) == -1)
		goto fail;
	if (st.st_size > KEYS_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", path,
		    KEYS_FILE_MAX);
		goto fail;
	}
	if ((buf = malloc(KEYS_FILE_MAX + 2)) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	/* read to the end: the size seen by fstat may have changed since */
	while ((n = read(fd, buf + len, KEYS_FILE_MAX + 1 - len)) > 0)
		len += (size_t)n;
	if (n == -1 || len > KEYS_FILE_MAX) {
		snprintf(err, errlen, "%s: %s", path, n == -1 ?
		    strerror(errno) : "grew past the size limit");
		goto fail;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		snprintf(err, errlen, "%s: holds a NUL byte", path);
		goto fail;
	}
	close(fd);
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

/* The next line of *p without its newline and surrounding blanks. */
static char *
next_line(char **p, size_t *len)
{
	char *line = *p, *end;

	if (*line == '\0')
		return NULL;
	end = line + strcspn(line, "\n");
	*p = *end == '\n' ? end + 1 : end;
	while (line < end && (*line == ' ' || *line == '\t'))
		line++;
	while (end > line && (end[-1] == ' ' || end[-1] == '\t' ||
	    end[-1] == '\r'))
		end--;
	*len = (size_t)(end - line);
	return line;
}

static int
line_error(char *err, size_t errlen, const char *path, int line,
    const char *why)
{
	snprintf(err, errlen, "%s:%d: %s", path, line, why);
	return -1;
}

/* "name = value" on one line: the value into *v, or -1. */
static int
pair_line(char *line, size_t len, const char *name, char **v, size_t *vlen)
{
	size_t n = strlen(name);

	if (len < n || strncmp(line, name, n) != 0)
		return -1;
	line += n;
	len -= n;
	while (len > 0 && (*line == ' ' || *line == '\t'))
		line++, len--;
	if (len == 0 || *line != '=')
		return -1;
	line++, len--;
	while (len > 0 && (*line == ' ' || *line == '\t'))
		line++, len--;
	*v = line;
	*vlen = len;
	return 0;
}

static int
parse_pair(const char *path, char *text, struct keys_pair *kp, char *err,
    size_t errlen)
{
	unsigned char pub[KEYS_BIN], sec[KEYS_BIN];
	char derived[KEYS_Z85 + 1], *p = text, *line, *v;
	size_t len, vlen;
	int n = 0, have_pub = 0, have_sec = 0, rc = -1;

	while ((line = next_line(&p, &len)) != NULL) {
		n++;
		if (len == 0 || *line == '#')
			continue;
		if (pair_line(line, len, "public", &v, &vlen) == 0) {
			if (have_pub++)
				return line_error(err, errlen, path, n,
				    "public given twice");
			if (keys_z85(v, vlen, pub) == -1)
				return line_error(err, errlen, path, n,
				    "public is not a key (40 characters of "
				    "Z85)");
			memcpy(kp->pub, v, KEYS_Z85);
			kp->pub[KEYS_Z85] = '\0';
		} else if (pair_line(line, len, "secret", &v, &vlen) == 0) {
			if (have_sec++)
				return line_error(err, errlen, path, n,
				    "secret given twice");
			if (keys_z85(v, vlen, sec) == -1)
				return line_error(err, errlen, path, n,
				    "secret is not a key (40 characters of "
				    "Z85)");
			memcpy(kp->sec, v, KEYS_Z85);
			kp->sec[KEYS_Z85] = '\0';
		} else
			return line_error(err, errlen, path, n, "not "
			    "\"public = KEY\" or \"secret = KEY\"");
	}
	if (!have_pub || !have_sec) {
		snprintf(err, errlen, "%s: no %s key", path, have_pub ?
		    "secret" : "public");
		goto out;
	}
	/* a pair assembled from two files would fail every handshake */
	if (zmq_curve_public(derived, kp->sec) == -1 ||
	    strcmp(derived, kp->pub) != 0) {
		snprintf(err, errlen, "%s: the public key is not the secret "
		    "key's", path);
		goto out;
	}
	rc = 0;
out:
	explicit_bzero(sec, sizeof(sec));
	explicit_bzero(derived, sizeof(derived));
	return rc;
}

int
keys_read_pair(const char *path, struct keys_pair *kp, char *err,
    size_t errlen)
{
	char *text;
	int rc;

	memset(kp, 0, sizeof(*kp));
	if ((text = slurp(path, 1, err, errlen)) == NULL)
		return -1;
	rc = parse_pair(path, text, kp, err, errlen);
	explicit_bzero(text, strlen(text));
	free(text);
	if (rc == -1)
		explicit_bzero(kp, sizeof(*kp));
	return rc;
}

int
keys_read_list(const char *path, struct keys_list *kl, char *err,
    size_t errlen)
{
	unsigned char key[KEYS_BIN];
	char *text, *p, *line;
	size_t len;
	int n = 0, rc = -1;

	memset(kl, 0, sizeof(*kl));
	if ((p = text = slurp(path, 0, err, errlen)) == NULL)
		return errno == ENOENT ? 1 : -1;
	while ((line = next_line(&p, &len)) != NULL) {
		n++;
		/*
		 * '#' is a Z85 character, though never the first of a
		 * key (it cannot begin a 4-byte group): a key is tried first
		 */
		if (keys_z85(line, len, key) == -1) {
			if (len == 0 || *line == '#')
				continue;
			line_error(err, errlen, path, n, "not a public key "
			    "(40 characters of Z85)");
			goto out;
		}
		if (kl->n == KEYS_MAX) {
			snprintf(err, errlen, "%s:%d: more than %d keys", path,
			    n, KEYS_MAX);
			goto out;
		}
		memcpy(kl->key[kl->n++], key, KEYS_BIN);
	}
	rc = 0;
out:
	free(text);
	return rc;
}

int
keys_listed(const struct keys_list *kl, const unsigned char *bin)
{
	size_t i;

	for (i = 0; i < kl->n; i++)
		if (memcmp(kl->key[i], bin, KEYS_BIN) == 0)
			return 1;
	return 0;
}

int
keys_generate(const char *dir, const char *role, char pub[KEYS_Z85 + 1],
    char *err, size_t errlen)
{
	char path[PATH_MAX], sec[KEYS_Z85 + 1], last;
	struct stat st;
	FILE *fp;
	int fd, rc = -1;

	if (keys_role(role) == -1) {
		snprintf(err, errlen, "%s: not a role (allocd, watcherd, "
		    "renderd, applyd, porticoctl)", role);
		return -1;
	}
	if (zmq_curve_keypair(pub, sec) == -1) {
		snprintf(err, errlen, "zmq_curve_keypair: %s (libzmq without "
		    "CURVE?)", zmq_strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.key", dir, role);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
		    errno == EEXIST ? " (refused: a key pair is never "
		    "overwritten)" : "");
		goto out;
	}
	if ((fp = fdopen(fd, "w")) == NULL) {
		close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	fprintf(fp, "# portico %s key pair (porticoctl keygen)\n"
	    "public = %s\nsecret = %s\n", role, pub, sec);
	if (fflush(fp) == EOF || fsync(fileno(fp)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		fclose(fp);
		unlink(path);
		goto out;
	}
	if (fclose(fp) == EOF) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(path);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s.pub", dir, role);
	if ((fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC, 0644)) == -1 || (fp = fdopen(fd, "a")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		goto out;
	}
	/* a list edited by hand may lack its last newline */
	if (fstat(fd, &st) == 0 && st.st_size > 0 &&
	    pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
		fputc('\n', fp);
	fprintf(fp, "%s\n", pub);
	if (fclose(fp) == EOF) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	explicit_bzero(sec, sizeof(sec));
	return rc;
}
