/* node_int.h - helpers shared by the node-model sources (not installed, not part of the API).
 *
 * The loaders (hwloc, NCCL XML) fill GPUs (sorted by PCI bus id), NICs in any order and the PCIe
 * relation matrix; mt_node_finish() then assigns rails and puts the NICs in rail order.
 */
#ifndef MT_NODE_INT_H
#define MT_NODE_INT_H

#include "mt_common.h"
#include "mt_node.h"

#define MT_MAXCPU 8192 /* cpu lists beyond this are refused as corrupt */


/* Parses "dddd:bb:dd.f" (or "bb:dd.f") into a comparable key; -1 when malformed. */
long long mt_pci_key(const char *pci);
/* Normalizes a PCI id to lower case "dddd:bb:dd.f"; false when malformed. */
bool mt_pci_norm(const char *in, char out[MT_PCI_LEN]);

/* A display controller that nvidia-smi would not count as a GPU: the VGA of a server's BMC (ASPEED,
 * Matrox, Huawei iBMC, HPE iLO) or of a virtual machine (Amazon EC2, QEMU/Bochs, Cirrus, VMware, QXL,
 * virtio, Hyper-V).  class_id is the 16-bit PCI class (0x0300 = VGA); compute GPUs of any vendor
 * (0x0302 3D, 0x0380, 0x12xx accelerators, or a VGA of a GPU vendor) are not display-only. */
bool mt_pci_display_only(unsigned vendor, unsigned class_id);
/* Sorts GPUs by PCI id (permuting nothing else: call before the pcie matrix exists). */
void mt_sort_gpus(struct mt_node *n);
/* Assigns GPU -> NIC rails from n->pcie, reorders NICs (RDMA in rail order, then plain)
 * and the pcie columns to match. */
int mt_node_finish(struct mt_node *n, char *err, size_t errlen);

/* hwloc-based loaders (node_hwloc.c). */
int mt_node_from_hwloc_xml(const char *buf, size_t len, const char *source, struct mt_node **out,
			   char *err, size_t errlen);
/* node_xml.c: strict XML tokenizer.  mt_xml_parse builds a tree into *root, or with root == NULL
 * only checks the document; either way it calls cb (when set) for every element once its attributes
 * are read (children not yet).  Errors: MT_EPARSE with "SRC: line N: what (not a valid KIND)". */
#define MT_XML_MAX_ATTR 40
#define MT_XML_MAX_DEPTH 64
struct mt_xel {
	char tag[32];
	int line;
	int nattr;
	char *an[MT_XML_MAX_ATTR], *av[MT_XML_MAX_ATTR];
	struct mt_xel *parent, *first, *last, *next;
};
struct mt_xml {
	const char *p, *end, *src, *kind; /* input, its name and what it should be (for errors) */
	const char *text_in;              /* " tag tag ": elements that may hold text (check mode only) */
	int line, nel;
	int max_elems;                    /* 0: the default cap (1,000,000) */
	char *err;
	size_t errlen;
	int (*cb)(struct mt_xml *x, const struct mt_xel *e);
	void *ctx;
	char *arena; /* check mode: attribute storage, reset per element (set by mt_xml_parse) */
	size_t arena_len, arena_used;
};
int mt_xml_parse(struct mt_xml *x, struct mt_xel **root);
void mt_xml_free(struct mt_xel *e);
void mt_xml_free_attrs(struct mt_xel *e);
const char *mt_xml_attr(const struct mt_xel *e, const char *name);
int mt_xml_err(struct mt_xml *x, const char *what);
/* NCCL topology XML (node_nccl.c). */
int mt_node_from_nccl_xml(const char *buf, size_t len, const char *source, struct mt_node **out,
			  char *err, size_t errlen);
/* NVML (node_nvml.c): adds NVLink, UUIDs and fabric info to a live node; returns 0 when NVML is
 * absent (nothing changed), <0 only on allocation failure. */
int mt_nvml_fill(struct mt_node *n);
/* libibverbs/sysfs (node_nics.c): fills link layer/ports of RDMA NICs from the live machine. */
void mt_nics_fill_live(struct mt_node *n);

#ifdef MT_HWLOC_DLOPEN
/* node_hwloc_dl.c (the plugin's build): opens libhwloc on first use; MT_ENOENT with one line when the
 * node has none. */
int mt_hwloc_open(char *err, size_t errlen);
#endif

#endif
