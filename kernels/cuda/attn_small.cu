/* kernels/cuda/attn_small.cu — attention in one kernel when the keys fit a warp's registers:
 * n_k <= 256, head_dim a multiple of 8 up to 128 (SigLIP: 256 tokens per view, head_dim 72).
 * The cuBLAS path runs three kernels per call (QK GEMM into fp32 logits, softmax into bf16
 * probabilities, PV GEMM); ncu put them at 5.3 + 6.6 + 4.8 us per SigLIP view and layer.
 *
 * Grid (heads, ceil(n_q / (16 RB))), 4 RB warps: RB blocks of 16 query rows x 4 shares of the
 * keys. RB = 2 (32 rows, 8 warps) by default; RTV_ATTN_RB=4 takes 64 rows per CTA (16 warps),
 * so each CTA's copy of its head's K and V (74 KB for SigLIP) serves twice the rows: half the
 * L2 -> shared-memory traffic (SigLIP, both views: 19 -> 9.4 MB per launch) at the same warps
 * per SM (one CTA of 16 instead of two of 8). Opt-in: not yet run on a GPU.
 * The CTA copies the K and V rows of its kv head into shared memory once (cp.async); then each
 * warp, for its 16 rows and its half of the keys:
 *   - S = Q K^T with mma.sync m16n8k16, Q fragments straight from global memory, K fragments
 *     from shared memory, both as 16-byte loads of 8 consecutive head_dim elements used as the
 *     fragment's k positions {2t, 2t+1, 2t+8, 2t+9} of two k16 steps (the dot product does not
 *     care about the order of its terms; elements past head_dim are zero);
 *   - scale, the limit rule, row max and sum in registers (the whole row is there: no online
 *     softmax), probabilities rounded to bf16 as the cuBLAS path and PyTorch's eager attention do;
 *   - O = P V with P's A fragments taken from S's accumulators and V's B fragments from shared
 *     memory through ldmatrix.trans;
 *   - the shares combine through shared memory (rescaled by e^(m - M)); O / rowsum is written
 *     as bf16.
 * ncu, per SigLIP view: one warp over all 256 keys 16 us (one warp per scheduler on half the
 * SMs, issue-bound); two warps per row block over key halves 11 us; four (this) shortens each
 * warp's chain again. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "mma.cuh"

#define AS_MAXK 256 /* keys */
#define AS_KSPLIT 4 /* warps sharing a 16-row block, each over its share of the keys */
#define AS_HK (AS_MAXK / AS_KSPLIT)

