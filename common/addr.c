/*
 * portico — addresses (see addr.h).
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

static const unsigned char v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

int
addr_parse(const char *s, struct addr_ip *ad)
{
	memset(ad, 0, sizeof(*ad));
	if (inet_pton(AF_INET, s, ad->a) == 1) {
		ad->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, ad->a) != 1)
		return -1;
	ad->family = AF_INET6;
	if (memcmp(ad->a, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(ad->a, ad->a + 12, 4);
		memset(ad->a + 4, 0, 12);
		ad->family = AF_INET;
	}
	return 0;
}

static unsigned
addr_bits(const struct addr_ip *ad)
{
	return ad->family == AF_INET ? 32 : 128;
}

/* Do the first bits of x and y agree? */
static int
prefix_equal(const unsigned char *x, const unsigned char *y, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	unsigned char mask;

	if (memcmp(x, y, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (x[full] & mask) == (y[full] & mask);
}

int
addr_net_parse(const char *s, struct addr_net *net)
{
	char buf[64], *slash, *end;
	unsigned long bits;
	unsigned i;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	if (addr_parse(buf, &net->addr) == -1)
		return -1;
	net->bits = addr_bits(&net->addr);
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		bits = strtoul(slash + 1, &end, 10);
		/* a mapped address's prefix counts the 96 bits before it */
		if (net->addr.family == AF_INET && strchr(buf, ':') != NULL) {
			if (bits < 96)
				return -1;
			bits -= 96;
		}
		if (*end != '\0' || bits > net->bits)
			return -1;
		net->bits = (unsigned)bits;
	}
	/* host bits set ("10.0.0.1/8") are a typo more often than not */
	for (i = net->bits; i < addr_bits(&net->addr); i++)
		if (net->addr.a[i / 8] & (0x80 >> (i % 8)))
			return -1;
	return 0;
}

int
addr_nets_parse(const char *s, struct addr_nets *nets)
{
	char item[64];
	size_t n;

	memset(nets, 0, sizeof(*nets));
	while (*s != '\0') {
		s += strspn(s, ", \t");
		if (*s == '\0')
			break;
		n = strcspn(s, ", \t");
		if (n >= sizeof(item) || nets->n == ADDR_MAX_NETS)
			return -1;
		memcpy(item, s, n);
		item[n] = '\0';
		if (addr_net_parse(item, &nets->net[nets->n++]) == -1)
			return -1;
		s += n;
	}
	return 0;
}

int
addr_in_nets(const struct addr_ip *ad, const struct addr_nets *nets)
{
	size_t i;

	for (i = 0; i < nets->n; i++)
		if (nets->net[i].addr.family == ad->family &&
		    prefix_equal(ad->a, nets->net[i].addr.a, nets->net[i].bits))
			return 1;
	return 0;
}

int
addr_equal(const struct addr_ip *x, const struct addr_ip *y)
{
	return x->family == y->family && memcmp(x->a, y->a, 16) == 0;
}

enum addr_class
addr_classify(const struct addr_ip *ad)
{
	static const unsigned char zero[16], one[16] = { [15] = 1 };
	const unsigned char *a = ad->a;

	if (ad->family == AF_INET) {
		if (a[0] == 0)
			return ADDR_UNSPECIFIED;
		if (a[0] == 127)
			return ADDR_LOOPBACK;
		if (a[0] == 169 && a[1] == 254)
			return ADDR_LINKLOCAL;
		if ((a[0] & 0xf0) == 224)
			return ADDR_MULTICAST;
		if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
			return ADDR_BROADCAST;
		return ADDR_OK;
	}
	if (memcmp(a, zero, 16) == 0)
		return ADDR_UNSPECIFIED;
	if (memcmp(a, one, 16) == 0)
		return ADDR_LOOPBACK;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return ADDR_LINKLOCAL;
	if (a[0] == 0xff)
		return ADDR_MULTICAST;
	return ADDR_OK;
}

const char *
addr_class_name(enum addr_class c)
{
	switch (c) {
	case ADDR_UNSPECIFIED:	return "unspecified";
	case ADDR_LOOPBACK:	return "loopback";
	case ADDR_LINKLOCAL:	return "link-local";
	case ADDR_MULTICAST:	return "multicast";
	case ADDR_BROADCAST:	return "broadcast";
	default:		return "";
	}
}

void
addr_nets_format(const struct addr_nets *nets, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	size_t i, o = 0;
	int n;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < nets->n && o < len; i++) {
		inet_ntop(nets->net[i].addr.family, nets->net[i].addr.a, ip,
		    sizeof(ip));
		n = snprintf(buf + o, len - o, "%s%s/%u", i ? ", " : "", ip,
		    nets->net[i].bits);
		if (n < 0)
			break;
		o += (size_t)n;
	}
	buf[len - 1] = '\0';
}
