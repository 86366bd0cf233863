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
 *     [kb, kb + Kc) and copies the whole weight slice into shared memory first; on sm_90 the
 *     launch is a programmatic dependent one (RTV_PDL=0: off) and these copies go out before
 *     griddepcontrol.wait, i.e. while the previous kernel still runs (our norm, RoPE, GeGLU
 *     and softmax kernels let dependents start at their first instruction, mma.cuh);
 *   - shared memory holds 64-element (128-byte) K chunks of the rows, [Kc / 64][rows][64], with
 *     the 128-byte swizzle (16-byte unit u of row r at u ^ (r & 7)): on sm_90 each chunk of
 *     BN / 2 weight rows or of the activation rows is ONE 2-D tensor-map copy (TMA; rows past
 *     the matrix arrive as zeros), so a CTA issues 2 Kc / 64 + Kc / 64 copies (one per row cost
 *     ~63 cycles each, 4 of the ~14 thousand cycles of a CTA); elsewhere (or RTV_SKINNY_TMA=0)
 *     16-byte cp.async from every thread to the same layout. Weights carry an L2 evict-first
 *     hint (read once per Euler step; the prefix KV cache and the activations stay in L2);
 *   - after the wait, the activation slice (M rows, zero-padded to 8 NT) follows, and the warps
 *     run mma.sync m16n8k16 with ldmatrix fragments (conflict-free through the swizzle):
 *     weights as A (16 output features), activation rows as B (8 per n-tile, NT = ceil(M / 8)
 *     a template parameter);
 *   - split K across CTAs (grid.y): on sm_90 the splits of a column tile form a thread-block
 *     cluster; each CTA owns every ks-th row of the tile, and every CTA stages its partial
 *     tile in fp32, then STORES each row into its owner's shared memory (one slot per split;
 *     16-byte remote stores, consecutive threads on consecutive bytes), then one cluster
 *     barrier, then each owner sums its slots locally.
 *     Elsewhere (or RTV_SKINNY_CLUSTER=0) partials go through the stream's scratch and the
 *     last CTA of a tile (arrival counter, reset by that CTA, so graph replays start at zero)
 *     finishes it. Either way the sum runs in split order: deterministic;
 *   - epilogue in fp32, 16-byte stores: bias, GELU-tanh or SiLU, or accumulation into y (the
 *     residual add), or GeGLU (gate rows and the matching up rows in one tile).
 * Config (BN, splits): every CTA resident at once, then the most SMs busy, then the fewest
 * splits. Requirements (else the caller falls back to cuBLASLt): 1 <= M <= 64, N % 16 == 0,
 * K % 64 == 0, x, w, y, bias 16-byte aligned, ldx % 8 == 0, ldy % 8 == 0. */
#include <stdlib.h>
#include <string.h>

#include <cooperative_groups.h>
#include <cuda.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "tmap.h"
#include "tune.h"

namespace cg = cooperative_groups;

struct sk_args {
    CUtensorMap tw, tx; /* sm_90 with tma: weights (box 64 x BN/2), activations (box 64 x 8 NT) */
    bf16 *y;
    const bf16 *x, *w, *bias;
    float *ws;
    int *cnt;
    int ldy, ldx, M, N, K, Kc, flags, cluster, tma, evict;
    int ff; /* > 0: GeGLU epilogue, w = [gate rows; up rows] of ff each, N = 2 ff, y [M, ff] */
    long long *trace; /* non-NULL: per-CTA phase clocks (RTV_SKINNY_TRACE=1, tune.h) */
};

static __device__ __forceinline__ void sk_ldsm_x2(uint32_t *r, const bf16 *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(a));
}

/* rows x Kc of a row-major matrix (row stride ldg) from column kb -> the chunked, swizzled
 * layout at dst ([Kc / 64][rows][64]), 16-byte cp.async from every thread; row r comes from
 * global row src_row(r), rows with src_row < 0 are zero-filled. */
