/*
 * Unit tests for applyd/envoy.c, the Envoy driver: its check (the framing
 * of renderd's text, each document's JSON and what Envoy needs of it) and
 * its install (three files by rename, "running" while they are in place).
 * No Envoy is run, here or by the driver.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../applyd/proxy.h"
#include "log.h"

#define LISTENER	"type.googleapis.com/envoy.config.listener.v3.Listener"
#define CLUSTER		"type.googleapis.com/envoy.config.cluster.v3.Cluster"
#define GOLDEN		"tests/golden/envoy_fleet.out"

struct fx {
	char			 dir[64];
	struct config		 conf;
	struct proxy_conf	 pc;
	struct proxy		 p;
	char			 err[512];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/pt-envoy-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf.run_dir, sizeof(f->conf.run_dir), "%s", f->dir);
	strcpy(f->pc.name, "edge");
	strcpy(f->pc.kind, "envoy");
	snprintf(f->pc.config, sizeof(f->pc.config), "%s/edge.cfg", f->dir);
	f->p.ops = &envoy_ops;
	f->p.conf = &f->conf;
	f->p.pc = &f->pc;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void
put(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static char *
slurp(const char *path)
{
	static char buf[65536];
	FILE *fp = fopen(path, "r");
	size_t n;

	if (fp == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

/* "=== name bytes\n" and doc with its newline, appended to buf. */
static void
section(char *buf, size_t len, const char *name, const char *doc)
{
	size_t off = strlen(buf);

	snprintf(buf + off, len - off, "=== %s %zu\n%s\n", name,
	    strlen(doc) + 1, doc);
}

static const char *
bootstrap(struct fx *f)
{
	static char b[1024];

	snprintf(b, sizeof(b), "{\"node\": {\"id\": \"edge\"}, "
	    "\"dynamic_resources\": {"
	    "\"lds_config\": {\"path_config_source\": {\"path\": "
	    "\"%s/edge-lds.json\"}}, "
	    "\"cds_config\": {\"path_config_source\": {\"path\": "
	    "\"%s/edge-cds.json\"}}}}", f->dir, f->dir);
	return b;
}

static const char *good_cds = "{\"version_info\": \"1\", \"resources\": ["
    "{\"@type\": \"" CLUSTER "\", \"name\": \"p21000\"}]}";
static const char *good_lds = "{\"version_info\": \"1\", \"resources\": ["
    "{\"@type\": \"" LISTENER "\", \"name\": \"p21000\", \"filter_chains\": "
    "[{\"filters\": [{\"typed_config\": {\"cluster\": \"p21000\"}}]}]}]}";

/* A text of the three documents, at f->pc.config; returns the text. */
static const char *
text(struct fx *f, const char *boot, const char *cds, const char *lds)
{
	static char buf[8192];

	strcpy(buf, "# rendered by portico renderd; do not edit\n");
	section(buf, sizeof(buf), "bootstrap.json", boot);
	if (cds != NULL)
		section(buf, sizeof(buf), "cds.json", cds);
	section(buf, sizeof(buf), "lds.json", lds);
	put(f->pc.config, buf);
	return buf;
}

static void
refused(struct fx *f, const char *why)
{
	f->err[0] = '\0';
	assert_int_equal(f->p.ops->check(&f->p, f->pc.config, f->err,
	    sizeof(f->err)), -1);
	if (strstr(f->err, why) == NULL)
		fail_msg("err %s: no %s", f->err, why);
}

static void
test_good(void **state)
{
	struct fx *f = *state;

	text(f, bootstrap(f), good_cds, good_lds);
	assert_int_equal(f->p.ops->check(&f->p, f->pc.config, f->err,
	    sizeof(f->err)), 0);
}

/* What renderd renders for the golden fleet passes, at its run_dir. */
static void
test_golden(void **state)
{
	struct fx *f = *state;

	strcpy(f->conf.run_dir, "/run/portico-golden");
	assert_int_equal(f->p.ops->check(&f->p, GOLDEN, f->err,
	    sizeof(f->err)), 0);
}

