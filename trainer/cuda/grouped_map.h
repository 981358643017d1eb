/* grouped_map.h - which rows of which expert each thread block of the device-count grouped GEMM
 * (gemm_dev.cu, --cuda-graph) takes, as plain C that both nvcc and the host compiler build, so the CPU
 * tests check the mapping (tests/cuda/test_grouped_map.c) where no GPU is.
 *
 * Expert j owns rows[j] consecutive rows after those of experts < j.  Each expert's rows are cut into
 * tiles of TM rows (its last tile may be shorter) and the tiles are numbered expert after expert.  Any
 * split of R rows over El experts has at most tr_gmap_max_tiles(R, El, TM) tiles, so a launch of that
 * many blocks, fixed when the step is captured, covers every split the routing can give; the blocks
 * past the last tile of this split have nothing to do.
 */
#ifndef TR_GROUPED_MAP_H
#define TR_GROUPED_MAP_H

#include "../model/host_device.h"

/* sum over j of ceil(rows[j] / TM) <= sum (rows[j] / TM + 1) = R / TM + El */
static inline TR_HOST_DEVICE int tr_gmap_max_tiles(int R, int El, int TM)
{
	return (R + TM - 1) / TM + El;
}

/* exclusive prefix sums over the experts: row_off[j] rows and tile_off[j] tiles before expert j;
 * row_off[El] and tile_off[El] are the totals (El + 1 entries each) */
static inline TR_HOST_DEVICE void tr_gmap_prefix(const int *rows, int El, int TM, int *row_off, int *tile_off)
{
	int r = 0, t = 0;
	for (int j = 0; j < El; j++) {
		row_off[j] = r;
		tile_off[j] = t;
		r += rows[j];
		t += (rows[j] + TM - 1) / TM;
	}
	row_off[El] = r;
	tile_off[El] = t;
}

/* Tile b: its expert *j, its first row *row0 (counted over all experts) and its rows *nrows (1..TM).
 * 0 when b is not a tile of this split (b < 0 or past the last tile). */
static inline TR_HOST_DEVICE int tr_gmap_tile(const int *row_off, const int *tile_off, int El, int TM, int b,
					       int *j, int *row0, int *nrows)
{
	if (El < 1 || b < 0 || b >= tile_off[El])
		return 0;
	/* the last expert whose first tile is <= b: experts without rows share their tile_off with the
	 * next one, so the last of them is the one that has tile b */
	int lo = 0, hi = El - 1;
	while (lo < hi) {
		int mid = lo + (hi - lo + 1) / 2;
		if (tile_off[mid] <= b)
			lo = mid;
		else
			hi = mid - 1;
	}
	int first = row_off[lo] + (b - tile_off[lo]) * TM, left = row_off[lo + 1] - first;
	*j = lo;
	*row0 = first;
	*nrows = left < TM ? left : TM;
	return 1;
}

#endif
