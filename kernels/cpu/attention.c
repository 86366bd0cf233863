/* kernels/cpu/attention.c — multi-query / grouped attention over two key segments, fp32.
 *
 * For each query head h (kv head g = h / (n_heads / n_kv_heads)) and each block of query rows
 * [r0, r0 + m) that fits the stream scratch (m * n_k logits):
 *   L[m, n_k]  = scale * Q[r0:r0+m, h] . [K0[:, g]; K1[:, g]]^T     two sgemm, one per segment
 *   P          = softmax over each row's visible keys, fp32, max subtracted first; rows
 *                i < limit_rows see keys j < limit_keys (global index over seg 0 then seg 1),
 *                other rows see all n_k keys; invisible keys get probability exactly 0
 *   out[r0:r0+m, h] = P[:, :n0] . V0[:, g] + P[:, n0:] . V1[:, g]    two sgemm, written at ldo
 * Cost at pi0 prefix size (800 x 800 keys, 8 heads of 256): 4 sgemm of 800x800x256 per head.
 * out must not overlap q, k or v. */
#include <cblas.h>

#include "cpu_impl.h"

static void softmax_rows(float *l, int ldl, int m, int r0, int n_k, int limit_rows,
                         int limit_keys)
{
    for (int i = 0; i < m; i++) {
        float *row = l + (size_t)i * ldl;
        int nv = r0 + i < limit_rows ? limit_keys : n_k;
        float mx = row[0];
        for (int j = 1; j < nv; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < nv; j++) {
            /* below -87, exp is under FLT_MIN, 2^-126 of the largest term (1): exactly
             * nothing to the fp32 sum; skipping expf also skips glibc's slow underflow path */
            float d = row[j] - mx;
            row[j] = d > -87.0f ? expf(d) : 0.0f;
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < nv; j++) row[j] *= inv;
        for (int j = nv; j < n_k; j++) row[j] = 0.0f;
    }
}

int rtv_cpu_attention(rtv_stream *s, void *out, int ldo, const void *q, int ldq,
                      const void *k0, const void *v0, int ld0, int n0,
                      const void *k1, const void *v1, int ld1, int n1,
                      int n_q, int n_heads, int n_kv_heads, int head_dim, float scale,
                      int limit_rows, int limit_keys)
{
    const int hd = head_dim;
    if (n_q <= 0 || n0 <= 0 || n1 < 0 || n_heads <= 0 || n_kv_heads <= 0 || hd <= 0 ||
        n_heads % n_kv_heads || ldq < n_heads * hd || ldo < n_heads * hd ||
        ld0 < n_kv_heads * hd || (n1 > 0 && ld1 < n_kv_heads * hd))
        return rtv_fail(RTV_E_ARG, "attention: bad shape n_q=%d n0=%d n1=%d heads=%d/%d hd=%d "
                        "ldq=%d ldo=%d ld0=%d ld1=%d", n_q, n0, n1, n_heads, n_kv_heads, hd,
                        ldq, ldo, ld0, ld1);
    if (!s || !out || !q || !k0 || !v0 || (n1 > 0 && (!k1 || !v1)))
        return rtv_fail(RTV_E_ARG, "attention: NULL stream or tensor (n1=%d)", n1);
    const int n_k = n0 + n1;
    if (limit_rows < 0 || limit_keys < 0 || limit_keys > n_k || (limit_rows > 0 && !limit_keys))
        return rtv_fail(RTV_E_ARG, "attention: limit_rows=%d limit_keys=%d, expected "
                        "limit_rows >= 0 and 1 <= limit_keys <= %d keys when rows are limited",
                        limit_rows, limit_keys, n_k);
    if ((size_t)n_k > s->scratch_floats)
        return rtv_fail(RTV_E_UNSUPPORTED, "attention: %d keys exceed the stream scratch (%zu "
                        "floats)", n_k, s->scratch_floats);
    int block = (int)(s->scratch_floats / (size_t)n_k);
    if (block > n_q) block = n_q;
    const int group = n_heads / n_kv_heads;
    float *L = s->scratch;

    for (int h = 0; h < n_heads; h++) {
        const int g = h / group;
        const float *K0 = (const float *)k0 + (size_t)g * hd, *V0 = (const float *)v0 + (size_t)g * hd;
        const float *K1 = n1 ? (const float *)k1 + (size_t)g * hd : NULL;
        const float *V1 = n1 ? (const float *)v1 + (size_t)g * hd : NULL;
        for (int r0 = 0; r0 < n_q; r0 += block) {
            const int m = n_q - r0 < block ? n_q - r0 : block;
            const float *Q = (const float *)q + (size_t)r0 * ldq + (size_t)h * hd;
            float *O = (float *)out + (size_t)r0 * ldo + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n0, hd, scale, Q, ldq, K0,
                        ld0, 0.0f, L, n_k);
            if (n1)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n1, hd, scale, Q, ldq,
                            K1, ld1, 0.0f, L + n0, n_k);
            softmax_rows(L, n_k, m, r0, n_k, limit_rows, limit_keys);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n0, 1.0f, L, n_k, V0,
                        ld0, 0.0f, O, ldo);
            if (n1)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n1, 1.0f, L + n0,
                            n_k, V1, ld1, 1.0f, O, ldo);
        }
    }
    return RTV_OK;
}