/* RB: 16-row blocks per CTA (2 or 4), 32 * AS_KSPLIT * RB threads */
template <int HD8, int RB>
static __global__ void __launch_bounds__(32 * AS_KSPLIT * RB)
    attn_small_k(bf16 *out, int ldo, const bf16 *q, int ldq, const bf16 *k, const bf16 *v,
                 int ldkv, int n_k, int n_q, int group, float scale, int limit_rows,
                 int limit_keys, size_t so, size_t sq, size_t skv)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    /* attention blockIdx.z of a batch (attention_batch) */
    out += blockIdx.z * so;
    q += blockIdx.z * sq;
    k += blockIdx.z * skv;
    v += blockIdx.z * skv;
    constexpr int HD = HD8 * 8, NCH = (HD8 + 3) / 4;
    constexpr int KS = HD + (((8 - HD) % 64) + 64) % 64; /* row stride = 16 mod 128 bytes */
    extern __shared__ __align__(16) unsigned char as_sh[];
    const int nkp = (n_k + 15) & ~15;
    bf16 *ks = (bf16 *)as_sh, *vs = ks + (size_t)nkp * KS;
    const int h = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int kp = warp % AS_KSPLIT, row0 = blockIdx.y * (16 * RB) + (warp / AS_KSPLIT) * 16;
    const int share = ((n_k + AS_KSPLIT * 16 - 1) / (AS_KSPLIT * 16)) * 16;
    const int key0 = kp * share, key1 = min(n_k, key0 + share); /* this warp's keys */
    const int kvh = h / group;
    const bf16 *kh = k + (size_t)kvh * HD, *vh = v + (size_t)kvh * HD, *qh = q + (size_t)h * HD;

    /* K and V rows into shared memory; rows n_k .. nkp - 1 zeroed (their probability is 0, and
     * 0 times a stale value could be NaN) */
    for (int i = threadIdx.x; i < nkp * HD8; i += blockDim.x) {
        int r = i / HD8, c = (i - r * HD8) * 8;
        bf16 *dk = ks + r * KS + c, *dv = vs + r * KS + c;
        if (r < n_k) {
            rtv_cp_async16(dk, kh + (size_t)r * ldkv + c);
            rtv_cp_async16(dv, vh + (size_t)r * ldkv + c);
        } else {
            *(uint4 *)dk = make_uint4(0, 0, 0, 0);
            *(uint4 *)dv = make_uint4(0, 0, 0, 0);
        }
    }
    /* Q fragments meanwhile: rows g and g + 8 of this warp, 8 elements at 32c + 8t */
    uint4 qa[NCH], qb[NCH];
    {
        const int ra = min(row0 + g, n_q - 1), rb = min(row0 + g + 8, n_q - 1);
#pragma unroll
        for (int c = 0; c < NCH; c++) {
            int col = 32 * c + 8 * t;
            qa[c] = col < HD ? *(const uint4 *)(qh + (size_t)ra * ldq + col) : make_uint4(0, 0, 0, 0);
            qb[c] = col < HD ? *(const uint4 *)(qh + (size_t)rb * ldq + col) : make_uint4(0, 0, 0, 0);
        }
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();

    /* S = Q K^T, key tiles of 8 from key0 */
    float sacc[AS_HK / 8][4];
#pragma unroll
    for (int j = 0; j < AS_HK / 8; j++) {
        sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.f;
        if (key0 + 8 * j >= key1) continue;
        const bf16 *kr = ks + (key0 + 8 * j + g) * KS;
#pragma unroll
        for (int c = 0; c < NCH; c++) {
            int col = 32 * c + 8 * t;
            uint4 kf = col < HD ? *(const uint4 *)(kr + col) : make_uint4(0, 0, 0, 0);
            rtv_mma16816(sacc[j], qa[c].x, qb[c].x, qa[c].y, qb[c].y, kf.x, kf.y);
            rtv_mma16816(sacc[j], qa[c].z, qb[c].z, qa[c].w, qb[c].w, kf.z, kf.w);
        }
    }

    /* scale, mask, row max and sum (rows g and g + 8; a quad of lanes shares a row) */
    const int r_lo = row0 + g, r_hi = row0 + g + 8;
    const int lim_lo = min(key1, r_lo < limit_rows ? limit_keys : n_k);
    const int lim_hi = min(key1, r_hi < limit_rows ? limit_keys : n_k);
    float m_lo = -INFINITY, m_hi = -INFINITY;
#pragma unroll
    for (int j = 0; j < AS_HK / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int key = key0 + 8 * j + 2 * t + (e & 1);
            float x = key < ((e >> 1) ? lim_hi : lim_lo) ? sacc[j][e] * scale : -INFINITY;
            sacc[j][e] = x;
            if (e >> 1) m_hi = fmaxf(m_hi, x);
            else m_lo = fmaxf(m_lo, x);
        }
    m_lo = rtv_quad_max(m_lo);
    m_hi = rtv_quad_max(m_hi);
    float l_lo = 0.f, l_hi = 0.f;
#pragma unroll
    for (int j = 0; j < AS_HK / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float x = sacc[j][e];
            float y = x == -INFINITY ? 0.f : __expf(x - ((e >> 1) ? m_hi : m_lo));
            y = __bfloat162float(__float2bfloat16(y)); /* what P.V uses */
            sacc[j][e] = y;
            if (e >> 1) l_hi += y;
            else l_lo += y;
        }
    l_lo = rtv_quad_sum(l_lo);
    l_hi = rtv_quad_sum(l_hi);

    /* O = P V, keys in steps of 16 */
    float oacc[HD8][4];
#pragma unroll
    for (int d = 0; d < HD8; d++) oacc[d][0] = oacc[d][1] = oacc[d][2] = oacc[d][3] = 0.f;
    const unsigned vbase = (unsigned)__cvta_generic_to_shared(vs + (lane & 15) * KS);
#pragma unroll
    for (int kk = 0; kk < AS_HK / 16; kk++) {
        if (key0 + 16 * kk >= key1) break;
        uint32_t a0 = rtv_pack_bf16x2(sacc[2 * kk][0], sacc[2 * kk][1]);
        uint32_t a1 = rtv_pack_bf16x2(sacc[2 * kk][2], sacc[2 * kk][3]);
        uint32_t a2 = rtv_pack_bf16x2(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
        uint32_t a3 = rtv_pack_bf16x2(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
#pragma unroll
        for (int d = 0; d < HD8; d++) {
            uint32_t b0, b1;
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                         : "=r"(b0), "=r"(b1)
                         : "r"(vbase + (unsigned)(((key0 + 16 * kk) * KS + 8 * d) * 2)));
            rtv_mma16816(oacc[d], a0, a1, a2, a3, b0, b1);
        }
    }
    /* the key shares meet: warps 1 .. AS_KSPLIT - 1 of a row block leave (m, l, O) in shared
     * memory (the K/V copy is no longer read), warp 0 rescales them all and writes */
    __syncthreads();
    constexpr int CW = (HD8 * 4 + 4) * 32; /* floats per partial */
    float *cmb = (float *)as_sh + (size_t)(warp / AS_KSPLIT) * (AS_KSPLIT - 1) * CW + lane;
    if (kp > 0) {
        float *o = cmb + (size_t)(kp - 1) * CW;
#pragma unroll
        for (int d = 0; d < HD8; d++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[(d * 4 + e) * 32] = oacc[d][e];
        o[(HD8 * 4 + 0) * 32] = m_lo;
        o[(HD8 * 4 + 1) * 32] = m_hi;
        o[(HD8 * 4 + 2) * 32] = l_lo;
        o[(HD8 * 4 + 3) * 32] = l_hi;
    }
    __syncthreads();
    if (kp > 0 || row0 >= n_q) return;
    float M_lo = m_lo, M_hi = m_hi;
#pragma unroll
    for (int p = 0; p < AS_KSPLIT - 1; p++) {
        M_lo = fmaxf(M_lo, cmb[p * CW + (HD8 * 4 + 0) * 32]);
        M_hi = fmaxf(M_hi, cmb[p * CW + (HD8 * 4 + 1) * 32]);
    }
    float w_lo[AS_KSPLIT], w_hi[AS_KSPLIT];
    w_lo[0] = m_lo == -INFINITY ? 0.f : __expf(m_lo - M_lo);
    w_hi[0] = m_hi == -INFINITY ? 0.f : __expf(m_hi - M_hi);
    float L_lo = w_lo[0] * l_lo, L_hi = w_hi[0] * l_hi;
#pragma unroll
    for (int p = 0; p < AS_KSPLIT - 1; p++) {
        float pl = cmb[p * CW + (HD8 * 4 + 0) * 32], ph = cmb[p * CW + (HD8 * 4 + 1) * 32];
        w_lo[p + 1] = pl == -INFINITY ? 0.f : __expf(pl - M_lo);
        w_hi[p + 1] = ph == -INFINITY ? 0.f : __expf(ph - M_hi);
        L_lo += w_lo[p + 1] * cmb[p * CW + (HD8 * 4 + 2) * 32];
        L_hi += w_hi[p + 1] * cmb[p * CW + (HD8 * 4 + 3) * 32];
    }
    const float i_lo = L_lo > 0.f ? 1.0f / L_lo : 0.f, i_hi = L_hi > 0.f ? 1.0f / L_hi : 0.f;
#pragma unroll
    for (int d = 0; d < HD8; d++) {
        int col = h * HD + 8 * d + 2 * t;
        float o[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float a = ((e >> 1) ? w_hi[0] : w_lo[0]) * oacc[d][e];
#pragma unroll
            for (int p = 0; p < AS_KSPLIT - 1; p++)
                a += ((e >> 1) ? w_hi[p + 1] : w_lo[p + 1]) * cmb[p * CW + (d * 4 + e) * 32];
            o[e] = a * ((e >> 1) ? i_hi : i_lo);
        }
        if (r_lo < n_q) *(uint32_t *)(out + (size_t)r_lo * ldo + col) = rtv_pack_bf16x2(o[0], o[1]);
        if (r_hi < n_q) *(uint32_t *)(out + (size_t)r_hi * ldo + col) = rtv_pack_bf16x2(o[2], o[3]);
    }
}

typedef void (*as_kernel)(bf16 *, int, const bf16 *, int, const bf16 *, const bf16 *, int, int,
                          int, int, float, int, int, size_t, size_t, size_t);

template <int RB>
static as_kernel as_pick_rb(int hd)
{
    switch (hd) {
    case 16: return attn_small_k<2, RB>;
    case 32: return attn_small_k<4, RB>;
    case 64: return attn_small_k<8, RB>;
    case 72: return attn_small_k<9, RB>;
    case 128: return attn_small_k<16, RB>;
    default: return NULL;
    }
}
static as_kernel as_pick(int hd, int rb) { return rb == 4 ? as_pick_rb<4>(hd) : as_pick_rb<2>(hd); }

/* The K and V copy, or the shares' combine area after it (rb row blocks x 3 shares x (O, m, l)
 * of 32 lanes), whichever is larger. */
static size_t as_smem(int hd, int n_k, int rb)
{
    int ks = hd + (((8 - hd) % 64) + 64) % 64;
    size_t kv = (size_t)2 * ((n_k + 15) & ~15) * ks * sizeof(bf16);
    size_t cmb = (size_t)rb * (AS_KSPLIT - 1) * (hd / 8 * 4 + 4) * 32 * sizeof(float);
    return kv > cmb ? kv : cmb;
}

int rtv_cuda_attn_small_init(rtv_stream *s)
{
    int dev = 0, optin = 0;
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    s->attn_small = rtv_cuda_env_switch("RTV_FUSED_ATTN", 1);
    s->attn_small_smem = optin;
    /* row blocks per CTA: 2, or 4 with RTV_ATTN_RB=4 (opt-in, see the top) */
    const char *e = getenv("RTV_ATTN_RB");
    s->attn_small_rb = e && !strcmp(e, "4") ? 4 : 2;
    const int hds[] = { 16, 32, 64, 72, 128 };
    for (int i = 0; i < 5; i++) {
        size_t need = as_smem(hds[i], AS_MAXK, s->attn_small_rb);
        CU_TRY(cudaFuncSetAttribute(as_pick(hds[i], s->attn_small_rb),
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)(need < (size_t)optin ? need : (size_t)optin)));
    }
    return RTV_OK;
}

/* Returns 1 when the call is not for this kernel (the caller runs the cuBLAS path). */
int rtv_cuda_attn_small(rtv_stream *s, void *out, int ldo, const void *q, int ldq, const void *k,
                        const void *v, int ldkv, int n_k, int n_q, int n_heads, int n_kv_heads,
                        int head_dim, float scale, int limit_rows, int limit_keys, int *st)
{
    return rtv_cuda_attn_small_batch(s, 1, out, ldo, 0, q, ldq, 0, k, v, ldkv, 0, n_k, n_q,
                                     n_heads, n_kv_heads, head_dim, scale, limit_rows,
                                     limit_keys, st);
}

int rtv_cuda_attn_small_batch(rtv_stream *s, int nb, void *out, int ldo, size_t so,
                              const void *q, int ldq, size_t sq, const void *k, const void *v,
                              int ldkv, size_t skv, int n_k, int n_q, int n_heads,
                              int n_kv_heads, int head_dim, float scale, int limit_rows,
                              int limit_keys, int *st)
{
    *st = RTV_OK;
    const int rb = s->attn_small_rb;
    as_kernel kern = as_pick(head_dim, rb);
    size_t smem = as_smem(head_dim, n_k, rb);
    if (!s->attn_small || !kern || n_k > AS_MAXK || smem > (size_t)s->attn_small_smem ||
        ldq % 8 || ldkv % 8 || ldo % 2 || sq % 8 || skv % 8 || so % 2 || nb < 1 || nb > 65535 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 || (uintptr_t)out % 4)
        return 1;
    dim3 grid(n_heads, (n_q + 16 * rb - 1) / (16 * rb), nb);
    rtv_cuda_go(s, kern, grid, 32 * AS_KSPLIT * rb, smem, (bf16 *)out, ldo, (const bf16 *)q, ldq,
                (const bf16 *)k, (const bf16 *)v, ldkv, n_k, n_q, n_heads / n_kv_heads, scale,
                limit_rows, limit_keys, so, sq, skv);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "attention (small) launch", __FILE__, __LINE__);
    return 0;
}
