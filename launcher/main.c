/* main.c - moe-launch: options, then standalone mode (--nproc) or Slurm mode (one launcher per task).
 *
 * Bad input gets one line on stderr and exit 2; everything else is the child's business: in
 * standalone mode moe-launch returns the first failing rank's exit code, in Slurm mode it becomes
 * the trainer (exec).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "launcher.h"

void ml_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, ML_NAME ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " ML_NAME " [OPTIONS] -- PROGRAM [ARGS...]\n"
		"Starts a topology-aware multi-rank MoE training program.\n"
		"\n"
		"Standalone (one machine, no Slurm):\n"
		"  -n, --nproc N          start N ranks here, planned by the same planner as the Slurm plugin on\n"
		"                         this machine's node model, each bound to its cores and given the rank\n"
		"                         contract; signals are forwarded, all ranks stop when one fails, and the\n"
		"                         exit code is the first failing rank's\n"
		"  -s, --spec SPEC        layout spec (default: MOE_TOPOLOGY, else auto), e.g. ep=2,experts=4;\n"
		"                         --spec help prints the grammar\n"
		"      --grace SEC        seconds between SIGTERM and SIGKILL when stopping ranks (default 10)\n"
		"      --dry-run          print each rank's CPU binding and environment, start nothing\n"
		"\n"
		"Slurm (srun " ML_NAME " -- PROGRAM, one launcher per task):\n"
		"  reads the moe_topology plugin's MOE_* contract (falls back to SLURM_* with a warning), runs the\n"
		"  rendezvous on MOE_MASTER_ADDR:MOE_MASTER_PORT and execs PROGRAM\n"
		"  -s, --spec SPEC        without the plugin's plan (--moe-topology=off): Slurm's own layout with\n"
		"                         this spec's ep, experts, route-groups, export (rank = SLURM_PROCID, EP\n"
		"                         groups of consecutive ranks), to compare it with the plan\n"
		"      --domains FILE     without the plugin's plan: MOE_DOMAIN from this domain map (topology.conf\n"
		"                         or \"node domain\" lines; default: each node its own domain)\n"
		"      --rendezvous MODE  auto (pmi2 when PMI_FD is set, i.e. srun --mpi=pmi2), tcp or pmi2\n"
		"      --master-addr HOST override MOE_MASTER_ADDR (rank 0's host)\n"
		"      --master-port PORT override MOE_MASTER_PORT\n"
		"\n"
		"Both modes:\n"
		"  -t, --transport KIND   " TR_COMM_KINDS "\n"
		"                         (exported as MOE_TRANSPORT; auto = shm on one node)\n"
		"      --timeout SEC      communication timeout, MOE_COMM_TIMEOUT (default 60): a dead or silent\n"
		"                         rank is reported by the others within it\n"
		"  -v, --verbose          print the plan and each rank's binding\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n"
		"\n"
		"The environment each rank receives is described in doc/launcher.md.\n");
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, ML_NAME ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see " ML_NAME " --help)\n");
	va_end(ap);
	return 2;
}

static int parse_num(const char *s, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_GRACE = 256, O_DRY, O_RDV, O_MADDR, O_MPORT, O_TIMEOUT, O_DOMAINS };
	static const struct option longs[] = {
		{ "nproc", required_argument, NULL, 'n' },    { "spec", required_argument, NULL, 's' },
		{ "transport", required_argument, NULL, 't' }, { "timeout", required_argument, NULL, O_TIMEOUT },
		{ "grace", required_argument, NULL, O_GRACE }, { "dry-run", no_argument, NULL, O_DRY },
		{ "rendezvous", required_argument, NULL, O_RDV }, { "master-addr", required_argument, NULL, O_MADDR },
		{ "master-port", required_argument, NULL, O_MPORT }, { "verbose", no_argument, NULL, 'v' },
		{ "domains", required_argument, NULL, O_DOMAINS },
		{ "help", no_argument, NULL, 'h' },           { "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ml_opts o = { .timeout = 60, .grace = 10 };
	double v;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+:n:s:t:vhV", longs, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_num(optarg, 1, 4096, &v) || v != (int)v)
				return bad("--nproc '%s' is not a whole number of ranks from 1 to 4096", optarg);
			o.nproc = (int)v;
			break;
		case 's':
			o.spec = optarg;
			break;
		case 't':
			if (!tr_comm_kind_known(optarg))
				return bad("--transport '%s' is not one of " TR_COMM_KINDS, optarg);
			o.transport = optarg;
			break;
		case O_TIMEOUT:
			if (parse_num(optarg, 0.001, 1e6, &o.timeout))
				return bad("--timeout '%s' is not a number of seconds > 0", optarg);
			o.timeout_set = true;
			break;
		case O_GRACE:
			if (parse_num(optarg, 0, 1e6, &o.grace))
				return bad("--grace '%s' is not a number of seconds >= 0", optarg);
			break;
		case O_DRY:
			o.dry_run = true;
			break;
		case O_RDV:
			if (!strcmp(optarg, "auto"))
				o.rdv = ML_RDV_AUTO;
			else if (!strcmp(optarg, "tcp"))
				o.rdv = ML_RDV_TCP;
			else if (!strcmp(optarg, "pmi2"))
				o.rdv = ML_RDV_PMI2;
			else
				return bad("--rendezvous '%s' is not one of auto, tcp, pmi2", optarg);
			break;
		case O_MADDR:
			o.master_addr = optarg;
			break;
		case O_DOMAINS:
			o.domains = optarg;
			break;
		case O_MPORT:
			if (parse_num(optarg, 1, 65535, &v) || v != (int)v)
				return bad("--master-port '%s' is not a port number from 1 to 65535", optarg);
			o.master_port = (int)v;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf(ML_NAME " (moetopo) %s\n", PACKAGE_VERSION);
			return 0;
		case ':':
			return bad("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return bad("unknown option '-%c'", optopt);
			return bad("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (o.spec && !strcmp(o.spec, "help")) {
		printf("%s", mt_spec_help());
		return 0;
	}
	if (optind >= argc)
		return bad("no program to start: " ML_NAME " [OPTIONS] -- PROGRAM [ARGS...]");
	o.argv = argv + optind;
	/* Ranks share cores with each other's OpenMP threads: spinning idle threads starve their
	 * neighbours (44x slower steps measured with 4 ranks x 2 threads on 2 cores).  A user's own
	 * setting wins. */
	setenv("OMP_WAIT_POLICY", "passive", 0);
	if (o.nproc > 0) {
		if (o.domains)
			return bad("--domains is for Slurm mode without the plugin's plan; standalone is one node");
		return ml_standalone(&o);
	}
	return ml_slurm(&o);
}
