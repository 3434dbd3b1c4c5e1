/*
 * Unit tests for common/keys.c: the bus's key files as [bus] keys reads
 * them, and as porticoctl keygen writes them.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "keys.h"

static char	dir[] = "/tmp/test_keys.XXXXXX";
static char	pub[KEYS_Z85 + 1], sec[KEYS_Z85 + 1];

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL || zmq_curve_keypair(pub, sec) == -1)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *
put(const char *name, mode_t mode, const char *text)
{
	static char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	assert_non_null(fp = fopen(path, "w"));
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

/* Read a pair written from text with mode; the error's tail in want. */
static void
pair_fails(mode_t mode, const char *text, const char *want)
{
	struct keys_pair kp;
	char err[512];
	const char *path = put("p.key", mode, text);

	assert_int_equal(keys_read_pair(path, &kp, err, sizeof(err)), -1);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
	/* the error never carries the secret */
	assert_null(strstr(err, sec));
	assert_string_equal(kp.sec, "");
}

static void
test_pair_good(void **state)
{
	struct keys_pair kp;
	char text[256], err[512];
	const char *path;

	(void)state;
	snprintf(text, sizeof(text), "# made by hand\n\n  public = %s\r\n"
	    "secret=%s", pub, sec);
	path = put("p.key", 0600, text);
	assert_int_equal(keys_read_pair(path, &kp, err, sizeof(err)), 0);
	assert_string_equal(kp.pub, pub);
	assert_string_equal(kp.sec, sec);
	path = put("p.key", 0400, text);
	assert_int_equal(keys_read_pair(path, &kp, err, sizeof(err)), 0);
}

static void
test_pair_bad(void **state)
{
	char text[512], other_pub[KEYS_Z85 + 1], other_sec[KEYS_Z85 + 1];
	char bad[KEYS_Z85 + 1];

	(void)state;
	snprintf(text, sizeof(text), "public = %s\nsecret = %s\n", pub, sec);
	pair_fails(0640, text, "gives group or others access");
	pair_fails(0604, text, "gives group or others access");
	/* lengths: one short, one long */
	snprintf(text, sizeof(text), "public = %.39s\nsecret = %s\n", pub,
	    sec);
	pair_fails(0600, text, ":1: public is not a key");
	snprintf(text, sizeof(text), "public = %s\nsecret = %sA\n", pub, sec);
	pair_fails(0600, text, ":2: secret is not a key");
	/* a character outside Z85's alphabet */
	memcpy(bad, sec, sizeof(bad));
	bad[7] = '"';
	snprintf(text, sizeof(text), "public = %s\nsecret = %s\n", pub, bad);
	pair_fails(0600, text, ":2: secret is not a key");
	bad[7] = ',';
	snprintf(text, sizeof(text), "public = %s\nsecret = %s\n", pub, bad);
	pair_fails(0600, text, ":2: secret is not a key");
	/* missing, twice, unknown */
	snprintf(text, sizeof(text), "public = %s\n", pub);
	pair_fails(0600, text, "no secret key");
	snprintf(text, sizeof(text), "secret = %s\n", sec);
	pair_fails(0600, text, "no public key");
	snprintf(text, sizeof(text), "public = %s\npublic = %s\n", pub, pub);
	pair_fails(0600, text, ":2: public given twice");
	snprintf(text, sizeof(text), "public = %s\nsecret = %s\nkey = x\n",
	    pub, sec);
	pair_fails(0600, text, ":3: not \"public = KEY\"");
	pair_fails(0600, "", "no public key");
	/* a pair put together from two */
	assert_int_equal(zmq_curve_keypair(other_pub, other_sec), 0);
	snprintf(text, sizeof(text), "public = %s\nsecret = %s\n", other_pub,
	    sec);
	pair_fails(0600, text, "the public key is not the secret key's");
}

