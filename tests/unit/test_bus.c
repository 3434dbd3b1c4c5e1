/*
 * Unit tests for the bus's limits: the largest event a legitimate peer
 * sends fits in what every socket takes (ZMQ_MAXMSGSIZE).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus.h"
#include "event.h"

/* A name of n characters in labels of 63, as long as valid ones go. */
static void
long_name(char *buf, size_t n)
{
	size_t i;

	memset(buf, 'a', n);
	buf[n] = '\0';
	for (i = 63; i < n; i += 64)
		buf[i] = '.';
}

/* An event of type with every field it may carry at its longest. */
static size_t
largest(int type)
{
	unsigned char *buf;
	struct event ev;
	char s[300], ip[64];
	size_t len;
	int i;

	event_init(&ev, type);
	ev.seq = ev.time = ev.route = ev.wt = ev.prev = INT64_MAX;
	ev.port = ev.want = 65535;
	ev.has |= F_ROUTE | F_PORT | F_WT | F_PREV | F_WANT;
	memset(s, 'a', 63);
	s[63] = '\0';
	assert_int_equal(event_set_str(&ev, F_CLUSTER, s), 0);
	assert_int_equal(event_set_str(&ev, F_NS, s), 0);
	assert_int_equal(event_set_str(&ev, F_UID, s), 0);
	long_name(s, 253);
	assert_int_equal(event_set_str(&ev, F_NAME, s), 0);
	assert_int_equal(event_set_str(&ev, F_HOST, s), 0);
	memset(s, 'a', 255);
	s[255] = '\0';
	assert_int_equal(event_set_str(&ev, F_WHY, s), 0);
	assert_int_equal(event_set_str(&ev, F_RKIND, "aaaaaaaaaaaaaaa"), 0);
	for (i = 0; i < EV_MAX_BACKENDS; i++) {
		snprintf(ip, sizeof(ip), "ffff:ffff:ffff:ffff:ffff:ffff:"
		    "255.255.%d.%d", 100 + i / 256, i % 256);
		assert_int_equal(event_add_backend(&ev, ip, 65535, 256), 0);
	}
	assert_int_equal(event_encode(&ev, &buf, &len), 0);
	free(buf);
	event_free(&ev);
	return len;
}

static void
test_largest_event_fits(void **state)
{
	static const int types[] = { EV_ROUTE, EV_SNI_ROUTE, EV_PORT_SET,
	    EV_SNI_SET, EV_RT_PORT, EV_RT_SNI };
	size_t i, len, most = 0;

	(void)state;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		len = largest(types[i]);
		if (len > most)
			most = len;
	}
	/* twice the largest, so that a field added later still fits */
	if (2 * most > BUS_MAXMSG)
		fail_msg("the largest event is %zu bytes: BUS_MAXMSG %d is "
		    "less than twice that", most, BUS_MAXMSG);
	assert_true(most > 50000);	/* the test makes what it says */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_largest_event_fits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
