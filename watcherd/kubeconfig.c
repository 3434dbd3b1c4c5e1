/*
 * watcherd — kubeconfig parsing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "kcfile.h"
#include "kubeconfig.h"
#include "log.h"
#include "valid.h"

#define YAML_MAX_DEPTH	32

static json_t *
yaml_node(yaml_parser_t *p, yaml_event_t *ev, int depth, char *err,
    size_t errlen)
{
	yaml_event_t e;
	json_t *v, *key, *val;

	if (depth > YAML_MAX_DEPTH) {
		snprintf(err, errlen, "nested too deep");
		return NULL;
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return json_stringn((const char *)ev->data.scalar.value,
		    ev->data.scalar.length);
	case YAML_SEQUENCE_START_EVENT:
		v = json_array();
		for (;;) {
			if (!yaml_parser_parse(p, &e))
				goto syntax;
			if (e.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&e);
				return v;
			}
			val = yaml_node(p, &e, depth + 1, err, errlen);
			yaml_event_delete(&e);
			if (val == NULL)
				goto fail;
			json_array_append_new(v, val);
		}
	case YAML_MAPPING_START_EVENT:
		v = json_object();
		for (;;) {
			if (!yaml_parser_parse(p, &e))
				goto syntax;
			if (e.type == YAML_MAPPING_END_EVENT) {
				yaml_event_delete(&e);
				return v;
			}
			key = yaml_node(p, &e, depth + 1, err, errlen);
			yaml_event_delete(&e);
			if (key == NULL)
				goto fail;
			if (!json_is_string(key)) {
				json_decref(key);
				snprintf(err, errlen, "a key is not a scalar");
				goto fail;
			}
			if (!yaml_parser_parse(p, &e)) {
				json_decref(key);
				goto syntax;
			}
			val = yaml_node(p, &e, depth + 1, err, errlen);
			yaml_event_delete(&e);
			if (val == NULL) {
				json_decref(key);
				goto fail;
			}
			json_object_set_new(v, json_string_value(key), val);
			json_decref(key);
		}
	case YAML_ALIAS_EVENT:
		snprintf(err, errlen, "YAML aliases are not supported");
		return NULL;
	default:
		snprintf(err, errlen, "unexpected YAML event");
		return NULL;
	}
 syntax:
	snprintf(err, errlen, "YAML syntax error at line %zu",
	    p->problem_mark.line + 1);
 fail:
	json_decref(v);
	return NULL;
}

json_t *
yaml_parse(const char *buf, size_t len, char *err, size_t errlen)
{
	yaml_parser_t p;
	yaml_event_t e;
	json_t *root = NULL;
	int done = 0;

	if (!yaml_parser_initialize(&p)) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	while (!done) {
		if (!yaml_parser_parse(&p, &e)) {
			snprintf(err, errlen, "YAML syntax error at line %zu",
			    p.problem_mark.line + 1);
			json_decref(root);
			root = NULL;
			break;
		}
		switch (e.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_SCALAR_EVENT:
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
		case YAML_ALIAS_EVENT:
			if (root == NULL) {
				root = yaml_node(&p, &e, 0, err, errlen);
				done = root == NULL;
			}
			break;
		default:
			break;
		}
		yaml_event_delete(&e);
	}
	yaml_parser_delete(&p);
	if (root == NULL && err[0] == '\0')
		snprintf(err, errlen, "empty document");
	return root;
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Standard base64, whitespace ignored; NULL if malformed. */
char *
kubeconfig_b64decode(const char *s)
{
	size_t len = strlen(s), o = 0;
	unsigned acc = 0;
	int bits = 0, v;
	char *out;

	if ((out = malloc(len * 3 / 4 + 4)) == NULL)
		return NULL;
	for (; *s != '\0'; s++) {
		if (*s == '=' || *s == ' ' || *s == '\n' || *s == '\r' ||
		    *s == '\t')
			continue;
		if ((v = b64val((unsigned char)*s)) < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return out;
}

static json_t *
named(json_t *list, const char *name, const char *member)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));

		if (n != NULL && strcmp(n, name) == 0)
			return json_object_get(e, member);
	}
	return NULL;
}

/* The path of a file the kubeconfig names, relative to dir. */
static int
file_path(const char *dir, const char *file, const char *key, char *path,
    size_t len, char *err, size_t errlen)
{
	if (dir == NULL) {
		/* a kubeconfig from an API names no files of ours */
		snprintf(err, errlen, "%s: file paths are refused here", key);
		return -1;
	}
	snprintf(path, len, "%s%s%s", file[0] == '/' ? "" : dir,
	    file[0] == '/' ? "" : "/", file);
	return 0;
}

