/* bench_node_load.c - cost of reading a node from a cached topology file, as the plugin does once
 * per job step: mt_node_load_file (read, XML pre-check, hwloc, node model, rails) against a baseline
 * measured in the same run, hwloc alone loading the same XML from memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hwloc.h>

#include "mt_node.h"
#include "slurp.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 20;
	static const char *files[] = {"hwloc/flux-core__ipa20.xml", "hwloc/aws-ofi-nccl__p6e-gb200.36xlarge__topology.xml",
				      "hwloc/psmgmt__topo.jrc0323.xml", "hwloc/mpibind__cts1-pascal.xml"};
	printf("%-54s %10s %10s %7s\n", "fixture", "hwloc ms", "node ms", "ratio");
	double sum_ratio = 0;
	int n = 0;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[1024], err[MT_ERRLEN];
		size_t len;
		snprintf(path, sizeof(path), "%s/fixtures/%s", SRCDIR, files[i]);
		char *buf = slurp(path, &len);
		if (!buf) {
			fprintf(stderr, "bench: cannot read %s\n", path);
			return 1;
		}
		double best_h = 1e9, best_n = 1e9;
		for (int r = 0; r < reps; r++) {
			double t0 = now();
			hwloc_topology_t t;
			hwloc_topology_init(&t);
			hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_ALL);
			hwloc_topology_set_xmlbuffer(t, buf, (int)len + 1);
			hwloc_topology_load(t);
			hwloc_topology_destroy(t);
			double t1 = now();
			struct mt_node *node = NULL;
			if (mt_node_load_file(path, &node, err, sizeof(err)) < 0) {
				fprintf(stderr, "bench: %s\n", err);
				return 1;
			}
			mt_node_free(node);
			double t2 = now();
			if (t1 - t0 < best_h)
				best_h = t1 - t0;
			if (t2 - t1 < best_n)
				best_n = t2 - t1;
		}
		printf("%-54s %10.2f %10.2f %7.2f\n", files[i], best_h * 1e3, best_n * 1e3, best_n / best_h);
		sum_ratio += best_n / best_h;
		n++;
		free(buf);
	}
	printf("mean ratio node/hwloc: %.2f (best of %d runs each; the rest is the XML pre-check, node model and rails)\n",
	       sum_ratio / n, reps);
	return 0;
}
