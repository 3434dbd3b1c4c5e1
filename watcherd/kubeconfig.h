/*
 * watcherd — kubeconfig files: credentials and the address of a cluster's
 * API, from a kubeconfig in YAML or JSON (the PKS binds endpoint returns
 * one as JSON; the kubeconfig folder holds them as YAML).
 */
#ifndef WATCHERD_KUBECONFIG_H
#define WATCHERD_KUBECONFIG_H

#include <sys/stat.h>

#include <stddef.h>

#include <jansson.h>

struct creds {
	char		 server[512];	/* https://host:port */
	char		 host[254];	/* name or IP, without brackets */
	unsigned	 port;
	char		*ca_pem;
	char		*token;		/* never logged */
	char		*cert_pem;
	char		*key_pem;	/* never logged */
	char		*token_file;	/* the token was read from here */
	struct stat	 token_st;	/* the file that was read */
	int		 token_err;	/* its last failure logged: errno, -1 empty */
};

/* Parse YAML (or JSON, which is YAML) into a JSON tree; scalars are strings. */
json_t	*yaml_parse(const char *buf, size_t len, char *err, size_t errlen);

/*
 * Credentials of the current context.  dir resolves relative file paths
 * (NULL: refuse them); the files are read through kcfile_read, from the
 * places it allows.  0, or -1 with the reason in err.
 */
int	 kubeconfig_creds(json_t *, const char *dir, struct creds *,
	    char *err, size_t errlen);
void	 creds_free(struct creds *);
/* A deep copy of s into d, with token (d's now) in place of s's. */
void	 creds_copy(struct creds *d, const struct creds *s, char *token);

/*
 * The token of c->token_file, if the file is not the one read last.  1 with
 * the token in *tok, 0 when the file is the same, -1 with the reason in why
 * when it cannot be read or is refused (errno set) or holds no token
 * (errno 0).
 */
int	 token_read(struct creds *c, char **tok, char *why, size_t whylen);

/* Base64 (blanks skipped) into a NUL-terminated string; NULL if not. */
char	*kubeconfig_b64decode(const char *);

/* A user of the kubeconfig holds a secret inline (token, key, password). */
int	 kubeconfig_holds_secret(json_t *);

#endif
