/*
 * portico — event codec, driven by the tables in event.h.
 *
 * Encoding uses msgpack-c's packer.  Decoding does not use msgpack-c's
 * unpacker: it allocates n * 24 bytes for any declared array of n before it
 * knows whether n elements follow, which is a gift to whoever writes garbage
 * on the bus.  The reader below walks the bytes with a cursor and checks
 * every length and count against what is left.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "event.h"
#include "valid.h"

enum ftype { FT_STR, FT_U64, FT_PORT, FT_IPS, FT_BACKENDS, FT_TEXT, FT_PORTS };

struct field {
	const char	*key;
	enum ftype	 kind;
	size_t		 off;
	size_t		 size;
	int		(*valid)(const char *);
};

static const struct field fields[FI_COUNT] = {
#define X(n, k, t, m, v) \
	[FI_##n] = { k, FT_##t, offsetof(struct event, m), \
	    sizeof(((struct event *)0)->m), v },
	EV_FIELDS(X)
#undef X
};

struct evtype {
	int		 code;
	const char	*name;
	uint32_t	 req;
	uint32_t	 opt;
};

static const struct evtype types[] = {
#define X(n, c, r, o)	{ c, #n, r, o },
	EV_TYPES(X)
#undef X
};

static const struct evtype *
evtype(int code)
{
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].code == code)
			return &types[i];
	return NULL;
}

const char *
event_name(int type)
{
	const struct evtype *t = evtype(type);

	return t ? t->name : "UNKNOWN";
}

int
event_known(int type)
{
	return evtype(type) != NULL;
}

/* Microseconds on clock (CLOCK_MONOTONIC, a thread's CPU time...). */
uint64_t
clock_us(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
event_init(struct event *ev, int type)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
}

/* Free what the event holds; it is left empty (EV_NONE), not dangling. */
void
event_free(struct event *ev)
{
	free(ev->backends);
	free(ev->text);
	free(ev->held);
	event_init(ev, EV_NONE);
}

int
event_copy(struct event *dst, const struct event *src)
{
	*dst = *src;
	dst->backends = NULL;
	dst->text = NULL;
	dst->held = NULL;
	if (src->nheld > 0) {
		if ((dst->held = calloc(src->nheld, sizeof(*dst->held))) ==
		    NULL)
			return -1;
		memcpy(dst->held, src->held, src->nheld * sizeof(*dst->held));
	}
	if (src->nbackends > 0) {
		dst->backends = calloc(src->nbackends, sizeof(struct backend));
		if (dst->backends == NULL)
			return -1;
		memcpy(dst->backends, src->backends,
		    src->nbackends * sizeof(struct backend));
	}
	if (src->text != NULL && event_set_text(dst, src->text,
	    src->textlen) == -1) {
		free(dst->backends);
		free(dst->held);
		dst->backends = NULL;
		dst->held = NULL;
		return -1;
	}
	return 0;
}

static int
field_index(uint32_t bit)
{
	int i;

	for (i = 0; i < FI_COUNT; i++)
		if (bit == (1u << i))
			return i;
	return -1;
}

/*
 * The validating setters.  The two decoders (msgpack from the bus, JSON
 * from a state file) and the event_set_* functions all store through
 * these, so every way in accepts exactly the same values.
 */

