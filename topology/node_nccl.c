/* node_nccl.c - NCCL topology XML reader; temporary: not read yet. */
#include "node_int.h"
int mt_node_from_nccl_xml(const char *buf, size_t len, const char *source, struct mt_node **out,
			  char *err, size_t errlen)
{
	(void)buf, (void)len, (void)out;
	return mt_seterr(err, errlen, MT_EPARSE, "%s: NCCL topology XML is not supported yet", source);
}
