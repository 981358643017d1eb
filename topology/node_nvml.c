/* node_nvml.c - NVLink and fabric facts from NVML (dlopen'ed); temporary: NVML not read yet. */
#include "node_int.h"
int mt_nvml_fill(struct mt_node *n) { (void)n; return 0; }
