/* slurm.c - Slurm mode: one moe-launch per task (srun moe-launch -- PROGRAM).
 *
 * With the moe_topology plugin the task already has its binding and the MOE_* contract; without
 * it the contract is derived from SLURM_* (no topology-aware layout: a warning says so).  Then the
 * rendezvous (TCP to rank 0 on MOE_MASTER_ADDR:MOE_MASTER_PORT, or PMI2 when the step runs with
 * srun --mpi=pmi2) gives every rank the data endpoints, which go to the program in MOE_COMM_FD /
 * MOE_COMM_PEERS / MOE_COMM_JOB, and moe-launch becomes the program.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm_rdv.h"
#include "launcher.h"

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);
	char *end;
	if (!v || !*v)
		return def;
	long x = strtol(v, &end, 10);
	return *end ? def : (int)x;
}

/* The fallback's layout from --spec: ep, experts, route-groups and export apply; tp/pp are the plan's. */
static int fallback_spec(const char *text, struct mt_task *t, char *err, size_t errlen)
{
	struct mt_spec s;
	mt_spec_default(&s);
	if (!text)
		return 0;
	if (mt_spec_parse(text, &s, err, errlen))
		return -1;
	if (s.tp > 1 || s.pp > 1) {
		snprintf(err, errlen, "--spec '%s': tp and pp need the plugin's plan; Slurm's layout takes ep, experts, "
			 "route-groups and export", text);
		return -1;
	}
	if (s.mode == MT_MODE_SPEC) {
		t->slurm.ep = s.ep;
		t->slurm.experts = s.experts;
		t->slurm.route_groups = s.route_groups;
	}
	t->torch = s.export_ == MT_EXPORT_TORCH;
	return 0;
}

/* The contract from SLURM_* when the plugin did not run: Slurm's own layout (mt_contract_env without a
 * plan: EP groups of consecutive ranks from --spec, else one group; nodes as domains unless --domains
 * names them), with the plugin's port rule so both ends agree. */
static int fallback_contract(const struct ml_opts *o, struct mt_env *e, char *err, size_t errlen)
{
	const char *nl = getenv("SLURM_STEP_NODELIST");
	char **names = NULL;
	int count = 0, *tasks = NULL, node = env_int("SLURM_NODEID", 0), rc = -1;
	struct mt_task t = {.procid = env_int("SLURM_PROCID", -1)};
	struct mt_domains *dm = NULL;

	t.slurm.world = env_int("SLURM_STEP_NUM_TASKS", env_int("SLURM_NTASKS", -1));
	if (t.procid < 0 || t.slurm.world < 1 || t.procid >= t.slurm.world) {
		snprintf(err, errlen, "SLURM_PROCID/SLURM_NTASKS missing or inconsistent (%d of %d)", t.procid,
			 t.slurm.world);
		return -1;
	}
	if (fallback_spec(o->spec, &t, err, errlen))
		return -1;
	if (!nl || !*nl)
		nl = getenv("SLURM_NODELIST");
	if (!nl) {
		snprintf(err, errlen, "SLURM_STEP_NODELIST is not set: cannot find rank 0's node");
		return -1;
	}
	if (mt_hostlist_expand(nl, &names, &count, err, errlen))
		return -1;
	if (node < 0 || node >= count) {
		snprintf(err, errlen, "SLURM_NODEID=%d is not a node of SLURM_STEP_NODELIST (%d nodes)", node, count);
		goto out;
	}
	if (mt_tasks_per_node_parse(getenv("SLURM_STEP_TASKS_PER_NODE"), count, &tasks, err, errlen))
		goto out;
	if (o->domains) {
		char why[ML_ERRLEN / 2];
		if (mt_domains_load(o->domains, &dm, why, sizeof(why))) {
			snprintf(err, errlen, "--domains %.200s: %s", o->domains, why);
			goto out;
		}
		if (!(t.slurm.domain = mt_domains_lookup(dm, names[node]))) {
			snprintf(err, errlen, "--domains %s: node '%s' is in no domain of the map", o->domains, names[node]);
			goto out;
		}
	}
	t.slurm.local_rank = env_int("SLURM_LOCALID", 0);
	t.slurm.local_size = tasks[node];
	t.slurm.node_rank = node;
	t.slurm.node_name = names[node];
	t.master_addr = names[0]; /* task 0 is on the step's first node under block and cyclic */
	t.master_port = mt_contract_port(getenv("SLURM_STEP_RESV_PORTS"), (unsigned)env_int("SLURM_JOB_ID", 0),
					 (unsigned)env_int("SLURM_STEP_ID", 0));
	rc = mt_contract_env(NULL, &t, e, err, errlen) ? -1 : 0;
out:
	mt_domains_free(dm);
	free(tasks);
	mt_hostlist_free(names, count);
	return rc;
}

