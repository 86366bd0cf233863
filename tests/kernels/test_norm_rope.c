/* tests/kernels/test_norm_rope.c — LayerNorm, RMSNorm and RoPE against naive double loops on
 * odd sizes, out of place (guards) and in place.
 *
 * Norm tolerance 1e-5 relative to max(1, |ref|): statistics are exact to fp32 rounding, then
 * two or three fp32 multiplies per value (~3 * 2^-24 each, scaled by |x / rms| * |w| <= ~8).
 * LayerNorm inputs carry an offset of 3 so that a one-pass E[x^2] - E[x]^2 variance would
 * show up. RoPE: the reference builds inv_freq and the angle in fp32 exactly as PyTorch
 * (inv_freq = 1 / theta^(2i/hd), angle = (float)p * inv_freq), then rotates in double;
 * tolerance 1e-5 for sinf/cosf (<= 1 ulp) and two fp32 products and a sum per value. The
 * norm moved behind its GEMM (rms_rope, rms_geglu) against the unfused sequence. */
#include <math.h>

#include "kt.h"

static void norm_ref(float *ref, const float *x, const float *w, const float *b, int rows,
                     int dim, double eps, int rms)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) {
            double d = rms ? xr[i] : xr[i] - mean;
            var += d * d;
        }
        var /= dim;
        for (int i = 0; i < dim; i++) {
            double v = rms ? xr[i] / sqrt(var + eps) * (1.0 + w[i])
                           : (xr[i] - mean) / sqrt(var + eps) * w[i] + b[i];
            ref[(size_t)r * dim + i] = (float)v;
        }
    }
}

static void test_norm(int rows, int dim, float eps, int rms, int in_place)
{
    size_t n = (size_t)rows * dim;
    kt_buf x = kt_buf_new(n), y = kt_buf_new(n), w = kt_buf_new(dim), b = kt_buf_new(dim);
    for (size_t i = 0; i < n; i++) x.p[i] = kt_uni(2.0f) + (rms ? 0.0f : 3.0f);
    kt_fill(w.p, 1, dim, dim, 1.0f);
    kt_fill(b.p, 1, dim, dim, 0.5f);
    float *ref = malloc(n * sizeof(float));
    norm_ref(ref, x.p, w.p, b.p, rows, dim, eps, rms);
    float *out = in_place ? x.p : y.p;
    int st = rms ? kt_b->rmsnorm(kt_s, out, x.p, w.p, rows, dim, eps)
                 : kt_b->layernorm(kt_s, out, x.p, w.p, b.p, rows, dim, eps);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    if (!CHECK_CLOSE(out, ref, (long)n, 1e-5f))
        fprintf(stderr, "  %s rows=%d dim=%d in_place=%d\n", rms ? "rmsnorm" : "layernorm", rows,
                dim, in_place);
    CHECK(kt_guards_ok(&x, 0, 0, 0) && kt_guards_ok(in_place ? &x : &y, 0, 0, 0));
    free(ref);
    kt_buf_free(&x);
    kt_buf_free(&y);
    kt_buf_free(&w);
    kt_buf_free(&b);
}

static void test_rope(int rows, int heads, int hd, int ld, int pos0, float theta)
{
    size_t n = (size_t)rows * ld;
    kt_buf x = kt_buf_new(n);
    kt_fill(x.p, rows, heads * hd, ld, 1.0f);
    int half = hd / 2;
    float *ref = malloc((size_t)rows * heads * hd * sizeof(float));
    float *got = malloc((size_t)rows * heads * hd * sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++) {
                float e = (float)(2 * i) / (float)hd;              /* fp32, as PyTorch */
                float inv = (float)(1.0 / (double)(float)pow(theta, e));
                float ang = (float)((double)(float)(pos0 + r) * inv);
                const float *v = x.p + (size_t)r * ld + (size_t)h * hd;
                double x1 = v[i], x2 = v[i + half];
                float *o = ref + ((size_t)r * heads + h) * hd;
                o[i] = (float)(x1 * cos(ang) - x2 * sin(ang));
                o[i + half] = (float)(x2 * cos(ang) + x1 * sin(ang));
            }
    int st = kt_b->rope(kt_s, x.p, ld, rows, heads, hd, pos0, theta);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    kt_pack(got, x.p, rows, heads * hd, ld);
    if (!CHECK_CLOSE(got, ref, (long)rows * heads * hd, 1e-5f))
        fprintf(stderr, "  rope rows=%d heads=%d hd=%d ld=%d pos0=%d\n", rows, heads, hd, ld,
                pos0);
    CHECK_MSG(kt_guards_ok(&x, rows, heads * hd, ld), "rope wrote outside its heads");
    free(ref);
    free(got);
    kt_buf_free(&x);
}

