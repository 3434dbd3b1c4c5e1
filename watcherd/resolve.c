/*
 * watcherd — host names resolved off the loop.
 *
 * glibc's getaddrinfo_a looks a name up on a thread of its own; the loop
 * only asks, each turn, whether it is done (resolve_timer), and never
 * waits.  A name is looked up again once its answer is refresh old; the
 * last answer serves meanwhile, so that a slow or failing resolver holds
 * nothing up and takes nothing away until it answers otherwise.  The
 * addresses (at most EV_MAX_MASTERS) are sorted: an answer in another
 * order is the same answer.  A lookup is never cancelled: a name nobody
 * asks for any more is forgotten once its lookup is over.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "watcherd.h"

struct rname {
	char		 host[254];
	struct addrinfo	 hints;
	struct gaicb	 cb;
	int		 busy;		/* a lookup is out */
	int		 err;		/* of the last one: 0, EAI_* */
	char		 ips[EV_MAX_MASTERS][EV_IPLEN];
	size_t		 n;
	uint64_t	 at;		/* when the last answer came */
	int		 asked;		/* since resolve_forget_unasked */
};

static struct smap	names;		/* host -> struct rname */

static void
lookup(struct rname *nm)
{
	struct gaicb *list[1] = { &nm->cb };

	memset(&nm->cb, 0, sizeof(nm->cb));
	memset(&nm->hints, 0, sizeof(nm->hints));
	nm->hints.ai_socktype = SOCK_STREAM;
	nm->cb.ar_name = nm->host;
	nm->cb.ar_request = &nm->hints;
	if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0) {
		nm->err = EAI_AGAIN;
		nm->at = now_ms();
		return;
	}
	nm->busy = 1;
}

static int
ip_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* A lookup that is over: 1 when its addresses are not those we had. */
static int
answered(struct rname *nm)
{
	char ips[EV_MAX_MASTERS][EV_IPLEN];
	struct addrinfo *ai;
	size_t n = 0, i;
	void *a;

	nm->busy = 0;
	nm->at = now_ms();
	nm->err = gai_error(&nm->cb);
	memset(ips, 0, sizeof(ips));
	for (ai = nm->err == 0 ? nm->cb.ar_result : NULL; ai != NULL &&
	    n < EV_MAX_MASTERS; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		a = ai->ai_family == AF_INET ?
		    (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr :
		    (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
		if (inet_ntop(ai->ai_family, a, ips[n], EV_IPLEN) == NULL) {
			memset(ips[n], 0, EV_IPLEN);
			continue;
		}
		for (i = 0; i < n && strcmp(ips[i], ips[n]) != 0; i++)
			;
		if (i < n)
			memset(ips[n], 0, EV_IPLEN);	/* said twice */
		else
			n++;
	}
	if (nm->cb.ar_result != NULL)
		freeaddrinfo(nm->cb.ar_result);
	nm->cb.ar_result = NULL;
	if (nm->err == 0 && n == 0)
		nm->err = EAI_NODATA;
	qsort(ips, n, EV_IPLEN, ip_cmp);
	if (n == nm->n && memcmp(ips, nm->ips, sizeof(ips)) == 0)
		return 0;
	memcpy(nm->ips, ips, sizeof(ips));
	nm->n = n;
	return 1;
}

int
resolve_name(const char *host, uint64_t refresh, char masters[][EV_IPLEN],
    char *why, size_t whylen)
{
	struct rname *nm = smap_get(&names, host);

	if (nm == NULL) {
		if ((nm = calloc(1, sizeof(*nm))) == NULL)
			fatal("resolve");
		snprintf(nm->host, sizeof(nm->host), "%s", host);
		smap_put(&names, host, nm);
	}
	nm->asked = 1;
	if (!nm->busy && (nm->at == 0 || now_ms() - nm->at >= refresh))
		lookup(nm);
	if (nm->n > 0) {
		memcpy(masters, nm->ips, sizeof(nm->ips));
		return (int)nm->n;
	}
	if (nm->at == 0)
		return 0;
	snprintf(why, whylen, "%s does not resolve (%s)", host,
	    gai_strerror(nm->err));
	return -1;
}

int
resolve_timer(void)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct rname *nm;
	int moved = 0;

	while ((e = smap_next(&names, &it)) != NULL) {
		nm = e->val;
		if (nm->busy && gai_error(&nm->cb) != EAI_INPROGRESS)
			moved |= answered(nm);
	}
	return moved;
}

void
resolve_forget_unasked(void)
{
	struct smap_iter it;
	struct smap_ent *e;
	struct rname *nm;

	for (;;) {
		it = (struct smap_iter){ 0, NULL };
		while ((e = smap_next(&names, &it)) != NULL) {
			nm = e->val;
			if (!nm->asked && !nm->busy)
				break;
		}
		if (e == NULL)
			break;
		free(smap_del(&names, e->key));
	}
	it = (struct smap_iter){ 0, NULL };
	while ((e = smap_next(&names, &it)) != NULL)
		((struct rname *)e->val)->asked = 0;
}
