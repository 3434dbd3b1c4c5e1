/*
 * Unit tests for common/hash.h: FNV-1a 64 as published (its test vectors),
 * since both an owner's preferred port and a cluster's watcherd shard
 * (watcherd.8, SHARDS) must be what users and a lost store predict.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hash.h"

static void
test_fnv1a_vectors(void **state)
{
	(void)state;
	assert_true(hash_fnv1a("") == 0xcbf29ce484222325ULL);
	assert_true(hash_fnv1a("a") == 0xaf63dc4c8601ec8cULL);
	assert_true(hash_fnv1a("foobar") == 0x85944171f73967e8ULL);
}

/* The examples watcherd.8 and the README could give, worked out. */
static void
test_shard_of_id(void **state)
{
	const char *uuid = "3f2a0c1e-7b9d-4c52-9a3e-1d2b3c4d5e6f";

	(void)state;
	/* 0xc6771b702329ca37: 1 of 2, 0 of 3, 6 of 7 */
	assert_int_equal(hash_shard(uuid, 2), 1);
	assert_int_equal(hash_shard(uuid, 3), 0);
	assert_int_equal(hash_shard(uuid, 7), 6);
	/* a kubeconfig file payments.yaml: 0xe17ac5686623db26 */
	assert_int_equal(hash_shard("payments", 2), 0);
	assert_int_equal(hash_shard("payments", 3), 1);
	/* one shard, or none said: everything is shard 0 */
	assert_int_equal(hash_shard(uuid, 1), 0);
	assert_int_equal(hash_shard(uuid, 0), 0);
}

/* A fleet spreads: no shard of 4 gets much more than its quarter. */
static void
test_shard_spread(void **state)
{
	unsigned n[4] = { 0 }, i;
	char id[64];

	(void)state;
	for (i = 0; i < 4000; i++) {
		snprintf(id, sizeof(id), "cluster-%u", i);
		n[hash_shard(id, 4)]++;
	}
	for (i = 0; i < 4; i++)
		assert_true(n[i] > 850 && n[i] < 1150);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fnv1a_vectors),
		cmocka_unit_test(test_shard_of_id),
		cmocka_unit_test(test_shard_spread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