template <typename RowMap>
static __device__ __forceinline__ void sk_copy(bf16 *dst, int rows, const bf16 *g, size_t ldg,
                                               int kb, int Kc, RowMap src_row)
{
    const int per_row = Kc / 8; /* 16-byte units */
    for (int i = threadIdx.x; i < rows * per_row; i += blockDim.x) {
        const int r = i / per_row, c = i - r * per_row, kc = c >> 3, u = c & 7;
        bf16 *d = dst + (size_t)kc * rows * 64 + rtv_swz(r, u);
        const long sr = src_row(r);
        if (sr >= 0) rtv_cp_async16(d, g + (size_t)sr * ldg + kb + 8 * c);
        else *(uint4 *)d = make_uint4(0, 0, 0, 0);
    }
}

/* Shared memory of a launch: 1024 (alignment of the swizzled chunks), then the weight and
 * activation tiles (the fp32 staging tile of the non-cluster path reuses them), then with a
 * cluster the ks slots of the rows this CTA owns. */
static __host__ __device__ __forceinline__ size_t sk_tiles_bytes(int nt, int bn, int Kc)
{
    size_t tiles = (size_t)(bn + 8 * nt) * Kc * 2;
    size_t stg = (size_t)8 * nt * (bn + 4) * 4;
    return tiles > stg ? tiles : stg;
}
static __host__ __device__ __forceinline__ int sk_owned_rows(int nt, int ks)
{
    return (8 * nt + ks - 1) / ks;
}
static __host__ __device__ __forceinline__ size_t sk_smem_bytes(int nt, int bn, int Kc, int ks,
                                                                int cluster, int kw)
{
    (void)kw; /* the K warps' partials are added before the exchange */
    size_t red = cluster && ks > 1 ? (size_t)ks * sk_owned_rows(nt, ks) * (bn + 4) * 4 : 0;
    return 1024 + sk_tiles_bytes(nt, bn, Kc) + red;
}

/* v[0..7] = sum over n sources of 8 floats at p + sp * stride, in source order; global: the
 * sources are in global memory (L2, written by other CTAs). */
static __device__ __forceinline__ void sk_sum8(float *v, const float *p, size_t stride, int n,
                                               bool global)
{
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = 0.f;
    for (int b = 0; b < n; b += 8) { /* up to 8 sources' loads in flight, then the sums */
        float4 lo[8], hi[8];
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (b + i < n) {
                const float4 *q = (const float4 *)(p + (size_t)(b + i) * stride);
                lo[i] = global ? __ldcg(q) : q[0];
                hi[i] = global ? __ldcg(q + 1) : q[1];
            }
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (b + i < n) {
                v[0] += lo[i].x; v[1] += lo[i].y; v[2] += lo[i].z; v[3] += lo[i].w;
                v[4] += hi[i].x; v[5] += hi[i].y; v[6] += hi[i].z; v[7] += hi[i].w;
            }
    }
}

/* sm_90 pieces: mbarriers (phase 0 only: each counts one arrival and the bytes of its
 * copies, once per launch), 2-D tensor-map copies, cluster barriers, remote stores. */
static __device__ __forceinline__ unsigned sk_saddr(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900 /* used by sm_90 code only */
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
/* box at (column c0, row c1) of map m -> dst; evict: L2 evict-first hint */
static __device__ __forceinline__ void sk_tma(void *dst, const CUtensorMap *m, int c0, int c1,
                                              uint64_t *bar, bool evict)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (evict) {
        uint64_t pol;
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
        asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx"
                     "::bytes.L2::cache_hint [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(sk_saddr(dst)),
                     "l"((uint64_t)m), "r"(c0), "r"(c1), "r"(sk_saddr(bar)), "l"(pol)
                     : "memory");
    } else {
        asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx"
                     "::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(sk_saddr(dst)),
                     "l"((uint64_t)m), "r"(c0), "r"(c1), "r"(sk_saddr(bar))
                     : "memory");
    }
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
#endif
static __device__ __forceinline__ void sk_cluster_arrive_relaxed(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}
static __device__ __forceinline__ void sk_cluster_arrive(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#endif
}
static __device__ __forceinline__ void sk_cluster_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
static __device__ __forceinline__ unsigned sk_cluster_rank(void)
{
    unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return r;
}
/* *p = v (16 bytes) in the shared memory of cluster CTA `rank` (p: the same place in ours) */
static __device__ __forceinline__ void sk_st_remote4(float *p, unsigned rank, float4 v)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(sk_saddr(p)), "r"(rank));
    asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};" ::"r"(a), "f"(v.x), "f"(v.y),
                 "f"(v.z), "f"(v.w)
                 : "memory");
