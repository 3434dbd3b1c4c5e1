/*
 * watcherd — which of a cluster's masters its API requests go to.
 *
 * PKS gives the masters' addresses; the kubeconfig from binds names the
 * host the API's certificate is for.  A request connects to one master
 * (CURLOPT_CONNECT_TO) while its URL, and so SNI, Host and the name TLS
 * verifies against the cluster's CA, stay the kubeconfig's.  A transport
 * error moves the cluster on to its next master at once; only when every
 * master has failed in turn since the last answer does the caller back
 * off, as for any other error.  The kubeconfig folder's clusters go the
 * same way, to the IP of their server URL or the addresses its name
 * resolved to (kcdir.c).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "watcherd.h"

/* "[ip]" for an IPv6 address, the address itself otherwise. */
static const char *
master_bracket(char *buf, size_t len, const char *ip)
{
	snprintf(buf, len, strchr(ip, ':') ? "[%s]" : "%s", ip);
	return buf;
}

const char *
master_route(struct cluster *cl)
{
	char host[sizeof(cl->creds.host) + 2], ip[EV_IPLEN + 2];

	cl->connect_to[0] = '\0';
	if (!cl->src->via_masters || !cl->have_creds || cl->nmasters == 0)
		return NULL;
	if (cl->master >= cl->nmasters)
		cl->master = 0;
	snprintf(cl->connect_to, sizeof(cl->connect_to), "%s:%u:%s:%u",
	    master_bracket(host, sizeof(host), cl->creds.host),
	    cl->creds.port, master_bracket(ip, sizeof(ip),
	    cl->masters[cl->master]), cl->mport);
	return cl->connect_to;
}

int
master_failed(struct cluster *cl, const struct http_req *r)
{
	size_t was = cl->master;

	if (cl->nmasters < 2 || master_route(cl) == NULL)
		return 0;
	/* a request that went to a master we already left moves nothing */
	if (r->connect_to != NULL &&
	    strcmp(r->connect_to->data, cl->connect_to) == 0) {
		cl->master = (cl->master + 1) % cl->nmasters;
		cl->master_fails++;
		master_route(cl);
		log_warnx("%s: master %s: transport error, trying %s",
		    cl->name, cl->masters[was], cl->masters[cl->master]);
	}
	return cl->master_fails < cl->nmasters;
}

void
master_ok(struct cluster *cl)
{
	if (cl->master_fails == 0)
		return;
	cl->master_fails = 0;
	log_info("%s: API answering through master %s", cl->name,
	    cl->masters[cl->master]);
}

void
master_auth(struct cluster *cl, struct http_auth *a)
{
	memset(a, 0, sizeof(*a));
	a->ca_pem = cl->creds.ca_pem;
	a->bearer = cl->creds.token;
	a->cert_pem = cl->creds.cert_pem;
	a->key_pem = cl->creds.key_pem;
	a->connect_to = master_route(cl);
}
