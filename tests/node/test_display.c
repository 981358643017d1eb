/* test_display.c - GPUs as nvidia-smi counts them: a server's display controller (BMC VGA: ASPEED,
 * Matrox, Amazon's EC2 VGA, ...) is no GPU: it takes no index, shifts no GPU number and has no row in
 * the GPU matrix; other vendors' compute GPUs stay listed as unsupported.
 *
 * Expected values read from the real captures (grep 'pci_type="03' FILE):
 *  - flux-core__ipa20.xml (Dell XE8640): Matrox G200eR2 [102b:0536] at 0000:03:00.0 comes before the
 *    four H100 [10de:2330] 4e, 5f, cb, db in PCI order; counted, it would be GPU 0 and shift them all.
 *  - mpibind__coral-lassen.xml (IBM AC922): ASPEED [1a03:2000] at 0002:02:00.0, in PCI order
 *    before the V100s at 0004:04, 0004:05, 0035:03, 0035:04.
 *  - mpibind__cts1-pascal.xml: ASPEED [1a03:2000] at 0000:0b:00.0 after the P100s at 04 and 07.
 *  - hwloc-tests__32em64t-2n8c2t-pci-wholeio.xml: Matrox [102b:0532] at 0000:05:03.0 (display, left
 *    out) and an AMD Radeon [1002:6798] at 0000:84:00.1 (a compute-capable GPU of another vendor:
 *    listed, unsupported) beside three Tesla [10de:1094].
 * NCCL files follow the same rule (a hand-written NCCL_TOPO_FILE may list a display <pci>).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mt_node.h"
#include "tap.h"

static char err[MT_ERRLEN];

static struct mt_node *load(const char *rel)
{
	char path[512];
	struct mt_node *n = NULL;
	snprintf(path, sizeof(path), "%s/fixtures/%s", SRCDIR, rel);
	if (mt_node_load_file(path, &n, err, sizeof(err)))
		printf("# %s\n", err);
	return n;
}

/* "pci:supported pci:supported ..." in GPU index order, checking indices are 0..n-1 */
static const char *gpus(const struct mt_node *n)
{
	static char buf[1024];
	size_t o = 0;
	buf[0] = 0;
	for (int i = 0; n && i < n->n_gpus; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s%s", i ? " " : "", n->gpus[i].pci,
				      n->gpus[i].index == i ? (n->gpus[i].supported ? "" : ":unsupported") : ":BADINDEX");
	return buf;
}

/* what `moetopo show` prints, for the matrix rows */
static char *shown(const struct mt_node *n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	mt_node_print(n, f);
	fclose(f);
	return text;
}

static void fixture(const char *rel, const char *want, const char *display, int rows)
{
	struct mt_node *n = load(rel);
	tap_ok(n != NULL, "%s loads", rel);
	if (!n)
		return;
	TAP_STR(gpus(n), want, "%s: exactly these GPUs, numbered in PCI order", rel);
	char *text = shown(n);
	int r = 0;
	for (char *l = text; (l = strstr(l, "\nGPU")); l++)
		r += l[4] >= '0' && l[4] <= '9'; /* matrix rows GPU0, GPU1, ... (not the GPU list's header) */
	TAP_INT(r, rows, "%s: %d GPU rows in the matrix", rel, rows);
	tap_ok(!strstr(text, display), "%s: the display controller %s appears nowhere in `show`", rel, display);
	free(text);
	mt_node_free(n);
}

static void nccl_display(void)
{
	const char xml[] =
		"<system version=\"1\">\n"
		"  <cpu numaid=\"0\" affinity=\"0000ffff\" arch=\"x86_64\" vendor=\"GenuineIntel\">\n"
		"    <pci busid=\"0000:02:00.0\" class=\"0x030000\" vendor=\"0x1a03\" device=\"0x2000\"/>\n"
		"    <pci busid=\"0000:03:00.0\" class=\"0x030000\" vendor=\"0x1d0f\" device=\"0x1111\"/>\n"
		"    <pci busid=\"0000:1b:00.0\" class=\"0x030200\" vendor=\"0x10de\" device=\"0x2330\">\n"
		"      <gpu dev=\"0\" sm=\"90\" rank=\"0\" gdr=\"1\"/>\n"
		"    </pci>\n"
		"    <pci busid=\"0000:2b:00.0\" class=\"0x030000\" vendor=\"0x1002\" device=\"0x740f\"/>\n"
		"  </cpu>\n"
		"</system>\n";
	char path[] = "/tmp/test_display_XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	fputs(xml, f);
	fclose(f);
	struct mt_node *n = NULL;
	int rc = mt_node_load_file(path, &n, err, sizeof(err));
	TAP_INT(rc, 0, "NCCL file with an ASPEED and an Amazon VGA <pci> loads");
	TAP_STR(gpus(n), "0000:1b:00.0 0000:2b:00.0:unsupported",
		"NCCL: the two display controllers are no GPUs, the AMD GPU stays, unsupported");
	mt_node_free(n);
	unlink(path);
}

int main(void)
{
	fixture("hwloc/flux-core__ipa20.xml", "0000:4e:00.0 0000:5f:00.0 0000:cb:00.0 0000:db:00.0", "0000:03:00.0", 4);
	fixture("hwloc/mpibind__coral-lassen.xml", "0004:04:00.0 0004:05:00.0 0035:03:00.0 0035:04:00.0",
		"0002:02:00.0", 4);
	fixture("hwloc/mpibind__cts1-pascal.xml", "0000:04:00.0 0000:07:00.0", "0000:0b:00.0", 2);
	fixture("hwloc/hwloc-tests__32em64t-2n8c2t-pci-wholeio.xml",
		"0000:03:00.0 0000:83:00.0 0000:84:00.0 0000:84:00.1:unsupported", "0000:05:03.0", 4);
	nccl_display();
	return tap_done();
}
