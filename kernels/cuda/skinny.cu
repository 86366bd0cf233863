/* kernels/cuda/skinny.cu — y[M,N] = epi(x[M,K] . w[N,K]^T + bias) for few rows (M <= 64).
 * OPT-IN (RTV_SKINNY=1, or rtv_cuda_matmul_tune): on the H100 it is still 1.3-1.6x slower than
 * cuBLASLt at the expert's M = 50/51 shapes, ties it at M = 8 (tests/cuda/bench_matmul.c;
 * figures in kernels/README.md). It is kept, tested on every GPU run, as the base for fused
 * epilogues (GeGLU, RoPE, RMSNorm) that cuBLASLt cannot do.
 *
 * The action expert's GEMMs have M = 50 or 51 rows against weights of 1024 x 2560 .. 4096 x
 * 1024: each weight element is used ~50 times, so the GEMM is bound by streaming the weights
 * once (pi0's expert: 0.6 GB of bf16 per Euler step). The kernel is shaped for that stream:
 *
 *   - mma.sync m16n8k16 (sm_80+) with the weight rows as the A operand (16 output features per
 *     tile) and the activation rows as B (8 rows per tile), so M only sets the number of n-tiles
 *     (NT = ceil(M / 8), a template parameter);
 *   - weights go from global memory straight into registers, 16 bytes per thread per row and
 *     32-wide K chunk, never through shared memory. The dot product does not care about the
 *     order of K, so each thread's 8 consecutive K elements are used as the fragment's K
 *     positions {2t, 2t+1, 2t+8, 2t+9} of two k16 steps, and the activations are read from
 *     shared memory in the same permuted order (one 16-byte load per row and chunk);
 *   - a CTA holds WN warps (2 or 4) of 32 weight rows each over one K slice [kb, kb + Kc), split
 *     again over WK warps inside the CTA (reduced in shared memory); the activation slice is
 *     copied into shared memory once per CTA (row stride Kc + 8 elements: conflict-free reads);
 *   - split K across CTAs (grid.y): on sm_90 the splits of a column tile form a thread-block
 *     cluster and sum each other's partial tiles through distributed shared memory; elsewhere
 *     (or RTV_SKINNY_CLUSTER=0) partials go through the stream's scratch and the last CTA of a
 *     tile (arrival counter, reset by that CTA, so graph replays start at zero) finishes it.
 *     Either way the sum runs in split order: deterministic;
 *   - on sm_90 the launch is a programmatic dependent one (RTV_PDL=0: off): the first weight
 *     loads go out before griddepcontrol.wait, i.e. while the previous kernel still runs;
 *   - epilogue from an fp32 staging tile, 16-byte stores: bias, GELU-tanh or SiLU, or
 *     accumulation into y (the residual add).
 * Config (WN, WK, splits): every CTA resident at once, then the most warps in flight.
 * Requirements (else the caller falls back to cuBLASLt): 1 <= M <= 64, N % 32 == 0,
 * K % 128 == 0, x, w, y, bias 16-byte aligned, ldx % 8 == 0, ldy % 8 == 0. */
#include <stdlib.h>
#include <string.h>

#include <cooperative_groups.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "tune.h"

namespace cg = cooperative_groups;

#define SK_U 4  /* K chunks of 32 per load group */

struct sk_args {
    bf16 *y;
    const bf16 *x, *w, *bias;
    float *ws;
    int *cnt;
    int ldy, ldx, M, N, K, Kc, flags, cluster;
};

