/*
 * renderd — HAProxy configuration, made to change without reloads.
 *
 * The skeleton depends on the configuration alone: the API frontend on the
 * shared TLS port, a `ports` frontend binding every configured workload
 * port once, and a backend `p<port>` for each of those ports.  The state
 * fills in only what HAProxy's runtime API can change live: the servers
 * inside the backends, and the keys of the two maps the frontends route
 * by (the SNI host to a slot `api<n>`, the port to `p<port>`; applyd
 * writes the map files from the backends that have servers).
 *
 * The API backends are a pool of slots, so that a cluster that comes or
 * goes changes only servers and map keys.  A cluster's slot is the hash of
 * its id in the pool, probing upward, the clusters placed in order of home
 * slot, then id: one that comes takes a free slot and moves nobody, unless
 * its probe runs past the home of a cluster placed after it (rare in a
 * pool at least twice the clusters; applyd reloads for a slot that changes
 * hands).  The pool doubles, by a reload, when the clusters fill half.
 *
 * Servers are named by their address, so the same backend address is the
 * same server in every generation.  Health checks are declared only while
 * every checked server fits in the proxy's file descriptors (HAProxy
 * reserves one for each, besides one per listener and two per connection):
 * past that, a dead backend is left by retrying the connection elsewhere.
 *
 * Everything written here came through the event validators: names are
 * RFC 1123, addresses parse as IPs, ports and weights are in range.  The
 * output is a pure function of its inputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "routes.h"

#define FD_SPARE	200	/* sockets, pipes, logs, the CLI */
#define API_SLOTS_MIN	16

/* "ip:lo-hi" or "ip:p", with IPv6 in brackets */
static void
bind_line(FILE *fp, const char *ip, unsigned lo, unsigned hi)
{
	const char *fmt = strchr(ip, ':') ? "\tbind [%s]:%u" : "\tbind %s:%u";

	fprintf(fp, fmt, ip, lo);
	if (hi != lo)
		fprintf(fp, "-%u", hi);
	fputc('\n', fp);
}

/*
 * One bind per run of consecutive bound ports; how many ports in all.  A
 * port another program holds (applyd's r->held) is not bound, but counts.
 */
static unsigned
render_binds(FILE *fp, const struct routes *r, const struct config *c,
    const char *ip)
{
	unsigned n = ports_count(&c->ports), k, p, lo = 0, prev = 0, total = 0;

	for (k = 0; k < n; k++) {
		if (!routes_port_allowed(c, p = ports_nth(&c->ports, k)))
			continue;
		total++;
		if (ROUTES_HELD(r, p))
			continue;
		if (lo != 0 && p == prev + 1) {
			prev = p;
			continue;
		}
		if (lo != 0)
			bind_line(fp, ip, lo, prev);
		lo = prev = p;
	}
	if (lo != 0)
		bind_line(fp, ip, lo, prev);
	return total;
}

static void
server_line(FILE *fp, const char *ip, unsigned port, const char *rest)
{
	char ab[64];

	fprintf(fp, "\tserver %s_%u %s%s\n", ip, port,
	    route_addr(ab, sizeof(ab), ip, port), rest);
}

/*
 * The weight of backend j, or -1 when an earlier one has its address (a
 * server name is its address, so it appears once, with the weights of
 * all its entries summed, as HAProxy's 256 allows).
 */
int
haproxy_merged_weight(const struct port_route *pr, size_t j)
{
	const struct backend *b = pr->backends;
	int w = 0;
	size_t i;

	for (i = 0; i < pr->nbackends; i++) {
		if (strcmp(b[i].ip, b[j].ip) != 0 || b[i].port != b[j].port)
			continue;
		if (i < j)
			return -1;
		w += b[i].weight;
	}
	return w > 256 ? 256 : w;
}

struct placed {
	size_t		home;
	size_t		i;		/* in r->api, sorted by cluster id */
};

