/*
 * porticoctl why — the story of one owner from the log: each observation
 * and decision that touched it, one line each, in words.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "porticoctl.h"

struct why {
	struct ctl_owner	owner;
	unsigned long		n;
};

static unsigned long long
ull(uint64_t v)
{
	return (unsigned long long)v;
}

/*
 * ev in words.  Only decoded fields are used: each string has passed its
 * validator (why: printable ASCII, no quote or backslash).
 */
static void
why_story(const struct event *ev, char *buf, size_t len)
{
	switch (ev->type) {
	case EV_ROUTE:
		if (ev->has & F_WHY)
			snprintf(buf, len, "seen, not routable: %s", ev->why);
		else if (ev->has & F_WANT)
			snprintf(buf, len, "asked for port %llu (%zu "
			    "backends)", ull(ev->want), ev->nbackends);
		else
			snprintf(buf, len, "asked for a port (%zu backends)",
			    ev->nbackends);
		break;
	case EV_ROUTE_GONE:
		snprintf(buf, len, "gone from its cluster");
		break;
	case EV_PORT_SET:
		snprintf(buf, len, "got port %llu (%zu backends)",
		    ull(ev->port), ev->nbackends);
		break;
	case EV_PORT_LIVE:
		snprintf(buf, len, "live on every proxy on port %llu",
		    ull(ev->port));
		break;
	case EV_PORT_FREE:
		snprintf(buf, len, "freed port %llu (quarantined)",
		    ull(ev->port));
		break;
	case EV_REFUSED:
		snprintf(buf, len, "refused: %s", ev->why);
		break;
	case EV_SNI_ROUTE:
		if (ev->has & F_WHY)
			snprintf(buf, len, "seen, not routable: %s", ev->why);
		else
			snprintf(buf, len, "asked for hostname %s (%zu "
			    "backends)", ev->host, ev->nbackends);
		break;
	case EV_SNI_GONE:
		snprintf(buf, len, "gone from its cluster");
		break;
	case EV_SNI_SET:
		snprintf(buf, len, "routed hostname %s by SNI (%zu backends)",
		    ev->host, ev->nbackends);
		break;
	case EV_SNI_DEL:
		snprintf(buf, len, "let go of hostname %s", ev->host);
		break;
	case EV_PORT_FAULT:
		if (ev->has & F_WHY)
			snprintf(buf, len, "proxy fault on port %llu: %s",
			    ull(ev->port), ev->why);
		else
			snprintf(buf, len, "proxy fault on port %llu cleared",
			    ull(ev->port));
		break;
	default:
		snprintf(buf, len, "%s", event_name(ev->type));
		break;
	}
}

static int
why_one(struct ctl *c, const struct event *ev, void *arg)
{
	struct why *w = arg;
	char story[512], when[32], owner[EV_OWNERLEN];
	json_t *j;

	if (!ctl_owner_match(&w->owner, ev) ||
	    ctl_event_owner(ev, owner, sizeof(owner)) == -1)
		return 0;
	w->n++;
	why_story(ev, story, sizeof(story));
	ctl_time(when, sizeof(when), ev->time);
	if (c->json) {
		j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:o}", "seq",
		    (json_int_t)ev->seq, "time", when, "owner", owner,
		    "type", event_name(ev->type), "story", story,
		    "event", event_json(ev));
		return ctl_print_json(j);
	}
	if (w->n == 1 && printf("%-8s %-24s %-12s %s\n", "SEQ", "TIME (UTC)",
	    "TYPE", "STORY") < 0)
		return -1;
	if (w->owner.prefix)
		return printf("%-8llu %-24s %-12s %s: %s\n", ull(ev->seq),
		    when, event_name(ev->type), owner + strlen(w->owner.key) +
		    1, story) < 0 ? -1 : 0;
	return printf("%-8llu %-24s %-12s %s\n", ull(ev->seq), when,
	    event_name(ev->type), story) < 0 ? -1 : 0;
}

int
cmd_why(struct ctl *c, int argc, char **argv)
{
	struct why w;
	int rc;

	memset(&w, 0, sizeof(w));
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "porticoctl: why OWNER [STORE]\n");
		return CTL_USAGE;
	}
	if (ctl_owner_parse(&w.owner, argv[1]) == -1) {
		fprintf(stderr, "porticoctl: why: want cluster/ns/name[/route] "
		    "(names as Kubernetes takes them)\n");
		return CTL_USAGE;
	}
	if ((rc = ctl_open(c, argv[2])) != CTL_OK)
		return rc;
	if ((rc = ctl_walk(c, 0, UINT64_MAX, why_one, &w)) != 0) {
		if (rc == -1)
			log_warn("stdout");
		else
			log_warnx("log: %s", mdb_strerror(rc));
		return CTL_STORE;
	}
	if (c->bad > 0)
		return CTL_STORE;
	if (w.n == 0) {
		fprintf(stderr, "porticoctl: %s: not in the log\n",
		    w.owner.key);
		return CTL_USAGE;
	}
	return CTL_OK;
}
