/* dlopen_probe.c - loads a shared object as slurmstepd loads a plugin and prints "loaded" or the loader's
 * error (test_plugin_deps.sh).  RTLD_LAZY: Slurm's own functions, which the plugin calls, are absent. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	void *h = dlopen(argv[1], RTLD_LAZY | RTLD_LOCAL);
	puts(h ? "loaded" : dlerror());
	return h ? 0 : 1;
}
