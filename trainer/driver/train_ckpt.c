/* train_ckpt.c - moe-train's checkpoints: what a rank saves (doc/trainer.md lists the sections), and
 * the checks on resume: same configuration, every rank present, every rank at the same step.
 */
#include "ckpt.h"
#include "train_run.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ckpt_meta {
	uint64_t step, data_pos, seed, data_epoch, world, rank;
};

int tr_run_save_ckpt(struct tr_run *r, char *err, size_t errlen)
{
	char path[4096];
	tr_ckpt_path(path, sizeof(path), r->o.ckpt_dir, r->rank);
	size_t nb;
	tr_real *bias = tr_model_router_bias(r->m, &nb);
	/* the shuffle stream of an epoch is seeded from (seed, epoch), so seed + position restore it; the
	 * stream's state is stored too, to catch a build that shuffles differently */
	struct tr_rng rng;
	tr_data_epoch_rng(&r->data, r->pos / r->data.nseq, &rng);
	struct ckpt_meta meta = {(uint64_t)r->step, r->pos, r->o.seed, r->pos / r->data.nseq, (uint64_t)r->nranks,
				 (uint64_t)r->rank};
	struct tr_ckpt_sec s[] = {
		{"config", r->config, strlen(r->config) + 1},
		{"meta", &meta, sizeof(meta)},
		{"rng", rng.s, sizeof(rng.s)},
		{"params.replicated", tr_model_params(r->m, TR_SEG_REPLICATED), r->n[0] * sizeof(tr_real)},
		{"adam_m.replicated", r->mom[0], r->n[0] * sizeof(float)},
		{"adam_v.replicated", r->vel[0], r->n[0] * sizeof(float)},
		{"params.expert", tr_model_params(r->m, TR_SEG_EXPERT), r->n[1] * sizeof(tr_real)},
		{"adam_m.expert", r->mom[1], r->n[1] * sizeof(float)},
		{"adam_v.expert", r->vel[1], r->n[1] * sizeof(float)},
		{"router_bias", bias, nb * sizeof(tr_real)},
	};
	return tr_ckpt_write(path, s, (int)(sizeof(s) / sizeof(s[0])), err, errlen);
}

/* value of "key=" in a config text, or NULL */
static const char *config_value(const char *txt, const char *key, char *buf, size_t n)
{
	size_t kl = strlen(key);
	for (const char *l = txt; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, key, kl) && l[kl] == '=') {
			const char *e = strchr(l, '\n');
			size_t vl = e ? (size_t)(e - l - kl - 1) : strlen(l + kl + 1);
			snprintf(buf, n, "%.*s", (int)vl, l + kl + 1);
			return buf;
		}
	return NULL;
}

