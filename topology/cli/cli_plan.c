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
	int **procids;          /* --distribution cyclic */
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
	mt_procids_free(c->procids, c->n);
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
       O_TOKENS, O_HIDDEN, O_TOPK, O_BYTES, O_NVL, O_NIC, O_OVERSUB, O_ROUTING, O_RG, O_DIST, O_NOFAB };

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
	{"route-groups", required_argument, 0, O_RG},   {"distribution", required_argument, 0, O_DIST},
	{"fabric-unknown", no_argument, 0, O_NOFAB},
	{0, 0, 0, 0},
};

static const char plan_usage[] =
	"usage: moetopo plan --nodes HOSTLIST (--node-xml FILE|PATTERN | --preset NAME) [--tasks-per-node N]\n"
	"                    [--domains FILE] [--cpus LIST] [--spec SPEC] [--distribution block|cyclic]\n"
	"                    [--oversub N [--nic-gbs X] [--nvlink-gbs X]] [--json] [--simulate [SIM OPTIONS]]\n"
	"\n"
	"Prints which rank each Slurm task (SLURM_PROCID) becomes and what it is bound\n"
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
	"  --distribution D       how Slurm placed the tasks: block (default) or cyclic (srun -m cyclic)\n"
	"  --oversub N            the fabric's spine oversubscription (N >= 1), as plugstack.conf fabric=oversub:N\n"
	"                         gives it to the plugin: the plan then minimises its slowest EP group's modelled\n"
	"                         all-to-all time, giving up an NVLink-local group only when that makes it faster;\n"
	"                         without it the plan keeps the most local groups\n"
	"  --nic-gbs X            with --oversub: the fabric's NIC GB/s per rail (fabric=...,nic:X; default 50)\n"
	"  --nvlink-gbs X         with --oversub: NVLink GB/s per GPU (fabric=...,nvlink:X; default 450)\n"
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
	"  --fabric-unknown  plan as without plugstack fabric= (the most local groups), still simulating at\n"
	"                    --oversub; by default the plan knows --oversub, --nic-gbs and --nvlink-gbs\n"
	"                    (NIC and NVLink as given, else 50 and 450), as with fabric=oversub:N,nic:X,nvlink:Y\n"
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

/* What the command line asks for. */
struct args {
	const char *nodes, *xml, *preset, *dfile, *cpus, *spec, *routing;
	int tpn, rg;
	bool json, sim, sim_opt, oversub_set, fabric_unknown;
	enum mt_dist dist;
	struct mt_sim_params sp;
	double nvl, nic;
};