/* "key \"file\": why" into err: the file as the kubeconfig names it. */
static void
file_error(char *err, size_t errlen, const char *key, const char *file,
    const char *why)
{
	char q[256];

	log_quote(q, sizeof(q), file, strlen(file));
	snprintf(err, errlen, "%s \"%s\": %s", key, q, why);
}

/*
 * Inline data (base64) or a file path, read from the places kcfile allows
 * (a secret one private to us); the PEM into *out.
 */
static int
material(json_t *obj, const char *datakey, const char *filekey,
    int secret, const char *dir, char **out, char *err, size_t errlen)
{
	const char *data = json_string_value(json_object_get(obj, datakey));
	const char *file = json_string_value(json_object_get(obj, filekey));
	char path[4096], why[256];

	*out = NULL;
	if (data != NULL) {
		if ((*out = kubeconfig_b64decode(data)) == NULL) {
			snprintf(err, errlen, "%s is not base64", datakey);
			return -1;
		}
		return 0;
	}
	if (file == NULL)
		return 0;
	if (file_path(dir, file, filekey, path, sizeof(path), err,
	    errlen) == -1)
		return -1;
	if ((*out = kcfile_read(path, secret, 1 << 20, NULL, NULL, why,
	    sizeof(why))) == NULL) {
		file_error(err, errlen, filekey, file, why);
		return -1;
	}
	return 0;
}

/*
 * The file is stat'ed through symlinks before it is read: Kubernetes
 * rotates a projected token by swapping a symlink, and a change between
 * the stat and the read only costs one more read at the next check.  Each
 * read checks the file anew (kcfile_read): a link swapped to point outside
 * is refused like a kubeconfig that names a file outside.
 */
int
token_read(struct creds *c, char **tok, char *why, size_t whylen)
{
	const struct stat *o = &c->token_st;
	struct stat st;
	char *t;

	if (stat(c->token_file, &st) == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -1;
	}
	if (st.st_dev == o->st_dev && st.st_ino == o->st_ino &&
	    st.st_size == o->st_size && st.st_mtim.tv_sec ==
	    o->st_mtim.tv_sec && st.st_mtim.tv_nsec == o->st_mtim.tv_nsec)
		return 0;
	if ((t = kcfile_read(c->token_file, 1, 1 << 20, NULL, &st, why,
	    whylen)) == NULL)
		return -1;
	t[strcspn(t, "\r\n")] = '\0';
	if (t[0] == '\0') {
		free(t);
		snprintf(why, whylen, "empty");
		errno = 0;
		return -1;
	}
	c->token_st = st;
	*tok = t;
	return 1;
}

/* tokenFile: the token, and where it came from, to be read again. */
static int
token_file(json_t *user, const char *dir, struct creds *c, char *err,
    size_t errlen)
{
	const char *file = json_string_value(json_object_get(user,
	    "tokenFile"));
	char path[4096], why[256];

	if (file == NULL)
		return 0;
	if (file_path(dir, file, "tokenFile", path, sizeof(path), err,
	    errlen) == -1)
		return -1;
	if ((c->token_file = strdup(path)) == NULL)
		fatal("kubeconfig");
	if (token_read(c, &c->token, why, sizeof(why)) == 1)
		return 0;
	file_error(err, errlen, "tokenFile", file, why);
	return -1;
}

/* https://host[:port][/...] into host and port; IPv6 in brackets. */
static int
parse_server(struct creds *c, char *err, size_t errlen)
{
	const char *h = c->server + 8, *end, *colon;
	size_t n;

	if (strncmp(c->server, "https://", 8) != 0 || !valid_text(c->server)) {
		snprintf(err, errlen, "server is not an https:// URL");
		return -1;
	}
	if (*h == '[') {
		if ((end = strchr(h, ']')) == NULL)
			goto bad;
		n = (size_t)(end - h - 1);
		colon = end[1] == ':' ? end + 1 : NULL;
		h++;
	} else {
		end = h + strcspn(h, ":/");
		n = (size_t)(end - h);
		colon = *end == ':' ? end : NULL;
	}
	if (n == 0 || n >= sizeof(c->host))
		goto bad;
	memcpy(c->host, h, n);
	c->host[n] = '\0';
	c->port = 443;
	if (colon != NULL) {
		char *e;
		unsigned long p = strtoul(colon + 1, &e, 10);

		if (p == 0 || p > 65535 || (*e != '\0' && *e != '/'))
			goto bad;
		c->port = (unsigned)p;
	}
	if (!valid_ip(c->host) && !valid_dns_subdomain(c->host))
		goto bad;
	return 0;
 bad:
	snprintf(err, errlen, "server URL has no valid host and port");
	return -1;
}

