/* test_domains.c - NVLink domain maps: topology.conf block and tree syntax, two-column files,
 * comments, continuation lines, and one-line errors for bad lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mt_plan.h"
#include "tap.h"

static char path[1024];

static int load(const char *text, struct mt_domains **d, char *err)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return mt_domains_load(path, d, err, MT_ERRLEN);
}

int main(void)
{
	struct mt_domains *d;
	char err[MT_ERRLEN];
	snprintf(path, sizeof(path), "%s/tests/test_domains_XXXXXX", BUILDDIR); /* scratch in the build tree */
	int fd = mkstemp(path);
	close(fd);

	TAP_INT(load("# GB300 racks\n"
		     "BlockName=b1 Nodes=gb-r01-n[01-16]   # two trays out\n"
		     "BlockName=b2 Nodes=gb-r02-n[01-09],\\\n"
		     "   gb-r02-n[11-18]\n"
		     "BlockSizes=18\n",
		     &d, err),
		0, "block syntax loads (%s)", err);
	TAP_INT(mt_domains_count(d), 2, "two blocks");
	TAP_INT(mt_domains_nodes(d), 16 + 17, "16 + 17 nodes");
	TAP_STR(mt_domains_lookup(d, "gb-r01-n16"), "b1", "node in block 1");
	TAP_STR(mt_domains_lookup(d, "gb-r02-n18"), "b2", "node from the continuation line");
	tap_ok(mt_domains_lookup(d, "gb-r02-n10") == NULL, "unlisted node is not in the map");
	mt_domains_free(d);

	TAP_INT(load("SwitchName=s1 Nodes=n[1-4] LinkSpeed=100\n"
		     "switchname=s2 nodes=n[5-8]\n"
		     "SwitchName=spine Switches=s[1-2]\n",
		     &d, err),
		0, "tree syntax loads, keys case-insensitive (%s)", err);
	TAP_INT(mt_domains_count(d), 2, "leaf switches are the domains, the spine is not");
	TAP_STR(mt_domains_lookup(d, "n5"), "s2", "n5 under s2");
	mt_domains_free(d);

	TAP_INT(load("n1 rackA\nn2 rackB\n\n  # comment\nn3 rackA\nm[1-2] rackC\r\n", &d, err), 0,
		"two-column file loads (%s)", err);
	TAP_INT(mt_domains_count(d), 3, "three domains (rackA listed twice)");
	TAP_STR(mt_domains_lookup(d, "n3"), "rackA", "n3 in rackA");
	TAP_STR(mt_domains_lookup(d, "m2"), "rackC", "hostlist in the node column, CRLF tolerated");
	mt_domains_free(d);

	const char *bad[][2] = {
		{"BlockName=b1 Nodes=n1\nBlockName=b2 Nodes=n1\n", "already in domain 'b1'"},
		{"BlockName=b1\n", "has no Nodes="},
		{"BlockName=b1 Nodes=n[1-\n", ":1: hostlist"},
		{"BlockName=b1 Nodes=n1 Weight=3\n", "unknown key 'Weight'"},
		{"SwitchName=s1\n", "neither Nodes= nor Switches="},
		{"SwitchName=s1 Nodes=n1 Switches=s2\n", "both Nodes= and Switches="},
		{"n1 rackA extra\n", "got 3 words"},
		{"n1\n", "got 1 words"},
		{"Nodes=n1\n", "without BlockName= or SwitchName="},
		{"BlockName=b1 Nodes=n1 junk\n", "'junk' is not KEY=VALUE"},
		{"# nothing\n", "names no nodes"},
		{"\n\nBlockName= Nodes=n1\n", ":3: BlockName= has no value"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = (struct mt_domains *)1;
		int rc = load(bad[i][0], &d, err);
		tap_ok(rc == MT_EPARSE && d == NULL && strstr(err, bad[i][1]) && strstr(err, path) && !strchr(err, '\n'),
		       "bad map %zu rejected with one line naming file, line and problem: %s", i, err);
	}
	TAP_INT(mt_domains_load("/nonexistent/topology.conf", &d, err, sizeof(err)), MT_ENOENT, "missing file");
	tap_ok(strstr(err, "/nonexistent/topology.conf") != NULL, "names the file: %s", err);

	d = mt_domains_new();
	TAP_INT(mt_domains_add(d, "x[1-3]", "dA", err, sizeof(err)), 0, "in-memory map");
	TAP_INT(mt_domains_add(d, "x3", "dB", err, sizeof(err)), MT_EPARSE, "in-memory duplicate refused");
	TAP_STR(mt_domains_lookup(d, "x3"), "dA", "first mapping kept");
	mt_domains_free(d);
	unlink(path);
	return tap_done();
}
