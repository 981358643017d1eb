/* test_node_api.c - node-model API: cpu lists, subset, bad inputs (missing, corrupt, truncated,
 * no PCI, unknown NCCL attributes) and the live machine. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hwloc.h>

#include "mt_node.h"
#include "tap.h"
#include "slurp.h"

static char tmpdir[256];

static const char *write_tmp(const char *name, const char *data, size_t len)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(data, 1, len, f);
		fclose(f);
	}
	return path;
}

/* one line, names the file, no newline inside */
static int one_line(const char *err, const char *must)
{
	return err[0] && !strchr(err, '\n') && strstr(err, must) != NULL;
}

static void test_cpulist(void)
{
	unsigned char m[64];
	char buf[64];
	TAP_INT(mt_cpulist_parse("0-3,8,10-11", m, 64), 7, "cpulist parse counts CPUs");
	tap_ok(m[0] && m[3] && !m[4] && m[8] && !m[9] && m[11], "cpulist parse sets the right CPUs");
	TAP_INT(mt_cpulist_format(m, 64, buf, sizeof(buf)), 11, "cpulist format length");
	TAP_STR(buf, "0-3,8,10-11", "cpulist round trip");
	TAP_INT(mt_cpulist_parse("", m, 64), 0, "empty list is zero CPUs");
	TAP_INT(mt_cpulist_parse("3-1", m, 64), MT_EPARSE, "reversed range rejected");
	TAP_INT(mt_cpulist_parse("64", m, 64), MT_EPARSE, "CPU beyond maxcpu rejected");
	TAP_INT(mt_cpulist_parse("1,,2", m, 64), MT_EPARSE, "empty item rejected");
	TAP_INT(mt_cpulist_parse("a", m, 64), MT_EPARSE, "garbage rejected");
	mt_cpulist_parse("0-63", m, 64);
	TAP_INT(mt_cpulist_format(m, 64, buf, 4), MT_ENOMEM, "format into a too small buffer fails");
}

static void test_subset(void)
{
	char path[512], err[MT_ERRLEN];
	struct mt_node *n = NULL, *s = NULL;
	snprintf(path, sizeof(path), "%s/fixtures/hwloc/flux-core__ipa20.xml", SRCDIR);
	if (mt_node_load_file(path, &n, err, sizeof(err)) < 0) {
		tap_ok(0, "ipa20 loads for subset: %s", err);
		return;
	}
	/* GPUs listed out of order and in upper case: the subset keeps PCI order */
	const char *pick[] = {"0000:DB:00.0", "0000:5f:00.0"};
	TAP_INT(mt_node_subset(n, pick, 2, &s, err, sizeof(err)), MT_OK, "subset of two GPUs");
	if (s) {
		TAP_INT(s->n_gpus, 2, "subset GPU count");
		TAP_STR(s->gpus[0].pci, "0000:5f:00.0", "subset keeps PCI order (first)");
		TAP_STR(s->gpus[1].pci, "0000:db:00.0", "subset keeps PCI order (second)");
		TAP_INT(s->gpus[0].rail, 1, "subset keeps the rail of GPU 5f (rail 1)");
		TAP_INT(s->gpus[1].rail, 3, "subset keeps the rail of GPU db (rail 3)");
		TAP_STR(s->nics[s->gpus[1].nics[0]].name, "mlx5_3", "subset keeps NIC indices");
		TAP_INT(s->n_nics, n->n_nics, "subset keeps all NICs");
		int cols = 2 + s->n_nics, ocols = n->n_gpus + n->n_nics;
		TAP_INT(s->pcie[0 * cols + 1], n->pcie[1 * ocols + 3], "subset PCIe GPU-GPU cell");
		TAP_INT(s->pcie[1 * cols + 2], n->pcie[3 * ocols + 4], "subset PCIe GPU-NIC cell");
		tap_ok(s->nvlink && s->nvlink[1] == n->nvlink[1 * 4 + 3], "subset NVLink cell");
		TAP_INT(s->gpus[1].index, 1, "subset renumbers index");
		mt_node_free(s);
	}
	const char *bad[] = {"0000:99:00.0"};
	s = (struct mt_node *)1;
	TAP_INT(mt_node_subset(n, bad, 1, &s, err, sizeof(err)), MT_EINVAL, "subset with a GPU not on the node");
	tap_ok(s == NULL && one_line(err, "0000:4e:00.0"), "error lists the valid GPUs: %s", err);
	const char *twice[] = {"0000:4e:00.0", "0000:4e:00.0"};
	TAP_INT(mt_node_subset(n, twice, 2, &s, err, sizeof(err)), MT_EINVAL, "subset listing a GPU twice");
	TAP_INT(mt_node_subset(n, NULL, 0, &s, err, sizeof(err)), MT_OK, "empty subset");
	if (s)
		TAP_INT(s->n_gpus, 0, "empty subset has no GPUs");
	mt_node_free(s);
	mt_node_free(n);
}

