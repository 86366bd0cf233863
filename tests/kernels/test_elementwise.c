/* tests/kernels/test_elementwise.c — geglu, add_weight_rows, axpy, scale, copy2d, mean_rows
 * and patchify against naive loops, with guards, strides and in-place use where the contract
 * allows it.
 * Tolerances: copies and patchify are exact (bitwise); axpy/scale/add_weight_rows are one or
 * two fp32 operations (1e-6); geglu 1e-5 (tanhf within a few ulp, then three products);
 * mean_rows 1e-6 (sum in double, one rounding). */
#include <math.h>

#include "kt.h"

static double gelu_ref(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static void test_geglu(int rows, int ff, int in_place, float amp)
{
    kt_buf gu = kt_buf_new((size_t)rows * 2 * ff), y = kt_buf_new((size_t)rows * ff);
    kt_fill(gu.p, rows, 2 * ff, 2 * ff, amp);
    float *ref = malloc((size_t)rows * ff * sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < ff; j++)
            ref[(size_t)r * ff + j] = (float)(gelu_ref(gu.p[(size_t)r * 2 * ff + j]) *
                                              gu.p[(size_t)r * 2 * ff + ff + j]);
    float *out = in_place ? gu.p : y.p;
    CHECK(kt_b->geglu(kt_s, out, gu.p, rows, ff) == RTV_OK);
    if (!CHECK_CLOSE(out, ref, (long)rows * ff, 1e-5f))
        fprintf(stderr, "  geglu rows=%d ff=%d in_place=%d\n", rows, ff, in_place);
    CHECK(kt_guards_ok(&gu, 0, 0, 0) && kt_guards_ok(&y, 0, 0, 0));
    if (!in_place) {
        long unwritten = 0;
        for (size_t i = 0; i < (size_t)rows * ff; i++) unwritten += kt_is_sentinel(y.p[i]);
        CHECK(unwritten == 0);
    }
    free(ref);
    kt_buf_free(&gu);
    kt_buf_free(&y);
}

static void test_add_rows(int rows, int dim, int period)
{
    kt_buf y = kt_buf_new((size_t)rows * dim), w = kt_buf_new((size_t)period * dim);
    kt_fill(y.p, rows, dim, dim, 1.0f);
    kt_fill(w.p, period, dim, dim, 1.0f);
    float *ref = malloc((size_t)rows * dim * sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < dim; j++)
            ref[(size_t)r * dim + j] = y.p[(size_t)r * dim + j] + w.p[(size_t)(r % period) * dim + j];
    CHECK(kt_b->add_weight_rows(kt_s, y.p, w.p, rows, dim, period) == RTV_OK);
    CHECK_CLOSE(y.p, ref, (long)rows * dim, 1e-6f);
    CHECK(kt_guards_ok(&y, 0, 0, 0));
    free(ref);
    kt_buf_free(&y);
    kt_buf_free(&w);
}

static void test_axpy_scale(size_t n)
{
    kt_buf y = kt_buf_new(n), x = kt_buf_new(n), z = kt_buf_new(n);
    kt_fill(y.p, 1, (int)n, (int)n, 1.0f);
    kt_fill(x.p, 1, (int)n, (int)n, 1.0f);
    float *ref = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) ref[i] = (float)(y.p[i] + (double)-0.1f * x.p[i]);
    CHECK(kt_b->axpy(kt_s, y.p, x.p, -0.1f, n) == RTV_OK);
    CHECK_CLOSE(y.p, ref, (long)n, 1e-6f);
    for (size_t i = 0; i < n; i++) ref[i] = (float)(3.5 * x.p[i]);
    CHECK(kt_b->scale(kt_s, z.p, x.p, 3.5f, n) == RTV_OK);
    CHECK_CLOSE(z.p, ref, (long)n, 1e-6f);
    CHECK(kt_b->scale(kt_s, x.p, x.p, 3.5f, n) == RTV_OK);   /* in place */
    CHECK_CLOSE(x.p, ref, (long)n, 1e-6f);
    CHECK(kt_guards_ok(&y, 0, 0, 0) && kt_guards_ok(&z, 0, 0, 0) && kt_guards_ok(&x, 0, 0, 0));
    free(ref);
    kt_buf_free(&y);
    kt_buf_free(&x);
    kt_buf_free(&z);
}

