/* test_grouped_map.c - the tile -> (expert, rows) mapping of the device-count grouped GEMM
 * (trainer/cuda/grouped_map.h, --cuda-graph), on the CPU: for many splits of R rows over El experts
 * (empty experts, one expert, rows below, at and above a tile), a launch of tr_gmap_max_tiles blocks
 * covers every row exactly once, each tile lies inside one expert and starts at a multiple of the tile
 * size from the expert's first row, every block past the last tile gets nothing, and the bound holds
 * for the worst split (every expert one row past a tile). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "grouped_map.h"
#include "tap.h"

static uint64_t rng = 88172645463325252ull;
static int rnd(int n) /* 0..n-1 */
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (int)(rng % (uint64_t)n);
}

/* 0 when the mapping is right for this split; else a description in why */
static int check(const int *rows, int El, int TM, char *why, size_t n)
{
	int ro[El + 1], to[El + 1], R = 0;
	for (int j = 0; j < El; j++)
		R += rows[j];
	tr_gmap_prefix(rows, El, TM, ro, to);
	int grid = tr_gmap_max_tiles(R, El, TM), tiles = 0;
	unsigned char *seen = calloc((size_t)R + 1, 1);
	int bad = 0;
	if (ro[El] != R || to[El] > grid)
		bad = snprintf(why, n, "totals: %d rows of %d, %d tiles for a grid of %d", ro[El], R, to[El], grid);
	for (int b = -1; b <= grid && !bad; b++) {
		int j = -1, r0 = -1, nr = -1;
		if (!tr_gmap_tile(ro, to, El, TM, b, &j, &r0, &nr))
			continue;
		tiles++;
		if (b < 0 || b >= grid || j < 0 || j >= El || nr < 1 || nr > TM || r0 < ro[j] || r0 + nr > ro[j + 1] ||
		    (r0 - ro[j]) % TM)
			bad = snprintf(why, n, "block %d -> expert %d rows %d..%d (expert rows %d..%d)", b, j, r0, r0 + nr,
				       j >= 0 && j < El ? ro[j] : -1, j >= 0 && j < El ? ro[j + 1] : -1);
		for (int r = r0; r < r0 + nr && !bad; r++)
			if (seen[r]++)
				bad = snprintf(why, n, "row %d covered twice (block %d)", r, b);
	}
	for (int r = 0; r < R && !bad; r++)
		if (!seen[r])
			bad = snprintf(why, n, "row %d of %d not covered", r, R);
	if (!bad && tiles != to[El])
		bad = snprintf(why, n, "%d tiles mapped, %d counted", tiles, to[El]);
	free(seen);
	return bad;
}

int main(void)
{
	char why[160] = "";
	int worst = 0, cases = 0, fails = 0;
	const int tms[] = { 64, 1, 3, 16 };
	for (int t = 0; t < 4; t++)
		for (int it = 0; it < 400; it++) {
			int TM = tms[t], El = 1 + rnd(it % 4 == 0 ? 3 : 70), rows[72];
			for (int j = 0; j < El; j++) /* zeros, tile edges, and spread values */
				rows[j] = rnd(5) == 0 ? 0 : rnd(3) == 0 ? TM * rnd(4) + rnd(3) - 1 : rnd(300);
			for (int j = 0; j < El; j++)
				rows[j] = rows[j] < 0 ? 0 : rows[j];
			cases++;
			if (check(rows, El, TM, why, sizeof(why)) && fails++ == 0)
				printf("# TM %d, %d experts: %s\n", TM, El, why);
		}
	tap_ok(fails == 0, "%d random splits (0 to 70 experts, tile sizes 1, 3, 16, 64): every row once, tiles inside "
	       "one expert%s%s", cases, fails ? "; first failure: " : "", fails ? why : "");
	/* the worst split for the bound: every expert one row past a whole tile */
	int rows[64];
	for (int j = 0; j < 64; j++)
		rows[j] = 64 + 1;
	int ro[65], to[65];
	tr_gmap_prefix(rows, 64, 64, ro, to);
	worst = to[64];
	tap_ok(check(rows, 64, 64, why, sizeof(why)) == 0 && worst <= tr_gmap_max_tiles(65 * 64, 64, 64),
	       "64 experts of 65 rows: %d tiles within the bound %d", worst, tr_gmap_max_tiles(65 * 64, 64, 64));
	/* all rows on one expert of many, and no rows at all */
	memset(rows, 0, sizeof(rows));
	rows[63] = 1000;
	tap_ok(check(rows, 64, 64, why, sizeof(why)) == 0, "1000 rows all on the last of 64 experts%s%s", why[0] ? ": " : "",
	       why);
	memset(rows, 0, sizeof(rows));
	tr_gmap_prefix(rows, 64, 64, ro, to);
	int j, r0, nr;
	tap_ok(to[64] == 0 && !tr_gmap_tile(ro, to, 64, 64, 0, &j, &r0, &nr), "no rows: no block has a tile");
	return tap_done();
}
