/* tests/common/check.h — the tiny CHECK macros every C test uses.
 *
 * Each CHECK counts one passed or failed check; a test's main ends with
 * `return check_report(argv[0]);`, which prints "N passed, N failed" for that executable and
 * returns 0 only if nothing failed. A failed CHECK prints file:line and the expression.
 */
#ifndef RTV_TEST_CHECK_H
#define RTV_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_pass_, check_fail_;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (cond) {                                                                       \
            check_pass_++;                                                                \
        } else {                                                                          \
            check_fail_++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                                 \
    } while (0)

#define CHECK_MSG(cond, ...)                                                              \
    do {                                                                                  \
        if (cond) {                                                                       \
            check_pass_++;                                                                \
        } else {                                                                          \
            check_fail_++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

/* Max abs error of got vs ref over n floats, relative to max(1, |ref|max); prints the first
 * mismatching values on failure. */
static inline int check_close_(const char *file, int line, const char *what, const float *got,
                               const float *ref, long n, float tol)
{
    float refmax = 1.0f, errmax = 0.0f;
    long worst = -1;
    for (long i = 0; i < n; i++)
        if (fabsf(ref[i]) > refmax) refmax = fabsf(ref[i]);
    for (long i = 0; i < n; i++) {
        float e = fabsf(got[i] - ref[i]);
        if (!(e <= errmax)) { errmax = isnan(e) ? INFINITY : e; worst = i; }
    }
    if (errmax / refmax <= tol) { check_pass_++; return 1; }
    check_fail_++;
    fprintf(stderr, "%s:%d: %s: max err %g (rel %g) > tol %g at [%ld]: got %g ref %g\n", file,
            line, what, errmax, errmax / refmax, tol, worst, worst >= 0 ? got[worst] : 0.0,
            worst >= 0 ? ref[worst] : 0.0);
    for (long i = 0; i < n && i < 6; i++)
        fprintf(stderr, "  [%ld] got %.6g ref %.6g\n", i, got[i], ref[i]);
    return 0;
}
#define CHECK_CLOSE(got, ref, n, tol) check_close_(__FILE__, __LINE__, #got, got, ref, n, tol)

static inline int check_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_pass_, check_fail_);
    return check_fail_ ? 1 : 0;
}

#endif
