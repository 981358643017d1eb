/* ep_probe.c - the model API under expert parallelism without the driver: run by moe-launch (or alone
 * for EP=1), it trains a small MoE model with plain SGD on a text file for a few steps and prints, on
 * rank 0, each step's global loss and the per-expert routing counts of every MoE layer, so that
 * ep_equivalence.sh can require identical routing at every step between EP sizes.
 * usage: ep_probe TEXTFILE STEPS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "model.h"

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);
	return v && *v ? atoi(v) : def;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: ep_probe TEXTFILE STEPS\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		fprintf(stderr, "ep_probe: cannot open %s\n", argv[1]);
		return 2;
	}
	static unsigned char text[1 << 20];
	size_t ntext = fread(text, 1, sizeof(text), f);
	fclose(f);
	int steps = atoi(argv[2]);

	char err[256];
	struct tr_comm *world, *ep, *dp;
	if (tr_comm_init(NULL, &world, err, sizeof(err))) {
		fprintf(stderr, "ep_probe: %s\n", err);
		return 1;
	}
	int rank = tr_comm_rank(world), W = tr_comm_size(world);
	if (tr_comm_split(world, env_int("MOE_EP_GROUP", 0), env_int("MOE_EP_RANK", rank), &ep) ||
	    tr_comm_split(world, env_int("MOE_EP_RANK", rank), env_int("MOE_DP_RANK", 0), &dp)) {
		fprintf(stderr, "ep_probe: split: %s\n", tr_comm_error(world));
		return 1;
	}
	struct tr_config c;
	tr_config_default(&c);
	c.seq_len = 24, c.d_model = 32, c.n_heads = 2, c.n_layers = 3, c.n_dense_layers = 1, c.d_ff = 48;
	c.d_expert = 24, c.n_experts = 8, c.top_k = 2, c.n_groups = 4, c.topk_groups = 2;
	c.route_scale = 2.5f, c.bias_gamma = 0.01f, c.init_std = 0.05f;
	struct tr_par par = { world, ep, dp, tr_domain_id(getenv("MOE_DOMAIN")) };
	struct tr_model *m;
	if (tr_model_create(&c, &par, 11, &m, err, sizeof(err))) {
		fprintf(stderr, "ep_probe: %s\n", err);
		return 1;
	}
	enum { GB = 8 };
	int B = GB / W, T = c.seq_len;
	uint16_t *rows = malloc(sizeof(uint16_t) * (size_t)B * (T + 1));
	for (int s = 0; s < steps; s++) {
		/* this rank's slice of the global batch: rows rank*B .. rank*B+B-1 */
		for (int b = 0; b < B; b++)
			for (int t = 0; t <= T; t++)
				rows[b * (T + 1) + t] = text[((size_t)(s * GB + rank * B + b) * (T + 1) + t) % ntext];
		float loss;
		if (tr_model_step(m, rows, B, T, &loss) || tr_model_reduce_grads(m) || tr_model_update_bias(m)) {
			fprintf(stderr, "ep_probe: rank %d step %d: %s\n", rank, s + 1, tr_model_error(m));
			return 1;
		}
		for (int seg = 0; seg < 2; seg++) {
			float *p = tr_model_params(m, (enum tr_seg)seg);
			const float *g = tr_model_grads(m, (enum tr_seg)seg);
			for (size_t i = 0; i < tr_model_nparams(m, (enum tr_seg)seg); i++)
				p[i] -= 0.5f * g[i];
		}
		double l = loss;
		if (tr_allreduce_f64(world, &l, 1))
			return 1;
		struct tr_moe_stats st;
		tr_model_stats(m, &st);
		if (rank == 0) {
			printf("step %d loss %.9g routing", s + 1, l / W);
			for (int i = 0; i < st.n_moe_layers * st.n_experts; i++)
				printf(" %.0f", st.load[i]);
			printf("\n");
		}
	}
	free(rows);
	tr_model_free(m);
	tr_comm_free(dp);
	tr_comm_free(ep);
	tr_comm_free(world);
	return 0;
}
