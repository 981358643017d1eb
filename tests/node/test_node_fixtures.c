/* test_node_fixtures.c - the node model on every captured topology in tests/fixtures/.
 *
 * Expected values were derived by reading the files, not by running the code:
 *  - GPUs: PCI objects whose pci_type class is 03xx (display/3D) or 1200 (accelerator), minus BMC
 *    VGA (ASPEED 1a03, Matrox 102b); `grep 'pci_type="03\|pci_type="12'` lists them, their bus ids
 *    give the PCI order.  NCCL files: <pci class="0x03....">.
 *  - NUMA of a GPU: the NUMANode under the same parent as the GPU's HostBridge
 *    (`lstopo-no-graphics -i FILE --no-caches` shows the tree); NCCL: the enclosing <cpu numaid>.
 *  - RDMA NICs: OpenFabrics OS devices (osdev_type 3 in 2.x files, 32 bit set in 3.x, "OpenFabrics"
 *    in lstopo); plain NICs: Net OS devices of PCI functions without one.  NCCL: one per <net>, or
 *    a class 0x0207 <pci> alone.
 *  - GPU -> NIC: from the lstopo tree; e.g. ipa20: GPU 4e:00.0 and mlx5_0/mlx5_1 (4d:00.0/.1) sit
 *    below one PCIe switch (PIX), mlx5_2 (5e) with GPU 5f, mlx5_3 (da) with GPU db; GPU cb has no
 *    NIC on its host bridge, so it gets the one NIC left over (mlx5_1, balanced: 4 NICs, 4 GPUs).
 *  - NVLink: present when the file has a NVLinkBandwidth distances matrix (hwloc) or <nvlink>
 *    elements (NCCL); ipa20 says 150000 MB/s between each GPU pair; DGX-2 gives 6 x 25000 MB/s from
 *    each GPU to NVSwitches; GB300MP says count="18" to tclass 0x068000 (NVSwitch).
 * Each fixture's summary is compared field by field with what the file says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mt_node.h"
#include "tap.h"

struct expect {
	const char *file;
	int gpus, supported, rdma, plain, numa;
	const char *gpu_numa;  /* "pci@numa ..." in GPU (PCI) order */
	const char *rails;     /* "rail:nic,nic | ..." per GPU, closest NIC first */
	const char *row0;      /* PCIe relations of GPU0 to GPUs, then RDMA NICs */
	const char *nvlink;    /* "none", "GB/s <gpu0->gpu1>", "links <gpu0->gpu1>" (+ " nvswitch") */
};

