/*
 * Unit tests for common/addr.c: what an address is, and CIDR ranges.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"

static enum addr_class
class_of(const char *s)
{
	struct addr_ip ad;

	assert_int_equal(addr_parse(s, &ad), 0);
	return addr_classify(&ad);
}

/* Each class at its edges, and what lies just outside it. */
static void
test_classes(void **state)
{
	(void)state;
	assert_int_equal(class_of("0.0.0.0"), ADDR_UNSPECIFIED);
	assert_int_equal(class_of("0.255.255.255"), ADDR_UNSPECIFIED);
	assert_int_equal(class_of("::"), ADDR_UNSPECIFIED);
	assert_int_equal(class_of("127.0.0.1"), ADDR_LOOPBACK);
	assert_int_equal(class_of("127.255.255.254"), ADDR_LOOPBACK);
	assert_int_equal(class_of("::1"), ADDR_LOOPBACK);
	assert_int_equal(class_of("169.254.169.254"), ADDR_LINKLOCAL);
	assert_int_equal(class_of("169.254.0.0"), ADDR_LINKLOCAL);
	assert_int_equal(class_of("169.255.0.1"), ADDR_OK);
	assert_int_equal(class_of("169.253.255.255"), ADDR_OK);
	assert_int_equal(class_of("fe80::1"), ADDR_LINKLOCAL);
	assert_int_equal(class_of("febf::1"), ADDR_LINKLOCAL);
	assert_int_equal(class_of("fec0::1"), ADDR_OK);
	assert_int_equal(class_of("224.0.0.1"), ADDR_MULTICAST);
	assert_int_equal(class_of("239.255.255.255"), ADDR_MULTICAST);
	assert_int_equal(class_of("240.0.0.1"), ADDR_OK);
	assert_int_equal(class_of("ff02::1"), ADDR_MULTICAST);
	assert_int_equal(class_of("255.255.255.255"), ADDR_BROADCAST);
	assert_int_equal(class_of("255.255.255.254"), ADDR_OK);
	assert_int_equal(class_of("10.0.0.1"), ADDR_OK);
	assert_int_equal(class_of("2001:db8::1"), ADDR_OK);
	assert_string_equal(addr_class_name(ADDR_LINKLOCAL), "link-local");
	assert_string_equal(addr_class_name(ADDR_OK), "");
}

/* A mapped IPv6 address is the IPv4 address it maps. */
static void
test_mapped(void **state)
{
	struct addr_ip x, y;

	(void)state;
	assert_int_equal(class_of("::ffff:127.0.0.1"), ADDR_LOOPBACK);
	assert_int_equal(class_of("::ffff:a9fe:a9fe"), ADDR_LINKLOCAL);
	assert_int_equal(addr_parse("::ffff:10.1.2.3", &x), 0);
	assert_int_equal(addr_parse("10.1.2.3", &y), 0);
	assert_true(addr_equal(&x, &y));
	assert_int_equal(addr_parse("::10.1.2.3", &x), 0);
	assert_false(addr_equal(&x, &y));
}

static void
test_nets(void **state)
{
	struct addr_nets nets;
	struct addr_ip ad;
	char buf[256];

	(void)state;
	assert_int_equal(addr_nets_parse("127.77.0.0/16, fd00::/8 10.0.0.5",
	    &nets), 0);
	assert_int_equal(nets.n, 3);
	addr_nets_format(&nets, buf, sizeof(buf));
	assert_string_equal(buf, "127.77.0.0/16, fd00::/8, 10.0.0.5/32");
	assert_int_equal(addr_parse("127.77.200.1", &ad), 0);
	assert_true(addr_in_nets(&ad, &nets));
	assert_int_equal(addr_parse("127.78.0.1", &ad), 0);
	assert_false(addr_in_nets(&ad, &nets));
	assert_int_equal(addr_parse("fdff::1", &ad), 0);
	assert_true(addr_in_nets(&ad, &nets));
	assert_int_equal(addr_parse("10.0.0.6", &ad), 0);
	assert_false(addr_in_nets(&ad, &nets));
	/* a mapped range is the IPv4 range */
	assert_int_equal(addr_nets_parse("::ffff:127.0.0.0/104", &nets), 0);
	assert_int_equal(addr_parse("127.1.2.3", &ad), 0);
	assert_true(addr_in_nets(&ad, &nets));
	/* /0 takes everything of its family */
	assert_int_equal(addr_nets_parse("0.0.0.0/0", &nets), 0);
	assert_true(addr_in_nets(&ad, &nets));
	assert_int_equal(addr_parse("::1", &ad), 0);
	assert_false(addr_in_nets(&ad, &nets));
	assert_int_equal(addr_nets_parse("", &nets), 0);
	assert_int_equal(nets.n, 0);
}

static void
test_bad_nets(void **state)
{
	static const char *bad[] = {
		"10.0.0.1/8",		/* host bits set */
		"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1",
		"10.0.0.0/8x", "10.0.0", "host.example", "10.0.0.0/8/8",
		"::ffff:1.2.3.0/64",	/* a mapped prefix under 96 bits */
		"1.2.3.4;rm", "",
	};
	struct addr_nets nets;
	struct addr_net net;
	char many[1024];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (*bad[i] != '\0')
			assert_int_equal(addr_nets_parse(bad[i], &nets), -1);
	assert_int_equal(addr_net_parse("", &net), -1);
	many[0] = '\0';
	for (i = 0; i <= ADDR_MAX_NETS; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many),
		    "10.%zu.0.0/16,", i);
	assert_int_equal(addr_nets_parse(many, &nets), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_mapped),
		cmocka_unit_test(test_nets),
		cmocka_unit_test(test_bad_nets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