static __device__ __forceinline__ uint4 ld_stream(const bf16 *p)
{
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

/* One K chunk (32 wide) of a warp: weights w4[0..3] = rows g, g+8, g+16, g+24 at K offset
 * 8t of the chunk; activations from shared memory at column kl (+8t). */
template <int NT>
static __device__ __forceinline__ void sk_chunk(float (*acc)[NT][4], const uint4 *w4,
                                                const bf16 *xs, int SX, int kl, int g, int t)
{
    /* all activation fragments first, then the k16 steps in turn: the two MMAs into one
     * accumulator are 2 NT MMAs apart instead of back to back */
    uint4 xv[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) xv[j] = *(const uint4 *)(xs + (size_t)(8 * j + g) * SX + kl + 8 * t);
#pragma unroll
    for (int j = 0; j < NT; j++) {
        rtv_mma16816(acc[0][j], w4[0].x, w4[1].x, w4[0].y, w4[1].y, xv[j].x, xv[j].y);
        rtv_mma16816(acc[1][j], w4[2].x, w4[3].x, w4[2].y, w4[3].y, xv[j].x, xv[j].y);
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        rtv_mma16816(acc[0][j], w4[0].z, w4[1].z, w4[0].w, w4[1].w, xv[j].z, xv[j].w);
        rtv_mma16816(acc[1][j], w4[2].z, w4[3].z, w4[2].w, w4[3].w, xv[j].z, xv[j].w);
    }
}

static __host__ __device__ __forceinline__ size_t sk_xs_bytes(int nt, int Kc)
{
    return ((size_t)nt * 8 * (Kc + 8) * 2 + 15) & ~(size_t)15;
}

/* Programmatic dependent launch (sm_90+): the weights do not depend on the previous kernel,
 * so their first loads go out before the wait for it; nothing is read from activations or
 * written before the wait. Launch_dependents lets the next kernel start its own weight loads. */
static __device__ __forceinline__ void griddep_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void griddep_launch(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}


/* p in the shared memory of cluster rank `rank` (-1: our own). */
static __device__ __forceinline__ const float *sk_peer(const float *p, int rank)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (rank >= 0) return cg::this_cluster().map_shared_rank(p, (unsigned)rank);
#endif
    return p;
}