/* Slurm's allocated cores (S_STEP_ALLOC_CORES) to CPUs: by the topology's own cores, in hwloc's logical order */
static void test_core_cpus(void)
{
	char path[512], err[MT_ERRLEN], *cpus = NULL;
	struct mt_node *n = NULL, *s = NULL, *nccl = NULL;

	snprintf(path, sizeof(path), "%s/fixtures/hwloc/flux-core__ipa20.xml", SRCDIR);
	if (mt_node_load_file(path, &n, err, sizeof(err)) < 0) {
		tap_ok(0, "ipa20 loads for cores: %s", err);
		return;
	}
	/* ipa20: 112 cores of 2 hardware threads, core c = CPUs c and c+112 */
	TAP_INT(mt_node_core_cpus(n, "0-3,8-11", &cpus, err, sizeof(err)), MT_OK, "cores 0-3,8-11 of ipa20");
	TAP_STR(cpus, "0-3,8-11,112-115,120-123", "their CPUs are both threads of each core");
	free(cpus);
	TAP_INT(mt_node_core_cpus(n, "111", &cpus, err, sizeof(err)), MT_OK, "the last core");
	TAP_STR(cpus, "111,223", "the last core's CPUs");
	free(cpus);
	TAP_INT(mt_node_core_cpus(n, "", &cpus, err, sizeof(err)), MT_EPARSE, "an empty core list is refused");
	tap_ok(!cpus && one_line(err, "empty") && strstr(err, "0-3,8-11"), "one line naming the valid form: %s", err);
	TAP_INT(mt_node_core_cpus(n, "0-3,x", &cpus, err, sizeof(err)), MT_EPARSE, "a malformed core list is refused");
	tap_ok(!cpus && one_line(err, "'0-3,x'") && strstr(err, "0-3,8-11"), "one line naming it and the valid form: %s", err);
	TAP_INT(mt_node_core_cpus(n, "3-1", &cpus, err, sizeof(err)), MT_EPARSE, "a reversed range is refused");
	TAP_INT(mt_node_core_cpus(n, "100-112", &cpus, err, sizeof(err)), MT_EPARSE, "a core the node lacks is refused");
	tap_ok(!cpus && one_line(err, "core 112 is not on") && strstr(err, "0-111"), "one line naming it and the node's cores: %s", err);
	const char *pick[] = {"0000:5f:00.0"};
	if (mt_node_subset(n, pick, 1, &s, err, sizeof(err)) == MT_OK) {
		TAP_INT(mt_node_core_cpus(s, "5", &cpus, err, sizeof(err)), MT_OK, "a GPU subset keeps the cores");
		TAP_STR(cpus, "5,117", "the subset's core 5");
		free(cpus);
		mt_node_free(s);
	} else
		tap_ok(0, "subset for cores: %s", err);
	mt_node_free(n);

	/* lassen (POWER9, 4 threads a core): the first core hwloc lists is CPUs 8-11, not CPU 0 */
	snprintf(path, sizeof(path), "%s/fixtures/hwloc/mpibind__coral-lassen.xml", SRCDIR);
	if (mt_node_load_file(path, &n, err, sizeof(err)) == MT_OK) {
		TAP_INT(mt_node_core_cpus(n, "0,1", &cpus, err, sizeof(err)), MT_OK, "cores 0,1 of lassen");
		TAP_STR(cpus, "8-15", "by the topology's cores, not by CPU number");
		free(cpus);
		mt_node_free(n);
	} else
		tap_ok(0, "lassen loads: %s", err);
	/* an NCCL topology lists CPUs only: core numbers mean nothing there */
	snprintf(path, sizeof(path), "%s/fixtures/nccl/azhpc-images__ndv4-topo.xml", SRCDIR);
	if (mt_node_load_file(path, &nccl, err, sizeof(err)) == MT_OK) {
		TAP_INT(mt_node_core_cpus(nccl, "0-3", &cpus, err, sizeof(err)), MT_EINVAL, "no cores in an NCCL topology");
		tap_ok(!cpus && one_line(err, "gives no cores"), "one line saying so: %s", err);
		mt_node_free(nccl);
	} else
		tap_ok(0, "ndv4 loads: %s", err);
}

