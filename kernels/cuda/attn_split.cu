/* kernels/cuda/attn_split.cu — attention for few query rows over many keys (the action
 * expert: 50 or 51 rows, 8 heads sharing one kv head, head_dim 256, over the 512+ prefix rows
 * and the suffix) in two kernels instead of the cuBLAS path's three (QK GEMM, softmax, PV
 * GEMM, ~4.5 us each on an H100 at this size, nearly all of it launch and ramp).
 *
 * OPT-IN (RTV_SPLIT_ATTN=1: chunks of 64 keys, 2: of 32) until it wins; it does not yet.
 * H100, 2026-12-07, pi0 shapes (51 rows, 563 keys), bench model p50 in one lease each:
 *   action cycle 8.78 off / 9.16 with chunks of 64 / 10.20 with chunks of 32 ms
 *   ncu (real clocks): attn_split_k 9.4 us for 72 CTAs (12.6 us for 144 CTAs of 32 keys),
 *   attn_combine_k 5.1 us (7.4 us before its loads were batched), against ~13.6 us for the
 *   three cuBLAS-path kernels. Per CTA ~6.4 us busy at 6.8 cycles per issued instruction with
 *   two warps per scheduler: latency-bound, the same wall mlp.cu hit.
 * Unexplained: with it on, the VL encode, which never calls it, measured 0.4-0.5 ms slower in
 * every lease (5.93 -> 6.42 ms; not the combine's programmatic launch: RTV_PDL=0 the same). One
 * guess to check: its 81 KB of shared memory leaves the SMs' L1/shared carveout changed for
 * the VL graph's kernels.
 *
 * attn_split_k, grid (heads, ceil(n_k / 64)), 8 warps: each CTA takes one head and 64 keys for
 * all n_q <= 64 rows (4 blocks of 16). It copies the 64 K and V rows into shared memory
 * (cp.async); then
 *   - S = Q K^T with mma.sync m16n8k16: warp (row block, half) over its 32 keys, Q fragments
 *     from global memory and K fragments from shared memory as 16-byte loads of 8 consecutive
 *     head_dim elements used as the k positions {2t, 2t+1, 2t+8, 2t+9} of two k16 steps (the
 *     same order on both sides, so the dot product is unchanged; attn_small.cu does the same);
 *   - scale, the limit rule, the row max over the CTA's 64 keys (the two halves meet in shared
 *     memory), probabilities exp(s - max) rounded to bf16, as the P.V product uses them, into
 *     shared memory with their row sums;
 *   - O = P V: warp (row block, half) over all 64 keys and its half of head_dim, P through
 *     ldmatrix, V through ldmatrix.trans;
 *   - the unnormalised O (fp32), the row max and the row sum go to scratch.
 * attn_combine_k, grid n_q, one warp per head: O = sum_c e^(m_c - M) O_c / sum_c e^(m_c - M) l_c
 * over the key chunks c, written as bf16 (launched programmatically on sm_90, so its launch
 * overlaps the first kernel). */
#include <math.h>

#include "cuda_impl.h"
#include "mma.cuh"

#define SA_ROWS 64     /* query rows at most (4 blocks of 16) */
#define SA_THREADS 256 /* 8 warps: 4 row blocks x 2 halves */
#define SA_MAXCH 64    /* key chunks at most */

/* CK keys per CTA (64 or 32); P's row stride CK + 8 elements puts ldmatrix's 8 rows on
 * distinct banks */