static void
test_framing(void **state)
{
	struct fx *f = *state;
	char buf[8192];

	text(f, bootstrap(f), NULL, good_lds);
	refused(f, "no section cds.json");
	strcpy(buf, text(f, bootstrap(f), good_cds, good_lds));
	strcat(buf, "x");
	put(f->pc.config, buf);
	refused(f, "1 bytes after the last section");
	/* a count one short leaves the newline outside the section */
	strcpy(buf, text(f, bootstrap(f), good_cds, good_lds));
	*strrchr(buf, '\n') = '\0';
	put(f->pc.config, buf);
	refused(f, "section lds.json: bad length");
	put(f->pc.config, "=== bootstrap.json 99999999999999999999\n{}\n");
	refused(f, "section bootstrap.json: bad length");
	put(f->pc.config, "");
	refused(f, "no section bootstrap.json");
}

static void
test_documents(void **state)
{
	struct fx *f = *state;

	text(f, bootstrap(f), "{\"version_info\": \"1\", \"resources\": [",
	    good_lds);
	refused(f, "cds.json: line ");
	text(f, bootstrap(f), "[]", good_lds);
	refused(f, "cds.json: line 1: not a JSON object");
	text(f, bootstrap(f), "{\"version_info\": \"1\", \"resources\": [], "
	    "\"resources\": []}", good_lds);
	refused(f, "duplicate object key");
	text(f, bootstrap(f), "{\"resources\": []}", good_lds);
	refused(f, "cds.json: not a DiscoveryResponse");
	text(f, bootstrap(f), "{\"version_info\": \"1\", \"resources\": ["
	    "{\"@type\": \"" CLUSTER "\", \"name\": \"p1\"},"
	    "{\"@type\": \"" CLUSTER "\", \"name\": \"p1\"}]}", good_lds);
	refused(f, "cds.json: resource 1:");
	text(f, bootstrap(f), "{\"version_info\": \"1\", \"resources\": ["
	    "{\"@type\": \"" LISTENER "\", \"name\": \"p21000\"}]}", good_lds);
	refused(f, "cds.json: resource 0:");
	text(f, bootstrap(f), "{\"version_info\": \"1\", \"resources\": []}",
	    good_lds);
	refused(f, "listener p21000 names a cluster CDS does not define");
	text(f, "{\"dynamic_resources\": {}}", good_cds, good_lds);
	refused(f, "dynamic_resources.cds_config does not read");
}

/* The files are Envoy's, whole, by rename; running while they are there. */
static void
test_install(void **state)
{
	struct fx *f = *state;
	char path[128];
	const char *s;

	text(f, bootstrap(f), good_cds, good_lds);
	assert_int_equal(f->p.ops->running(&f->p), 0);
	assert_int_equal(f->p.ops->start(&f->p, f->err, sizeof(f->err)), 0);
	assert_int_equal(f->p.ops->running(&f->p), 1);
	snprintf(path, sizeof(path), "%s/edge-bootstrap.json", f->dir);
	assert_non_null(s = slurp(path));
	assert_int_equal(strncmp(s, bootstrap(f), strlen(bootstrap(f))), 0);
	snprintf(path, sizeof(path), "%s/edge-cds.json", f->dir);
	assert_non_null(s = slurp(path));
	assert_int_equal(strncmp(s, good_cds, strlen(good_cds)), 0);
	snprintf(path, sizeof(path), "%s/edge-lds.json.new", f->dir);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/edge-lds.json", f->dir);
	assert_non_null(s = slurp(path));
	assert_string_equal(s, "{\"version_info\": \"1\", \"resources\": [{"
	    "\"@type\": \"" LISTENER "\", \"name\": \"p21000\", "
	    "\"filter_chains\": [{\"filters\": [{\"typed_config\": "
	    "{\"cluster\": \"p21000\"}}]}]}]}\n");
	/* a file removed: not running, so applyd installs again */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(f->p.ops->running(&f->p), 0);
	assert_int_equal(f->p.ops->reload(&f->p, f->err, sizeof(f->err)), 0);
	assert_int_equal(f->p.ops->running(&f->p), 1);
	f->p.ops->stop(&f->p);
	assert_int_equal(f->p.ops->running(&f->p), 0);
	assert_int_equal(access(path, F_OK), 0);	/* the files stay */
}

static void
test_install_fails(void **state)
{
	struct fx *f = *state;

	assert_int_equal(f->p.ops->start(&f->p, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "edge.cfg"));
	assert_int_equal(f->p.ops->running(&f->p), 0);
}

#define T(fn)	cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_good),
		T(test_golden),
		T(test_framing),
		T(test_documents),
		T(test_install),
		T(test_install_fails),
	};

	log_init("test_envoy", 1, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