static void
test_pair_not_file(void **state)
{
	struct keys_pair kp;
	char err[512], path[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/missing.key", dir);
	assert_int_equal(keys_read_pair(path, &kp, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(keys_read_pair(dir, &kp, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
}

static void
test_list(void **state)
{
	struct keys_list kl;
	unsigned char bin[KEYS_BIN];
	char text[1024], err[512], hashkey[KEYS_Z85 + 1], path[256];

	(void)state;
	/*
	 * '#' is a Z85 character, but one that cannot begin a group (it
	 * would make more than 32 bits): a line of 40 beginning with it is
	 * a comment, never a key, nor an error.
	 */
	memcpy(hashkey, pub, sizeof(hashkey));
	hashkey[0] = '#';
	snprintf(text, sizeof(text), "# renderd replicas\n%s\n\n  %s  \n"
	    "#%s\n", pub, hashkey, pub);
	put("r.pub", 0644, text);
	snprintf(path, sizeof(path), "%s/r.pub", dir);
	assert_int_equal(keys_read_list(path, &kl, err, sizeof(err)), 0);
	assert_int_equal(kl.n, 1);
	assert_int_equal(keys_z85(pub, KEYS_Z85, bin), 0);
	assert_true(keys_listed(&kl, bin));
	assert_int_equal(keys_z85(hashkey, KEYS_Z85, bin), -1);
	memset(bin, 0, sizeof(bin));
	assert_false(keys_listed(&kl, bin));

	snprintf(text, sizeof(text), "%s\n%.39s\n", pub, pub);
	put("r.pub", 0644, text);
	assert_int_equal(keys_read_list(path, &kl, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "r.pub:2: not a public key"));
	snprintf(path, sizeof(path), "%s/none.pub", dir);
	assert_int_equal(keys_read_list(path, &kl, err, sizeof(err)), 1);
	assert_int_equal(kl.n, 0);
}

static void
test_list_too_many(void **state)
{
	struct keys_list kl;
	char *text, err[512], path[256];
	size_t i, o = 0;

	(void)state;
	assert_non_null(text = malloc((KEYS_MAX + 1) * (KEYS_Z85 + 1) + 1));
	for (i = 0; i <= KEYS_MAX; i++)
		o += (size_t)sprintf(text + o, "%s\n", pub);
	put("many.pub", 0644, text);
	free(text);
	snprintf(path, sizeof(path), "%s/many.pub", dir);
	assert_int_equal(keys_read_list(path, &kl, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than 64 keys"));
}

/* What keygen writes, the readers take; it never overwrites a pair. */
static void
test_generate(void **state)
{
	struct keys_pair kp;
	struct keys_list kl;
	struct stat st;
	unsigned char bin[KEYS_BIN];
	char p1[KEYS_Z85 + 1], p2[KEYS_Z85 + 1], path[256], err[512];

	(void)state;
	assert_int_equal(keys_generate(dir, "applyd", p1, err, sizeof(err)),
	    0);
	snprintf(path, sizeof(path), "%s/applyd.key", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(keys_read_pair(path, &kp, err, sizeof(err)), 0);
	assert_string_equal(kp.pub, p1);
	assert_int_equal(keys_generate(dir, "applyd", p2, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "never overwritten"));
	assert_int_equal(keys_read_pair(path, &kp, err, sizeof(err)), 0);
	assert_string_equal(kp.pub, p1);
	/* a second replica's key: its .key elsewhere, its public appended */
	unlink(path);
	put("applyd.pub", 0644, p1);		/* no newline at its end */
	assert_int_equal(keys_generate(dir, "applyd", p2, err, sizeof(err)),
	    0);
	snprintf(path, sizeof(path), "%s/applyd.pub", dir);
	assert_int_equal(keys_read_list(path, &kl, err, sizeof(err)), 0);
	assert_int_equal(kl.n, 2);
	assert_int_equal(keys_z85(p2, KEYS_Z85, bin), 0);
	assert_true(keys_listed(&kl, bin));
	assert_int_equal(keys_generate(dir, "nobody", p2, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "not a role"));
}

static void
test_roles(void **state)
{
	(void)state;
	assert_int_equal(keys_role("renderd"), ROLE_RENDERD);
	assert_int_equal(keys_role("porticoctl"), ROLE_PORTICOCTL);
	assert_int_equal(keys_role("render"), -1);
	assert_string_equal(keys_role_name(ROLE_ALLOCD), "allocd");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pair_good),
		cmocka_unit_test(test_pair_bad),
		cmocka_unit_test(test_pair_not_file),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_list_too_many),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_roles),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
