/*
 * porticoctl log replay — today's allocator against the decisions the log
 * recorded: every observation is decided again, in a scratch store, and
 * the first record or table key that differs is named (allocd/replay.c,
 * the engine allocd -R uses too).  The store is read in one read
 * transaction: a live one as it was when the command began, or a copy.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "../allocd/replay.h"
#include "log.h"
#include "porticoctl.h"

/* allocd -R's codes, as porticoctl's. */
static int
exit_code(int status)
{
	return status == 0 ? CTL_OK : status == 1 ? CTL_DIFFER : CTL_STORE;
}

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
	char err[512], *report = NULL;
	size_t len = 0;
	FILE *out;
	json_t *j;
	int ch, rc, status;

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
	if (!c->json)
		return exit_code(replay_store(&conf, &c->st, c->txn, until,
		    stdout, &res));
	/* -j: one JSON object, with the report words would have printed */
	if ((out = open_memstream(&report, &len)) == NULL)
		fatal("replay");
	status = replay_store(&conf, &c->st, c->txn, until, out, &res);
	if (fclose(out) == EOF)
		fatal("replay");
	j = json_pack("{s:s, s:I, s:I, s:I, s:b, s:o, s:o, s:o, s:s}",
	    "result", status == 0 ? "identical" : status == 1 ? "differ" :
	    "cannot replay", "observations", (json_int_t)res.nobs,
	    "decisions", (json_int_t)res.ndec, "last", (json_int_t)res.last,
	    "tables", res.tables,
	    "seq", res.seq ? json_integer((json_int_t)res.seq) : json_null(),
	    "table", res.table[0] ? json_string(res.table) : json_null(),
	    "key", res.key[0] ? json_string(res.key) : json_null(),
	    "report", report);
	free(report);
	if (ctl_print_json(j) == -1)
		return CTL_STORE;
	return exit_code(status);
}
