/* layout.c - the pure checks of what the step's environment says: which node names may become part of a
 * file name, which GPU lists are usable, which CPUs the step's cores leave to it.  No Slurm calls here, so the unit tests exercise them
 * directly (Slurm's tasks-per-node syntax and the task distributions are the library's: distribution.c).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* A node name becomes part of a file name (topology=.../%n.xml): letters, digits, '.', '-', '_' only. */
bool mtp_node_name_ok(const char *s)
{
	if (!*s || *s == '.' || strlen(s) >= MT_NAME_LEN)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* GRES indices come from the job's environment: small non-negative integers, each GPU once (a repeat
 * would give two ranks one GPU and leave another idle). */
int mtp_gpu_indices(char *const *tokens, int n, int *index, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		const char *s = tokens[i];
		char *end;
		long v = isdigit((unsigned char)*s) ? strtol(s, &end, 10) : -1;

		if (v < 0 || *end || v > 1023) {
			snprintf(err, errlen, "GPU '%.40s' is not a device index 0-1023 (UUID and MIG lists are not "
				 "supported)", s);
			return -1;
		}
		for (int j = 0; j < i; j++)
			if (index[j] == v) {
				snprintf(err, errlen, "GPU %ld is listed twice", v);
				return -1;
			}
		index[i] = (int)v;
	}
	return 0;
}

/* A GPU UUID as NVML prints it: "GPU-" or "MIG-" then hex digits and dashes. */
static bool uuid_ok(const char *s)
{
	size_t n = 0;

	if (strncmp(s, "GPU-", 4) && strncmp(s, "MIG-", 4))
		return false;
	for (s += 4; *s; s++, n++)
		if (!isxdigit((unsigned char)*s) && *s != '-')
			return false;
	return n >= 8 && n <= 64;
}

/* Tokens reach every task's CUDA_VISIBLE_DEVICES: a repeat would give two ranks one GPU. */
int mtp_gpu_tokens_check(char *const *tokens, int n, char *err, size_t errlen)
{
	int scratch[1];

	for (int i = 0; i < n; i++) {
		const char *s = tokens[i];
		if (!uuid_ok(s) && mtp_gpu_indices((char *const *)&tokens[i], 1, scratch, err, errlen)) {
			snprintf(err, errlen, "CUDA_VISIBLE_DEVICES token '%.60s' is not a device index 0-1023 or a "
				 "GPU UUID", s);
			return -1;
		}
		for (int j = 0; j < i; j++)
			if (!strcmp(tokens[j], s)) {
				snprintf(err, errlen, "CUDA_VISIBLE_DEVICES names GPU '%.60s' twice", s);
				return -1;
			}
	}
	return 0;
}

/* The CPUs a step's ranks are bound within: those of its allocated cores (ALLOC) that slurmstepd may use
 * (AFFINITY), into *within (malloc'd, "" when none is), and how many of ALLOC's CPUs it may not use into
 * *outside: where cgroups constrain the cores the two lists agree, elsewhere the affinity is wider. */
int mtp_cpus_within(const char *alloc, const char *affinity, char **within, int *outside)
{
	unsigned char *a = calloc(2, MTP_MAXCPU), *b;
	int rc = -1;

	*within = NULL;
	*outside = 0;
	if (!a)
		return -1;
	b = a + MTP_MAXCPU;
	if (mt_cpulist_parse(alloc, a, MTP_MAXCPU) < 0 || mt_cpulist_parse(affinity, b, MTP_MAXCPU) < 0)
		goto out;
	for (int i = 0; i < MTP_MAXCPU; i++) {
		*outside += a[i] && !b[i];
		a[i] &= b[i];
	}
	if (!(*within = malloc(MTP_MAXCPU * 6)))
		goto out;
	if (mt_cpulist_format(a, MTP_MAXCPU, *within, MTP_MAXCPU * 6) < 0) {
		free(*within);
		*within = NULL;
		goto out;
	}
	rc = 0;
out:
	free(a);
	return rc;
}
