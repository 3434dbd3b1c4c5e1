/*
 * porticoctl log dump — allocd's log as JSON lines (event_json()), filtered
 * by seq, type and owner.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "porticoctl.h"

struct dump {
	int			 type;		/* EV_NONE: any */
	const struct ctl_owner	*owner;		/* NULL: any */
	unsigned long		 n;
};

/* The wire code of a type named as event_name() names it; EV_NONE if none. */
static int
type_code(const char *name)
{
	int code;

	for (code = 1; code < 256; code++)
		if (event_known(code) && strcmp(event_name(code), name) == 0)
			return code;
	return EV_NONE;
}

static int
dump_one(struct ctl *c, const struct event *ev, void *arg)
{
	struct dump *d = arg;

	(void)c;
	if (d->type != EV_NONE && ev->type != d->type)
		return 0;
	if (d->owner != NULL && !ctl_owner_match(d->owner, ev))
		return 0;
	d->n++;
	return ctl_print_json(event_json(ev));
}

int
cmd_log_dump(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since",	required_argument,	NULL, 's' },
		{ "until",	required_argument,	NULL, 'u' },
		{ "type",	required_argument,	NULL, 't' },
		{ "owner",	required_argument,	NULL, 'o' },
		{ NULL,		0,			NULL, 0 },
	};
	struct dump d = { EV_NONE, NULL, 0 };
	struct ctl_owner owner;
	uint64_t since = 0, until = UINT64_MAX;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
		case 'u':
			if (ctl_seq(optarg, ch == 's' ? &since : &until) ==
			    -1) {
				fprintf(stderr, "porticoctl: --%s: not a seq\n",
				    ch == 's' ? "since" : "until");
				return CTL_USAGE;
			}
			break;
		case 't':
			if ((d.type = type_code(optarg)) == EV_NONE) {
				fprintf(stderr, "porticoctl: --type: no such "
				    "event type (e.g. PORT_SET, REFUSED)\n");
				return CTL_USAGE;
			}
			break;
		case 'o':
			if (ctl_owner_parse(&owner, optarg) == -1) {
				fprintf(stderr, "porticoctl: --owner: want "
				    "cluster/ns/name[/route]\n");
				return CTL_USAGE;
			}
			d.owner = &owner;
			break;
		default:
			return CTL_USAGE;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "porticoctl: log dump: one store at most\n");
		return CTL_USAGE;
	}
	if ((rc = ctl_open(c, argv[optind])) != CTL_OK)
		return rc;
	if ((rc = ctl_walk(c, since, until, dump_one, &d)) != 0) {
		if (rc == -1)
			log_warn("stdout");
		else
			log_warnx("log: %s", mdb_strerror(rc));
		return CTL_STORE;
	}
	return c->bad > 0 ? CTL_STORE : CTL_OK;
}
