/* fuzz.h - helpers shared by the libFuzzer targets in tests/fuzz/ (see tests/fuzz/run.sh).
 *
 * Readers that take a path get the input through a memfd (/proc/self/fd/N), so the real file code
 * runs without touching the disk; parsers that take a C string get a NUL-terminated copy.
 */
#ifndef MT_FUZZ_H
#define MT_FUZZ_H
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd NUL-terminated copy of the input (embedded NULs cut it short, as in a C string). */
static inline char *fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* A memfd holding the input; its path goes into `path`.  Returns the fd (close it after use). */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t len)
{
	int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	for (size_t off = 0; off < size;) {
		ssize_t k = write(fd, data + off, size - off);
		if (k <= 0)
			abort();
		off += (size_t)k;
	}
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}
#endif
