/*
 * renderd — Envoy, configured from files (v3 xDS, the "path" config source).
 *
 * Envoy reads its listeners and clusters from two files it watches (LDS and
 * CDS, each a DiscoveryResponse in JSON) and reloads one when a file is
 * moved onto its path; the bootstrap, read once at start, names the two.
 * renderd publishes one text a generation, so the three documents travel
 * as one: each is a header line "=== <name> <bytes>" followed by exactly
 * that many bytes (the JSON and a newline), in the order applyd installs
 * them: bootstrap.json, cds.json, lds.json (clusters before the listeners
 * that name them).  applyd writes each to "<run_dir>/<proxy>-<name>".
 *
 * The API port is one listener: the TLS inspector reads the SNI name and a
 * filter chain per cluster host (server_names) passes the connection, TLS
 * untouched, to the cluster "sni-<host>"; a TLSRoute's hostname likewise,
 * to the cluster "tls-<host>" of its backends.  Each routed workload port is a
 * listener of its own passing to the cluster "p<port>".  A name no chain
 * matches, and a route with no address to go to (a cluster without
 * endpoints), are closed at once.  Envoy refuses a listener without filter
 * chains, so with no API route there is no API listener.
 *
 * The documents are built with jansson, so every string is escaped as JSON
 * requires; besides, everything in them came through the event validators
 * (names RFC 1123, addresses parse as IPs, ports and weights in range) or
 * the config's.  No timestamps: version_info is a hash of the resources.
 * A pure function of its inputs.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hash.h"
#include "log.h"
#include "routes.h"

#define TYPE_LISTENER	"type.googleapis.com/envoy.config.listener.v3.Listener"
#define TYPE_CLUSTER	"type.googleapis.com/envoy.config.cluster.v3.Cluster"
#define TYPE_TCP_PROXY	"type.googleapis.com/" \
			"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
#define TYPE_TLS_INSPECTOR "type.googleapis.com/" \
			"envoy.extensions.filters.listener.tls_inspector.v3." \
			"TlsInspector"
#define CONNECT_TIMEOUT	"5s"		/* HAProxy's "timeout connect" */
#define CLUSTER_NAME	272		/* "sni-" and a 253-character host */

/* jansson fails only for want of memory (or a format of ours: a bug). */
static json_t *
must(json_t *j)
{
	if (j == NULL)
		fatalx("envoy_render: out of memory");
	return j;
}

static void
push(json_t *array, json_t *v)
{
	if (json_array_append_new(array, must(v)) == -1)
		fatalx("envoy_render: out of memory");
}

static json_t *
address(const char *ip, unsigned port)
{
	return must(json_pack("{s:{s:s, s:I}}", "socket_address",
	    "address", ip, "port_value", (json_int_t)port));
}

/* The one network filter of every chain: pass the bytes to cluster. */
static json_t *
tcp_proxy(const char *cluster)
{
	return must(json_pack("[{s:s, s:{s:s, s:s, s:s}}]",
	    "name", "envoy.filters.network.tcp_proxy",
	    "typed_config", "@type", TYPE_TCP_PROXY, "stat_prefix", cluster,
	    "cluster", cluster));
}

static json_t *
lb_endpoint(const char *ip, unsigned port, unsigned weight)
{
	return must(json_pack("{s:{s:o}, s:I}", "endpoint", "address",
	    address(ip, port), "load_balancing_weight", (json_int_t)weight));
}

/* A static cluster; endpoints, an array of lb_endpoints, is taken. */
static json_t *
cluster(const char *name, json_t *endpoints)
{
	json_t *locality;

	locality = must(json_array());
	if (json_array_size(endpoints) > 0)
		push(locality, json_pack("{s:o}", "lb_endpoints", endpoints));
	else
		json_decref(endpoints);
	return must(json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:o}}",
	    "@type", TYPE_CLUSTER, "name", name, "type", "STATIC",
	    "connect_timeout", CONNECT_TIMEOUT, "lb_policy", "ROUND_ROBIN",
	    "load_assignment", "cluster_name", name, "endpoints", locality));
}

/*
 * The weight of backend j, or 0 when it takes no traffic or an earlier one
 * has its address: one endpoint an address, with the weights of all its
 * entries summed, as HAProxy does.  Envoy's weights start at 1, so a
 * backend of weight 0 (no traffic, to HAProxy) is left out.
 */
static unsigned
merged_weight(const struct backend *b, size_t n, size_t j)
{
	int w = routes_merged_weight(b, n, j);

	return w < 0 ? 0 : (unsigned)w;
}

/*
 * The API listener's filter chains and their clusters: the first cluster
 * (by id) that claims a host has it, as HAProxy's first matching rule
 * does; Envoy refuses two chains that match the same name.
 */
static void
render_api(const struct routes *r, json_t *chains, json_t *clusters)
{
	const struct api_route *a;
	char name[CLUSTER_NAME];
	json_t *eps;
	size_t i, j;

	for (i = 0; i < r->napi; i++) {
		a = &r->api[i];
		if (routes_host_taken(r, i))
			continue;
		snprintf(name, sizeof(name), "sni-%s", a->host);
		push(chains, json_pack("{s:{s:[s]}, s:o}",
		    "filter_chain_match", "server_names", a->host,
		    "filters", tcp_proxy(name)));
		eps = must(json_array());
		for (j = 0; j < a->nmasters; j++)
			if (!api_master_seen(a, j))
				push(eps, lb_endpoint(a->masters[j], a->mport,
				    1));
		push(clusters, cluster(name, eps));
	}
}

/*
 * TLSRoute hostnames: a chain each, after the clusters' (a name is one
 * route's, and never a cluster's API host: allocd's rules), to the
 * cluster "tls-<host>" of its weighted backends.
 */
