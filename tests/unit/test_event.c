/*
 * Unit tests for common/event.c: the encoder, the bounded decoder of
 * untrusted msgpack, the JSON dump and its inverse, and the owner key.
 *
 * Hostile input is built with msgpack-c's packer or as raw bytes, and every
 * buffer handed to event_decode is a heap copy of exactly its length, so an
 * over-read is an ASan report rather than luck.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "event.h"

/* The tables of event.h, seen from outside. */
static const struct {
	int		 code;
	const char	*name;
	uint32_t	 req, opt;
} types[] = {
#define X(n, c, r, o)	{ c, #n, r, o },
	EV_TYPES(X)
#undef X
};
#define NTYPES	(sizeof(types) / sizeof(types[0]))

static const char *keys[FI_COUNT] = {
#define X(n, k, t, m, v)	[FI_##n] = k,
	EV_FIELDS(X)
#undef X
};

/* Helpers. */

/* A string literal as bytes and length: the literal's own NUL excluded. */
#define RAW(s)	(s), sizeof(s) - 1

struct mb {
	msgpack_sbuffer	sb;
	msgpack_packer	pk;
};

static void
mb_init(struct mb *b)
{
	msgpack_sbuffer_init(&b->sb);
	msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void
mb_done(struct mb *b)
{
	msgpack_sbuffer_destroy(&b->sb);
}

static void
mb_raw(struct mb *b, const void *p, size_t n)
{
	msgpack_sbuffer_write(&b->sb, p, n);
}

static void
mb_strn(struct mb *b, const char *s, size_t n)
{
	msgpack_pack_str(&b->pk, n);
	msgpack_pack_str_body(&b->pk, s, n);
}

static void
mb_str(struct mb *b, const char *s)
{
	mb_strn(b, s, strlen(s));
}

static void
mb_backend(struct mb *b, const char *ip, uint64_t port, uint64_t weight)
{
	msgpack_pack_array(&b->pk, 3);
	mb_str(b, ip);
	msgpack_pack_uint64(&b->pk, port);
	msgpack_pack_uint64(&b->pk, weight);
}

/* Key and a valid value for field fi. */
static void
pack_valid(struct mb *b, int fi)
{
	mb_str(b, keys[fi]);
	switch (fi) {
	case FI_CLUSTER:
		mb_str(b, "c1");
		break;
	case FI_CNAME:
		mb_str(b, "prod");
		break;
	case FI_HOST:
	case FI_NAME:
		mb_str(b, "web.example.com");
		break;
	case FI_NS:
		mb_str(b, "default");
		break;
	case FI_MASTERS:
		msgpack_pack_array(&b->pk, 1);
		mb_str(b, "10.0.0.1");
		break;
	case FI_BACKENDS:
		msgpack_pack_array(&b->pk, 1);
		mb_backend(b, "10.0.0.1", 80, 1);
		break;
	case FI_WHY:
		mb_str(b, "bad annotation");
		break;
	case FI_PROXY:
	case FI_KIND:
		mb_str(b, "haproxy");
		break;
	case FI_TEXT:
		mb_str(b, "global\n");
		break;
	case FI_HELD:
		msgpack_pack_array(&b->pk, 2);
		msgpack_pack_uint64(&b->pk, 20001);
		msgpack_pack_uint64(&b->pk, 20003);
		break;
	default:			/* the integers */
		msgpack_pack_uint64(&b->pk, 20001);
		break;
	}
}

static uint32_t
req_of(int type)
{
	size_t i;

	for (i = 0; i < NTYPES; i++)
		if (types[i].code == type)
			return types[i].req;
	fail_msg("no type %d", type);
	return 0;
}

/*
 * The envelope of type, then every required field except skip (-1: none),
 * with the body map declared `extra` pairs larger for the caller to fill.
 */
static void
mb_event(struct mb *b, int type, int skip, size_t extra)
{
	uint32_t req = req_of(type);
	int fi;

	if (skip >= 0)
		req &= ~(1u << skip);
	mb_init(b);
	msgpack_pack_array(&b->pk, 5);
	msgpack_pack_uint8(&b->pk, EV_VERSION);
	msgpack_pack_uint16(&b->pk, (uint16_t)type);
	msgpack_pack_uint64(&b->pk, 7);
	msgpack_pack_uint64(&b->pk, 1000);
	msgpack_pack_map(&b->pk, (size_t)__builtin_popcount(req) + extra);
	for (fi = 0; fi < FI_COUNT; fi++)
		if (req & (1u << fi))
			pack_valid(b, fi);
}

/* Decode len bytes from an exact-size heap copy. */
static int
decode_copy(struct event *ev, const void *p, size_t len, char *err,
    size_t errlen)
{
	void *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	if (len)
		memcpy(copy, p, len);
	err[0] = '\0';
	rc = event_decode(ev, copy, len, err, errlen);
	free(copy);
	return rc;
}

/* Decoding b must fail with an error containing errsub; b is released. */
static void
reject_(struct mb *b, const char *errsub, const char *file, int line)
{
	struct event ev;
	char err[256];
	int rc;

	rc = decode_copy(&ev, b->sb.data, b->sb.size, err, sizeof(err));
	event_free(&ev);
	mb_done(b);
	if (rc != -1)
		_fail(file, line);
	if (err[0] == '\0' || strstr(err, errsub) == NULL) {
		print_error("error \"%s\" lacks \"%s\"\n", err, errsub);
		_fail(file, line);
	}
}
#define expect_err(b, s)	reject_((b), (s), __FILE__, __LINE__)

/* Decoding b must succeed into ev (the caller frees it); b is released. */
static void
accept_(struct mb *b, struct event *ev, const char *file, int line)
{
	char err[256];
	int rc;

	rc = decode_copy(ev, b->sb.data, b->sb.size, err, sizeof(err));
	mb_done(b);
	if (rc != 0) {
		print_error("unexpected error \"%s\"\n", err);
		_fail(file, line);
	}
}
#define expect_ok(b, ev)	accept_((b), (ev), __FILE__, __LINE__)

/* A DNS label of len characters: [a-z0-9] at the ends, '-' allowed inside. */
static void
mklabel(char *buf, size_t len, char seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = i % 7 == 3 && i + 1 < len ? '-' :
		    (char)('a' + (seed + i) % 26);
	buf[len] = '\0';
}

/* A subdomain of exactly len characters built from 63-character labels. */
static void
mkhost(char *buf, size_t len)
{
	size_t at = 0, n;

	while (at < len) {
		n = len - at > 63 ? 63 : len - at;
		if (len - at - n == 1)	/* never leave a lone dot at the end */
			n--;
		mklabel(buf + at, n, (char)at);
		at += n;
		if (at < len)
			buf[at++] = '.';
	}
	buf[len] = '\0';
}

static const char *masters[EV_MAX_MASTERS] = {
	"10.0.0.1", "255.255.255.255", "0.0.0.0", "::1", "::",
	"fe80::1", "2001:db8::8a2e:370:7334",
	"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",	/* 45 chars */
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "192.168.1.1",
	"172.16.0.1", "::ffff:10.1.2.3", "2001:db8:0:0:1:0:0:1",
	"100.64.0.1", "fd00::abcd", "1.2.3.4",
};

/*
 * Every field set at its limit: strings at their longest, 16 masters,
 * backends over IPv4 and IPv6 at the edges of port and weight, integers at
 * their maximum, and a TEXT of textlen bytes including NULs.
 */
static void
fill_all(struct event *ev, int type, size_t textlen)
{
	char buf[256], *text;
	size_t i;

	event_init(ev, type);
	ev->seq = UINT64_MAX;
	ev->time = UINT64_MAX - 1;
	mklabel(buf, 63, 'c');
	assert_int_equal(event_set_str(ev, F_CLUSTER, buf), 0);
	mklabel(buf, 63, 'n');
	assert_int_equal(event_set_str(ev, F_CNAME, buf), 0);
	mkhost(buf, 253);
	assert_int_equal(event_set_str(ev, F_HOST, buf), 0);
	mklabel(buf, 63, 's');
	assert_int_equal(event_set_str(ev, F_NS, buf), 0);
	mkhost(buf, 253);
	buf[0] = 'z';
	assert_int_equal(event_set_str(ev, F_NAME, buf), 0);
	for (i = 0; i < 255; i++) {
		buf[i] = (char)(0x20 + i % 95);
		if (buf[i] == '"' || buf[i] == '\\')
			buf[i] = '_';
	}
	buf[255] = '\0';
	assert_int_equal(event_set_str(ev, F_WHY, buf), 0);
	memset(buf, 'P', 63);
	buf[63] = '\0';
	buf[10] = '_';
	buf[20] = '-';
	assert_int_equal(event_set_str(ev, F_PROXY, buf), 0);
	memcpy(buf, "haproxy_2-Kind9", 16);		/* 15 chars */
	assert_int_equal(event_set_str(ev, F_KIND, buf), 0);

	for (i = 0; i < EV_MAX_MASTERS; i++)
		strcpy(ev->masters[i], masters[i]);
	ev->nmasters = EV_MAX_MASTERS;
	ev->has |= F_MASTERS;
	ev->mport = 65535;
	ev->route = UINT64_MAX;
	ev->want = 65535;
	ev->port = 1;
	ev->gen = UINT64_MAX;
	ev->boot = 0x0102030405060708ULL;
	ev->sid = 1ULL << 63;
	ev->fgen = UINT64_MAX - 2;
	ev->has |= F_MPORT | F_ROUTE | F_WANT | F_PORT | F_GEN | F_BOOT |
	    F_SID | F_FGEN;
	for (i = 0; i < EV_MAX_HELD; i++)
		assert_int_equal(event_add_held(ev, i == EV_MAX_HELD - 1 ?
		    65535 : 1 + (unsigned)i * 251), 0);
	for (i = 0; i < EV_MAX_MASTERS; i++)
		assert_int_equal(event_add_backend(ev, masters[i],
		    i == 0 ? 1 : 65536 - (unsigned)i, (unsigned)(i * 17) % 257),
		    0);
	assert_int_equal(event_add_backend(ev, "10.9.9.9", 80, 256), 0);
	assert_int_equal(event_add_backend(ev, "fd00::9", 443, 0), 0);

	text = malloc(textlen + 1);
	assert_non_null(text);
	for (i = 0; i < textlen; i++)
		text[i] = (char)(i * 131 + (i >> 9));
	assert_int_equal(event_set_text(ev, text, textlen), 0);
	free(text);
}

/* a and b agree on header and on every field a has. */
static void
assert_same(const struct event *a, const struct event *b)
{
	size_t i;

	assert_int_equal(a->type, b->type);
	assert_true(a->seq == b->seq);
	assert_true(a->time == b->time);
	assert_int_equal(a->has, b->has);
	if (a->has & F_CLUSTER)
		assert_string_equal(a->cluster, b->cluster);
	if (a->has & F_CNAME)
		assert_string_equal(a->cname, b->cname);
	if (a->has & F_HOST)
		assert_string_equal(a->host, b->host);
	if (a->has & F_MASTERS) {
		assert_int_equal(a->nmasters, b->nmasters);
		for (i = 0; i < a->nmasters; i++)
			assert_string_equal(a->masters[i], b->masters[i]);
	}
	if (a->has & F_MPORT)
		assert_true(a->mport == b->mport);
	if (a->has & F_NS)
		assert_string_equal(a->ns, b->ns);
	if (a->has & F_NAME)
		assert_string_equal(a->name, b->name);
	if (a->has & F_ROUTE)
		assert_true(a->route == b->route);
	if (a->has & F_WANT)
		assert_true(a->want == b->want);
	if (a->has & F_BACKENDS) {
		assert_int_equal(a->nbackends, b->nbackends);
		for (i = 0; i < a->nbackends; i++) {
			assert_string_equal(a->backends[i].ip,
			    b->backends[i].ip);
			assert_int_equal(a->backends[i].port,
			    b->backends[i].port);
			assert_int_equal(a->backends[i].weight,
			    b->backends[i].weight);
		}
	}
	if (a->has & F_PORT)
		assert_true(a->port == b->port);
	if (a->has & F_WHY)
		assert_string_equal(a->why, b->why);
	if (a->has & F_PROXY)
		assert_string_equal(a->proxy, b->proxy);
	if (a->has & F_GEN)
		assert_true(a->gen == b->gen);
	if (a->has & F_BOOT)
		assert_true(a->boot == b->boot);
	if (a->has & F_SID)
		assert_true(a->sid == b->sid);
	if (a->has & F_KIND)
		assert_string_equal(a->kind, b->kind);
	if (a->has & F_HELD) {
		assert_int_equal(a->nheld, b->nheld);
		assert_memory_equal(a->held, b->held,
		    a->nheld * sizeof(a->held[0]));
	}
	if (a->has & F_FGEN)
		assert_true(a->fgen == b->fgen);
	if (a->has & F_TEXT) {
		assert_int_equal(a->textlen, b->textlen);
		assert_memory_equal(a->text, b->text, a->textlen);
		assert_int_equal(b->text[b->textlen], '\0');
	}
}

/* Encode ev and decode it back into out. */
static void
roundtrip(const struct event *ev, struct event *out)
{
	unsigned char *buf;
	size_t len;
	char err[256];

	assert_int_equal(event_encode(ev, &buf, &len), 0);
	if (decode_copy(out, buf, len, err, sizeof(err)) != 0)
		fail_msg("%s: %s", event_name(ev->type), err);
	free(buf);
}

/* Round trip. */

/*
 * Every type, with every field set at its limit, decodes to the fields of
 * its type (required and optional) and drops the fields foreign to it.
 */
static void
test_roundtrip_all_types(void **state)
{
	struct event ev, out;
	size_t i;

	(void)state;
	for (i = 0; i < NTYPES; i++) {
		fill_all(&ev, types[i].code, 70000);
		roundtrip(&ev, &out);
		ev.has &= types[i].req | types[i].opt;
		assert_same(&ev, &out);
		assert_string_equal(event_name(out.type), types[i].name);
		assert_true(event_known(out.type));
		event_free(&ev);
		event_free(&out);
	}
}

/* A ROUTE with EV_MAX_BACKENDS backends, v4 and v6, round-trips. */
static void
test_roundtrip_max_backends(void **state)
{
	struct event ev, out;
	char ip[EV_IPLEN];
	unsigned i;

	(void)state;
	fill_all(&ev, EV_ROUTE, 0);
	free(ev.backends);
	ev.backends = NULL;
	ev.nbackends = 0;
	ev.has &= ~F_BACKENDS;
	for (i = 0; i < EV_MAX_BACKENDS; i++) {
		if (i % 2)
			snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16,
			    (i >> 8) & 0xff, i & 0xff);
		else
			snprintf(ip, sizeof(ip), "2001:db8::%x:%x", i, i * 7);
		assert_int_equal(event_add_backend(&ev, ip, 1 + i * 63,
		    i % 257), 0);
	}
	/* one more is refused by the setter too */
	assert_int_equal(event_add_backend(&ev, "10.0.0.1", 80, 1), -1);
	ev.has &= F_CLUSTER | F_NS | F_NAME | F_ROUTE | F_BACKENDS | F_WANT |
	    F_WHY;
	roundtrip(&ev, &out);
	assert_same(&ev, &out);
	event_free(&ev);
	event_free(&out);
}

