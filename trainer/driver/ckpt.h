/* ckpt.h - checkpoint files: one per rank, a list of named binary sections closed by a checksum
 * trailer, written atomically (temp file, fsync, rename, fsync dir; see train_io.h).
 *
 * File layout (little-endian; doc/trainer.md lists the sections moe-train writes):
 *   char[8] "MOECKPT1"; uint32 version (1); uint32 section count
 *   per section: uint32 name length; name bytes; uint64 byte count; bytes
 *   trailer: char[8] "MOECKEND"; uint64 FNV-1a 64 of every byte before the trailer
 * A torn or corrupted file fails the checksum and is refused with one line.
 */
#ifndef TR_CKPT_H
#define TR_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define TR_CKPT_VERSION 1u

struct tr_ckpt_sec {
	const char *name;
	const void *p;
	uint64_t n;   /* bytes */
};

/* path of rank r's checkpoint in dir: DIR/rank-RRRRR.ckpt (written into buf, returns buf) */
char *tr_ckpt_path(char *buf, size_t len, const char *dir, int rank);

int tr_ckpt_write(const char *path, const struct tr_ckpt_sec *secs, int nsec, char *err, size_t errlen);

struct tr_ckpt {
	unsigned char *buf;
	size_t len;
	char *path;
};
int tr_ckpt_read(struct tr_ckpt *c, const char *path, char *err, size_t errlen);
void tr_ckpt_close(struct tr_ckpt *c);
/* Section bytes and size, or NULL when absent. */
const void *tr_ckpt_find(const struct tr_ckpt *c, const char *name, uint64_t *n);
/* Copy section `name` into dst, which must be exactly n bytes; -1 with err when absent or of another size. */
int tr_ckpt_get(const struct tr_ckpt *c, const char *name, void *dst, uint64_t n, char *err, size_t errlen);

/* Compare two "key=value\n" config texts.  Returns 0 when equal; otherwise 1 and one line in out naming
 * the first key that differs with both values. */
int tr_ckpt_config_diff(const char *saved, const char *now, char *out, size_t outlen);

#endif
