/*
 * renderd — nginx configuration (stream {}, Debian's libnginx-mod-stream).
 *
 * A whole nginx.conf for an nginx of our own: its pid file and error log in
 * the run folder (named by config_proxy_file, where applyd finds them), no
 * http {}.  The shared TLS port reads the SNI name without terminating TLS
 * (ssl_preread) and a map sends each cluster's name to an upstream of its
 * masters, and each TLSRoute hostname to an upstream of its backends; every workload port is a server with an upstream of its
 * weighted backends.  Everything written here came through the event
 * validators (names RFC 1123, addresses parse as IPs, ports and weights in
 * range) or the config's (listen, run_dir, numbers).  A pure function of its inputs.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "routes.h"

/* Debian's path; the package's own modules-enabled/ is not ours to read. */
#define STREAM_MODULE	"/usr/lib/nginx/modules/ngx_stream_module.so"

/*
 * An upstream with no live server: nginx closes the connection at once.
 * An SNI name that is no cluster's ends here, and so does a route with no
 * address to go to (nginx refuses an upstream without servers).
 */
#define NONE		"portico_none"

static int
cmp_host(const void *x, const void *y)
{
	const struct api_route *a = *(const struct api_route *const *)x;
	const struct api_route *b = *(const struct api_route *const *)y;
	int c;

	if ((c = strcmp(a->host, b->host)) != 0)
		return c;
	return strcmp(a->cluster, b->cluster);
}

/*
 * The SNI map, by host name.  nginx refuses a map with a key twice, so a
 * name two clusters claim goes to the lowest cluster id, the one HAProxy's
 * first matching rule picks.  A key that is one of map's own keywords would
 * be read as the keyword; "\" makes it a plain key (a cluster's host holds
 * the domain, so has a dot: this is defence, not a case that occurs).
 */
static void
render_map(const struct routes *r, FILE *fp)
{
	static const char *const words[] = { "default", "hostnames",
	    "include", "volatile" };
	const struct api_route **by_host;
	const char *esc;
	size_t i, j;

	if ((by_host = calloc(r->napi + 1, sizeof(*by_host))) == NULL)
		fatal("nginx_render");
	for (i = 0; i < r->napi; i++)
		by_host[i] = &r->api[i];
	qsort(by_host, r->napi, sizeof(*by_host), cmp_host);
	fprintf(fp, "\n\tmap $ssl_preread_server_name $portico_api {\n"
	    "\t\tdefault %s;\n", NONE);
	for (i = 0; i < r->napi; i++) {
		if (i > 0 && strcmp(by_host[i]->host, by_host[i - 1]->host) == 0)
			continue;
		esc = "";
		for (j = 0; j < sizeof(words) / sizeof(words[0]); j++)
			if (strcmp(by_host[i]->host, words[j]) == 0)
				esc = "\\";
		if (by_host[i]->nmasters == 0)
			fprintf(fp, "\t\t%s%s %s;\n", esc, by_host[i]->host,
			    NONE);
		else
			fprintf(fp, "\t\t%s%s api_%s;\n", esc,
			    by_host[i]->host, by_host[i]->cluster);
	}
	/* TLSRoute hostnames: a name is one route's (allocd's rule) */
	for (i = 0; i < r->nsni; i++)
		if (!routes_sni_shadowed(r, i))
			fprintf(fp, "\t\t%s %s%s;\n", r->sni[i].host,
			    r->sni[i].nbackends > 0 ? "tls_" : NONE,
			    r->sni[i].nbackends > 0 ? r->sni[i].host : "");
	fprintf(fp, "\t}\n");
	free(by_host);
}

/* The upstream of a TLSRoute's hostname; weights as a port's. */
static void
render_sni(const struct sni_route *sr, FILE *fp)
{
	const struct backend *b;
	char ab[64];
	size_t j;

	if (sr->nbackends == 0)
		return;
	fprintf(fp, "\n\tupstream tls_%s {\n\t\t# %s/%s/%s hostname %u\n",
	    sr->host, sr->cluster, sr->ns, sr->name, sr->route);
	for (j = 0; j < sr->nbackends; j++) {
		b = &sr->backends[j];
		fprintf(fp, b->weight == 0 ? "\t\tserver %s down;\n" :
		    "\t\tserver %s weight=%u;\n",
		    route_addr(ab, sizeof(ab), b->ip, b->port), b->weight);
	}
	fprintf(fp, "\t}\n");
}

