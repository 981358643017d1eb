/* test_ckpt.c - checkpoint files: sections round-trip, a torn or corrupted file is refused with one line,
 * atomic replacement never leaves a temp file, and the config comparison names the first differing key. */
#include "tap.h"
#include "ckpt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static int count_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void rewrite(const char *from, const char *to, long cut, long flip)
{
	FILE *f = fopen(from, "rb");
	unsigned char b[1 << 16];
	size_t n = fread(b, 1, sizeof(b), f);
	fclose(f);
	if (cut)
		n -= (size_t)cut;
	if (flip >= 0)
		b[flip] ^= 0x40;
	f = fopen(to, "wb");
	fwrite(b, 1, n, f);
	fclose(f);
}

int main(void)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof(dir), "%s/test_ckpt.XXXXXX", base);
	if (!mkdtemp(dir)) {
		printf("Bail out! cannot make a temp dir\n");
		return 1;
	}
	char p[512], err[512] = "";
	tr_ckpt_path(p, sizeof(p), dir, 3);
	tap_ok(strstr(p, "/rank-00003.ckpt") != NULL, "rank 3's file is rank-00003.ckpt");

	float w[1000];
	for (int i = 0; i < 1000; i++)
		w[i] = (float)i * 0.5f;
	unsigned long long meta[2] = {17, 4242};
	const char *cfg = "d_model=64\nlayers=2\n";
	struct tr_ckpt_sec secs[] = {
		{"config", cfg, strlen(cfg) + 1}, {"meta", meta, sizeof(meta)}, {"params", w, sizeof(w)}, {"empty", "", 0}};
	TAP_INT(tr_ckpt_write(p, secs, 4, err, sizeof(err)), 0, "write a checkpoint (%s)", err);
	TAP_INT(count_files(), 1, "only the final file exists after the write (no temp file)");
	/* overwrite: still one file, and the new content */
	meta[0] = 18;
	TAP_INT(tr_ckpt_write(p, secs, 4, err, sizeof(err)), 0, "replace it atomically");
	TAP_INT(count_files(), 1, "still one file");

	struct tr_ckpt c;
	TAP_INT(tr_ckpt_read(&c, p, err, sizeof(err)), 0, "read it back (%s)", err);
	float w2[1000];
	unsigned long long m2[2];
	TAP_INT(tr_ckpt_get(&c, "params", w2, sizeof(w2), err, sizeof(err)), 0, "params section present");
	tap_ok(memcmp(w, w2, sizeof(w)) == 0, "params round-trip bit for bit");
	TAP_INT(tr_ckpt_get(&c, "meta", m2, sizeof(m2), err, sizeof(err)), 0, "meta section present");
	TAP_INT(m2[0], 18, "the replaced content is what is read");
	uint64_t n;
	tap_ok(tr_ckpt_find(&c, "empty", &n) != NULL && n == 0, "an empty section is found with size 0");
	tap_ok(tr_ckpt_find(&c, "nothing", &n) == NULL, "an absent section is NULL");
	tap_ok(tr_ckpt_get(&c, "params", w2, 12, err, sizeof(err)) == -1 && strstr(err, "holds 4000 bytes"),
	       "a size mismatch is refused: %s", err);
	tap_ok(tr_ckpt_get(&c, "optim", w2, 12, err, sizeof(err)) == -1 && strstr(err, "no section \"optim\""),
	       "a missing section is refused: %s", err);
	tr_ckpt_close(&c);

	char q[600];
	snprintf(q, sizeof(q), "%s/torn.ckpt", dir);
	rewrite(p, q, 100, -1);
	tap_ok(tr_ckpt_read(&c, q, err, sizeof(err)) == -1 && strstr(err, "torn or corrupt"), "a torn file is refused: %s", err);
	rewrite(p, q, 0, 2000);
	tap_ok(tr_ckpt_read(&c, q, err, sizeof(err)) == -1 && strstr(err, "checksum"), "a flipped bit is refused: %s", err);
	rewrite(p, q, 0, 1);
	tap_ok(tr_ckpt_read(&c, q, err, sizeof(err)) == -1 && strstr(err, "not a moe-train checkpoint"),
	       "a foreign file is refused: %s", err);
	snprintf(q, sizeof(q), "%s/none.ckpt", dir);
	tap_ok(tr_ckpt_read(&c, q, err, sizeof(err)) == -1 && strstr(err, "none.ckpt"), "a missing file is named: %s", err);
	snprintf(q, sizeof(q), "%s/no/dir/x.ckpt", dir);
	tap_ok(tr_ckpt_write(q, secs, 4, err, sizeof(err)) == -1 && strstr(err, "cannot create"),
	       "an unwritable path fails cleanly: %s", err);

	char out[256];
	TAP_INT(tr_ckpt_config_diff("a=1\nb=2\n", "a=1\nb=2\n", out, sizeof(out)), 0, "equal configs");
	TAP_INT(tr_ckpt_config_diff("a=1\nb=2\n", "a=1\nb=3\n", out, sizeof(out)), 1, "a changed value differs");
	TAP_STR(out, "b: checkpoint has 2, this run has 3", "the message names the key and both values");
	TAP_INT(tr_ckpt_config_diff("a=1\n", "a=1\nc=9\n", out, sizeof(out)), 1, "a key only this run has differs");
	TAP_STR(out, "c: this run has 9, checkpoint has unset", "and is named");
	TAP_INT(tr_ckpt_config_diff("ab=1\n", "a=1\nab=1\n", out, sizeof(out)), 1, "keys match whole, not by prefix");

	snprintf(q, sizeof(q), "rm -rf '%s'", dir);
	if (system(q) != 0)
		printf("# could not remove %s\n", dir);
	return tap_done();
}
