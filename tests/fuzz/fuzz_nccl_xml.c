/* fuzz_nccl_xml.c - an NCCL topology XML (NCCL_TOPO_FILE format), as mt_node_load_file reads a
 * <system> file: the tree builder, the schema check and the mapping to the node model. */
#include "fuzz.h"
#include "node_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memchr(data, 0, size))
		return 0; /* refused as binary data before parsing */
	char *buf = fuzz_str(data, size), err[MT_ERRLEN];
	struct mt_node *n = NULL;
	if (mt_node_from_nccl_xml(buf, size, "fuzz.xml", &n, err, sizeof(err)) == 0) {
		if (!n || (!n->n_gpus && !n->n_nics))
			abort();
		mt_node_free(n);
	} else if (!err[0] || n)
		abort();
	free(buf);
	return 0;
}
