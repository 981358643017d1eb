/* test_hwloc_dl.c - the plugin's build of the library (libmoetopo_plugin, libhwloc opened with dlopen)
 * reads topologies like the CLI's when libhwloc is there, and when it is not (run by
 * test_plugin_deps.sh with the library hidden) fails only where hwloc is needed, with one line naming
 * it; NCCL topology files need no hwloc.  Usage: test_hwloc_dl present|absent */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mt_node.h"
#include "tap.h"

int main(int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[1], "present") && strcmp(argv[1], "absent"))) {
		fprintf(stderr, "usage: test_hwloc_dl present|absent\n");
		return 2;
	}
	bool present = !strcmp(argv[1], "present");
	char err[MT_ERRLEN];
	struct mt_node *n = NULL;
	int rc = mt_node_load_file(SRCDIR "/fixtures/hwloc/flux-core__ipa20.xml", &n, err, sizeof(err));
	if (present) {
		TAP_INT(rc, 0, "libhwloc present: an hwloc XML loads through dlopen: %s", rc ? err : "ok");
		TAP_INT(n ? n->n_gpus : -1, 4, "with its 4 GPUs");
	} else {
		TAP_INT(rc, MT_ENOENT, "libhwloc absent: reading an hwloc XML fails");
		tap_ok(n == NULL && strstr(err, "hwloc library is not usable on this node") && !strchr(err, '\n'),
		       "with one line naming the library: %s", err);
	}
	mt_node_free(n);
	n = NULL;
	rc = mt_node_load_file(SRCDIR "/fixtures/nccl/azhpc-images__ndv4-topo.xml", &n, err, sizeof(err));
	TAP_INT(rc, 0, "an NCCL topology loads either way: %s", rc ? err : "ok");
	TAP_INT(n ? n->n_gpus : -1, 8, "with its 8 GPUs");
	mt_node_free(n);
	return tap_done();
}
