/* tests/kernels/test_matmul.c — matmul against a naive double loop, every epilogue
 * combination (bias yes/no x activation none/GELU/SiLU x accumulate yes/no), odd sizes,
 * row strides with gaps, guard regions; plus a case large enough that the
 * activation-then-accumulate path works through the stream scratch in several blocks.
 *
 * Tolerance 2e-5 relative to max(1, |ref|): fp32 dot products of K <= 300 terms with
 * |x| <= 1 and |w| <= 1/sqrt(K) are off by at most ~K * 2^-24 * sum|x w| ~ 1e-5, and the
 * epilogue adds a couple of fp32 roundings. */
#include <math.h>

#include "kt.h"

static double gelu_ref(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static double silu_ref(double x) { return x / (1.0 + exp(-x)); }

static void run_case(int M, int N, int K, int ldx, int ldy, int flags, int with_bias, float tol)
{
    kt_buf x = kt_buf_new((size_t)M * ldx), w = kt_buf_new((size_t)N * K),
           bias = kt_buf_new(N), y = kt_buf_new((size_t)M * ldy);
    kt_fill(x.p, M, K, ldx, 1.0f);
    kt_fill(w.p, N, K, K, 1.0f / sqrtf((float)K));
    kt_fill(bias.p, 1, N, N, 0.5f);
    kt_fill(y.p, M, N, ldy, 1.0f);                       /* the residual for RTV_MM_ACCUM */
    float *ref = malloc((size_t)M * N * sizeof(float)), *got = malloc((size_t)M * N * sizeof(float));
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) {
            double acc = with_bias ? bias.p[c] : 0.0;
            for (int k = 0; k < K; k++) acc += (double)x.p[(size_t)r * ldx + k] * w.p[(size_t)c * K + k];
            if (flags & RTV_MM_GELU) acc = gelu_ref(acc);
            if (flags & RTV_MM_SILU) acc = silu_ref(acc);
            if (flags & RTV_MM_ACCUM) acc += y.p[(size_t)r * ldy + c];
            ref[(size_t)r * N + c] = (float)acc;
        }
    int st = kt_b->matmul(kt_s, y.p, ldy, x.p, ldx, w.p, with_bias ? bias.p : NULL, M, N, K,
                          flags);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    kt_pack(got, y.p, M, N, ldy);
    if (!CHECK_CLOSE(got, ref, (long)M * N, tol))
        fprintf(stderr, "  case M=%d N=%d K=%d ldx=%d ldy=%d flags=%d bias=%d\n", M, N, K, ldx,
                ldy, flags, with_bias);
    CHECK_MSG(kt_guards_ok(&y, M, N, ldy), "matmul wrote outside y (M=%d N=%d ldy=%d)", M, N, ldy);
    CHECK(kt_guards_ok(&x, M, K, ldx) && kt_guards_ok(&w, N, K, K));
    free(ref);
    free(got);
    kt_buf_free(&x);
    kt_buf_free(&w);
    kt_buf_free(&bias);
    kt_buf_free(&y);
}

int main(int argc, char **argv)
{
    kt_init();
    kt_seed(1);
    static const int shapes[][5] = {
        /* M, N, K, ldx, ldy */
        { 1, 1, 1, 1, 1 },     { 7, 33, 13, 13, 33 }, { 64, 130, 70, 75, 131 },
        { 3, 5, 300, 301, 9 }, { 33, 7, 64, 64, 7 },  { 1, 257, 129, 129, 300 },
    };
    const int acts[] = { 0, RTV_MM_GELU, RTV_MM_SILU };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        for (int a = 0; a < 3; a++)
            for (int accum = 0; accum < 2; accum++)
                for (int bias = 0; bias < 2; bias++)
                    run_case(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
                             shapes[i][4], acts[a] | (accum ? RTV_MM_ACCUM : 0), bias, 2e-5f);
    /* activation + accumulate with N so wide that only 3 rows fit the stream scratch at a
     * time: 5 rows go through in two blocks */
    int wide = (1 << 20) + 3;
    run_case(5, wide, 3, 3, wide, RTV_MM_GELU | RTV_MM_ACCUM, 1, 2e-5f);
    run_case(5, wide, 3, 3, wide, RTV_MM_SILU | RTV_MM_ACCUM, 0, 2e-5f);
    kt_fini();
    return check_report(argv[0]);
}