/* A CONFIG whose TEXT is exactly EV_MAX_TEXT bytes round-trips. */
static void
test_roundtrip_max_text(void **state)
{
	struct event ev, out;
	char *text;

	(void)state;
	event_init(&ev, EV_CONFIG);
	assert_int_equal(event_set_str(&ev, F_KIND, "haproxy"), 0);
	assert_non_null(text = malloc(EV_MAX_TEXT));
	memset(text, 'x', EV_MAX_TEXT);
	text[12345] = '\0';
	assert_int_equal(event_set_text(&ev, text, EV_MAX_TEXT), 0);
	assert_int_equal(event_set_text(&ev, text, EV_MAX_TEXT + 1), -1);
	free(text);
	roundtrip(&ev, &out);
	assert_same(&ev, &out);
	event_free(&ev);
	event_free(&out);
}

/* An empty ROUTE backends list and an empty TEXT are values, not absences. */
static void
test_roundtrip_empty(void **state)
{
	struct event ev, out;

	(void)state;
	event_init(&ev, EV_ROUTE);
	assert_int_equal(event_set_str(&ev, F_CLUSTER, "c1"), 0);
	assert_int_equal(event_set_str(&ev, F_NS, "default"), 0);
	assert_int_equal(event_set_str(&ev, F_NAME, "web"), 0);
	ev.has |= F_ROUTE | F_BACKENDS;
	roundtrip(&ev, &out);
	assert_same(&ev, &out);
	assert_int_equal(out.nbackends, 0);
	event_free(&out);

	event_init(&ev, EV_CONFIG);
	assert_int_equal(event_set_str(&ev, F_KIND, "haproxy"), 0);
	assert_int_equal(event_set_text(&ev, "", 0), 0);
	roundtrip(&ev, &out);
	assert_same(&ev, &out);
	event_free(&ev);
	event_free(&out);
}

