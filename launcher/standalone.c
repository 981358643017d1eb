/* standalone.c - `moe-launch --nproc N`: N ranks on this machine, no Slurm.
 *
 * Plans with the same planner as the plugin, on this machine's live node model (a node without GPUs
 * gives a CPU-only plan: ranks bound to NUMA nodes/cores), opens each rank's data socket and hands
 * the table over in the environment (no rendezvous needed: the launcher knows every endpoint), then
 * supervises like torchrun: signals are forwarded, the first rank to fail stops the others (SIGTERM,
 * SIGKILL after --grace), and its exit code (128+signal when killed) is moe-launch's.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "comm_rdv.h"
#include "launcher.h"

struct rank_proc {
	pid_t pid;
	bool alive;
	int listen_fd;
	char *cpus;       /* binding, NULL = none */
	struct mt_env env;
};

static const int fwd_signals[] = { SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT };

static void make_job_id(char *buf, size_t len)
{
	snprintf(buf, len, "s%012llx", (unsigned long long)tr_random64() & 0xffffffffffffull);
}

/* Ranks unlink their segment once all mapped it; this catches a job killed before that point. */
static void remove_shm(const char *job)
{
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "moe-%s-", job);
	DIR *d = opendir("/dev/shm");
	for (struct dirent *e; d && (e = readdir(d));)
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			char name[300];
			snprintf(name, sizeof(name), "/%s", e->d_name);
			shm_unlink(name);
		}
	if (d)
		closedir(d);
}

static void describe(int status, char *buf, size_t len, int *code)
{
	if (WIFSIGNALED(status)) {
		*code = 128 + WTERMSIG(status);
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	} else {
		*code = WEXITSTATUS(status);
		snprintf(buf, len, "exited with code %d", *code);
	}
}

static void signal_all(struct rank_proc *rp, int n, int sig)
{
	for (int r = 0; r < n; r++)
		if (rp[r].alive)
			kill(-rp[r].pid, sig); /* the rank's process group: its own children too */
}

