/* kernels/cuda/attn_long.cu — attention in one kernel (plus a combine when the keys are split)
 * for head_dim 128 or 256 and any key count, one key segment: pi0's prefix (512 x 512 keys,
 * 8 heads over one kv head) and the action expert's rows over the cached prefix (50 x 563).
 * The cuBLAS path runs three kernels per call (QK GEMM into fp32 logits, softmax, PV GEMM) and
 * writes the logits out and reads them back; this keeps them on chip.
 *
 * Query rows of a kv head: the group's heads' rows one after another (row r = head r / n_q,
 * query r % n_q), so MQA's 8 heads x 50 queries are 400 rows that share every K/V tile.
 * Grid (row blocks of 64, kv heads, key splits); 4 warps, 16 rows each. A CTA copies its Q
 * block into shared memory once, then walks its share of the 64-key tiles with the next
 * tile's K and V in flight (cp.async, two stages), and per tile and warp:
 *   - S = Q K^T (16 x 64) with ldmatrix + mma.sync m16n8k16 (both operands from shared
 *     memory, 128-byte swizzled rows: conflict-free);
 *   - scale, the limit rule (query rows < limit_rows see keys < limit_keys), running row max
 *     and sum (online softmax), probabilities rounded to bf16 as the cuBLAS path and PyTorch's
 *     eager attention do, the running O rescaled;
 *   - O += P V with P's A fragments taken from S's accumulators, V's B fragments by
 *     ldmatrix.trans; O (16 x head_dim fp32) lives in registers.
 * One split: O / sum goes out as bf16. Several (few query rows, e.g. the expert's 400: 7 row
 * blocks would leave most SMs idle): each split leaves (O, max, sum) in the stream's scratch
 * and a second kernel combines them, rescaled by e^(max - MAX). Splits: the fewest waves x
 * tiles per split, then the fewest splits. */
#include <math.h>
#include <stdlib.h>

#include "cuda_impl.h"
#include "mma.cuh"

#define AL_ROWS 64 /* query rows per CTA: 4 row blocks of 16 */
#define AL_KT 64   /* keys per tile */

struct al_args {
    bf16 *out;
    const bf16 *q, *k, *v;
    float *po;  /* splits > 1: partial O [split][kv head][R][HD] */
    float2 *ml; /* and (max, sum) [split][kv head][R] */
    int ldo, ldq, ldkv, n_k, n_q, group, limit_rows, limit_keys, R, n_tiles, tps;
    float scale;
};

