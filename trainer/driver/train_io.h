/* train_io.h - atomic file replacement for shards and checkpoints: write to a temp file beside the
 * target, fsync it, rename it over the target, fsync the directory.  A crash at any point leaves either
 * the old file or the new one, never a torn one, and never a stray temp file after a clean failure.
 */
#ifndef TR_TRAIN_IO_H
#define TR_TRAIN_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct tr_afile {
	FILE *f;
	char *path;  /* final name */
	char *tmp;   /* temp name in the same directory (rename is atomic only within a filesystem) */
	int failed;  /* a write failed: commit refuses */
	uint64_t hash; /* FNV-1a 64 of everything written so far (a trailer can carry it) */
};

int tr_afile_open(struct tr_afile *a, const char *path, char *err, size_t errlen);
int tr_afile_write(struct tr_afile *a, const void *p, size_t n);
/* fsync + rename + fsync dir; on failure the temp file is removed and err says why. */
int tr_afile_commit(struct tr_afile *a, char *err, size_t errlen);
void tr_afile_abort(struct tr_afile *a);

#endif
