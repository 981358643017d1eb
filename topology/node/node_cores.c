/* node_cores.c - the CPUs of a list of a node's cores.
 *
 * Slurm names the cores it allocated to a step on a node by index (S_STEP_ALLOC_CORES, "0-3,8-11"), in
 * the order of hwloc's logical core numbering, which task/affinity and task/cgroup also use to map them
 * to CPUs.  The plugin binds within those CPUs, so that on a node shared without ConstrainCores a step
 * stays on its own cores.
 */
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

/* Longest core list read: Slurm writes it into a 1 KiB buffer */
#define CORES_MAX 4096

int mt_node_core_cpus(const struct mt_node *n, const char *cores, char **cpus, char *err, size_t errlen)
{
	unsigned char *want = NULL, *cpu = NULL;
	int rc, count, last = -1;

	if (cpus)
		*cpus = NULL;
	if (!n || !cores || !cpus)
		return mt_seterr(err, errlen, MT_EINVAL, "mt_node_core_cpus: bad arguments");
	if (!n->core_cpusets || n->n_cores <= 0)
		return mt_seterr(err, errlen, MT_EINVAL, "%s gives no cores (only CPUs), so core indices mean nothing "
				 "there", n->source);
	if (strlen(cores) > CORES_MAX)
		return mt_seterr(err, errlen, MT_EPARSE, "core list is longer than %d characters", CORES_MAX);
	want = calloc(MT_MAXCPU, 1);
	cpu = calloc(MT_MAXCPU, 1);
	if (!want || !cpu) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto out;
	}
	/* syntax against the widest list, then the node's own range, so that each gets its own message */
	if ((count = mt_cpulist_parse(cores, want, MT_MAXCPU)) < 0) {
		rc = mt_seterr(err, errlen, MT_EPARSE, "core list '%.60s' is not a list of core indices (valid: "
			       "indices and ranges such as 0-3,8-11)", cores);
		goto out;
	}
	if (!count) {
		rc = mt_seterr(err, errlen, MT_EPARSE, "core list is empty (valid: indices and ranges such as 0-3,8-11)");
		goto out;
	}
	for (int c = 0; c < MT_MAXCPU; c++)
		if (want[c])
			last = c;
	if (last >= n->n_cores) {
		rc = mt_seterr(err, errlen, MT_EPARSE, "core %d is not on %s (its cores are 0-%d)", last, n->source,
			       n->n_cores - 1);
		goto out;
	}
	for (int c = 0; c <= last; c++) {
		unsigned char one[MT_MAXCPU];
		if (!want[c])
			continue;
		if (mt_cpulist_parse(n->core_cpusets[c] ? n->core_cpusets[c] : "", one, MT_MAXCPU) < 0) {
			rc = mt_seterr(err, errlen, MT_EPARSE, "%s: core %d has no usable CPU list", n->source, c);
			goto out;
		}
		for (int p = 0; p < MT_MAXCPU; p++)
			cpu[p] |= one[p];
	}
	if (!(*cpus = malloc(MT_MAXCPU * 6))) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto out;
	}
	rc = mt_cpulist_format(cpu, MT_MAXCPU, *cpus, MT_MAXCPU * 6) < 0 ? MT_ENOMEM : 0;
	if (rc) {
		free(*cpus);
		*cpus = NULL;
		mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	}
out:
	free(want);
	free(cpu);
	return rc;
}
