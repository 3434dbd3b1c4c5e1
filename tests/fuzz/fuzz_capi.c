/*
 * fuzz_capi — what a Cluster API management cluster answers watcherd
 * (capi.c): the discovery of cluster.x-k8s.io, a page of Clusters, and
 * each routed Cluster's kubeconfig Secret; through them cluster_upsert()
 * and kubeconfig_creds().
 *
 * Input: a flags byte, then the discovery answer, the list answer and the
 * Secret answer, separated by form feeds (a part left out: an empty
 * body).  Flags bits 0-1: the status of the list (200, 404, 500, 200);
 * bits 2-3: the status of the Secrets (200, 404, 401, 200).  After each
 * input an empty list takes every cluster it routed away again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_http.h"
#include "fake_watcherd.h"
#include "watcherd.h"

#define ROUNDS	64			/* requests answered per input */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const long list_codes[4] = { 200, 404, 500, 200 };
static const long secret_codes[4] = { 200, 404, 401, 200 };
static const char disc_ok[] = "{\"versions\":[{\"version\":\"v1beta1\"}]}";
static const char list_empty[] = "{\"metadata\":{},\"items\":[]}";

static char	dir[] = "/tmp/fuzz_capi.XXXXXX";

static void
cleanup(void)
{
	unlink(conf.capi_kubeconfig);
	rmdir(dir);
}

/* The management cluster's kubeconfig, private, in a folder of its own. */
static void
setup(void)
{
	static int done;
	FILE *fp;

	if (done++)
		return;
	if (mkdtemp(dir) == NULL)
		abort();
	atexit(cleanup);
	snprintf(conf.capi_kubeconfig, sizeof(conf.capi_kubeconfig),
	    "%s/mgmt.kubeconfig", dir);
	if ((fp = fopen(conf.capi_kubeconfig, "w")) == NULL)
		abort();
	fchmod(fileno(fp), 0600);
	fprintf(fp, "{\"current-context\":\"m\",\"contexts\":[{\"name\":\"m\","
	    "\"context\":{\"cluster\":\"m\",\"user\":\"u\"}}],\"clusters\":["
	    "{\"name\":\"m\",\"cluster\":{\"server\":\"https://mgmt.example."
	    "test:6443\",\"certificate-authority-data\":\"Q0EK\"}}],\"users\":"
	    "[{\"name\":\"u\",\"user\":{\"token\":\"t\"}}]}\n");
	fclose(fp);
	conf.capi_poll = 10;
	conf.capi_secret_poll = 60;
	conf.capi_max_clusters = 1000;
	conf.pks_url[0] = '\0';
}

/* Answer what is asked until nothing is: the list, Secrets, discovery. */
static void
serve(const char *disc, size_t dlen, long lcode, const char *list,
    size_t llen, long scode, const char *secret, size_t slen)
{
	struct http_req *r;
	int i;

	capi_source.timer(UINT64_MAX);
	for (i = 0; i < ROUNDS; i++) {
		if ((r = fake_http_find("/clusters?limit=")) != NULL)
			fake_http_answer(r, lcode, list, llen, NULL, 0);
		else if ((r = fake_http_find("/secrets/")) != NULL)
			fake_http_answer(r, scode, secret, slen, NULL, 0);
		else if ((r = fake_http_find("/apis/cluster.x-k8s.io"))
		    != NULL)
			fake_http_answer(r, 200, disc, dlen, NULL, 0);
		else {
			/* the clusters it routes now ask for their Secrets */
			capi_source.timer(0);
			clusters_timer(now_ms());
			if (fake_http_find("/secrets/") == NULL)
				break;
		}
	}
	fake_http_drain();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *part[3] = { "", "", "" }, *p, *ff;
	size_t partlen[3] = { 0, 0, 0 }, len;
	int i, flags;

	if (size < 1)
		return 0;
	setup();
	flags = data[0];
	p = (const char *)data + 1;
	len = size - 1;
	for (i = 0; i < 3; i++) {
		ff = i < 2 ? memchr(p, '\f', len) : NULL;
		part[i] = p;
		partlen[i] = ff ? (size_t)(ff - p) : len;
		if (ff == NULL)
			break;
		len -= partlen[i] + 1;
		p = ff + 1;
	}
	serve(part[0], partlen[0], list_codes[flags & 3], part[1], partlen[1],
	    secret_codes[(flags >> 2) & 3], part[2], partlen[2]);
	/* and with credentials, for their API */
	clusters_timer(now_ms());
	fake_http_drain();

	/* an empty list: every cluster goes, and what capi kept of it */
	serve(disc_ok, strlen(disc_ok), 200, list_empty, strlen(list_empty),
	    404, "", 0);
	fake_obs_clear();
	return 0;
}
