/*
 * watcherd — host names resolved off the loop.
 *
 * glibc's getaddrinfo_a looks a name up on a thread of its own, and says
 * when it is done on another (SIGEV_THREAD), which only writes to an
 * eventfd that the loop polls: the loop then takes the answers in and
 * starts the lookups that waited for a slot, and never waits itself.  The
 * sources read the answers at their next tick (resolve_timer).  A name is looked up again once its answer is refresh old; the
 * last answer serves meanwhile, so that a slow or failing resolver holds
 * nothing up and takes nothing away until it answers otherwise: a
 * temporary failure (a timeout, a SERVFAIL) keeps the last addresses, an
 * answer that the name does not exist or has no address drops them.  The
 * addresses (at most EV_MAX_MASTERS) are sorted: an answer in another
 * order is the same answer.
 *
 * Names come from people who may not trust one another (kubeconfig files,
 * Cluster API Clusters), and one of them may name a host whose DNS server
 * answers late or never.  What bounds the harm:
 *   - one lookup per name at a time, whoever asks;
 *   - at most RESOLVE_MAX_OUT lookups handed to glibc at once (it runs 20
 *     on threads of its own and queues the rest, in order); a name due
 *     meanwhile waits its turn here, the longest waiting first.  That is
 *     many, so that a fleet's first lookups do not go at the pace of the
 *     loop's turns, which are slow while those clusters start;
 *   - names whose last lookup failed take at most RESOLVE_MAX_FAILING of
 *     them: names known to hang hold at most that many of glibc's threads
 *     and never hold up the others.  New names take at most
 *     RESOLVE_MAX_NEW, leaving room to the names that answered.  Only a
 *     burst of new names that hang (20 or more) can hold up the others,
 *     for one lookup's time; after it they are failing names;
 *   - a lookup still out after RESOLVE_WAIT_MS is said to have failed, to
 *     whoever waits for it.  It cannot be stopped (gai_cancel takes back
 *     only a lookup that no thread has started): its thread and its slot
 *     stay taken until glibc's resolver gives up by itself (resolv.conf's
 *     timeout and attempts), and what it answers then is taken like any
 *     answer;
 *   - a name that failed is looked up again after a backoff (1 s, doubled
 *     up to a minute), not at each ask.
 * A name nobody asks for any more is forgotten once its lookup is over.
 */
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "watcherd.h"

#define RESOLVE_MAX_OUT		1024
#define RESOLVE_MAX_NEW		960
#define RESOLVE_MAX_FAILING	4
#define RESOLVE_WAIT_MS		15000
#define RESOLVE_BACKOFF_MS	1000
#define RESOLVE_BACKOFF_MAX	60000

struct rname {
	char		 host[254];
	struct addrinfo	 hints;
	struct gaicb	 cb;
	int		 busy;		/* a lookup is out */
	int		 share;		/* ... in which share: SHARE_* */
	int		 late;		/* ... past RESOLVE_WAIT_MS */
	int		 slow;		/* the last one was, and failed */
	int		 queued;	/* due, waiting for a slot */
	int		 err;		/* of the last one: 0, EAI_* */
	unsigned	 fails;		/* lookups failed in a row */
	char		 ips[EV_MAX_MASTERS][EV_IPLEN];
	size_t		 n;
	uint64_t	 at;		/* when the last lookup ended */
	uint64_t	 since;		/* when it started, or was queued */
	unsigned	 wanted;	/* 1 << SRC_*: who holds the name */
	unsigned	 asked;		/* ... who asked since its forget */
};

static struct smap	names;		/* host -> struct rname */
/*
 * The shares of the slots, by the last lookup of a name: it answered with
 * addresses, there was none yet, it failed.
 */
enum { SHARE_PROVEN, SHARE_NEW, SHARE_FAILING, SHARE_COUNT };
static unsigned		out, out_share[SHARE_COUNT], queued;
static unsigned		moved;		/* 1 << SRC_*: addresses moved */
static int		done_fd = -1;	/* an eventfd: a lookup ended */

static void	take_answers(uint64_t now);