static void test_bad_files(void)
{
	char err[MT_ERRLEN], path[512];
	struct mt_node *n = (struct mt_node *)1;
	TAP_INT(mt_node_load_file("/nonexistent/topo.xml", &n, err, sizeof(err)), MT_ENOENT, "missing file");
	tap_ok(n == NULL && one_line(err, "/nonexistent/topo.xml"), "missing file: one line naming it: %s", err);
	const char *p = write_tmp("empty.xml", "", 0);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_EPARSE, "empty file");
	p = write_tmp("garbage.xml", "\x7f" "ELF\x01\x02", 6);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_EPARSE, "binary garbage");
	p = write_tmp("other.xml", "<?xml version=\"1.0\"?>\n<html><body/></html>\n", 43);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_EPARSE, "XML of another kind");
	tap_ok(one_line(err, "<html>"), "names the unknown root: %s", err);
	static const char corrupt[] = "<?xml version=\"1.0\"?>\n<topology version=\"2.0\">\n <object type=\"Machine\" "
				      "os_index=\"0\" cpuset=\"zz\">\n</topology>\n";
	p = write_tmp("corrupt.xml", corrupt, sizeof(corrupt) - 1);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_EPARSE, "corrupt hwloc XML");
	tap_ok(one_line(err, "corrupt.xml"), "corrupt hwloc XML: one line: %s", err);
	TAP_INT(mt_node_load_file(tmpdir, &n, err, sizeof(err)), MT_EPARSE, "a directory is refused");

	/* hwloc XML without I/O objects, exported by real hwloc from this machine */
	hwloc_topology_t t;
	hwloc_topology_init(&t);
	hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
	hwloc_topology_load(t);
	snprintf(path, sizeof(path), "%s/noio.xml", tmpdir);
	hwloc_topology_export_xml(t, path, 0);
	hwloc_topology_destroy(t);
	TAP_INT(mt_node_load_file(path, &n, err, sizeof(err)), MT_ENOPCI, "hwloc XML with no PCI objects");
	tap_ok(one_line(err, "no PCI objects"), "no PCI: one line: %s", err);

	/* NCCL: unknown attribute, unknown element, bad busid, truncated */
	static const char unk_attr[] = "<system version=\"1\">\n <cpu numaid=\"0\" affinity=\"f\">\n"
				       "  <pci busid=\"0000:01:00.0\" class=\"0x030200\" colour=\"red\"/>\n </cpu>\n</system>\n";
	p = write_tmp("unk_attr.xml", unk_attr, sizeof(unk_attr) - 1);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_EPARSE, "NCCL XML with an unknown attribute");
	tap_ok(one_line(err, "line 3: unknown attribute 'colour' on <pci>"), "names attribute and line: %s", err);
	static const char unk_el[] = "<system version=\"1\"><cpu numaid=\"0\"><gpux/></cpu></system>";
	p = write_tmp("unk_el.xml", unk_el, sizeof(unk_el) - 1);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_EPARSE, "NCCL XML with an unknown element");
	tap_ok(one_line(err, "unknown element <gpux>"), "names the element: %s", err);
	static const char bad_bus[] = "<system version=\"1\"><cpu numaid=\"0\"><pci busid=\"zz\" class=\"0x030200\"/></cpu></system>";
	p = write_tmp("bad_bus.xml", bad_bus, sizeof(bad_bus) - 1);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_EPARSE, "NCCL XML with a bad busid");
	static const char nopci[] = "<system version=\"1\"><cpu numaid=\"0\" affinity=\"ff\"/></system>";
	p = write_tmp("nopci.xml", nopci, sizeof(nopci) - 1);
	TAP_INT(mt_node_load_file(p, &n, err, sizeof(err)), MT_ENOPCI, "NCCL XML without devices");
	tap_ok(n == NULL, "no node is returned on error");
}

/* Rails on a constructed NCCL file: one PCIe switch with 2 GPUs and 4 NICs (2 distinct NICs per GPU),
 * then the same PCI layout with the kernel's mlx5 numbering shuffled (same rails by PCI address). */
