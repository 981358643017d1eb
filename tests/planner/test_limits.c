/* test_limits.c - the planner's inputs stay bounded whatever a user or a file says (issue: hardening):
 * spec values whose product overflows, hostlists and domain maps capped by bytes and total names with
 * one clear error each, before any large allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mt_plan.h"
#include "tap.h"

static char err[MT_ERRLEN];

static void test_spec(void)
{
	struct mt_spec s;
	TAP_INT(mt_spec_parse("tp=65536,pp=65536", &s, err, sizeof(err)), MT_EINVAL,
		"tp=65536,pp=65536 is refused by the spec parser");
	tap_ok(strstr(err, "tp x pp") && strstr(err, "16777216"), "naming the product and the bound: %s", err);
	TAP_INT(mt_spec_parse("ep=4096,tp=4096,pp=2", &s, err, sizeof(err)), MT_EINVAL,
		"ep x tp x pp beyond the largest job is refused");
	tap_ok(strstr(err, "ep x tp x pp") != NULL, "and says so: %s", err);
	TAP_INT(mt_spec_parse("tp=4096,pp=4096", &s, err, sizeof(err)), 0, "tp x pp = 2^24 is still a valid spec");
	TAP_INT(mt_spec_parse("ep=256,tp=8,pp=16", &s, err, sizeof(err)), 0, "a large real spec parses");
}

/* A preset job of n nodes with `tasks` tasks each and the given tp/pp, set directly (as library callers
 * may, bypassing the parser). */
static int plan_tp_pp(const char *preset, int n, int tasks, int tp, int pp, struct mt_plan **p)
{
	struct mt_node *m;
	if (mt_preset_node(preset, &m, err, sizeof(err)))
		abort();
	char **names;
	int nn;
	char hl[64];
	snprintf(hl, sizeof(hl), "n[1-%d]", n);
	if (mt_hostlist_expand(hl, &names, &nn, err, sizeof(err)))
		abort();
	int *t = malloc(sizeof(int) * (size_t)nn);
	const struct mt_node **models = malloc(sizeof(*models) * (size_t)nn);
	for (int i = 0; i < nn; i++)
		t[i] = tasks, models[i] = m;
	struct mt_job job = {.n_nodes = nn, .nodes = (const char *const *)names, .tasks = t, .models = models};
	mt_spec_default(&job.spec);
	job.spec.mode = MT_MODE_SPEC;
	job.spec.tp = tp;
	job.spec.pp = pp;
	int rc = mt_plan_build(&job, p, err, sizeof(err));
	free(t);
	free(models);
	mt_hostlist_free(names, nn);
	mt_node_free(m);
	return rc;
}

static void test_plan(void)
{
	struct mt_plan *p = NULL;
	/* tp*pp = 2^32 wrapped to 0 in int and `world % 0` died with SIGFPE */
	int rc = plan_tp_pp("cpu-2socket", 1, 65536, 65536, 65536, &p);
	TAP_INT(rc, MT_EIMPOSSIBLE, "mt_plan_build with tp=pp=65536 on 65536 tasks: an error, no crash");
	tap_ok(p == NULL && strstr(err, "pp=65536") != NULL, "naming pp: %s", err);
	rc = plan_tp_pp("cpu-2socket", 2, 4, 2, 4, &p);
	TAP_INT(rc, 0, "tp=2,pp=4 on 2 x 4 tasks plans");
	if (p)
		TAP_INT(p->world, 8, "world 8");
	mt_plan_free(p);
}

/* "P[0-N]" with a prefix of `plen` x's */
static char *big_list(int plen, const char *range)
{
	char *s = malloc((size_t)plen + strlen(range) + 1);
	memset(s, 'x', (size_t)plen);
	strcpy(s + plen, range);
	return s;
}