/* Bytes that are not NUL-terminated into a bounded C string: no NULs. */
static int
copy_cstr(char *dst, size_t size, const char *s, size_t len)
{
	if (len >= size || memchr(s, '\0', len) != NULL)
		return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

/* A STR field: it must fit, hold no NUL and pass its validator. */
static int
set_str(struct event *ev, const struct field *f, const char *s, size_t len)
{
	char *dst = (char *)ev + f->off;

	if (copy_cstr(dst, f->size, s, len) == -1)
		return -1;
	if (f->valid != NULL && !f->valid(dst)) {
		memset(dst, 0, f->size);
		return -1;
	}
	return 0;
}

/* A U64 or PORT field. */
static int
set_uint(struct event *ev, const struct field *f, uint64_t v)
{
	if (f->kind == FT_PORT && v > 65535)
		return -1;
	*(uint64_t *)(void *)((char *)ev + f->off) = v;
	return 0;
}

static int
add_master(struct event *ev, const char *s, size_t len)
{
	if (ev->nmasters >= EV_MAX_MASTERS ||
	    copy_cstr(ev->masters[ev->nmasters], EV_IPLEN, s, len) == -1 ||
	    !valid_ip(ev->masters[ev->nmasters]))
		return -1;
	ev->nmasters++;
	return 0;
}

/* Port and weight are checked whole before the narrowing to unsigned. */
static int
add_backend(struct event *ev, const char *s, size_t len, uint64_t port,
    uint64_t weight)
{
	char ip[EV_IPLEN];

	if (copy_cstr(ip, sizeof(ip), s, len) == -1 || port > 65535 ||
	    weight > 256)
		return -1;
	return event_add_backend(ev, ip, (unsigned)port, (unsigned)weight);
}

static void
clear_backends(struct event *ev)
{
	free(ev->backends);
	ev->backends = NULL;
	ev->nbackends = 0;
}

int
event_set_str(struct event *ev, uint32_t bit, const char *s)
{
	int i = field_index(bit);

	if (i < 0 || fields[i].kind != FT_STR)
		return -1;
	if (set_str(ev, &fields[i], s, strlen(s)) == -1) {
		ev->has &= ~bit;
		return -1;
	}
	ev->has |= bit;
	return 0;
}

int
event_add_backend(struct event *ev, const char *ip, unsigned port,
    unsigned weight)
{
	struct backend *b;

	if (ev->nbackends >= EV_MAX_BACKENDS || !valid_ip(ip) ||
	    port == 0 || port > 65535 || weight > 256)
		return -1;
	b = realloc(ev->backends, (ev->nbackends + 1) * sizeof(*b));
	if (b == NULL)
		return -1;
	ev->backends = b;
	b += ev->nbackends++;
	memset(b, 0, sizeof(*b));
	strcpy(b->ip, ip);
	b->port = (uint16_t)port;
	b->weight = (uint16_t)weight;
	ev->has |= F_BACKENDS;
	return 0;
}

int
event_set_text(struct event *ev, const char *s, size_t len)
{
	char *t;

	if (len > EV_MAX_TEXT || (t = malloc(len + 1)) == NULL)
		return -1;
	memcpy(t, s, len);
	t[len] = '\0';
	free(ev->text);
	ev->text = t;
	ev->textlen = len;
	ev->has |= F_TEXT;
	return 0;
}

int
event_add_held(struct event *ev, unsigned port)
{
	uint16_t *h;

	if (ev->nheld >= EV_MAX_HELD || port == 0 || port > 65535 ||
	    (ev->nheld > 0 && port <= ev->held[ev->nheld - 1]))
		return -1;
	if ((h = reallocarray(ev->held, ev->nheld + 1, sizeof(*h))) == NULL)
		return -1;
	ev->held = h;
	ev->held[ev->nheld++] = (uint16_t)port;
	ev->has |= F_HELD;
	return 0;
}

static void
clear_held(struct event *ev)
{
	free(ev->held);
	ev->held = NULL;
	ev->nheld = 0;
}

int
event_owner(const struct event *ev, char *buf, size_t len)
{
	int n;

	if ((ev->has & F_RKIND) && ev->rkind[0] != '\0')
		n = snprintf(buf, len, "%s/%s/%s/%llu/%s", ev->cluster, ev->ns,
		    ev->name, (unsigned long long)ev->route, ev->rkind);
	else
		n = snprintf(buf, len, "%s/%s/%s/%llu", ev->cluster, ev->ns,
		    ev->name, (unsigned long long)ev->route);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Encoding. */

static void
pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t len = strlen(s);

	msgpack_pack_str(pk, len);
	msgpack_pack_str_body(pk, s, len);
}

static void
pack_field(msgpack_packer *pk, const struct event *ev, const struct field *f)
{
	const char *base = (const char *)ev + f->off;
	size_t i;

	pack_cstr(pk, f->key);
	switch (f->kind) {
	case FT_STR:
		pack_cstr(pk, base);
		break;
	case FT_U64:
	case FT_PORT:
		msgpack_pack_uint64(pk, *(const uint64_t *)(const void *)base);
		break;
	case FT_IPS:
		msgpack_pack_array(pk, ev->nmasters);
		for (i = 0; i < ev->nmasters; i++)
			pack_cstr(pk, ev->masters[i]);
		break;
	case FT_BACKENDS:
		msgpack_pack_array(pk, ev->nbackends);
		for (i = 0; i < ev->nbackends; i++) {
			msgpack_pack_array(pk, 3);
			pack_cstr(pk, ev->backends[i].ip);
			msgpack_pack_uint16(pk, ev->backends[i].port);
			msgpack_pack_uint16(pk, ev->backends[i].weight);
		}
		break;
	case FT_TEXT:
		msgpack_pack_str(pk, ev->textlen);
		msgpack_pack_str_body(pk, ev->text, ev->textlen);
		break;
	case FT_PORTS:
		msgpack_pack_array(pk, ev->nheld);
		for (i = 0; i < ev->nheld; i++)
			msgpack_pack_uint16(pk, ev->held[i]);
		break;
	}
}

int
event_encode(const struct event *ev, unsigned char **out, size_t *outlen)
{
	const struct evtype *t = evtype(ev->type);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint32_t mask;
	int i;

	if (t == NULL || (t->req & ~ev->has) != 0)
		return -1;
	mask = ev->has & (t->req | t->opt);
	/* never write what the decoder would refuse */
	for (i = 0; i < FI_COUNT; i++)
		if ((mask & (1u << i)) && fields[i].kind == FT_PORT &&
		    *(const uint64_t *)(const void *)((const char *)ev +
		    fields[i].off) > 65535)
			return -1;
	msgpack_sbuffer_init(&sb);
	if (ev->textlen > 0) {
		/* a CONFIG is megabytes: one allocation, not a doubling series */
		sb.alloc = ev->textlen + 4096;
		if ((sb.data = malloc(sb.alloc)) == NULL)
			return -1;
	}
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 5);
	msgpack_pack_uint8(&pk, EV_VERSION);
	msgpack_pack_uint16(&pk, (uint16_t)ev->type);
	msgpack_pack_uint64(&pk, ev->seq);
	msgpack_pack_uint64(&pk, ev->time);
	msgpack_pack_map(&pk, (size_t)__builtin_popcount(mask));
	for (i = 0; i < FI_COUNT; i++)
		if (mask & (1u << i))
			pack_field(&pk, ev, &fields[i]);
	if (sb.data == NULL)
		return -1;
	*out = (unsigned char *)sb.data;
	*outlen = sb.size;
	return 0;
}

