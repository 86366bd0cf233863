/* kernels/cuda/skinny.cu — y[M,N] = epi(x[M,K] . w[N,K]^T + bias) for few rows (M <= 64).
 * OPT-IN (RTV_SKINNY=1, or rtv_cuda_matmul_tune) until it beats cuBLASLt in the action cycle
 * (tests/cuda/bench_matmul.c; figures in kernels/README.md). Tested on every GPU run.
 *
 * The action expert's GEMMs have M = 50 or 51 rows against weights of 1024 x 2560 .. 4096 x
 * 1024: each weight element is used ~50 times, so the GEMM is bound by streaming the weights
 * once (pi0's expert: 0.6 GB of bf16 per Euler step), and at 4-17 MB per GEMM a kernel that
 * starts loading only when its predecessor has finished spends most of its time ramping up.
 * So the kernel is shaped to load its weights before it may read anything else:
 *
 *   - a CTA owns BN = 16 WARPS weight rows (one m16 tile per warp) over one K slice
 *     [kb, kb + Kc) and copies the whole weight slice into shared memory (cp.async, 16 bytes
 *     per thread and step) first; on sm_90 the launch is a programmatic dependent one
 *     (RTV_PDL=0: off) and these copies go out before griddepcontrol.wait, i.e. while the
 *     previous kernel still runs (our norm, RoPE, GeGLU and softmax kernels let dependents
 *     start at their first instruction, mma.cuh);
 *   - after the wait, the activation slice (M rows, zero-padded to 8 NT) follows into shared
 *     memory, and the warps run mma.sync m16n8k16 with ldmatrix fragments: weights as A (16
 *     output features), activation rows as B (8 per n-tile, NT = ceil(M / 8) a template
 *     parameter); row stride Kc + 8 elements, so the ldmatrix rows hit distinct banks;
 *   - split K across CTAs (grid.y): on sm_90 the splits of a column tile form a thread-block
 *     cluster and sum each other's partial tiles through distributed shared memory; elsewhere
 *     (or RTV_SKINNY_CLUSTER=0) partials go through the stream's scratch and the last CTA of a
 *     tile (arrival counter, reset by that CTA, so graph replays start at zero) finishes it.
 *     Either way the sum runs in split order: deterministic;
 *   - epilogue from an fp32 staging tile, 16-byte stores: bias, GELU-tanh or SiLU, or
 *     accumulation into y (the residual add).
 * Config (BN, splits): every CTA resident at once, then the most SMs busy, then the fewest
 * splits. Requirements (else the caller falls back to cuBLASLt): 1 <= M <= 64, N % 16 == 0,
 * K % 64 == 0, x, w, y, bias 16-byte aligned, ldx % 8 == 0, ldy % 8 == 0. */
#include <stdlib.h>
#include <string.h>

#include <cooperative_groups.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "tune.h"

namespace cg = cooperative_groups;

struct sk_args {
    bf16 *y;
    const bf16 *x, *w, *bias;
    float *ws;
    int *cnt;
    int ldy, ldx, M, N, K, Kc, flags, cluster;
    int ff; /* > 0: GeGLU epilogue, w = [gate rows; up rows] of ff each, N = 2 ff, y [M, ff] */
    long long *trace; /* non-NULL: per-CTA phase clocks (RTV_SKINNY_TRACE=1, tune.h) */
};

static __device__ __forceinline__ void sk_ldsm_x4(uint32_t *r, const bf16 *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void sk_ldsm_x2(uint32_t *r, const bf16 *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(a));
}

/* rows x (Kc / 8) 16-byte chunks, global (row stride ldg elements) -> shared (row stride SK),
 * spread over the CTA's threads; rows >= valid are zero-filled. */
static __device__ __forceinline__ void sk_copy(bf16 *dst, int SK, const bf16 *src, size_t ldg,
                                               int rows, int valid, int c16)
{
    const int nthr = blockDim.x;
    int r = threadIdx.x / c16, c = threadIdx.x - r * c16;
    const int dr = nthr / c16, dc = nthr - dr * c16;
    for (; r < rows;) {
        bf16 *d = dst + (size_t)r * SK + 8 * c;
        if (r < valid) rtv_cp_async16(d, src + (size_t)r * ldg + 8 * c);
        else *(uint4 *)d = make_uint4(0, 0, 0, 0);
        r += dr;
        c += dc;
        if (c >= c16) {
            c -= c16;
            r++;
        }
    }
}