/* This node's address on the route to rank 0's node (a UDP connect sends nothing). */
static int local_addr_towards(const char *master, char *addr, size_t len, int *family)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *ai;
	if (getaddrinfo(master, "9", &hints, &ai) != 0)
		return -1;
	*family = ai->ai_family;
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = -1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, addr, len, NULL, 0, NI_NUMERICHOST) == 0)
		rc = 0;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}

static int rdv_pmi2(const char *maddr, int rank, int world, double timeout, struct tr_world *w, char *err,
		    size_t errlen)
{
	struct ml_pmi2 *p;
	int prank, psize, family = AF_INET, port;
	char addr[TR_ADDR_LEN], host[TR_HOST_LEN] = "", key[64], val[TR_HOST_LEN + TR_ADDR_LEN + 16];
	memset(w, 0, sizeof(*w));
	w->rank = rank;
	w->size = world;
	w->timeout = timeout;
	w->listen_fd = -1;
	if (ml_pmi2_init(&p, &prank, &psize, err, errlen) != 0)
		return -1;
	if (psize != world) {
		snprintf(err, errlen, "pmi2: the step has %d tasks but MOE_WORLD_SIZE is %d", psize, world);
		goto bad;
	}
	gethostname(host, sizeof(host) - 1);
	if (local_addr_towards(maddr, addr, sizeof(addr), &family) != 0) {
		snprintf(err, errlen, "cannot find this node's address towards rank 0's node '%s'", maddr);
		goto bad;
	}
	if (tr_listen(family, 0, false, &w->listen_fd, &port, err, errlen) != 0)
		goto bad;
	snprintf(key, sizeof(key), "moe-ep-%d", rank);
	char reach[TR_ADDR_LEN]; /* rank 0's name may be a loopback alias on its own node */
	tr_off_loopback(addr, family, reach, sizeof(reach));
	snprintf(val, sizeof(val), "%s@%s:%d", host, reach, port);
	if (ml_pmi2_put(p, key, val, err, errlen) || ml_pmi2_fence(p, err, errlen))
		goto bad;
	w->peers = calloc(world, sizeof(*w->peers));
	if (!w->peers) {
		snprintf(err, errlen, "out of memory");
		goto bad;
	}
	for (int r = 0; r < world; r++) {
		struct tr_peer *one;
		snprintf(key, sizeof(key), "moe-ep-%d", r);
		if (ml_pmi2_get(p, key, val, sizeof(val), err, errlen) || tr_peers_parse(val, 1, &one, err, errlen))
			goto bad;
		w->peers[r] = *one;
		free(one);
	}
	/* the same on every rank of this step, different for every step */
	snprintf(w->job, sizeof(w->job), "j%s.%s-%d", getenv("SLURM_JOB_ID") ? getenv("SLURM_JOB_ID") : "0",
		 getenv("SLURM_STEP_ID") ? getenv("SLURM_STEP_ID") : "0", w->peers[0].port);
	ml_pmi2_finalize(p);
	return 0;
bad:
	ml_pmi2_finalize(p);
	free(w->peers);
	w->peers = NULL;
	if (w->listen_fd >= 0)
		close(w->listen_fd);
	w->listen_fd = -1;
	return -1;
}

