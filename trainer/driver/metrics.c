/* metrics.c - progress line and JSONL metrics (see metrics.h). */
#include "metrics.h"

#include <math.h>

static void human_bytes(char *buf, size_t n, double b)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(buf, n, i ? "%.1f%s" : "%.0f%s", b, u[i]);
}

void tr_metrics_progress(FILE *f, const struct tr_step_report *r)
{
	char a2a[32];
	human_bytes(a2a, sizeof(a2a), (double)r->a2a_bytes);
	fprintf(f, "step %ld/%ld loss %.4f lr %.3g norm %.3f ms %.1f tok/s %.0f load %.3f a2a %s a2a_ms %.1f ",
		r->step, r->steps, r->loss, r->lr, r->grad_norm, r->ms, r->tokens_per_s, r->max_load_over_mean, a2a,
		r->a2a_ms);
	if (isfinite(r->a2a_wait_ms))
		fprintf(f, "a2a_wait_ms %.1f ", r->a2a_wait_ms);
	fprintf(f, "%s/%s %.3g GFLOP/tok", r->device ? r->device : "cpu", r->dtype ? r->dtype : "fp32",
		r->flops_per_token / 1e9);
	if (isfinite(r->mfu))
		fprintf(f, " mfu %.3f", r->mfu);
	fputc('\n', f);
	fflush(f);
}

static void num(FILE *f, const char *key, double v, const char *fmt)
{
	fprintf(f, ",\"%s\":", key);
	if (isfinite(v))
		fprintf(f, fmt, v);
	else
		fputs("null", f);
}

void tr_metrics_json(FILE *f, const struct tr_step_report *r)
{
	fprintf(f, "{\"step\":%ld", r->step);
	num(f, "loss", r->loss, "%.17g");
	num(f, "lr", r->lr, "%.9g");
	num(f, "grad_norm", r->grad_norm, "%.9g");
	num(f, "ms", r->ms, "%.3f");
	num(f, "tokens_per_s", r->tokens_per_s, "%.1f");
	num(f, "max_load_over_mean", r->max_load_over_mean, "%.6f");
	fprintf(f, ",\"a2a_bytes\":%llu,\"a2a_cross_bytes\":%llu", (unsigned long long)r->a2a_bytes,
		(unsigned long long)r->a2a_cross_bytes);
	num(f, "a2a_rail_fraction", r->a2a_rail_fraction, "%.6f");
	fprintf(f, ",\"a2a_dedup_bytes\":%llu", (unsigned long long)r->a2a_dedup_bytes);
	num(f, "a2a_ms", r->a2a_ms, "%.3f");
	num(f, "a2a_wait_ms", r->a2a_wait_ms, "%.3f");
	fprintf(f, ",\"a2a_domain_bytes\":%llu,\"a2a_xdomain_bytes\":%llu,\"tokens\":%llu",
		(unsigned long long)r->a2a_domain_bytes, (unsigned long long)r->a2a_xdomain_bytes,
		(unsigned long long)r->tokens);
	fprintf(f, ",\"device\":\"%s\",\"dtype\":\"%s\"", r->device ? r->device : "cpu", r->dtype ? r->dtype : "fp32");
	num(f, "flops_per_token", r->flops_per_token, "%.6g");
	num(f, "mfu", r->mfu, "%.6f");
	fputs("}\n", f);
	fflush(f);
}

double tr_metrics_mfu(double tokens_per_s, double flops_per_token, double peak_tflops, int ranks)
{
	if (!(peak_tflops > 0) || ranks < 1)
		return NAN;
	return tokens_per_s * flops_per_token / ((double)ranks * peak_tflops * 1e12);
}