/* -1: go on; else the exit code (help printed, or bad input reported). */
static int parse_args(int argc, char **argv, const char *cmd, bool simulate_cmd, struct args *a)
{
	char err[MT_ERRLEN];
	int c, rc;

	memset(a, 0, sizeof(*a));
	a->spec = "auto";
	a->routing = "uniform";
	a->rg = -1;
	a->sim = simulate_cmd;
	mt_sim_default_params(&a->sp);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_NODES: a->nodes = optarg; break;
		case O_TPN:
			if ((a->tpn = parse_int(optarg)) < 1)
				return bad(cmd, "bad value --tasks-per-node=%s (valid: a positive integer)", optarg);
			break;
		case O_XML: a->xml = optarg; break;
		case O_PRESET: a->preset = optarg; break;
		case O_DOMAINS: a->dfile = optarg; break;
		case O_CPUS: a->cpus = optarg; break;
		case O_SPEC: a->spec = optarg; break;
		case O_JSON: a->json = true; break;
		case O_SIM: a->sim = true; break;
		case O_DIST:
			if (mt_dist_parse(optarg, &a->dist, err, sizeof(err)) || strcspn(optarg, ":,") != strlen(optarg))
				return bad(cmd, "bad value --distribution=%s (valid: block, cyclic)", optarg);
			break;
		case 'h':
		case O_HELP: fputs(simulate_cmd ? sim_usage : plan_usage, stdout); return 0;
		case O_TOKENS: if ((rc = parse_num(cmd, "--tokens", optarg, 1, &a->sp.tokens))) return rc; a->sim_opt = true; break;
		case O_HIDDEN: if ((rc = parse_num(cmd, "--hidden", optarg, 1, &a->sp.hidden))) return rc; a->sim_opt = true; break;
		case O_TOPK: if ((rc = parse_num(cmd, "--topk", optarg, 1, &a->sp.topk))) return rc; a->sim_opt = true; break;
		case O_BYTES: if ((rc = parse_num(cmd, "--bytes", optarg, 0.125, &a->sp.bytes))) return rc; a->sim_opt = true; break;
		/* the fabric: the plan's (like plugstack fabric=) and the simulation's */
		case O_NVL: if ((rc = parse_num(cmd, "--nvlink-gbs", optarg, 0.001, &a->nvl))) return rc; break;
		case O_NIC: if ((rc = parse_num(cmd, "--nic-gbs", optarg, 0.001, &a->nic))) return rc; break;
		case O_OVERSUB: if ((rc = parse_num(cmd, "--oversub", optarg, 1, &a->sp.oversub))) return rc; a->oversub_set = true; break;
		case O_NOFAB: a->fabric_unknown = true; a->sim_opt = true; break;
		case O_ROUTING:
			if (strcmp(optarg, "uniform") && strcmp(optarg, "group"))
				return bad(cmd, "bad value --routing=%s (valid: uniform, group)", optarg);
			a->routing = optarg;
			a->sim_opt = true;
			break;
		case O_RG:
			if ((a->rg = parse_int(optarg)) < 1)
				return bad(cmd, "bad value --route-groups=%s (valid: a positive integer)", optarg);
			a->sim_opt = true;
			break;
		default:
			fprintf(stderr, "moetopo %s: unknown or incomplete option '%s' (see moetopo %s --help)\n", cmd,
				argv[optind - 1], cmd);
			return 2;
		}
	}
	if (optind < argc)
		return bad(cmd, "unexpected argument '%s' (options only; see --help)", argv[optind]);
	if (a->sim_opt && !a->sim)
		return bad(cmd, "%s", "simulation options need --simulate (or use moetopo simulate)");
	if ((a->nic > 0 || a->nvl > 0) && !a->oversub_set && !a->sim)
		return bad(cmd, "%s", "--nic-gbs and --nvlink-gbs describe the fabric with --oversub N (or simulate with --simulate)");
	return -1;
}

