/* tests/kernels/test_attention.c — attention against a naive double loop: MHA, GQA and MQA,
 * one and two key segments, the limit rule (rows < limit_rows see keys < limit_keys, the
 * limit falling in segment 0 or 1, all rows limited), strides with gaps, guards, logits large
 * enough that a softmax without max-subtraction overflows, and a key count large enough that
 * the query rows go through the stream scratch in several blocks.
 *
 * Tolerance 2e-5 relative to max(1, |ref|): logits are fp32 dot products of hd <= 256 terms
 * (~hd * 2^-24 * |q||k| relative), expf is within 2 ulp, and the output is a convex
 * combination of V rows (|v| <= 1) summed in fp32 over <= 8192 keys. The large-logit case
 * uses 1e-4: its logits reach ~200, so their fp32 rounding (~200 * 2^-24 * hd) moves the
 * probabilities by ~1e-5 relative. */
#include <math.h>

#include "kt.h"

typedef struct acase {
    int n_q, n0, n1, heads, kv, hd, limit_rows, limit_keys;
    int pad;      /* extra stride elements on q, k/v and out rows */
    float amp;    /* amplitude of q (k and v are in [-1, 1]) */
    float tol;
} acase;

static void run(const acase *c)
{
    const int hd = c->hd, dq = c->heads * hd, dkv = c->kv * hd;
    const int ldq = dq + c->pad, ld0 = dkv + c->pad, ld1 = dkv + 2 * c->pad, ldo = dq + c->pad;
    const int n_k = c->n0 + c->n1;
    const float scale = 1.0f / sqrtf((float)hd);
    kt_buf q = kt_buf_new((size_t)c->n_q * ldq), k0 = kt_buf_new((size_t)c->n0 * ld0),
           v0 = kt_buf_new((size_t)c->n0 * ld0), k1 = kt_buf_new((size_t)(c->n1 + 1) * ld1),
           v1 = kt_buf_new((size_t)(c->n1 + 1) * ld1), o = kt_buf_new((size_t)c->n_q * ldo);
    kt_fill(q.p, c->n_q, dq, ldq, c->amp);
    kt_fill(k0.p, c->n0, dkv, ld0, 1.0f);
    kt_fill(v0.p, c->n0, dkv, ld0, 1.0f);
    kt_fill(k1.p, c->n1, dkv, ld1, 1.0f);
    kt_fill(v1.p, c->n1, dkv, ld1, 1.0f);

    float *ref = malloc((size_t)c->n_q * dq * sizeof(float));
    float *got = malloc((size_t)c->n_q * dq * sizeof(float));
    double *p = malloc((size_t)n_k * sizeof(double));
    const int group = c->heads / c->kv;
    for (int i = 0; i < c->n_q; i++)
        for (int h = 0; h < c->heads; h++) {
            int g = h / group, nv = i < c->limit_rows ? c->limit_keys : n_k;
            const float *qi = q.p + (size_t)i * ldq + (size_t)h * hd;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < nv; j++) {
                const float *kj = j < c->n0 ? k0.p + (size_t)j * ld0 : k1.p + (size_t)(j - c->n0) * ld1;
                double d = 0;
                for (int e = 0; e < hd; e++) d += (double)qi[e] * kj[(size_t)g * hd + e];
                p[j] = d * scale;
                if (p[j] > mx) mx = p[j];
            }
            for (int j = 0; j < nv; j++) sum += (p[j] = exp(p[j] - mx));
            for (int e = 0; e < hd; e++) {
                double acc = 0;
                for (int j = 0; j < nv; j++) {
                    const float *vj = j < c->n0 ? v0.p + (size_t)j * ld0 : v1.p + (size_t)(j - c->n0) * ld1;
                    acc += p[j] / sum * vj[(size_t)g * hd + e];
                }
                ref[((size_t)i * c->heads + h) * hd + e] = (float)acc;
            }
        }
    int st = kt_b->attention(kt_s, o.p, ldo, q.p, ldq, k0.p, v0.p, ld0, c->n0,
                             c->n1 ? k1.p : NULL, c->n1 ? v1.p : NULL, ld1, c->n1, c->n_q,
                             c->heads, c->kv, hd, scale, c->limit_rows, c->limit_keys);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    kt_pack(got, o.p, c->n_q, dq, ldo);
    if (!CHECK_CLOSE(got, ref, (long)c->n_q * dq, c->tol))
        fprintf(stderr, "  case n_q=%d n0=%d n1=%d heads=%d/%d hd=%d limit=%d/%d pad=%d\n", c->n_q,
                c->n0, c->n1, c->heads, c->kv, hd, c->limit_rows, c->limit_keys, c->pad);
    CHECK_MSG(kt_guards_ok(&o, c->n_q, dq, ldo), "attention wrote outside out");
    free(ref);
    free(got);
    free(p);
    kt_buf_free(&q);
    kt_buf_free(&k0);
    kt_buf_free(&v0);
    kt_buf_free(&k1);
    kt_buf_free(&v1);
    kt_buf_free(&o);
}

int main(int argc, char **argv)
{
    kt_init();
    kt_seed(3);
    const acase cases[] = {
        /* n_q n0  n1  heads kv  hd  lim_rows lim_keys pad amp tol */
        { 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 2e-5f },
        { 7, 33, 0, 4, 4, 16, 0, 0, 3, 1, 2e-5f },       /* MHA, strided */
        { 13, 40, 9, 4, 2, 32, 3, 41, 5, 1, 2e-5f },     /* GQA, limit inside segment 1 */
        { 51, 64, 51, 8, 1, 64, 1, 65, 0, 1, 2e-5f },    /* MQA suffix: state row sees prefix + itself */
        { 5, 3, 7, 6, 3, 8, 5, 2, 1, 1, 2e-5f },         /* every row limited, inside segment 0 */
        { 9, 10, 4, 2, 1, 12, 4, 14, 0, 1, 2e-5f },      /* limit == all keys: no effect */
        { 6, 17, 0, 3, 1, 256, 2, 1, 2, 1, 2e-5f },      /* limited rows see exactly one key */
        { 11, 20, 5, 2, 2, 64, 0, 0, 0, 150, 1e-4f },    /* logits past 88: expf overflows without max-subtraction */
        { 600, 8000, 192, 1, 1, 8, 100, 4000, 0, 1, 2e-5f }, /* 8192 keys: 2 blocks of query rows */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) run(&cases[i]);
    kt_fini();
    return check_report(argv[0]);
}