/* head_dim = 64 HC; KSP warps share a row block, each over its KT / KSP keys of every tile */
template <int HC, int KSP>
static __global__ void __launch_bounds__(128 * KSP) attn_long_k(const __grid_constant__ al_args a)
{
    constexpr int HD = 64 * HC, U = HD / 8; /* 16-byte units per row */
    constexpr int BLK = 64 * 64;            /* elements of one 64-column chunk of 64 rows */
    constexpr int NTH = 128 * KSP, NJ = 8 / KSP; /* threads; 8-key n-tiles per warp and tile */
    extern __shared__ __align__(16) unsigned char al_sh[];
    bf16 *qs = (bf16 *)al_sh;  /* [HC][64 rows][64] */
    bf16 *kvs = qs + HC * BLK; /* [2 stages][K, V][HC][64 keys][64] */
    const int tid = threadIdx.x, lane = tid & 31, warp = (tid >> 5) & 3, kp = tid >> 7;
    const int g = lane >> 2, t = lane & 3;
    const int kvh = blockIdx.y, r0 = blockIdx.x * AL_ROWS;
    const int t0 = blockIdx.z * a.tps, t1 = min(a.n_tiles, t0 + a.tps);
    rtv_griddep_launch();

    for (int i = tid; i < AL_ROWS * U; i += NTH) {
        const int row = i / U, u = i - row * U, rr = r0 + row;
        const bool ok = rr < a.R;
        const int h = kvh * a.group + (ok ? rr / a.n_q : 0), qi = ok ? rr % a.n_q : 0;
        rtv_cp_async16_z(qs + (u >> 3) * BLK + rtv_swz(row, u & 7),
                         a.q + (size_t)qi * a.ldq + (size_t)h * HD + 8 * u, ok);
    }
    auto load = [&](int tile, int st) {
        bf16 *ks = kvs + (size_t)st * 2 * HC * BLK, *vs = ks + HC * BLK;
        for (int i = tid; i < AL_KT * U; i += NTH) {
            const int row = i / U, u = i - row * U, key = tile * AL_KT + row;
            const bool ok = key < a.n_k;
            const size_t off = (size_t)(ok ? key : 0) * a.ldkv + (size_t)kvh * HD + 8 * u;
            const int d = (u >> 3) * BLK + rtv_swz(row, u & 7);
            rtv_cp_async16_z(ks + d, a.k + off, ok);
            rtv_cp_async16_z(vs + d, a.v + off, ok);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    };
    if (t0 < t1) load(t0, 0);
    else asm volatile("cp.async.commit_group;" ::: "memory");

    /* this lane's two rows (g and g + 8 of the warp's 16) and the keys they may see */
    const int rlo = r0 + warp * 16 + g, rhi = rlo + 8;
    const int lim_lo = (rlo % a.n_q) < a.limit_rows ? a.limit_keys : a.n_k;
    const int lim_hi = (rhi % a.n_q) < a.limit_rows ? a.limit_keys : a.n_k;
    float o[HC * 8][4];
#pragma unroll
    for (int d = 0; d < HC * 8; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.f, l_hi = 0.f;
    const int sw = lane & 7, ua = lane >> 4, ub = (lane >> 3) & 1;
    const int ra = warp * 16 + (lane & 15), rb = (lane & 7) + 8 * (lane >> 4);

    for (int tile = t0; tile < t1; tile++) {
        const int st = (tile - t0) & 1;
        if (tile + 1 < t1) {
            load(tile + 1, st ^ 1);
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads();
        const bf16 *ks = kvs + (size_t)st * 2 * HC * BLK, *vs = ks + HC * BLK;

        float s[NJ][4];
#pragma unroll
        for (int j = 0; j < NJ; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
        const int kw0 = kp * (AL_KT / KSP); /* this warp's first key in the tile */
#pragma unroll
        for (int kk = 0; kk < HC * 4; kk++) {
            const int c = kk >> 2, k4 = kk & 3;
            uint32_t af[4];
            rtv_ldsm_x4(af, qs + c * BLK + ra * 64 + (((2 * k4 + ua) ^ sw) << 3));
#pragma unroll
            for (int p = 0; p < NJ / 2; p++) {
                uint32_t bf[4];
                rtv_ldsm_x4(bf, ks + c * BLK + (kw0 + 16 * p + rb) * 64 + (((2 * k4 + ub) ^ sw) << 3));
                rtv_mma16816(s[2 * p], af[0], af[1], af[2], af[3], bf[0], bf[1]);
                rtv_mma16816(s[2 * p + 1], af[0], af[1], af[2], af[3], bf[2], bf[3]);
            }
        }

        /* scale and mask; the tile's row maxima (a quad of lanes shares a row) */
        const int key0 = tile * AL_KT + kw0;
        float mt_lo = -INFINITY, mt_hi = -INFINITY;
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = key0 + 8 * j + 2 * t + (e & 1);
                const float x = key < ((e >> 1) ? lim_hi : lim_lo) ? s[j][e] * a.scale : -INFINITY;
                s[j][e] = x;
                if (e >> 1) mt_hi = fmaxf(mt_hi, x);
                else mt_lo = fmaxf(mt_lo, x);
            }
        mt_lo = rtv_quad_max(mt_lo);
        mt_hi = rtv_quad_max(mt_hi);
        const float mn_lo = fmaxf(m_lo, mt_lo), mn_hi = fmaxf(m_hi, mt_hi);
        /* nothing seen yet (m = -inf): O and the sum are 0, any factor will do */
        const float al_lo = m_lo == -INFINITY ? 0.f : __expf(m_lo - mn_lo);
        const float al_hi = m_hi == -INFINITY ? 0.f : __expf(m_hi - mn_hi);
        float ps_lo = 0.f, ps_hi = 0.f;
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float x = s[j][e];
                float y = x == -INFINITY ? 0.f : __expf(x - ((e >> 1) ? mn_hi : mn_lo));
                y = __bfloat162float(__float2bfloat16(y)); /* what P.V uses */
                s[j][e] = y;
                if (e >> 1) ps_hi += y;
                else ps_lo += y;
            }
        ps_lo = rtv_quad_sum(ps_lo);
        ps_hi = rtv_quad_sum(ps_hi);
        l_lo = l_lo * al_lo + ps_lo;
        l_hi = l_hi * al_hi + ps_hi;
        m_lo = mn_lo;
        m_hi = mn_hi;
#pragma unroll
        for (int d = 0; d < HC * 8; d++) {
            o[d][0] *= al_lo;
            o[d][1] *= al_lo;
            o[d][2] *= al_hi;
            o[d][3] *= al_hi;
        }

        /* O += P V: keys in steps of 16, head_dim in pairs of 8-column tiles */
#pragma unroll
        for (int kk = 0; kk < NJ / 2; kk++) {
            const uint32_t a0 = rtv_pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
            const uint32_t a1 = rtv_pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
            const uint32_t a2 = rtv_pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            const uint32_t a3 = rtv_pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            const int key = kw0 + 16 * kk + (lane & 15);
#pragma unroll
            for (int q = 0; q < HC * 4; q++) {
                const int db = 2 * q + (lane >> 4); /* 8-column block of head_dim */
                uint32_t b[4];
                rtv_ldsm_x4_trans(b, vs + (db >> 3) * BLK + rtv_swz(key, db & 7));
                rtv_mma16816(o[2 * q], a0, a1, a2, a3, b[0], b[1]);
                rtv_mma16816(o[2 * q + 1], a0, a1, a2, a3, b[2], b[3]);
            }
        }
        __syncthreads(); /* the stage is read: the next iteration's copy may overwrite it */
    }
    if (KSP == 2) { /* the key shares meet: share 1 leaves (O, m, l) over the tiles' memory */
        constexpr int CW = HC * 32 + 4; /* floats per lane */
        float *cm = (float *)kvs + (size_t)warp * CW * 32 + lane;
        if (kp == 1) {
#pragma unroll
            for (int d = 0; d < HC * 8; d++)
#pragma unroll
                for (int e = 0; e < 4; e++) cm[(d * 4 + e) * 32] = o[d][e];
            cm[(HC * 32 + 0) * 32] = m_lo;
            cm[(HC * 32 + 1) * 32] = m_hi;
            cm[(HC * 32 + 2) * 32] = l_lo;
            cm[(HC * 32 + 3) * 32] = l_hi;
        }
        __syncthreads();
        if (kp == 1) return;
        const float m1_lo = cm[(HC * 32 + 0) * 32], m1_hi = cm[(HC * 32 + 1) * 32];
        const float M_lo = fmaxf(m_lo, m1_lo), M_hi = fmaxf(m_hi, m1_hi);
        const float w0_lo = m_lo == -INFINITY ? 0.f : __expf(m_lo - M_lo);
        const float w0_hi = m_hi == -INFINITY ? 0.f : __expf(m_hi - M_hi);
        const float w1_lo = m1_lo == -INFINITY ? 0.f : __expf(m1_lo - M_lo);
        const float w1_hi = m1_hi == -INFINITY ? 0.f : __expf(m1_hi - M_hi);
#pragma unroll
        for (int d = 0; d < HC * 8; d++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                o[d][e] = o[d][e] * ((e >> 1) ? w0_hi : w0_lo) +
                          cm[(d * 4 + e) * 32] * ((e >> 1) ? w1_hi : w1_lo);
        l_lo = l_lo * w0_lo + cm[(HC * 32 + 2) * 32] * w1_lo;
        l_hi = l_hi * w0_hi + cm[(HC * 32 + 3) * 32] * w1_hi;
        m_lo = M_lo;
        m_hi = M_hi;
    }

    if (gridDim.z == 1) {
        const float i_lo = l_lo > 0.f ? 1.0f / l_lo : 0.f, i_hi = l_hi > 0.f ? 1.0f / l_hi : 0.f;
        bf16 *olo = rlo < a.R ? a.out + (size_t)(rlo % a.n_q) * a.ldo +
                                    (size_t)(kvh * a.group + rlo / a.n_q) * HD
                              : NULL;
        bf16 *ohi = rhi < a.R ? a.out + (size_t)(rhi % a.n_q) * a.ldo +
                                    (size_t)(kvh * a.group + rhi / a.n_q) * HD
                              : NULL;
#pragma unroll
        for (int d = 0; d < HC * 8; d++) {
            const int col = 8 * d + 2 * t;
            if (olo) *(uint32_t *)(olo + col) = rtv_pack_bf16x2(o[d][0] * i_lo, o[d][1] * i_lo);
            if (ohi) *(uint32_t *)(ohi + col) = rtv_pack_bf16x2(o[d][2] * i_hi, o[d][3] * i_hi);
        }
        return;
    }
    const size_t base = ((size_t)blockIdx.z * gridDim.y + kvh) * a.R;
#pragma unroll
    for (int d = 0; d < HC * 8; d++) {
        const int col = 8 * d + 2 * t;
        if (rlo < a.R) *(float2 *)(a.po + (base + rlo) * HD + col) = make_float2(o[d][0], o[d][1]);
        if (rhi < a.R) *(float2 *)(a.po + (base + rhi) * HD + col) = make_float2(o[d][2], o[d][3]);
    }
    if (t == 0) {
        if (rlo < a.R) a.ml[base + rlo] = make_float2(m_lo, l_lo);
        if (rhi < a.R) a.ml[base + rhi] = make_float2(m_hi, l_hi);
    }
}

/* out row (kv head, r), 8 columns per thread = sum over splits of e^(m - M) O / sum of
 * e^(m - M) l, in split order. */
template <int HC>
static __global__ void attn_long_combine_k(const __grid_constant__ al_args a, int splits, int n_kv)
{
    constexpr int HD = 64 * HC, U = HD / 8;
    rtv_griddep_launch();
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n_kv * a.R * U) return;
    const int u = (int)(idx % U);
    const size_t row = idx / U; /* kv head * R + r */
    const int kvh = (int)(row / a.R), r = (int)(row % a.R);
    float M = -INFINITY;
    for (int z = 0; z < splits; z++) M = fmaxf(M, a.ml[(size_t)z * n_kv * a.R + row].x);
    float L = 0.f, acc[8] = { 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f };
    for (int z = 0; z < splits; z++) {
        const size_t zr = (size_t)z * n_kv * a.R + row;
        const float2 ml = a.ml[zr];
        if (ml.x == -INFINITY) continue; /* this split saw no key of the row */
        const float w = __expf(ml.x - M);
        L += w * ml.y;
        const float4 *p = (const float4 *)(a.po + zr * HD + 8 * u);
        const float4 x0 = p[0], x1 = p[1];
        acc[0] += w * x0.x; acc[1] += w * x0.y; acc[2] += w * x0.z; acc[3] += w * x0.w;
        acc[4] += w * x1.x; acc[5] += w * x1.y; acc[6] += w * x1.z; acc[7] += w * x1.w;
    }
    const float inv = L > 0.f ? 1.0f / L : 0.f;
    uint4 ov;
    uint32_t *op = (uint32_t *)&ov;
#pragma unroll
    for (int i = 0; i < 4; i++) op[i] = rtv_pack_bf16x2(acc[2 * i] * inv, acc[2 * i + 1] * inv);
    *(uint4 *)(a.out + (size_t)(r % a.n_q) * a.ldo + (size_t)(kvh * a.group + r / a.n_q) * HD +
               8 * u) = ov;
}

static size_t al_smem(int hc) { return (size_t)5 * hc * 64 * 64 * sizeof(bf16); }

int rtv_cuda_attn_long_init(rtv_stream *s)
{
    int dev = 0, optin = 0;
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    s->attn_long_smem = optin;
    s->attn_long = rtv_cuda_env_switch("RTV_ATTN_LONG", 0); /* opt-in until measured on a GPU */
    const char *e = getenv("RTV_ATTN_LONG_KSP");
    s->attn_long_ksp = e && e[0] == '1' ? 1 : 2;
    if ((size_t)optin >= al_smem(2)) {
        CU_TRY(cudaFuncSetAttribute(attn_long_k<2, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)al_smem(2)));
        CU_TRY(cudaFuncSetAttribute(attn_long_k<2, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)al_smem(2)));
    }
    if ((size_t)optin >= al_smem(4)) {
        CU_TRY(cudaFuncSetAttribute(attn_long_k<4, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)al_smem(4)));
        CU_TRY(cudaFuncSetAttribute(attn_long_k<4, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)al_smem(4)));
    }
    return RTV_OK;
}

