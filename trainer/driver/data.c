/* data.c - token shard format, `prepare`, and the deterministic per-rank loader (see data.h). */
#include "data.h"
#include "train_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG ---- */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void tr_rng_seed(struct tr_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tr_rng_next(struct tr_rng *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

uint64_t tr_rng_below(struct tr_rng *r, uint64_t n)
{
	/* rejection keeps it unbiased; the threshold is 2^64 mod n */
	uint64_t lim = -n % n, x;
	do
		x = tr_rng_next(r);
	while (x < lim);
	return x % n;
}

uint64_t tr_fnv1a64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* ---- little-endian helpers (the format is little-endian on every host) ---- */
static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}
static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- writing ---- */
int tr_data_write_shard(const char *path, const uint16_t *tok, uint64_t n, uint32_t vocab, char *err,
			size_t errlen)
{
	unsigned char *le = malloc(n ? n * 2 : 1);
	if (!le) {
		snprintf(err, errlen, "out of memory for %llu tokens", (unsigned long long)n);
		return -1;
	}
	for (uint64_t i = 0; i < n; i++) {
		le[2 * i] = (unsigned char)tok[i];
		le[2 * i + 1] = (unsigned char)(tok[i] >> 8);
	}
	unsigned char h[TR_SHARD_HEADER];
	memcpy(h, TR_SHARD_MAGIC, 8);
	put32(h + 8, TR_SHARD_VERSION);
	put32(h + 12, vocab);
	put64(h + 16, n);
	put64(h + 24, tr_fnv1a64(TR_FNV_INIT, le, n * 2));
	struct tr_afile a;
	int rc = -1;
	if (tr_afile_open(&a, path, err, errlen) == 0) {
		tr_afile_write(&a, h, sizeof(h));
		tr_afile_write(&a, le, n * 2);
		rc = tr_afile_commit(&a, err, errlen);
	}
	free(le);
	return rc;
}

static int slurp(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	size_t cap = 1 << 16, n = 0;
	unsigned char *b = malloc(cap);
	while (b) {
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (n < cap)
			break;
		unsigned char *nb = realloc(b, cap * 2);
		if (!nb) {
			free(b);
			b = NULL;
			break;
		}
		b = nb;
		cap *= 2;
	}
	int bad = ferror(f);
	fclose(f);
	if (!b || bad) {
		free(b);
		snprintf(err, errlen, "cannot read %s: %s", path, b ? "read error" : "out of memory");
		return -1;
	}
	*buf = b;
	*len = n;
	return 0;
}

