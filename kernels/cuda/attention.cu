/* kernels/cuda/attention.cu — masked multi-query / grouped attention through cuBLAS.
 *
 * logits[h, i, j] = scale * q[i, h] . k[j, kvh(h)]        (strided-batched GEMM per key
 *                                                         segment, fp32 out, bf16 in)
 * probs = softmax_j(logits) with the limit rule (rows i < limit_rows see keys j < limit_keys),
 *         masked entries exactly 0, stored bf16 (as PyTorch's eager path casts them)
 * out[i, h] = sum_j probs[h, i, j] v[j, kvh(h)]            (one segment: GEMM into bf16 out;
 *                                                         two: GEMMs into fp32, then bf16)
 * For MQA (one kv head) the K/V operand has batch stride 0, so all heads run in one GEMM.
 * Scratch (per stream): heads * n_q * n_k * 6 bytes + n_q * heads * hd * 4 bytes. */
#include "cuda_impl.h"
#include "mma.cuh"

static __global__ void softmax_k(const float *logits, bf16 *probs, int rows_per_head, int ldl,
                                 int n_k, int limit_rows, int limit_keys, int total_rows)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= total_rows) return;
    int i = row % rows_per_head;
    int nk = i < limit_rows ? limit_keys : n_k;
    const float *l = logits + (size_t)row * ldl;
    bf16 *p = probs + (size_t)row * ldl;
    float m = -INFINITY;
    for (int j = lane; j < nk; j += 32) m = fmaxf(m, l[j]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float s = 0.0f;
    for (int j = lane; j < nk; j += 32) s += __expf(l[j] - m);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int j = lane; j < ldl; j += 32) /* padded keys (n_k <= j < ldl) get 0 */
        p[j] = __float2bfloat16(j < nk ? __expf(l[j] - m) * inv : 0.0f);
}

/* The same with the row held in registers (ldl <= 32 * SM_REGS): one read of the logits
 * instead of three, exp computed once. */
#define SM_REGS 32
static __global__ void softmax_reg_k(const float *logits, bf16 *probs, int rows_per_head, int ldl,
                                     int n_k, int limit_rows, int limit_keys, int total_rows)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= total_rows) return;
    int i = row % rows_per_head;
    int nk = i < limit_rows ? limit_keys : n_k;
    const float *l = logits + (size_t)row * ldl;
    bf16 *p = probs + (size_t)row * ldl;
    float v[SM_REGS];
    float m = -INFINITY;
#pragma unroll
    for (int t = 0; t < SM_REGS; t++) {
        int j = lane + 32 * t;
        v[t] = j < nk ? l[j] : -INFINITY;
        m = fmaxf(m, v[t]);
    }
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float s = 0.0f;
#pragma unroll
    for (int t = 0; t < SM_REGS; t++) {
        v[t] = v[t] == -INFINITY ? 0.0f : __expf(v[t] - m);
        s += v[t];
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
#pragma unroll
    for (int t = 0; t < SM_REGS; t++) {
        int j = lane + 32 * t;
        if (j < ldl) p[j] = __float2bfloat16(v[t] * inv); /* padded keys get 0 */
    }
}

static __global__ void f32_to_bf16_2d_k(bf16 *dst, int ldd, const float *src, int lds, int rows,
                                        int cols)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)rows * cols) return;
    int r = (int)(t / cols), c = (int)(t % cols);
    dst[(size_t)r * ldd + c] = __float2bfloat16(src[(size_t)r * lds + c]);
}

