/* tap.h - minimal TAP producer for C tests (read by automake's tap-driver.sh).
 * Each check is one test point; a failing check prints what was expected and what was seen. */
#ifndef MT_TAP_H
#define MT_TAP_H
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static inline void tap_ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static inline void tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	if (!cond)
		tap_failed++;
	fflush(stdout);
}
#define TAP_INT(got, want, ...) do { long long g_ = (got), w_ = (want); \
	tap_ok(g_ == w_, __VA_ARGS__); if (g_ != w_) printf("#   got %lld, want %lld\n", g_, w_); } while (0)
#define TAP_STR(got, want, ...) do { const char *g_ = (got), *w_ = (want); \
	int eq_ = g_ && w_ && strcmp(g_, w_) == 0; tap_ok(eq_, __VA_ARGS__); \
	if (!eq_) printf("#   got \"%s\", want \"%s\"\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } while (0)
static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
#endif