static const char two_gpus_four_nics[] =
	"<system version=\"1\">\n"
	" <cpu numaid=\"0\" affinity=\"0000ffff\">\n"
	"  <pci busid=\"0000:10:00.0\" class=\"0x060400\">\n"
	"   <pci busid=\"0000:11:00.0\" class=\"0x030200\"><gpu dev=\"0\" sm=\"90\"/></pci>\n"
	"   <pci busid=\"0000:12:00.0\" class=\"0x030200\"><gpu dev=\"1\" sm=\"90\"/></pci>\n"
	"   <pci busid=\"0000:13:00.0\" class=\"0x020700\"><nic><net name=\"%s\" port=\"1\"/></nic></pci>\n"
	"   <pci busid=\"0000:14:00.0\" class=\"0x020700\"><nic><net name=\"%s\" port=\"1\"/></nic></pci>\n"
	"   <pci busid=\"0000:15:00.0\" class=\"0x020700\"><nic><net name=\"%s\" port=\"1\"/></nic></pci>\n"
	"   <pci busid=\"0000:16:00.0\" class=\"0x020700\"><nic><net name=\"%s\" port=\"1\"/></nic></pci>\n"
	"  </pci>\n"
	" </cpu>\n"
	"</system>\n";

static struct mt_node *load_rails(const char *a, const char *b, const char *c, const char *d)
{
	char xml[2048], err[MT_ERRLEN];
	int len = snprintf(xml, sizeof(xml), two_gpus_four_nics, a, b, c, d);
	struct mt_node *n = NULL;
	if (mt_node_load_file(write_tmp("rails.xml", xml, (size_t)len), &n, err, sizeof(err)) < 0)
		printf("#   %s\n", err);
	return n;
}

static void test_rails(void)
{
	struct mt_node *n = load_rails("mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3");
	struct mt_node *m = load_rails("mlx5_3", "mlx5_0", "mlx5_2", "mlx5_1");
	if (!n || !m) {
		tap_ok(0, "constructed rail files load");
		mt_node_free(n), mt_node_free(m);
		return;
	}
	TAP_INT(n->gpus[0].n_nics, 2, "2 GPUs + 4 NICs on one switch: GPU0 gets 2 NICs");
	TAP_INT(n->gpus[1].n_nics, 2, "GPU1 gets 2 NICs");
	int distinct = 1;
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++)
			distinct &= n->gpus[0].nics[i] != n->gpus[1].nics[j];
	tap_ok(distinct, "the two GPUs share no NIC");
	TAP_INT(n->gpus[0].rail, 0, "GPU0 rail 0");
	TAP_INT(n->gpus[1].rail, 1, "GPU1 rail 1");
	TAP_STR(n->nics[n->gpus[0].nics[0]].pci, "0000:13:00.0", "GPU0's first NIC is the first on the bus");
	int same = 1;
	for (int g = 0; g < 2; g++)
		for (int k = 0; k < 2; k++)
			same &= !strcmp(n->nics[n->gpus[g].nics[k]].pci, m->nics[m->gpus[g].nics[k]].pci) &&
				n->gpus[g].rail == m->gpus[g].rail;
	tap_ok(same, "renumbered mlx5 names: same NICs (by PCI address) and rails per GPU");
	TAP_STR(m->nics[m->gpus[0].nics[0]].name, "mlx5_3", "the names follow the devices, not the rails");
	mt_node_free(n);
	mt_node_free(m);
}

/* Every prefix of a real file at many cut points, and bytes overwritten at many places: loading
 * must fail cleanly (or succeed) and never crash or leak (the sanitizer build checks). */
static void fuzz(const char *rel, int steps)
{
	char path[512], err[MT_ERRLEN];
	size_t len;
	snprintf(path, sizeof(path), "%s/fixtures/%s", SRCDIR, rel);
	char *buf = slurp(path, &len);
	if (!buf) {
		tap_ok(0, "read %s", rel);
		return;
	}
	int fails = 0, oks = 0, bad = 0;
	for (int i = 1; i < steps; i++) {
		size_t cut = len * (size_t)i / (size_t)steps;
		struct mt_node *n = NULL;
		const char *p = write_tmp("cut.xml", buf, cut);
		int rc = mt_node_load_file(p, &n, err, sizeof(err));
		if (rc == MT_OK)
			oks++;
		else if ((rc == MT_EPARSE || rc == MT_ENOPCI) && !n && err[0] && !strchr(err, '\n'))
			fails++;
		else
			bad++;
		mt_node_free(n);
	}
	TAP_INT(bad, 0, "%s: %d truncations fail with one clear error or load (%d failed, %d loaded)", rel,
		steps - 1, fails, oks);
	bad = 0;
	for (int i = 1; i < steps; i++) {
		char *c = malloc(len + 1);
		memcpy(c, buf, len + 1);
		size_t at = len * (size_t)i / (size_t)steps;
		memcpy(c + at, "<\"'>&", len - at < 5 ? len - at : 5);
		struct mt_node *n = NULL;
		const char *p = write_tmp("mangled.xml", c, len);
		int rc = mt_node_load_file(p, &n, err, sizeof(err));
		if (rc < 0 && (n || !err[0] || strchr(err, '\n')))
			bad++;
		mt_node_free(n);
		free(c);
	}
	TAP_INT(bad, 0, "%s: %d corruptions never crash and report one line", rel, steps - 1);
	/* single bytes replaced or removed: well-formed but wrong values, names and types */
	bad = 0;
	static const char reps[] = "z9-";
	for (int i = 1; i < steps; i++)
		for (int r = 0; r < 4; r++) {
			char *c = malloc(len + 1);
			memcpy(c, buf, len + 1);
			size_t at = len * (size_t)i / (size_t)steps, clen = len;
			if (r < 3)
				c[at] = reps[r];
			else
				memmove(c + at, c + at + 1, len - at), clen--;
			struct mt_node *n = NULL;
			const char *p = write_tmp("byte.xml", c, clen);
			int rc = mt_node_load_file(p, &n, err, sizeof(err));
			if (rc < 0 && (n || !err[0] || strchr(err, '\n')))
				bad++;
			mt_node_free(n);
			free(c);
		}
	TAP_INT(bad, 0, "%s: %d single-byte changes never crash and report one line", rel, (steps - 1) * 4);
	free(buf);
}

