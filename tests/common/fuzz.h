/* tests/common/fuzz.h — knobs of the seeded fuzz tests, for long runs by hand (CI runs the
 * defaults): RTV_FUZZ_SEED=N (nonzero) replaces each test's seed, RTV_FUZZ_SCALE=N (1..100000)
 * multiplies its iteration counts. A bad value stops the test with a message. For example,
 * under the sanitizers (scripts/sanitize.sh builds build-asan/):
 *   RTV_FUZZ_SCALE=100 RTV_FUZZ_SEED=7 meson test -C build-asan --suite fuzz
 */
#ifndef RTV_TEST_FUZZ_H
#define RTV_TEST_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline unsigned long long fuzz_env_(const char *name, unsigned long long lo,
                                           unsigned long long hi, unsigned long long dflt)
{
    const char *v = getenv(name);
    if (!v) return dflt;
    char *end;
    const unsigned long long n = strtoull(v, &end, 0);
    if (!*v || *end || n < lo || n > hi) {
        fprintf(stderr, "%s=%s: expected an integer %llu..%llu\n", name, v, lo, hi);
        exit(2);
    }
    return n;
}

/* the test's seed, or RTV_FUZZ_SEED */
static inline uint64_t fuzz_seed(uint64_t dflt)
{
    return fuzz_env_("RTV_FUZZ_SEED", 1, UINT64_MAX, dflt);
}

/* n iterations, times RTV_FUZZ_SCALE (read once: the loops call this in their condition) */
static inline int fuzz_iters(int n)
{
    static unsigned long long scale;
    if (!scale) scale = fuzz_env_("RTV_FUZZ_SCALE", 1, 100000, 1);
    return (int)(n * scale);
}

#endif
