/*
 * fuzz_watch — what a cluster's API server sends watcherd: list pages and
 * watch streams, through the informers (informer.c: pages, the line
 * splitter, the event decoder), into the object parsers (cluster.c,
 * endpoints.c, vs.c, gateway.c, gwroute.c: VirtualServices, Services,
 * Nodes, EndpointSlices, the Gateway API's kinds), the routes computed
 * from them and the write-back PATCHes (annotations and status).
 *
 * Input: a flags byte, then up to nine list pages, then the watch stream,
 * separated by form feeds: the pages of the VirtualServices, Services,
 * Nodes, EndpointSlices, GatewayClasses, Gateways, TCPRoutes, TLSRoutes
 * and ReferenceGrants, in that order (a page left out: nothing, at
 * resourceVersion 1).  Each line of the stream goes to the informer of
 * the kind it names, or to all of them when it names none.  Flags bit 0:
 * the cluster's backends are EndpointSlices (else nodes); bits 1-3: the
 * size of the pieces a stream arrives in; bits 4-5: the status of the
 * pages after an informer's first (200, 410, 401, 500: a continue token
 * expired, credentials refused, a server error); bit 6: the watches are
 * answered 410 Gone instead of with the stream.  Routes are computed
 * once the lists are in, and again after the watches.
 *
 * Built with MAX_EVENT_BYTES at 4 KiB (see the Makefile), so that events
 * and list items over the cap are inputs of a few kilobytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_http.h"
#include "fake_watcherd.h"
#include "watcherd.h"

#define LIST_ROUNDS	16		/* pages answered, over all informers */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const size_t chunks[8] = { 0, 1, 2, 7, 64, 509, 4096, 65536 };
static const long later_pages[4] = { 200, 410, 401, 500 };

/* A cluster of the kubeconfig folder, with credentials. */
static struct cluster *
watch_cluster(int endpoints)
{
	char masters[1][EV_IPLEN] = { "10.20.0.11" };
	const char *name = endpoints ? "ep" : "np";
	struct cluster *cl;
	struct creds c;

	cl = cluster_upsert("c1c0ffee-0000-4000-8000-000000000001", name,
	    endpoints ? "ep.k8s.example.test" : "np.k8s.example.test",
	    masters, 1, 8443, &kcdir_source);
	if (cl == NULL)
		abort();
	memset(&c, 0, sizeof(c));
	strcpy(c.server, "https://10.20.0.11:8443");
	strcpy(c.host, "10.20.0.11");
	c.port = 8443;
	if ((c.ca_pem = strdup("CA")) == NULL ||
	    (c.token = strdup("token")) == NULL)
		abort();
	cluster_set_creds(cl, &c);
	return cl;
}

/* The part of each request's URL that names its informer's resource. */
static const char *res_url[RES_COUNT] = { "/virtualservices?", "/v1/services?",
    "/v1/nodes?", "/endpointslices?", "/gatewayclasses?", "/gateways?",
    "/tcproutes?", "/tlsroutes?", "/referencegrants?" };
static const char *res_kind[RES_COUNT] = { "\"VirtualService\"",
    "\"Service\"", "\"Node\"", "\"EndpointSlice\"", "\"GatewayClass\"",
    "\"Gateway\"", "\"TCPRoute\"", "\"TLSRoute\"", "\"ReferenceGrant\"" };

struct part {
	const char	*p;
	size_t		 len;
};

/* The lines of the stream for each informer: theirs, and kindless ones. */
static void
split_stream(const char *s, size_t len, char *out[RES_COUNT],
    size_t outlen[RES_COUNT])
{
	const char *nl, *end = s + len;
	size_t n;
	int res, mine;

	for (res = 0; res < RES_COUNT; res++) {
		if ((out[res] = malloc(len + 1)) == NULL)
			abort();
		outlen[res] = 0;
	}
	for (; s < end; s += n) {
		nl = memchr(s, '\n', (size_t)(end - s));
		n = nl ? (size_t)(nl - s) + 1 : (size_t)(end - s);
		for (mine = -1, res = RES_COUNT - 1; res >= 0; res--)
			if (memmem(s, n, res_kind[res], strlen(res_kind[res])))
				mine = res;
		for (res = 0; res < RES_COUNT; res++)
			if (mine == -1 || mine == res) {
				memcpy(out[res] + outlen[res], s, n);
				outlen[res] += n;
			}
	}
}

