/*
 * fuzz_pks — what the PKS/TKGI API and its UAA answer watcherd (pks.c):
 * the token, the cluster list, and the kubeconfig of each cluster's binds;
 * through them cluster_upsert() and kubeconfig_creds().
 *
 * Input: a flags byte, then the UAA answer, the GET /v1/clusters answer
 * and the binds answer, separated by form feeds (a part left out: an
 * empty body).  Flags bits 0-1: the status of the clusters answer (200,
 * 401, 500, 200); bits 2-3: the status of the binds (200, 201, 401, 500);
 * bit 4: the password grant (else client_credentials).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_http.h"
#include "fake_watcherd.h"
#include "watcherd.h"

#define ROUNDS	64			/* requests answered per input */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const long list_codes[4] = { 200, 401, 500, 200 };
static const long bind_codes[4] = { 200, 201, 401, 500 };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *part[3] = { "", "", "" }, *p, *ff;
	size_t partlen[3] = { 0, 0, 0 }, len;
	struct http_req *r;
	int i, flags;

	if (size < 1)
		return 0;
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
	if (flags & 16) {
		strcpy(conf.pks_username, "alice");
		strcpy(conf.pks_password, "p&ss=word+");
	} else
		conf.pks_username[0] = conf.pks_password[0] = '\0';

	/* the token it has is past renewal, and the poll is due */
	pks_source.timer(UINT64_MAX);
	for (i = 0; i < ROUNDS; i++) {
		if ((r = fake_http_find("/oauth/token")) != NULL)
			fake_http_answer(r, 200, part[0], partlen[0], NULL, 0);
		else if ((r = fake_http_find("GET https://pks.example.test:"
		    "9021/v1/clusters")) != NULL)
			fake_http_answer(r, list_codes[flags & 3], part[1],
			    partlen[1], NULL, 0);
		else if ((r = fake_http_find("/binds")) != NULL)
			fake_http_answer(r, bind_codes[(flags >> 2) & 3],
			    part[2], partlen[2], NULL, 0);
		else {
			/* the clusters it routes now ask for their binds */
			clusters_timer(now_ms());
			if (fake_http_find("/binds") == NULL)
				break;
		}
	}
	/* and with credentials, for their API */
	clusters_timer(now_ms());

	fake_http_drain();
	clusters_mark(&pks_source);
	clusters_sweep(&pks_source);
	fake_http_drain();
	fake_obs_clear();
	return 0;
}