static const struct expect fixtures[] = {
	/* GB200 tray: 4x 10de:2941 (0302), 16 EFA (OpenFabrics rdmapNNs0), 9 ENA/plain netdevs; each GPU
	 * shares a switch with 2 EFAs (PIX) and gets 2 more of the same socket (16 NICs / 4 GPUs). */
	{"hwloc/aws-ofi-nccl__p6e-gb200.36xlarge__topology.xml", 4, 4, 16, 9, 2,
	 "0000:29:00.0@0 0000:3f:00.0@0 0000:9c:00.0@1 0000:b2:00.0@1",
	 "0:rdmap39s0,rdmap40s0,rdmap54s0,rdmap76s0 | 1:rdmap61s0,rdmap62s0,rdmap55s0,rdmap77s0 | "
	 "2:rdmap154s0,rdmap155s0,rdmap169s0,rdmap191s0 | 3:rdmap176s0,rdmap177s0,rdmap170s0,rdmap192s0",
	 "X NODE SYS SYS PIX PIX NODE NODE NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS", "none"},
	/* El Capitan: 4x MI300A (1002:74a0, class 1200): listed, unsupported; Slingshot hsiN are Net only */
	{"hwloc/flux-core__elcap.xml", 4, 0, 0, 5, 4, "0000:02:00.0@0 0001:02:00.0@1 0002:02:00.0@2 0003:02:00.0@3",
	 "-: | -: | -: | -:", "X SYS SYS SYS", "none"},
	{"hwloc/flux-core__ipa20.xml", 4, 4, 4, 2, 8, "0000:4e:00.0@3 0000:5f:00.0@1 0000:cb:00.0@7 0000:db:00.0@5",
	 "0:mlx5_0 | 1:mlx5_2 | 2:mlx5_1 | 3:mlx5_3", "X SYS SYS SYS PIX SYS PIX SYS", "GB/s 150"},
	/* hwloc 3.0 XML: 3x Tesla 10de:1094 + 1x Radeon 1002:6798; one mlx5_0 (osdev_type 48) */
	{"hwloc/hwloc-tests__32em64t-2n8c2t-pci-wholeio.xml", 4, 3, 1, 2, 2,
	 "0000:03:00.0@0 0000:83:00.0@1 0000:84:00.0@1 0000:84:00.1@1", "0:mlx5_0 | 0:mlx5_0 | 0:mlx5_0 | -:",
	 "X SYS SYS SYS SYS", "none"},
	/* DGX-2: 16 V100 (1db8), NVSwitch heterogeneous NVLinkBandwidth, no NIC kept in the export */
	{"hwloc/hwloc-tests__nvidiaDGX2.xml", 16, 16, 0, 0, 2,
	 "0000:34:00.0@0 0000:36:00.0@0 0000:39:00.0@0 0000:3b:00.0@0 0000:57:00.0@0 0000:59:00.0@0 "
	 "0000:5c:00.0@0 0000:5e:00.0@0 0000:b7:00.0@1 0000:b9:00.0@1 0000:bc:00.0@1 0000:be:00.0@1 "
	 "0000:e0:00.0@1 0000:e2:00.0@1 0000:e5:00.0@1 0000:e7:00.0@1",
	 "-: | -: | -: | -: | -: | -: | -: | -: | -: | -: | -: | -: | -: | -: | -: | -:",
	 "X PIX PXB PXB NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS", "GB/s 150 nvswitch"},
	/* Lassen (POWER9): NUMA os indexes 0 and 8; each socket has 2 GPUs and 2 mlx5 ports */
	{"hwloc/mpibind__coral-lassen.xml", 4, 4, 4, 2, 2, "0004:04:00.0@0 0004:05:00.0@0 0035:03:00.0@8 0035:04:00.0@8",
	 "0:mlx5_0 | 1:mlx5_1 | 2:mlx5_2 | 3:mlx5_3", "X PIX SYS SYS NODE NODE SYS SYS", "none"},
	/* two P100 and one mlx5_0 behind one switch: the NIC is shared */
	{"hwloc/mpibind__cts1-pascal.xml", 2, 2, 1, 2, 2, "0000:04:00.0@0 0000:07:00.0@0", "0:mlx5_0 | 0:mlx5_0",
	 "X PIX PIX", "none"},
	{"hwloc/mpibind__eas-tioga.xml", 8, 0, 0, 5, 4,
	 "0000:c1:00.0@3 0000:c6:00.0@3 0000:c9:00.0@1 0000:ce:00.0@1 0000:d1:00.0@0 0000:d6:00.0@0 "
	 "0000:d9:00.0@2 0000:de:00.0@2",
	 "-: | -: | -: | -: | -: | -: | -: | -:", "X NODE SYS SYS SYS SYS SYS SYS", "none"},
	/* g4dn.metal: 8 T4, one EFA (rdmap197s0) for all */
	{"hwloc/mpibind__g4dnmetal.xml", 8, 8, 1, 1, 2,
	 "0000:18:00.0@0 0000:19:00.0@0 0000:35:00.0@0 0000:36:00.0@0 0000:e7:00.0@1 0000:e8:00.0@1 "
	 "0000:f4:00.0@1 0000:f5:00.0@1",
	 "0:rdmap197s0 | 0:rdmap197s0 | 0:rdmap197s0 | 0:rdmap197s0 | 0:rdmap197s0 | 0:rdmap197s0 | "
	 "0:rdmap197s0 | 0:rdmap197s0",
	 "X PHB NODE NODE SYS SYS SYS SYS SYS", "none"},
	/* JURECA-DC: 4 A100 each with its HDR HCA on the same switch (03/04, 44/43, 84/83, c4/c3) */
	{"hwloc/psmgmt__topo.jrc0323.xml", 4, 4, 4, 2, 8, "0000:03:00.0@3 0000:44:00.0@1 0000:84:00.0@7 0000:c4:00.0@5",
	 "0:mlx5_0 | 1:mlx5_1 | 2:mlx5_2 | 3:mlx5_3", "X SYS SYS SYS PIX SYS SYS SYS", "none"},
	/* MeluXina (hwloc 1.x XML): 4 A100, 2 HDR HCAs (43 on NUMA 1, 83 on NUMA 7): two GPUs each */
	{"hwloc/psmgmt__topo.mel2001.xml", 4, 4, 2, 2, 8, "0000:03:00.0@3 0000:44:00.0@1 0000:84:00.0@7 0000:c3:00.0@5",
	 "0:mlx5_0 | 0:mlx5_0 | 1:mlx5_1 | 1:mlx5_1", "X SYS SYS SYS SYS SYS", "none"},
	/* p5.48xlarge NCCL file: 8 GPUs, each <pci> bridge holds one GPU and 4 EFA <net>s */
	{"nccl/aws-ofi-nccl__p5.48xl-topo__2026-05-79565c0e.xml", 8, 8, 32, 0, 1,
	 "0000:4f:00.0@0 0000:60:00.0@0 0000:70:00.0@0 0000:80:00.0@0 0000:90:00.0@0 0000:a0:00.0@0 "
	 "0000:b0:00.0@0 0000:c0:00.0@0",
	 "0:rdmap79s0,rdmap80s0,rdmap81s0,rdmap82s0 | 1:rdmap96s0,rdmap97s0,rdmap98s0,rdmap99s0 | "
	 "2:rdmap113s0,rdmap114s0,rdmap115s0,rdmap116s0 | 3:rdmap130s0,rdmap131s0,rdmap132s0,rdmap133s0 | "
	 "4:rdmap147s0,rdmap148s0,rdmap149s0,rdmap150s0 | 5:rdmap164s0,rdmap165s0,rdmap166s0,rdmap167s0 | "
	 "6:rdmap181s0,rdmap182s0,rdmap183s0,rdmap184s0 | 7:rdmap198s0,rdmap199s0,rdmap200s0,rdmap201s0",
	 "X PHB PHB PHB PHB PHB PHB PHB PIX PIX PIX PIX PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB "
	 "PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB PHB",
	 "none"},
	/* Azure NDv4: 2 GPUs + 2 IB HCAs (class 0x0207, no names: named by bus id) per virtual bridge */
	{"nccl/azhpc-images__ndv4-topo.xml", 8, 8, 8, 0, 4,
	 "0001:00:00.0@1 0002:00:00.0@1 0003:00:00.0@0 0004:00:00.0@0 000b:00:00.0@3 000c:00:00.0@3 "
	 "000d:00:00.0@2 000e:00:00.0@2",
	 "0:0101:00:00.0 | 1:0102:00:00.0 | 2:0103:00:00.0 | 3:0104:00:00.0 | 4:0105:00:00.0 | "
	 "5:0106:00:00.0 | 6:0107:00:00.0 | 7:0108:00:00.0",
	 "X PIX SYS SYS SYS SYS SYS SYS PIX PIX SYS SYS SYS SYS SYS SYS", "none"},
	/* GB300 (two hosts in one dump: the first host_hash is read): each GPU's NIC sits on the parent
	 * switch (PXB); kernel names rdma_vf_railN_dma do not follow PCI order, rails do. */
	{"nccl/oci-hpc__GB300MP.xml", 4, 4, 4, 0, 2, "0008:06:00.0@0 0009:06:00.0@0 0018:06:00.0@1 0019:06:00.0@1",
	 "0:rdma_vf_rail1_dma | 1:rdma_vf_rail0_dma | 2:rdma_vf_rail3_dma | 3:rdma_vf_rail2_dma",
	 "X PHB SYS SYS PXB PHB SYS SYS", "links 18 nvswitch"},
};

