/* node_print.c - `moetopo show` output: an `nvidia-smi topo -m` style matrix with legend, GPU and
 * NIC tables with rails; and the JSON form documented in doc/json-schema.md. */
#include <stdio.h>
#include <string.h>

#include "node_int.h"

static int n_rdma(const struct mt_node *n)
{
	int r = 0;
	while (r < n->n_nics && n->nics[r].rdma)
		r++;
	return r;
}

/* Relation of GPU g to column c (GPUs, then NICs); nodes built in memory may have no matrix. */
static enum mt_rel rel_at(const struct mt_node *n, int g, int c)
{
	return n->pcie ? n->pcie[g * (n->n_gpus + n->n_nics) + c] : MT_REL_UNKNOWN;
}

static void cell_gpu(const struct mt_node *n, int i, int j, char *buf, size_t len)
{
	double v = n->nvlink && i != j ? n->nvlink[i * n->n_gpus + j] : 0;
	if (v > 0)
		snprintf(buf, len, n->nvlink_is_bw ? "NV%.0fG" : "NV%.0f", v);
	else
		snprintf(buf, len, "%s", mt_rel_name(rel_at(n, i, j)));
}

static void nic_list(const struct mt_node *n, const struct mt_gpu *g, char *buf, size_t len)
{
	size_t u = 0;
	buf[0] = 0;
	for (int k = 0; k < g->n_nics && u < len; k++)
		u += (size_t)snprintf(buf + u, len - u, "%s%s", k ? "," : "", n->nics[g->nics[k]].name);
	if (!g->n_nics)
		snprintf(buf, len, "-");
}