/* Decoding: a bounded cursor over untrusted bytes. */

struct mp {
	const unsigned char	*p;
	const unsigned char	*end;
};

static int
mp_need(struct mp *m, size_t n)
{
	return (size_t)(m->end - m->p) >= n ? 0 : -1;
}

static uint64_t
mp_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = (v << 8) | *p++;
	return v;
}

static int
mp_uint(struct mp *m, uint64_t *v)
{
	static const int widths[] = { 1, 2, 4, 8 };
	unsigned char c;
	int n;

	if (mp_need(m, 1) == -1)
		return -1;
	c = *m->p;
	if (c <= 0x7f) {
		*v = c;
		m->p++;
		return 0;
	}
	if (c < 0xcc || c > 0xcf)
		return -1;
	n = widths[c - 0xcc];
	if (mp_need(m, 1 + (size_t)n) == -1)
		return -1;
	*v = mp_be(m->p + 1, n);
	m->p += 1 + n;
	return 0;
}

/* str or bin: both are accepted as bytes */
static int
mp_bytes(struct mp *m, const char **s, size_t *len)
{
	unsigned char c;
	int n;

	if (mp_need(m, 1) == -1)
		return -1;
	c = *m->p;
	if ((c & 0xe0) == 0xa0) {
		*len = c & 0x1f;
		n = 0;
	} else if (c == 0xd9 || c == 0xc4)
		n = 1;
	else if (c == 0xda || c == 0xc5)
		n = 2;
	else if (c == 0xdb || c == 0xc6)
		n = 4;
	else
		return -1;
	if (mp_need(m, 1 + (size_t)n) == -1)
		return -1;
	if (n > 0)
		*len = (size_t)mp_be(m->p + 1, n);
	/* the cursor moves only past a whole value */
	if ((size_t)(m->end - m->p) - 1 - (size_t)n < *len)
		return -1;
	*s = (const char *)m->p + 1 + n;
	m->p += 1 + (size_t)n + *len;
	return 0;
}

/* array (map when ismap): the count is checked against the bytes left */
static int
mp_count(struct mp *m, int ismap, size_t *count)
{
	unsigned char c, fix = ismap ? 0x80 : 0x90;
	unsigned char c16 = ismap ? 0xde : 0xdc;
	int n;

	if (mp_need(m, 1) == -1)
		return -1;
	c = *m->p;
	if ((c & 0xf0) == fix) {
		*count = c & 0x0f;
		n = 0;
	} else if (c == c16)
		n = 2;
	else if (c == c16 + 1)
		n = 4;
	else
		return -1;
	if (mp_need(m, 1 + (size_t)n) == -1)
		return -1;
	if (n > 0)
		*count = (size_t)mp_be(m->p + 1, n);
	/*
	 * Every element takes at least one byte, a map entry two; the cursor
	 * moves only when the count can be true.
	 */
	if (*count > ((size_t)(m->end - m->p) - 1 - (size_t)n) /
	    (ismap ? 2 : 1))
		return -1;
	m->p += 1 + n;
	return 0;
}

