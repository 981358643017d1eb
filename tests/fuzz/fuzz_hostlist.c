/* fuzz_hostlist.c - Slurm hostlist expressions (mt_hostlist_expand), as SLURM_NODELIST, --nodes and
 * domain maps give them.  The expansion must stay within the documented caps. */
#include "fuzz.h"
#include "mt_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_str(data, size), err[MT_ERRLEN], **names = NULL;
	int n = 0;
	if (mt_hostlist_expand(text, &names, &n, err, sizeof(err)) == 0) {
		if (n < 1 || n > MT_HOSTLIST_MAX_NAMES)
			abort();
		for (int i = 0; i < n; i++)
			if (!names[i][0])
				abort();
		mt_hostlist_free(names, n);
	} else if (!err[0] || names)
		abort();
	free(text);
	return 0;
}
