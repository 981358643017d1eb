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

/* Parameters and AdamW moments as the file holds them (fp32 on the host): the backend's own memory
 * on the CPU, host copies of it for a device, so one format serves every backend. */
struct host_state {
	void *p[6];   /* params, adam_m, adam_v of the replicated, then the expert segment */
	size_t bytes[6];
	void *own;    /* one allocation behind p for a device backend, else NULL */
};

static void *dev_ptr(struct tr_run *r, int i)
{
	int s = i / 3;
	return i % 3 == 0 ? (void *)tr_model_params(r->m, (enum tr_seg)s) : i % 3 == 1 ? (void *)r->mom[s] : (void *)r->vel[s];
}

static int host_state(struct tr_run *r, struct host_state *h)
{
	size_t total = 0;
	for (int i = 0; i < 6; i++) {
		h->bytes[i] = r->n[i / 3] * (i % 3 == 0 ? sizeof(tr_real) : sizeof(float));
		total += h->bytes[i];
	}
	h->own = NULL;
	if (!r->be->device_mem) {
		for (int i = 0; i < 6; i++)
			h->p[i] = dev_ptr(r, i);
		return 0;
	}
	char *b = h->own = malloc(total + 1);
	if (!b)
		return -1;
	for (int i = 0; i < 6; i++, b += h->bytes[i - 1])
		h->p[i] = b;
	return 0;
}

static void host_state_move(struct tr_run *r, struct host_state *h, int to_host)
{
	if (!h->own)
		return;
	for (int i = 0; i < 6; i++)
		if (to_host)
			r->be->download(h->p[i], dev_ptr(r, i), h->bytes[i]);
		else
			r->be->upload(dev_ptr(r, i), h->p[i], h->bytes[i]);
}

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
	struct host_state h;
	if (host_state(r, &h) != 0) {
		snprintf(err, errlen, "out of host memory for a copy of the model");
		return -1;
	}
	host_state_move(r, &h, 1);
	if (r->be->sync(err, errlen) != 0) {
		free(h.own);
		return -1;
	}
	struct tr_ckpt_sec s[] = {
		{"config", r->config, strlen(r->config) + 1},
		{"meta", &meta, sizeof(meta)},
		{"rng", rng.s, sizeof(rng.s)},
		{"params.replicated", h.p[0], h.bytes[0]},
		{"adam_m.replicated", h.p[1], h.bytes[1]},
		{"adam_v.replicated", h.p[2], h.bytes[2]},
		{"params.expert", h.p[3], h.bytes[3]},
		{"adam_m.expert", h.p[4], h.bytes[4]},
		{"adam_v.expert", h.p[5], h.bytes[5]},
		{"router_bias", bias, nb * sizeof(tr_real)},
	};
	int rc = tr_ckpt_write(path, s, (int)(sizeof(s) / sizeof(s[0])), err, errlen);
	free(h.own);
	return rc;
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
	struct host_state h;
	if (host_state(r, &h) != 0) {
		fprintf(stderr, "moe-train: --resume: out of host memory for a copy of the model\n");
		rc = -1;
		goto out;
	}
	if (tr_ckpt_get(&c, "meta", &meta, sizeof(meta), err, sizeof(err)) ||
	    tr_ckpt_get(&c, "params.replicated", h.p[0], h.bytes[0], err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_m.replicated", h.p[1], h.bytes[1], err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_v.replicated", h.p[2], h.bytes[2], err, sizeof(err)) ||
	    tr_ckpt_get(&c, "params.expert", h.p[3], h.bytes[3], err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_m.expert", h.p[4], h.bytes[4], err, sizeof(err)) ||
	    tr_ckpt_get(&c, "adam_v.expert", h.p[5], h.bytes[5], err, sizeof(err)) ||
	    tr_ckpt_get(&c, "router_bias", bias, nb * sizeof(tr_real), err, sizeof(err))) {
		fprintf(stderr, "moe-train: --resume: %s\n", err);
		free(h.own);
		goto out;
	}
	host_state_move(r, &h, 0);
	free(h.own);
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