/* One segment's logits GEMM for every head. */
static int qk_segment(rtv_stream *s, float *logits, int ldl, int col, const bf16 *q, int ldq,
                      const bf16 *k, int ldk, int nk, int n_q, int n_heads, int n_kv, int hd,
                      float scale)
{
    const float beta = 0.0f;
    int group = n_heads / n_kv;
    long long sC = (long long)n_q * ldl;
    if (group == 1) {
        BLAS_TRY(cublasGemmStridedBatchedEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, nk, n_q, hd,
                                            &scale, k, CUDA_R_16BF, ldk, hd, q, CUDA_R_16BF, ldq,
                                            hd, &beta, logits + col, CUDA_R_32F, ldl, sC,
                                            n_heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return RTV_OK;
    }
    for (int kv = 0; kv < n_kv; kv++) {
        int h0 = kv * group;
        BLAS_TRY(cublasGemmStridedBatchedEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, nk, n_q, hd,
                                            &scale, k + (size_t)kv * hd, CUDA_R_16BF, ldk, 0,
                                            q + (size_t)h0 * hd, CUDA_R_16BF, ldq, hd, &beta,
                                            logits + (size_t)h0 * sC + col, CUDA_R_32F, ldl, sC,
                                            group, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return RTV_OK;
}

/* One segment's probs . V for every head into out [n_q, n_heads*hd] (row stride ldo): fp32
 * accumulated over segments (beta 1 for the second), or bf16 directly when there is one. */
static int pv_segment(rtv_stream *s, void *out, cudaDataType_t ot, int ldo, const bf16 *probs,
                      int ldl, int col, const bf16 *v, int ldv, int nk, int n_q, int n_heads,
                      int n_kv, int hd, float beta)
{
    const float one = 1.0f;
    int group = n_heads / n_kv;
    long long sP = (long long)n_q * ldl;
    size_t esz = ot == CUDA_R_32F ? 4 : 2;
    if (group == 1) {
        BLAS_TRY(cublasGemmStridedBatchedEx(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, n_q, nk, &one,
                                            v, CUDA_R_16BF, ldv, hd, probs + col, CUDA_R_16BF,
                                            ldl, sP, &beta, out, ot, ldo, hd, n_heads,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return RTV_OK;
    }
    for (int kv = 0; kv < n_kv; kv++) {
        int h0 = kv * group;
        BLAS_TRY(cublasGemmStridedBatchedEx(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, n_q, nk, &one,
                                            v + (size_t)kv * hd, CUDA_R_16BF, ldv, 0,
                                            probs + (size_t)h0 * sP + col, CUDA_R_16BF, ldl, sP,
                                            &beta, (char *)out + (size_t)h0 * hd * esz, ot, ldo,
                                            hd, group, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return RTV_OK;
}

int rtv_cuda_attention(rtv_stream *s, void *out, int ldo, const void *q, int ldq,
                       const void *k0, const void *v0, int ld0, int n0,
                       const void *k1, const void *v1, int ld1, int n1,
                       int n_q, int n_heads, int n_kv_heads, int head_dim, float scale,
                       int limit_rows, int limit_keys)
{
    int n_k = n0 + (k1 ? n1 : 0);
    if (n_q <= 0 || n0 <= 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads ||
        head_dim <= 0 || ldq < n_heads * head_dim || ldo < n_heads * head_dim ||
        ld0 < n_kv_heads * head_dim || (n1 > 0 && (!k1 || !v1 || ld1 < n_kv_heads * head_dim)) ||
        limit_keys > n_k)
        return rtv_fail(RTV_E_ARG, "attention: bad shape n_q=%d n0=%d n1=%d heads=%d/%d hd=%d",
                        n_q, n0, n1, n_heads, n_kv_heads, head_dim);
    if (limit_rows > 0 && limit_keys <= 0)
        return rtv_fail(RTV_E_ARG, "attention: limit_rows=%d with limit_keys=%d", limit_rows,
                        limit_keys);
    if (n1 <= 0) { /* keys that fit a warp's registers: one kernel (attn_small.cu) */
        int st;
        if (!rtv_cuda_attn_small(s, out, ldo, q, ldq, k0, v0, ld0, n0, n_q, n_heads, n_kv_heads,
                                 head_dim, scale, limit_rows, limit_keys, &st))
            return st;
        /* head_dim 128 / 256 over longer keys: one wgmma kernel (attn_wg.cu, sm_90a) */
        if (!rtv_cuda_attn_wg(s, out, ldo, q, ldq, k0, v0, ld0, n0, n_q, n_heads, n_kv_heads,
                              head_dim, scale, limit_rows, limit_keys, &st))
            return st;
    }
    /* One segment: both GEMMs run over the padded key count (the contract lets us read those
     * rows; softmax gives them 0). With 563 keys (pi0's 512-row prefix + 51 suffix rows)
     * cuBLAS fell back to unaligned sm75-era kernels at 14-21 us per GEMM. */
    int ldl = RTV_ATTN_KEY_PAD(n_k);
    const int n0g = n1 > 0 ? n0 : ldl;
    size_t cells = (size_t)n_heads * n_q * ldl;
    rtv_cuda_scratch_begin(s);
    float *logits = (float *)rtv_cuda_scratch(s, cells * sizeof(float));
    bf16 *probs = (bf16 *)rtv_cuda_scratch(s, cells * sizeof(bf16));
    float *out32 = (float *)rtv_cuda_scratch(s, (size_t)n_q * n_heads * head_dim * sizeof(float));
    if (!logits || !probs || !out32) return RTV_E_NOMEM;
    int st;
    if ((st = qk_segment(s, logits, ldl, 0, (const bf16 *)q, ldq, (const bf16 *)k0, ld0, n0g,
                         n_q, n_heads, n_kv_heads, head_dim, scale)))
        return st;
    if (n1 > 0 && (st = qk_segment(s, logits, ldl, n0, (const bf16 *)q, ldq, (const bf16 *)k1,
                                   ld1, n1, n_q, n_heads, n_kv_heads, head_dim, scale)))
        return st;
    int rows = n_heads * n_q;
    if (ldl <= 32 * SM_REGS)
        rtv_cuda_go(s, softmax_reg_k, rtv_cdiv(rows, 8), 256, 0, logits, probs, n_q, ldl, n_k,
                    limit_rows, limit_keys, rows);
    else
        rtv_cuda_go(s, softmax_k, rtv_cdiv(rows, 8), 256, 0, logits, probs, n_q, ldl, n_k,
                    limit_rows, limit_keys, rows);
    LAUNCH_CHECK("softmax");
    if (n1 <= 0) /* one segment: P.V straight into the bf16 output */
        return pv_segment(s, out, CUDA_R_16BF, ldo, probs, ldl, 0, (const bf16 *)v0, ld0, n0g,
                          n_q, n_heads, n_kv_heads, head_dim, 0.0f);
    if ((st = pv_segment(s, out32, CUDA_R_32F, n_heads * head_dim, probs, ldl, 0,
                         (const bf16 *)v0, ld0, n0, n_q, n_heads, n_kv_heads, head_dim, 0.0f)) ||
        (st = pv_segment(s, out32, CUDA_R_32F, n_heads * head_dim, probs, ldl, n0,
                         (const bf16 *)v1, ld1, n1, n_q, n_heads, n_kv_heads, head_dim, 1.0f)))
        return st;
    size_t n = (size_t)n_q * n_heads * head_dim;
    rtv_cuda_go(s, f32_to_bf16_2d_k, rtv_cdiv(n, 256), 256, 0, (bf16 *)out, ldo, out32,
                n_heads * head_dim, n_q, n_heads * head_dim);
    LAUNCH_CHECK("attention out");
    return RTV_OK;
}

int rtv_cuda_attention_batch(rtv_stream *s, int nb, void *out, int ldo, size_t so, const void *q,
                             int ldq, size_t sq, const void *k, const void *v, int ldkv,
                             size_t skv, int n_k, int n_q, int n_heads, int n_kv_heads,
                             int head_dim, float scale)
{
    if (nb < 1) return rtv_fail(RTV_E_ARG, "attention_batch: %d attentions", nb);
    int st;
    if (n_q > 0 && n_k > 0 && n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0 &&
        ldq >= n_heads * head_dim && ldo >= n_heads * head_dim && ldkv >= n_kv_heads * head_dim &&
        !rtv_cuda_attn_small_batch(s, nb, out, ldo, so, q, ldq, sq, k, v, ldkv, skv, n_k, n_q,
                                   n_heads, n_kv_heads, head_dim, scale, 0, 0, &st))
        return st;
    for (int i = 0; i < nb; i++) /* the general path, one attention at a time */
        if ((st = rtv_cuda_attention(s, (bf16 *)out + i * so, ldo, (const bf16 *)q + i * sq, ldq,
                                     (const bf16 *)k + i * skv, (const bf16 *)v + i * skv, ldkv,
                                     n_k, NULL, NULL, 0, 0, n_q, n_heads, n_kv_heads, head_dim,
                                     scale, 0, 0)))
            return st;
    return RTV_OK;
}