static void
render_sni(const struct routes *r, json_t *chains, json_t *clusters)
{
	const struct sni_route *sr;
	char name[CLUSTER_NAME];
	json_t *eps;
	unsigned w;
	size_t i, j;

	for (i = 0; i < r->nsni; i++) {
		sr = &r->sni[i];
		if (routes_sni_shadowed(r, i))
			continue;
		snprintf(name, sizeof(name), "tls-%s", sr->host);
		push(chains, json_pack("{s:{s:[s]}, s:o}",
		    "filter_chain_match", "server_names", sr->host,
		    "filters", tcp_proxy(name)));
		eps = must(json_array());
		for (j = 0; j < sr->nbackends; j++)
			if ((w = merged_weight(sr->backends, sr->nbackends,
			    j)) > 0)
				push(eps, lb_endpoint(sr->backends[j].ip,
				    sr->backends[j].port, w));
		push(clusters, cluster(name, eps));
	}
}

static void
render_port(const struct port_route *pr, const struct proxy_conf *px,
    json_t *listeners, json_t *clusters)
{
	char name[16];
	json_t *eps;
	unsigned w;
	size_t j;

	snprintf(name, sizeof(name), "p%u", pr->port);
	push(listeners, json_pack("{s:s, s:s, s:o, s:[{s:o}]}",
	    "@type", TYPE_LISTENER, "name", name,
	    "address", address(px->listen, pr->port),
	    "filter_chains", "filters", tcp_proxy(name)));
	eps = must(json_array());
	for (j = 0; j < pr->nbackends; j++)
		if ((w = merged_weight(pr->backends, pr->nbackends, j)) > 0)
			push(eps, lb_endpoint(pr->backends[j].ip,
			    pr->backends[j].port, w));
	push(clusters, cluster(name, eps));
}

static char *
dump(const json_t *j, size_t flags)
{
	char *s;

	if ((s = json_dumps(j, flags)) == NULL)
		fatalx("envoy_render: out of memory");
	return s;
}

/* One section of the text: "=== name bytes", the document, a newline. */
static void
section(FILE *fp, const char *name, const char *doc, size_t len)
{
	fprintf(fp, "=== %s %zu\n", name, len + 1);
	fwrite(doc, 1, len, fp);
	fputc('\n', fp);
}

/*
 * A DiscoveryResponse of resources (taken), one resource a line: the
 * golden files and a diff read well, and 10,000 ports stay a few MB where
 * indented JSON would pass the bus's 32 MB.  The version is a hash of the
 * resources, so the same routes give the same version in any generation.
 */
static void
discovery(FILE *fp, const char *name, json_t *resources)
{
	char *text = NULL, *s;
	size_t len = 0, i;
	FILE *mem;

	if ((mem = open_memstream(&text, &len)) == NULL)
		fatal("envoy_render");
	s = dump(resources, JSON_COMPACT);
	fprintf(mem, "{\"version_info\": \"%016" PRIx64 "\", "
	    "\"resources\": [", hash_fnv1a(s));
	free(s);
	for (i = 0; i < json_array_size(resources); i++) {
		s = dump(json_array_get(resources, i), JSON_COMPACT);
		fprintf(mem, "%s\n%s", i > 0 ? "," : "", s);
		free(s);
	}
	fprintf(mem, "%s]}", i > 0 ? "\n" : "");
	if (fclose(mem) != 0)
		fatal("envoy_render");
	section(fp, name, text, len);
	free(text);
	json_decref(resources);
}

static json_t *
bootstrap(const struct config *c, const struct proxy_conf *px)
{
	char lds[PATH_MAX], cds[PATH_MAX];

	config_proxy_file(c, px, "lds.json", lds, sizeof(lds));
	config_proxy_file(c, px, "cds.json", cds, sizeof(cds));
	return must(json_pack("{s:{s:s, s:s}, s:{s:{s:{s:s}, s:s}, "
	    "s:{s:{s:s}, s:s}}}",
	    "node", "id", px->name, "cluster", "portico",
	    "dynamic_resources",
	    "lds_config", "path_config_source", "path", lds,
	    "resource_api_version", "V3",
	    "cds_config", "path_config_source", "path", cds,
	    "resource_api_version", "V3"));
}

int
envoy_render(const struct routes *r, const struct config *c,
    const struct proxy_conf *px, FILE *fp)
{
	json_t *listeners, *clusters, *chains, *boot;
	unsigned p;
	char *s;

	listeners = must(json_array());
	clusters = must(json_array());
	chains = must(json_array());
	render_api(r, chains, clusters);
	render_sni(r, chains, clusters);
	if (json_array_size(chains) > 0)
		push(listeners, json_pack("{s:s, s:s, s:o, s:[{s:s, s:{s:s}}], "
		    "s:o}", "@type", TYPE_LISTENER, "name", "api",
		    "address", address(px->listen, c->api_port),
		    "listener_filters",
		    "name", "envoy.filters.listener.tls_inspector",
		    "typed_config", "@type", TYPE_TLS_INSPECTOR,
		    "filter_chains", chains));
	else
		json_decref(chains);
	/* allocd never gives out the API port; two listeners on it fail all */
	for (p = 0; p < 65536; p++)
		if (r->ports[p] != NULL && p != c->api_port)
			render_port(r->ports[p], px, listeners, clusters);

	boot = bootstrap(c, px);
	s = dump(boot, JSON_INDENT(2));
	json_decref(boot);
	fprintf(fp, "# rendered by portico renderd; do not edit\n");
	section(fp, "bootstrap.json", s, strlen(s));
	free(s);
	discovery(fp, "cds.json", clusters);
	discovery(fp, "lds.json", listeners);
	return ferror(fp) ? -1 : 0;
}
