/* tests/kernels/kt.h — helpers shared by the kernel tests: a seeded generator, output
 * buffers with guard regions (sentinel floats on both sides and in stride gaps), and the CPU
 * backend with one stream.
 *
 * A guard is a NaN with a payload no op produces (0x7fa5a5a5); guards are compared bitwise,
 * so any write into them, even of the same value class, is caught. */
#ifndef RTV_TEST_KT_H
#define RTV_TEST_KT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/backend.h"
#include "runtime/status.h"

#define KT_GUARD 64            /* floats of guard on each side */
#define KT_SENTINEL 0x7fa5a5a5u

static uint64_t kt_rng_ = 0x9e3779b97f4a7c15ull;

static inline void kt_seed(uint64_t s) { kt_rng_ = s ? s : 1; }

static inline uint64_t kt_u64(void)
{
    kt_rng_ ^= kt_rng_ << 13;
    kt_rng_ ^= kt_rng_ >> 7;
    kt_rng_ ^= kt_rng_ << 17;
    return kt_rng_;
}

/* Uniform in [-amp, amp). */
static inline float kt_uni(float amp)
{
    return (float)((double)(kt_u64() >> 11) * (2.0 / 9007199254740992.0) - 1.0) * amp;
}

static inline float kt_sentinel(void)
{
    float f;
    uint32_t u = KT_SENTINEL;
    memcpy(&f, &u, 4);
    return f;
}

static inline int kt_is_sentinel(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u == KT_SENTINEL;
}

/* A buffer of n floats with KT_GUARD sentinel floats on each side; p is the usable part,
 * filled with sentinels too (stride gaps stay sentinel unless an op writes them). */
typedef struct kt_buf {
    float *base, *p;
    size_t n;
} kt_buf;

static inline kt_buf kt_buf_new(size_t n)
{
    kt_buf b;
    b.n = n;
    b.base = malloc((n + 2 * KT_GUARD) * sizeof(float));
    if (!b.base) {
        fprintf(stderr, "out of memory (%zu floats)\n", n);
        exit(2);
    }
    float s = kt_sentinel();
    for (size_t i = 0; i < n + 2 * KT_GUARD; i++) b.base[i] = s;
    b.p = b.base + KT_GUARD;
    return b;
}

static inline void kt_buf_free(kt_buf *b)
{
    free(b->base);
    b->base = b->p = NULL;
}

/* Fills rows x cols at stride ld with uniform values in [-amp, amp) (gaps untouched). */
static inline void kt_fill(float *p, int rows, int cols, int ld, float amp)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) p[(size_t)r * ld + c] = kt_uni(amp);
}

/* 1 if both guard regions and every stride gap (columns cols..ld-1 of rows x ld) still hold
 * the sentinel. Pass cols == ld when there are no gaps. */
static inline int kt_guards_ok(const kt_buf *b, int rows, int cols, int ld)
{
    for (int i = 0; i < KT_GUARD; i++)
        if (!kt_is_sentinel(b->base[i]) || !kt_is_sentinel(b->p[b->n + i])) return 0;
    for (int r = 0; r < rows; r++)
        for (int c = cols; c < ld; c++)
            if ((size_t)r * ld + c < b->n && !kt_is_sentinel(b->p[(size_t)r * ld + c])) return 0;
    return 1;
}

/* Packs rows x cols at stride ld into a dense array (for CHECK_CLOSE). */
static inline void kt_pack(float *dst, const float *src, int rows, int cols, int ld)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols * sizeof(float));
}

__attribute__((unused)) static const rtv_backend *kt_b;
__attribute__((unused)) static rtv_stream *kt_s;

/* The CPU backend and one stream; exits 2 (test error) if they cannot be made. */
static inline void kt_init(void)
{
    kt_b = rtv_backend_cpu();
    if (!kt_b || kt_b->stream_new(&kt_s)) {
        fprintf(stderr, "cpu backend: %s\n", rtv_last_error());
        exit(2);
    }
}

static inline void kt_fini(void) { kt_b->stream_free(kt_s); }

#endif