static int
mp_skip(struct mp *m, int depth)
{
	const char *s;
	size_t n, len, i;
	uint64_t v;
	unsigned char c;

	if (depth > 8 || mp_need(m, 1) == -1)
		return -1;
	c = *m->p;
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
		m->p++;
		return 0;
	}
	if (c >= 0xcc && c <= 0xcf)
		return mp_uint(m, &v);
	if (c >= 0xd0 && c <= 0xd3) {
		n = (size_t)1 << (c - 0xd0);
		if (mp_need(m, 1 + n) == -1)
			return -1;
		m->p += 1 + n;
		return 0;
	}
	if (c == 0xca || c == 0xcb) {
		n = c == 0xca ? 4 : 8;
		if (mp_need(m, 1 + n) == -1)
			return -1;
		m->p += 1 + n;
		return 0;
	}
	if (mp_bytes(m, &s, &len) == 0)
		return 0;
	if (mp_count(m, 0, &n) == 0) {
		for (i = 0; i < n; i++)
			if (mp_skip(m, depth + 1) == -1)
				return -1;
		return 0;
	}
	if (mp_count(m, 1, &n) == 0) {
		for (i = 0; i < 2 * n; i++)
			if (mp_skip(m, depth + 1) == -1)
				return -1;
		return 0;
	}
	return -1;			/* ext types and the like */
}

static int
decode_field(struct mp *m, struct event *ev, const struct field *f)
{
	size_t n, i, k, len;
	uint64_t v, port, weight;
	const char *s;

	switch (f->kind) {
	case FT_STR:
		return mp_bytes(m, &s, &len) == -1 ? -1 :
		    set_str(ev, f, s, len);
	case FT_U64:
	case FT_PORT:
		return mp_uint(m, &v) == -1 ? -1 : set_uint(ev, f, v);
	case FT_IPS:
		if (mp_count(m, 0, &n) == -1 || n > EV_MAX_MASTERS)
			return -1;
		for (i = 0; i < n; i++)
			if (mp_bytes(m, &s, &len) == -1 ||
			    add_master(ev, s, len) == -1)
				return -1;
		return 0;
	case FT_BACKENDS:
		if (mp_count(m, 0, &n) == -1 || n > EV_MAX_BACKENDS)
			return -1;
		clear_backends(ev);
		for (i = 0; i < n; i++)
			if (mp_count(m, 0, &k) == -1 || k != 3 ||
			    mp_bytes(m, &s, &len) == -1 ||
			    mp_uint(m, &port) == -1 ||
			    mp_uint(m, &weight) == -1 ||
			    add_backend(ev, s, len, port, weight) == -1)
				return -1;
		return 0;
	case FT_TEXT:
		return mp_bytes(m, &s, &len) == -1 ? -1 :
		    event_set_text(ev, s, len);
	case FT_PORTS:
		if (mp_count(m, 0, &n) == -1 || n > EV_MAX_HELD)
			return -1;
		clear_held(ev);
		for (i = 0; i < n; i++)
			if (mp_uint(m, &port) == -1 ||
			    event_add_held(ev, port > 65535 ? 0 :
			    (unsigned)port) == -1)
				return -1;
		return 0;
	}
	return -1;
}

/*
 * The body rules both decoders share.  A key names the field to decode,
 * or -1: unknown, foreign to the type, or repeated, and then skipped.
 */
static int
body_field(const struct evtype *t, const struct event *ev, const char *key,
    size_t klen)
{
	int f;

	for (f = 0; f < FI_COUNT; f++)
		if (strlen(fields[f].key) == klen &&
		    memcmp(fields[f].key, key, klen) == 0)
			break;
	if (f == FI_COUNT || !((t->req | t->opt) & (1u << f)) ||
	    (ev->has & (1u << f)))
		return -1;
	return f;
}

