/*
 * porticoctl log replay — today's allocator against the decisions the log
 * recorded: every observation is decided again, in a scratch store, and
 * the first record or table key that differs is named (allocd/replay.c,
 * the engine allocd -R uses too).  The store is read in one read
 * transaction: a live one as it was when the command began, or a copy.
 */
#include <getopt.h>
#include <stdio.h>

#include "../allocd/replay.h"
#include "log.h"
#include "porticoctl.h"

int
cmd_log_replay(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "until",	required_argument,	NULL, 'u' },
		{ NULL,		0,			NULL, 0 },
	};
	static struct config conf;
	struct replay_result res;
	uint64_t until = 0;
	char err[512];
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'u' || ctl_seq(optarg, &until) == -1 || until == 0) {
			fprintf(stderr, "porticoctl: log replay "
			    "[--until SEQ] [STORE]\n");
			return CTL_USAGE;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "porticoctl: log replay [--until SEQ] "
		    "[STORE]\n");
		return CTL_USAGE;
	}
	/* the decisions depend on the configuration: ports, limits, proxies */
	if (config_load(c->conf_path, &conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "porticoctl: %s\n", err);
		return CTL_USAGE;
	}
	if ((rc = ctl_open(c, argc > optind ? argv[optind] : conf.store)) !=
	    CTL_OK)
		return rc;
	switch (replay_store(&conf, &c->st, c->txn, until, &res)) {
	case 0:
		return CTL_OK;
	case 1:
		return CTL_DIFFER;
	default:
		return CTL_STORE;
	}
}
