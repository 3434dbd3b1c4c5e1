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

#include "addr.h"
#include "log.h"
#include "watcherd.h"

/*
 * Whether watcherd may connect to ip as a cluster's master, and send it
 * the cluster's credentials: where allocd would route it (limits.c), so
 * not loopback, link-local (a cloud's metadata service), multicast or
 * unspecified unless [limits] allow_backends lets it, and not an address
 * a proxy listens on.  Whoever writes a kubeconfig or a Cluster may name
 * any address; this is what keeps watcherd from being their probe.
 */
int
master_allowed(const char *ip, char *why, size_t whylen)
{
	struct addr_ip a, own;
	enum addr_class k;
	int i;

	if (addr_parse(ip, &a) == -1) {
		snprintf(why, whylen, "is not an IP address");
		return -1;
	}
	for (i = 0; i < conf.nproxies; i++)
		if (addr_parse(conf.proxies[i].listen, &own) == 0 &&
		    addr_classify(&own) != ADDR_UNSPECIFIED &&
		    addr_equal(&a, &own)) {
			snprintf(why, whylen, "is the address a proxy listens "
			    "on");
			return -1;
		}
	if (addr_in_nets(&a, &conf.allow_backends))
		return 0;
	if ((k = addr_classify(&a)) != ADDR_OK) {
		snprintf(why, whylen, "is %s", addr_class_name(k));
		return -1;
	}
	return 0;
}

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
