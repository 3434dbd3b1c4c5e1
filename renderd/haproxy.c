/*
 * renderd — HAProxy configuration.
 *
 * One frontend on the shared TLS port routes by SNI to each cluster's API
 * masters, TLS passed through untouched; each workload port is a listen
 * section forwarding to its backends.  Everything written here came through
 * the event validators: names are RFC 1123, addresses parse as IPs, ports
 * and weights are in range.  The output is a pure function of its inputs.
 */
#include <stdio.h>

#include "routes.h"

int
haproxy_render(const struct routes *r, const struct config *c,
    const struct proxy_conf *px, FILE *fp)
{
	const struct port_route *pr;
	const struct api_route *a;
	char ab[64];
	size_t i, j;
	unsigned p;

	fprintf(fp, "# rendered by portico renderd; do not edit\n"
	    "global\n"
	    "\tmaster-worker\n"
	    "\tstats socket %s/%s.sock mode 600 level admin "
	    "expose-fd listeners\n"
	    "\thard-stop-after %us\n"
	    "\tmaxconn %u\n"
	    "\n"
	    "defaults\n"
	    "\tmode tcp\n"
	    "\ttimeout connect 5s\n"
	    "\ttimeout client 1h\n"
	    "\ttimeout server 1h\n"
	    "\ttimeout client-fin 30s\n"
	    "\ttimeout server-fin 30s\n"
	    "\n"
	    "frontend api\n"
	    "\tbind %s\n"
	    "\ttcp-request inspect-delay 5s\n"
	    "\ttcp-request content accept if { req_ssl_hello_type 1 }\n",
	    c->run_dir, px->name, px->hard_stop_after, px->maxconn,
	    route_addr(ab, sizeof(ab), px->listen, c->api_port));
	for (i = 0; i < r->napi; i++)
		fprintf(fp, "\tuse_backend api-%s if { req_ssl_sni -i %s }\n",
		    r->api[i].cluster, r->api[i].host);
	for (i = 0; i < r->napi; i++) {
		a = &r->api[i];
		fprintf(fp, "\nbackend api-%s\n", a->cluster);
		fprintf(fp, "\t# cluster %s\n", a->cname);
		for (j = 0; j < a->nmasters; j++)
			fprintf(fp, "\tserver m%zu %s check inter 5s\n", j,
			    route_addr(ab, sizeof(ab), a->masters[j], a->mport));
	}
	for (p = 0; p < 65536; p++) {
		if ((pr = r->ports[p]) == NULL)
			continue;
		fprintf(fp, "\nlisten port-%u\n", p);
		fprintf(fp, "\t# %s/%s/%s route %u\n", pr->cluster, pr->ns,
		    pr->name, pr->route);
		fprintf(fp, "\tbind %s\n",
		    route_addr(ab, sizeof(ab), px->listen, p));
		for (j = 0; j < pr->nbackends; j++)
			fprintf(fp, "\tserver b%zu %s weight %u\n", j,
			    route_addr(ab, sizeof(ab), pr->backends[j].ip,
			    pr->backends[j].port), pr->backends[j].weight);
	}
	return ferror(fp) ? -1 : 0;
}
