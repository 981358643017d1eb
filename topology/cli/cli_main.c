/* cli_main.c - `moetopo COMMAND ...`: routes to one command per file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} commands[] = {
	{"show", mt_cli_show, "GPU/NIC matrix, CPU affinity and rails of this machine or a topology file"},
	{"export", mt_cli_export, "write this machine's hwloc XML (cache it per node for the plugin)"},
	{"plan", mt_cli_plan, "rank-to-GPU/NIC/CPU plan for a job: NVLink-local EP groups, aligned rails"},
	{"simulate", mt_cli_simulate, "estimated MoE all-to-all time of the plan vs Slurm's default layout"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: moetopo COMMAND [OPTIONS]   (moetopo COMMAND --help for details)\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].what);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("moetopo " PACKAGE_VERSION "\n");
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "moetopo: unknown command '%s' (valid: show, export, plan, simulate)\n", argv[1]);
	return 2;
}