static void cat(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char *buf, size_t len, const char *fmt, ...)
{
	size_t u = strlen(buf);
	va_list ap;
	va_start(ap, fmt);
	if (u < len)
		vsnprintf(buf + u, len - u, fmt, ap);
	va_end(ap);
}

static void check(const struct expect *e)
{
	char path[1024], err[MT_ERRLEN], s[4096];
	struct mt_node *n = NULL;
	snprintf(path, sizeof(path), "%s/fixtures/%s", SRCDIR, e->file);
	int rc = mt_node_load_file(path, &n, err, sizeof(err));
	TAP_INT(rc, MT_OK, "%s: loads", e->file);
	if (rc < 0) {
		printf("#   %s\n", err);
		return;
	}
	int sup = 0, rdma = 0, plain = 0, G = n->n_gpus, cols = G + n->n_nics;
	for (int g = 0; g < G; g++)
		sup += n->gpus[g].supported;
	for (int c = 0; c < n->n_nics; c++)
		n->nics[c].rdma ? rdma++ : plain++;
	TAP_INT(G, e->gpus, "%s: GPU count", e->file);
	TAP_INT(sup, e->supported, "%s: supported (NVIDIA) GPUs", e->file);
	TAP_INT(rdma, e->rdma, "%s: RDMA NIC count", e->file);
	TAP_INT(plain, e->plain, "%s: plain NIC count", e->file);
	TAP_INT(n->n_numa, e->numa, "%s: NUMA nodes", e->file);
	s[0] = 0;
	for (int g = 0; g < G; g++)
		cat(s, sizeof(s), "%s%s@%d", g ? " " : "", n->gpus[g].pci, n->gpus[g].numa);
	TAP_STR(s, e->gpu_numa, "%s: GPUs in PCI order with their NUMA node", e->file);
	s[0] = 0;
	for (int g = 0; g < G; g++) {
		if (n->gpus[g].rail >= 0)
			cat(s, sizeof(s), "%s%d:", g ? " | " : "", n->gpus[g].rail);
		else
			cat(s, sizeof(s), "%s-:", g ? " | " : "");
		for (int k = 0; k < n->gpus[g].n_nics; k++)
			cat(s, sizeof(s), "%s%s", k ? "," : "", n->nics[n->gpus[g].nics[k]].name);
	}
	TAP_STR(s, e->rails, "%s: GPU -> NIC(s) and rails", e->file);
	s[0] = 0;
	for (int j = 0; G && j < G + rdma; j++)
		cat(s, sizeof(s), "%s%s", j ? " " : "", mt_rel_name(n->pcie[j]));
	TAP_STR(s, e->row0, "%s: PCIe relations of GPU0", e->file);
	s[0] = 0;
	if (!n->nvlink)
		cat(s, sizeof(s), "none");
	else
		cat(s, sizeof(s), "%s %g", n->nvlink_is_bw ? "GB/s" : "links", G > 1 ? n->nvlink[1] : 0);
	if (n->nvswitch)
		cat(s, sizeof(s), " nvswitch");
	TAP_STR(s, e->nvlink, "%s: NVLink", e->file);
	/* invariants every node keeps */
	int ok = 1;
	for (int g = 0; g < G; g++) {
		ok &= n->gpus[g].index == g && n->gpus[g].cpuset != NULL;
		ok &= n->pcie[g * cols + g] == MT_REL_X;
		for (int h = 0; h < G; h++)
			ok &= n->pcie[g * cols + h] == n->pcie[h * cols + g];
		for (int k = 0; k < n->gpus[g].n_nics; k++)
			ok &= n->nics[n->gpus[g].nics[k]].rdma && n->nics[n->gpus[g].nics[k]].rail == n->gpus[g].rail;
	}
	for (int c = 1; c < n->n_nics; c++)
		ok &= !(n->nics[c].rdma && !n->nics[c - 1].rdma); /* RDMA first */
	tap_ok(ok, "%s: invariants (index, symmetric PCIe, rails consistent, RDMA NICs first)", e->file);
	mt_node_free(n);
}

int main(void)
{
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		check(&fixtures[i]);
	return tap_done();
}
