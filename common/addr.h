/*
 * portico — addresses: what an IP literal is, and whether it lies in a
 * configured range.
 *
 * Pure functions, no I/O: allocd refuses backends by them, and renderd can
 * check what it renders with the same rules.  An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is the IPv4 address it maps, everywhere here, so that
 * it cannot dress 127.0.0.1 or 169.254.169.254 up as something else.
 */
#ifndef PORTICO_ADDR_H
#define PORTICO_ADDR_H

#include <stddef.h>

#define ADDR_MAX_NETS	32

struct addr_ip {
	int		family;		/* AF_INET or AF_INET6 */
	unsigned char	a[16];		/* network order; 4 used for AF_INET */
};

/* A range in CIDR notation; a bare address is its own /32 or /128. */
struct addr_net {
	struct addr_ip	addr;		/* host bits zero */
	unsigned	bits;
};

struct addr_nets {
	size_t		n;
	struct addr_net	net[ADDR_MAX_NETS];
};

/* What an address is, for a backend: ADDR_OK, or why it may not be one. */
enum addr_class {
	ADDR_OK = 0,
	ADDR_UNSPECIFIED,	/* 0.0.0.0/8, :: */
	ADDR_LOOPBACK,		/* 127.0.0.0/8, ::1 */
	ADDR_LINKLOCAL,		/* 169.254.0.0/16, fe80::/10 */
	ADDR_MULTICAST,		/* 224.0.0.0/4, ff00::/8 */
	ADDR_BROADCAST,		/* 255.255.255.255 */
};

/* An IP literal; -1 when it is none.  Mapped IPv6 becomes IPv4. */
int		 addr_parse(const char *, struct addr_ip *);
/* "a/bits" or "a"; -1 when malformed or bits out of range. */
int		 addr_net_parse(const char *, struct addr_net *);
/* Ranges separated by commas and blanks; -1 when one is malformed. */
int		 addr_nets_parse(const char *, struct addr_nets *);
int		 addr_in_nets(const struct addr_ip *, const struct addr_nets *);
int		 addr_equal(const struct addr_ip *, const struct addr_ip *);
enum addr_class	 addr_classify(const struct addr_ip *);
/* "loopback", "link-local", ...; "" for ADDR_OK. */
const char	*addr_class_name(enum addr_class);
/* The ranges as "a/b, c/d" (cut short, NUL-terminated, when len is small). */
void		 addr_nets_format(const struct addr_nets *, char *, size_t);

#endif