static __host__ __device__ __forceinline__ size_t sk_smem_bytes(int nt, int bn, int Kc)
{
    size_t tiles = (size_t)(bn + 8 * nt) * (Kc + 8) * 2;
    size_t stg = (size_t)8 * nt * (bn + 4) * 4;
    return tiles > stg ? tiles : stg;
}

/* p in the shared memory of cluster rank `rank` (-1: our own). */
static __device__ __forceinline__ const float *sk_peer(const float *p, int rank)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (rank >= 0) return cg::this_cluster().map_shared_rank(p, (unsigned)rank);
#endif
    return p;
}

/* v[0..7] = the sum over the K splits of the partial tiles at (row, col..col+7), in split
 * order: nsrc > 1 peers' shared memory (cluster), 1 our own, < 0 -nsrc tiles in global memory. */
static __device__ __forceinline__ void sk_sum8(float *v, const sk_args &a, const float *stg,
                                               size_t tile_floats, int STG, int nsrc, int row,
                                               int col)
{
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = 0.f;
    const int n = nsrc < 0 ? -nsrc : nsrc;
    /* up to 8 sources' loads in flight together (each is an L2 or DSMEM round trip), then
     * the sums in split order */
    for (int b = 0; b < n; b += 8) {
        float4 lo[8], hi[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int sp = b + i;
            if (sp < n) {
                const float *q = nsrc < 0
                    ? a.ws + ((size_t)sp * gridDim.x + blockIdx.x) * tile_floats + row * STG + col
                    : sk_peer(stg + row * STG + col, nsrc > 1 ? sp : -1);
                lo[i] = nsrc < 0 ? __ldcg((const float4 *)q) : *(const float4 *)q;
                hi[i] = nsrc < 0 ? __ldcg((const float4 *)q + 1) : *((const float4 *)q + 1);
            }
        }
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (b + i < n) {
                v[0] += lo[i].x; v[1] += lo[i].y; v[2] += lo[i].z; v[3] += lo[i].w;
                v[4] += hi[i].x; v[5] += hi[i].y; v[6] += hi[i].z; v[7] += hi[i].w;
            }
    }
}

/* sm_90 bulk copies (TMA, one-dimensional) with mbarrier completion; phase 0 only: each
 * barrier counts one arrival and the bytes of its copies, once per launch. */
static __device__ __forceinline__ unsigned sk_saddr(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}
static __device__ __forceinline__ void sk_bar_init(uint64_t *bar)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(sk_saddr(bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
static __device__ __forceinline__ void sk_bar_expect(uint64_t *bar, unsigned bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sk_saddr(bar)),
                 "r"(bytes)
                 : "memory");
#endif
}
static __device__ __forceinline__ void sk_bulk(void *dst, const void *src, unsigned bytes,
                                               uint64_t *bar)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], "
                 "%2, [%3];" ::"r"(sk_saddr(dst)),
                 "l"(src), "r"(bytes), "r"(sk_saddr(bar))
                 : "memory");
#endif
}
static __device__ __forceinline__ void sk_bar_wait(uint64_t *bar)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned done = 0;
    do {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n"
                     " selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(sk_saddr(bar))
                     : "memory");
    } while (!done);
#endif
}

/* phase p of this CTA's trace (thread 0): clock64 cycles; slot 7 holds the global timer */
#define SK_MARK(p)                                                                          \
    do {                                                                                    \
        if (a.trace && threadIdx.x == 0)                                                    \
            a.trace[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 + (p)] = clock64();  \
    } while (0)

