/* cli_plan.c - placeholder until the planner work lands its commands. */
#include <stdio.h>
#include "cli.h"
int mt_cli_plan(int argc, char **argv) { fprintf(stderr, "moetopo: plan is not built yet\n"); return 1; }
int mt_cli_simulate(int argc, char **argv) { fprintf(stderr, "moetopo: simulate is not built yet\n"); return 1; }