template <int NT, int WN, int WK>
static __global__ void __launch_bounds__(WN *WK * 32) skinny_k(sk_args a)
{
    constexpr int STG = WN * 32 + 4; /* staging row stride, floats (conflict-free) */
    constexpr int CH = WN * 4;       /* 8-feature chunks per tile row */
    extern __shared__ __align__(16) unsigned char sk_sh[];
    bf16 *xs = (bf16 *)sk_sh;
    const int SX = a.Kc + 8;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wn = warp % WN, wk = warp / WN;
    const int g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * (WN * 32) + wn * 32; /* this warp's first feature row */
    const bool active = r0 < a.N;
    const int kb = blockIdx.y * a.Kc;
    const int Lw = a.Kc / WK, kw0 = wk * Lw; /* this warp's K range, relative to kb */
    const int groups = Lw / (32 * SK_U);
    const bf16 *wr = a.w + (size_t)(r0 + g) * a.K + kb + kw0 + 8 * t;
    const size_t K8 = (size_t)8 * a.K;

    float acc[2][NT][4];
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.f;

    /* first weight group in flight before the activation copy */
    uint4 cur[SK_U][4];
    if (active)
#pragma unroll
        for (int u = 0; u < SK_U; u++)
#pragma unroll
            for (int q = 0; q < 4; q++) cur[u][q] = ld_stream(wr + q * K8 + 32 * u);

    griddep_launch();
    griddep_wait();
    const int c8n = a.Kc / 8;
    for (int i = tid; i < NT * 8 * c8n; i += blockDim.x) {
        int r = i / c8n, c = i - r * c8n;
        bf16 *d = xs + (size_t)r * SX + c * 8;
        if (r < a.M) rtv_cp_async16(d, a.x + (size_t)r * a.ldx + kb + c * 8);
        else *(uint4 *)d = make_uint4(0, 0, 0, 0);
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();

    if (active) {
        for (int grp = 0; grp < groups; grp++) {
            uint4 nxt[SK_U][4];
            if (grp + 1 < groups)
#pragma unroll
                for (int u = 0; u < SK_U; u++)
#pragma unroll
                    for (int q = 0; q < 4; q++)
                        nxt[u][q] = ld_stream(wr + q * K8 + 32 * (SK_U * (grp + 1) + u));
#pragma unroll
            for (int u = 0; u < SK_U; u++)
                sk_chunk<NT>(acc, cur[u], xs, SX, kw0 + 32 * (SK_U * grp + u), g, t);
            if (grp + 1 < groups)
#pragma unroll
                for (int u = 0; u < SK_U; u++)
#pragma unroll
                    for (int q = 0; q < 4; q++) cur[u][q] = nxt[u][q];
        }
    }

    /* fragment f = (m * NT + j) * 4 + e of lane: feature r0 + 16m + g + 8(e >> 1),
     * activation row 8j + 2t + (e & 1) */
    constexpr int NF = 8 * NT;
    float *red = (float *)(sk_sh + sk_xs_bytes(NT, a.Kc));
    float *stg = red + (WK > 1 ? (size_t)(WK - 1) * WN * NF * 32 : 0);
    if (WK > 1) {
        if (wk > 0 && active) {
            float *o = red + ((size_t)(wk - 1) * WN + wn) * NF * 32 + lane;
#pragma unroll
            for (int m = 0; m < 2; m++)
#pragma unroll
                for (int j = 0; j < NT; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) o[((m * NT + j) * 4 + e) * 32] = acc[m][j][e];
        }
        __syncthreads();
        if (wk == 0 && active)
            for (int k2 = 1; k2 < WK; k2++) {
                const float *o = red + ((size_t)(k2 - 1) * WN + wn) * NF * 32 + lane;
#pragma unroll
                for (int m = 0; m < 2; m++)
#pragma unroll
                    for (int j = 0; j < NT; j++)
#pragma unroll
                        for (int e = 0; e < 4; e++) acc[m][j][e] += o[((m * NT + j) * 4 + e) * 32];
            }
    }
    /* the CTA's partial tile [rows][128 features] in fp32 (row stride STG: conflict-free) */
    if (wk == 0 && active)
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    stg[(8 * j + 2 * t + (e & 1)) * STG + wn * 32 + 16 * m + g + 8 * (e >> 1)] =
                        acc[m][j][e];
    __syncthreads();

    /* Split K: the partial tiles of the gridDim.y CTAs of this column tile are summed in split
     * order (deterministic) by the epilogue below. With a cluster (sm_90), they are read from
     * the other CTAs' shared memory and each CTA finishes every ks-th row; otherwise they go
     * through global memory and the last CTA to arrive finishes the tile. */
    const int ks = gridDim.y, nthr = blockDim.x;
    int rank = 0, rstep = 1, nsrc = 1;
    const size_t tile_floats = (size_t)64 * STG;
    if (ks > 1 && a.cluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        cg::cluster_group cl = cg::this_cluster();
        cl.sync();
        rank = (int)cl.block_rank();
        rstep = ks;
        nsrc = ks;
#endif
    } else if (ks > 1) {
        __shared__ int last;
        float *mine = a.ws + ((size_t)blockIdx.y * gridDim.x + blockIdx.x) * tile_floats;
        for (int i = tid; i < a.M * (2 * CH); i += nthr) {
            int row = i / (2 * CH), c4 = i % (2 * CH);
            __stcg((float4 *)(mine + row * STG) + c4, *(const float4 *)(stg + row * STG + 4 * c4));
        }
        __syncthreads();
        if (tid == 0) {
            /* the barrier made the CTA's partial visible to this thread; the release fence is
             * cumulative, so it is visible GPU-wide before the count moves */
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
            int prev = atomicAdd(&a.cnt[blockIdx.x], 1);
            last = prev == ks - 1;
            if (last) a.cnt[blockIdx.x] = 0; /* every split has arrived: ready for the next */
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
        }
        __syncthreads();
        if (!last) return;
        nsrc = -ks; /* sources in global memory */
    }

    /* epilogue: items (row, 8 features), 16-byte stores; bias, activation, accumulation */
    const int c = tid % CH, f0 = blockIdx.x * (WN * 32) + 8 * c; /* nthr % CH == 0 */
    float bv[8];
    if (a.bias && f0 < a.N) {
        uint4 bb = *(const uint4 *)(a.bias + f0);
        const bf16 *bp = (const bf16 *)&bb;
#pragma unroll
        for (int i = 0; i < 8; i++) bv[i] = __bfloat162float(bp[i]);
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) bv[i] = 0.f;
    }
    const int my_rows = (a.M - rank + rstep - 1) / rstep;
    for (int it = tid; it < my_rows * CH && f0 < a.N; it += nthr) {
        const int row = rank + (it / CH) * rstep;
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = 0.f;
        const int n = nsrc < 0 ? -nsrc : nsrc;
        for (int sp = 0; sp < n; sp++) {
            const float *q = nsrc < 0
                ? a.ws + ((size_t)sp * gridDim.x + blockIdx.x) * tile_floats + row * STG + 8 * c
                : sk_peer(stg + row * STG + 8 * c, nsrc > 1 ? sp : -1);
            float4 lo = nsrc < 0 ? __ldcg((const float4 *)q) : *(const float4 *)q;
            float4 hi = nsrc < 0 ? __ldcg((const float4 *)q + 1) : *((const float4 *)q + 1);
            v[0] += lo.x; v[1] += lo.y; v[2] += lo.z; v[3] += lo.w;
            v[4] += hi.x; v[5] += hi.y; v[6] += hi.z; v[7] += hi.w;
        }
        bf16 *py = a.y + (size_t)row * a.ldy + f0;
        uint4 old = make_uint4(0, 0, 0, 0);
        if (a.flags & RTV_MM_ACCUM) old = *(const uint4 *)py;
        const bf16 *yb = (const bf16 *)&old;
        uint4 out;
        bf16 *ob = (bf16 *)&out;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float z = v[k] + bv[k];
            if (a.flags & RTV_MM_GELU) z = rtv_gelu_tanh(z);
            else if (a.flags & RTV_MM_SILU) z = z / (1.0f + __expf(-z));
            if (a.flags & RTV_MM_ACCUM) z += __bfloat162float(yb[k]);
            ob[k] = __float2bfloat16(z);
        }
        *(uint4 *)py = out;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (ks > 1 && a.cluster) cg::this_cluster().sync(); /* peers may still read our tile */
#endif
}