/* event_copy duplicates the heap parts; event_free leaves an empty event. */
static void
test_copy(void **state)
{
	struct event ev, cp;

	(void)state;
	fill_all(&ev, EV_ROUTE, 100);
	assert_int_equal(event_copy(&cp, &ev), 0);
	assert_ptr_not_equal(cp.backends, ev.backends);
	assert_ptr_not_equal(cp.text, ev.text);
	assert_same(&ev, &cp);
	event_free(&ev);
	event_free(&cp);
	assert_int_equal(cp.type, EV_NONE);
	assert_int_equal(cp.has, 0);
	assert_null(cp.backends);
	assert_null(cp.text);
	event_free(&cp);			/* and may be freed again */
}

/* Encoding. */

/* event_encode refuses an event lacking any one required field. */
static void
test_encode_missing_field(void **state)
{
	struct event ev;
	unsigned char *buf = NULL;
	size_t i, len;
	int fi;

	(void)state;
	for (i = 0; i < NTYPES; i++)
		for (fi = 0; fi < FI_COUNT; fi++) {
			if (!(types[i].req & (1u << fi)))
				continue;
			fill_all(&ev, types[i].code, 1);
			ev.has &= ~(1u << fi);
			if (event_encode(&ev, &buf, &len) != -1)
				fail_msg("%s encoded without %s",
				    types[i].name, keys[fi]);
			event_free(&ev);
		}
	/* nor does it encode a type it does not know */
	event_init(&ev, 99);
	assert_int_equal(event_encode(&ev, &buf, &len), -1);
}

/* The setters refuse what the decoder would refuse, and leave it unset. */
static void
test_setters(void **state)
{
	struct event ev;

	(void)state;
	event_init(&ev, EV_ROUTE);
	assert_int_equal(event_set_str(&ev, F_CLUSTER, "c1"), 0);
	assert_int_equal(event_set_str(&ev, F_CLUSTER, "C1"), -1);
	assert_false(ev.has & F_CLUSTER);
	assert_int_equal(event_set_str(&ev, F_NS, "-a"), -1);
	assert_int_equal(event_set_str(&ev, F_NAME, "a..b"), -1);
	assert_int_equal(event_set_str(&ev, F_ROUTE, "1"), -1); /* not STR */
	assert_int_equal(event_set_str(&ev, F_WHY, "say \"no\""), -1);
	assert_int_equal(event_add_backend(&ev, "10.0.0.256", 80, 1), -1);
	assert_int_equal(event_add_backend(&ev, "10.0.0.1", 0, 1), -1);
	assert_int_equal(event_add_backend(&ev, "10.0.0.1", 65536, 1), -1);
	assert_int_equal(event_add_backend(&ev, "10.0.0.1", 80, 257), -1);
	assert_false(ev.has & F_BACKENDS);
	/* held ports: each once, ascending, within 1..65535, a bounded few */
	assert_int_equal(event_add_held(&ev, 0), -1);
	assert_int_equal(event_add_held(&ev, 65536), -1);
	assert_false(ev.has & F_HELD);
	assert_int_equal(event_add_held(&ev, 20001), 0);
	assert_int_equal(event_add_held(&ev, 20001), -1);
	assert_int_equal(event_add_held(&ev, 20000), -1);
	assert_int_equal(ev.nheld, 1);
	while (ev.nheld < EV_MAX_HELD)
		assert_int_equal(event_add_held(&ev,
		    20001 + (unsigned)ev.nheld), 0);
	assert_int_equal(event_add_held(&ev, 30000), -1);
	event_free(&ev);
}

/* Decoding: the envelope. */

/* A valid encoding cut at every byte offset is refused, never over-read. */
static void
test_decode_truncated(void **state)
{
	struct event ev;
	unsigned char *buf;
	char err[256];
	size_t i, len, cut;

	(void)state;
	for (i = 0; i < NTYPES; i++) {
		fill_all(&ev, types[i].code, 40);
		assert_int_equal(event_encode(&ev, &buf, &len), 0);
		event_free(&ev);
		for (cut = 0; cut < len; cut++) {
			if (decode_copy(&ev, buf, cut, err, sizeof(err)) != -1)
				fail_msg("%s cut at %zu of %zu decoded",
				    types[i].name, cut, len);
			assert_true(err[0] != '\0');
			event_free(&ev);
		}
		assert_int_equal(decode_copy(&ev, buf, len, err, sizeof(err)),
		    0);
		event_free(&ev);
		free(buf);
	}
}

/* Envelopes that are not [1, type, seq, time, body] are refused. */
static void
test_decode_bad_envelope(void **state)
{
	static const struct {
		const char	*bytes;
		size_t		 len;
		const char	*err;
	} cases[] = {
		{ RAW(""), "envelope" },
		{ RAW("\xc0"), "envelope" },			/* nil */
		{ RAW("\x01"), "envelope" },			/* int */
		{ RAW("\xa3" "abc"), "envelope" },		/* str */
		{ RAW("\x80"), "envelope" },			/* {} */
		{ RAW("\x85\x01\x01\x01\x01\x01\x01\x01\x01\x01\x80"),
		    "envelope" },				/* map */
		{ RAW("\x94\x01\x0b\x01\x01"), "envelope" },	/* 4 items */
		{ RAW("\x96\x01\x0b\x01\x01\x81\xa1" "c\xa1" "a\xc0"),
		    "envelope" },				/* 6 items */
		{ RAW("\x95\x02\x0b\x01\x01\x81\xa1" "c\xa1" "a"),
		    "version" },				/* v2 */
		{ RAW("\x95\x00\x0b\x01\x01\x81\xa1" "c\xa1" "a"),
		    "version" },				/* v0 */
		{ RAW("\x95\xff\x0b\x01\x01\x81\xa1" "c\xa1" "a"),
		    "version" },				/* v -1 */
		{ RAW("\x95\x01\xce\x00\x01\x00\x00\x01\x01\x80"),
		    "envelope" },				/* type>16b */
		{ RAW("\x95\x01\xa1" "a\x01\x01\x80"), "envelope" },
		{ RAW("\x95\x01\x0b\xff\x01\x81\xa1" "c\xa1" "a"),
		    "envelope" },				/* seq -1 */
		{ RAW("\x95\x01\x0b\x01\xcb\0\0\0\0\0\0\0\0\x81\xa1"
		    "c\xa1" "a"), "envelope" },		/* float time */
		{ RAW("\x95\x01\x0b\x01\x01\x91\xa1" "a"), "not a map" },
		{ RAW("\x95\x01\x0b\x01\x01\xa1" "a"), "not a map" },
	};
	struct event ev;
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (decode_copy(&ev, cases[i].bytes, cases[i].len, err,
		    sizeof(err)) != -1)
			fail_msg("case %zu decoded", i);
		if (strstr(err, cases[i].err) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err,
			    cases[i].err);
		event_free(&ev);
	}
	/* the control: the same bytes with version 1 decode */
	assert_int_equal(decode_copy(&ev, RAW("\x95\x01\x0b\x01\x01\x81"
	    "\xa1" "c\xa1" "a"), err, sizeof(err)), 0);
	assert_int_equal(ev.type, EV_CLUSTER_DOWN);
	assert_string_equal(ev.cluster, "a");
}

/*
 * Counts and lengths far beyond the bytes left are refused before anything
 * is allocated: under ASan a 4 GiB calloc would abort the run.
 */
