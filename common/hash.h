/*
 * portico — FNV-1a.  allocd derives an owner's preferred port from it (so
 * it must never change: a lost store relies on it giving the same ports
 * back); watcherd hashes its map keys with it.
 */
#ifndef PORTICO_HASH_H
#define PORTICO_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t
hash_fnv1a_n(const void *p, size_t len)
{
	const unsigned char *s = p;
	uint64_t h = 14695981039346656037ULL;

	while (len-- > 0) {
		h ^= *s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static inline uint64_t
hash_fnv1a(const char *s)
{
	return hash_fnv1a_n(s, strlen(s));
}

/*
 * The watcherd shard that owns a cluster, of count: FNV-1a 64 of its id
 * (the PKS uuid, the kubeconfig file's name, the Cluster API Cluster's
 * metadata.uid) modulo count.  Users
 * predict it with any FNV-1a; porticoctl clusters shows it.  Never to
 * change: a changed hash moves every cluster at once.
 */
#define HASH_SHARDS_MAX	1024

static inline unsigned
hash_shard(const char *id, unsigned count)
{
	return count > 1 ? (unsigned)(hash_fnv1a(id) % count) : 0;
}

#endif