static void
render_api(const struct routes *r, const struct config *c,
    const struct proxy_conf *px, FILE *fp)
{
	const struct api_route *a;
	char ab[64];
	size_t i, j;

	render_map(r, fp);
	for (i = 0; i < r->napi; i++) {
		if ((a = &r->api[i])->nmasters == 0)
			continue;
		fprintf(fp, "\n\tupstream api_%s {\n\t\t# cluster %s\n",
		    a->cluster, a->cname);
		for (j = 0; j < a->nmasters; j++)
			fprintf(fp, "\t\tserver %s;\n", route_addr(ab, sizeof(ab),
			    a->masters[j], a->mport));
		fprintf(fp, "\t}\n");
	}
	for (i = 0; i < r->nsni; i++)
		if (!routes_sni_shadowed(r, i))
			render_sni(&r->sni[i], fp);
	fprintf(fp, "\n\tserver {\n"
	    "\t\tlisten %s;\n"
	    "\t\tssl_preread on;\n"
	    "\t\tproxy_pass $portico_api;\n"
	    "\t}\n", route_addr(ab, sizeof(ab), px->listen, c->api_port));
}

/*
 * One upstream and one server per port.  nginx's weights start at 1: a
 * backend of weight 0 (no traffic, to HAProxy) is written down; a route
 * with no backends at all goes to the upstream with none.  listen: 0 for
 * a port another program holds, which is not listened on.
 */
static void
render_port(const struct port_route *pr, const struct proxy_conf *px,
    int listen, FILE *fp)
{
	const struct backend *b;
	char ab[64], up[16];
	size_t j;

	fprintf(fp, "\n\t# %s/%s/%s route %u\n", pr->cluster, pr->ns,
	    pr->name, pr->route);
	snprintf(up, sizeof(up), "port_%u", pr->port);
	if (pr->nbackends == 0)
		snprintf(up, sizeof(up), "%s", NONE);
	else
		fprintf(fp, "\tupstream %s {\n", up);
	for (j = 0; j < pr->nbackends; j++) {
		b = &pr->backends[j];
		fprintf(fp, b->weight == 0 ? "\t\tserver %s down;\n" :
		    "\t\tserver %s weight=%u;\n",
		    route_addr(ab, sizeof(ab), b->ip, b->port), b->weight);
	}
	if (pr->nbackends > 0)
		fprintf(fp, "\t}\n");
	/* a port another program holds (applyd's r->held) keeps its upstream */
	if (listen)
		fprintf(fp, "\tserver {\n\t\tlisten %s;\n\t\tproxy_pass %s;\n\t}\n",
	    route_addr(ab, sizeof(ab), px->listen, pr->port), up);
}

int
nginx_render(const struct routes *r, const struct config *c,
    const struct proxy_conf *px, FILE *fp)
{
	char pidfile[PATH_MAX], errlog[PATH_MAX];
	unsigned p;

	config_proxy_file(c, px, "master.pid", pidfile, sizeof(pidfile));
	config_proxy_file(c, px, "error.log", errlog, sizeof(errlog));
	/*
	 * One worker: an L4 pass-through is not CPU bound at this scale, and
	 * every worker holds a descriptor per listening port.  Its slots are
	 * the listeners plus two per proxied connection (client, upstream).
	 * The error log keeps notices: applyd reads a reload's outcome there.
	 */
	fprintf(fp, "# rendered by portico renderd; do not edit\n"
	    "load_module %s;\n"
	    "pid %s;\n"
	    "error_log %s notice;\n"
	    "worker_processes 1;\n"
	    "worker_shutdown_timeout %us;\n",
	    STREAM_MODULE, pidfile, errlog, px->hard_stop_after);
	/* the master keeps root (binds, reloads); its worker drops it */
	if (px->user[0] != '\0')
		fprintf(fp, "user %s %s;\n", px->user, px->group);
	fprintf(fp, "\n"
	    "events {\n"
	    "\tworker_connections %u;\n"
	    "}\n"
	    "\n"
	    "stream {\n"
	    "\tproxy_connect_timeout 5s;\n"
	    "\tproxy_timeout 1h;\n"
	    "\tproxy_half_close on;\n"
	    "\tpreread_timeout 5s;\n"
	    /* room for a 253-character host name; a slot per name at most */
	    "\tmap_hash_bucket_size 512;\n"
	    "\tmap_hash_max_size %zu;\n"
	    "\n"
	    "\tupstream %s {\n"
	    "\t\tserver 127.0.0.1:1 down;\n"
	    "\t}\n",
	    2 * px->maxconn + r->nports + 16, 2048 + 2 * (r->napi + r->nsni),
	    NONE);
	render_api(r, c, px, fp);
	for (p = 0; p < 65536; p++)
		if (r->ports[p] != NULL)
			render_port(r->ports[p], px, !ROUTES_HELD(r, p), fp);
	fprintf(fp, "}\n");
	return ferror(fp) ? -1 : 0;
}
