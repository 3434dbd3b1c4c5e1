/*
 * portico — the user a proxy's workers run as ([proxy.NAME] user).
 *
 * HAProxy's and nginx's masters keep root (they bind the ports, the stats
 * and master sockets, and read the configuration again on a reload); their
 * workers, which parse every byte the public side sends, give it up for
 * this user and its primary group.  Both names are printed into the
 * proxy's configuration, so they are checked for what its parser reads
 * as plain words.
 */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define NAME_CHARS	"abcdefghijklmnopqrstuvwxyz" \
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

int
config_user_ok(const char *v)
{
	return *v != '-' && strspn(v, NAME_CHARS) == strlen(v);
}

/*
 * The user a proxy's workers run as when [proxy.NAME] user is not given:
 * the one Debian's package of that proxy creates, if it exists here and
 * portico runs as root; otherwise none, and the workers keep the master's
 * user.  A master that is not root cannot change user (HAProxy refuses to
 * start: "Cannot set gid"), and portico's daemons run as one user.
 */
static void
default_user(struct proxy_conf *px)
{
	static const struct {
		const char	*kind;
		const char	*user;
	} users[] = {
		{ "haproxy",	"haproxy" },
		{ "nginx",	"www-data" },
	};
	size_t i;

	px->user[0] = '\0';
	if (geteuid() != 0)
		return;
	for (i = 0; i < sizeof(users) / sizeof(users[0]); i++)
		if (strcmp(users[i].kind, px->kind) == 0 &&
		    getpwnam(users[i].user) != NULL)
			strcpy(px->user, users[i].user);
}

int
config_proxy_user(const char *path, struct proxy_conf *px, int given,
    char *err, size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	if (!given)
		default_user(px);
	px->group[0] = '\0';
	if (px->user[0] == '\0')
		return 0;
	if ((pw = getpwnam(px->user)) == NULL) {
		snprintf(err, errlen, "%s: [proxy.%s] user: no such user: %s",
		    path, px->name, px->user);
		return -1;
	}
	if ((gr = getgrgid(pw->pw_gid)) == NULL ||
	    strlen(gr->gr_name) >= sizeof(px->group) ||
	    !config_user_ok(gr->gr_name)) {
		snprintf(err, errlen, "%s: [proxy.%s] user: %s's group %u has "
		    "no name a proxy config can carry", path, px->name,
		    px->user, (unsigned)pw->pw_gid);
		return -1;
	}
	strcpy(px->group, gr->gr_name);
	return 0;
}
