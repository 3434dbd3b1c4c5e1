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

/* [a-z0-9]([-a-z0-9]*[a-z0-9])?, of any length but 0. */
static int
label_chars_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
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
	size_t len = strlen(s);

	return len <= 63 && label_chars_ok(s, len);
}

/* Dot-separated labels of at most label_max, 253 in all. */
static int
subdomain_ok(const char *s, size_t label_max)
{
	size_t len = strlen(s), n;

	if (len == 0 || len > 253)
		return 0;
	for (;;) {
		n = strcspn(s, ".");
		if (n > label_max || !label_chars_ok(s, n))
			return 0;
		if (s[n] == '\0')
			return 1;
		s += n + 1;
	}
}

int
valid_dns_subdomain(const char *s)
{
	return subdomain_ok(s, 63);
}

/*
 * An object name as Kubernetes checks it (IsDNS1123Subdomain): no limit on
 * a label's length but the whole name's: "a" x 70 ".b" is a name the API
 * server accepts, though no DNS name.
 */
int
valid_k8s_name(const char *s)
{
	return subdomain_ok(s, 253);
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

/*
 * A copy of an untrusted string that is safe in a log line: every byte
 * outside [A-Za-z0-9._-] becomes '?', and a string longer than fits is
 * cut, ending in "...".  out is always terminated; len must be >= 4.
 */
void
valid_sanitize(char *out, size_t len, const char *s)
{
	size_t i;
	unsigned char c;

	for (i = 0; s[i] != '\0' && i + 1 < len; i++) {
		c = (unsigned char)s[i];
		out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-' ? (char)c : '?';
	}
	out[i] = '\0';
	if (s[i] != '\0')
		memcpy(out + len - 4, "...", 4);
}