typedef void (*sk_kernel)(sk_args);

template <int WN, int WK>
static sk_kernel sk_pick_nt(int nt)
{
    switch (nt) {
    case 1: return skinny_k<1, WN, WK>;
    case 2: return skinny_k<2, WN, WK>;
    case 3: return skinny_k<3, WN, WK>;
    case 4: return skinny_k<4, WN, WK>;
    case 5: return skinny_k<5, WN, WK>;
    case 6: return skinny_k<6, WN, WK>;
    case 7: return skinny_k<7, WN, WK>;
    default: return skinny_k<8, WN, WK>;
    }
}

static sk_kernel sk_pick(int nt, int wn, int wk)
{
    if (wn == 2) return wk == 2 ? sk_pick_nt<2, 2>(nt) : sk_pick_nt<2, 1>(nt);
    return wk == 2 ? sk_pick_nt<4, 2>(nt) : sk_pick_nt<4, 1>(nt);
}

static size_t sk_smem(int nt, int wn, int wk, int Kc)
{
    size_t red = wk > 1 ? (size_t)(wk - 1) * wn * 8 * nt * 32 * 4 : 0;
    return sk_xs_bytes(nt, Kc) + red + (size_t)nt * 8 * (wn * 32 + 4) * 4;
}

int rtv_cuda_skinny_init(rtv_stream *s)
{
    int dev = 0, sms = 0, major = 0, smem_optin = 0;
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CU_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CU_TRY(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    s->dev_sms = sms;
    s->sk_smem_max = smem_optin - 1024; /* headroom for the kernels' static shared memory */
    s->sk_mode = rtv_cuda_env_switch("RTV_SKINNY", 0); /* opt-in: slower than cuBLASLt at M = 50 */
    s->sk_wk = 0;
    s->sk_target_pct = 0;
    s->pdl = major >= 9 && rtv_cuda_env_switch("RTV_PDL", 1);
    s->sk_cluster = major >= 9 && rtv_cuda_env_switch("RTV_SKINNY_CLUSTER", 1);
    CU_TRY(cudaMalloc((void **)&s->sk_cnt, RTV_SK_TILES * sizeof(int)));
    CU_TRY(cudaMemset(s->sk_cnt, 0, RTV_SK_TILES * sizeof(int)));
    for (int nt = 1; nt <= 8; nt++)
        for (int wn = 2; wn <= 4; wn += 2)
            for (int wk = 1; wk <= 2; wk++) {
                sk_kernel k = sk_pick(nt, wn, wk);
                cudaFuncAttributes fa;
                CU_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            s->sk_smem_max));
                CU_TRY(cudaFuncGetAttributes(&fa, k));
                s->sk_regs[nt - 1][wn / 2 - 1][wk - 1] = fa.numRegs;
            }
    return RTV_OK;
}

extern "C" void rtv_cuda_matmul_tune(rtv_stream *s, int mode, int wk, int target_pct)
{
    s->sk_mode = mode;
    s->sk_wk = wk;
    s->sk_target_pct = target_pct;
}

/* CTAs of `threads` threads with `smem` bytes that fit on one SM at once (registers, shared
 * memory, threads), from the kernel's register count. */