static void
test_decode_huge_counts(void **state)
{
	static const struct {
		const char	*bytes;
		size_t		 len;
	} raw[] = {
		{ RAW("\xdd\xff\xff\xff\xff") },
		{ RAW("\xdd\xff\xff\xff\xff\x01\x0b\x01\x01\x80") },
		{ RAW("\xdc\xff\xff\x01\x0b\x01\x01\x80") },
		{ RAW("\xdd\x00\x00\x00\x05\x01\x02\x01\x01\x80") }, /* ok */
	};
	static const char *vals[] = {
		"\xdd\xff\xff\xff\xff",			/* array32 */
		"\xdc\xff\xff",				/* array16 */
		"\xdf\xff\xff\xff\xff",			/* map32 */
		"\xde\xff\xff",				/* map16 */
		"\xdb\xff\xff\xff\xff",			/* str32 */
		"\xda\xff\xff",				/* str16 */
		"\xd9\xff",				/* str8 */
		"\xc6\xff\xff\xff\xff",			/* bin32 */
		"\x9f",					/* fixarray 15 */
		"\x8f",					/* fixmap 15 */
		"\xbf",					/* fixstr 31 */
	};
	struct event ev;
	struct mb b;
	char err[256];
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		rc = decode_copy(&ev, raw[i].bytes, raw[i].len, err,
		    sizeof(err));
		assert_int_equal(rc, i == 3 ? 0 : -1);
		event_free(&ev);
	}
	for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		size_t vlen = strlen(vals[i]);

		/* as the body */
		mb_init(&b);
		mb_raw(&b, "\x95\x01\x0c\x01\x01", 5);
		mb_raw(&b, vals[i], vlen);
		mb_raw(&b, "\xa1" "c", 2);
		expect_err(&b, "ROUTE");
		/* as a key */
		mb_event(&b, EV_ROUTE, -1, 1);
		mb_raw(&b, vals[i], vlen);
		mb_raw(&b, "\x01", 1);
		expect_err(&b, "ROUTE");
		/* as the value of an unknown key, of masters, backends, text */
		mb_event(&b, EV_ROUTE, -1, 1);
		mb_str(&b, "zz");
		mb_raw(&b, vals[i], vlen);
		expect_err(&b, "ROUTE");
		mb_event(&b, EV_CLUSTER_UP, FI_MASTERS, 1);
		mb_str(&b, "m");
		mb_raw(&b, vals[i], vlen);
		expect_err(&b, "field m");
		mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
		mb_str(&b, "b");
		mb_raw(&b, vals[i], vlen);
		expect_err(&b, "field b");
		mb_event(&b, EV_CONFIG, FI_TEXT, 1);
		mb_str(&b, "text");
		mb_raw(&b, vals[i], vlen);
		expect_err(&b, "field text");
		/* as one backend */
		mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
		mb_str(&b, "b");
		msgpack_pack_array(&b.pk, 1);
		mb_raw(&b, vals[i], vlen);
		expect_err(&b, "field b");
	}
}

/* A TEXT declared (and present) beyond EV_MAX_TEXT is refused. */
static void
test_decode_text_too_long(void **state)
{
	struct mb b;
	char *text;

	(void)state;
	assert_non_null(text = calloc(1, EV_MAX_TEXT + 1));
	mb_event(&b, EV_CONFIG, FI_TEXT, 1);
	mb_str(&b, "text");
	mb_strn(&b, text, EV_MAX_TEXT + 1);
	expect_err(&b, "field text");
	free(text);
}

/* A valid event followed by anything is refused. */
static void
test_decode_trailing(void **state)
{
	struct event ev;
	struct mb b;

	(void)state;
	mb_event(&b, EV_ROUTE, -1, 0);
	expect_ok(&b, &ev);
	event_free(&ev);
	mb_event(&b, EV_ROUTE, -1, 0);
	mb_raw(&b, "\xc0", 1);
	expect_err(&b, "trailing");
	mb_event(&b, EV_SINCE, -1, 0);
	mb_raw(&b, "\x95\x01\x02\x00\x00\x80", 6);
	expect_err(&b, "trailing");
}

/* Decoding: fields. */

/* Each missing required field is named. */
static void
test_decode_missing_field(void **state)
{
	struct mb b;
	char want[64];
	size_t i;
	int fi;

	(void)state;
	for (i = 0; i < NTYPES; i++)
		for (fi = 0; fi < FI_COUNT; fi++) {
			if (!(types[i].req & (1u << fi)))
				continue;
			mb_event(&b, types[i].code, fi, 0);
			snprintf(want, sizeof(want), "missing field %s",
			    keys[fi]);
			expect_err(&b, want);
		}
}

/* A string field set to a hostile value in an otherwise good event. */
static void
reject_str(int type, int fi, const char *s, size_t len)
{
	struct mb b;
	char want[64];

	mb_event(&b, type, fi, 1);
	mb_str(&b, keys[fi]);
	mb_strn(&b, s, len);
	snprintf(want, sizeof(want), "field %s", keys[fi]);
	expect_err(&b, want);
}

static void
accept_str(int type, int fi, const char *s)
{
	struct event ev;
	struct mb b;

	mb_event(&b, type, fi, 1);
	mb_str(&b, keys[fi]);
	mb_str(&b, s);
	expect_ok(&b, &ev);
	event_free(&ev);
}

/* Embedded NULs, over-long strings and invalid names are refused. */
static void
test_decode_bad_strings(void **state)
{
	static const struct {
		int	type, fi;
		size_t	size;		/* the member's size */
	} strs[] = {
		{ EV_ROUTE, FI_CLUSTER, 64 }, { EV_API_SET, FI_CNAME, 64 },
		{ EV_API_SET, FI_HOST, 254 }, { EV_ROUTE, FI_NS, 64 },
		{ EV_ROUTE, FI_NAME, 254 }, { EV_REFUSED, FI_WHY, 256 },
		{ EV_APPLIED, FI_PROXY, 64 }, { EV_CONFIG, FI_KIND, 16 },
	};
	char buf[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		int t = strs[i].type, fi = strs[i].fi;

		/* longest that fits, then one more */
		if (fi == FI_HOST || fi == FI_NAME)
			mkhost(buf, strs[i].size - 1);
		else
			mklabel(buf, strs[i].size - 1, 'a');
		accept_str(t, fi, buf);
		if (fi == FI_HOST || fi == FI_NAME)
			mkhost(buf, strs[i].size);
		else
			mklabel(buf, strs[i].size, 'a');
		reject_str(t, fi, buf, strs[i].size);
		/* embedded NUL, at the start and inside */
		reject_str(t, fi, "ab\0cd", 5);
		reject_str(t, fi, "\0", 1);
		/* not a string at all */
		{
			struct mb b;

			mb_event(&b, t, fi, 1);
			mb_str(&b, keys[fi]);
			msgpack_pack_uint8(&b.pk, 1);
			expect_err(&b, keys[fi]);
		}
	}
	/* bin is taken as bytes, like str */
	{
		struct event ev;
		struct mb b;

		mb_event(&b, EV_CLUSTER_DOWN, FI_CLUSTER, 1);
		mb_str(&b, "c");
		mb_raw(&b, "\xc4\x02" "c9", 4);
		expect_ok(&b, &ev);
		assert_string_equal(ev.cluster, "c9");
	}
	/* names */
	reject_str(EV_ROUTE, FI_CLUSTER, "Prod", 4);
	reject_str(EV_ROUTE, FI_CLUSTER, "a.b", 3);
	reject_str(EV_ROUTE, FI_CLUSTER, "", 0);
	accept_str(EV_ROUTE, FI_CLUSTER, "-c-1-");	/* ids may */
	reject_str(EV_ROUTE, FI_NS, "Default", 7);
	reject_str(EV_ROUTE, FI_NS, "-default", 8);
	reject_str(EV_ROUTE, FI_NS, "default-", 8);
	reject_str(EV_ROUTE, FI_NS, "a.b", 3);
	reject_str(EV_ROUTE, FI_NS, "", 0);
	mklabel(buf, 64, 'q');
	reject_str(EV_ROUTE, FI_NS, buf, 64);
	reject_str(EV_ROUTE, FI_NAME, "a..b", 4);
	reject_str(EV_ROUTE, FI_NAME, ".a", 2);
	reject_str(EV_ROUTE, FI_NAME, "a.", 2);
	reject_str(EV_ROUTE, FI_NAME, "a.-b", 4);
	reject_str(EV_ROUTE, FI_NAME, "Web", 3);
	reject_str(EV_ROUTE, FI_NAME, "we_b", 4);
	/* a name may hold a label past 63, as the API server's do; a host not */
	snprintf(buf, sizeof(buf), "x.");
	mklabel(buf + 2, 64, 'q');			/* 64-char label */
	accept_str(EV_ROUTE, FI_NAME, buf);
	reject_str(EV_API_SET, FI_HOST, buf, strlen(buf));
	mklabel(buf + 2, 63, 'q');
	accept_str(EV_ROUTE, FI_NAME, buf);
	accept_str(EV_API_SET, FI_HOST, buf);
	mklabel(buf, 253, 'q');				/* one label, all of it */
	accept_str(EV_ROUTE, FI_NAME, buf);
	reject_str(EV_ROUTE, FI_NAME, "a_b.c", 5);
	reject_str(EV_API_SET, FI_HOST, "api..example.com", 16);
	reject_str(EV_API_SET, FI_CNAME, "a.b", 3);
	reject_str(EV_REFUSED, FI_WHY, "say \"no\"", 8);
	reject_str(EV_REFUSED, FI_WHY, "a\\b", 3);
	reject_str(EV_REFUSED, FI_WHY, "line\nbreak", 10);
	reject_str(EV_REFUSED, FI_WHY, "caf\xc3\xa9", 5);
	accept_str(EV_REFUSED, FI_WHY, "");
	reject_str(EV_APPLIED, FI_PROXY, "ha proxy", 8);
	reject_str(EV_CONFIG, FI_KIND, "ha.proxy", 8);
}