/* The rotation pairs i with i + hd/2 (half-split), not 2i with 2i+1: a hand case. */
static void test_rope_layout(void)
{
    float v[4] = { 1, 2, 3, 4 };   /* hd 4: pairs (1,3), (2,4); position 1, theta 1e4 */
    CHECK(kt_b->rope(kt_s, v, 4, 1, 1, 4, 1, 1e4f) == RTV_OK);
    double a0 = 1.0, a1 = 1.0 / 100.0;   /* 1e4^(-0/4), 1e4^(-2/4) */
    CHECK(fabs(v[0] - (1 * cos(a0) - 3 * sin(a0))) < 1e-6);
    CHECK(fabs(v[2] - (3 * cos(a0) + 1 * sin(a0))) < 1e-6);
    CHECK(fabs(v[1] - (2 * cos(a1) - 4 * sin(a1))) < 1e-6);
    CHECK(fabs(v[3] - (4 * cos(a1) + 2 * sin(a1))) < 1e-6);
}

/* The RMSNorm moved behind its GEMM (backend.h rms_rope, rms_geglu): with (1 + w) folded into
 * the weight columns, GEMM then rms_rope / rms_geglu must equal rmsnorm, GEMM, then rope /
 * geglu. q/k heads rotate, the rest of the row (v) is only scaled, and nothing past `cols` in
 * the row stride is written. Tolerance 1e-5: the two orders differ by a few fp32 roundings per
 * product, over sums of `dim` terms of either sign. */