static int
cmp_placed(const void *x, const void *y)
{
	const struct placed *a = x, *b = y;

	if (a->home != b->home)
		return a->home < b->home ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/*
 * The pool's size, and the cluster in each slot (an index in r->api, or
 * -1), for the clusters routed (a host routed once: the first id wins).
 */
long *
haproxy_api_slots(const struct routes *r, size_t *pool)
{
	struct placed *pl;
	size_t i, n = 0, s;
	long *slot;

	if ((pl = calloc(r->napi + 1, sizeof(*pl))) == NULL)
		return NULL;
	for (i = 0; i < r->napi; i++)
		if (!routes_host_taken(r, i))
			pl[n++].i = i;
	for (*pool = API_SLOTS_MIN; *pool < 2 * n; *pool *= 2)
		;
	if ((slot = malloc(*pool * sizeof(*slot))) == NULL) {
		free(pl);
		return NULL;
	}
	for (s = 0; s < *pool; s++)
		slot[s] = -1;
	for (i = 0; i < n; i++)
		pl[i].home = (size_t)(hash_fnv1a(r->api[pl[i].i].cluster) &
		    (*pool - 1));
	qsort(pl, n, sizeof(*pl), cmp_placed);
	for (i = 0; i < n; i++) {
		for (s = pl[i].home; slot[s] != -1; s = (s + 1) & (*pool - 1))
			;
		slot[s] = (long)pl[i].i;
	}
	free(pl);
	return slot;
}

void
haproxy_server_args(char *buf, size_t len, int weight, int check)
{
	snprintf(buf, len, " weight %d%s", weight, check ? " check inter 5s" :
	    "");
}

void
haproxy_api_server_args(char *buf, size_t len)
{
	snprintf(buf, len, " check inter 5s");
}

/*
 * Do the servers carry health checks?  Only while every checked server
 * fits in the proxy's file descriptors beside the listeners and 2 x
 * maxconn (see the top of this file).
 */
int
haproxy_checks(const struct routes *r, const struct config *c,
    const struct proxy_conf *px)
{
	const struct api_route *a;
	size_t i, nsrv = 0, napi = 0, pool;
	unsigned k, n, p, nbound = 0;
	long *slot;

	n = ports_count(&c->ports);
	for (k = 0; k < n; k++)
		if (routes_port_allowed(c, ports_nth(&c->ports, k)))
			nbound++;
	if ((slot = haproxy_api_slots(r, &pool)) == NULL)
		return -1;
	for (i = 0; i < pool; i++)
		if (slot[i] != -1) {
			a = &r->api[slot[i]];
			napi += a->nmasters;
		}
	free(slot);
	for (p = 0; p < 65536; p++)
		if (r->ports[p] != NULL)
			nsrv += r->ports[p]->nbackends;
	return (size_t)nbound + 2 * (size_t)px->maxconn + napi + nsrv +
	    FD_SPARE <= px->fd_limit;
}

/*
 * A routed port's backend, kept on the route (variant 1 + check) so that
 * a generation prints only the ports that changed.
 */
static int
port_text(struct port_route *pr, int check)
{
	char wb[48];
	size_t j;
	FILE *fp;
	int w;

	if (pr->textvar == 1 + check)
		return 0;
	free(pr->text);
	pr->text = NULL;
	pr->textvar = 0;
	if ((fp = open_memstream(&pr->text, &pr->textlen)) == NULL)
		return -1;
	fprintf(fp, "\nbackend p%u\n", pr->port);
	fprintf(fp, "\t# %s/%s/%s route %u\n", pr->cluster, pr->ns, pr->name,
	    pr->route);
	for (j = 0; j < pr->nbackends; j++) {
		if ((w = haproxy_merged_weight(pr, j)) == -1)
			continue;
		haproxy_server_args(wb, sizeof(wb), w, check);
		server_line(fp, pr->backends[j].ip, pr->backends[j].port, wb);
	}
	if (fclose(fp) != 0)
		return -1;
	pr->textvar = 1 + check;
	return 0;
}

int
haproxy_render(const struct routes *r, const struct config *c,
    const struct proxy_conf *px, FILE *fp)
{
	struct port_route *pr;
	const struct api_route *a;
	char ab[64], args[48];
	size_t j, s, pool;
	unsigned k, n, p;
	long *slot;
	int check;

	fprintf(fp, "# rendered by portico renderd; do not edit\n"
	    "global\n"
	    "\tmaster-worker\n"
	    "\tstats socket %s/%s.sock mode 600 level admin "
	    "expose-fd listeners\n"
	    "\thard-stop-after %us\n"
	    "\tmworker-max-reloads %u\n"
	    "\tmaxconn %u\n",
	    c->run_dir, px->name, px->hard_stop_after, px->max_reloads,
	    px->maxconn);
	/* the master keeps root (binds, its socket, reloads); workers drop it */
	if (px->user[0] != '\0')
		fprintf(fp, "\tuser %s\n\tgroup %s\n", px->user, px->group);
	fprintf(fp, "\n"
	    "defaults\n"
	    "\tmode tcp\n"
	    "\tbalance roundrobin\n"
	    "\ttimeout connect 5s\n"
	    "\ttimeout client 1h\n"
	    "\ttimeout server 1h\n"
	    "\ttimeout client-fin 30s\n"
	    "\ttimeout server-fin 30s\n"
	    "\tretries 2\n"
	    "\toption redispatch\n"
	    "\n"
	    "frontend api\n"
	    "\tbind %s\n"
	    "\ttcp-request inspect-delay 5s\n"
	    "\ttcp-request content reject unless "
	    "{ req_ssl_sni,lower,map(%s/%s-api.map) -m found }\n"
	    "\ttcp-request content accept if { req_ssl_hello_type 1 }\n"
	    "\tuse_backend %%[req_ssl_sni,lower,map(%s/%s-api.map)]\n",
	    route_addr(ab, sizeof(ab), px->listen, c->api_port),
	    c->run_dir, px->name, c->run_dir, px->name);
	if ((check = haproxy_checks(r, c, px)) == -1 ||
	    (slot = haproxy_api_slots(r, &pool)) == NULL)
		return -1;
	haproxy_api_server_args(args, sizeof(args));
	for (s = 0; s < pool; s++) {
		fprintf(fp, "\nbackend api%zu\n", s);
		if (slot[s] == -1)
			continue;
		a = &r->api[slot[s]];
		/* the map key: applyd reads it here */
		fprintf(fp, "\t# sni %s\n", a->host);
		fprintf(fp, "\t# cluster %s (%s)\n", a->cluster, a->cname);
		for (j = 0; j < a->nmasters; j++)
			if (!api_master_seen(a, j))
				server_line(fp, a->masters[j], a->mport, args);
	}
	free(slot);

	fprintf(fp, "\nfrontend ports\n");
	render_binds(fp, r, c, px->listen);
	fprintf(fp, "\ttcp-request connection reject unless "
	    "{ dst_port,map(%s/%s-ports.map) -m found }\n"
	    "\tuse_backend %%[dst_port,map(%s/%s-ports.map)]\n",
	    c->run_dir, px->name, c->run_dir, px->name);

	n = ports_count(&c->ports);
	for (k = 0; k < n; k++) {
		if (!routes_port_allowed(c, p = ports_nth(&c->ports, k)))
			continue;
		if ((pr = r->ports[p]) == NULL)
			fprintf(fp, "\nbackend p%u\n", p);
		else if (port_text(pr, check) == -1)
			return -1;
		else
			fwrite(pr->text, 1, pr->textlen, fp);
	}
	return ferror(fp) ? -1 : 0;
}