template <int NT, int WARPS>
static __global__ void __launch_bounds__(WARPS * 32) skinny_k(sk_args a)
{
    constexpr int BN = 16 * WARPS;
    constexpr int STG = BN + 4; /* staging row stride, floats (conflict-free) */
    constexpr int CH = BN / 8;  /* 8-feature chunks per tile row */
    extern __shared__ __align__(16) unsigned char sk_sh[];
    const int SK = a.Kc + 8;
    bf16 *wsm = (bf16 *)sk_sh;             /* [BN][SK] weight rows */
    bf16 *xs = wsm + (size_t)BN * SK;      /* [8 NT][SK] activation rows */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int n0 = blockIdx.x * BN;
    const int kb = blockIdx.y * a.Kc;
    const int c16 = a.Kc / 8;
    const int wrows = a.ff ? BN : a.N - n0 < BN ? a.N - n0 : BN; /* a multiple of 16 */
    const bool active = warp * 16 < wrows;
    SK_MARK(0);
    if (a.trace && tid == 0) {
        unsigned long long gt;
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(gt));
        a.trace[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 + 7] = (long long)gt;
    }

    /* the weight slice: independent of the previous kernel, so it goes out before the wait;
     * GeGLU: the tile's first half is gate rows, its second the matching up rows */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* sm_90: one bulk copy (TMA) per row into shared memory, completion counted in bytes by
     * an mbarrier per operand. Measured about as fast as 16-byte cp.async; issuing one copy
     * per row from one warp costs ~63 cycles a copy (RTV_SKINNY_TRACE, kernels/README.md) */
    __shared__ __align__(8) uint64_t bar[2];
    const unsigned rb = (unsigned)a.Kc * 2; /* bytes per row slice */
    if (tid == 0) {
        sk_bar_init(&bar[0]);
        sk_bar_init(&bar[1]);
    }
    __syncthreads();
    if (warp == 0) {
        if (lane == 0) sk_bar_expect(&bar[0], (unsigned)wrows * rb);
        __syncwarp();
        const size_t g0 = (size_t)blockIdx.x * (BN / 2);
        for (int r = lane; r < wrows; r += 32) {
            const size_t src = !a.ff ? (size_t)n0 + r : r < BN / 2 ? g0 + r : a.ff + g0 + r - BN / 2;
            sk_bulk(wsm + (size_t)r * SK, a.w + src * a.K + kb, rb, &bar[0]);
        }
    }
    SK_MARK(1);
    rtv_griddep_launch();
    rtv_griddep_wait();
    SK_MARK(2);
    if (warp == 0) {
        if (lane == 0) sk_bar_expect(&bar[1], (unsigned)a.M * rb);
        __syncwarp();
        for (int r = lane; r < a.M; r += 32)
            sk_bulk(xs + (size_t)r * SK, a.x + (size_t)r * a.ldx + kb, rb, &bar[1]);
    }
    for (int i = a.M * c16 + tid; i < 8 * NT * c16; i += blockDim.x) /* zero rows M .. 8 NT */
        *(uint4 *)(xs + (size_t)(i / c16) * SK + 8 * (i % c16)) = make_uint4(0, 0, 0, 0);
    sk_bar_wait(&bar[0]);
    sk_bar_wait(&bar[1]);
    SK_MARK(3);
    __syncthreads();