/*
 * Not numeric IPs: near misses, and what means something in a config file
 * (newline, space, '#', ';', '}', brackets, a zone, a port), and Unicode
 * look-alikes.  Both decoders refuse each as a master and as a backend.
 */
static const char *bad_ips[] = {
	"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4/24",
	"localhost", "::g", "1:2:3:4:5:6:7:8:9", " 1.2.3.4",
	"fe80::1%eth0", "01.2.3.4", "10.0.0.1\n", "10.0.0.1 ", "10.0.0.1#",
	"10.0.0.1;", "10.0.0.1}", "[::1]", "::1%lo", "10.0.0.1:80",
	"\xef\xbc\x91" "0.0.0.1", "10.0.0.1\xe2\x80\x8b",
};
/* Masters and backend addresses must be numeric IPs. */
static void
test_decode_bad_ips(void **state)
{
	struct event ev;
	struct mb b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
		mb_event(&b, EV_CLUSTER_UP, FI_MASTERS, 1);
		mb_str(&b, "m");
		msgpack_pack_array(&b.pk, 2);
		mb_str(&b, "10.0.0.1");
		mb_str(&b, bad_ips[i]);
		expect_err(&b, "field m");

		mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
		mb_str(&b, "b");
		msgpack_pack_array(&b.pk, 1);
		mb_backend(&b, bad_ips[i], 80, 1);
		expect_err(&b, "field b");
	}
	/* an IP of 46 characters cannot fit */
	mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, 1);
	mb_backend(&b, "00000:0000:0000:0000:0000:ffff:255.255.255.255", 80, 1);
	expect_err(&b, "field b");
	/* a master with a NUL in it */
	mb_event(&b, EV_CLUSTER_UP, FI_MASTERS, 1);
	mb_str(&b, "m");
	msgpack_pack_array(&b.pk, 1);
	mb_strn(&b, "10.0.0.1\0x", 10);
	expect_err(&b, "field m");
	/* masters: not strings; 17 of them; none is fine */
	mb_event(&b, EV_CLUSTER_UP, FI_MASTERS, 1);
	mb_str(&b, "m");
	msgpack_pack_array(&b.pk, 1);
	msgpack_pack_uint32(&b.pk, 0x0a000001);
	expect_err(&b, "field m");
	mb_event(&b, EV_CLUSTER_UP, FI_MASTERS, 1);
	mb_str(&b, "m");
	msgpack_pack_array(&b.pk, EV_MAX_MASTERS + 1);
	for (i = 0; i < EV_MAX_MASTERS + 1; i++)
		mb_str(&b, "10.0.0.1");
	expect_err(&b, "field m");
	mb_event(&b, EV_CLUSTER_UP, FI_MASTERS, 1);
	mb_str(&b, "m");
	msgpack_pack_array(&b.pk, 0);
	expect_ok(&b, &ev);
	assert_int_equal(ev.nmasters, 0);
}

/* Ports above 65535, weights above 256, port 0, and too many backends. */
static void
test_decode_bad_numbers(void **state)
{
	static const int portf[] = { FI_MPORT, FI_WANT, FI_PORT };
	static const int portt[] = { EV_CLUSTER_UP, EV_ROUTE, EV_PORT_SET };
	struct event ev;
	struct mb b;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		mb_event(&b, portt[i], portf[i], 1);
		mb_str(&b, keys[portf[i]]);
		msgpack_pack_uint64(&b.pk, 65536);
		expect_err(&b, keys[portf[i]]);
		mb_event(&b, portt[i], portf[i], 1);
		mb_str(&b, keys[portf[i]]);
		msgpack_pack_uint64(&b.pk, 1ULL << 32 | 80);
		expect_err(&b, keys[portf[i]]);
		mb_event(&b, portt[i], portf[i], 1);
		mb_str(&b, keys[portf[i]]);
		msgpack_pack_int64(&b.pk, -1);
		expect_err(&b, keys[portf[i]]);
		mb_event(&b, portt[i], portf[i], 1);
		mb_str(&b, keys[portf[i]]);
		msgpack_pack_uint64(&b.pk, 65535);
		expect_ok(&b, &ev);
		event_free(&ev);
	}
	/* U64 fields take the whole range, and nothing but unsigned ints */
	mb_event(&b, EV_ROUTE, FI_ROUTE, 1);
	mb_str(&b, "r");
	msgpack_pack_uint64(&b.pk, UINT64_MAX);
	expect_ok(&b, &ev);
	assert_true(ev.route == UINT64_MAX);
	event_free(&ev);
	mb_event(&b, EV_ROUTE, FI_ROUTE, 1);
	mb_str(&b, "r");
	msgpack_pack_double(&b.pk, 1.0);
	expect_err(&b, "field r");
	mb_event(&b, EV_ROUTE, FI_ROUTE, 1);
	mb_str(&b, "r");
	mb_str(&b, "1");
	expect_err(&b, "field r");

	/* backend ports and weights */
	{
		static const struct {
			uint64_t	port, weight;
			int		ok;
		} bk[] = {
			{ 1, 0, 1 }, { 65535, 256, 1 },
			{ 0, 1, 0 }, { 65536, 1, 0 }, { 80, 257, 0 },
			{ 80, 65536 + 1, 0 },
		};

		for (i = 0; i < sizeof(bk) / sizeof(bk[0]); i++) {
			mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
			mb_str(&b, "b");
			msgpack_pack_array(&b.pk, 1);
			mb_backend(&b, "::1", bk[i].port, bk[i].weight);
			if (bk[i].ok) {
				expect_ok(&b, &ev);
				assert_int_equal(ev.backends[0].port,
				    bk[i].port);
				assert_int_equal(ev.backends[0].weight,
				    bk[i].weight);
				event_free(&ev);
			} else
				expect_err(&b, "field b");
		}
	}
	/* a backend that is not [ip, port, weight] */
	mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, 1);
	msgpack_pack_array(&b.pk, 2);
	mb_str(&b, "::1");
	msgpack_pack_uint16(&b.pk, 80);
	expect_err(&b, "field b");
	mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, 1);
	msgpack_pack_array(&b.pk, 4);
	mb_str(&b, "::1");
	msgpack_pack_uint16(&b.pk, 80);
	msgpack_pack_uint16(&b.pk, 1);
	msgpack_pack_uint16(&b.pk, 1);
	expect_err(&b, "field b");
	mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, 1);
	msgpack_pack_map(&b.pk, 0);
	expect_err(&b, "field b");
	/* EV_MAX_BACKENDS + 1 backends */
	mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, EV_MAX_BACKENDS + 1);
	for (i = 0; i < EV_MAX_BACKENDS + 1; i++)
		mb_backend(&b, "10.0.0.1", 80, 1);
	expect_err(&b, "field b");
}

