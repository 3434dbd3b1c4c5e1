/*
 * fuzz_kubeconfig — a kubeconfig file of the folder: YAML through
 * yaml_parse(), then kubeconfig_creds() on the tree.
 *
 * The folder's own files are not read here (dir NULL: the binds path,
 * where file paths are refused): a harness that opens what its input
 * names would read this machine's files.  Credentials that parse must
 * hold a server with a host and a port, and a CA.
 */
#include <stdint.h>
#include <stdlib.h>

#include "kubeconfig.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct creds c;
	char err[256];
	json_t *kc;

	err[0] = '\0';
	if ((kc = yaml_parse((const char *)data, size, err,
	    sizeof(err))) == NULL) {
		if (err[0] == '\0')
			abort();	/* a refusal always says why */
		return 0;
	}
	if (kubeconfig_creds(kc, NULL, &c, err, sizeof(err)) == 0) {
		if (c.host[0] == '\0' || c.port == 0 || c.port > 65535 ||
		    c.ca_pem == NULL)
			abort();
		creds_free(&c);
	} else if (err[0] == '\0')
		abort();
	json_decref(kc);
	return 0;
}
