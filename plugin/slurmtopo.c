/* slurmtopo.c - Slurm's own network topology as the plugin sees it.
 *
 * Two sources: the topology.conf Slurm reads (beside slurm.conf; topology/block's BlockName= lines are
 * the NVLink domains of an NVL72 cluster), and SLURM_TOPOLOGY_ADDR / SLURM_TOPOLOGY_ADDR_PATTERN, which
 * slurmd puts in every step ("b1.node7" / "block.node" under topology/block, "s0.s3.node7" /
 * "switch.switch.node" under topology/tree, just "node7" / "node" without a topology plugin).  The
 * address names only the task's own node, so it cannot replace the map (every node must plan from the
 * same facts about all nodes); it tells whether Slurm runs a topology and checks this node's entry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"

int mtp_slurm_topology_conf(char *buf, size_t len, char *err, size_t errlen)
{
	/* slurmstepd's own environment (slurmd's), not the job's: the job cannot choose what root reads */
	const char *conf = getenv("SLURM_CONF"), *slash;
	size_t dlen;

	if (conf && *conf == '/' && (slash = strrchr(conf, '/')))
		dlen = (size_t)(slash - conf);
	else {
		conf = MTP_SLURM_SYSCONFDIR "/slurm.conf";
		dlen = strlen(MTP_SLURM_SYSCONFDIR);
	}
	if ((size_t)snprintf(buf, len, "%.*s/topology.yaml", (int)dlen, conf) >= len) {
		snprintf(err, errlen, "SLURM_CONF is too long");
		return -1;
	}
	if (access(buf, F_OK) == 0) {
		/* Slurm 25.05+ reads topology.yaml first and then ignores topology.conf */
		snprintf(err, errlen, "%s exists (Slurm 25.05 topology.yaml), which domains=slurm does not read: "
			 "name a file in topology.conf syntax with domains=PATH", buf);
		return -1;
	}
	snprintf(buf, len, "%.*s/topology.conf", (int)dlen, conf);
	return 0;
}

int mtp_topology_addr_domain(const char *addr, const char *pattern, const char *node, char *dom, size_t len)
{
	const char *last_p = strrchr(pattern, '.'), *end, *start;
	size_t al = strlen(addr), nl = strlen(node);

	if (!last_p || strcmp(last_p + 1, "node"))
		return 1;              /* no topology plugin ("node"), or a pattern we do not know */
	/* the node is the tail (its name may hold dots), its block or leaf switch the element before */
	if (al <= nl + 1 || strcmp(addr + al - nl, node) || addr[al - nl - 1] != '.')
		return -1;
	end = addr + al - nl - 1;
	for (start = end; start > addr && start[-1] != '.'; start--)
		;
	if (start == end || (size_t)(end - start) >= len)
		return -1;
	memcpy(dom, start, (size_t)(end - start));
	dom[end - start] = '\0';
	return 0;
}
