/* cli_plan.c - `moetopo plan` (the layout for a job shape) and `moetopo simulate` (its estimated
 * MoE all-to-all time against Slurm's default layout).  Both read the same job options. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mt_plan.h"
#include "mt_common.h"

struct cli_job {
	char **names;
	int n;
	int *tasks;
	const struct mt_node **models;
	struct mt_node **owned; /* distinct models to free */
	int n_owned;
	struct mt_domains *domains;
	const char **allowed;
	struct mt_job job;
	const char *preset;
};

static void cli_job_free(struct cli_job *c)
{
	mt_hostlist_free(c->names, c->n);
	free(c->tasks);
	free(c->models);
	for (int i = 0; i < c->n_owned; i++)
		mt_node_free(c->owned[i]);
	free(c->owned);
	free(c->allowed);
	mt_domains_free(c->domains);
}

static int bad(const char *cmd, const char *fmt, const char *a)
{
	fprintf(stderr, "moetopo %s: ", cmd);
	fprintf(stderr, fmt, a);
	fputc('\n', stderr);
	return 2;
}

/* --node-xml PATTERN with %n replaced by the node name; each distinct file is loaded once. */
static int load_models(struct cli_job *c, const char *cmd, const char *xml)
{
	char err[MT_ERRLEN], path[4096];
	struct mt_strmap seen;
	char **paths = calloc((size_t)c->n, sizeof(char *));
	c->owned = calloc((size_t)c->n, sizeof(*c->owned));
	if (!paths || !c->owned || mt_strmap_init(&seen, 16)) {
		free(paths);
		return bad(cmd, "%s", "out of memory");
	}
	int rc = 0;
	bool pattern = strstr(xml, "%n") != NULL;
	for (int i = 0; i < c->n && !rc; i++) {
		size_t o = 0;
		for (const char *s = xml; *s && o + 1 < sizeof(path); s++) {
			if (s[0] == '%' && s[1] == 'n') {
				o += (size_t)snprintf(path + o, sizeof(path) - o, "%s", c->names[i]);
				s++;
			} else
				path[o++] = *s;
		}
		path[o < sizeof(path) ? o : sizeof(path) - 1] = '\0';
		int k = mt_strmap_get(&seen, path);
		if (k < 0) {
			struct mt_node *m;
			if (mt_node_load_file(path, &m, err, sizeof(err))) {
				fprintf(stderr, "moetopo %s: %s%s%s%s\n", cmd, pattern ? "node " : "",
					pattern ? c->names[i] : "", pattern ? ": " : "", err);
				rc = 2;
				break;
			}
			k = c->n_owned;
			c->owned[c->n_owned++] = m;
			paths[k] = strdup(path);
			if (!paths[k] || mt_strmap_put(&seen, paths[k], k) < 0) {
				rc = bad(cmd, "%s", "out of memory");
				break;
			}
		}
		c->models[i] = c->owned[k];
	}
	mt_strmap_free(&seen);
	for (int i = 0; i < c->n; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

enum { O_NODES = 256, O_TPN, O_XML, O_PRESET, O_DOMAINS, O_CPUS, O_SPEC, O_JSON, O_SIM, O_HELP,
       O_TOKENS, O_HIDDEN, O_TOPK, O_BYTES, O_NVL, O_NIC, O_OVERSUB, O_ROUTING, O_RG };

static const struct option opts[] = {
	{"nodes", required_argument, 0, O_NODES},       {"tasks-per-node", required_argument, 0, O_TPN},
	{"node-xml", required_argument, 0, O_XML},      {"preset", required_argument, 0, O_PRESET},
	{"domains", required_argument, 0, O_DOMAINS},   {"cpus", required_argument, 0, O_CPUS},
	{"spec", required_argument, 0, O_SPEC},         {"json", no_argument, 0, O_JSON},
	{"simulate", no_argument, 0, O_SIM},            {"help", no_argument, 0, O_HELP},
	{"tokens", required_argument, 0, O_TOKENS},     {"hidden", required_argument, 0, O_HIDDEN},
	{"topk", required_argument, 0, O_TOPK},         {"bytes", required_argument, 0, O_BYTES},
	{"nvlink-gbs", required_argument, 0, O_NVL},    {"nic-gbs", required_argument, 0, O_NIC},
	{"oversub", required_argument, 0, O_OVERSUB},   {"routing", required_argument, 0, O_ROUTING},
	{"route-groups", required_argument, 0, O_RG},   {0, 0, 0, 0},
};

static const char plan_usage[] =
	"usage: moetopo plan --nodes HOSTLIST (--node-xml FILE|PATTERN | --preset NAME) [--tasks-per-node N]\n"
	"                    [--domains FILE] [--cpus LIST] [--spec SPEC] [--json] [--simulate [SIM OPTIONS]]\n"
	"\n"
	"Prints which rank each Slurm task (SLURM_PROCID, block distribution) becomes and what it is bound\n"
	"to: GPU, NICs and rail, CPU set, EP group/rank, DP rank, NVLink domain; then a summary.  This is\n"
	"exactly the plan the SPANK plugin applies for the same job.\n"
	"\n"
	"  --nodes HOSTLIST       the step's nodes in Slurm order, e.g. gb-r[01-04]-n[01-18]\n"
	"  --tasks-per-node N     tasks on each node (default: one per GPU, or per NUMA node without GPUs)\n"
	"  --node-xml FILE        hwloc or NCCL topology XML of the nodes; %n in the name is replaced by\n"
	"                         each node's name (heterogeneous nodes: --node-xml 'cache/%n.xml')\n"
	"  --preset NAME          a built-in node model: dgx-h100, gb300-nvl72-tray, gb200-nvl72-tray,\n"
	"                         cpu-2socket (facts in doc/planner.md)\n"
	"  --domains FILE         NVLink domain map: topology.conf (BlockName=... Nodes=... or leaf\n"
	"                         SwitchName=... Nodes=...) or 'NODE DOMAIN' lines.  Without it, nodes whose\n"
	"                         models carry an NVML fabric clique are grouped by it, else each node is\n"
	"                         its own domain\n"
	"  --cpus LIST            CPUs the step may use on every node (e.g. 0-63); default all\n"
	"  --spec SPEC            the planner spec (default auto); --spec help prints the grammar\n"
	"  --json                 JSON output (schema in doc/json-schema.md)\n"
	"  --simulate             also print `moetopo simulate` for this plan\n"
	"\n"
	"Exit status: 0 ok, 1 runtime failure, 2 bad input (one line on stderr naming the problem).\n";

static const char sim_usage[] =
	"usage: moetopo simulate JOB OPTIONS (as moetopo plan) [--tokens N] [--hidden N] [--topk K] [--bytes B]\n"
	"                        [--nvlink-gbs X] [--nic-gbs X] [--oversub X] [--routing uniform|group]\n"
	"                        [--route-groups M] [--json]\n"
	"\n"
	"Estimates the MoE all-to-all time per layer (dispatch + combine) of moetopo's plan and of the\n"
	"layout Slurm gives by default (rank = SLURM_PROCID, local task t on the t-th GPU in PCI order,\n"
	"EP groups of consecutive ranks), and prints the ratio default / plan.\n"
	"\n"
	"  --tokens N        tokens per GPU per micro-batch (default 4096)\n"
	"  --hidden N        hidden size (default 7168, DeepSeek-V3)\n"
	"  --topk K          routed experts per token (default 8)\n"
	"  --bytes B         bytes per element on the wire (default 2, bf16)\n"
	"  --nvlink-gbs X    NVLink GB/s per GPU per direction (default: 900 for GB200/GB300 presets, else 450)\n"
	"  --nic-gbs X       NIC GB/s per rail per direction (default: 100 for gb300, else 50)\n"
	"  --oversub X       spine oversubscription >= 1 (default 1): an NVLink domain's uplinks carry its GPUs'\n"
	"                    NIC bandwidth / X, shared by all EP groups; bytes that must change rails go X times slower\n"
	"  --routing R       uniform (default), or group: group-limited routing to M NVLink domains\n"
	"  --route-groups M  M for --routing group (default: the spec's route-groups)\n"
	"\n"
	"Model assumptions (doc/planner.md): every token picks top-k experts of its EP group uniformly and\n"
	"experts stay balanced (group: a token reaches M of the group's domains on average, each in\n"
	"proportion to its experts); a token crosses the network once per remote NVLink domain it needs,\n"
	"on its own rail, to a member of that domain on that rail (the domain's members on that rail share\n"
	"the load), and fans out over NVLink (DeepEP-style); with no member on that rail it crosses the\n"
	"spine (oversub) to any member.  NICs are full duplex: a rank's network time is the larger of what\n"
	"it sends and what it receives, so the few members of a small domain chunk, which receive from all\n"
	"the others on their rail, are often the slowest.  Per rank time = max(network bytes / NIC bw,\n"
	"NVLink bytes / NVLink bw), NVLink counting its own copies and the copies it forwards; a group waits\n"
	"for its slowest rank and the step for the slowest group (total_us); mean_grp_us averages over\n"
	"groups; combine mirrors dispatch.  Spine: all EP groups run their all-to-all at the same time (a\n"
	"synchronous MoE layer), so the cross-domain bytes of every group leaving or entering a domain share\n"
	"its uplinks, (its GPUs x NIC bw) / oversub; a group's network time is at least the spine time\n"
	"max(out, in) / that capacity of every domain it touches.  With --oversub 1 the spine only binds\n"
	"when traffic is uneven.  No latency, no overlap with compute, no other congestion.\n";

static int parse_num(const char *cmd, const char *opt, const char *v, double min, double *out)
{
	char *end;
	double x = strtod(v, &end);
	if (!*v || *end || !(x >= min) || x > 1e12) {
		fprintf(stderr, "moetopo %s: bad value %s=%s (valid: a number >= %g)\n", cmd, opt, v, min);
		return 2;
	}
	*out = x;
	return 0;
}

/* A positive int, or -1. */
static int parse_int(const char *v)
{
	char *end;
	long x = strtol(v, &end, 10);
	return *v >= '0' && *v <= '9' && !*end && x >= 1 && x <= 1 << 20 ? (int)x : -1;
}

static int run(int argc, char **argv, bool simulate_cmd)
{
	const char *cmd = simulate_cmd ? "simulate" : "plan";
	const char *nodes = NULL, *xml = NULL, *preset = NULL, *dfile = NULL, *cpus = NULL, *spec = "auto";
	const char *routing = "uniform";
	int tpn = 0, rg = -1;
	bool json = false, sim = simulate_cmd, sim_opt = false;
	struct mt_sim_params sp;
	double nvl = 0, nic = 0;
	mt_sim_default_params(&sp);
	optind = 1;
	opterr = 0;
	int c, rc;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_NODES: nodes = optarg; break;
		case O_TPN:
			if ((tpn = parse_int(optarg)) < 1)
				return bad(cmd, "bad value --tasks-per-node=%s (valid: a positive integer)", optarg);
			break;
		case O_XML: xml = optarg; break;
		case O_PRESET: preset = optarg; break;
		case O_DOMAINS: dfile = optarg; break;
		case O_CPUS: cpus = optarg; break;
		case O_SPEC: spec = optarg; break;
		case O_JSON: json = true; break;
		case O_SIM: sim = true; break;
		case 'h':
		case O_HELP: fputs(simulate_cmd ? sim_usage : plan_usage, stdout); return 0;
		case O_TOKENS: if ((rc = parse_num(cmd, "--tokens", optarg, 1, &sp.tokens))) return rc; sim_opt = true; break;
		case O_HIDDEN: if ((rc = parse_num(cmd, "--hidden", optarg, 1, &sp.hidden))) return rc; sim_opt = true; break;
		case O_TOPK: if ((rc = parse_num(cmd, "--topk", optarg, 1, &sp.topk))) return rc; sim_opt = true; break;
		case O_BYTES: if ((rc = parse_num(cmd, "--bytes", optarg, 0.125, &sp.bytes))) return rc; sim_opt = true; break;
		case O_NVL: if ((rc = parse_num(cmd, "--nvlink-gbs", optarg, 0.001, &nvl))) return rc; sim_opt = true; break;
		case O_NIC: if ((rc = parse_num(cmd, "--nic-gbs", optarg, 0.001, &nic))) return rc; sim_opt = true; break;
		case O_OVERSUB: if ((rc = parse_num(cmd, "--oversub", optarg, 1, &sp.oversub))) return rc; sim_opt = true; break;
		case O_ROUTING:
			if (strcmp(optarg, "uniform") && strcmp(optarg, "group"))
				return bad(cmd, "bad value --routing=%s (valid: uniform, group)", optarg);
			routing = optarg;
			sim_opt = true;
			break;
		case O_RG:
			if ((rg = parse_int(optarg)) < 1)
				return bad(cmd, "bad value --route-groups=%s (valid: a positive integer)", optarg);
			sim_opt = true;
			break;
		default:
			fprintf(stderr, "moetopo %s: unknown or incomplete option '%s' (see moetopo %s --help)\n", cmd,
				argv[optind - 1], cmd);
			return 2;
		}
	}
	if (optind < argc)
		return bad(cmd, "unexpected argument '%s' (options only; see --help)", argv[optind]);
	if (sim_opt && !sim)
		return bad(cmd, "%s", "simulation options need --simulate (or use moetopo simulate)");

	char err[MT_ERRLEN];
	struct mt_spec s;
	if (mt_spec_parse(spec, &s, err, sizeof(err)))
		return bad(cmd, "%s", err);
	if (s.mode == MT_MODE_HELP) {
		fputs(mt_spec_help(), stdout);
		return 0;
	}
	if (s.mode == MT_MODE_OFF)
		return bad(cmd, "%s", "--spec off plans nothing (valid: auto or key=value,...; --spec help)");
	if (!nodes)
		return bad(cmd, "%s", "--nodes HOSTLIST is required (e.g. --nodes 'gb-r[01-04]-n[01-18]')");
	if (!!xml == !!preset)
		return bad(cmd, "%s", "give exactly one of --node-xml FILE and --preset NAME");

	struct cli_job cj = {0};
	struct mt_plan *p = NULL;
	rc = 2;
	if (mt_hostlist_expand(nodes, &cj.names, &cj.n, err, sizeof(err))) {
		bad(cmd, "%s", err);
		goto out;
	}
	cj.tasks = calloc((size_t)cj.n, sizeof(int));
	cj.models = calloc((size_t)cj.n, sizeof(*cj.models));
	if (!cj.tasks || !cj.models) {
		rc = bad(cmd, "%s", "out of memory") - 1;
		goto out;
	}
	if (preset) {
		struct mt_node *m;
		cj.owned = calloc(1, sizeof(*cj.owned));
		if (!cj.owned || mt_preset_node(preset, &m, err, sizeof(err))) {
			bad(cmd, "%s", cj.owned ? err : "out of memory");
			goto out;
		}
		cj.owned[cj.n_owned++] = m;
		for (int i = 0; i < cj.n; i++)
			cj.models[i] = m;
	} else if (load_models(&cj, cmd, xml))
		goto out;
	if (dfile && mt_domains_load(dfile, &cj.domains, err, sizeof(err))) {
		bad(cmd, "%s", err);
		goto out;
	}
	for (int i = 0; i < cj.n; i++) {
		const struct mt_node *m = cj.models[i];
		cj.tasks[i] = tpn ? tpn : m->n_gpus > 0 ? m->n_gpus : (m->n_numa > 0 ? m->n_numa : 1);
	}
	if (cpus) {
		cj.allowed = calloc((size_t)cj.n, sizeof(char *));
		if (!cj.allowed)
			goto out;
		/* validate the list once: a bad --cpus is bad input, not a silent "all" */
		unsigned char *mask = malloc(1 << 20);
		int k = mask ? mt_cpulist_parse(cpus, mask, 1 << 20) : -1;
		free(mask);
		if (k <= 0) {
			bad(cmd, "bad --cpus '%s' (valid: a cpu list such as 0-63,128-191)", cpus);
			goto out;
		}
		for (int i = 0; i < cj.n; i++)
			cj.allowed[i] = cpus;
	}
	cj.job.n_nodes = cj.n;
	cj.job.nodes = (const char *const *)cj.names;
	cj.job.tasks = cj.tasks;
	cj.job.models = cj.models;
	cj.job.domains = cj.domains;
	cj.job.allowed_cpus = cj.allowed;
	cj.job.spec = s;
	int prc = mt_plan_build(&cj.job, &p, err, sizeof(err));
	if (prc) {
		bad(cmd, "%s", err);
		rc = prc == MT_ENOMEM ? 1 : 2;
		goto out;
	}
	if (!simulate_cmd) {
		if (json && !sim)
			mt_plan_print_json(p, stdout);
		else if (!json)
			mt_plan_print(p, stdout);
	}
	if (sim) {
		bool gb = preset && !strncmp(preset, "gb", 2);
		sp.nvlink_gbs = nvl > 0 ? nvl : gb ? 900 : 450;
		sp.nic_gbs = nic > 0 ? nic : preset && !strcmp(preset, "gb300-nvl72-tray") ? 100 : 50;
		if (!strcmp(routing, "group")) {
			sp.route_groups = rg > 0 ? rg : p->spec.route_groups;
			if (sp.route_groups <= 0) {
				bad(cmd, "%s", "--routing group needs --route-groups M or route-groups=M in the spec");
				goto out;
			}
		}
		struct mt_sim_result a, b;
		if (mt_sim_plan(p, &sp, &a, err, sizeof(err)) || mt_sim_default(&cj.job, p, &sp, &b, err, sizeof(err))) {
			bad(cmd, "%s", err);
			goto out;
		}
		double ratio = a.total_us > 0 ? b.total_us / a.total_us : 1;
		double mean_ratio = a.mean_group_us > 0 ? b.mean_group_us / a.mean_group_us : 1;
		if (json) {
			printf("{\"schema\":\"moetopo-simulate/1\",\"params\":{\"tokens\":%g,\"hidden\":%g,\"topk\":%g,\"bytes\":%g,\"nvlink_gbs\":%g,"
			       "\"nic_gbs\":%g,\"oversub\":%g,\"route_groups\":%d},\n",
			       sp.tokens, sp.hidden, sp.topk, sp.bytes, sp.nvlink_gbs, sp.nic_gbs, sp.oversub,
			       sp.route_groups);
			const struct mt_sim_result *r[2] = {&a, &b};
			const char *nm[2] = {"plan", "default"};
			for (int k = 0; k < 2; k++)
				printf("\"%s\":{\"dispatch_us\":%.6g,\"combine_us\":%.6g,\"total_us\":%.6g,\"ep_groups\":%d,"
				       "\"ep_groups_local\":%d,\"max_domains_per_group\":%d,\"nvlink_local_fraction\":%.6g,"
				       "\"rail_aligned_fraction\":%.6g,\"mean_group_us\":%.6g,\"spine_us_max\":%.6g,"
				       "\"spine_bound_groups\":%d},\n",
				       nm[k], r[k]->dispatch_us, r[k]->combine_us, r[k]->total_us, r[k]->summary.ep_groups,
				       r[k]->summary.ep_groups_local, r[k]->summary.max_domains_per_group,
				       r[k]->summary.nvlink_local_fraction, r[k]->summary.rail_aligned_fraction,
				       r[k]->mean_group_us, r[k]->spine_us_max, r[k]->spine_bound_groups);
			printf("\"speedup\":%.6g,\"speedup_mean\":%.6g}\n", ratio, mean_ratio);
		} else {
			printf("%sMoE all-to-all per layer: %g tokens/GPU, hidden %g, top-%g, %g B/element, NVLink %g GB/s,"
			       " NIC %g GB/s per rail, spine oversubscription %g, routing %s",
			       simulate_cmd ? "" : "\n", sp.tokens, sp.hidden, sp.topk, sp.bytes, sp.nvlink_gbs, sp.nic_gbs,
			       sp.oversub, sp.route_groups ? "group-limited" : "uniform");
			if (sp.route_groups)
				printf(" (M=%d)", sp.route_groups);
			printf("\n%-15s %12s %12s %12s %12s %13s %13s %13s %8s\n", "layout", "dispatch_us", "combine_us",
			       "total_us", "mean_grp_us", "local_groups", "nvlink_local", "rail_aligned", "max_dom");
			const struct mt_sim_result *r[2] = {&a, &b};
			const char *nm[2] = {"moetopo plan", "slurm default"};
			for (int k = 0; k < 2; k++)
				printf("%-15s %12.1f %12.1f %12.1f %12.1f %6d/%-6d %12.1f%% %12.1f%% %8d\n", nm[k],
				       r[k]->dispatch_us, r[k]->combine_us, r[k]->total_us, r[k]->mean_group_us,
				       r[k]->summary.ep_groups_local,
				       r[k]->summary.ep_groups, 100 * r[k]->summary.nvlink_local_fraction,
				       100 * r[k]->summary.rail_aligned_fraction, r[k]->summary.max_domains_per_group);
			printf("spine (busiest domain's uplinks, per direction): plan %.1f us, default %.1f us; groups it slows:"
			       " plan %d, default %d\n",
			       a.spine_us_max, b.spine_us_max, a.spine_bound_groups, b.spine_bound_groups);
			printf("speedup (default / plan): slowest group %.2fx, mean over groups %.2fx\n", ratio, mean_ratio);
			printf("total_us: dispatch + combine of the slowest EP group, which gates the step; mean_grp_us: the\n"
			       "same averaged over EP groups (fabric load)\n");
		}
	}
	rc = 0;
out:
	mt_plan_free(p);
	cli_job_free(&cj);
	return rc;
}

int mt_cli_plan(int argc, char **argv)
{
	return run(argc, argv, false);
}

int mt_cli_simulate(int argc, char **argv)
{
	return run(argc, argv, true);
}