static int sk_fit(const rtv_stream *s, int regs, int threads, size_t smem)
{
    int per_warp = ((regs * 32 + 255) / 256) * 256; /* register allocation granularity */
    int by_regs = 65536 / (per_warp * (threads / 32));
    int by_smem = (int)((228u * 1024) / (smem + 1024));
    if (s->sk_smem_max < 200 * 1024) by_smem = (int)((s->sk_smem_max + 1024u) / (smem + 1024));
    int by_thr = 2048 / threads;
    int n = by_regs < by_smem ? by_regs : by_smem;
    return n < by_thr ? n : by_thr;
}

/* Returns 1 when the shape is not for this kernel (the caller uses cuBLASLt). */
int rtv_cuda_skinny(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                    const void *bias, int M, int N, int K, int flags, int *st)
{
    *st = RTV_OK;
    if (!s->sk_mode || M < 1 || M > 64 || N % 32 || K % 128 || ldx % 8 || ldy % 8 ||
        ldy < N || ((uintptr_t)x | (uintptr_t)w | (uintptr_t)y | (uintptr_t)bias) % 16)
        return 1;
    const int nt = (M + 7) / 8;
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    const int max_ks = s->sk_cluster ? 8 : 16;
    /* Pick (WN, WK, ks): every CTA resident at once (one wave), then the most warps in
     * flight, then the fewest K splits (less to reduce). */
    int best_wn = 0, best_wk = 0, best_ks = 0;
    long best_warps = -1;
    for (int wn = 4; wn >= 2; wn -= 2)
        for (int wk = 1; wk <= 2; wk++) {
            if (s->sk_wk > 0 && wk != s->sk_wk) continue;
            const int tiles = (N + wn * 32 - 1) / (wn * 32);
            if (tiles > RTV_SK_TILES) continue;
            for (int ks = 1; ks <= max_ks; ks *= 2) {
                if (K % (ks * 128 * wk)) break;
                size_t smem = sk_smem(nt, wn, wk, K / ks);
                if (smem > (size_t)s->sk_smem_max) continue;
                int fit = sk_fit(s, s->sk_regs[nt - 1][wn / 2 - 1][wk - 1], wn * wk * 32, smem);
                long ctas = (long)tiles * ks;
                int cap = sms * fit * (s->sk_target_pct > 0 ? s->sk_target_pct : 100) / 100;
                if (fit < 1 || ctas > (cap > 0 ? cap : 1)) continue;
                long warps = ctas * wn * wk;
                if (warps > best_warps) {
                    best_warps = warps;
                    best_wn = wn; best_wk = wk; best_ks = ks;
                }
            }
        }
    if (best_warps < 0) return 1;
    const int wn = best_wn, wk = best_wk, ks = best_ks, Kc = K / ks;
    const int tiles = (N + wn * 32 - 1) / (wn * 32);
    size_t smem = sk_smem(nt, wn, wk, Kc);
    sk_args a;
    a.y = (bf16 *)y;
    a.x = (const bf16 *)x;
    a.w = (const bf16 *)w;
    a.bias = (const bf16 *)bias;
    a.ws = NULL;
    a.cnt = s->sk_cnt;
    a.ldy = ldy; a.ldx = ldx; a.M = M; a.N = N; a.K = K; a.Kc = Kc; a.flags = flags;
    a.cluster = s->sk_cluster && ks > 1;
    if (ks > 1 && !a.cluster) {
        rtv_cuda_scratch_begin(s);
        a.ws = (float *)rtv_cuda_scratch(s, (size_t)ks * tiles * 64 * (wn * 32 + 4) * 4);
        if (!a.ws) {
            *st = RTV_E_NOMEM;
            return 0;
        }
    }
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr[2];
    memset(&cfg, 0, sizeof(cfg));
    cfg.gridDim = dim3(tiles, ks);
    cfg.blockDim = dim3(wn * 32 * wk);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s->s;
    cfg.attrs = attr;
    if (s->pdl) {
        attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[cfg.numAttrs].val.programmaticStreamSerializationAllowed = 1;
        cfg.numAttrs++;
    }
    if (a.cluster) {
        attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
        attr[cfg.numAttrs].val.clusterDim.x = 1;
        attr[cfg.numAttrs].val.clusterDim.y = ks;
        attr[cfg.numAttrs].val.clusterDim.z = 1;
        cfg.numAttrs++;
    }
    cudaError_t e = cudaLaunchKernelEx(&cfg, sk_pick(nt, wn, wk), a);
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "skinny GEMM launch", __FILE__, __LINE__);
    return 0;
}
