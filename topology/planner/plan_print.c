/* plan_print.c - the plan as a per-rank table with a summary, or as JSON (doc/json-schema.md). */
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

int mt_plan_routing_group(const struct mt_plan *p, int g, int k, int *domain, int *lo, int *hi)
{
	if (!p || g < 0 || g >= p->n_groups || k < 0 || k >= p->groups[g].n_domains)
		return MT_EINVAL;
	const struct mt_ep_group *G = &p->groups[g];
	int d = G->domains[k], first = -1, last = -1;
	for (int e = 0; e < G->size; e++)
		if (p->ranks[p->by_rank[G->members[e]]].domain == d) {
			if (first < 0)
				first = e;
			else if (last != e - 1)
				return MT_EINVAL; /* the planner keeps a domain's EP ranks contiguous */
			last = e;
		}
	*domain = d;
	*lo = first * p->experts_per_rank;
	*hi = (last + 1) * p->experts_per_rank;
	return 0;
}

static const char *rank_node(const struct mt_plan *p, const struct mt_rank *R)
{
	return p->node_names ? p->node_names[R->node] : "?";
}

void mt_plan_print(const struct mt_plan *p, FILE *f)
{
	char spec[256];
	mt_spec_format(&p->spec, spec, sizeof(spec));
	fprintf(f, "%6s %6s %-16s %5s %3s %-13s %-16s %4s %4s %-16s %5s %5s %5s %3s %3s %s\n", "procid", "rank",
		"node", "local", "gpu", "gpu_pci", "nics", "rail", "numa", "cpuset", "ep_g", "ep_r", "dp_r", "tp",
		"pp", "domain");
	for (int r = 0; r < p->world; r++) {
		const struct mt_rank *R = &p->ranks[p->by_rank[r]];
		char gpu[16] = "-", rail[16] = "-", numa[16] = "-";
		if (R->gpu >= 0)
			snprintf(gpu, sizeof(gpu), "%d", R->gpu);
		if (R->rail >= 0)
			snprintf(rail, sizeof(rail), "%d", R->rail);
		if (R->numa >= 0)
			snprintf(numa, sizeof(numa), "%d", R->numa);
		fprintf(f, "%6d %6d %-16s %5d %3s %-13s %-16s %4s %4s %-16s %5d %5d %5d %3d %3d %s\n", R->procid, R->rank,
			rank_node(p, R), R->local_rank, gpu, R->gpu_pci[0] ? R->gpu_pci : "-", R->nics[0] ? R->nics : "-",
			rail, numa, R->cpuset && R->cpuset[0] ? R->cpuset : "-", R->ep_group, R->ep_rank, R->dp_rank,
			R->tp_rank, R->pp_rank, p->domain_names[R->domain]);
	}
	const struct mt_summary *s = &p->summary;
	int T = p->spec.tp > 0 ? p->spec.tp : 1, P = p->spec.pp > 0 ? p->spec.pp : 1;
	fprintf(f, "\nspec %s: world %d = tp %d x pp %d x dp %d; ep %d\n", spec, p->world, T, P, p->world / (T * P),
		p->spec.ep);
	fprintf(f, "EP groups NVLink-local: %d / %d\n", s->ep_groups_local, s->ep_groups);
	fprintf(f, "NVLink domains per EP group: max %d, mean %.2f (%d domains in the job)\n", s->max_domains_per_group,
		s->mean_domains_per_group, p->n_domains);
	fprintf(f, "EP all-to-all bytes inside NVLink domains (uniform routing): %.1f%%\n",
		100 * s->nvlink_local_fraction);
	fprintf(f, "cross-domain EP bytes that are rail-aligned: %.1f%%\n", 100 * s->rail_aligned_fraction);
	if (p->experts_per_rank)
		fprintf(f, "experts: %d routed, %d per EP rank (EP rank k owns experts k*%d..k*%d+%d)\n",
			p->spec.experts, p->experts_per_rank, p->experts_per_rank, p->experts_per_rank,
			p->experts_per_rank - 1);
	/* groups that span several domains are the interesting ones; list every group when small */
	int shown = 0;
	for (int g = 0; g < p->n_groups; g++) {
		const struct mt_ep_group *G = &p->groups[g];
		if (p->n_groups > 32 && G->n_domains == 1 && !p->spec.verbose)
			continue;
		if (shown++ == 64 && !p->spec.verbose) {
			fprintf(f, "... (verbose lists every group)\n");
			break;
		}
		fprintf(f, "EP group %d: ranks", g);
		for (int e = 0; e < G->size && (e < 8 || p->spec.verbose); e++)
			fprintf(f, " %d", G->members[e]);
		if (G->size > 8 && !p->spec.verbose)
			fprintf(f, " ... %d", G->members[G->size - 1]);
		fprintf(f, "; routing groups:");
		for (int k = 0; k < G->n_domains; k++) {
			int d, lo, hi;
			if (mt_plan_routing_group(p, g, k, &d, &lo, &hi))
				continue;
			if (p->experts_per_rank)
				fprintf(f, " %s[experts %d-%d]", p->domain_names[d], lo, hi - 1);
			else
				fprintf(f, " %s", p->domain_names[d]);
		}
		fprintf(f, "\n");
	}
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void mt_plan_print_json(const struct mt_plan *p, FILE *f)
{
	char spec[256];
	mt_spec_format(&p->spec, spec, sizeof(spec));
	int T = p->spec.tp > 0 ? p->spec.tp : 1, P = p->spec.pp > 0 ? p->spec.pp : 1;
	fprintf(f, "{\"schema\":\"moetopo-plan/1\",\"spec\":");
	json_str(f, spec);
	fprintf(f, ",\"world\":%d,\"ep\":%d,\"tp\":%d,\"pp\":%d,\"dp\":%d,\"experts\":%d,\"experts_per_rank\":%d,"
		   "\"route_groups\":%d,\n\"domains\":[",
		p->world, p->spec.ep, T, P, p->world / (T * P), p->spec.experts, p->experts_per_rank,
		p->spec.route_groups);
	for (int d = 0; d < p->n_domains; d++) {
		if (d)
			fputc(',', f);
		json_str(f, p->domain_names[d]);
	}
	fprintf(f, "],\n\"ranks\":[\n");
	for (int q = 0; q < p->world; q++) {
		const struct mt_rank *R = &p->ranks[q];
		fprintf(f, "{\"procid\":%d,\"rank\":%d,\"node\":", R->procid, R->rank);
		json_str(f, rank_node(p, R));
		fprintf(f, ",\"local_rank\":%d,", R->local_rank);
		if (R->gpu >= 0) {
			fprintf(f, "\"gpu\":%d,\"gpu_pci\":", R->gpu);
			json_str(f, R->gpu_pci);
		} else
			fprintf(f, "\"gpu\":null,\"gpu_pci\":null");
		fprintf(f, ",\"nics\":[");
		const char *s = R->nics;
		for (int first = 1; *s; first = 0) {
			const char *e = strchr(s, ',');
			size_t n = e ? (size_t)(e - s) : strlen(s);
			char name[MT_NAME_LEN * 2];
			memcpy(name, s, n);
			name[n] = '\0';
			if (!first)
				fputc(',', f);
			json_str(f, name);
			s += n + (e ? 1 : 0);
		}
		fprintf(f, "],\"rail\":");
		if (R->rail >= 0)
			fprintf(f, "%d", R->rail);
		else
			fprintf(f, "null");
		fprintf(f, ",\"numa\":");
		if (R->numa >= 0)
			fprintf(f, "%d", R->numa);
		else
			fprintf(f, "null");
		fprintf(f, ",\"cpuset\":");
		json_str(f, R->cpuset ? R->cpuset : "");
		fprintf(f, ",\"ep_group\":%d,\"ep_rank\":%d,\"dp_rank\":%d,\"tp_rank\":%d,\"pp_rank\":%d,\"domain\":",
			R->ep_group, R->ep_rank, R->dp_rank, R->tp_rank, R->pp_rank);
		json_str(f, p->domain_names[R->domain]);
		fprintf(f, "}%s\n", q + 1 < p->world ? "," : "");
	}
	fprintf(f, "],\n\"ep_groups\":[\n");
	for (int g = 0; g < p->n_groups; g++) {
		const struct mt_ep_group *G = &p->groups[g];
		fprintf(f, "{\"id\":%d,\"members\":[", g);
		for (int e = 0; e < G->size; e++)
			fprintf(f, "%s%d", e ? "," : "", G->members[e]);
		fprintf(f, "],\"domains\":[");
		for (int k = 0; k < G->n_domains; k++) {
			if (k)
				fputc(',', f);
			json_str(f, p->domain_names[G->domains[k]]);
		}
		fprintf(f, "],\"routing_groups\":[");
		for (int k = 0; k < G->n_domains; k++) {
			int d, lo, hi;
			if (mt_plan_routing_group(p, g, k, &d, &lo, &hi))
				continue;
			fprintf(f, "%s{\"domain\":", k ? "," : "");
			json_str(f, p->domain_names[d]);
			fprintf(f, ",\"experts\":[%d,%d]}", lo, hi);
		}
		fprintf(f, "]}%s\n", g + 1 < p->n_groups ? "," : "");
	}
	const struct mt_summary *s = &p->summary;
	fprintf(f, "],\n\"summary\":{\"world\":%d,\"ep_groups\":%d,\"ep_groups_local\":%d,\"max_domains_per_group\":%d,"
		   "\"mean_domains_per_group\":%.6g,\"nvlink_local_fraction\":%.6g,\"rail_aligned_fraction\":%.6g}}\n",
		s->world, s->ep_groups, s->ep_groups_local, s->max_domains_per_group, s->mean_domains_per_group,
		s->nvlink_local_fraction, s->rail_aligned_fraction);
}