/* On glibc's notification thread: only the eventfd is touched. */
static void
lookup_done(union sigval sv)
{
	uint64_t one = 1;
	ssize_t n;

	(void)sv;
	do
		n = write(done_fd, &one, sizeof(one));
	while (n == -1 && errno == EINTR);
}

static void
on_done(void *arg, int revents)
{
	uint64_t n;

	(void)arg;
	(void)revents;
	while (read(done_fd, &n, sizeof(n)) == -1 && errno == EINTR)
		;
	take_answers(now_ms());
}

static void
done_init(void)
{
	if (done_fd != -1)
		return;
	if ((done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("resolve: eventfd");
	loop_fd(done_fd, ZMQ_POLLIN, on_done, NULL);
}

/* The share of the slots a lookup of nm takes. */
static int
share(const struct rname *nm)
{
	if (nm->n > 0 && nm->err == 0)
		return SHARE_PROVEN;
	return nm->at == 0 ? SHARE_NEW : SHARE_FAILING;
}

/* A failure that says nothing of the name: the last answer stands. */
static int
temporary(int err)
{
	return err == EAI_AGAIN || err == EAI_SYSTEM || err == EAI_MEMORY ||
	    err == EAI_CANCELED;
}

static uint64_t
backoff(const struct rname *nm)
{
	unsigned shift = nm->fails > 7 ? 6 : nm->fails > 0 ? nm->fails - 1 : 0;
	uint64_t ms = (uint64_t)RESOLVE_BACKOFF_MS << shift;

	return ms < RESOLVE_BACKOFF_MAX ? ms : RESOLVE_BACKOFF_MAX;
}

/* The name may be looked up again now. */
static int
due(const struct rname *nm, uint64_t refresh, uint64_t now)
{
	if (nm->busy || nm->queued)
		return 0;
	if (nm->at == 0)
		return 1;
	if (nm->err != 0 || nm->n == 0)
		return now - nm->at >= backoff(nm);
	return now - nm->at >= refresh;
}

/* A slot is free for nm's share. */
static int
slot_free(const struct rname *nm)
{
	int k = share(nm);

	if (out >= RESOLVE_MAX_OUT)
		return 0;
	if (k == SHARE_NEW)
		return out_share[k] < RESOLVE_MAX_NEW;
	if (k == SHARE_FAILING)
		return out_share[k] < RESOLVE_MAX_FAILING;
	return 1;
}

static void
lookup(struct rname *nm, uint64_t now)
{
	struct gaicb *list[1] = { &nm->cb };
	struct sigevent sev;

	done_init();
	memset(&nm->cb, 0, sizeof(nm->cb));
	memset(&nm->hints, 0, sizeof(nm->hints));
	memset(&sev, 0, sizeof(sev));
	nm->hints.ai_socktype = SOCK_STREAM;
	nm->cb.ar_name = nm->host;
	nm->cb.ar_request = &nm->hints;
	sev.sigev_notify = SIGEV_THREAD;
	sev.sigev_notify_function = lookup_done;
	if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
		nm->err = EAI_AGAIN;
		nm->fails++;
		nm->at = now;
		return;
	}
	nm->busy = 1;
	nm->late = 0;
	nm->since = now;
	nm->share = share(nm);
	out++;
	out_share[nm->share]++;
}

/* Due: looked up now if a slot is free, else queued for one. */
static void
ask(struct rname *nm, uint64_t now)
{
	if (slot_free(nm)) {
		lookup(nm, now);
		return;
	}
	nm->queued = 1;
	nm->since = now;
	queued++;
}

static int
ip_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* A lookup that is over: 1 when its addresses are not those we had. */
static int
answered(struct rname *nm, uint64_t now)
{
	char ips[EV_MAX_MASTERS][EV_IPLEN];
	struct addrinfo *ai;
	size_t n = 0, i;
	void *a;

	nm->busy = 0;
	out--;
	out_share[nm->share]--;
	nm->at = now;
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
	nm->fails = nm->err == 0 ? 0 : nm->fails + 1;
	/* one reason for a name that hangs, not two in turn */
	nm->slow = nm->late && temporary(nm->err);
	nm->late = 0;
	log_debug("resolve: %s: %zu addresses%s%s", nm->host, n,
	    nm->err != 0 ? ", " : "", nm->err != 0 ? gai_strerror(nm->err) :
	    "");
	if (temporary(nm->err))
		return 0;
	qsort(ips, n, EV_IPLEN, ip_cmp);
	if (n == nm->n && memcmp(ips, nm->ips, sizeof(ips)) == 0)
		return 0;
	memcpy(nm->ips, ips, sizeof(ips));
	nm->n = n;
	return 1;
}

int
resolve_name(int src, const char *host, uint64_t refresh,
    char masters[][EV_IPLEN], char *why, size_t whylen)
{
	struct rname *nm = smap_get(&names, host);
	uint64_t now = now_ms();

	if (nm == NULL) {
		if ((nm = calloc(1, sizeof(*nm))) == NULL)
			fatal("resolve");
		snprintf(nm->host, sizeof(nm->host), "%s", host);
		smap_put(&names, host, nm);
	}
	nm->wanted |= 1u << src;
	nm->asked |= 1u << src;
	if (due(nm, refresh, now))
		ask(nm, now);
	if (nm->n > 0) {
		memcpy(masters, nm->ips, sizeof(nm->ips));
		return (int)nm->n;
	}
	if (nm->late || nm->slow)
		snprintf(why, whylen, "%s does not resolve (no answer in %d "
		    "s)", host, RESOLVE_WAIT_MS / 1000);
	else if (nm->at == 0)
		return 0;
	else
		snprintf(why, whylen, "%s does not resolve (%s)", host,
		    gai_strerror(nm->err));
	return -1;
}

/* The queued names, the longest waiting first, while slots are free. */
static void
start_queued(uint64_t now)
{
	struct smap_iter it;
	struct smap_ent *e;
	struct rname *nm, *first;

	while (queued > 0 && out < RESOLVE_MAX_OUT) {
		first = NULL;
		it = (struct smap_iter){ 0, NULL };
		while ((e = smap_next(&names, &it)) != NULL) {
			nm = e->val;
			if (nm->queued && slot_free(nm) &&
			    (first == NULL || nm->since < first->since))
				first = nm;
		}
		if (first == NULL)
			return;		/* none whose share has room */
		first->queued = 0;
		queued--;
		lookup(first, now);
	}
}

/*
 * The lookups that are over, those out too long, then the queued ones that
 * now have a slot.
 */
static void
take_answers(uint64_t now)
{
	struct smap_iter it = { 0, NULL };
	struct smap_ent *e;
	struct rname *nm;

	while (out > 0 && (e = smap_next(&names, &it)) != NULL) {
		nm = e->val;
		if (!nm->busy)
			continue;
		if (gai_error(&nm->cb) != EAI_INPROGRESS) {
			if (answered(nm, now))
				moved |= nm->wanted | nm->asked;
		} else if (!nm->late && now - nm->since >= RESOLVE_WAIT_MS) {
			nm->late = 1;
			log_debug("resolve: %s: no answer in %d s", nm->host,
			    RESOLVE_WAIT_MS / 1000);
		}
	}
	start_queued(now);
}

int
resolve_timer(int src)
{
	int r;

	take_answers(now_ms());
	r = (moved & (1u << src)) != 0;
	moved &= ~(1u << src);
	return r;
}

void
resolve_forget_unasked(int src)
{
	struct smap_iter it;
	struct smap_ent *e;
	struct rname *nm;
	unsigned bit = 1u << src;

	it = (struct smap_iter){ 0, NULL };
	while ((e = smap_next(&names, &it)) != NULL) {
		nm = e->val;
		nm->wanted = (nm->wanted & ~bit) | (nm->asked & bit);
		nm->asked &= ~bit;
	}
	for (;;) {
		it = (struct smap_iter){ 0, NULL };
		while ((e = smap_next(&names, &it)) != NULL) {
			nm = e->val;
			if (nm->wanted == 0 && !nm->busy)
				break;
		}
		if (e == NULL)
			break;
		nm = e->val;
		if (nm->queued)
			queued--;
		free(smap_del(&names, e->key));
	}
}