static void test_copy2d(int rows, int cols, int ldd, int lds)
{
    kt_buf d = kt_buf_new((size_t)rows * ldd), s = kt_buf_new((size_t)rows * lds);
    kt_fill(s.p, rows, cols, lds, 1.0f);
    CHECK(kt_b->copy2d(kt_s, d.p, ldd, s.p, lds, rows, cols) == RTV_OK);
    int same = 1;
    for (int r = 0; r < rows; r++)
        same &= !memcmp(d.p + (size_t)r * ldd, s.p + (size_t)r * lds, (size_t)cols * 4);
    CHECK_MSG(same, "copy2d rows=%d cols=%d ldd=%d lds=%d", rows, cols, ldd, lds);
    CHECK_MSG(kt_guards_ok(&d, rows, cols, ldd), "copy2d wrote into the stride gap");
    kt_buf_free(&d);
    kt_buf_free(&s);
}

static void test_mean_rows(int rows, int dim, int ldx)
{
    kt_buf x = kt_buf_new((size_t)rows * ldx), y = kt_buf_new(dim);
    kt_fill(x.p, rows, dim, ldx, 1.0f);
    float *ref = malloc((size_t)dim * sizeof(float));
    for (int j = 0; j < dim; j++) {
        double s = 0;
        for (int r = 0; r < rows; r++) s += x.p[(size_t)r * ldx + j];
        ref[j] = (float)(s / rows);
    }
    CHECK(kt_b->mean_rows(kt_s, y.p, x.p, ldx, rows, dim) == RTV_OK);
    CHECK_CLOSE(y.p, ref, dim, 1e-6f);
    CHECK(kt_guards_ok(&y, 0, 0, 0));
    free(ref);
    kt_buf_free(&x);
    kt_buf_free(&y);
}

/* patchify: element (c, kh, kw) of patch (pr, pc) of image im is img[im, pr*p+kh, pc*p+kw, c]. */
static void test_patchify(int n_img, int size, int p)
{
    int g = size / p, pv = 3 * p * p;
    size_t n_in = (size_t)n_img * size * size * 3, n_out = (size_t)n_img * g * g * pv;
    kt_buf img = kt_buf_new(n_in), y = kt_buf_new(n_out);
    kt_fill(img.p, 1, (int)n_in, (int)n_in, 1.0f);
    CHECK(kt_b->patchify(kt_s, y.p, img.p, n_img, size, p) == RTV_OK);
    long bad = 0;
    for (int im = 0; im < n_img; im++)
        for (int pr = 0; pr < g; pr++)
            for (int pc = 0; pc < g; pc++)
                for (int c = 0; c < 3; c++)
                    for (int kh = 0; kh < p; kh++)
                        for (int kw = 0; kw < p; kw++) {
                            float want = img.p[(((size_t)im * size + pr * p + kh) * size + pc * p + kw) * 3 + c];
                            float got = y.p[(((size_t)im * g + pr) * g + pc) * pv + (c * p + kh) * p + kw];
                            bad += memcmp(&want, &got, 4) != 0;
                        }
    CHECK_MSG(bad == 0, "patchify n=%d size=%d p=%d: %ld wrong", n_img, size, p, bad);
    CHECK(kt_guards_ok(&y, 0, 0, 0));
    kt_buf_free(&img);
    kt_buf_free(&y);
}

int main(int argc, char **argv)
{
    kt_init();
    kt_seed(4);
    test_geglu(1, 1, 0, 4.0f);
    test_geglu(7, 33, 0, 4.0f);
    test_geglu(64, 130, 0, 4.0f);
    test_geglu(5, 77, 1, 4.0f);
    test_geglu(9, 200, 0, 100.0f);   /* saturated: the exp argument is clamped for x < -44 */
    test_add_rows(1, 1, 1);
    test_add_rows(7, 33, 1);
    test_add_rows(64, 130, 16);
    test_add_rows(20, 9, 7);
    test_axpy_scale(1);
    test_axpy_scale(1001);
    test_copy2d(1, 1, 1, 1);
    test_copy2d(7, 33, 40, 33);
    test_copy2d(64, 130, 130, 200);
    test_mean_rows(1, 1, 1);
    test_mean_rows(7, 33, 40);
    test_mean_rows(256, 130, 130);
    test_patchify(1, 3, 1);
    test_patchify(1, 28, 14);
    test_patchify(3, 15, 5);
    test_patchify(2, 224, 14);
    kt_fini();
    return check_report(argv[0]);
}