int
kubeconfig_creds(json_t *kc, const char *dir, struct creds *c, char *err,
    size_t errlen)
{
	const char *ctxname, *cname, *uname, *server, *tok;
	json_t *ctx, *cl, *user;

	memset(c, 0, sizeof(*c));
	err[0] = '\0';
	if ((ctxname = json_string_value(json_object_get(kc,
	    "current-context"))) == NULL) {
		json_t *ctxs = json_object_get(kc, "contexts");

		/* one context and no current-context: that one */
		if (json_array_size(ctxs) != 1 ||
		    (ctxname = json_string_value(json_object_get(
		    json_array_get(ctxs, 0), "name"))) == NULL) {
			snprintf(err, errlen, "no current-context");
			return -1;
		}
	}
	ctx = named(json_object_get(kc, "contexts"), ctxname, "context");
	cname = json_string_value(json_object_get(ctx, "cluster"));
	uname = json_string_value(json_object_get(ctx, "user"));
	cl = cname ? named(json_object_get(kc, "clusters"), cname, "cluster") :
	    NULL;
	user = uname ? named(json_object_get(kc, "users"), uname, "user") :
	    NULL;
	if (cl == NULL || user == NULL) {
		snprintf(err, errlen, "current context names no cluster or "
		    "no user");
		return -1;
	}
	if ((server = json_string_value(json_object_get(cl, "server"))) ==
	    NULL || strlen(server) >= sizeof(c->server)) {
		snprintf(err, errlen, "cluster has no server");
		return -1;
	}
	strcpy(c->server, server);
	if (parse_server(c, err, errlen) == -1 ||
	    material(cl, "certificate-authority-data",
	    "certificate-authority", 0, dir, &c->ca_pem, err, errlen) == -1 ||
	    material(user, "client-certificate-data", "client-certificate", 0,
	    dir, &c->cert_pem, err, errlen) == -1 ||
	    material(user, "client-key-data", "client-key", 1, dir,
	    &c->key_pem, err, errlen) == -1)
		goto fail;
	/* an inline token wins: the file is then neither read nor watched */
	if ((tok = json_string_value(json_object_get(user, "token"))) != NULL) {
		if ((c->token = strdup(tok)) == NULL)
			fatal("kubeconfig");
		c->token[strcspn(c->token, "\r\n")] = '\0';
	} else if (token_file(user, dir, c, err, errlen) == -1)
		goto fail;
	if (c->token == NULL && (c->cert_pem == NULL || c->key_pem == NULL)) {
		snprintf(err, errlen, "user has neither a token nor a client "
		    "certificate and key");
		goto fail;
	}
	if (c->ca_pem == NULL) {
		snprintf(err, errlen, "cluster has no certificate authority "
		    "(TLS is always verified)");
		goto fail;
	}
	return 0;
 fail:
	creds_free(c);
	return -1;
}

int
kubeconfig_holds_secret(json_t *kc)
{
	static const char *keys[] = { "token", "client-key-data", "password" };
	json_t *u, *user;
	size_t i, k;

	json_array_foreach(json_object_get(kc, "users"), i, u) {
		user = json_object_get(u, "user");
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (json_object_get(user, keys[k]) != NULL)
				return 1;
	}
	return 0;
}

void
creds_free(struct creds *c)
{
	free(c->ca_pem);
	free(c->cert_pem);
	if (c->key_pem != NULL)
		explicit_bzero(c->key_pem, strlen(c->key_pem));
	free(c->key_pem);
	if (c->token != NULL)
		explicit_bzero(c->token, strlen(c->token));
	free(c->token);
	free(c->token_file);
	c->ca_pem = c->cert_pem = c->key_pem = c->token = NULL;
	c->token_file = NULL;
}

void
creds_copy(struct creds *d, const struct creds *s, char *token)
{
	*d = *s;
	d->token = token;
	if ((s->ca_pem && (d->ca_pem = strdup(s->ca_pem)) == NULL) ||
	    (s->cert_pem && (d->cert_pem = strdup(s->cert_pem)) == NULL) ||
	    (s->key_pem && (d->key_pem = strdup(s->key_pem)) == NULL) ||
	    (s->token_file && (d->token_file = strdup(s->token_file)) ==
	    NULL))
		fatal("creds_copy");
}