/* Returns 1 when the call is not for this kernel (the caller runs the cuBLAS path). */
int rtv_cuda_attn_long(rtv_stream *s, void *out, int ldo, const void *q, int ldq, const void *k,
                       const void *v, int ldkv, int n_k, int n_q, int n_heads, int n_kv_heads,
                       int head_dim, float scale, int limit_rows, int limit_keys, int *st)
{
    *st = RTV_OK;
    const int hc = head_dim / 64;
    const size_t smem = al_smem(hc);
    if (!s->attn_small || !s->attn_long || (head_dim != 128 && head_dim != 256) || smem > (size_t)s->attn_long_smem ||
        ldq % 8 || ldkv % 8 || ldo % 8 || ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)out) % 16)
        return 1;
    const int group = n_heads / n_kv_heads, R = group * n_q;
    const int blocks = (R + AL_ROWS - 1) / AL_ROWS, n_tiles = (n_k + AL_KT - 1) / AL_KT;
    if (blocks > 65535 || n_kv_heads > 65535) return 1;
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    const int fit = (int)((228u * 1024) / (smem + 1024)) > 0 ? (int)((228u * 1024) / (smem + 1024)) : 1;
    int best = 1;
    long best_cost = -1;
    for (int z = 1; z <= n_tiles && z <= 32; z++) {
        const int tps = (n_tiles + z - 1) / z;
        if ((z - 1) * tps >= n_tiles) continue; /* a split without tiles */
        const long ctas = (long)blocks * n_kv_heads * z;
        const long cost = ((ctas + (long)sms * fit - 1) / ((long)sms * fit)) * tps;
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            best = z;
        }
    }
    al_args a;
    a.out = (bf16 *)out;
    a.q = (const bf16 *)q;
    a.k = (const bf16 *)k;
    a.v = (const bf16 *)v;
    a.po = NULL;
    a.ml = NULL;
    a.ldo = ldo; a.ldq = ldq; a.ldkv = ldkv; a.n_k = n_k; a.n_q = n_q; a.group = group;
    a.limit_rows = limit_rows; a.limit_keys = limit_keys; a.R = R; a.n_tiles = n_tiles;
    a.tps = (n_tiles + best - 1) / best;
    a.scale = scale;
    if (best > 1) {
        rtv_cuda_scratch_begin(s);
        const size_t rows = (size_t)best * n_kv_heads * R;
        a.po = (float *)rtv_cuda_scratch(s, rows * head_dim * sizeof(float));
        a.ml = (float2 *)rtv_cuda_scratch(s, rows * sizeof(float2));
        if (!a.po || !a.ml) {
            *st = RTV_E_NOMEM;
            return 0;
        }
    }
    dim3 grid(blocks, n_kv_heads, best);
    const int ksp = s->attn_long_ksp;
    if (hc == 4 && ksp == 2) attn_long_k<4, 2><<<grid, 256, smem, s->s>>>(a);
    else if (hc == 4) attn_long_k<4, 1><<<grid, 128, smem, s->s>>>(a);
    else if (ksp == 2) attn_long_k<2, 2><<<grid, 256, smem, s->s>>>(a);
    else attn_long_k<2, 1><<<grid, 128, smem, s->s>>>(a);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && best > 1) {
        const size_t n = (size_t)n_kv_heads * R * (head_dim / 8);
        if (hc == 4) attn_long_combine_k<4><<<rtv_cdiv(n, 256), 256, 0, s->s>>>(a, best, n_kv_heads);
        else attn_long_combine_k<2><<<rtv_cdiv(n, 256), 256, 0, s->s>>>(a, best, n_kv_heads);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "attention (long) launch", __FILE__, __LINE__);
    return 0;
}