/*
 * Unknown keys are skipped whatever their value (scalars of every kind,
 * nested maps and arrays); so are keys foreign to the type, and a repeated
 * key after its first value.
 */
static void
test_decode_skips_unknown(void **state)
{
	struct event ev;
	struct mb b;
	size_t n;

	(void)state;
	n = 14;
	mb_event(&b, EV_CLUSTER_DOWN, -1, n);
	mb_str(&b, "zz");
	msgpack_pack_nil(&b.pk);
	mb_str(&b, "");
	msgpack_pack_true(&b.pk);
	mb_str(&b, "cc");
	msgpack_pack_int64(&b.pk, INT64_MIN);
	mb_str(&b, "c ");
	msgpack_pack_int8(&b.pk, -3);
	mb_str(&b, "f");
	msgpack_pack_double(&b.pk, 3.5);
	mb_str(&b, "g32");
	msgpack_pack_float(&b.pk, 1.5f);
	mb_str(&b, "bin");
	msgpack_pack_bin(&b.pk, 3);
	msgpack_pack_bin_body(&b.pk, "\0\1\2", 3);
	mb_str(&b, "nested");		/* {"a": [1, {"b": [[], {}]}, "x"]} */
	msgpack_pack_map(&b.pk, 1);
	mb_str(&b, "a");
	msgpack_pack_array(&b.pk, 3);
	msgpack_pack_uint8(&b.pk, 1);
	msgpack_pack_map(&b.pk, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, 2);
	msgpack_pack_array(&b.pk, 0);
	msgpack_pack_map(&b.pk, 0);
	mb_str(&b, "x");
	mb_str(&b, "big");		/* array16 and map16 headers */
	mb_raw(&b, "\xdc\x00\x02\xc2\xc3", 5);
	mb_str(&b, "big2");
	mb_raw(&b, RAW("\xdf\x00\x00\x00\x01\xa1" "k\xcf\1\2\3\4\5\6\7\x08"));
	/* keys of other types, with values that would not even be valid */
	mb_str(&b, "ns");
	mb_str(&b, "NOT A LABEL");
	mb_str(&b, "text");
	msgpack_pack_array(&b.pk, 1);
	msgpack_pack_nil(&b.pk);
	mb_str(&b, "p");
	msgpack_pack_uint64(&b.pk, 1ULL << 40);
	/* a repeated key: the first value counts, the second is skipped */
	mb_str(&b, "c");
	mb_str(&b, "Second Value");
	expect_ok(&b, &ev);
	assert_int_equal(ev.type, EV_CLUSTER_DOWN);
	assert_int_equal(ev.has, F_CLUSTER);
	assert_string_equal(ev.cluster, "c1");
	event_free(&ev);

	/* an optional field of ROUTE is kept, a foreign one dropped */
	mb_event(&b, EV_ROUTE, -1, 2);
	mb_str(&b, "want");
	msgpack_pack_uint16(&b.pk, 20003);
	mb_str(&b, "px");
	mb_str(&b, "haproxy");
	expect_ok(&b, &ev);
	assert_true(ev.has & F_WANT);
	assert_false(ev.has & F_PROXY);
	assert_true(ev.want == 20003);
	event_free(&ev);
}

/* Skipping refuses what it cannot skip: ext types, nesting too deep. */
static void
test_decode_skip_limits(void **state)
{
	struct mb b;
	size_t i;

	(void)state;
	mb_event(&b, EV_CLUSTER_DOWN, -1, 1);
	mb_str(&b, "zz");
	mb_raw(&b, "\xd4\x01\x00", 3);		/* fixext1 */
	expect_err(&b, "bad value");
	mb_event(&b, EV_CLUSTER_DOWN, -1, 1);
	mb_str(&b, "zz");
	mb_raw(&b, "\xc1", 1);			/* never used */
	expect_err(&b, "bad value");
	/* 100,000 nested arrays: refused, without exhausting the stack */
	mb_event(&b, EV_CLUSTER_DOWN, -1, 1);
	mb_str(&b, "zz");
	for (i = 0; i < 100000; i++)
		mb_raw(&b, "\x91", 1);
	mb_raw(&b, "\xc0", 1);
	expect_err(&b, "bad value");
}

/* An unknown type decodes with its type set and no fields. */
static void
test_decode_unknown_type(void **state)
{
	struct event ev;
	struct mb b;

	(void)state;
	mb_init(&b);
	mb_raw(&b, RAW("\x95\x01\xcd\xff\xfe\x05\x06\x81\xa1" "c\xa1" "a"));
	expect_ok(&b, &ev);
	assert_int_equal(ev.type, 0xfffe);
	assert_int_equal(ev.has, 0);
	assert_true(ev.seq == 5 && ev.time == 6);
	assert_false(event_known(ev.type));
	assert_string_equal(event_name(ev.type), "UNKNOWN");
	assert_string_equal(ev.cluster, "");
	event_free(&ev);
	/* type 0 (EV_NONE) is one of them */
	mb_init(&b);
	mb_raw(&b, "\x95\x01\x00\x05\x06\x80", 6);
	expect_ok(&b, &ev);
	assert_int_equal(ev.type, EV_NONE);
	assert_int_equal(ev.has, 0);
}

/*
 * A value declared longer than the bytes left, under an unknown key, must be
 * refused: the message is truncated.
 *
 * Regression (found in common/event.c, fixed): mp_bytes and mp_count move the
 * cursor past a header before they fail their length check, and mp_skip then
 * tries the next reader from the moved cursor.  "\xd9\x05\x90" (a str8 of 5
 * with 1 byte left) is thus skipped as an empty array, and "\xdc\xff\xff\x80"
 * (an array16 of 65535 with 1 byte left) as an empty map: both are accepted.
 */
static void
test_skip_truncated_value(void **state)
{
	struct mb b;

	(void)state;
	mb_event(&b, EV_CLUSTER_DOWN, -1, 1);
	mb_str(&b, "zz");
	mb_raw(&b, "\xd9\x05\x90", 3);
	expect_err(&b, "bad value");
	mb_event(&b, EV_CLUSTER_DOWN, -1, 1);
	mb_str(&b, "zz");
	mb_raw(&b, "\xdc\xff\xff\x80", 4);
	expect_err(&b, "bad value");
}

/*
 * A backend port or weight that only fits after truncation to 32 bits must be
 * refused.
 *
 * Regression (found in common/event.c, fixed): the u64 port
 * and weight are cast to unsigned before event_add_backend range-checks them,
 * so port 2^32+80 decodes as 80 and weight 2^32+1 as 1.
 */
static void
test_backend_u64_truncation(void **state)
{
	struct mb b;

	(void)state;
	mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, 1);
	mb_backend(&b, "10.0.0.1", (1ULL << 32) + 80, 1);
	expect_err(&b, "field b");
	mb_event(&b, EV_ROUTE, FI_BACKENDS, 1);
	mb_str(&b, "b");
	msgpack_pack_array(&b.pk, 1);
	mb_backend(&b, "10.0.0.1", 80, (1ULL << 32) + 1);
	expect_err(&b, "field b");
}

/* JSON and owner. */

/* event_json: header, every field by its key, TEXT as its length. */
static void
test_json(void **state)
{
	struct event ev;
	json_t *j;
	char *s;

	(void)state;
	event_init(&ev, EV_ROUTE);
	ev.seq = 5;
	ev.time = 1700000000123ULL;
	assert_int_equal(event_set_str(&ev, F_CLUSTER, "c1"), 0);
	assert_int_equal(event_set_str(&ev, F_NS, "default"), 0);
	assert_int_equal(event_set_str(&ev, F_NAME, "web"), 0);
	ev.route = 2;
	ev.want = 20003;
	ev.has |= F_ROUTE | F_WANT;
	assert_int_equal(event_add_backend(&ev, "10.0.0.1", 80, 1), 0);
	assert_int_equal(event_add_backend(&ev, "fd00::1", 8080, 256), 0);
	assert_non_null(j = event_json(&ev));
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"body\":{\"b\":[[\"10.0.0.1\",80,1],"
	    "[\"fd00::1\",8080,256]],\"c\":\"c1\",\"n\":\"web\","
	    "\"ns\":\"default\",\"r\":2,\"want\":20003},\"seq\":5,"
	    "\"time\":1700000000123,\"type\":\"ROUTE\"}");
	free(s);
	json_decref(j);
	event_free(&ev);

	event_init(&ev, EV_CONFIG);
	assert_int_equal(event_set_str(&ev, F_KIND, "haproxy"), 0);
	assert_int_equal(event_set_text(&ev, "a\0b", 3), 0);
	assert_non_null(j = event_json(&ev));
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"body\":{\"kind\":\"haproxy\",\"text\":3},"
	    "\"seq\":0,\"time\":0,\"type\":\"CONFIG\"}");
	free(s);
	json_decref(j);
	event_free(&ev);
}

