/* test_node_limits.c - topology files cost what their real content costs (issue: hardening): an NCCL
 * topology with a million <cpu> elements is refused at once instead of taking 4.8 GB and 50 s, one
 * with thousands of them stays small, and a GPU without any NIC loads instead of tripping the sanitizer
 * in the rail code. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mt_node.h"
#include "tap.h"

#if defined(__SANITIZE_ADDRESS__)
/* the sanitizer's heap (libasan exports it; gcc ships no header for it): grows with the peak */
size_t __sanitizer_get_heap_size(void);
static size_t heap_now(void) { return __sanitizer_get_heap_size(); }
static void heap_setup(void) {}
#else
static size_t heap_now(void) { return mallinfo2().arena + mallinfo2().hblkhd; }
/* keep every allocation in the arena and never trim it, so that the arena's size is the peak */
static void heap_setup(void) { mallopt(M_MMAP_MAX, 0); mallopt(M_TRIM_THRESHOLD, -1); }
#endif

static char err[MT_ERRLEN];

static char *write_tmp(const char *text, size_t len)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/test_node_limits_XXXXXX");
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	fwrite(text, 1, len, f);
	fclose(f);
	return path;
}

/* <system> with n <cpu affinity="1"/> elements */
static char *many_cpus(int n, size_t *len)
{
	const char head[] = "<system version=\"1\">\n", el[] = "<cpu numaid=\"0\" affinity=\"1\"/>\n", tail[] = "</system>\n";
	size_t cap = sizeof(head) + (size_t)n * (sizeof(el) - 1) + sizeof(tail);
	char *s = malloc(cap), *w = s;
	w = stpcpy(w, head);
	for (int i = 0; i < n; i++)
		w = stpcpy(w, el);
	w = stpcpy(w, tail);
	*len = (size_t)(w - s);
	return s;
}

int main(void)
{
	heap_setup();
	struct mt_node *n = NULL;
	size_t len;

	/* like the reported file (~1M elements, 20 MB), 200,000 of them */
	char *big = many_cpus(200000, &len);
	char *path = write_tmp(big, len);
	free(big);
	int rc = mt_node_load_file(path, &n, err, sizeof(err));
	TAP_INT(rc, MT_EPARSE, "NCCL topology with 200,000 <cpu> elements is refused");
	tap_ok(n == NULL && strstr(err, "elements") != NULL, "as too many elements: %s", err);
	unlink(path);

	/* just under the element cap: the cost follows the content (a few bytes per element), not a
	 * fixed 48 KiB buffer and 8K-CPU loops per <cpu> (which made this 16K-element file cost 800 MB) */
	big = many_cpus(16000, &len);
	path = write_tmp(big, len);
	free(big);
	size_t before = heap_now();
	rc = mt_node_load_file(path, &n, err, sizeof(err));
	size_t grew = heap_now() - before;
	TAP_INT(rc, MT_ENOPCI, "16,000 <cpu> elements and no device: read, then refused as having no GPU or NIC");
	tap_ok(grew < (size_t)64 << 20, "reading it took %zu MiB of heap (< 64 MiB)", grew >> 20);
	unlink(path);

	/* a GPU and no NIC at all: rails with zero NICs */
	const char gpu_only[] =
		"<system version=\"1\">\n"
		"  <cpu numaid=\"0\" affinity=\"0000ffff\" arch=\"x86_64\" vendor=\"GenuineIntel\">\n"
		"    <pci busid=\"0000:1b:00.0\" class=\"0x030200\" vendor=\"0x10de\" device=\"0x2330\" link_speed=\"32.0 GT/s PCIe\" link_width=\"16\">\n"
		"      <gpu dev=\"0\" sm=\"90\" rank=\"0\" gdr=\"1\"/>\n"
		"    </pci>\n"
		"  </cpu>\n"
		"</system>\n";
	path = write_tmp(gpu_only, sizeof(gpu_only) - 1);
	rc = mt_node_load_file(path, &n, err, sizeof(err));
	TAP_INT(rc, 0, "NCCL topology with one GPU and no NIC loads: %s", rc ? err : "ok");
	if (n) {
		TAP_INT(n->n_gpus, 1, "one GPU");
		TAP_INT(n->n_nics, 0, "no NIC");
		TAP_INT(n->gpus[0].rail, -1, "and no rail");
		TAP_STR(n->gpus[0].cpuset, "0-15", "its CPUs from the affinity mask");
	}
	mt_node_free(n);
	unlink(path);
	return tap_done();
}