static void test_rms_fold(int rows, int dim, int heads, int hd, int cols, int ld, int ff)
{
    const float eps = 1e-6f;
    kt_buf x = kt_buf_new((size_t)rows * dim), w = kt_buf_new(dim);
    kt_buf wq = kt_buf_new((size_t)cols * dim), wg = kt_buf_new((size_t)2 * ff * dim);
    kt_buf xn = kt_buf_new((size_t)rows * dim);
    kt_buf qa = kt_buf_new((size_t)rows * ld), qb = kt_buf_new((size_t)rows * ld);
    kt_buf ga = kt_buf_new((size_t)rows * 2 * ff), gb = kt_buf_new((size_t)rows * 2 * ff);
    kt_buf fa = kt_buf_new((size_t)rows * ff), fb = kt_buf_new((size_t)rows * ff);
    kt_fill(x.p, rows, dim, dim, 3.0f);
    kt_fill(w.p, 1, dim, dim, 0.5f);
    kt_fill(wq.p, cols, dim, dim, 1.0f / sqrtf((float)dim));
    kt_fill(wg.p, 2 * ff, dim, dim, 1.0f / sqrtf((float)dim));
    /* unfused */
    int st = kt_b->rmsnorm(kt_s, xn.p, x.p, w.p, rows, dim, eps);
    if (!st) st = kt_b->matmul(kt_s, qa.p, ld, xn.p, dim, wq.p, NULL, rows, cols, dim, 0);
    if (!st) st = kt_b->rope(kt_s, qa.p, ld, rows, heads, hd, 7, 10000.0f);
    if (!st) st = kt_b->matmul(kt_s, ga.p, 2 * ff, xn.p, dim, wg.p, NULL, rows, 2 * ff, dim, 0);
    if (!st) st = kt_b->geglu(kt_s, fa.p, ga.p, rows, ff);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    /* folded */
    for (int n = 0; n < cols; n++)
        for (int k = 0; k < dim; k++) wq.p[(size_t)n * dim + k] *= 1.0f + w.p[k];
    for (int n = 0; n < 2 * ff; n++)
        for (int k = 0; k < dim; k++) wg.p[(size_t)n * dim + k] *= 1.0f + w.p[k];
    st = kt_b->matmul(kt_s, qb.p, ld, x.p, dim, wq.p, NULL, rows, cols, dim, 0);
    if (!st) st = kt_b->rms_rope(kt_s, qb.p, ld, cols, x.p, dim, eps, rows, heads, hd, 7, 10000.0f);
    if (!st) st = kt_b->matmul(kt_s, gb.p, 2 * ff, x.p, dim, wg.p, NULL, rows, 2 * ff, dim, 0);
    if (!st) st = kt_b->rms_geglu(kt_s, fb.p, gb.p, x.p, dim, eps, rows, ff);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    float *pa = malloc((size_t)rows * cols * sizeof(float)), *pb = malloc((size_t)rows * cols * sizeof(float));
    kt_pack(pa, qa.p, rows, cols, ld);
    kt_pack(pb, qb.p, rows, cols, ld);
    if (!CHECK_CLOSE(pb, pa, (long)rows * cols, 1e-5f) ||
        !CHECK_CLOSE(fb.p, fa.p, (long)rows * ff, 1e-5f))
        fprintf(stderr, "  rms fold rows=%d dim=%d heads=%d hd=%d cols=%d ld=%d ff=%d\n", rows,
                dim, heads, hd, cols, ld, ff);
    CHECK_MSG(kt_guards_ok(&qb, rows, cols, ld), "rms_rope wrote outside its columns");
    CHECK_MSG(kt_guards_ok(&fb, 0, 0, 0), "rms_geglu wrote outside y");
    /* bad shapes are refused with the op's name */
    CHECK(kt_b->rms_rope(kt_s, qb.p, ld, heads * hd - 1, x.p, dim, eps, rows, heads, hd, 0,
                         1e4f) == RTV_E_ARG && strstr(rtv_last_error(), "rms_rope"));
    CHECK(kt_b->rms_geglu(kt_s, fb.p, gb.p, x.p, 0, eps, rows, ff) == RTV_E_ARG &&
          strstr(rtv_last_error(), "rms_geglu"));
    free(pa);
    free(pb);
    kt_buf *all[] = { &x, &w, &wq, &wg, &xn, &qa, &qb, &ga, &gb, &fa, &fb };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) kt_buf_free(all[i]);
}

int main(int argc, char **argv)
{
    kt_init();
    kt_seed(2);
    static const int sh[][2] = { { 1, 1 }, { 7, 33 }, { 64, 130 }, { 3, 1152 }, { 5, 2048 } };
    for (size_t i = 0; i < sizeof(sh) / sizeof(sh[0]); i++)
        for (int rms = 0; rms < 2; rms++)
            for (int ip = 0; ip < 2; ip++) test_norm(sh[i][0], sh[i][1], rms ? 1e-6f : 1e-5f, rms, ip);
    test_rope(1, 1, 2, 2, 0, 10000.0f);
    test_rope(9, 8, 256, 2560, 0, 10000.0f);    /* q of pi0's prefix, row stride with a gap */
    test_rope(51, 1, 256, 256, 816, 10000.0f);  /* k of the suffix after an 816-token prefix */
    test_rope(7, 3, 6, 20, 100000, 500.0f);
    test_rope(3, 2, 64, 130, -5, 10000.0f);     /* negative positions rotate backwards */
    test_rope_layout();
    test_rms_fold(1, 8, 1, 4, 6, 6, 3);
    test_rms_fold(51, 64, 3, 16, 64, 72, 40);   /* the expert's shape, scaled down; v unrotated */
    test_rms_fold(5, 1024, 9, 32, 320, 320, 96);
    kt_fini();
    return check_report(argv[0]);
}