int tr_data_prepare(const char *in_path, const char *out_path, char *err, size_t errlen)
{
	unsigned char *b;
	size_t n;
	if (slurp(in_path, &b, &n, err, errlen) != 0)
		return -1;
	if (n < 2) {
		free(b);
		snprintf(err, errlen, "%s has %zu bytes; a shard needs at least 2 tokens", in_path, n);
		return -1;
	}
	uint16_t *tok = malloc(n * sizeof(*tok));
	if (!tok) {
		free(b);
		snprintf(err, errlen, "out of memory for %zu tokens", n);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		tok[i] = b[i];
	free(b);
	int rc = tr_data_write_shard(out_path, tok, n, 256, err, errlen);
	free(tok);
	return rc;
}

/* ---- reading ---- */
static int load_shard(struct tr_data *d, const char *path, char *err, size_t errlen)
{
	unsigned char *b;
	size_t len;
	if (slurp(path, &b, &len, err, errlen) != 0)
		return -1;
	int rc = -1;
	uint64_t n = 0;
	uint32_t ver = 0, vocab = 0;
	if (len < TR_SHARD_HEADER || memcmp(b, TR_SHARD_MAGIC, 8) != 0) {
		snprintf(err, errlen, "%s is not a token shard (no " TR_SHARD_MAGIC " header); make one with "
			 "`moe-train prepare IN.txt OUT.bin`", path);
	} else if ((ver = get32(b + 8)) != TR_SHARD_VERSION) {
		snprintf(err, errlen, "%s: shard version %u, this moe-train reads version %u", path, ver,
			 TR_SHARD_VERSION);
	} else if ((vocab = get32(b + 12)) < 2 || vocab > 65536) {
		snprintf(err, errlen, "%s: vocab size %u, valid 2..65536", path, vocab);
	} else if ((n = get64(b + 16)) != (len - TR_SHARD_HEADER) / 2 || (len - TR_SHARD_HEADER) % 2) {
		snprintf(err, errlen, "%s: header says %llu tokens, file holds %zu bytes of tokens (truncated?)",
			 path, (unsigned long long)n, len - TR_SHARD_HEADER);
	} else if (tr_fnv1a64(TR_FNV_INIT, b + TR_SHARD_HEADER, n * 2) != get64(b + 24)) {
		snprintf(err, errlen, "%s: token checksum mismatch (corrupt shard)", path);
	} else {
		uint16_t *nt = realloc(d->tok, (d->ntok + n + 1) * sizeof(*nt));
		if (!nt) {
			snprintf(err, errlen, "out of memory for %s", path);
		} else {
			d->tok = nt;
			rc = 0;
			for (uint64_t i = 0; i < n; i++) {
				uint16_t t = (uint16_t)(b[TR_SHARD_HEADER + 2 * i] | b[TR_SHARD_HEADER + 2 * i + 1] << 8);
				if (t >= vocab) {
					snprintf(err, errlen, "%s: token %llu is %u, not below the vocab size %u", path,
						 (unsigned long long)i, t, vocab);
					rc = -1;
					break;
				}
				nt[d->ntok + i] = t;
			}
			if (rc == 0) {
				d->ntok += n;
				if (vocab > d->vocab)
					d->vocab = vocab;
			}
		}
	}
	free(b);
	return rc;
}

int tr_data_open(struct tr_data *d, const char *paths, int T, uint64_t seed, char *err, size_t errlen)
{
	memset(d, 0, sizeof(*d));
	d->T = T;
	d->seed = seed;
	d->epoch = UINT64_MAX;
	char *list = strdup(paths), *save = NULL;
	if (!list) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = 0, any = 0;
	for (char *p = strtok_r(list, ",", &save); p && rc == 0; p = strtok_r(NULL, ",", &save)) {
		rc = load_shard(d, p, err, errlen);
		any = 1;
	}
	free(list);
	if (rc == 0 && !any) {
		snprintf(err, errlen, "--data: no shard given (a comma-separated list of files)");
		rc = -1;
	}
	if (rc == 0 && (T < 1 || d->ntok < (uint64_t)T + 1)) {
		snprintf(err, errlen, "--data %s: %llu tokens, fewer than one sequence of --seq-len %d + 1", paths,
			 (unsigned long long)d->ntok, T);
		rc = -1;
	}
	if (rc == 0) {
		d->nseq = (d->ntok - 1) / (uint64_t)T;
		if (!(d->perm = malloc(d->nseq * sizeof(*d->perm)))) {
			snprintf(err, errlen, "out of memory for %llu sequences", (unsigned long long)d->nseq);
			rc = -1;
		}
	}
	if (rc != 0)
		tr_data_close(d);
	return rc;
}

void tr_data_close(struct tr_data *d)
{
	free(d->tok);
	free(d->perm);
	memset(d, 0, sizeof(*d));
}

/* The permutation of epoch e comes from its own seed stream, so any epoch can be rebuilt from
 * (seed, e) alone: resuming needs only the data position. */
void tr_data_epoch_rng(const struct tr_data *d, uint64_t e, struct tr_rng *r)
{
	tr_rng_seed(r, d->seed ^ (0xd1b54a32d192ed03ull * (e + 1)));
}

static void make_perm(struct tr_data *d, uint64_t e)
{
	struct tr_rng r;
	tr_data_epoch_rng(d, e, &r);
	for (uint64_t i = 0; i < d->nseq; i++)
		d->perm[i] = i;
	for (uint64_t i = d->nseq; i > 1; i--) {
		uint64_t j = tr_rng_below(&r, i), t = d->perm[i - 1];
		d->perm[i - 1] = d->perm[j];
		d->perm[j] = t;
	}
	d->epoch = e;
}

void tr_data_batch(struct tr_data *d, uint64_t pos, uint64_t first, int nb, uint16_t *rows)
{
	size_t T = (size_t)d->T;
	for (int b = 0; b < nb; b++) {
		uint64_t g = pos + first + (uint64_t)b, e = g / d->nseq;
		if (e != d->epoch)
			make_perm(d, e);
		memcpy(rows + (size_t)b * (T + 1), d->tok + d->perm[g % d->nseq] * T, (T + 1) * sizeof(*rows));
	}
}

double tr_data_unigram_entropy(const uint16_t *tok, uint64_t n, uint32_t vocab)
{
	if (!n || !vocab)
		return -1;
	uint64_t *c = calloc(vocab, sizeof(*c));
	if (!c)
		return -1;
	for (uint64_t i = 0; i < n; i++)
		if (tok[i] < vocab)
			c[tok[i]]++;
	double h = 0;
	for (uint32_t v = 0; v < vocab; v++)
		if (c[v]) {
			double p = (double)c[v] / (double)n;
			h -= p * log(p);
		}
	free(c);
	return h;
}