static void child(const struct ml_opts *o, struct rank_proc *rp, int n, int r, const sigset_t *old)
{
	for (int q = 0; q < n; q++)
		if (q != r && rp[q].listen_fd >= 0)
			close(rp[q].listen_fd);
	setpgid(0, 0);
	for (size_t i = 0; i < sizeof(fwd_signals) / sizeof(fwd_signals[0]); i++)
		signal(fwd_signals[i], SIG_DFL);
	sigprocmask(SIG_SETMASK, old, NULL);
	char err[ML_ERRLEN];
	if (rp[r].cpus && rp[r].cpus[0] && mt_cpus_bind(rp[r].cpus, err, sizeof(err)) != 0) {
		ml_warn("rank %d: %s", r, err);
		_exit(126);
	}
	/* a contract from an enclosing launch (say, moe-launch inside a Slurm task) must not leak into
	 * this one: drop what the plan below may leave unset */
	static const char *stale[] = { "MOE_GPU_PCI", "MOE_NET_DEVICES", "MOE_COMM_PEERS",
				       "MOE_COMM_FD", "MOE_COMM_JOB", "RANK", "LOCAL_RANK", "WORLD_SIZE",
				       "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT" };
	for (size_t i = 0; i < sizeof(stale) / sizeof(stale[0]); i++)
		unsetenv(stale[i]);
	fcntl(rp[r].listen_fd, F_SETFD, 0); /* the one fd the trainer inherits */
	if (ml_env_apply(&rp[r].env) != 0) {
		ml_warn("rank %d: cannot set the environment: %s", r, strerror(errno));
		_exit(126);
	}
	execvp(o->argv[0], o->argv);
	ml_warn("cannot run '%s': %s", o->argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

static int supervise(const struct ml_opts *o, struct rank_proc *rp, int n, const sigset_t *set)
{
	int alive = n, exit_code = 0, first = -1;
	double kill_at = 0; /* > 0: SIGKILL whoever is left at this time */
	while (alive > 0) {
		struct timespec ts = { 1, 0 };
		if (kill_at > 0) {
			double left = kill_at - tr_now();
			if (left < 0)
				left = 0;
			ts.tv_sec = (time_t)left;
			ts.tv_nsec = (long)((left - ts.tv_sec) * 1e9);
		}
		siginfo_t si;
		int sig = sigtimedwait(set, &si, &ts);
		if (sig > 0 && sig != SIGCHLD) {
			if (o->verbose)
				ml_warn("forwarding %s to %d rank%s", strsignal(sig), alive, alive == 1 ? "" : "s");
			bool stop = sig != SIGUSR1 && sig != SIGUSR2;
			if (stop && kill_at > 0) { /* asked twice (Ctrl-C again): do not wait out the grace */
				ml_warn("%s again: killing %d rank%s", strsignal(sig), alive, alive == 1 ? "" : "s");
				signal_all(rp, n, SIGKILL);
			} else {
				signal_all(rp, n, sig);
				if (stop)
					kill_at = tr_now() + o->grace;
			}
		}
		int st;
		pid_t pid;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			int r = 0;
			while (r < n && rp[r].pid != pid)
				r++;
			if (r == n || !rp[r].alive)
				continue;
			rp[r].alive = false;
			alive--;
			char what[128];
			int code;
			describe(st, what, sizeof(what), &code);
			if (code != 0 && first < 0) {
				first = r;
				exit_code = code;
				if (alive > 0)
					ml_warn("rank %d (pid %d) %s; stopping the other %d rank%s", r, (int)pid, what, alive,
						alive == 1 ? "" : "s");
				else
					ml_warn("rank %d (pid %d) %s", r, (int)pid, what);
				signal_all(rp, n, SIGTERM);
				if (kill_at == 0)
					kill_at = tr_now() + o->grace;
			} else if (o->verbose) {
				ml_warn("rank %d (pid %d) %s", r, (int)pid, what);
			}
		}
		if (kill_at > 0 && tr_now() >= kill_at && alive > 0) {
			ml_warn("%d rank%s still running after %g s: killing", alive, alive == 1 ? "" : "s", o->grace);
			signal_all(rp, n, SIGKILL);
			kill_at = tr_now() + 3600; /* SIGKILL cannot be ignored: just reap */
		}
	}
	return exit_code;
}

/* The plan for N ranks on this machine's live node model; *plan stays NULL with spec=off. */
static int plan_here(const struct mt_spec *spec, int n, const char *host, struct mt_node **node, struct mt_plan **plan)
{
	char err[MT_ERRLEN], *allowed;
	int rc;

	if (spec->mode == MT_MODE_OFF)
		return 0;
	if (mt_node_load_live(0, node, err, sizeof(err)) != 0) {
		ml_warn("cannot read this machine's topology: %s (--spec off starts the ranks without a plan)", err);
		return 1;
	}
	allowed = mt_cpus_allowed();
	const char *nodes[1] = { host };
	const char *allowed_l[1] = { allowed };
	const struct mt_node *models[1] = { *node };
	int tasks[1] = { n };
	struct mt_job job = { .n_nodes = 1, .nodes = nodes, .tasks = tasks, .models = models,
			      .allowed_cpus = allowed_l, .spec = *spec };
	rc = mt_plan_build(&job, plan, err, sizeof(err));
	free(allowed);
	if (rc) {
		ml_warn("%s", err);
		return 2;
	}
	return 0;
}

/* Rank r's environment: the contract (the plan's, or Slurm-like ranks 0..n-1 with spec=off), then what
 * this launcher adds: its data socket, the peer table, the job id, the transport and timeout. */
static int rank_env(const struct ml_opts *o, const struct mt_plan *plan, const struct mt_node *node, int n, int r,
		    const char *host, int master_port, const char *table, const char *job, struct rank_proc *rp)
{
	char err[MT_ERRLEN], fd[16], timeout[32], tok[64][8];
	const char *tokens[64], *pci[64];
	struct mt_task t = { .procid = plan ? plan->by_rank[r] : r, .master_addr = "127.0.0.1",
			     .master_port = (unsigned)master_port,
			     .slurm = { .world = n, .local_rank = r, .local_size = n, .node_rank = 0, .node_name = host } };
	/* CUDA ordinals: the node's GPUs in PCI order, as CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA count them */
	for (int g = 0; node && g < node->n_gpus && g < 64; g++) {
		snprintf(tok[g], sizeof(tok[g]), "%d", g);
		tokens[g] = tok[g];
		pci[g] = node->gpus[g].pci;
		t.n_gpus = g + 1;
	}
	t.gpu_tokens = tokens;
	t.gpu_pci = pci;
	if (mt_contract_env(plan, &t, &rp->env, err, sizeof(err))) {
		ml_warn("rank %d: %s", r, err);
		return -1;
	}
	if (plan && plan->spec.cpu == MT_CPU_NUMA && plan->ranks[t.procid].cpuset &&
	    !(rp->cpus = strdup(plan->ranks[t.procid].cpuset)))
		return -1;
	snprintf(fd, sizeof(fd), "%d", rp->listen_fd);
	snprintf(timeout, sizeof(timeout), "%g", o->timeout);
	if (mt_env_add(&rp->env, "MOE_COMM_FD", true, fd) || mt_env_add(&rp->env, "MOE_COMM_PEERS", true, table) ||
	    mt_env_add(&rp->env, "MOE_COMM_JOB", true, job) || mt_env_add(&rp->env, "MOE_LAUNCHER", true, "standalone") ||
	    (o->transport && mt_env_add(&rp->env, "MOE_TRANSPORT", true, o->transport)) ||
	    (o->timeout_set && mt_env_add(&rp->env, "MOE_COMM_TIMEOUT", true, timeout))) {
		ml_warn("out of memory");
		return -1;
	}
	return 0;
}

/* Each rank's data socket and the peer table they all receive (the launcher knows every endpoint). */
static char *open_sockets(struct rank_proc *rp, int n, const char *host, int *peers_fd)
{
	char err[MT_ERRLEN], *table, *value;
	struct tr_peer *peers = calloc(n, sizeof(*peers));

	if (!peers) {
		ml_warn("out of memory");
		return NULL;
	}
	for (int r = 0; r < n; r++) {
		if (tr_listen(AF_INET, 0, true, &rp[r].listen_fd, &peers[r].port, err, sizeof(err)) != 0) {
			ml_warn("rank %d: %s", r, err);
			free(peers);
			return NULL;
		}
		snprintf(peers[r].host, sizeof(peers[r].host), "%s", host);
		snprintf(peers[r].addr, sizeof(peers[r].addr), "127.0.0.1");
	}
	table = tr_peers_format(peers, n);
	free(peers);
	value = table ? tr_peers_export(table, peers_fd, err, sizeof(err)) : NULL;
	if (!value)
		ml_warn("%s", table ? err : "out of memory");
	free(table);
	return value;
}

/* Starts the ranks and supervises them until the last one ended; the exit code is the job's. */
static int run_ranks(const struct ml_opts *o, struct rank_proc *rp, int n, const char *job)
{
	sigset_t set, old;
	int started = 0, rc;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < sizeof(fwd_signals) / sizeof(fwd_signals[0]); i++)
		sigaddset(&set, fwd_signals[i]);
	sigprocmask(SIG_BLOCK, &set, &old);
	fflush(NULL);
	for (int r = 0; r < n; r++) {
		pid_t pid = fork();
		if (pid < 0) {
			ml_warn("cannot start rank %d: %s", r, strerror(errno));
			break;
		}
		if (pid == 0)
			child(o, rp, n, r, &old);
		setpgid(pid, pid); /* also here: no window where a signal to the group misses it */
		rp[r].pid = pid;
		rp[r].alive = true;
		started++;
		if (o->verbose)
			ml_warn("rank %d: pid %d, cpus %s", r, (int)pid, rp[r].cpus && rp[r].cpus[0] ? rp[r].cpus : "-");
	}
	for (int r = 0; r < n; r++) { /* the ranks own their sockets now */
		close(rp[r].listen_fd);
		rp[r].listen_fd = -1;
	}
	if (started < n) {
		signal_all(rp, n, SIGKILL);
		for (int r = 0; r < n; r++)
			if (rp[r].alive)
				waitpid(rp[r].pid, NULL, 0);
		rc = 1;
	} else {
		rc = supervise(o, rp, n, &set);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	remove_shm(job);
	return rc;
}

int ml_standalone(const struct ml_opts *o)
{
	int n = o->nproc, rc = 1, peers_fd = -1, master_port = 0, mfd;
	char err[MT_ERRLEN], host[TR_HOST_LEN] = "localhost", job[32], *table = NULL;
	const char *text = o->spec ? o->spec : getenv("MOE_TOPOLOGY");
	struct mt_node *node = NULL;
	struct mt_plan *plan = NULL;
	struct rank_proc *rp = NULL;
	struct mt_spec spec;

	if (!text || !*text)
		text = "auto";
	mt_spec_default(&spec);
	if (mt_spec_parse(text, &spec, err, sizeof(err)) != 0) {
		ml_warn("%s", err);
		return 2;
	}
	if (spec.mode == MT_MODE_HELP) {
		printf("%s", mt_spec_help());
		return 0;
	}
	gethostname(host, sizeof(host) - 1);
	if (!(rp = calloc(n, sizeof(*rp)))) {
		ml_warn("out of memory");
		return 1;
	}
	for (int r = 0; r < n; r++)
		rp[r].listen_fd = -1;
	if ((rc = plan_here(&spec, n, host, &node, &plan)) != 0)
		goto out;
	rc = 1;
	if (plan && o->verbose)
		mt_plan_print(plan, stderr);
	make_job_id(job, sizeof(job));
	/* a free port for MOE_MASTER_PORT/MASTER_PORT: programs that run their own rendezvous use it */
	if (tr_listen(AF_INET, 0, true, &mfd, &master_port, err, sizeof(err)) == 0)
		close(mfd);
	if (!(table = open_sockets(rp, n, host, &peers_fd)))
		goto out;
	for (int r = 0; r < n; r++)
		if (rank_env(o, plan, node, n, r, host, master_port, table, job, &rp[r]))
			goto out;
	if (o->dry_run) {
		for (int r = 0; r < n; r++) {
			printf("rank %d cpus %s\n", r, rp[r].cpus && rp[r].cpus[0] ? rp[r].cpus : "-");
			ml_env_print(&rp[r].env, stdout);
		}
		rc = 0;
		goto out;
	}
	rc = run_ranks(o, rp, n, job);
out:
	for (int r = 0; r < n; r++) {
		if (rp[r].listen_fd >= 0)
			close(rp[r].listen_fd);
		free(rp[r].cpus);
		mt_env_free(&rp[r].env);
	}
	free(rp);
	free(table);
	if (peers_fd >= 0)
		close(peers_fd);
	mt_plan_free(plan);
	mt_node_free(node);
	return rc;
}