template <int HD8, int CK>
static __global__ void __launch_bounds__(SA_THREADS)
    attn_split_k(float *__restrict__ opart, float2 *__restrict__ ml, const bf16 *q, int ldq,
                 const bf16 *k, const bf16 *v, int ldkv, int n_k, int n_q, int group,
                 float scale, int limit_rows, int limit_keys)
{
    rtv_griddep_launch(); /* the combine may launch now; it waits for this grid (mma.cuh) */
    constexpr int HD = HD8 * 8, NCH = HD8 / 4, DT = HD8 / 2, PS = CK + 8, J = CK / 16;
    /* row strides (head_dim % 64 == 0): K's 64 mod 128 bytes, where a quarter warp's 16-byte
     * loads take 2 rows x 64 bytes; V's 16 mod 128, where ldmatrix takes 8 rows x 16 bytes */
    constexpr int KS = HD + 32, VS = HD + 8;
    extern __shared__ __align__(16) unsigned char sa_sh[];
    bf16 *ks = (bf16 *)sa_sh, *vs = ks + CK * KS, *ps = vs + CK * VS;
    float *rm = (float *)(ps + SA_ROWS * PS), *rl = rm + 2 * SA_ROWS; /* [half][row] */
    const int h = blockIdx.x, ch = blockIdx.y, nch = gridDim.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int row0 = (warp >> 1) * 16, half = warp & 1;
    const int key0 = ch * CK, nck = min(CK, n_k - key0);
    const int kvh = h / group;
    const bf16 *kh = k + (size_t)kvh * HD + (size_t)key0 * ldkv;
    const bf16 *vh = v + (size_t)kvh * HD + (size_t)key0 * ldkv;
    const bf16 *qh = q + (size_t)h * HD;

    /* this chunk's K and V rows; rows past n_k zeroed (probability 0, and 0 times a stale
     * value could be NaN) */
    for (int i = threadIdx.x; i < CK * HD8; i += SA_THREADS) { /* K: the first group */
        const int r = i / HD8, c = (i - r * HD8) * 8;
        if (r < nck) rtv_cp_async16(ks + r * KS + c, kh + (size_t)r * ldkv + c);
        else *(uint4 *)(ks + r * KS + c) = make_uint4(0, 0, 0, 0);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    for (int i = threadIdx.x; i < CK * HD8; i += SA_THREADS) { /* V: lands during S */
        const int r = i / HD8, c = (i - r * HD8) * 8;
        if (r < nck) rtv_cp_async16(vs + r * VS + c, vh + (size_t)r * ldkv + c);
        else *(uint4 *)(vs + r * VS + c) = make_uint4(0, 0, 0, 0);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    /* Q fragments meanwhile: rows g and g + 8 of the row block (past n_q: the last row, whose
     * results are not written), 8 elements at 32c + 8t */
    uint4 qa[NCH], qb[NCH];
    {
        const int ra = min(row0 + g, n_q - 1), rb = min(row0 + g + 8, n_q - 1);
#pragma unroll
        for (int c = 0; c < NCH; c++) {
            qa[c] = *(const uint4 *)(qh + (size_t)ra * ldq + 32 * c + 8 * t);
            qb[c] = *(const uint4 *)(qh + (size_t)rb * ldq + 32 * c + 8 * t);
        }
    }
    asm volatile("cp.async.wait_group 1;" ::: "memory");
    __syncthreads();

    /* S over this warp's CK / 2 keys: J tiles of 8 */
    float sacc[J][4];
#pragma unroll
    for (int j = 0; j < J; j++) {
        sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.f;
        const bf16 *kr = ks + (half * (CK / 2) + 8 * j + g) * KS;
#pragma unroll
        for (int c = 0; c < NCH; c++) {
            const uint4 kf = *(const uint4 *)(kr + 32 * c + 8 * t);
            rtv_mma16816(sacc[j], qa[c].x, qb[c].x, qa[c].y, qb[c].y, kf.x, kf.y);
            rtv_mma16816(sacc[j], qa[c].z, qb[c].z, qa[c].w, qb[c].w, kf.z, kf.w);
        }
    }

    /* scale, the limit rule (in chunk-local key numbers), the row max over both halves */
    const int r_lo = row0 + g, r_hi = r_lo + 8;
    const int lim_lo = (r_lo < limit_rows ? limit_keys : n_k) - key0;
    const int lim_hi = (r_hi < limit_rows ? limit_keys : n_k) - key0;
    float m_lo = -INFINITY, m_hi = -INFINITY;
#pragma unroll
    for (int j = 0; j < J; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int kl = half * (CK / 2) + 8 * j + 2 * t + (e & 1);
            const float x = kl < ((e >> 1) ? lim_hi : lim_lo) ? sacc[j][e] * scale : -INFINITY;
            sacc[j][e] = x;
            if (e >> 1) m_hi = fmaxf(m_hi, x);
            else m_lo = fmaxf(m_lo, x);
        }
    m_lo = rtv_quad_max(m_lo);
    m_hi = rtv_quad_max(m_hi);
    if (t == 0) {
        rm[half * SA_ROWS + r_lo] = m_lo;
        rm[half * SA_ROWS + r_hi] = m_hi;
    }
    __syncthreads();
    m_lo = fmaxf(rm[r_lo], rm[SA_ROWS + r_lo]);
    m_hi = fmaxf(rm[r_hi], rm[SA_ROWS + r_hi]);

    /* P = exp(s - max) as bf16 into shared memory, row sums of those rounded values */
    float l_lo = 0.f, l_hi = 0.f;
#pragma unroll
    for (int j = 0; j < J; j++) {
        float p[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float x = sacc[j][e];
            const float y = x == -INFINITY ? 0.f : __expf(x - ((e >> 1) ? m_hi : m_lo));
            p[e] = __bfloat162float(__float2bfloat16(y));
        }
        l_lo += p[0] + p[1];
        l_hi += p[2] + p[3];
        const int kl = half * (CK / 2) + 8 * j + 2 * t;
        *(uint32_t *)(ps + r_lo * PS + kl) = rtv_pack_bf16x2(p[0], p[1]);
        *(uint32_t *)(ps + r_hi * PS + kl) = rtv_pack_bf16x2(p[2], p[3]);
    }
    l_lo = rtv_quad_sum(l_lo);
    l_hi = rtv_quad_sum(l_hi);
    if (t == 0) {
        rl[half * SA_ROWS + r_lo] = l_lo;
        rl[half * SA_ROWS + r_hi] = l_hi;
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();

    /* O = P V over the CK keys, this warp's half of head_dim: DT tiles of 8 columns */
    float oacc[DT][4];
#pragma unroll
    for (int d = 0; d < DT; d++) oacc[d][0] = oacc[d][1] = oacc[d][2] = oacc[d][3] = 0.f;
    const bf16 *pa = ps + (row0 + (lane & 15)) * PS + (lane >> 4) * 8;
    const unsigned vbase = (unsigned)__cvta_generic_to_shared(vs + (lane & 15) * VS + half * (HD / 2));
#pragma unroll
    for (int kk = 0; kk < CK / 16; kk++) {
        uint32_t a[4];
        rtv_ldsm_x4(a, pa + 16 * kk);
#pragma unroll
        for (int d = 0; d < DT; d++) {
            uint32_t b0, b1;
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                         : "=r"(b0), "=r"(b1)
                         : "r"(vbase + (unsigned)((16 * kk * VS + 8 * d) * 2)));
            rtv_mma16816(oacc[d], a[0], a[1], a[2], a[3], b0, b1);
        }
    }

    /* the chunk's unnormalised O, row max and row sum */
    float *op = opart + (size_t)(h * nch + ch) * SA_ROWS * HD;
#pragma unroll
    for (int d = 0; d < DT; d++) {
        const int col = half * (HD / 2) + 8 * d + 2 * t;
        if (r_lo < n_q) *(float2 *)(op + (size_t)r_lo * HD + col) = make_float2(oacc[d][0], oacc[d][1]);
        if (r_hi < n_q) *(float2 *)(op + (size_t)r_hi * HD + col) = make_float2(oacc[d][2], oacc[d][3]);
    }
    if (half == 0 && t == 0) {
        float2 *mp = ml + (size_t)(h * nch + ch) * SA_ROWS;
        if (r_lo < n_q) mp[r_lo] = make_float2(m_lo, rl[r_lo] + rl[SA_ROWS + r_lo]);
        if (r_hi < n_q) mp[r_hi] = make_float2(m_hi, rl[r_hi] + rl[SA_ROWS + r_hi]);
    }
}

/* Row blockIdx.x, head threadIdx.x / 32: the chunks' partial results into bf16 out. Lane c
 * reads chunk c's and c + 32's (max, sum) so that they arrive together, and the O partials
 * are read 8 chunks at a time: a chain of one L2 round trip per load made it 7.4 us (ncu). */
template <int HD>
static __global__ void attn_combine_k(bf16 *out, int ldo, const float *__restrict__ opart,
                                      const float2 *__restrict__ ml, int nch)
{
    rtv_griddep_wait(); /* attn_split_k's results (a programmatic launch on sm_90) */
    constexpr int NV = HD / 128, CB = 8; /* float4 per lane and chunk; chunks per batch */
    const int r = blockIdx.x, h = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float2 *st = ml + (size_t)h * nch * SA_ROWS + r;
    const float2 s0 = lane < nch ? st[lane * SA_ROWS] : make_float2(-INFINITY, 0.f);
    const float2 s1 = lane + 32 < nch ? st[(lane + 32) * SA_ROWS] : make_float2(-INFINITY, 0.f);
    float M = fmaxf(s0.x, s1.x);
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    const float w0 = s0.x == -INFINITY ? 0.f : __expf(s0.x - M);
    const float w1 = s1.x == -INFINITY ? 0.f : __expf(s1.x - M);
    float L = w0 * s0.y + w1 * s1.y;
    for (int o = 16; o > 0; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
    float acc[NV][4] = {};
    const float *ob = opart + ((size_t)h * nch * SA_ROWS + r) * HD + 4 * lane;
    for (int c0 = 0; c0 < nch; c0 += CB) {
        float4 x[CB][NV];
#pragma unroll
        for (int j = 0; j < CB; j++)
#pragma unroll
            for (int i = 0; i < NV; i++)
                x[j][i] = *(const float4 *)(ob + (size_t)min(c0 + j, nch - 1) * SA_ROWS * HD +
                                            128 * i); /* chunks past nch weigh 0 */
#pragma unroll
        for (int j = 0; j < CB; j++) {
            const int c = c0 + j;
            const float w = __shfl_sync(0xffffffffu, c < 32 ? w0 : w1, c & 31);
#pragma unroll
            for (int i = 0; i < NV; i++) {
                acc[i][0] += w * x[j][i].x;
                acc[i][1] += w * x[j][i].y;
                acc[i][2] += w * x[j][i].z;
                acc[i][3] += w * x[j][i].w;
            }
        }
    }
    const float inv = L > 0.f ? 1.0f / L : 0.f;
    bf16 *y = out + (size_t)r * ldo + (size_t)h * HD + 4 * lane;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        uint2 u = make_uint2(rtv_pack_bf16x2(acc[i][0] * inv, acc[i][1] * inv),
                             rtv_pack_bf16x2(acc[i][2] * inv, acc[i][3] * inv));
        *(uint2 *)(y + 128 * i) = u;
    }
}

typedef void (*sa_kernel)(float *, float2 *, const bf16 *, int, const bf16 *, const bf16 *, int,
                          int, int, int, float, int, int);
typedef void (*sc_kernel)(bf16 *, int, const float *, const float2 *, int);

static size_t sa_smem(int hd, int ck)
{
    return (size_t)ck * (2 * hd + 40) * sizeof(bf16) + (size_t)SA_ROWS * (ck + 8) * sizeof(bf16) +
           (size_t)4 * SA_ROWS * sizeof(float);
}

static sa_kernel sa_pick(int hd, int ck)
{
    if (hd == 256) return ck == 64 ? attn_split_k<32, 64> : attn_split_k<32, 32>;
    return ck == 64 ? attn_split_k<16, 64> : attn_split_k<16, 32>;
}

int rtv_cuda_attn_split_init(rtv_stream *s)
{
    /* RTV_SPLIT_ATTN: 0 off (the cuBLAS path), 1 chunks of 64 keys, 2 chunks of 32 */
    const char *v = getenv("RTV_SPLIT_ATTN");
    s->attn_split = v && (v[0] == '1' || v[0] == '2') ? 32 << (v[0] == '1') : 0;
    for (int hd = 128; hd <= 256; hd *= 2)
        for (int ck = 32; ck <= 64; ck *= 2)
            CU_TRY(cudaFuncSetAttribute(sa_pick(hd, ck),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)sa_smem(hd, ck)));
    return RTV_OK;
}

/* Returns 1 when the call is not for these kernels (the caller runs the cuBLAS path). */
int rtv_cuda_attn_split(rtv_stream *s, void *out, int ldo, const void *q, int ldq, const void *k,
                        const void *v, int ldkv, int n_k, int n_q, int n_heads, int n_kv_heads,
                        int head_dim, float scale, int limit_rows, int limit_keys, int *st)
{
    *st = RTV_OK;
    const int ck = s->attn_split;
    if (!ck || (head_dim != 128 && head_dim != 256)) return 1;
    const int nch = (n_k + ck - 1) / ck;
    if (n_q > SA_ROWS || n_heads > 32 || nch > SA_MAXCH || ldq % 8 || ldkv % 8 || ldo % 4 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 || (uintptr_t)out % 8 ||
        sa_smem(head_dim, ck) > (size_t)s->attn_small_smem)
        return 1;
    rtv_cuda_scratch_begin(s);
    float *opart = (float *)rtv_cuda_scratch(
        s, (size_t)n_heads * nch * SA_ROWS * head_dim * sizeof(float));
    float2 *ml = (float2 *)rtv_cuda_scratch(s, (size_t)n_heads * nch * SA_ROWS * sizeof(float2));
    if (!opart || !ml) {
        *st = RTV_E_NOMEM;
        return 0;
    }
    const sc_kernel kc = head_dim == 256 ? attn_combine_k<256> : attn_combine_k<128>;
    sa_pick(head_dim, ck)<<<dim3(n_heads, nch), SA_THREADS, sa_smem(head_dim, ck), s->s>>>(
        opart, ml, (const bf16 *)q, ldq, (const bf16 *)k, (const bf16 *)v, ldkv, n_k, n_q,
        n_heads / n_kv_heads, scale, limit_rows, limit_keys);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        *st = rtv_cuda_fail(e, "attention (split) launch", __FILE__, __LINE__);
        return 0;
    }
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr;
    cfg.gridDim = dim3(n_q);
    cfg.blockDim = dim3(32 * n_heads);
    cfg.stream = s->s;
    if (s->pdl) {
        attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr.val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
    }
    e = cudaLaunchKernelEx(&cfg, kc, (bf16 *)out, ldo, (const float *)opart, (const float2 *)ml,
                           nch);
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "attention (combine) launch", __FILE__, __LINE__);
    return 0;
}