void mt_node_print(const struct mt_node *n, FILE *f)
{
	int G = n->n_gpus, R = n_rdma(n);
	char c[32];
	fprintf(f, "Node %s%s%s: %d GPUs, %d RDMA NICs, %d NUMA nodes, %d cores, %d PUs\n\n",
		n->hostname[0] ? n->hostname : "", n->hostname[0] ? " from " : "", n->source, G, R, n->n_numa,
		n->n_cores, n->n_pus);
	if (G + R) {
		fprintf(f, "%-8s", "");
		for (int j = 0; j < G; j++)
			fprintf(f, " %-7s", (snprintf(c, sizeof(c), "GPU%d", j), c));
		for (int j = 0; j < R; j++)
			fprintf(f, " %-7s", (snprintf(c, sizeof(c), "NIC%d", j), c));
		fprintf(f, " %-16s %-5s %s\n", "CPU Affinity", "NUMA", "Rail");
		for (int i = 0; i < G; i++) {
			fprintf(f, "GPU%-5d", i);
			for (int j = 0; j < G; j++) {
				cell_gpu(n, i, j, c, sizeof(c));
				fprintf(f, " %-7s", c);
			}
			for (int j = 0; j < R; j++)
				fprintf(f, " %-7s", mt_rel_name(rel_at(n, i, G + j)));
			if (n->gpus[i].numa >= 0)
				snprintf(c, sizeof(c), "%d", n->gpus[i].numa);
			else
				snprintf(c, sizeof(c), "N/A");
			fprintf(f, " %-16s %-5s", n->gpus[i].cpuset[0] ? n->gpus[i].cpuset : "N/A", c);
			if (n->gpus[i].rail >= 0)
				fprintf(f, " %d\n", n->gpus[i].rail);
			else
				fprintf(f, " -\n");
		}
		for (int i = 0; i < R; i++) {
			fprintf(f, "NIC%-5d", i);
			for (int j = 0; j < G; j++)
				fprintf(f, " %-7s", mt_rel_name(rel_at(n, j, G + i)));
			for (int j = 0; j < R; j++)
				fprintf(f, " %-7s", i == j ? "X" : "");
			fprintf(f, "\n");
		}
		fprintf(f, "\nLegend:\n\n"
			"  X    = Self\n"
			"  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes\n"
			"  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node\n"
			"  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)\n"
			"  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)\n"
			"  PIX  = Connection traversing at most a single PCIe bridge\n"
			"  NV#  = Connection traversing a bonded set of # NVLinks\n"
			"  NV#G = NVLink bandwidth of # GB/s (from hwloc NVLinkBandwidth)\n");
		fprintf(f, "  NVLink: %s%s\n", n->nvlink ? "known" : "unknown (no NVML, no NVLink data in the file)",
			n->nvswitch ? ", GPUs connect through NVSwitch" : "");
	}
	if (R) {
		fprintf(f, "\nNIC Legend:\n\n");
		for (int i = 0; i < R; i++)
			fprintf(f, "  NIC%d: %s\n", i, n->nics[i].name);
	}
	if (G) {
		fprintf(f, "\n%-4s %-13s %-6s %-5s %-10s %-5s %-24s %s\n", "GPU", "PCI", "NUMA", "Rail", "CUDA",
			"NVML", "NICs", "Model");
		for (int i = 0; i < G; i++) {
			const struct mt_gpu *g = &n->gpus[i];
			char nl[256], r[16], nu[16];
			nic_list(n, g, nl, sizeof(nl));
			snprintf(r, sizeof(r), g->rail >= 0 ? "%d" : "-", g->rail);
			snprintf(nu, sizeof(nu), g->numa >= 0 ? "%d" : "N/A", g->numa);
			fprintf(f, "%-4d %-13s %-6s %-5s %-10s %-5s %-24s %s%s [%04x:%04x]%s\n", i, g->pci, nu, r,
				g->cuda[0] ? g->cuda : "-", g->nvml[0] ? g->nvml : "-", nl, g->model[0] ? g->model : "-", "",
				g->vendor, g->device, g->supported ? "" : " (unsupported: not NVIDIA)");
		}
	}
	if (n->n_nics) {
		fprintf(f, "\n%-4s %-16s %-13s %-5s %-11s %-5s %-5s %-16s %s\n", "NIC", "Name", "PCI", "NUMA",
			"Link", "Ports", "Rail", "Netdev", "Kind");
		for (int i = 0; i < n->n_nics; i++) {
			const struct mt_nic *x = &n->nics[i];
			char r[16], nu[16], id[16];
			snprintf(r, sizeof(r), x->rail >= 0 ? "%d" : "-", x->rail);
			snprintf(nu, sizeof(nu), x->numa >= 0 ? "%d" : "N/A", x->numa);
			snprintf(id, sizeof(id), x->rdma ? "NIC%d" : "-", i);
			fprintf(f, "%-4s %-16s %-13s %-5s %-11s %-5d %-5s %-16s %s\n", id, x->name, x->pci[0] ? x->pci : "-",
				nu, mt_link_layer_name(x->link), x->ports, r, x->netdev[0] ? x->netdev : "-",
				x->rdma ? "RDMA" : "plain (no RDMA, never a rail)");
		}
	}
	if (n->n_numa) {
		fprintf(f, "\n%-5s %s\n", "NUMA", "CPUs");
		for (int i = 0; i < n->n_numa; i++)
			fprintf(f, "%-5d %s\n", n->numa_os[i], n->numa_cpusets[i][0] ? n->numa_cpusets[i] : "(none)");
	}
}

static void jstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void jint_or_null(FILE *f, int v)
{
	if (v >= 0)
		fprintf(f, "%d", v);
	else
		fprintf(f, "null");
}

