/*
 * Unit tests for common/valid.c: names as Kubernetes and DNS accept them,
 * and the copy of an untrusted string that a log line may carry.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "valid.h"

/* A string of n copies of c, then tail. */
static char *
rep(char *buf, int c, size_t n, const char *tail)
{
	memset(buf, c, n);
	strcpy(buf + n, tail);
	return buf;
}

/* The API server takes a label past 63 in a name; DNS does not. */
static void
test_k8s_name_long_label(void **state)
{
	char b[512];

	(void)state;
	assert_true(valid_k8s_name(rep(b, 'a', 70, ".b")));
	assert_false(valid_dns_subdomain(b));
	assert_true(valid_k8s_name(rep(b, 'a', 253, "")));
	assert_false(valid_k8s_name(rep(b, 'a', 254, "")));
	assert_true(valid_k8s_name(rep(b, 'a', 251, ".b")));
	assert_false(valid_k8s_name(rep(b, 'a', 252, ".b")));
	assert_true(valid_dns_subdomain(rep(b, 'a', 63, ".b")));
	assert_false(valid_dns_subdomain(rep(b, 'a', 64, ".b")));
	assert_false(valid_dns_label(rep(b, 'a', 64, "")));
}

/* Whatever the length, the character set is the API server's. */
static void
test_k8s_name_charset(void **state)
{
	static const char *good[] = { "a", "0", "a-b", "a.b", "a-0.b-1.c",
	    "ledger-db", "x.y.z" };
	static const char *bad[] = { "", ".", "a.", ".a", "a..b", "-a", "a-",
	    "a.-b", "a-.b", "A", "a_b", "a b", "a\nb", "a/b", "a:b",
	    "\xc3\xa4", "a;b", "a\"b" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(valid_k8s_name(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(valid_k8s_name(bad[i]));
		assert_false(valid_dns_subdomain(bad[i]));
	}
}

static void
test_sanitize(void **state)
{
	char out[16], b[64];

	(void)state;
	valid_sanitize(out, sizeof(out), "web-1.x_Y");
	assert_string_equal(out, "web-1.x_Y");
	valid_sanitize(out, sizeof(out), "a\nb c;\"\\\x01\xc3\xa4");
	assert_string_equal(out, "a?b?c??????");
	valid_sanitize(out, sizeof(out), "");
	assert_string_equal(out, "");
	/* fits exactly: 15 characters */
	valid_sanitize(out, sizeof(out), rep(b, 'a', 15, ""));
	assert_string_equal(out, b);
	/* one more: cut, and it says so */
	valid_sanitize(out, sizeof(out), rep(b, 'a', 16, ""));
	assert_int_equal(strlen(out), 15);
	assert_string_equal(out, "aaaaaaaaaaaa...");
	valid_sanitize(out, 4, "abcd");
	assert_string_equal(out, "...");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_k8s_name_long_label),
		cmocka_unit_test(test_k8s_name_charset),
		cmocka_unit_test(test_sanitize),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
