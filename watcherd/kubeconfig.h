/*
 * watcherd — kubeconfig files: credentials and the address of a cluster's
 * API, from a kubeconfig in YAML or JSON (the PKS binds endpoint returns
 * one as JSON; the kubeconfig folder holds them as YAML).
 */
#ifndef WATCHERD_KUBECONFIG_H
#define WATCHERD_KUBECONFIG_H

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
};

/* Parse YAML (or JSON, which is YAML) into a JSON tree; scalars are strings. */
json_t	*yaml_parse(const char *buf, size_t len, char *err, size_t errlen);

/*
 * Credentials of the current context.  dir resolves relative file paths
 * (NULL: refuse them).  0, or -1 with the reason in err.
 */
int	 kubeconfig_creds(json_t *, const char *dir, struct creds *,
	    char *err, size_t errlen);
void	 creds_free(struct creds *);

/* Read a whole file (at most max bytes) into a NUL-terminated buffer. */
char	*read_file(const char *path, size_t max, size_t *len);

#endif