static void test_hostlist(void)
{
	char **names = NULL;
	int n = -1;
	/* the reported case: 200-character names, 4 Mi of them, took 950 MB */
	char *e = big_list(200, "[0-4194303]");
	TAP_INT(mt_hostlist_expand(e, &names, &n, err, sizeof(err)), MT_EPARSE, "200-character x 4Mi names refused");
	tap_ok(names == NULL && n == 0, "nothing returned");
	tap_ok(strstr(err, "names") && strstr(err, "MiB"), "the error names both caps: %s", err);
	free(e);
	/* bytes: 100-character names, 200k of them = 20 MB of text, under the name cap */
	e = big_list(100, "[0-199999]");
	TAP_INT(mt_hostlist_expand(e, &names, &n, err, sizeof(err)), MT_EPARSE, "20 MB of names refused by size");
	tap_ok(strstr(err, "MiB") != NULL, "by the byte cap: %s", err);
	free(e);
	/* names: short ones, more than the cap */
	char expr[64];
	snprintf(expr, sizeof(expr), "n[0-%d]", MT_HOSTLIST_MAX_NAMES);
	TAP_INT(mt_hostlist_expand(expr, &names, &n, err, sizeof(err)), MT_EPARSE, "MT_HOSTLIST_MAX_NAMES + 1 names refused");
	snprintf(expr, sizeof(expr), "n[1-%d]", MT_HOSTLIST_MAX_NAMES);
	TAP_INT(mt_hostlist_expand(expr, &names, &n, err, sizeof(err)), 0, "MT_HOSTLIST_MAX_NAMES names expand");
	TAP_INT(n, MT_HOSTLIST_MAX_NAMES, "all of them");
	mt_hostlist_free(names, n);
	/* the cap is far above any real cluster: 100,000 nodes expand */
	TAP_INT(mt_hostlist_expand("gpu-[000001-100000]", &names, &n, err, sizeof(err)), 0, "100,000 nodes expand");
	TAP_INT(n, 100000, "all of them");
	if (n > 0)
		TAP_STR(names[n - 1], "gpu-100000", "in order, zero-padded");
	mt_hostlist_free(names, n);
}

static void test_domains(void)
{
	/* three lines, each within the hostlist caps, that together hold more than a map may: the reported
	 * case (three 200-character [0-4194303] lines) took 1.5 GB and 11 s in every slurmstepd */
	char path[] = "/tmp/test_limits_XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	for (int i = 0; i < 3; i++)
		fprintf(f, "BlockName=b%d Nodes=%0*d[0-99999]\n", i, 60, i);
	fclose(f);
	struct mt_domains *d = NULL;
	int rc = mt_domains_load(path, &d, err, sizeof(err));
	TAP_INT(rc, MT_EPARSE, "a map of 3 x 100,000 62-character names (19 MB) is refused");
	tap_ok(d == NULL && strstr(err, ":3:") && strstr(err, "MiB"), "at the line that crosses the cap: %s", err);
	f = fopen(path, "w");
	fprintf(f, "BlockName=b1 Nodes=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx[0-4194303]\n");
	fclose(f);
	rc = mt_domains_load(path, &d, err, sizeof(err));
	TAP_INT(rc, MT_EPARSE, "one line beyond the hostlist caps is refused");
	tap_ok(strstr(err, ":1:") != NULL, "naming its line: %s", err);
	f = fopen(path, "w");
	for (int i = 0; i < 120; i++)
		fprintf(f, "BlockName=rack%03d Nodes=gb-r%03d-n[01-18]\n", i, i);
	fclose(f);
	rc = mt_domains_load(path, &d, err, sizeof(err));
	TAP_INT(rc, 0, "a real 120-rack map loads");
	TAP_INT(mt_domains_nodes(d), 120 * 18, "with its 2160 trays");
	mt_domains_free(d);
	unlink(path);
}

int main(void)
{
	test_spec();
	test_plan();
	test_hostlist();
	test_domains();
	return tap_done();
}