/* 0 = loaded, 1 = nothing to resume from (all ranks agree), 2 = bad input, -1 = failure */
int tr_run_load_ckpt(struct tr_run *r, int ep_size, int ep_rank)
{
	char path[4096], err[4096 + 256];
	tr_ckpt_path(path, sizeof(path), r->o.ckpt_dir, r->rank);
	double have = access(path, F_OK) == 0;
	if (tr_allreduce_f64(r->world, &have, 1) != 0) {
		fprintf(stderr, "moe-train: rank %d: %s\n", r->rank, tr_comm_error(r->world));
		return -1;
	}
	if (have == 0)
		return 1;
	if ((int)have != r->nranks) {
		if (r->rank == 0)
			fprintf(stderr, "moe-train: --resume: %s holds checkpoints of %d of this run's %d ranks (another world size?)\n",
				r->o.ckpt_dir, (int)have, r->nranks);
		return 2;
	}
	struct tr_ckpt c;
	int rc = 2;
	if (tr_ckpt_read(&c, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "moe-train: --resume: %s\n", err);
		return 2;
	}
	const char *saved = tr_ckpt_find(&c, "config", NULL);
	char v[64], diff[512];
	struct ckpt_meta meta;
	if (!saved || !memchr(saved, 0, c.len)) {
		fprintf(stderr, "moe-train: --resume: %s has no config section\n", path);
		goto out;
	}
	/* a resumed run keeps the schedule it started with unless --lr-steps says otherwise */
	if (!r->o.set_lr_steps && config_value(saved, "lr_steps", v, sizeof(v)))
		r->o.lr_steps = atol(v);
	free(r->config);
	r->config = tr_opts_config_text(&r->o, r->nranks, r->rank, ep_size, ep_rank, r->data.ntok);
	if (!r->config) {
		fprintf(stderr, "moe-train: out of memory\n");
		rc = -1;
		goto out;
	}
	if (tr_ckpt_config_diff(saved, r->config, diff, sizeof(diff))) {
		fprintf(stderr, "moe-train: --resume: %s was written by a different configuration: %s\n", path, diff);
		goto out;
	}
	size_t nb;
	tr_real *bias = tr_model_router_bias(r->m, &nb);
	if (tr_ckpt_get(&c, "meta", &meta, sizeof(meta), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "params.replicated", tr_model_params(r->m, TR_SEG_REPLICATED), r->n[0] * sizeof(tr_real), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_m.replicated", r->mom[0], r->n[0] * sizeof(float), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_v.replicated", r->vel[0], r->n[0] * sizeof(float), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "params.expert", tr_model_params(r->m, TR_SEG_EXPERT), r->n[1] * sizeof(tr_real), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_m.expert", r->mom[1], r->n[1] * sizeof(float), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_v.expert", r->vel[1], r->n[1] * sizeof(float), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "router_bias", bias, nb * sizeof(tr_real), err, sizeof(err))) {
		fprintf(stderr, "moe-train: --resume: %s\n", err);
		goto out;
	}
	struct tr_rng saved_rng, now_rng;
	if (tr_ckpt_get(&c, "rng", saved_rng.s, sizeof(saved_rng.s), err, sizeof(err))) {
		fprintf(stderr, "moe-train: --resume: %s\n", err);
		goto out;
	}
	tr_data_epoch_rng(&r->data, meta.data_pos / r->data.nseq, &now_rng);
	if (memcmp(saved_rng.s, now_rng.s, sizeof(now_rng.s)) != 0) {
		fprintf(stderr, "moe-train: --resume: %s: this build draws another data order from the same seed (checkpoint of another moe-train version?)\n",
			path);
		goto out;
	}
	r->step = (long)meta.step;
	r->pos = meta.data_pos;
	rc = 0;
out:
	tr_ckpt_close(&c);
	/* every rank must have loaded the same step, or none may go on */
	int64_t mine = rc == 0 ? (int64_t)r->step : -1, *all = malloc((size_t)r->nranks * sizeof(*all));
	if (!all || tr_allgather(r->world, &mine, all, sizeof(mine)) != 0) {
		fprintf(stderr, "moe-train: rank %d: %s\n", r->rank, all ? tr_comm_error(r->world) : "out of memory");
		free(all);
		return -1;
	}
	for (int i = 0; i < r->nranks && rc == 0; i++) {
		if (all[i] < 0) {
			rc = 2; /* that rank refused and said why */
		} else if (all[i] != all[0]) {
			if (r->rank == 0)
				fprintf(stderr, "moe-train: --resume: the checkpoints in %s are of different steps (rank 0: %lld, rank %d: %lld; a torn save?)\n",
					r->o.ckpt_dir, (long long)all[0], i, (long long)all[i]);
			rc = 2;
		}
	}
	free(all);
	return rc;
}

/* A run killed while writing its checkpoint leaves DIR/rank-RRRRR.ckpt.tmp.PID behind (the checkpoint
 * itself is intact); this rank's leftovers go when the next run starts. */
void tr_run_remove_stale_temps(const char *dir, int rank)
{
	char prefix[64], path[4096];
	snprintf(prefix, sizeof(prefix), "rank-%05d.ckpt.tmp.", rank);
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	closedir(d);
}
