/*
 * portico — validators for everything that comes from outside.
 *
 * Names and addresses from the provisioning API and the clusters pass one of
 * these before they are stored in an event, and so before they come near a
 * log line, a config file or a PATCH body.  Each returns 1 when valid.
 */
#ifndef PORTICO_VALID_H
#define PORTICO_VALID_H

#include <stddef.h>

int	valid_dns_label(const char *);		/* RFC 1123 label, <= 63 */
int	valid_dns_subdomain(const char *);	/* RFC 1123 subdomain, <= 253 */
int	valid_k8s_name(const char *);		/* object name, as the API checks */
int	valid_cluster_id(const char *);		/* [a-z0-9-], 1..63 */
int	valid_ip(const char *);			/* numeric IPv4 or IPv6 */
int	valid_token(const char *);		/* [A-Za-z0-9_-], 1..63 */
int	valid_text(const char *);		/* printable ASCII, no " or \ */
void	valid_sanitize(char *, size_t, const char *);	/* for a log line */

#endif