/* -1, naming the first required field that is missing, if any is. */
static int
check_required(const struct evtype *t, const struct event *ev, char *err,
    size_t errlen)
{
	int f;

	for (f = 0; f < FI_COUNT; f++)
		if (t->req & ~ev->has & (1u << f)) {
			snprintf(err, errlen, "%s: missing field %s", t->name,
			    fields[f].key);
			return -1;
		}
	return 0;
}

int
event_decode(struct event *ev, const void *buf, size_t len, char *err,
    size_t errlen)
{
	struct mp m = { buf, (const unsigned char *)buf + len };
	const struct evtype *t;
	size_t n, nbody, i, klen;
	uint64_t version, type;
	const char *key;
	int f;

	event_init(ev, EV_NONE);
	if (mp_count(&m, 0, &n) == -1 || n != 5) {
		snprintf(err, errlen, "not an event envelope");
		return -1;
	}
	if (mp_uint(&m, &version) == -1 || version != EV_VERSION) {
		snprintf(err, errlen, "unknown version");
		return -1;
	}
	if (mp_uint(&m, &type) == -1 || type > 0xffff ||
	    mp_uint(&m, &ev->seq) == -1 || mp_uint(&m, &ev->time) == -1) {
		snprintf(err, errlen, "bad envelope");
		return -1;
	}
	ev->type = (int)type;
	if ((t = evtype(ev->type)) == NULL)
		return 0;		/* the caller counts and ignores it */
	if (mp_count(&m, 1, &nbody) == -1) {
		snprintf(err, errlen, "%s: body is not a map", t->name);
		return -1;
	}
	for (i = 0; i < nbody; i++) {
		if (mp_bytes(&m, &key, &klen) == -1) {
			snprintf(err, errlen, "%s: bad key", t->name);
			goto fail;
		}
		if ((f = body_field(t, ev, key, klen)) == -1) {
			if (mp_skip(&m, 0) == -1) {
				snprintf(err, errlen, "%s: bad value",
				    t->name);
				goto fail;
			}
			continue;
		}
		if (decode_field(&m, ev, &fields[f]) == -1) {
			snprintf(err, errlen, "field %s: bad value",
			    fields[f].key);
			goto fail;
		}
		ev->has |= 1u << f;
	}
	if (m.p != m.end) {
		snprintf(err, errlen, "%s: trailing bytes", t->name);
		goto fail;
	}
	if (check_required(t, ev, err, errlen) == -1)
		goto fail;
	return 0;
 fail:
	event_free(ev);
	return -1;
}

/* JSON, in the shape event_json() writes. */

/*
 * A u64 as JSON: an integer up to 2^63 - 1, jansson's largest; above that
 * the exact decimal digits as a string, never a negative number.
 */
static json_t *
json_u64(uint64_t v)
{
	char buf[24];

	if (v <= (uint64_t)INT64_MAX)
		return json_integer((json_int_t)v);
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return json_string(buf);
}

/*
 * A u64 as json_u64() writes it: a JSON integer, no negatives, no reals;
 * or the digits of a value above 2^63 - 1, exactly as written there.
 */
