/* test_hostlist.c - Slurm hostlist expressions: ranges, padding, several bracket groups, comma
 * lists, and one-line errors for bad syntax. */
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"
#include "tap.h"

/* Expands expr and joins the names with spaces (or returns the error text). */
static char *expand(const char *expr, int *count)
{
	static char out[8192];
	char **names, err[MT_ERRLEN];
	int n;
	*count = -1;
	if (mt_hostlist_expand(expr, &names, &n, err, sizeof(err))) {
		snprintf(out, sizeof(out), "ERR %s", err);
		return out;
	}
	size_t o = 0;
	out[0] = '\0';
	for (int i = 0; i < n && o + 64 < sizeof(out); i++)
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s", i ? " " : "", names[i]);
	*count = n;
	mt_hostlist_free(names, n);
	return out;
}

int main(void)
{
	int n;
	TAP_STR(expand("node1", &n), "node1", "single name");
	TAP_STR(expand("n[1-3]", &n), "n1 n2 n3", "simple range");
	TAP_STR(expand("n[08-11]", &n), "n08 n09 n10 n11", "zero padding keeps the low bound's width");
	TAP_STR(expand("n[098-101]", &n), "n098 n099 n100 n101", "three-digit padding");
	TAP_STR(expand("n[9-11]", &n), "n9 n10 n11", "no padding without a leading zero");
	TAP_STR(expand("n[1,3,5-6]", &n), "n1 n3 n5 n6", "comma list inside brackets");
	TAP_STR(expand("gb-r[01-02]-n[01-03]", &n),
		"gb-r01-n01 gb-r01-n02 gb-r01-n03 gb-r02-n01 gb-r02-n02 gb-r02-n03",
		"two bracket groups: first varies slowest, as Slurm orders them");
	TAP_INT(n, 6, "2 x 3 names");
	TAP_STR(expand("a[1-2]b[7]c", &n), "a1b7c a2b7c", "literal text between and after groups");
	TAP_STR(expand("login1,n[1-2],gpu[3]", &n), "login1 n1 n2 gpu3", "comma list of items");
	TAP_STR(expand("n1 n2\tn3", &n), "n1 n2 n3", "white space separates items too");
	TAP_STR(expand("rack-a.n_1", &n), "rack-a.n_1", "dots, dashes and underscores in names");
	expand("gb-r[01-04]-n[01-18]", &n);
	TAP_INT(n, 72, "gb-r[01-04]-n[01-18] is 72 nodes");
	expand("x[0-131071]", &n);
	TAP_INT(n, 131072, "large range");

	/* errors */
	const char *bad[][2] = {
		{"n[1-", "closing"},         {"n[3-1]", "backwards"},      {"n[a-b]", "expected a number"},
		{"n[1-3", "closing"},        {"n1]", "without '['"},       {"n[[1]]", "nested"},
		{"n[1-2],,m", "empty name"}, {",n1", "empty name"},        {"n1,", "empty name"},
		{"n[]", "expected a number"}, {"n@1", "unexpected '@'"},   {"", "names no hosts"},
		{"n[1-2;3]", "unexpected ';'"}, {"n[1-]", "after '-'"},    {"x[0-9999999]y[0-9999]", "more than"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *r = expand(bad[i][0], &n);
		tap_ok(n == -1 && strstr(r, bad[i][1]) && strstr(r, bad[i][0]) && !strchr(r, '\n'),
		       "'%s' is rejected naming the problem (%s)", bad[i][0], r);
	}
	char **names = (char **)1;
	int cnt = 5;
	tap_ok(mt_hostlist_expand("n[", &names, &cnt, NULL, 0) != 0 && !names && cnt == 0,
	       "error leaves no output and accepts a NULL err buffer");
	return tap_done();
}
