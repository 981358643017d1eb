/* data.h - token shards for moe-train: the on-disk format, `moe-train prepare`, and the loader.
 *
 * Shard format (little-endian, version 1; doc/trainer.md has the same table):
 *   offset 0  char[8]  magic "MOETOKEN"
 *          8  uint32   version (1)
 *         12  uint32   vocab size (every token is < vocab; 256 for byte-level text)
 *         16  uint64   token count N
 *         24  uint64   FNV-1a 64 of the N*2 token bytes (detects truncation and corruption)
 *         32  uint16   tokens[N]
 *
 * The loader cuts the concatenated shards into sequences of T+1 tokens starting every T tokens (the
 * T inputs, and the T targets shifted by one).  Each epoch visits every sequence once in an order drawn from a seeded PRNG
 * (splitmix64 -> xoshiro256**), so the order depends only on --seed and the epoch number.  A step
 * consumes G global sequences; rank r of W takes sequences [r*G/W, (r+1)*G/W) of them, so the same
 * global batch is consumed whatever W.  The data position is the count of global sequences consumed.
 */
#ifndef TR_DATA_H
#define TR_DATA_H

#include <stddef.h>
#include <stdint.h>

#define TR_SHARD_MAGIC "MOETOKEN"
#define TR_SHARD_VERSION 1u
#define TR_SHARD_HEADER 32u

/* xoshiro256** seeded through splitmix64: small, fast, identical everywhere. */
struct tr_rng {
	uint64_t s[4];
};
void tr_rng_seed(struct tr_rng *r, uint64_t seed);
uint64_t tr_rng_next(struct tr_rng *r);
uint64_t tr_rng_below(struct tr_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

uint64_t tr_fnv1a64(uint64_t h, const void *p, size_t n);
#define TR_FNV_INIT 0xcbf29ce484222325ull

/* Byte-level tokenisation of a text file into one shard (atomic: temp file, fsync, rename).
 * Returns 0, or -1 with one line in err. */
int tr_data_prepare(const char *in_path, const char *out_path, char *err, size_t errlen);
/* Write tokens as a shard (atomic).  Tokens must be < vocab. */
int tr_data_write_shard(const char *path, const uint16_t *tok, uint64_t n, uint32_t vocab, char *err,
			size_t errlen);

struct tr_data {
	uint16_t *tok;      /* all shards, concatenated in the order given */
	uint64_t ntok;
	uint32_t vocab;     /* largest vocab of the shards */
	int T;              /* sequence length (model context) */
	uint64_t nseq;      /* sequences per epoch: (ntok - 1) / T */
	uint64_t seed;
	uint64_t epoch;     /* epoch whose permutation is in perm (UINT64_MAX = none yet) */
	uint64_t *perm;     /* perm[i] = start sequence of the i-th visit in `epoch` */
};

/* Open a comma-separated list of shards; every shard is validated (magic, version, size, checksum,
 * tokens < vocab).  Fails when the data holds fewer than one sequence of T+1 tokens. */
int tr_data_open(struct tr_data *d, const char *paths, int T, uint64_t seed, char *err, size_t errlen);
void tr_data_close(struct tr_data *d);

/* The PRNG state that draws epoch e's order (seeded from the shuffle seed and e).  Checkpoints store it
 * so that a resume under a build that shuffles differently is refused instead of silently diverging. */
void tr_data_epoch_rng(const struct tr_data *d, uint64_t e, struct tr_rng *r);

/* Fill rows[nb][T+1] with global sequences pos + first .. pos + first + nb - 1 (each row: T inputs, and
 * the targets are the same row shifted by one), where pos is the global data position.  Rank r of W
 * with global batch G calls it with first = r*G/W, nb = G/W. */
void tr_data_batch(struct tr_data *d, uint64_t pos, uint64_t first, int nb, uint16_t *rows);

/* Shannon entropy of the unigram token histogram, in nats per token (the baseline the learning test
 * compares the loss with: a model that learned nothing beyond token frequencies scores this).
 * Returns -1 on error. */
double tr_data_unigram_entropy(const uint16_t *tok, uint64_t n, uint32_t vocab);

#endif