/* The oldest informer request of the kind given ("limit=", "watch=1"). */
static struct http_req *
informer_request(const char *kind, int *res)
{
	struct http_req *r;
	char s[64];

	if ((r = fake_http_find(kind)) == NULL)
		return NULL;
	for (*res = 0; *res < RES_COUNT; (*res)++) {
		snprintf(s, sizeof(s), "%s%s", res_url[*res], kind);
		if (fake_http_find(s) == r)
			return r;
	}
	abort();		/* a request of no informer's */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char empty[] = "{\"kind\":\"List\",\"items\":[],"
	    "\"metadata\":{\"resourceVersion\":\"1\"}}";
	static const char disc[] = "{\"versions\":[{\"version\":\"v1\"}]}";
	static const char gwdisc[] = "{\"versions\":[{\"version\":\"v1\"},"
	    "{\"version\":\"v1beta1\"},{\"version\":\"v1alpha2\"}]}";
	struct part page[RES_COUNT], rest;
	char *stream[RES_COUNT];
	size_t streamlen[RES_COUNT], chunk;
	struct http_req *r;
	const char *ff;
	int i, res, flags, pages[RES_COUNT] = { 0 };

	if (size < 1)
		return 0;
	flags = data[0];
	chunk = chunks[(flags >> 1) & 7];
	rest = (struct part){ (const char *)data + 1, size - 1 };
	for (i = 0; i < RES_COUNT; i++)
		page[i] = (struct part){ empty, sizeof(empty) - 1 };
	for (i = 0; i < RES_COUNT &&
	    (ff = memchr(rest.p, '\f', rest.len)) != NULL; i++) {
		page[i] = (struct part){ rest.p, (size_t)(ff - rest.p) };
		rest = (struct part){ ff + 1, rest.len - page[i].len - 1 };
	}
	split_stream(rest.p, rest.len, stream, streamlen);
	watch_cluster(flags & 1);

	/* discovery first: the VirtualService informer waits for it */
	clusters_timer(now_ms());
	if ((r = fake_http_find("/apis/networking.istio.io")) == NULL)
		abort();
	fake_http_answer(r, 200, disc, sizeof(disc) - 1, NULL, 0);
	if ((r = fake_http_find("/apis/gateway.networking.k8s.io")) == NULL)
		abort();
	fake_http_answer(r, 200, gwdisc, sizeof(gwdisc) - 1, NULL, 0);
	clusters_timer(now_ms());
	for (i = 0; i < LIST_ROUNDS &&
	    (r = informer_request("limit=", &res)) != NULL; i++) {
		fake_http_answer(r, pages[res]++ == 0 ? 200 :
		    later_pages[(flags >> 4) & 3], page[res].p, page[res].len,
		    NULL, 0);
	}
	clusters_timer(now_ms());
	/* each informer's watch once; the ones they resume with stay out */
	for (i = 0; i < RES_COUNT &&
	    (r = informer_request("watch=1", &res)) != NULL; i++)
		fake_http_answer(r, flags & 64 ? 410 : 200, stream[res],
		    streamlen[res], NULL, chunk);
	for (res = 0; res < RES_COUNT; res++)
		free(stream[res]);
	clusters_timer(now_ms());

	/* allocd's answer, then the write-back it makes */
	fake_alloc_decide();
	alloc_synced = 1;
	clusters_dirty_all();
	clusters_timer(now_ms());
	for (i = 0; i < WB_INFLIGHT && (r = fake_http_find("PATCH")) != NULL;
	    i++)
		fake_http_answer(r, 200, "{}", 2, NULL, 0);
	clusters_timer(now_ms());

	fake_http_drain();
	clusters_alloc_reset();
	clusters_mark(&kcdir_source);
	clusters_sweep(&kcdir_source);
	fake_http_drain();
	alloc_synced = 0;
	obs_failed = 0;
	fake_obs_clear();
	return 0;
}