#else
    if (a.ff) {
        const size_t g0 = (size_t)blockIdx.x * (BN / 2);
        sk_copy(wsm, SK, a.w + g0 * a.K + kb, a.K, BN / 2, BN / 2, c16);
        sk_copy(wsm + (size_t)(BN / 2) * SK, SK, a.w + (a.ff + g0) * a.K + kb, a.K, BN / 2,
                BN / 2, c16);
    } else {
        sk_copy(wsm, SK, a.w + (size_t)n0 * a.K + kb, a.K, wrows, wrows, c16);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    rtv_griddep_launch();
    rtv_griddep_wait();
    sk_copy(xs, SK, a.x + kb, a.ldx, 8 * NT, a.M, c16);
    asm volatile("cp.async.commit_group;" ::: "memory");
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();
#endif

    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    if (active) {
        /* ldmatrix addresses: A rows (lane & 15) of this warp's 16, k + 8 (lane >> 4); B pairs
         * of n-tiles: row (lane & 7) + 8 (2p + (lane >> 4)), k + 8 ((lane >> 3) & 1) */
        const bf16 *pa = wsm + (size_t)(warp * 16 + (lane & 15)) * SK + 8 * (lane >> 4);
        const bf16 *pb = xs + (size_t)((lane & 7) + 8 * (lane >> 4)) * SK + 8 * ((lane >> 3) & 1);
        const bf16 *pl = xs + (size_t)((lane & 7) + 8 * (NT - 1)) * SK + 8 * ((lane >> 3) & 1);
#pragma unroll 4
        for (int k = 0; k < a.Kc; k += 16) {
            uint32_t af[4];
            sk_ldsm_x4(af, pa + k);
#pragma unroll
            for (int p = 0; p < NT / 2; p++) {
                uint32_t bf[4];
                sk_ldsm_x4(bf, pb + (size_t)16 * p * SK + k);
                rtv_mma16816(acc[2 * p], af[0], af[1], af[2], af[3], bf[0], bf[1]);
                rtv_mma16816(acc[2 * p + 1], af[0], af[1], af[2], af[3], bf[2], bf[3]);
            }
            if (NT & 1) {
                uint32_t bf[2];
                sk_ldsm_x2(bf, pl + k);
                rtv_mma16816(acc[NT - 1], af[0], af[1], af[2], af[3], bf[0], bf[1]);
            }
        }
    }
    SK_MARK(4);
    __syncthreads(); /* the tiles are read: the staging tile reuses their shared memory */

    /* the CTA's partial tile [8 NT rows][BN features] in fp32; fragment (j, e) of a lane is
     * feature 16 warp + g + 8 (e >> 1), activation row 8 j + 2 t + (e & 1) */
    float *stg = (float *)sk_sh;
    if (active)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                stg[(8 * j + 2 * t + (e & 1)) * STG + warp * 16 + g + 8 * (e >> 1)] = acc[j][e];
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

    SK_MARK(5);
    /* epilogue: items (row, 8 features), 16-byte stores; bias, activation, accumulation */
    const int my_rows = (a.M - rank + rstep - 1) / rstep;
    if (a.ff) { /* GeGLU: output features [blockIdx.x BN/2, + BN/2) from gate col, up col + BN/2 */
        constexpr int CHO = CH / 2;
        const int c = tid % CHO; /* nthr % CHO == 0 */
        for (int it = tid; it < my_rows * CHO; it += nthr) {
            const int row = rank + (it / CHO) * rstep;
            float gv[8], uv[8];
            sk_sum8(gv, a, stg, tile_floats, STG, nsrc, row, 8 * c);
            sk_sum8(uv, a, stg, tile_floats, STG, nsrc, row, BN / 2 + 8 * c);
            uint4 out;
            bf16 *ob = (bf16 *)&out;
#pragma unroll
            for (int k = 0; k < 8; k++) ob[k] = __float2bfloat16(rtv_gelu_tanh(gv[k]) * uv[k]);
            *(uint4 *)(a.y + (size_t)row * a.ldy + blockIdx.x * (BN / 2) + 8 * c) = out;
        }
    } else {
        const int c = tid % CH, f0 = n0 + 8 * c; /* nthr % CH == 0 */
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
        for (int it = tid; it < my_rows * CH && f0 < a.N; it += nthr) {
            const int row = rank + (it / CH) * rstep;
            float v[8];
            sk_sum8(v, a, stg, tile_floats, STG, nsrc, row, 8 * c);
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
    }
    SK_MARK(6);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (ks > 1 && a.cluster) cg::this_cluster().sync(); /* peers may still read our tile */
#endif
}

typedef void (*sk_kernel)(sk_args);

/* BN index bi: 0 = 64 rows (4 warps), 1 = 128 rows (8 warps) */
template <int WARPS>
static sk_kernel sk_pick_nt(int nt)
{
    switch (nt) {
    case 1: return skinny_k<1, WARPS>;
    case 2: return skinny_k<2, WARPS>;
    case 3: return skinny_k<3, WARPS>;
    case 4: return skinny_k<4, WARPS>;
    case 5: return skinny_k<5, WARPS>;
    case 6: return skinny_k<6, WARPS>;
    case 7: return skinny_k<7, WARPS>;
    default: return skinny_k<8, WARPS>;
    }
}

static sk_kernel sk_pick(int nt, int bi) { return bi ? sk_pick_nt<8>(nt) : sk_pick_nt<4>(nt); }

int rtv_cuda_skinny_init(rtv_stream *s)
{
    int dev = 0, sms = 0, major = 0, smem_optin = 0;
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CU_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CU_TRY(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    s->dev_sms = sms;
    s->sk_smem_max = smem_optin - 1024; /* headroom for the kernels' static shared memory */
    s->sk_mode = rtv_cuda_env_switch("RTV_SKINNY", 0); /* opt-in until it wins (see top) */
    s->sk_tile = 0;
    s->sk_target_pct = 0;
    s->pdl = major >= 9 && rtv_cuda_env_switch("RTV_PDL", 1);
    s->sk_cluster = major >= 9 && rtv_cuda_env_switch("RTV_SKINNY_CLUSTER", 1);
    s->sk_geglu = rtv_cuda_env_switch("RTV_SKINNY_GEGLU", 1);
    s->sk_trace = NULL;
    if (rtv_cuda_env_switch("RTV_SKINNY_TRACE", 0)) {
        CU_TRY(cudaMalloc((void **)&s->sk_trace, (size_t)RTV_SK_TILES * 16 * 8 * sizeof(long long)));
        CU_TRY(cudaMemset(s->sk_trace, 0, (size_t)RTV_SK_TILES * 16 * 8 * sizeof(long long)));
    }
    CU_TRY(cudaMalloc((void **)&s->sk_cnt, RTV_SK_TILES * sizeof(int)));
    CU_TRY(cudaMemset(s->sk_cnt, 0, RTV_SK_TILES * sizeof(int)));
    for (int nt = 1; nt <= 8; nt++)
        for (int bi = 0; bi < 2; bi++) {
            sk_kernel k = sk_pick(nt, bi);
            cudaFuncAttributes fa;
            CU_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        s->sk_smem_max));
            /* all of the unified L1/shared memory as shared: 2-3 CTAs of ~60-100 KB per SM */
            CU_TRY(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout,
                                        cudaSharedmemCarveoutMaxShared));
            CU_TRY(cudaFuncGetAttributes(&fa, k));
            s->sk_regs[nt - 1][bi] = fa.numRegs;
        }
    return RTV_OK;
}

