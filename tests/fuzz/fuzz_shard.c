/* fuzz_shard.c - the trainer's token-shard reader (tr_data_open, --data FILE) and the batches cut from
 * what it accepts.  The first input byte chooses whether the header's checksum is fixed up first, so
 * that the fuzzer also reaches what lies behind it (vocab and token checks, sequence cutting). */
#include "fuzz.h"
#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	bool fix = data[0] & 1;
	int T = 1 + (data[0] >> 1) % 16;
	data++, size--;
	uint8_t *b = malloc(size ? size : 1);
	if (!b)
		abort();
	memcpy(b, data, size);
	if (fix && size >= TR_SHARD_HEADER) {
		uint64_t h = tr_fnv1a64(TR_FNV_INIT, b + TR_SHARD_HEADER, size - TR_SHARD_HEADER);
		for (int i = 0; i < 8; i++)
			b[24 + i] = (uint8_t)(h >> (8 * i));
	}
	char path[64], err[512];
	int fd = fuzz_file(b, size, path, sizeof(path));
	struct tr_data d;
	if (tr_data_open(&d, path, T, 7, err, sizeof(err)) == 0) {
		if (d.nseq < 1 || d.ntok < (uint64_t)T + 1)
			abort();
		uint16_t *rows = malloc(sizeof(uint16_t) * 2 * (size_t)(T + 1));
		if (!rows)
			abort();
		tr_data_batch(&d, 0, 0, 2, rows);
		tr_data_batch(&d, d.nseq * 3 + 1, 1, 2, rows); /* a later epoch */
		for (int i = 0; i < 2 * (T + 1); i++)
			if (rows[i] >= d.vocab)
				abort();
		free(rows);
		tr_data_close(&d);
	} else if (!err[0])
		abort();
	close(fd);
	free(b);
	return 0;
}
