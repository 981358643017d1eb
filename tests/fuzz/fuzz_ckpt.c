/* fuzz_ckpt.c - the trainer's checkpoint reader (tr_ckpt_read, --resume DIR) and section lookup.  The
 * first input byte chooses whether the trailer checksum is fixed up first, so that the fuzzer also
 * reaches the section table behind it. */
#include "fuzz.h"
#include "ckpt.h"
#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	bool fix = data[0] & 1;
	data++, size--;
	uint8_t *b = malloc(size ? size : 1);
	if (!b)
		abort();
	memcpy(b, data, size);
	if (fix && size >= 32) {
		memcpy(b + size - 16, "MOECKEND", 8);
		uint64_t h = tr_fnv1a64(TR_FNV_INIT, b, size - 16);
		memcpy(b + size - 8, &h, 8);
	}
	char path[64], err[512];
	int fd = fuzz_file(b, size, path, sizeof(path));
	struct tr_ckpt c;
	if (tr_ckpt_read(&c, path, err, sizeof(err)) == 0) {
		static const char *const names[] = {"config", "params", "optim", "data", "rng", "step"};
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			uint64_t n = 0;
			const void *p = tr_ckpt_find(&c, names[i], &n);
			if (p && ((const uint8_t *)p < c.buf || (const uint8_t *)p + n > c.buf + c.len))
				abort(); /* a section always lies inside the file */
			uint64_t v;
			tr_ckpt_get(&c, names[i], &v, sizeof(v), err, sizeof(err));
		}
		uint64_t n = 0;
		const char *cfg = tr_ckpt_find(&c, "config", &n);
		if (cfg) {
			char *txt = fuzz_str((const uint8_t *)cfg, n), out[256];
			tr_ckpt_config_diff(txt, "seq-len=64\nexperts=8\n", out, sizeof(out));
			free(txt);
		}
		tr_ckpt_close(&c);
	} else if (!err[0])
		abort();
	close(fd);
	free(b);
	return 0;
}