/*
 * A u64 above 2^63 - 1 dumps as its exact digits in a string, never as a
 * negative number, and event_from_json() reads that back; one at 2^63 - 1
 * is still an integer, and a string for what an integer holds is refused.
 */
static void
test_json_u64_high(void **state)
{
	static const char *bad[] = {
		"\"9223372036854775807\"", "\"18446744073709551616\"",
		"\"09223372036854775808\"", "\"-1\"", "\"9223372036854775808 \"",
		"\"\"", "\"1e19\"",
	};
	struct event ev, back;
	char err[256], line[160], *s;
	json_t *j;
	size_t i;

	(void)state;
	event_init(&ev, EV_HEARTBEAT);
	ev.seq = UINT64_MAX;
	ev.time = (uint64_t)INT64_MAX;
	ev.boot = (uint64_t)INT64_MAX + 1;
	ev.has |= F_BOOT;
	assert_non_null(j = event_json(&ev));
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"body\":{\"boot\":\"9223372036854775808\"},"
	    "\"seq\":\"18446744073709551615\",\"time\":9223372036854775807,"
	    "\"type\":\"HEARTBEAT\"}");
	assert_null(strchr(s, '-'));
	free(s);
	if (event_from_json(&back, j, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	json_decref(j);
	assert_true(back.seq == UINT64_MAX);
	assert_true(back.time == (uint64_t)INT64_MAX);
	assert_true(back.boot == (uint64_t)INT64_MAX + 1);
	event_free(&back);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "{\"type\":\"HEARTBEAT\",\"seq\":1,"
		    "\"time\":0,\"body\":{\"boot\":%s}}", bad[i]);
		assert_non_null(j = json_loads(line, 0, NULL));
		if (event_from_json(&back, j, err, sizeof(err)) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(strstr(err, "field boot"));
		json_decref(j);
	}
	event_free(&ev);
}

/* event_from_json: the inverse of event_json, with the decoder's rules. */

/* ev as JSON, with its TEXT (if any) as the string event_from_json wants. */
static json_t *
json_of(const struct event *ev)
{
	json_t *j;

	assert_non_null(j = event_json(ev));
	if (ev->has & F_TEXT)
		assert_int_equal(json_object_set_new(json_object_get(j,
		    "body"), "text", json_stringn(ev->text, ev->textlen)), 0);
	return j;
}

/* fill_all with the u64s JSON can carry (jansson's integers are signed). */
static void
fill_json(struct event *ev, int type)
{
	fill_all(ev, type, 0);
	assert_int_equal(event_set_text(ev, RAW("global\n\t# \"x\"\n")), 0);
	ev->seq = ev->time = INT64_MAX;
	ev->route = ev->gen = ev->sid = ev->fgen = INT64_MAX;
}

/* event_from_json must fail with an error containing errsub. */
static void
json_reject_(json_t *j, const char *errsub, const char *file, int line)
{
	struct event ev;
	char err[256] = "";
	int rc;

	rc = event_from_json(&ev, j, err, sizeof(err));
	json_decref(j);
	if (rc != -1)
		_fail(file, line);
	assert_int_equal(ev.type, EV_NONE);	/* nothing left behind */
	if (strstr(err, errsub) == NULL) {
		print_error("error \"%s\" lacks \"%s\"\n", err, errsub);
		_fail(file, line);
	}
}
#define json_reject(j, s)	json_reject_((j), (s), __FILE__, __LINE__)

/*
 * Every type, every field at its limit (integers within what JSON holds),
 * decodes from JSON to exactly what the same event decodes to from the
 * bus: the two decoders agree, foreign fields dropped alike.
 */
static void
test_from_json_all_types(void **state)
{
	struct event ev, bus, file;
	char err[256];
	json_t *j;
	size_t i;

	(void)state;
	for (i = 0; i < NTYPES; i++) {
		fill_json(&ev, types[i].code);
		roundtrip(&ev, &bus);
		j = json_of(&ev);
		if (event_from_json(&file, j, err, sizeof(err)) != 0)
			fail_msg("%s: %s", types[i].name, err);
		json_decref(j);
		assert_same(&bus, &file);
		event_free(&ev);
		event_free(&bus);
		event_free(&file);
	}
}

/* The envelope: an object with a known type, u64 seq and time, a body. */
static void
test_from_json_envelope(void **state)
{
	static const char *bad[] = {
		"[]", "\"API_DEL\"", "{}",
		"{\"seq\":1,\"time\":0,\"body\":{\"c\":\"c1\"}}",
		"{\"type\":\"API_DEL\",\"time\":0,\"body\":{\"c\":\"c1\"}}",
		"{\"type\":\"API_DEL\",\"seq\":1,\"body\":{\"c\":\"c1\"}}",
		"{\"type\":\"API_DEL\",\"seq\":1,\"time\":0}",
		"{\"type\":\"API_DEL\",\"seq\":1,\"time\":0,\"body\":[]}",
		"{\"type\":31,\"seq\":1,\"time\":0,\"body\":{\"c\":\"c1\"}}",
		"{\"type\":\"API_DEL\",\"seq\":-1,\"time\":0,\"body\":{}}",
		"{\"type\":\"API_DEL\",\"seq\":1.5,\"time\":0,\"body\":{}}",
		"{\"type\":\"API_DEL\",\"seq\":\"1\",\"time\":0,\"body\":{}}",
	};
	struct event ev;
	char err[256];
	json_t *j;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_non_null(j = json_loads(bad[i], JSON_DECODE_ANY, NULL));
		json_reject(j, "not an event");
	}
	j = json_loads("{\"type\":\"API_DELETE\",\"seq\":1,\"time\":0,"
	    "\"body\":{\"c\":\"c1\"}}", 0, NULL);
	json_reject(j, "unknown event type");
	j = json_loads("{\"type\":\"UNKNOWN\",\"seq\":1,\"time\":0,"
	    "\"body\":{}}", 0, NULL);
	json_reject(j, "unknown event type");
	j = json_loads("{\"type\":\"PORT_FREE\",\"seq\":1,\"time\":0,"
	    "\"body\":{\"p\":21000,\"c\":\"c1\",\"ns\":\"a\",\"r\":0}}", 0,
	    NULL);
	json_reject(j, "PORT_FREE: missing field n");
	/* unknown keys and fields foreign to the type are ignored */
	j = json_loads("{\"type\":\"API_DEL\",\"seq\":9,\"time\":3,\"x\":1,"
	    "\"body\":{\"c\":\"c1\",\"zz\":[{}],\"p\":\"no\",\"m\":7}}", 0,
	    NULL);
	assert_int_equal(event_from_json(&ev, j, err, sizeof(err)), 0);
	json_decref(j);
	assert_int_equal(ev.type, EV_API_DEL);
	assert_true(ev.seq == 9 && ev.time == 3);
	assert_int_equal(ev.has, F_CLUSTER);
	assert_string_equal(ev.cluster, "c1");
	event_free(&ev);
}

/*
 * Hostile strings, the characters that mean something in a config file,
 * a log line or JSON, through every string field, through both decoders:
 * each is refused, so none can reach a renderer.  `why` alone may hold
 * punctuation and spaces (it is free text, written back as a JSON string
 * and never into a config), so only its own hostile set is tried on it.
 */