/* The job the options describe: nodes, models, tasks, domains, CPUs, distribution.  0, or the exit code. */
static int build_job(const char *cmd, const struct args *a, const struct mt_spec *s, struct cli_job *cj)
{
	char err[MT_ERRLEN];

	if (mt_hostlist_expand(a->nodes, &cj->names, &cj->n, err, sizeof(err)))
		return bad(cmd, "%s", err);
	cj->tasks = calloc((size_t)cj->n, sizeof(int));
	cj->models = calloc((size_t)cj->n, sizeof(*cj->models));
	if (!cj->tasks || !cj->models)
		return bad(cmd, "%s", "out of memory") - 1;
	if (a->preset) {
		struct mt_node *m;
		cj->owned = calloc(1, sizeof(*cj->owned));
		if (!cj->owned || mt_preset_node(a->preset, &m, err, sizeof(err)))
			return bad(cmd, "%s", cj->owned ? err : "out of memory");
		cj->owned[cj->n_owned++] = m;
		for (int i = 0; i < cj->n; i++)
			cj->models[i] = m;
	} else if (load_models(cj, cmd, a->xml))
		return 2;
	if (a->dfile && mt_domains_load(a->dfile, &cj->domains, err, sizeof(err)))
		return bad(cmd, "%s", err);
	for (int i = 0; i < cj->n; i++) {
		const struct mt_node *m = cj->models[i];
		cj->tasks[i] = a->tpn ? a->tpn : m->n_gpus > 0 ? m->n_gpus : (m->n_numa > 0 ? m->n_numa : 1);
	}
	if (a->cpus) {
		cj->allowed = calloc((size_t)cj->n, sizeof(char *));
		if (!cj->allowed)
			return 1;
		/* validate the list once: a bad --cpus is bad input, not a silent "all" */
		unsigned char *mask = malloc(1 << 20);
		int k = mask ? mt_cpulist_parse(a->cpus, mask, 1 << 20) : -1;
		free(mask);
		if (k <= 0)
			return bad(cmd, "bad --cpus '%s' (valid: a cpu list such as 0-63,128-191)", a->cpus);
		for (int i = 0; i < cj->n; i++)
			cj->allowed[i] = a->cpus;
	}
	if (a->dist == MT_DIST_CYCLIC && !(cj->procids = mt_dist_procids(a->dist, cj->tasks, cj->n)))
		return bad(cmd, "%s", "out of memory") - 1;
	cj->job.n_nodes = cj->n;
	cj->job.nodes = (const char *const *)cj->names;
	cj->job.tasks = cj->tasks;
	cj->job.procids = (const int *const *)cj->procids;
	cj->job.models = cj->models;
	cj->job.domains = cj->domains;
	cj->job.allowed_cpus = cj->allowed;
	cj->job.spec = *s;
	if (a->oversub_set && !a->fabric_unknown) /* what plugstack fabric=oversub:N,nic:X,nvlink:Y gives the plugin */
		cj->job.fabric = (struct mt_fabric){a->sp.oversub, a->nic, a->nvl};
	return 0;
}

static void print_sim_json(const struct mt_sim_params *sp, const struct mt_sim_result *a,
			   const struct mt_sim_result *b)
{
	const struct mt_sim_result *r[2] = {a, b};
	const char *nm[2] = {"plan", "default"};
	double ratio = a->total_us > 0 ? b->total_us / a->total_us : 1;
	double mean_ratio = a->mean_group_us > 0 ? b->mean_group_us / a->mean_group_us : 1;

	printf("{\"schema\":\"moetopo-simulate/1\",\"params\":{\"tokens\":%g,\"hidden\":%g,\"topk\":%g,\"bytes\":%g,\"nvlink_gbs\":%g,"
	       "\"nic_gbs\":%g,\"oversub\":%g,\"route_groups\":%d},\n",
	       sp->tokens, sp->hidden, sp->topk, sp->bytes, sp->nvlink_gbs, sp->nic_gbs, sp->oversub, sp->route_groups);
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
}

static void print_sim_text(const struct mt_sim_params *sp, const struct mt_sim_result *a,
			   const struct mt_sim_result *b, bool after_plan)
{
	const struct mt_sim_result *r[2] = {a, b};
	const char *nm[2] = {"moetopo plan", "slurm default"};
	double ratio = a->total_us > 0 ? b->total_us / a->total_us : 1;
	double mean_ratio = a->mean_group_us > 0 ? b->mean_group_us / a->mean_group_us : 1;

	printf("%sMoE all-to-all per layer: %g tokens/GPU, hidden %g, top-%g, %g B/element, NVLink %g GB/s,"
	       " NIC %g GB/s per rail, spine oversubscription %g, routing %s",
	       after_plan ? "\n" : "", sp->tokens, sp->hidden, sp->topk, sp->bytes, sp->nvlink_gbs, sp->nic_gbs,
	       sp->oversub, sp->route_groups ? "group-limited" : "uniform");
	if (sp->route_groups)
		printf(" (M=%d)", sp->route_groups);
	printf("\n%-15s %12s %12s %12s %12s %13s %13s %13s %8s\n", "layout", "dispatch_us", "combine_us",
	       "total_us", "mean_grp_us", "local_groups", "nvlink_local", "rail_aligned", "max_dom");
	for (int k = 0; k < 2; k++)
		printf("%-15s %12.1f %12.1f %12.1f %12.1f %6d/%-6d %12.1f%% %12.1f%% %8d\n", nm[k],
		       r[k]->dispatch_us, r[k]->combine_us, r[k]->total_us, r[k]->mean_group_us,
		       r[k]->summary.ep_groups_local,
		       r[k]->summary.ep_groups, 100 * r[k]->summary.nvlink_local_fraction,
		       100 * r[k]->summary.rail_aligned_fraction, r[k]->summary.max_domains_per_group);
	printf("spine (busiest domain's uplinks, per direction): plan %.1f us, default %.1f us; groups it slows:"
	       " plan %d, default %d\n",
	       a->spine_us_max, b->spine_us_max, a->spine_bound_groups, b->spine_bound_groups);
	printf("speedup (default / plan): slowest group %.2fx, mean over groups %.2fx\n", ratio, mean_ratio);
	printf("total_us: dispatch + combine of the slowest EP group, which gates the step; mean_grp_us: the\n"
	       "same averaged over EP groups (fabric load)\n");
}

