/* tests/kernels/bench_kernels.c — wall time of the CPU ops at real pi0 sizes (not a test:
 * timings are reported, never asserted). Usage: bench_kernels [repeats]. Threads come from
 * RTV_BLAS_THREADS (default: all CPUs). Prints one line per op: best and median ms, GFLOP/s. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kt.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *rnd(size_t n)
{
    float *p = malloc(n * sizeof(float));
    if (!p) exit(2);
    for (size_t i = 0; i < n; i++) p[i] = kt_uni(1.0f);
    return p;
}

static int reps = 5;

#define BENCH(name, gflop, call)                                                            \
    do {                                                                                    \
        double t_[64];                                                                      \
        for (int i_ = 0; i_ < reps; i_++) {                                                 \
            double t0_ = now_ms();                                                          \
            int st_ = (call);                                                               \
            t_[i_] = now_ms() - t0_;                                                        \
            if (st_) { fprintf(stderr, "%s: %s\n", name, rtv_last_error()); return 1; }     \
        }                                                                                   \
        qsort(t_, reps, sizeof(double), cmp_d);                                             \
        printf("%-44s best %8.2f ms  median %8.2f ms  %6.1f GFLOP/s\n", name, t_[0],        \
               t_[reps / 2], (gflop) / t_[0] * 1e3);                                        \
    } while (0)

int main(int argc, char **argv)
{
    if (argc > 1) reps = atoi(argv[1]);
    if (reps < 1 || reps > 64) reps = 5;
    kt_init();
    const rtv_backend *b = kt_b;
    rtv_stream *s = kt_s;
    const int T = 800, D = 2048, H = 8, HD = 256, FF = 16384, V = 256, VD = 1152, VFF = 4304;
    float *x = rnd((size_t)T * D), *w = rnd((size_t)2 * FF * D), *y = rnd((size_t)T * 2 * FF);
    float *q = rnd((size_t)T * H * HD), *k = rnd((size_t)V * VD), *v = rnd((size_t)V * VD);
    float *o = rnd((size_t)T * H * HD), *g = rnd(D);

    BENCH("matmul 800x2048x2048 (q/o proj)", 2.0 * T * D * D / 1e9,
          b->matmul(s, y, D, x, D, w, NULL, T, D, D, 0));
    BENCH("matmul 800x32768x2048 (gate+up)", 2.0 * T * 2 * FF * D / 1e9,
          b->matmul(s, y, 2 * FF, x, D, w, NULL, T, 2 * FF, D, 0));
    BENCH("matmul 256x4304x1152 +bias+gelu (SigLIP)", 2.0 * V * VFF * VD / 1e9,
          b->matmul(s, y, VFF, x, VD, w, g, V, VFF, VD, RTV_MM_GELU));
    BENCH("matmul 51x1024x1024 +bias+silu+accum", 2.0 * 51 * 1024 * 1024 / 1e9,
          b->matmul(s, y, 1024, x, 1024, w, g, 51, 1024, 1024, RTV_MM_SILU | RTV_MM_ACCUM));
    BENCH("attention prefix 800q x 800k, 8/1 heads x 256", 4.0 * T * T * H * HD / 1e9,
          b->attention(s, o, H * HD, q, H * HD, k, v, HD, T, NULL, NULL, 0, 0, T, H, 1, HD,
                       0.0625f, 0, 0));
    BENCH("attention suffix 51q x (800+51)k, 8/1 x 256", 4.0 * 51 * 851 * H * HD / 1e9,
          b->attention(s, o, H * HD, q, H * HD, k, v, HD, T, k, v, HD, 51, 51, H, 1, HD,
                       0.0625f, 1, T + 1));
    BENCH("attention SigLIP 256q x 256k, 16 x 72", 4.0 * V * V * 16 * 72 / 1e9,
          b->attention(s, o, VD, q, VD, k, v, VD, V, NULL, NULL, 0, 0, V, 16, 16, 72, 0.118f,
                       0, 0));
    BENCH("rmsnorm 800x2048", 0, b->rmsnorm(s, y, x, g, T, D, 1e-6f));
    BENCH("layernorm 256x1152", 0, b->layernorm(s, y, x, g, g, V, VD, 1e-6f));
    BENCH("rope 800 rows x 8 heads x 256", 0, b->rope(s, q, H * HD, T, H, HD, 0, 10000.0f));
    BENCH("geglu 800x16384 (in place)", 0, b->geglu(s, y, y, T, FF));
    uint8_t *rgb = malloc(640 * 480 * 3);
    for (int i = 0; i < 640 * 480 * 3; i++) rgb[i] = (uint8_t)(kt_u64() >> 56);
    BENCH("preprocess 640x480 -> 224", 0, b->preprocess(s, y, rgb, 640, 480, 640 * 3, 224));
    BENCH("patchify 3 x 224 / 14", 0, b->patchify(s, o, y, 3, 224, 14));
    free(rgb);
    free(x); free(w); free(y); free(q); free(k); free(v); free(o); free(g);
    kt_fini();
    return 0;
}