#else
    (void)rank;
    *(float4 *)p = v;
#endif
}

/* phase p of this CTA's trace (thread 0): clock64 cycles; slot 7 holds the global timer */
#define SK_MARK(p)                                                                          \
    do {                                                                                    \
        if (a.trace && threadIdx.x == 0)                                                    \
            a.trace[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 + (p)] = clock64();  \
    } while (0)

template <int NT, int RW, int KW>
static __global__ void __launch_bounds__(RW * KW * 32) skinny_k(const __grid_constant__ sk_args a)
{
    constexpr int BN = 16 * RW; /* RW warps of 16 weight rows; KW warps share a row block's K */
    constexpr int XR = 8 * NT;  /* activation rows in shared memory (M zero-padded) */
    constexpr int STG = BN + 4; /* fp32 row stride of staging tile and slots (floats) */
    constexpr int CH = BN / 8;  /* 8-feature chunks per tile row */
    extern __shared__ __align__(16) unsigned char sk_raw[];
    unsigned char *sh = sk_raw + ((1024 - (sk_saddr(sk_raw) & 1023)) & 1023);
    bf16 *wsm = (bf16 *)sh;                     /* [Kc/64][BN][64], swizzled */
    bf16 *xs = wsm + (size_t)BN * a.Kc;         /* [Kc/64][XR][64], swizzled */
    const int tid = threadIdx.x, lane = tid & 31, warp = (tid >> 5) % RW, kw = (tid >> 5) / RW;
    const int g = lane >> 2, t = lane & 3;
    const int n0 = blockIdx.x * BN;
    const int kb = blockIdx.y * a.Kc;
    const int nkc = a.Kc / 64;
    const int ks = gridDim.y;
    const bool clus = ks > 1 && a.cluster;
    const int wrows = a.ff ? BN : a.N - n0 < BN ? a.N - n0 : BN; /* a multiple of 16 */
    const bool active = warp * 16 < wrows;
    const long g0 = (long)blockIdx.x * (BN / 2); /* GeGLU: first gate (and up) row */
    SK_MARK(0);
    if (a.trace && tid == 0) {
        unsigned long long gt;
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(gt));
        a.trace[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 + 7] = (long long)gt;
    }
    /* a cluster's CTAs may write into each other's shared memory only once all have started:
     * arrive now, wait just before the first remote store (long done by then) */
    if (clus) sk_cluster_arrive_relaxed();

    /* the weight slice: independent of the previous kernel, so it goes out before the wait;
     * GeGLU: the tile's first half is gate rows, its second the matching up rows */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    __shared__ __align__(8) uint64_t bar[2];
    if (a.tma) {
        if (tid == 0) {
            sk_bar_init(&bar[0]);
            sk_bar_init(&bar[1]);
            sk_bar_expect(&bar[0], (unsigned)BN * a.Kc * 2);
            const int r0 = a.ff ? (int)g0 : n0, r1 = a.ff ? a.ff + (int)g0 : n0 + BN / 2;
            for (int kc = 0; kc < nkc; kc++) {
                bf16 *d = wsm + (size_t)kc * BN * 64;
                sk_tma(d, &a.tw, kb + 64 * kc, r0, &bar[0], a.evict);
                sk_tma(d + (BN / 2) * 64, &a.tw, kb + 64 * kc, r1, &bar[0], a.evict);
            }
        }
    } else