/* `simulate` for the plan and for Slurm's default layout of the same job. */
static int simulate(const char *cmd, struct args *a, const struct cli_job *cj, const struct mt_plan *p,
		    bool after_plan)
{
	char err[MT_ERRLEN];
	struct mt_sim_result x, y;
	bool gb = a->preset && !strncmp(a->preset, "gb", 2);

	a->sp.nvlink_gbs = a->nvl > 0 ? a->nvl : gb ? 900 : 450;
	a->sp.nic_gbs = a->nic > 0 ? a->nic : a->preset && !strcmp(a->preset, "gb300-nvl72-tray") ? 100 : 50;
	if (!strcmp(a->routing, "group")) {
		a->sp.route_groups = a->rg > 0 ? a->rg : p->spec.route_groups;
		if (a->sp.route_groups <= 0)
			return bad(cmd, "%s", "--routing group needs --route-groups M or route-groups=M in the spec");
	}
	if (mt_sim_plan(p, &a->sp, &x, err, sizeof(err)) || mt_sim_default(&cj->job, p, &a->sp, &y, err, sizeof(err)))
		return bad(cmd, "%s", err);
	if (a->json)
		print_sim_json(&a->sp, &x, &y);
	else
		print_sim_text(&a->sp, &x, &y, after_plan);
	return 0;
}

static int run(int argc, char **argv, bool simulate_cmd)
{
	const char *cmd = simulate_cmd ? "simulate" : "plan";
	char err[MT_ERRLEN];
	struct cli_job cj = {0};
	struct mt_plan *p = NULL;
	struct mt_spec s;
	struct args a;
	int rc = parse_args(argc, argv, cmd, simulate_cmd, &a);

	if (rc >= 0)
		return rc;
	if (mt_spec_parse(a.spec, &s, err, sizeof(err)))
		return bad(cmd, "%s", err);
	if (s.mode == MT_MODE_HELP) {
		fputs(mt_spec_help(), stdout);
		return 0;
	}
	if (s.mode == MT_MODE_OFF)
		return bad(cmd, "%s", "--spec off plans nothing (valid: auto or key=value,...; --spec help)");
	if (!a.nodes)
		return bad(cmd, "%s", "--nodes HOSTLIST is required (e.g. --nodes 'gb-r[01-04]-n[01-18]')");
	if (!!a.xml == !!a.preset)
		return bad(cmd, "%s", "give exactly one of --node-xml FILE and --preset NAME");
	if ((rc = build_job(cmd, &a, &s, &cj)))
		goto out;
	if ((rc = mt_plan_build(&cj.job, &p, err, sizeof(err)))) {
		bad(cmd, "%s", err);
		rc = rc == MT_ENOMEM ? 1 : 2;
		goto out;
	}
	if (!simulate_cmd) {
		if (a.json && !a.sim)
			mt_plan_print_json(p, stdout);
		else if (!a.json)
			mt_plan_print(p, stdout);
	}
	rc = a.sim ? simulate(cmd, &a, &cj, p, !simulate_cmd) : 0;
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
