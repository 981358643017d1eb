/* slurp.h - a whole file in memory (NUL-terminated, length in *len; NULL when it cannot be read), for the
 * node tests and benchmarks that feed the loader bytes rather than paths. */
#ifndef TEST_SLURP_H
#define TEST_SLURP_H

#include <stdio.h>
#include <stdlib.h>

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long l = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = l >= 0 ? malloc((size_t)l + 1) : NULL;
	if (b && fread(b, 1, (size_t)l, f) != (size_t)l) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b)
		b[l] = 0;
	*len = b ? (size_t)l : 0;
	return b;
}

#endif
