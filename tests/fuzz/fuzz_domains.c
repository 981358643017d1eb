/* fuzz_domains.c - NVLink domain maps (mt_domains_load): Slurm topology.conf in block or tree syntax,
 * or a two-column "node domain" file.  Every mapped node must resolve to a domain. */
#include "fuzz.h"
#include "mt_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[MT_ERRLEN];
	int fd = fuzz_file(data, size, path, sizeof(path));
	struct mt_domains *d = NULL;
	if (mt_domains_load(path, &d, err, sizeof(err)) == 0) {
		if (mt_domains_nodes(d) < 1 || mt_domains_count(d) < 1)
			abort();
		mt_domains_free(d);
	} else if (!err[0] || d)
		abort();
	close(fd);
	return 0;
}
