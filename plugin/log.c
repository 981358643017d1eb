/* log.c - the plugin's one way to log: a single line starting "moe-topology: ".
 *
 * Messages quote untrusted text (the option value, the job's environment, the library's errors about
 * files): a newline or another control character in it would start a line without our prefix, or forge
 * a line of someone else's, in the user's output and the slurmd log.  Such bytes become '?'.
 */
#include <stdarg.h>
#include <stdio.h>

#include "plugin.h"

void mtp_log(enum mtp_log_kind kind, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	for (unsigned char *p = (unsigned char *)buf; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (kind == MTP_LOG_ERROR)
		slurm_error(MTP_NAME ": %s", buf);
	else if (kind == MTP_LOG_INFO)
		slurm_info(MTP_NAME ": %s", buf);
	else
		slurm_spank_log(MTP_NAME ": %s", buf);
}