int ml_slurm(const struct ml_opts *o)
{
	struct mt_env e = { 0 };
	char err[ML_ERRLEN], maddr[256] = "";
	int mport = 0, rank, world;
	if (!(getenv("MOE_RANK") && getenv("MOE_WORLD_SIZE")) && getenv("SLURM_PROCID")) {
		if (fallback_contract(o, &e, err, sizeof(err)) != 0 || ml_env_apply(&e) != 0) {
			ml_warn("%s", e.n ? "cannot set the environment" : err);
			mt_env_free(&e);
			return 2;
		}
		if (!o->spec)
			ml_warn("warning: no moe_topology contract in this task (MOE_RANK unset: plugin not loaded or "
				"--moe-topology=off); using SLURM_PROCID/SLURM_NTASKS, no topology-aware layout is in effect");
		else if (o->verbose || env_int("SLURM_PROCID", -1) == 0)
			ml_warn("no moe_topology plan in this task: Slurm's own layout (rank = SLURM_PROCID, EP groups of "
				"%s consecutive ranks) from --spec %s", mt_env_get(&e, "MOE_EP_SIZE"), o->spec);
	} else if ((o->spec || o->domains) && getenv("MOE_RANK")) {
		ml_warn("--%s applies only without the plugin's plan, but this task has one (MOE_RANK=%s); "
			"run with --moe-topology=off, or drop --%s and use srun --moe-topology=SPEC",
			o->spec ? "spec" : "domains", getenv("MOE_RANK"), o->spec ? "spec" : "domains");
		return 2;
	} else if (!getenv("MOE_RANK") || !getenv("MOE_WORLD_SIZE")) {
		ml_warn("not inside a Slurm step (no MOE_RANK, no SLURM_PROCID): start N local ranks with "
			ML_NAME " --nproc N -- PROGRAM, or run it under srun (see " ML_NAME " --help)");
		return 2;
	}
	mt_env_free(&e);
	snprintf(maddr, sizeof(maddr), "%s", getenv("MOE_MASTER_ADDR") ? getenv("MOE_MASTER_ADDR") : "");
	mport = env_int("MOE_MASTER_PORT", 0);
	if (o->master_addr) {
		snprintf(maddr, sizeof(maddr), "%s", o->master_addr);
		setenv("MOE_MASTER_ADDR", maddr, 1);
	}
	if (o->master_port) {
		mport = o->master_port;
		char v[16];
		snprintf(v, sizeof(v), "%d", mport);
		setenv("MOE_MASTER_PORT", v, 1);
	}
	rank = env_int("MOE_RANK", -1);
	world = env_int("MOE_WORLD_SIZE", -1);
	if (world < 1 || rank < 0 || rank >= world) {
		ml_warn("MOE_RANK=%s / MOE_WORLD_SIZE=%s are not a rank inside the world", getenv("MOE_RANK"),
			getenv("MOE_WORLD_SIZE"));
		return 2;
	}
	if (o->transport)
		setenv("MOE_TRANSPORT", o->transport, 1);
	char v[64];
	if (o->timeout_set) {
		snprintf(v, sizeof(v), "%g", o->timeout);
		setenv("MOE_COMM_TIMEOUT", v, 1);
	}
	setenv("MOE_LAUNCHER", "slurm", 1);
	if (world > 1) {
		enum ml_rdv mode = o->rdv;
		if (mode == ML_RDV_AUTO)
			mode = getenv("PMI_FD") && *getenv("PMI_FD") ? ML_RDV_PMI2 : ML_RDV_TCP;
		if (!maddr[0] || (mode == ML_RDV_TCP && (mport <= 0 || mport > 65535))) {
			ml_warn("no rendezvous address: MOE_MASTER_ADDR='%s' MOE_MASTER_PORT=%d (set by the plugin, or give "
				"--master-addr/--master-port)", maddr, mport);
			return 2;
		}
		struct tr_world w;
		int rc = mode == ML_RDV_PMI2 ? rdv_pmi2(maddr, rank, world, o->timeout, &w, err, sizeof(err))
					     : tr_rdv_run(maddr, mport, rank, world, o->timeout, &w, err, sizeof(err));
		if (rc != 0) {
			ml_warn("rank %d: %s", rank, err);
			return 1;
		}
		char *text = tr_peers_format(w.peers, world), *table;
		int pfd;
		if (!text || !(table = tr_peers_export(text, &pfd, err, sizeof(err)))) {
			ml_warn("%s", text ? err : "out of memory");
			return 1;
		}
		free(text);
		setenv("MOE_COMM_PEERS", table, 1);
		setenv("MOE_COMM_JOB", w.job, 1);
		snprintf(v, sizeof(v), "%d", w.listen_fd);
		setenv("MOE_COMM_FD", v, 1);
		fcntl(w.listen_fd, F_SETFD, 0); /* kept open across exec: the trainer accepts on it */
		if (o->verbose && rank == 0)
			ml_warn("rendezvous (%s) done: %d ranks", mode == ML_RDV_PMI2 ? "pmi2" : "tcp", world);
		free(table);
		free(w.peers);
	}
	fflush(NULL);
	execvp(o->argv[0], o->argv);
	ml_warn("cannot run '%s': %s", o->argv[0], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
