/*
 * porticoctl keygen — a CURVE key pair for one role of the bus, in the
 * format [bus] keys reads (keys.h).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "keys.h"
#include "porticoctl.h"

/*
 * keygen ROLE [DIR]: DIR defaults to [bus] keys.  The public key is
 * printed, so that it can be added to the .pub file of another folder
 * (another host's); the secret stays in the .key file alone.
 */
int
cmd_keygen(struct ctl *c, int argc, char **argv)
{
	const struct config *conf;
	char pub[KEYS_Z85 + 1], err[PATH_MAX + 256];
	const char *dir;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: porticoctl keygen ROLE [DIR]\n");
		return CTL_USAGE;
	}
	if (argc == 3)
		dir = argv[2];
	else {
		if ((conf = ctl_config(c, 0)) == NULL)
			return CTL_USAGE;
		if (conf->bus_keys[0] == '\0') {
			fprintf(stderr, "porticoctl: %s: [bus] keys is not "
			    "set: name the folder (keygen ROLE DIR)\n",
			    conf->path);
			return CTL_USAGE;
		}
		dir = conf->bus_keys;
	}
	if (keys_generate(dir, argv[1], pub, err, sizeof(err)) == -1) {
		fprintf(stderr, "porticoctl: keygen: %s\n", err);
		return CTL_USAGE;
	}
	printf("%s\n", pub);
	return CTL_OK;
}