extern "C" void rtv_cuda_matmul_tune(rtv_stream *s, int mode, int bn, int target_pct)
{
    s->sk_mode = mode;
    s->sk_tile = bn;
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

/* Clusters of ks CTAs (one per K split) that can be resident at once: a cluster's CTAs
 * must share a GPC, so this can be fewer than SMs x fit / ks (and then a grid of one
 * cluster per column tile would run in two waves). */
static int sk_clusters(int nt, int bi, int ks, size_t smem)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr;
    cfg.gridDim = dim3(1, ks);
    cfg.blockDim = dim3((64 << bi) * 2);
    cfg.dynamicSmemBytes = smem;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 1;
    attr.val.clusterDim.y = ks;
    attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, sk_pick(nt, bi), &cfg) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

/* Returns 1 when the shape is not for this kernel (the caller uses cuBLASLt). ff > 0: the
 * GeGLU epilogue (N = 2 ff, no bias, no flags; y has ff columns). */
static int sk_run(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                  const void *bias, int M, int N, int K, int flags, int ff, int *st)
{
    *st = RTV_OK;
    if (!s->sk_mode || M < 1 || M > 64 || N % 16 || K % 64 || ldx % 8 || ldy % 8 ||
        ldy < (ff ? ff : N) || ((uintptr_t)x | (uintptr_t)w | (uintptr_t)y | (uintptr_t)bias) % 16)
        return 1;
    if (ff && (N != 2 * ff || bias || flags)) return 1;
    const int nt = (M + 7) / 8;
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    const int max_ks = s->sk_cluster ? 8 : 16;
    /* Pick (BN, ks): every CTA resident at once (one wave), then the most SMs busy, then the
     * fewest K splits (less to reduce), then the smaller tile. */
    int best_bi = -1, best_ks = 0;
    long best_busy = -1;
    for (int bi = 0; bi < 2; bi++) {
        if (s->sk_tile > 0 && bi != s->sk_tile - 1) continue;
        const int bn = 64 << bi, tiles = (N + bn - 1) / bn;
        if (tiles > RTV_SK_TILES || (ff && ff % (bn / 2))) continue;
        for (int ks = 1; ks <= max_ks; ks *= 2) {
            if (K % (ks * 64)) break;
            size_t smem = sk_smem_bytes(nt, bn, K / ks);
            if (smem > (size_t)s->sk_smem_max) continue;
            int fit = sk_fit(s, s->sk_regs[nt - 1][bi], bn * 2, smem);
            long ctas = (long)tiles * ks;
            int cap = sms * fit * (s->sk_target_pct > 0 ? s->sk_target_pct : 100) / 100;
            if (fit < 1 || ctas > (cap > 0 ? cap : 1)) continue;
            if (ks > 1 && s->sk_cluster && sk_clusters(nt, bi, ks, smem) < tiles) continue;
            long busy = ctas < sms ? ctas : sms;
            if (busy > best_busy) {
                best_busy = busy;
                best_bi = bi;
                best_ks = ks;
            }
        }
    }
    if (best_busy < 0) return 1;
    const int bn = 64 << best_bi, ks = best_ks, Kc = K / ks;
    const int tiles = (N + bn - 1) / bn;
    sk_args a;
    a.y = (bf16 *)y;
    a.x = (const bf16 *)x;
    a.w = (const bf16 *)w;
    a.bias = (const bf16 *)bias;
    a.ws = NULL;
    a.cnt = s->sk_cnt;
    a.ldy = ldy; a.ldx = ldx; a.M = M; a.N = N; a.K = K; a.Kc = Kc; a.flags = flags;
    a.cluster = s->sk_cluster && ks > 1;
    a.ff = ff;
    a.trace = s->sk_trace;
    s->sk_trace_ctas = tiles * ks;
    if (ks > 1 && !a.cluster) {
        rtv_cuda_scratch_begin(s);
        a.ws = (float *)rtv_cuda_scratch(s, (size_t)ks * tiles * 64 * (bn + 4) * 4);
        if (!a.ws) {
            *st = RTV_E_NOMEM;
            return 0;
        }
    }
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr[2];
    memset(&cfg, 0, sizeof(cfg));
    cfg.gridDim = dim3(tiles, ks);
    cfg.blockDim = dim3(bn * 2); /* 16 rows per warp */
    cfg.dynamicSmemBytes = sk_smem_bytes(nt, bn, Kc);
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
    cudaError_t e = cudaLaunchKernelEx(&cfg, sk_pick(nt, best_bi), a);
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "skinny GEMM launch", __FILE__, __LINE__);
    return 0;
}

