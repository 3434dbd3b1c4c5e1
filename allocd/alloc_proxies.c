/*
 * allocd — what the proxies serve: APPLIED, live ports, and the faults
 * their statuses make.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "alloc_impl.h"
#include "hash.h"
#include "hosts.h"
#include "limits.h"
#include "log.h"
#include "proof.h"

/*
 * What each proxy's last APPLIED said beyond its generation: the ports
 * another program holds on its host, and a generation it could not apply.
 * Kept in meta as STORE_META_STATUS "<proxy>", the event itself.
 */
int
alloc_get_status(struct alloc *a, MDB_txn *txn, const char *px,
    struct event *st)
{
	char name[96], err[128];
	MDB_val key, val;
	int rc;

	event_init(st, EV_NONE);
	alloc_meta_key(&key, name, sizeof(name), STORE_META_STATUS, px, NULL);
	if ((rc = store_meta_get(a->st, txn, &key, &val)) != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (event_decode(st, val.mv_data, val.mv_size, err, sizeof(err)) == -1)
		fatalx("alloc: %s: %s", name, err);
	return 0;
}

int
alloc_put_status(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char name[96];
	unsigned char *buf;
	struct event st;
	MDB_val key;
	size_t len;
	int rc;

	alloc_meta_key(&key, name, sizeof(name), STORE_META_STATUS,
	    obs->proxy, NULL);
	/*
	 * Without its seq: the sender's own when it arrives, the log's when
	 * it is replayed; what the status says must not depend on which.
	 */
	st = *obs;
	st.seq = 0;
	if (event_encode(&st, &buf, &len) == -1)
		fatalx("alloc: %s: cannot encode", name);
	rc = store_meta_put(a->st, txn, &key, buf, len);
	free(buf);
	return rc;
}

/* Does an APPLIED say what the proxy's status already says? */
int
alloc_status_same(const struct event *x, const struct event *y)
{
	uint32_t m = F_HELD | F_FGEN | F_WHY;

	return (x->has & m) == (y->has & m) && x->nheld == y->nheld &&
	    (x->nheld == 0 ||
	    memcmp(x->held, y->held, x->nheld * sizeof(x->held[0])) == 0) &&
	    x->fgen == y->fgen && strcmp(x->why, y->why) == 0;
}

static int
held_by(const struct event *st, unsigned port)
{
	size_t lo = 0, hi = st->nheld, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (st->held[mid] == port)
			return 1;
		if (st->held[mid] < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Held, not yet live, and assigned at or before generation low. */
static int
keep_unlive(const struct alloc *a, const struct owner_rec *rec, uint64_t low)
{
	(void)a;
	return rec->state == OWN_ACTIVE && !rec->live && rec->set_seq <= low;
}

/* Not yet live, assigned after what a proxy serves, within what it failed. */
static int
keep_failed(const struct alloc *a, const struct owner_rec *rec, uint64_t px)
{
	const struct event *st = &a->status[px];

	return rec->state == OWN_ACTIVE && !rec->live &&
	    rec->set_seq > st->gen && rec->set_seq <= st->fgen;
}

/*
 * The owners not live yet, indexed in meta as "unlive/<owner>", so that an
 * APPLIED looks at them, not at every owner.  A store from before the
 * index gets it built by the first APPLIED ("unlive.indexed").
 */

int
alloc_unlive_mark(struct alloc *a, MDB_txn *txn, const char *owner, int on)
{
	char buf[sizeof(STORE_META_UNLIVE) + EV_OWNERLEN];
	MDB_val key;
	int n;

	n = snprintf(buf, sizeof(buf), "%s%s", STORE_META_UNLIVE, owner);
	if (n < 0 || (size_t)n >= sizeof(buf))
		fatalx("alloc: owner %s: too long", owner);
	key.mv_size = (size_t)n;
	key.mv_data = buf;
	if (on)
		return store_meta_put(a->st, txn, &key, "", 0);
	return store_meta_del(a->st, txn, &key);
}

/* The owners not live yet, sorted; the index is built on first use. */
static char **
unlive_owners(struct alloc *a, MDB_txn *txn, int *rc)
{
	char **list, **p;
	uint64_t built;

	*rc = 0;
	if (store_get_u64(a->st, txn, STORE_META_UNLIVE_BUILT, &built) != 0) {
		/* active and not live, assigned at any generation */
		list = alloc_collect_owners(a, txn, "", keep_unlive,
		    UINT64_MAX);
		for (p = list; *p != NULL && *rc == 0; p++)
			*rc = alloc_unlive_mark(a, txn, *p, 1);
		alloc_free_list(list);
		if (*rc == 0)
			*rc = store_put_u64(a->st, txn,
			    STORE_META_UNLIVE_BUILT, 1);
		if (*rc != 0)
			return NULL;
	}
	return alloc_meta_list(a, txn, STORE_META_UNLIVE, NULL);
}


struct fault {
	char		*owner;
	unsigned	 port;
	int		 order;		/* first said wins */
	char		 why[256];
};

static int
cmp_fault(const void *x, const void *y)
{
	const struct fault *a = x, *b = y;
	int c = strcmp(a->owner, b->owner);

	return c != 0 ? c : a->order - b->order;
}

static void
add_fault(struct fault **f, size_t *n, size_t *cap, const char *owner,
    unsigned port, const char *fmt, ...)
{
	va_list ap;

	if (*n == *cap && (*f = reallocarray(*f, *cap = *cap ? *cap * 2 : 16,
	    sizeof(**f))) == NULL)
		fatal("alloc: faults");
	if (((*f)[*n].owner = strdup(owner)) == NULL)
		fatal("alloc: faults");
	(*f)[*n].port = port;
	(*f)[*n].order = (int)*n;
	va_start(ap, fmt);
	vsnprintf((*f)[*n].why, sizeof((*f)[*n].why), fmt, ap);
	va_end(ap);
	(*n)++;
}

static int
fault_key(MDB_val *key, char *buf, size_t len, const char *owner)
{
	int n = snprintf(buf, len, "%s%s", STORE_META_FAULT, owner);

	key->mv_size = (size_t)n;
	key->mv_data = buf;
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int
emit_fault(struct alloc *a, MDB_txn *txn, const char *owner, unsigned port,
    const char *why, uint64_t now)
{
	struct event d;
	MDB_val key = { strlen(owner), (void *)owner };

	if (alloc_owner_event(&d, EV_PORT_FAULT, &key) == -1)
		fatalx("alloc: fault: bad owner %s", owner);
	d.port = port;
	d.has |= F_PORT;
	if (why != NULL && event_set_str(&d, F_WHY, why) == -1)
		fatalx("alloc: fault: bad reason for %s", owner);
	return alloc_emit(a, txn, &d, now);
}

/* How many faults stand (a few at most: a seek and a short walk). */
static long
faults_count(struct alloc *a, MDB_txn *txn)
{
	size_t plen = strlen(STORE_META_FAULT);
	MDB_val k = { plen, (void *)STORE_META_FAULT }, v;
	MDB_cursor *cur;
	long n = 0;
	int op;

	if (mdb_cursor_open(txn, a->st->meta, &cur) != 0)
		fatalx("alloc: cursor");
	for (op = MDB_SET_RANGE; mdb_cursor_get(cur, &k, &v, op) == 0 &&
	    k.mv_size >= plen && memcmp(k.mv_data, STORE_META_FAULT, plen) == 0;
	    op = MDB_NEXT)
		n++;
	mdb_cursor_close(cur);
	return n;
}

/* An owner's port moved or went: what was said of it is moot. */
int
alloc_fault_forget(struct alloc *a, MDB_txn *txn, const char *owner)
{
	char buf[sizeof(STORE_META_FAULT) + EV_OWNERLEN];
	MDB_val key;
	int rc;

	if (a->nfaults == -1)
		a->nfaults = faults_count(a, txn);
	if (a->nfaults == 0 || fault_key(&key, buf, sizeof(buf), owner) == -1)
		return 0;	/* the usual case: none stands */
	if ((rc = mdb_del(txn, a->st->meta, &key, NULL)) == 0)
		a->nfaults--;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A fault no longer stands: forget it, and say so while its owner holds. */
static int
fault_clear(struct alloc *a, MDB_txn *txn, const char *owner, uint64_t now)
{
	struct owner_rec rec;
	int rc;

	if ((rc = alloc_fault_forget(a, txn, owner)) != 0)
		return rc;
	if (alloc_get_owner(a, txn, owner, &rec, NULL) != 0 ||
	    rec.state != OWN_ACTIVE)
		return 0;
	return emit_fault(a, txn, owner, rec.port, NULL, now);
}

static int
fault_set(struct alloc *a, MDB_txn *txn, const struct fault *f, uint64_t now)
{
	char buf[sizeof(STORE_META_FAULT) + EV_OWNERLEN];
	MDB_val key;
	int rc;

	if (fault_key(&key, buf, sizeof(buf), f->owner) == -1)
		return 0;
	if ((rc = store_meta_put(a->st, txn, &key, f->why,
	    strlen(f->why) + 1)) != 0)
		return rc;
	return emit_fault(a, txn, f->owner, f->port, f->why, now);
}

/* Both sorted by owner: set what should stand and does not, clear the rest. */
static int
faults_merge(struct alloc *a, MDB_txn *txn, const struct fault *f, size_t n,
    uint64_t now)
{
	char **stand, **why;
	size_t ln, i = 0, j = 0;
	int c, rc = 0;

	stand = alloc_meta_list(a, txn, STORE_META_FAULT, &why);
	for (ln = 0; stand[ln] != NULL; ln++)
		;
	while (rc == 0 && (i < n || j < ln)) {
		if (i > 0 && i < n && strcmp(f[i].owner, f[i - 1].owner) == 0) {
			i++;		/* said first by another proxy */
			continue;
		}
		c = i == n ? 1 : j == ln ? -1 : strcmp(f[i].owner, stand[j]);
		if (c < 0)
			rc = fault_set(a, txn, &f[i++], now);
		else if (c > 0)
			rc = fault_clear(a, txn, stand[j++], now);
		else {
			if (strcmp(f[i].why, why[j]) != 0)
				rc = fault_set(a, txn, &f[i], now);
			i++;
			j++;
		}
	}
	alloc_free_list(stand);
	alloc_free_list(why);
	a->nfaults = -1;	/* counted again when next needed */
	return rc;
}

/*
 * The faults the proxies' statuses make, against those that stand: a port
 * held by another program on a proxy's host, and the owners waiting for a
 * generation a proxy could not apply.  The first proxy (in configuration
 * order) to say something about an owner is the one written.
 */
static int
faults_update(struct alloc *a, MDB_txn *txn, uint64_t now)
{
	char owner[EV_OWNERLEN], **list, **p;
	const struct proxy_conf *px;
	struct fault *f = NULL;
	struct owner_rec rec;
	size_t n = 0, cap = 0, i;
	uint64_t released;
	int k, rc = 0;

	for (k = 0; k < a->conf->nproxies; k++) {
		px = &a->conf->proxies[k];
		for (i = 0; i < a->status[k].nheld; i++) {
			if ((rc = alloc_get_port(a, txn, a->status[k].held[i],
			    owner, sizeof(owner), &released)) != 0)
				goto out;
			if (owner[0] == '\0' || released != 0 ||
			    alloc_get_owner(a, txn, owner, &rec, NULL) != 0 ||
			    rec.state != OWN_ACTIVE)
				continue;
			add_fault(&f, &n, &cap, owner, rec.port, "port %u is "
			    "held by another program on proxy %s", rec.port,
			    px->name);
		}
		if (!(a->status[k].has & F_FGEN))
			continue;
		list = alloc_collect_owners(a, txn, "", keep_failed,
		    (uint64_t)k);
		for (p = list; *p != NULL; p++)
			if (alloc_get_owner(a, txn, *p, &rec, NULL) == 0)
				add_fault(&f, &n, &cap, *p, rec.port, "proxy "
				    "%s cannot apply its configuration (%s); "
				    "port %u is not served yet", px->name,
				    a->status[k].why, rec.port);
		alloc_free_list(list);
	}
	if (n > 0)
		qsort(f, n, sizeof(*f), cmp_fault);
	rc = faults_merge(a, txn, f, n, now);
 out:
	for (i = 0; i < n; i++)
		free(f[i].owner);
	free(f);
	return rc;
}

/*
 * A proxy serves generation g: every port assigned at or before the lowest
 * generation all proxies serve is live, and its address can be written;
 * but not a port another program holds on any proxy's host.
 */
int
alloc_on_applied(struct alloc *a, MDB_txn *txn, const struct event *obs)
{
	char name[96], **list, **p;
	uint64_t g, low = UINT64_MAX;
	struct owner_rec rec;
	struct event set, d;
	int i, k, held, rc = 0;

	for (i = 0; i < a->conf->nproxies; i++) {
		snprintf(name, sizeof(name), "%s%s", STORE_META_APPLIED,
		    a->conf->proxies[i].name);
		if (strcmp(a->conf->proxies[i].name, obs->proxy) == 0)
			g = obs->gen;
		else if (store_get_u64(a->st, txn, name, &g) != 0)
			g = 0;
		if (g < low)
			low = g;
	}
	if ((a->status = calloc((size_t)a->conf->nproxies,
	    sizeof(*a->status))) == NULL)
		fatal("alloc: status");
	for (i = 0; rc == 0 && i < a->conf->nproxies; i++)
		rc = alloc_get_status(a, txn, a->conf->proxies[i].name,
		    &a->status[i]);
	list = rc == 0 ? unlive_owners(a, txn, &rc) : NULL;
	for (p = list; p != NULL && *p != NULL && rc == 0; p++) {
		if ((rc = alloc_get_owner(a, txn, *p, &rec, &set)) != 0)
			break;
		for (k = 0, held = 0; k < a->conf->nproxies; k++)
			held |= held_by(&a->status[k], rec.port);
		if (keep_unlive(a, &rec, low) && !held) {
			rec.live = 1;
			alloc_live_event(&d, &set, rec.port);
			if ((rc = alloc_emit(a, txn, &d, obs->time)) == 0 &&
			    (rc = alloc_put_owner(a, txn, *p, &rec, &set)) == 0)
				rc = alloc_unlive_mark(a, txn, *p, 0);
		}
		event_free(&set);
	}
	if (list != NULL)
		alloc_free_list(list);
	if (rc == 0)
		rc = faults_update(a, txn, obs->time);
	for (i = 0; i < a->conf->nproxies; i++)
		event_free(&a->status[i]);
	free(a->status);
	a->status = NULL;
	return rc;
}