/* NVIDIA display/3D controllers in sysfs, the ground truth for the live GPU count. */
static int sysfs_gpus(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	int count = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));) {
		char p[512], v[32] = "", c[32] = "";
		FILE *f;
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		if ((f = fopen(p, "r"))) {
			if (!fgets(v, sizeof(v), f))
				v[0] = 0;
			fclose(f);
		}
		snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/class", e->d_name);
		if ((f = fopen(p, "r"))) {
			if (!fgets(c, sizeof(c), f))
				c[0] = 0;
			fclose(f);
		}
		count += !strncmp(v, "0x10de", 6) && !strncmp(c, "0x03", 4);
	}
	closedir(d);
	return count;
}

/* RDMA devices with a PCI function (soft-RoCE has none), the ground truth for live RDMA NICs. */
static int sysfs_rdma(void)
{
	DIR *d = opendir("/sys/class/infiniband");
	int count = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));) {
		char p[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/sys/class/infiniband/%s/device/vendor", e->d_name);
		count += access(p, R_OK) == 0;
	}
	closedir(d);
	return count;
}

static void test_live(void)
{
	char err[MT_ERRLEN];
	struct mt_node *n = NULL;
	int rc = mt_node_load_live(0, &n, err, sizeof(err));
	TAP_INT(rc, MT_OK, "live machine loads");
	if (rc < 0) {
		printf("#   %s\n", err);
		return;
	}
	int sup = 0;
	for (int g = 0; g < n->n_gpus; g++)
		sup += n->gpus[g].supported;
	TAP_INT(sup, sysfs_gpus(), "live NVIDIA GPU count equals sysfs (vendor 0x10de, class 0x03xx)");
	int rdma = 0;
	for (int c = 0; c < n->n_nics; c++)
		rdma += n->nics[c].rdma;
	TAP_INT(rdma, sysfs_rdma(), "live RDMA NIC count equals /sys/class/infiniband (PCI devices)");
	tap_ok(n->n_pus > 0 && n->cpuset && n->cpuset[0], "live machine has CPUs (%s)", n->cpuset);
	mt_node_free(n);
	char path[512];
	snprintf(path, sizeof(path), "%s/export.xml", tmpdir);
	TAP_INT(mt_node_export_live(path, err, sizeof(err)), MT_OK, "export live hwloc XML");
	rc = mt_node_load_file(path, &n, err, sizeof(err));
	tap_ok(rc == MT_OK || rc == MT_ENOPCI, "exported XML reads back (%s)", rc ? err : "ok");
	if (rc == MT_OK)
		TAP_INT(n->n_gpus >= sup, 1, "exported XML has the live GPUs");
	mt_node_free(n);
	TAP_INT(mt_node_export_live("/nonexistent/dir/x.xml", err, sizeof(err)), MT_ENOENT, "export to a bad path");
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_node_api.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_cpulist();
	test_subset();
	test_core_cpus();
	test_bad_files();
	test_rails();
	fuzz("hwloc/hwloc-tests__32em64t-2n8c2t-pci-wholeio.xml", 60);
	fuzz("hwloc/psmgmt__topo.mel2001.xml", 40);
	fuzz("hwloc/flux-core__ipa20.xml", 40);
	fuzz("nccl/oci-hpc__GB300MP.xml", 80);
	test_live();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	return tap_done();
}
