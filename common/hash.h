/*
 * portico — FNV-1a over a C string.  allocd derives an owner's preferred
 * port from it (so it must never change: a lost store relies on it giving
 * the same ports back); watcherd hashes its map keys with it.
 */
#ifndef PORTICO_HASH_H
#define PORTICO_HASH_H

#include <stdint.h>

static inline uint64_t
hash_fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

#endif
