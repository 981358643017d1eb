/* test_plugin_parse.c - the plugin's pure parsers without Slurm: the strict plugstack.conf arguments,
 * the trusted-file rule for files read as root, the GPU lists taken from the job's environment, the
 * node names allowed into file names, Slurm releases, and where Slurm's topology puts a node.  The
 * sources are compiled in directly (they are static-free but
 * only linked into the plugin otherwise).
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"
#include "config.c"
#include "layout.c"
#include "slurmtopo.c"
#include "version.c"

static int parse(struct mtp_config *c, const char *a0, const char *a1, const char *a2)
{
	char *av[3] = {(char *)a0, (char *)a1, (char *)a2};
	int ac = a2 ? 3 : a1 ? 2 : a0 ? 1 : 0;
	return mtp_config_parse(ac, av, c);
}

static void test_config(void)
{
	struct mtp_config c;

	TAP_INT(parse(&c, NULL, NULL, NULL), 0, "no arguments: valid");
	tap_ok(!c.default_spec && !c.domains && !c.topology && c.nvml == MTP_NVML_AUTO && !c.strict,
	       "defaults: no default spec, no map, live topology, nvml=auto, strict=no");
	mtp_config_free(&c);

	TAP_INT(parse(&c, "default=ep=8,gpus=single", "topology=/c/%n.xml", "strict=yes"), 0, "three valid arguments");
	TAP_STR(c.default_spec, "ep=8,gpus=single", "default= kept verbatim");
	TAP_STR(c.topology, "/c/%n.xml", "topology= kept");
	tap_ok(c.strict, "strict=yes read");
	mtp_config_free(&c);

	TAP_INT(parse(&c, "domains=/etc/slurm/topology.conf", "bogus=1", NULL), -1, "unknown key is an error");
	tap_ok(strstr(c.error, "unknown argument 'bogus'") && strstr(c.error, "strict=yes|no"),
	       "the error names the key and the valid ones: %s", c.error);
	mtp_config_free(&c);

	TAP_INT(parse(&c, "strict=maybe", NULL, NULL), -1, "bad strict value");
	tap_ok(strstr(c.error, "(valid: yes, no)") != NULL, "lists yes, no: %s", c.error);
	mtp_config_free(&c);
	TAP_INT(parse(&c, "nvml=on", NULL, NULL), -1, "bad nvml value");
	tap_ok(strstr(c.error, "(valid: auto, off)") != NULL, "lists auto, off: %s", c.error);
	mtp_config_free(&c);
	TAP_INT(parse(&c, "nvml=off", "nvml=auto", NULL), -1, "repeated key is an error");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "domains=", NULL, NULL), -1, "empty path is an error");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "topology=/var/cache/node.xml", NULL, NULL), -1, "topology= without %%n is an error");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "default=ep=banana", NULL, NULL), -1, "default= is checked with the SPEC grammar");
	tap_ok(strstr(c.error, "ep=banana") != NULL, "and the planner's message is kept: %s", c.error);
	mtp_config_free(&c);
	TAP_INT(parse(&c, "strict", NULL, NULL), -1, "a key without '=' is an error");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "strict=yes", "default=ep=4", "bogus=1"), -1, "an error after valid keys");
	tap_ok(!c.default_spec && !c.strict, "leaves nothing half-applied (no default=, strict=no)");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "default=help", NULL, NULL), -1, "default=help is refused (every srun would stop)");
	tap_ok(strstr(c.error, "valid: off, auto") != NULL, "naming the valid defaults: %s", c.error);
	mtp_config_free(&c);
	TAP_INT(parse(&c, "default=off", NULL, NULL), 0, "default=off is fine");
	mtp_config_free(&c);
	/* fabric=: the site's spine oversubscription (and bandwidths) for the planner's objective */
	tap_ok(parse(&c, NULL, NULL, NULL) == 0 && c.fabric.oversub == 0, "no fabric=: the fabric is unknown");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "fabric=oversub:4,nic:100,nvlink:900", "strict=yes", NULL), 0, "fabric= with bandwidths");
	tap_ok(c.fabric.oversub == 4 && c.fabric.nic_gbs == 100 && c.fabric.nvlink_gbs == 900, "fabric= read");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "fabric=oversub:0.5", NULL, NULL), -1, "fabric oversubscription below 1 is refused");
	tap_ok(strstr(c.error, "plugstack.conf: fabric=oversub:0.5") && strstr(c.error, "oversub:N (N >= 1)"),
	       "naming the value and the valid form: %s", c.error);
	mtp_config_free(&c);
	TAP_INT(parse(&c, "fabric=oversub:2", "fabric=oversub:4", NULL), -1, "fabric= given twice");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "fabric=oversub:4", "bogus=1", NULL), -1, "an error after fabric=");
	tap_ok(c.fabric.oversub == 0 && strstr(c.error, "fabric=oversub:N"), "leaves no fabric applied; the keys "
	       "listed name fabric=");
	mtp_config_free(&c);
}