#endif
    {
        const int N = a.N, ff = a.ff;
        sk_copy(wsm, BN, a.w, a.K, kb, a.Kc, [=](int r) -> long {
            if (ff) return r < BN / 2 ? g0 + r : ff + g0 + r - BN / 2;
            return n0 + r < N ? n0 + r : -1;
        });
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    SK_MARK(1);
    rtv_griddep_launch();
    rtv_griddep_wait();
    SK_MARK(2);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (a.tma) {
        if (tid == 0) {
            sk_bar_expect(&bar[1], (unsigned)XR * a.Kc * 2);
            for (int kc = 0; kc < nkc; kc++)
                sk_tma(xs + (size_t)kc * XR * 64, &a.tx, kb + 64 * kc, 0, &bar[1], false);
        }
        __syncthreads(); /* the barriers' initialisation is visible before anyone waits */
        sk_bar_wait(&bar[0]);
        sk_bar_wait(&bar[1]);
    } else
#endif
    {
        const int M = a.M;
        sk_copy(xs, XR, a.x, a.ldx, kb, a.Kc, [=](int r) -> long { return r < M ? r : -1; });
        asm volatile("cp.async.commit_group;" ::: "memory");
        asm volatile("cp.async.wait_group 0;" ::: "memory");
        __syncthreads();
    }
    SK_MARK(3);

    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    if (active) {
        /* ldmatrix rows: A rows (lane & 15) of this warp's 16, unit 2 kk + (lane >> 4); B
         * pairs of n-tiles: row (lane & 7) + 8 (2p + (lane >> 4)), unit 2 kk + ((lane >> 3) & 1).
         * Every row index is = lane (mod 8), which is the swizzle's XOR. */
        const int sw = lane & 7, ua = lane >> 4, ub = (lane >> 3) & 1;
        const int ra = warp * 16 + (lane & 15), rb = (lane & 7) + 8 * (lane >> 4);
        const int rl = (lane & 7) + 8 * (NT - 1);
        for (int kc = kw * (nkc / KW); kc < (kw + 1) * (nkc / KW); kc++) {
            const bf16 *wa = wsm + (size_t)kc * BN * 64 + ra * 64;
            const bf16 *xb = xs + (size_t)kc * XR * 64 + rb * 64;
            const bf16 *xl = xs + (size_t)kc * XR * 64 + rl * 64;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                uint32_t af[4];
                rtv_ldsm_x4(af, wa + (((2 * kk + ua) ^ sw) << 3));
                const int ob = ((2 * kk + ub) ^ sw) << 3;
#pragma unroll
                for (int p = 0; p < NT / 2; p++) {
                    uint32_t bf[4];
                    rtv_ldsm_x4(bf, xb + 16 * 64 * p + ob);
                    rtv_mma16816(acc[2 * p], af[0], af[1], af[2], af[3], bf[0], bf[1]);
                    rtv_mma16816(acc[2 * p + 1], af[0], af[1], af[2], af[3], bf[2], bf[3]);
                }
                if (NT & 1) {
                    uint32_t bf[2];
                    sk_ldsm_x2(bf, xl + ob);
                    rtv_mma16816(acc[NT - 1], af[0], af[1], af[2], af[3], bf[0], bf[1]);
                }
            }
        }
    }
    SK_MARK(4);

    /* The partial tile's fragment (j, e) of a lane is feature 16 warp + g + 8 (e >> 1),
     * activation row 8 j + 2 t + (e & 1). Every CTA first stages its partial tile in fp32 over
     * the operand tiles (read by now); the K warps of a row block add theirs in kw order.
     * Split K: the ks partials of a column tile are summed in split order (deterministic).
     * Cluster: CTA `rank` owns rows rank, rank + ks, ...; every CTA copies each staged row,
     * 16 bytes per thread and store (consecutive threads: consecutive bytes of one row, so the
     * remote stores coalesce), into slot [its rank][r / ks] of row r's owner. Otherwise, with
     * ks > 1, the tiles go through global memory and the last CTA to arrive finishes the
     * column tile. */
    const int nthr = blockDim.x;
    int rank = 0, rstep = 1, nsrc = 1;
    bool global = false;
    const float *src0;
    size_t sstride = 0;
    const size_t tile_floats = (size_t)64 * STG;
    float *stg = (float *)sh;
