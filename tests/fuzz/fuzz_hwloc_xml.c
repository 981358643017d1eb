/* fuzz_hwloc_xml.c - a cached hwloc XML topology (topology=PATH, moetopo show --input): the strict
 * pre-check (node_xml.c) and then hwloc itself, as mt_node_load_file reads a <topology> file. */
#include "fuzz.h"
#include "node_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memchr(data, 0, size))
		return 0; /* mt_node_load_file refuses binary data before any parser sees it */
	char *buf = fuzz_str(data, size), err[MT_ERRLEN];
	struct mt_node *n = NULL;
	if (mt_node_from_hwloc_xml(buf, size, "fuzz.xml", &n, err, sizeof(err)) == 0) {
		if (!n || n->n_gpus < 0 || n->n_nics < 0)
			abort();
		mt_node_free(n);
	} else if (!err[0] || n)
		abort();
	free(buf);
	return 0;
}
