/*
 * portico — validators.
 */
#include <arpa/inet.h>
#include <string.h>

#include "valid.h"

static int
is_lower_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int
label_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 63)
		return 0;
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
		return 0;
	for (i = 1; i + 1 < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return 0;
	return 1;
}

int
valid_dns_label(const char *s)
{
	return label_ok(s, strlen(s));
}

int
valid_dns_subdomain(const char *s)
{
	size_t len = strlen(s);
	const char *dot;

	if (len == 0 || len > 253)
		return 0;
	while ((dot = strchr(s, '.')) != NULL) {
		if (!label_ok(s, (size_t)(dot - s)))
			return 0;
		s = dot + 1;
	}
	return label_ok(s, strlen(s));
}

int
valid_cluster_id(const char *s)
{
	size_t i, len = strlen(s);

	if (len == 0 || len > 63)
		return 0;
	for (i = 0; i < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return 0;
	return 1;
}

int
valid_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

int
valid_token(const char *s)
{
	size_t i, len = strlen(s);

	if (len == 0 || len > 63)
		return 0;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
		    !(c >= '0' && c <= '9') && c != '_' && c != '-')
			return 0;
	}
	return 1;
}

int
valid_text(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
			return 0;
	return 1;
}