#pragma unroll
    for (int q = 0; q < KW; q++) {
        __syncthreads();
        if (active && kw == q)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float *d = &stg[(8 * j + 2 * t + (e & 1)) * STG + warp * 16 + g + 8 * (e >> 1)];
                    *d = q ? *d + acc[j][e] : acc[j][e];
                }
    }
    __syncthreads();
    src0 = stg;
    if (clus) {
        const int R = sk_owned_rows(NT, ks); /* slots: [ks][R][STG] */
        float *red = (float *)(sh + sk_tiles_bytes(NT, BN, a.Kc));
        rank = (int)sk_cluster_rank();
        sk_cluster_wait(); /* every CTA of the cluster has started */
        for (int i = tid; i < a.M * (BN / 4); i += nthr) {
            const int row = i / (BN / 4), c4 = i - row * (BN / 4);
            sk_st_remote4(red + (size_t)(rank * R + row / ks) * STG + 4 * c4, (unsigned)(row % ks),
                          *(const float4 *)(stg + (size_t)row * STG + 4 * c4));
        }
        sk_cluster_arrive();
        sk_cluster_wait(); /* every partial of our rows is in our slots */
        rstep = ks;
        nsrc = ks;
        src0 = red;
        sstride = (size_t)R * STG;
    } else if (ks > 1) {
        __shared__ int last;
        float *mine = a.ws + ((size_t)blockIdx.y * gridDim.x + blockIdx.x) * tile_floats;
        for (int i = tid; i < a.M * (2 * CH); i += nthr) {
            int row = i / (2 * CH), c4 = i % (2 * CH);
            __stcg((float4 *)(mine + row * STG) + c4, *(const float4 *)(stg + row * STG + 4 * c4));
        }
        __syncthreads();
        if (tid == 0) {
            /* the barrier made the CTA's partial visible to this thread; the release fence
             * is cumulative, so it is visible GPU-wide before the count moves */
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
            int prev = atomicAdd(&a.cnt[blockIdx.x], 1);
            last = prev == ks - 1;
            if (last) a.cnt[blockIdx.x] = 0; /* every split has arrived: ready for the next */
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
        }
        __syncthreads();
        if (!last) return;
        nsrc = ks;
        global = true;
        src0 = a.ws + (size_t)blockIdx.x * tile_floats;
        sstride = (size_t)gridDim.x * tile_floats;
    }

    SK_MARK(5);
    /* epilogue: items (row, 8 features), 16-byte stores; bias, activation, accumulation.
     * Row `row` of the tile is row (row - rank) / rstep of the sources. */
    const int my_rows = (a.M - rank + rstep - 1) / rstep;
    if (a.ff) { /* GeGLU: output features [blockIdx.x BN/2, + BN/2) from gate col, up col + BN/2 */
        constexpr int CHO = CH / 2;
        const int c = tid % CHO; /* nthr % CHO == 0 */
        for (int it = tid; it < my_rows * CHO; it += nthr) {
            const int i = it / CHO, row = rank + i * rstep;
            const float *q = src0 + (size_t)i * STG + 8 * c;
            float gv[8], uv[8];
            sk_sum8(gv, q, sstride, nsrc, global);
            sk_sum8(uv, q + BN / 2, sstride, nsrc, global);
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
            const int i = it / CH, row = rank + i * rstep;
            float v[8];
            sk_sum8(v, src0 + (size_t)i * STG + 8 * c, sstride, nsrc, global);
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
}

typedef void (*sk_kernel)(sk_args);

/* BN index bi: 0 = 64 rows (4 warps), 1 = 128 rows (8 warps) */
template <int RW, int KW>
static sk_kernel sk_pick_nt(int nt)
{
    switch (nt) {
    case 1: return skinny_k<1, RW, KW>;
    case 2: return skinny_k<2, RW, KW>;
    case 3: return skinny_k<3, RW, KW>;
    case 4: return skinny_k<4, RW, KW>;
    case 5: return skinny_k<5, RW, KW>;
    case 6: return skinny_k<6, RW, KW>;
    case 7: return skinny_k<7, RW, KW>;
    default: return skinny_k<8, RW, KW>;
    }
}

/* bi: 0 = 64 weight rows (4 row warps), 1 = 128 (8); kw: warps per row block sharing its K
 * slice (1 or 2) */
static sk_kernel sk_pick(int nt, int bi, int kw)
{
    if (kw == 2) return bi ? sk_pick_nt<8, 2>(nt) : sk_pick_nt<4, 2>(nt);
    return bi ? sk_pick_nt<8, 1>(nt) : sk_pick_nt<4, 1>(nt);
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
    s->sk_mode = rtv_cuda_env_switch("RTV_SKINNY", 0); /* opt-in until it wins (see top) */
    s->sk_tile = 0;
    s->sk_target_pct = 0;
    s->pdl = major >= 9 && rtv_cuda_env_switch("RTV_PDL", 1);
    /* the one-pass kernels launched programmatically, and graph edges that fire at the
     * upstream's launch: action cycle 8.07 against 8.45 ms, VL encode 5.59 against 5.62 (H100,
     * one lease, 2026-12-07; RTV_PDL_SMALL=0 / RTV_PDL_EDGE=0 compare) */
    s->pdl_small = s->pdl && rtv_cuda_env_switch("RTV_PDL_SMALL", 1);
    s->pdl_edge = s->pdl && rtv_cuda_env_switch("RTV_PDL_EDGE", 1);
    s->sk_cluster = major >= 9 && rtv_cuda_env_switch("RTV_SKINNY_CLUSTER", 1);
    s->sk_geglu = rtv_cuda_env_switch("RTV_SKINNY_GEGLU", 1);
    s->sk_evict = rtv_cuda_env_switch("RTV_SKINNY_EVICT", 1);
    {
        const char *e = getenv("RTV_SKINNY_KW");
        s->sk_kw = e && (e[0] == '1' || e[0] == '2') && !e[1] ? e[0] - '0' : 0;
    }
    s->sk_encode = NULL;
    if (major >= 9 && rtv_cuda_env_switch("RTV_SKINNY_TMA", 1))
        s->sk_encode = rtv_cuda_tmap_encoder(); /* NULL: no tensor maps, the cp.async path */
    s->sk_tma = s->sk_encode != NULL;
    s->sk_trace = NULL;
    if (rtv_cuda_env_switch("RTV_SKINNY_TRACE", 0)) {
        CU_TRY(cudaMalloc((void **)&s->sk_trace, (size_t)RTV_SK_TILES * 16 * 8 * sizeof(long long)));
        CU_TRY(cudaMemset(s->sk_trace, 0, (size_t)RTV_SK_TILES * 16 * 8 * sizeof(long long)));
    }
    CU_TRY(cudaMalloc((void **)&s->sk_cnt, RTV_SK_TILES * sizeof(int)));
    CU_TRY(cudaMemset(s->sk_cnt, 0, RTV_SK_TILES * sizeof(int)));
    for (int nt = 1; nt <= 8; nt++)
        for (int bk = 0; bk < 4; bk++) {
            const int bi = bk & 1, kw = 1 + (bk >> 1);
            sk_kernel k = sk_pick(nt, bi, kw);
            cudaFuncAttributes fa;
            CU_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        s->sk_smem_max));
            /* all of the unified L1/shared memory as shared: 2-3 CTAs of ~60-100 KB per SM */
            CU_TRY(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout,
                                        cudaSharedmemCarveoutMaxShared));
            CU_TRY(cudaFuncGetAttributes(&fa, k));
            s->sk_regs[nt - 1][bi][kw - 1] = fa.numRegs;
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
static int sk_clusters(int nt, int bi, int kw, int ks, size_t smem)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr;
    cfg.gridDim = dim3(1, ks);
    cfg.blockDim = dim3((64 << bi) * 2 * kw);
    cfg.dynamicSmemBytes = smem;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 1;
    attr.val.clusterDim.y = ks;
    attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, sk_pick(nt, bi, kw), &cfg) != cudaSuccess) {
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
    /* Pick (BN, ks, kw): every CTA resident at once (one wave), then the most SMs busy, then
     * the fewest K splits (less to reduce), then the smaller tile, then two warps per row
     * block (RTV_SKINNY_KW unset: in this order; 1 or 2: only that many warps). */
    int best_bi = -1, best_ks = 0, best_kw = 1;
    long best_busy = -1;
    for (int bi = 0; bi < 2; bi++) {
        if (s->sk_tile > 0 && bi != s->sk_tile - 1) continue;
        const int bn = 64 << bi, tiles = (N + bn - 1) / bn;
        if (tiles > RTV_SK_TILES || (ff && ff % (bn / 2))) continue;
        for (int ks = 1; ks <= max_ks; ks *= 2) {
            if (K % (ks * 64)) break;
            for (int kw = 2; kw >= 1; kw--) {
                if ((s->sk_kw && kw != s->sk_kw) || (K / ks) % (64 * kw)) continue;
                const int cl = s->sk_cluster && ks > 1;
                size_t smem = sk_smem_bytes(nt, bn, K / ks, ks, cl, kw);
                if (smem > (size_t)s->sk_smem_max) continue;
                int fit = sk_fit(s, s->sk_regs[nt - 1][bi][kw - 1], bn * 2 * kw, smem);
                long ctas = (long)tiles * ks;
                int cap = sms * fit * (s->sk_target_pct > 0 ? s->sk_target_pct : 100) / 100;
                if (fit < 1 || ctas > (cap > 0 ? cap : 1)) continue;
                if (cl && sk_clusters(nt, bi, kw, ks, smem) < tiles) continue;
                long busy = ctas < sms ? ctas : sms;
                if (busy > best_busy) {
                    best_busy = busy;
                    best_bi = bi;
                    best_ks = ks;
                    best_kw = kw;
                }
            }
        }
    }
    if (best_busy < 0) return 1;
    const int bn = 64 << best_bi, ks = best_ks, kw = best_kw, Kc = K / ks;
    const int tiles = (N + bn - 1) / bn;
    sk_args a;
    memset(&a, 0, sizeof(a));
    a.y = (bf16 *)y;
    a.x = (const bf16 *)x;
    a.w = (const bf16 *)w;
    a.bias = (const bf16 *)bias;
    a.ws = NULL;
    a.cnt = s->sk_cnt;
    a.ldy = ldy; a.ldx = ldx; a.M = M; a.N = N; a.K = K; a.Kc = Kc; a.flags = flags;
    a.cluster = s->sk_cluster && ks > 1;
    a.ff = ff;
    a.evict = s->sk_evict;
    a.tma = s->sk_tma && !rtv_cuda_tmap_bf16(s->sk_encode, &a.tw, w, N, K, K, bn / 2) &&
            !rtv_cuda_tmap_bf16(s->sk_encode, &a.tx, x, M, K, ldx, 8 * nt);
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
    cudaLaunchAttribute attr[2];
    /* 16 rows per warp, kw warps per row block */
    cudaLaunchConfig_t cfg =
        rtv_cuda_launch_cfg(s, attr, dim3(tiles, ks), dim3(bn * 2 * kw),
                            sk_smem_bytes(nt, bn, Kc, ks, a.cluster, kw), a.cluster ? ks : 1);
    cudaError_t e = cudaLaunchKernelEx(&cfg, sk_pick(nt, best_bi, kw), a);
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
    if (!rtv_cuda_wgemm_geglu(s, y, x, ldx, w, M, F, K, &st)) return st;
    if (s->sk_geglu && !sk_run(s, y, F, x, ldx, w, NULL, M, 2 * F, K, 0, F, &st)) return st;
    if ((st = rtv_cuda_matmul(s, gu, 2 * F, x, ldx, w, NULL, M, 2 * F, K, 0))) return st;
    return rtv_cuda_geglu(s, y, gu, M, F);
}

/* Copies the last skinny launch's per-CTA phase clocks (RTV_SKINNY_TRACE=1) to out (8 per CTA,
 * at most max_ctas CTAs); returns the CTA count, 0 without a trace. Synchronizes. */
extern "C" int rtv_cuda_skinny_trace(rtv_stream *s, long long *out, int max_ctas)
{
    return rtv_cuda_trace_copy(s, s->sk_trace, s->sk_trace_ctas, out, max_ctas);
}