void mt_node_print_json(const struct mt_node *n, FILE *f)
{
	int G = n->n_gpus, cols = G + n->n_nics;
	fprintf(f, "{\n  \"schema\": \"moetopo-node/1\",\n  \"source\": ");
	jstr(f, n->source);
	fprintf(f, ",\n  \"hostname\": ");
	jstr(f, n->hostname);
	fprintf(f, ",\n  \"cpuset\": ");
	jstr(f, n->cpuset);
	fprintf(f, ",\n  \"cores\": %d,\n  \"pus\": %d,\n  \"numa\": [", n->n_cores, n->n_pus);
	for (int i = 0; i < n->n_numa; i++) {
		fprintf(f, "%s\n    {\"os_index\": %d, \"cpuset\": ", i ? "," : "", n->numa_os[i]);
		jstr(f, n->numa_cpusets[i]);
		fprintf(f, "}");
	}
	fprintf(f, "%s],\n  \"gpus\": [", n->n_numa ? "\n  " : "");
	for (int i = 0; i < G; i++) {
		const struct mt_gpu *g = &n->gpus[i];
		fprintf(f, "%s\n    {\"index\": %d, \"pci_bus_id\": ", i ? "," : "", g->index);
		jstr(f, g->pci);
		fprintf(f, ", \"vendor_id\": \"0x%04x\", \"device_id\": \"0x%04x\", \"model\": ", g->vendor, g->device);
		jstr(f, g->model);
		fprintf(f, ", \"supported\": %s, \"numa\": ", g->supported ? "true" : "false");
		jint_or_null(f, g->numa);
		fprintf(f, ", \"cpuset\": ");
		jstr(f, g->cpuset);
		fprintf(f, ", \"cuda\": ");
		jstr(f, g->cuda);
		fprintf(f, ", \"nvml\": ");
		jstr(f, g->nvml);
		fprintf(f, ", \"uuid\": ");
		jstr(f, g->uuid);
		fprintf(f, ", \"fabric\": ");
		if (g->has_fabric) {
			fprintf(f, "{\"cluster_uuid\": ");
			jstr(f, g->fabric_uuid);
			fprintf(f, ", \"clique\": %u}", g->clique);
		} else
			fprintf(f, "null");
		fprintf(f, ", \"nics\": [");
		for (int k = 0; k < g->n_nics; k++) {
			fprintf(f, "%s", k ? ", " : "");
			jstr(f, n->nics[g->nics[k]].name);
		}
		fprintf(f, "], \"rail\": ");
		jint_or_null(f, g->rail);
		fprintf(f, "}");
	}
	fprintf(f, "%s],\n  \"nics\": [", G ? "\n  " : "");
	for (int i = 0; i < n->n_nics; i++) {
		const struct mt_nic *x = &n->nics[i];
		fprintf(f, "%s\n    {\"index\": %d, \"name\": ", i ? "," : "", i);
		jstr(f, x->name);
		fprintf(f, ", \"pci_bus_id\": ");
		jstr(f, x->pci);
		fprintf(f, ", \"numa\": ");
		jint_or_null(f, x->numa);
		fprintf(f, ", \"link_layer\": \"%s\", \"rdma\": %s, \"netdev\": ", mt_link_layer_name(x->link),
			x->rdma ? "true" : "false");
		jstr(f, x->netdev);
		fprintf(f, ", \"ports\": %d, \"rail\": ", x->ports);
		jint_or_null(f, x->rail);
		fprintf(f, "}");
	}
	fprintf(f, "%s],\n  \"pcie\": [", n->n_nics ? "\n  " : "");
	for (int i = 0; i < G; i++) {
		fprintf(f, "%s\n    [", i ? "," : "");
		for (int j = 0; j < cols; j++)
			fprintf(f, "%s\"%s\"", j ? ", " : "", mt_rel_name(rel_at(n, i, j)));
		fprintf(f, "]");
	}
	fprintf(f, "%s],\n  \"nvlink\": ", G ? "\n  " : "");
	if (n->nvlink) {
		fprintf(f, "[");
		for (int i = 0; i < G; i++) {
			fprintf(f, "%s\n    [", i ? "," : "");
			for (int j = 0; j < G; j++)
				fprintf(f, "%s%g", j ? ", " : "", n->nvlink[i * G + j]);
			fprintf(f, "]");
		}
		fprintf(f, "%s]", G ? "\n  " : "");
	} else
		fprintf(f, "null");
	fprintf(f, ",\n  \"nvlink_unit\": %s,\n  \"nvswitch\": %s\n}\n",
		n->nvlink ? (n->nvlink_is_bw ? "\"GB/s\"" : "\"links\"") : "null", n->nvswitch ? "true" : "false");
}