static int
json_uint(const json_t *j, uint64_t *v)
{
	const char *s;
	char *end;

	if (json_is_string(j)) {
		s = json_string_value(j);
		if (json_string_length(j) != strlen(s) || *s < '1' ||
		    *s > '9' || strspn(s, "0123456789") != strlen(s))
			return -1;
		errno = 0;
		*v = strtoull(s, &end, 10);
		return errno != 0 || *v <= (uint64_t)INT64_MAX ? -1 : 0;
	}
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return -1;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

static int
json_field(const json_t *j, struct event *ev, const struct field *f)
{
	const json_t *e;
	uint64_t v, port, weight;
	size_t i;

	switch (f->kind) {
	case FT_STR:
		return !json_is_string(j) ? -1 : set_str(ev, f,
		    json_string_value(j), json_string_length(j));
	case FT_U64:
	case FT_PORT:
		return json_uint(j, &v) == -1 ? -1 : set_uint(ev, f, v);
	case FT_IPS:
		if (!json_is_array(j) || json_array_size(j) > EV_MAX_MASTERS)
			return -1;
		for (i = 0; i < json_array_size(j); i++) {
			e = json_array_get(j, i);
			if (!json_is_string(e) || add_master(ev,
			    json_string_value(e), json_string_length(e)) == -1)
				return -1;
		}
		return 0;
	case FT_BACKENDS:
		if (!json_is_array(j) || json_array_size(j) > EV_MAX_BACKENDS)
			return -1;
		clear_backends(ev);
		for (i = 0; i < json_array_size(j); i++) {
			e = json_array_get(j, i);
			if (!json_is_array(e) || json_array_size(e) != 3 ||
			    !json_is_string(json_array_get(e, 0)) ||
			    json_uint(json_array_get(e, 1), &port) == -1 ||
			    json_uint(json_array_get(e, 2), &weight) == -1 ||
			    add_backend(ev, json_string_value(json_array_get(e,
			    0)), json_string_length(json_array_get(e, 0)),
			    port, weight) == -1)
				return -1;
		}
		return 0;
	case FT_TEXT:
		/* event_json() writes the length only: the text is a string here */
		return !json_is_string(j) ? -1 : event_set_text(ev,
		    json_string_value(j), json_string_length(j));
	case FT_PORTS:
		if (!json_is_array(j) || json_array_size(j) > EV_MAX_HELD)
			return -1;
		clear_held(ev);
		for (i = 0; i < json_array_size(j); i++)
			if (json_uint(json_array_get(j, i), &port) == -1 ||
			    event_add_held(ev, port > 65535 ? 0 :
			    (unsigned)port) == -1)
				return -1;
		return 0;
	}
	return -1;
}

int
event_from_json(struct event *ev, const json_t *j, char *err, size_t errlen)
{
	const struct evtype *t = NULL;
	const char *name, *key;
	json_t *body, *v;
	size_t i;
	int f;

	event_init(ev, EV_NONE);
	name = json_string_value(json_object_get(j, "type"));
	body = json_object_get(j, "body");
	for (i = 0; name != NULL && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(types[i].name, name) == 0)
			t = &types[i];
	if (!json_is_object(j) || name == NULL || !json_is_object(body) ||
	    json_uint(json_object_get(j, "seq"), &ev->seq) == -1 ||
	    json_uint(json_object_get(j, "time"), &ev->time) == -1) {
		snprintf(err, errlen, "not an event: want {\"type\", \"seq\", "
		    "\"time\", \"body\"}");
		return -1;
	}
	if (t == NULL) {
		/* unlike the bus, a file has no one to count and ignore it */
		snprintf(err, errlen, "unknown event type");
		return -1;
	}
	ev->type = t->code;
	json_object_foreach(body, key, v) {
		if ((f = body_field(t, ev, key, strlen(key))) == -1)
			continue;
		if (json_field(v, ev, &fields[f]) == -1) {
			snprintf(err, errlen, "field %s: bad value",
			    fields[f].key);
			goto fail;
		}
		ev->has |= 1u << f;
	}
	if (check_required(t, ev, err, errlen) == -1)
		goto fail;
	return 0;
 fail:
	event_free(ev);
	return -1;
}

json_t *
event_json(const struct event *ev)
{
	json_t *o, *body, *a, *b;
	const char *base;
	size_t i;
	int f;

	body = json_object();
	for (f = 0; f < FI_COUNT; f++) {
		if (!(ev->has & (1u << f)))
			continue;
		base = (const char *)ev + fields[f].off;
		switch (fields[f].kind) {
		case FT_STR:
			json_object_set_new(body, fields[f].key,
			    json_string(base));
			break;
		case FT_U64:
		case FT_PORT:
			json_object_set_new(body, fields[f].key,
			    json_u64(*(const uint64_t *)(const void *)base));
			break;
		case FT_IPS:
			a = json_array();
			for (i = 0; i < ev->nmasters; i++)
				json_array_append_new(a,
				    json_string(ev->masters[i]));
			json_object_set_new(body, fields[f].key, a);
			break;
		case FT_BACKENDS:
			a = json_array();
			for (i = 0; i < ev->nbackends; i++) {
				b = json_pack("[s,i,i]", ev->backends[i].ip,
				    (int)ev->backends[i].port,
				    (int)ev->backends[i].weight);
				json_array_append_new(a, b);
			}
			json_object_set_new(body, fields[f].key, a);
			break;
		case FT_TEXT:
			json_object_set_new(body, fields[f].key,
			    json_integer((json_int_t)ev->textlen));
			break;
		case FT_PORTS:
			a = json_array();
			for (i = 0; i < ev->nheld; i++)
				json_array_append_new(a,
				    json_integer(ev->held[i]));
			json_object_set_new(body, fields[f].key, a);
			break;
		}
	}
	o = json_pack("{s:s,s:o,s:o,s:o}", "type", event_name(ev->type),
	    "seq", json_u64(ev->seq), "time", json_u64(ev->time),
	    "body", body);
	return o;
}