/* 0 when mtp_open_trusted accepts PATH (the descriptor is closed again), else its return value. */
static int trusted(const char *path, char *err, size_t errlen)
{
	int fd = mtp_open_trusted(path, NULL, err, errlen);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static void test_trusted(void)
{
	char dir[] = BUILDDIR "/tests/slurm-trust-XXXXXX", path[512], other[512], sub[1024], err[MT_ERRLEN];
	char msg[MT_ERRLEN], *real = NULL;
	FILE *f;
	int fd;

	if (!mkdtemp(dir)) {
		tap_ok(0, "mkdtemp");
		return;
	}
	chmod(dir, 0755);
	snprintf(path, sizeof path, "%s/map", dir);
	f = fopen(path, "w");
	fputs("n1 r1\n", f);
	fclose(f);
	chmod(path, 0644);
	if (trusted(path, err, sizeof err)) {
		/* the build folder itself sits below a folder others can write: nothing here can be trusted */
		printf("ok %d # SKIP build folder not trusted: %s\n", ++tap_n, err);
		goto out;
	}
	tap_ok(1, "own file, mode 644, folders 755: trusted");
	chmod(path, 0666);
	TAP_INT(trusted(path, err, sizeof err), -1, "world-writable file refused");
	tap_ok(strstr(err, "refused") != NULL, "with a reason: %s", err);
	chmod(path, 0664);
	TAP_INT(trusted(path, err, sizeof err), -1, "group-writable file refused");
	chmod(path, 0644);
	chmod(dir, 0777);
	TAP_INT(trusted(path, err, sizeof err), -1, "file in a world-writable folder refused");
	chmod(dir, 01777);
	TAP_INT(trusted(path, err, sizeof err), 0, "sticky folder (like /tmp) accepted");
	chmod(dir, 0755);
	TAP_INT(trusted(dir, err, sizeof err), -1, "a folder is not a file");

	/* a folder others can write anywhere above the file: they could swap the folder below it */
	snprintf(sub, sizeof sub, "%s/sub", dir);
	if (mkdir(sub, 0755))
		perror("mkdir");
	snprintf(other, sizeof other, "%s/sub/map", dir);
	if ((f = fopen(other, "w")))
		fclose(f);
	chmod(other, 0644);
	chmod(dir, 0777);
	TAP_INT(trusted(other, err, sizeof err), -1, "a writable grandparent folder is refused too");
	tap_ok(strstr(err, dir) != NULL, "naming that folder: %s", err);
	chmod(dir, 0755);
	unlink(other);
	rmdir(sub);

	/* a symlink could be retargeted after any check: refused, even to a good file */
	snprintf(other, sizeof other, "%s/link", dir);
	if (symlink(path, other))
		perror("symlink");
	TAP_INT(trusted(other, err, sizeof err), -1, "a symlink to a trusted file is refused");
	tap_ok(strstr(err, "symbolic link") != NULL, "as a symlink: %s", err);
	unlink(other);
	/* a FIFO must neither hang the open nor pass as a file */
	snprintf(other, sizeof other, "%s/fifo", dir);
	if (mkfifo(other, 0644))
		perror("mkfifo");
	TAP_INT(trusted(other, err, sizeof err), -1, "a FIFO is refused without blocking");
	unlink(other);

	snprintf(other, sizeof other, "%s/missing", dir);
	TAP_INT(trusted(other, err, sizeof err), MTP_ENOFILE, "missing file: MTP_ENOFILE");
	tap_ok(strstr(err, "No such file") != NULL, "with errno text: %s", err);

	/* the library reads the resolved name; its messages get the name from plugstack.conf back */
	snprintf(other, sizeof other, "%s/./map", dir);
	fd = mtp_open_trusted(other, &real, err, sizeof err);
	TAP_STR(real, path, "the resolved name is returned with the descriptor");
	snprintf(msg, sizeof msg, "cannot parse %s: line 3", real ? real : "?");
	mtp_name_back(msg, sizeof msg, real ? real : "?", other);
	snprintf(sub, sizeof sub, "cannot parse %s: line 3", other);
	TAP_STR(msg, sub, "messages name the file as configured");
	if (fd >= 0)
		close(fd);
	free(real);

	if (getuid() == 0 && chown(path, 1234, 1234) == 0)
		TAP_INT(trusted(path, err, sizeof err), -1, "file owned by another user refused");
	if (getuid() == 0 && chown(path, 0, 0) == 0 && chown(dir, 1234, 1234) == 0) {
		TAP_INT(trusted(path, err, sizeof err), -1, "root's file in a folder owned by another user refused");
		if (chown(dir, 0, 0))
			perror("chown");
	}
out:
	unlink(path);
	rmdir(dir);
}

static void test_layout(void)
{
	char err[MT_ERRLEN];

	/* GPU indices come from the job's environment */
	char *good[] = {"3", "0", "7"}, *dup[] = {"1", "2", "1"}, *neg[] = {"-1"}, *big[] = {"1024"},
	     *uuid[] = {"GPU-5f1c2d"}, *trail[] = {"1x"}, *huge[] = {"99999999999999999999"};
	int idx[3] = {0};
	TAP_INT(mtp_gpu_indices(good, 3, idx, err, sizeof err), 0, "GPU indices 3,0,7 accepted");
	tap_ok(idx[0] == 3 && idx[1] == 0 && idx[2] == 7, "in the order given");
	TAP_INT(mtp_gpu_indices(dup, 3, idx, err, sizeof err), -1, "a repeated GPU index is refused");
	tap_ok(strstr(err, "GPU 1 is listed twice") != NULL, "naming it: %s", err);
	TAP_INT(mtp_gpu_indices(neg, 1, idx, err, sizeof err), -1, "a negative index is refused");
	TAP_INT(mtp_gpu_indices(big, 1, idx, err, sizeof err), -1, "an index above 1023 is refused");
	TAP_INT(mtp_gpu_indices(huge, 1, idx, err, sizeof err), -1, "an index beyond long is refused");
	TAP_INT(mtp_gpu_indices(trail, 1, idx, err, sizeof err), -1, "trailing junk is refused");
	TAP_INT(mtp_gpu_indices(uuid, 1, idx, err, sizeof err), -1, "a UUID is refused");
	tap_ok(strstr(err, "UUID and MIG lists are not supported") != NULL, "saying why: %s", err);

	/* CUDA_VISIBLE_DEVICES tokens reach the tasks: checked even when SLURM_STEP_GPUS gives the indices */
	char *zeros[] = {"0", "0", "0", "0"}, *uuids[16], ubuf[16][48], *mixed[] = {"1", "GPU-0f1e2d3c-aaaa"},
	     *junk[] = {"0", "nvidia0"}, *udup[] = {"GPU-0f1e2d3c-aaaa", "GPU-0f1e2d3c-aaaa"};
	for (int i = 0; i < 16; i++) {
		snprintf(ubuf[i], sizeof ubuf[i], "GPU-%08x-1111-2222-3333-%012x", 0xabc00000u + i, i);
		uuids[i] = ubuf[i];
	}
	TAP_INT(mtp_gpu_tokens_check(zeros, 4, err, sizeof err), -1, "CUDA_VISIBLE_DEVICES=0,0,0,0 is refused");
	tap_ok(strstr(err, "names GPU '0' twice") != NULL, "naming the repeat: %s", err);
	TAP_INT(mtp_gpu_tokens_check(uuids, 16, err, sizeof err), 0, "16 GPU UUIDs are usable tokens");
	TAP_INT(mtp_gpu_tokens_check(mixed, 2, err, sizeof err), 0, "an index and a UUID");
	TAP_INT(mtp_gpu_tokens_check(junk, 2, err, sizeof err), -1, "a token that is neither is refused");
	tap_ok(strstr(err, "'nvidia0' is not a device index 0-1023 or a GPU UUID") != NULL, "saying why: %s", err);
	TAP_INT(mtp_gpu_tokens_check(udup, 2, err, sizeof err), -1, "a repeated UUID is refused");

	tap_ok(mtp_node_name_ok("gpu-r1-n1") && mtp_node_name_ok("node_07.cluster"), "plain node names accepted");
	tap_ok(!mtp_node_name_ok("../etc/passwd") && !mtp_node_name_ok("a/b") && !mtp_node_name_ok(".hidden") &&
	       !mtp_node_name_ok("") && !mtp_node_name_ok("a b"), "names with '/', leading '.', spaces or empty refused");

	/* the step's cores within slurmstepd's CPUs */
	char *w = NULL;
	int outside = -1;
	TAP_INT(mtp_cpus_within("2-3", "0-7", &w, &outside), 0, "cores within a wider affinity (no ConstrainCores)");
	TAP_STR(w, "2-3", "binding within the step's CPUs");
	TAP_INT(outside, 0, "none outside");
	free(w);
	TAP_INT(mtp_cpus_within("0-3,8-11", "0-3,8-11", &w, &outside), 0, "cores equal to the affinity (ConstrainCores)");
	tap_ok(w && !strcmp(w, "0-3,8-11") && outside == 0, "the same list, none outside: %s %d", w, outside);
	free(w);
	TAP_INT(mtp_cpus_within("0,112", "0-1", &w, &outside), 0, "cores partly outside the affinity");
	tap_ok(w && !strcmp(w, "0") && outside == 1, "the common CPUs, one outside: %s %d", w, outside);
	free(w);
	TAP_INT(mtp_cpus_within("8-11", "0-1", &w, &outside), 0, "cores wholly outside the affinity");
	tap_ok(w && !w[0] && outside == 4, "nothing in common, four outside: '%s' %d", w, outside);
	free(w);
	TAP_INT(mtp_cpus_within("0-", "0-1", &w, &outside), -1, "a bad list is refused");
	tap_ok(w == NULL, "and gives no list");
}

static void test_slurm(void)
{
	struct mtp_config c;
	char dom[64], buf[256], err[MT_ERRLEN];
	const char *conf = getenv("SLURM_CONF");
	char tmp[] = "/tmp/mtp-slurmconf-XXXXXX";

	TAP_INT(parse(&c, "domains=slurm", NULL, NULL), 0, "domains=slurm is valid");
	tap_ok(c.domains_slurm && !c.domains, "domains=slurm means Slurm's own file, not a file named slurm");
	mtp_config_free(&c);
	TAP_INT(parse(&c, "domains=slurm", "domains=/etc/t.conf", NULL), -1, "domains= twice (slurm, then a path)");
	tap_ok(!c.domains_slurm && !c.domains, "nothing of it kept");
	mtp_config_free(&c);

	TAP_INT(mtp_topology_addr_domain("r1.gpu-r1-n1", "block.node", "gpu-r1-n1", dom, sizeof dom), 0,
		"topology/block address");
	TAP_STR(dom, "r1", "its block");
	TAP_INT(mtp_topology_addr_domain("s0.s3.n7.cluster", "switch.switch.node", "n7.cluster", dom, sizeof dom), 0,
		"topology/tree address, node name with dots");
	TAP_STR(dom, "s3", "its leaf switch");
	TAP_INT(mtp_topology_addr_domain("n7", "node", "n7", dom, sizeof dom), 1, "no topology plugin: nothing to say");
	TAP_INT(mtp_topology_addr_domain("", "", "n7", dom, sizeof dom), 1, "unset: nothing to say");
	TAP_INT(mtp_topology_addr_domain("r1.n8", "block.node", "n7", dom, sizeof dom), -1, "another node's address");
	TAP_INT(mtp_topology_addr_domain(".n7", "block.node", "n7", dom, sizeof dom), -1, "an empty block");
	TAP_INT(mtp_topology_addr_domain("xn7", "block.node", "n7", dom, sizeof dom), -1, "no separator");

	/* Slurm's topology.conf is beside the slurm.conf in slurmstepd's own environment */
	tap_ok(mkdtemp(tmp) != NULL, "scratch folder");
	snprintf(buf, sizeof buf, "%s/slurm.conf", tmp);
	setenv("SLURM_CONF", buf, 1);
	TAP_INT(mtp_slurm_topology_conf(buf, sizeof buf, err, sizeof err), 0, "topology.conf beside SLURM_CONF");
	tap_ok(!strncmp(buf, tmp, strlen(tmp)) && !strcmp(buf + strlen(tmp), "/topology.conf"), "named: %s", buf);
	snprintf(buf, sizeof buf, "%s/topology.yaml", tmp);
	fclose(fopen(buf, "w"));
	TAP_INT(mtp_slurm_topology_conf(buf, sizeof buf, err, sizeof err), -1, "a topology.yaml there is refused");
	tap_ok(strstr(err, "topology.yaml") && strstr(err, "domains=PATH"), "saying what to do: %s", err);
	snprintf(buf, sizeof buf, "%s/topology.yaml", tmp);
	unlink(buf);
	rmdir(tmp);
	unsetenv("SLURM_CONF");
	TAP_INT(mtp_slurm_topology_conf(buf, sizeof buf, err, sizeof err), 0, "without SLURM_CONF");
	TAP_STR(buf, MTP_SLURM_SYSCONFDIR "/topology.conf", "the configured Slurm folder");
	if (conf)
		setenv("SLURM_CONF", conf, 1);

	tap_ok(mtp_same_release("24.11.5", "24.11.1") && mtp_same_release("22.05.8", "22.05"), "same major.minor");
	tap_ok(!mtp_same_release("24.11.5", "22.05.8") && !mtp_same_release("24.11.5", "24.05.5") &&
	       !mtp_same_release("24.1", "24.11") && !mtp_same_release("x", "x"), "other releases, or unreadable");
	TAP_INT(mtp_version_compare(mtp_slurm_built(), err, sizeof err), 0, "the release we were built for runs us");
	TAP_INT(mtp_version_compare(NULL, err, sizeof err), 0, "Slurm does not say: no complaint");
	TAP_INT(mtp_version_compare("99.01.0", err, sizeof err), -1, "another release is refused");
	tap_ok(strstr(err, mtp_slurm_built()) && strstr(err, "99.01.0") && strstr(err, "rebuild"),
	       "naming both releases and the fix: %s", err);
}

int main(void)
{
	test_config();
	test_trusted();
	test_layout();
	test_slurm();
	return tap_done();
}