static const struct {
	const char	*s;
	size_t		 len;
	int		 why;		/* refused in `why` too */
} hostile[] = {
	{ RAW("web\nlisten evil"), 1 }, { RAW("web\r"), 1 },
	{ RAW("web\tx"), 1 }, { RAW("web\0.evil"), 1 }, { RAW("\0"), 1 },
	{ RAW("a\"b"), 1 }, { RAW("a\\b"), 1 }, { RAW("a\x7f"), 1 },
	{ RAW("p\xd0\xb0yments"), 1 },		/* Cyrillic a */
	{ RAW("\xef\xbd\x90\xef\xbd\x81y"), 1 },	/* fullwidth pa */
	{ RAW("caf\xc3\xa9"), 1 }, { RAW("web\xe2\x80\x8b"), 1 }, /* ZWSP */
	{ RAW("web #evil"), 0 }, { RAW("web#evil"), 0 },
	{ RAW("web evil"), 0 }, { RAW(" web"), 0 }, { RAW("a'b"), 0 },
	{ RAW("a{b"), 0 }, { RAW("a}b"), 0 }, { RAW("a;b"), 0 },
	{ RAW("a/b"), 0 }, { RAW("a:b"), 0 }, { RAW("a,b"), 0 },
	{ RAW("a$b"), 0 }, { RAW("a%b"), 0 }, { RAW("a[b]"), 0 },
	{ RAW("a&b"), 0 }, { RAW("a|b"), 0 }, { RAW("a<b>"), 0 },
};

static void
test_hostile_strings(void **state)
{
	static const struct {
		int	type, fi;
	} strs[] = {
		{ EV_API_SET, FI_CLUSTER }, { EV_API_SET, FI_CNAME },
		{ EV_API_SET, FI_HOST }, { EV_PORT_SET, FI_NS },
		{ EV_PORT_SET, FI_NAME }, { EV_REFUSED, FI_WHY },
		{ EV_APPLIED, FI_PROXY }, { EV_CONFIG, FI_KIND },
	};
	char want[64], *big;
	struct event ev;
	size_t i, k;
	json_t *j;

	(void)state;
	big = malloc(100001);
	assert_non_null(big);
	memset(big, 'a', 100000);
	big[100000] = '\0';
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		int t = strs[i].type, fi = strs[i].fi;

		snprintf(want, sizeof(want), "field %s", keys[fi]);
		fill_json(&ev, t);
		for (k = 0; k < sizeof(hostile) / sizeof(hostile[0]); k++) {
			if (fi == FI_WHY && !hostile[k].why)
				continue;
			reject_str(t, fi, hostile[k].s, hostile[k].len);
			j = json_of(&ev);
			assert_int_equal(json_object_set_new(json_object_get(j,
			    "body"), keys[fi], json_stringn(hostile[k].s,
			    hostile[k].len)), 0);
			json_reject(j, want);
		}
		/* overlong */
		reject_str(t, fi, big, 100000);
		j = json_of(&ev);
		json_object_set_new(json_object_get(j, "body"), keys[fi],
		    json_string(big));
		json_reject(j, want);
		/* not a string */
		j = json_of(&ev);
		json_object_set_new(json_object_get(j, "body"), keys[fi],
		    json_integer(1));
		json_reject(j, want);
		event_free(&ev);
	}
	free(big);
}

/* The same addresses through event_from_json. */
static void
test_hostile_ips(void **state)
{
	struct event ev;
	json_t *j;
	size_t i;

	(void)state;
	fill_json(&ev, EV_PORT_SET);
	for (i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
		j = json_of(&ev);
		json_object_set_new(j, "type", json_string("API_SET"));
		json_object_set_new(json_object_get(j, "body"), "m",
		    json_pack("[s,s]", "10.0.0.1", bad_ips[i]));
		json_reject(j, "field m");
		j = json_of(&ev);
		json_object_set_new(json_object_get(j, "body"), "b",
		    json_pack("[[s,i,i]]", bad_ips[i], 80, 1));
		json_reject(j, "field b");
	}
	/* the NUL that C would cut a master short at */
	j = json_of(&ev);
	json_object_set_new(j, "type", json_string("API_SET"));
	json_object_set_new(json_object_get(j, "body"), "m",
	    json_pack("[s%]", "10.0.0.1\0evil", (size_t)13));
	json_reject(j, "field m");
	event_free(&ev);
}

/* Numbers: the port and weight bounds, and nothing that is not a u64. */
static void
test_from_json_numbers(void **state)
{
	static const char *badport[] = { "65536", "-1", "\"80\"", "80.0",
	    "true", "null", "[80]", "18446744073709551616" };
	static const char *badbe[] = {
		"[[\"10.0.0.1\",0,1]]", "[[\"10.0.0.1\",65536,1]]",
		"[[\"10.0.0.1\",80,257]]", "[[\"10.0.0.1\",80,-1]]",
		"[[\"10.0.0.1\",\"80\",1]]", "[[\"10.0.0.1\",80]]",
		"[[\"10.0.0.1\",80,1,1]]", "[\"10.0.0.1\"]", "[[80,\"10.0.0.1\",1]]",
		"{}",
	};
	char line[256];
	size_t i;
	json_t *j;

	(void)state;
	for (i = 0; i < sizeof(badport) / sizeof(badport[0]); i++) {
		snprintf(line, sizeof(line), "{\"type\":\"PORT_FREE\",\"seq\":1,"
		    "\"time\":0,\"body\":{\"p\":%s,\"c\":\"c1\",\"ns\":\"a\","
		    "\"n\":\"b\",\"r\":0}}", badport[i]);
		j = json_loads(line, 0, NULL);
		if (j == NULL)		/* past what JSON holds: no event */
			continue;
		json_reject(j, "field p");
	}
	for (i = 0; i < sizeof(badbe) / sizeof(badbe[0]); i++) {
		snprintf(line, sizeof(line), "{\"type\":\"PORT_SET\",\"seq\":1,"
		    "\"time\":0,\"body\":{\"p\":21000,\"c\":\"c1\",\"ns\":\"a\","
		    "\"n\":\"b\",\"r\":0,\"b\":%s}}", badbe[i]);
		assert_non_null(j = json_loads(line, 0, NULL));
		json_reject(j, "field b");
	}
}

/* event_owner is "cluster/ns/name/route" and refuses to truncate. */
static void
test_owner(void **state)
{
	struct event ev;
	char buf[EV_OWNERLEN], small[17];

	(void)state;
	event_init(&ev, EV_ROUTE);
	assert_int_equal(event_set_str(&ev, F_CLUSTER, "c1"), 0);
	assert_int_equal(event_set_str(&ev, F_NS, "default"), 0);
	assert_int_equal(event_set_str(&ev, F_NAME, "web.x"), 0);
	ev.route = 42;
	assert_int_equal(event_owner(&ev, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "c1/default/web.x/42");
	/* 19 characters: 20 bytes fit, 19 do not */
	assert_int_equal(event_owner(&ev, buf, 20), 0);
	assert_int_equal(event_owner(&ev, small, sizeof(small)), -1);
	assert_int_equal(event_owner(&ev, buf, 19), -1);
	/* the longest owner fits EV_OWNERLEN */
	fill_all(&ev, EV_ROUTE, 0);
	assert_int_equal(event_owner(&ev, buf, sizeof(buf)), 0);
	assert_int_equal(strlen(buf), 63 + 1 + 63 + 1 + 253 + 1 + 20);
	event_free(&ev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_all_types),
		cmocka_unit_test(test_roundtrip_max_backends),
		cmocka_unit_test(test_roundtrip_max_text),
		cmocka_unit_test(test_roundtrip_empty),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_encode_missing_field),
		cmocka_unit_test(test_setters),
		cmocka_unit_test(test_decode_truncated),
		cmocka_unit_test(test_decode_bad_envelope),
		cmocka_unit_test(test_decode_huge_counts),
		cmocka_unit_test(test_decode_text_too_long),
		cmocka_unit_test(test_decode_trailing),
		cmocka_unit_test(test_decode_missing_field),
		cmocka_unit_test(test_decode_bad_strings),
		cmocka_unit_test(test_decode_bad_ips),
		cmocka_unit_test(test_decode_bad_numbers),
		cmocka_unit_test(test_decode_skips_unknown),
		cmocka_unit_test(test_decode_skip_limits),
		cmocka_unit_test(test_decode_unknown_type),
		cmocka_unit_test(test_skip_truncated_value),
		cmocka_unit_test(test_backend_u64_truncation),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_json_u64_high),
		cmocka_unit_test(test_from_json_all_types),
		cmocka_unit_test(test_from_json_envelope),
		cmocka_unit_test(test_hostile_strings),
		cmocka_unit_test(test_hostile_ips),
		cmocka_unit_test(test_from_json_numbers),
		cmocka_unit_test(test_owner),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