int rtv_cuda_skinny(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                    const void *bias, int M, int N, int K, int flags, int *st)
{
    return sk_run(s, y, ldy, x, ldx, w, bias, M, N, K, flags, 0, st);
}

/* The matmul_geglu op: the few-row kernel with the GeGLU epilogue where it takes the shape
 * (RTV_SKINNY on, RTV_SKINNY_GEGLU not 0), else the GEMM into gu and the geglu pass. */
int rtv_cuda_matmul_geglu(rtv_stream *s, void *y, void *gu, const void *x, int ldx,
                          const void *w, int M, int F, int K)
{
    int st;
    if (M <= 0 || F <= 0 || K <= 0 || ldx < K)
        return rtv_fail(RTV_E_ARG, "matmul_geglu: bad shape M=%d F=%d K=%d ldx=%d (expected "
                        "positive sizes, ldx >= K)", M, F, K, ldx);
    if (s->sk_geglu && !sk_run(s, y, F, x, ldx, w, NULL, M, 2 * F, K, 0, F, &st)) return st;
    if ((st = rtv_cuda_matmul(s, gu, 2 * F, x, ldx, w, NULL, M, 2 * F, K, 0))) return st;
    return rtv_cuda_geglu(s, y, gu, M, F);
}

/* Copies the last skinny launch's per-CTA phase clocks (RTV_SKINNY_TRACE=1) to out (8 per CTA,
 * at most max_ctas CTAs); returns the CTA count, 0 without a trace. Synchronizes. */
extern "C" int rtv_cuda_skinny_trace(rtv_stream *s, long long *out, int max_ctas)
{
    if (!s->sk_trace || s->sk_trace_ctas <= 0) return 0;
    int n = s->sk_trace_ctas < max_ctas ? s->sk_trace_ctas : max_ctas;
    if (cudaStreamSynchronize(s->s) != cudaSuccess ||
        cudaMemcpy(out, s->sk_trace, (size_t)n * 8 * sizeof(long long), cudaMemcpyDeviceToHost) != cudaSuccess)
        return 0;
    return n;
}
