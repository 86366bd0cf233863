/* kernels/cuda/gemm_mc.cu — y[M, N] = epi(x[M, K] . w[N, K]^T + bias) for many rows (M > 64)
 * on Hopper (wgmma + TMA multicast, sm_90a): SigLIP's and the prefix's GEMMs, in place of
 * cuBLASLt where the shape is small for the GPU.
 *
 * Why: at 512 rows cuBLASLt runs SigLIP's GEMMs at 190-400 TFLOP/s (bench_matmul, H100): its
 * 128 x 128 tiles give N = 1152 only 36 CTAs, and N = 4304 136 (two waves on 132 SMs); and
 * every CTA reads its whole x row block and w column block from L2, so a GEMM with K = 1152
 * moves 20-80 MB from L2 to the SMs for 1-5 GFLOP.
 *
 * A CTA computes 128 rows x BN columns (BN = 96, 128, 160, 192 or 256, a template parameter)
 * over a range of K: warpgroup 0 is the producer (one thread issues the TMA copies of a ring of
 * 64-wide K steps), warpgroups 1 and 2 multiply 64 rows each (wgmma m64nBNk16, both operands
 * from shared memory). The grid is (row tiles, column tiles, K splits), in clusters of
 * cm x cn x sk:
 * - the cm CTAs of a cluster that share a column tile and K range (different row tiles) each
 *   load 1/cm of the weight tile and multicast it to all cm, so the weights cross from L2 once
 *   per group instead of once per CTA; likewise the cn CTAs that share a row tile with the x
 *   tile. A stage is free again only when every CTA that writes into it is done with its own
 *   copy (their consumers arrive on the empty barriers of both groups);
 * - the sk CTAs that share a tile (different K ranges) leave their fp32 partials in shared
 *   memory, and each sums 1/sk of the tile's columns from its peers over DSMEM before the
 *   epilogue (no global workspace, no second kernel).
 * The epilogue adds the bias, applies GELU-tanh (RTV_MM_GELU) or adds y's old value
 * (RTV_MM_ACCUM, the residual), rounds once to bf16 and stores from the accumulators.
 * Launched programmatically: the weight tiles of the first stages are requested before
 * griddepcontrol.wait, x's after it; the ring waits trap after ~9 s instead of hanging.
 *
 * The tile, cm, cn and sk come from a cost model per shape (gm_plan.h), or from
 * rtv_cuda_gm_tune.
 * Status (H100, bench_matmul, weights past L2; kernels/README has the tables): slower than
 * cuBLASLt on every shape measured. 2026-12-08 00:47 UTC (c8efaa8): correct in every
 * configuration (the NaN of split configurations is gone), SigLIP qkv 15.0 against 10.8 us,
 * VL encode 7.6 against 5.6 ms. The fit (gm_plan.h): the main loop near the tensor pipes at
 * BN = 256 (0.56 us per K step) and shared-memory bound at BN = 128 (0.43), a fixed cost
 * that grew ~0.05 us per tile column: the stores straight from the accumulators, 16 bytes
 * into each of 8 rows per warp store. The epilogue now stages an fp32 tile and writes whole
 * rows (2995e24): NOT yet run on a GPU (no device time since).
 * Opt-in (RTV_GM=1); matmul otherwise runs cuBLASLt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "gm_plan.h"
#include "tmap.h"
#include "tune.h"
#include "wgmma.cuh"
#ifdef WG_KERNEL
#include "wgmma_n.cuh"
#endif

#define GM_A (RTV_GM_BM * 128)       /* bytes of a stage's x tile */
#define GM_THREADS 384

template <int BN> struct gm_cfg { /* the shared memory layout (gm_plan.h) */
    static constexpr int STAGE = RTV_GM_STAGE(BN), ST = RTV_GM_NST(BN), NJ = BN / 8;
    static constexpr int PART = RTV_GM_PART(BN), USE = RTV_GM_USE(BN), SMEM = RTV_GM_SMEM(BN);
    static_assert(SMEM <= 227 * 1024, "shared memory");
};

struct gm_args {
    CUtensorMap tx, tw; /* x: box 64 x 128 / cn rows; w: box 64 x BN / cm rows */
    bf16 *y;
    const bf16 *bias;
    int M, N, KT, kper, ldy; /* KT: 64-wide K steps; kper: steps per split */
    int cm, cn, sk, gelu, accum;
    long long *trace; /* non-NULL: per-CTA phase clocks (RTV_GM_TRACE=1) */
};

/* phase p of this CTA's trace (clock64; slot 7: %globaltimer at the start), from thread 128 */
#define GM_MARK(p)                                                                          \
    do {                                                                                    \
        if (trc) trc[p] = clock64();                                                        \
    } while (0)

#ifdef WG_KERNEL
template <int BN>
static __device__ __forceinline__ void gm_mma(float *d, uint64_t da, uint64_t db, int acc)
{
    if constexpr (BN == 96) wg_mma_n96(d, da, db, acc);
    else if constexpr (BN == 128) wg_mma_n128(d, da, db, acc);
    else if constexpr (BN == 160) wg_mma_n160(d, da, db, acc);
    else if constexpr (BN == 192) wg_mma_n192(d, da, db, acc);
    else wg_mma_n256(d, da, db, acc);
}
/* the cluster barrier for threads that may have diverged (the producer warp) */
static __device__ __forceinline__ void gm_cluster_sync(void)
{
    asm volatile("barrier.cluster.arrive.release;" ::: "memory");
    asm volatile("barrier.cluster.wait.acquire;" ::: "memory");
}
#endif

template <int BN>
static __global__ void __launch_bounds__(GM_THREADS, 1) gm_k(const __grid_constant__ gm_args a)
{
#ifdef WG_KERNEL
    typedef gm_cfg<BN> C;
    extern __shared__ __align__(1024) unsigned char gm_raw[];
    unsigned char *sh = gm_raw + ((1024 - (wg_saddr(gm_raw) & 1023)) & 1023);
    uint64_t *full = (uint64_t *)(sh + C::USE), *empty = full + C::ST;
    float *sbias = (float *)(empty + C::ST); /* [BN]: our columns' bias (0 past N) */
    const int tid = threadIdx.x, wg = tid >> 7;
    const int cm = a.cm, cn = a.cn, ncl = cm * cn * a.sk;
    /* cluster (cm, cn, sk): rank = x + cm (y + cn z). Our weight slice goes to the cm CTAs of
     * our column group (our y and z), our x slice to the cn CTAs of our row group (our x and
     * z); a stage of ours is written by both groups, so its empty barrier counts the
     * consumers of both (cm + cn - 1 CTAs, ourselves once) */
    const unsigned mr = blockIdx.x % cm, nr = blockIdx.y % cn, zr = blockIdx.z;
    const unsigned me = mr + cm * (nr + cn * zr), colbase = cm * (nr + cn * zr);
    const int m0 = blockIdx.x * RTV_GM_BM, n0 = blockIdx.y * BN;
    const int kb = blockIdx.z * a.kper, nk = min(a.KT - kb, a.kper);
    rtv_griddep_launch();
    long long *const trc = a.trace && tid == 128
        ? a.trace + (size_t)((blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x) * 8
        : nullptr;
    if (trc) {
        unsigned long long gt;
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(gt));
        trc[7] = (long long)gt;
    }
    GM_MARK(0);
    if (tid == 0) {
        for (int i = 0; i < C::ST; i++) {
            wg_bar_init(&full[i], 1);
            wg_bar_init(&empty[i], 8 * (cm + cn - 1)); /* lane 0 of each consumer warp */
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    /* (the ranks above assume x fastest in the cluster's rank order: trap, not corrupt) */
    if (ncl > 1 && tid == 0 && wg_cluster_rank() != me) __trap();
    if (ncl > 1) gm_cluster_sync(); /* the peers' barriers exist before we copy into them */
    else __syncthreads();
    float d[BN / 2];
    const int c = wg - 1, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, q4 = lane & 3;
    if (wg == 0) { /* the producer */
        if (tid == 0) {
            const int pre = nk < C::ST ? nk : C::ST, brows = BN / cm, arows = RTV_GM_BM / cn;
            const unsigned short bmask = (unsigned short)(((1u << cm) - 1u) << colbase);
            unsigned short amask = 0;
            for (int j = 0; j < cn; j++)
                amask |= (unsigned short)(1u << (mr + cm * (j + cn * zr)));
            unsigned char *bdst = sh + GM_A + mr * brows * 128, *adst = sh + nr * arows * 128;
            const int brow = n0 + mr * brows, arow = m0 + nr * arows;
            /* stage s <- load k: our slice of the weight (or x) tile, to the whole group */
            auto load_w = [&](int st, int k) {
                unsigned char *dst = bdst + st * C::STAGE;
                const int kc = (kb + k) * RTV_GM_BK;
                if (cm > 1) wg_tma_mc(dst, &a.tw, kc, brow, &full[st], bmask);
                else wg_tma(dst, &a.tw, kc, brow, &full[st]);
            };
            auto load_x = [&](int st, int k) {
                unsigned char *dst = adst + st * C::STAGE;
                const int kc = (kb + k) * RTV_GM_BK;
                if (cn > 1) wg_tma_mc(dst, &a.tx, kc, arow, &full[st], amask);
                else wg_tma(dst, &a.tx, kc, arow, &full[st]);
            };
            for (int k = 0; k < pre; k++) { /* w is no earlier kernel's output */
                wg_expect(&full[k], C::STAGE);
                load_w(k, k);
            }
            rtv_griddep_wait(); /* x is */
            for (int k = 0; k < pre; k++) load_x(k, k);
            for (int k = pre; k < nk; k++) {
                const int st = k % C::ST;
                /* load k - ST consumed by every CTA that this load writes into */
                wg_wait_peers(&empty[st], ((k / C::ST) - 1) & 1);
                wg_expect(&full[st], C::STAGE);
                load_x(st, k);
                load_w(st, k);
            }
        }
    } else {
        for (int i = tid - 128; i < BN; i += 256) /* the bias is a weight: before the wait */
            sbias[i] = a.bias && n0 + i < a.N ? __bfloat162float(a.bias[n0 + i]) : 0.f;
        rtv_griddep_wait(); /* (before the epilogue reads y) */
        GM_MARK(1);
        for (int k = 0; k < nk; k++) {
            const int s = k % C::ST;
            const unsigned char *st = sh + s * C::STAGE;
            wg_wait_peers(&full[s], (k / C::ST) & 1);
            if (k == 0) GM_MARK(2);
            wg_fence();
            const uint64_t da = wg_desc(st + c * (GM_A / 2)), db = wg_desc(st + GM_A);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) gm_mma<BN>(d, da + 2 * kk, db + 2 * kk, k > 0 || kk > 0);
            wg_commit();
            wg_wait_group<1>(); /* the previous step's MMAs are done with their stage */
            if (k > 0) {
                /* one arrival per warp on each CTA that writes into this stage, each from its
                 * own lane (lane j < cm: the column group's CTA j; the next cn - 1 lanes: the
                 * row group's other CTAs), so a warp's cm + cn - 1 arrivals go out together */
                const int ps = (k - 1) % C::ST;
                if (cm * cn > 1) {
                    if (lane < cm) {
                        wg_arrive_peer(&empty[ps], colbase + lane);
                    } else if (lane < cm + cn - 1) {
                        const int j = lane - cm < (int)nr ? lane - cm : lane - cm + 1; /* not nr */
                        wg_arrive_peer(&empty[ps], mr + cm * (j + cn * zr));
                    }
                } else if (lane == 0) {
                    wg_arrive(&empty[ps]);
                }
            }
        }
        wg_wait_group<0>();
        GM_MARK(3);
    }
    /* both consumer warpgroups are done with the ring (the split partials and the output tile
     * below overwrite it; without this barrier one warpgroup could clobber the other's last
     * stage while its MMAs still read it: split configurations wrote NaN now and then, H100
     * 2026-12-07; none since, 2026-12-08), and the bias is in */
    if (wg > 0) asm volatile("bar.sync 1, 256;" ::: "memory");
    /* K splits: partials into our (now idle) ring, [BN / 8][256 threads] float4 */
    const float4 *stg = (const float4 *)sh;
    const int ct = tid - 128;
    if (a.sk > 1) {
        if (wg > 0) {
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
                ((float4 *)sh)[j * 256 + ct] =
                    make_float4(d[4 * j], d[4 * j + 1], d[4 * j + 2], d[4 * j + 3]);
        }
        gm_cluster_sync();
    }
    GM_MARK(4);
    if (wg > 0) {
        /* The epilogue in two passes. The first sums the split partials of the column groups
         * we own (split z owns a contiguous 1/sk of them), adds the bias, applies GELU and
         * leaves fp32 in an output tile in shared memory; the second reads the tile row by
         * row, adds the residual and stores 16 bytes per thread, so a warp writes whole rows.
         * Stores straight from the accumulators (the first versions) put 16 bytes of each of
         * 8 rows in every warp store: with the residual's loads alike, ~6 us of a launch's
         * time at BN = 128 and ~12 at BN = 256 went on them (bench_matmul fits, H100
         * 2026-12-08), against ~3 us for cuBLASLt's whole epilogue. */
        constexpr int NJ = C::NJ;
        constexpr int JC = BN >= 192 ? 4 : NJ % 8 == 0 ? 8 : NJ % 6 == 0 ? 6 : NJ % 5 == 0 ? 5 : 4;
        static_assert(NJ % JC == 0, "batches of column groups");
        int jlo, nown;
        rtv_gm_own(NJ, a.sk, (int)zr, &jlo, &nown);
        const int os = RTV_GM_OSTRIDE(nown);
        float *tile = (float *)(sh + (a.sk > 1 ? C::PART : 0));
        const int lr = c * 64 + 16 * warp + g, cl = 2 * q4; /* our rows lr, lr + 8 */
#pragma unroll
        for (int j0 = 0; j0 < NJ; j0 += JC) {
            float v[JC][4];
#pragma unroll
            for (int jj = 0; jj < JC; jj++)
#pragma unroll
                for (int e = 0; e < 4; e++) v[jj][e] = d[4 * (j0 + jj) + e];
            for (int z = 0; z < a.sk; z++) { /* the peers' partials of our groups, over DSMEM */
                if (z == (int)zr) continue;
                float4 p[JC];
                const unsigned peer = mr + cm * (nr + cn * z);
#pragma unroll
                for (int jj = 0; jj < JC; jj++)
                    if (j0 + jj >= jlo && j0 + jj < jlo + nown)
                        p[jj] = wg_ld_peer4((const float *)&stg[(j0 + jj) * 256 + ct], peer);
#pragma unroll
                for (int jj = 0; jj < JC; jj++)
                    if (j0 + jj >= jlo && j0 + jj < jlo + nown) {
                        v[jj][0] += p[jj].x; v[jj][1] += p[jj].y;
                        v[jj][2] += p[jj].z; v[jj][3] += p[jj].w;
                    }
            }
#pragma unroll
            for (int jj = 0; jj < JC; jj++) {
                const int j = j0 + jj;
                if (j < jlo || j >= jlo + nown) continue;
                const float b0 = sbias[8 * j + cl], b1 = sbias[8 * j + cl + 1];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    float v0 = v[jj][2 * h] + b0, v1 = v[jj][2 * h + 1] + b1;
                    if (a.gelu) {
                        v0 = rtv_gelu_tanh(v0);
                        v1 = rtv_gelu_tanh(v1);
                    }
                    *(float2 *)&tile[(lr + 8 * h) * os + 8 * (j - jlo) + cl] = make_float2(v0, v1);
                }
            }
        }
        GM_MARK(5);
        asm volatile("bar.sync 1, 256;" ::: "memory");
        /* the second pass: item i is row i / nown, column group jlo + i % nown; batches of four
         * items per thread, their residual loads issued before their stores */
        const int items = RTV_GM_BM * nown;
        for (int i0 = ct; i0 < items; i0 += 4 * 256) {
            uint4 old[4];
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const int i = i0 + 256 * b, row = m0 + i / nown, col = n0 + 8 * (jlo + i % nown);
                old[b] = make_uint4(0, 0, 0, 0);
                if (a.accum && i < items && row < a.M && col < a.N)
                    old[b] = *(const uint4 *)(a.y + (size_t)row * a.ldy + col);
            }
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const int i = i0 + 256 * b, lrow = i / nown, gj = i % nown;
                const int row = m0 + lrow, col = n0 + 8 * (jlo + gj);
                if (i >= items || row >= a.M || col >= a.N) continue; /* N % 8 == 0 */
                const float4 *t = (const float4 *)&tile[lrow * os + 8 * gj];
                const float4 t0 = t[0], t1 = t[1];
                float o[8] = { t0.x, t0.y, t0.z, t0.w, t1.x, t1.y, t1.z, t1.w };
                if (a.accum) {
                    const uint32_t u[4] = { old[b].x, old[b].y, old[b].z, old[b].w };
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        o[2 * e] += __uint_as_float(u[e] << 16);
                        o[2 * e + 1] += __uint_as_float(u[e] & 0xFFFF0000u);
                    }
                }
                *(uint4 *)(a.y + (size_t)row * a.ldy + col) =
                    make_uint4(rtv_pack_bf16x2(o[0], o[1]), rtv_pack_bf16x2(o[2], o[3]),
                               rtv_pack_bf16x2(o[4], o[5]), rtv_pack_bf16x2(o[6], o[7]));
            }
        }
        GM_MARK(6);
    }
    /* no CTA leaves while a peer may still arrive on its barriers or read its partials */
    if (ncl > 1) gm_cluster_sync();
#else
    (void)a; /* not an sm_90a build: never launched (gm_ok is 0) */
#endif
}


static int gm_func_attr(int bn, const void **fn)
{
    switch (bn) {
    case 96: *fn = (const void *)gm_k<96>; return gm_cfg<96>::SMEM;
    case 128: *fn = (const void *)gm_k<128>; return gm_cfg<128>::SMEM;
    case 160: *fn = (const void *)gm_k<160>; return gm_cfg<160>::SMEM;
    case 192: *fn = (const void *)gm_k<192>; return gm_cfg<192>::SMEM;
    default: *fn = (const void *)gm_k<256>; return gm_cfg<256>::SMEM;
    }
}

int rtv_cuda_gm_init(rtv_stream *s)
{
    s->gm_use = s->gm_ok = 0;
    s->gm_bn = s->gm_cm = s->gm_cn = s->gm_sk = 0;
    s->gm_trace = NULL;
    s->gm_trace_ctas = 0;
    memset(s->gm_clusters, 0, sizeof(s->gm_clusters));
    if (!s->wg_encode) return RTV_OK; /* not sm_90 or no tensor maps (wgemm_init) */
    for (int i = 0; i < RTV_GM_NBN; i++) {
        const void *fn;
        const int smem = gm_func_attr(rtv_gm_widths[i], &fn);
        cudaFuncAttributes fa;
        if (cudaFuncGetAttributes(&fa, fn) != cudaSuccess) { /* no sm_90a image */
            cudaGetLastError();
            return RTV_OK;
        }
        CU_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        /* how many clusters of each size fit at once (one CTA per SM): a plan whose CTAs do
         * not all fit would run in two waves */
        for (int n = 1; n <= RTV_GM_MAXCL; n++) {
            cudaLaunchConfig_t cfg = {};
            cudaLaunchAttribute at;
            cfg.gridDim = dim3(n, 1, 1);
            cfg.blockDim = dim3(GM_THREADS);
            cfg.dynamicSmemBytes = smem;
            at.id = cudaLaunchAttributeClusterDimension;
            at.val.clusterDim.x = n;
            at.val.clusterDim.y = at.val.clusterDim.z = 1;
            cfg.attrs = &at;
            cfg.numAttrs = 1;
            int nc = 0;
            if (cudaOccupancyMaxActiveClusters(&nc, fn, &cfg) != cudaSuccess) {
                cudaGetLastError();
                nc = 0;
            }
            s->gm_clusters[i][n] = nc;
        }
    }
    s->gm_ok = 1;
    s->gm_use = rtv_cuda_env_switch("RTV_GM", 0); /* opt-in until measured (top) */
    if (rtv_cuda_env_switch("RTV_GM_TRACE", 0)) {
        CU_TRY(cudaMalloc((void **)&s->gm_trace, (size_t)1024 * 8 * sizeof(long long)));
        CU_TRY(cudaMemset(s->gm_trace, 0, (size_t)1024 * 8 * sizeof(long long)));
    }
    return RTV_OK;
}

extern "C" int rtv_cuda_gm_trace(rtv_stream *s, long long *out, int max_ctas)
{
    return rtv_cuda_trace_copy(s, s->gm_trace, s->gm_trace_ctas, out, max_ctas);
}

extern "C" int rtv_cuda_gm_tune(rtv_stream *s, int on, int bn, int cm, int cn, int sk)
{
    s->gm_use = on && s->gm_ok;
    s->gm_bn = bn;
    s->gm_cm = cm;
    s->gm_cn = cn;
    s->gm_sk = sk;
    return s->gm_ok;
}

static int gm_plan(const rtv_stream *s, int M, int N, int K, rtv_gm_plan *p)
{
    if (s->gm_bn) { /* rtv_cuda_gm_tune's fixed choice */
        for (int i = 0; i < RTV_GM_NBN; i++)
            if (rtv_gm_widths[i] == s->gm_bn)
                return rtv_gm_try(M, N, K, i, s->gm_cm, s->gm_cn, s->gm_sk, s->gm_clusters,
                                  s->sm_count, p) >= 0;
        return 0;
    }
    return rtv_gm_pick(M, N, K, s->gm_clusters, s->sm_count, p);
}

extern "C" int rtv_cuda_gm_describe(rtv_stream *s, int M, int N, int K, char *buf, int n)
{
    rtv_gm_plan p;
    if (!s->gm_ok || !gm_plan(s, M, N, K, &p)) {
        snprintf(buf, n, "none");
        return 0;
    }
    snprintf(buf, n, "%dx%d tiles, cluster %dx%dx%d, %d CTAs", RTV_GM_BM, p.bn, p.cm, p.cn, p.sk,
             p.mt * p.nt * p.sk);
    return 1;
}

int rtv_cuda_gm(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                const void *bias, int M, int N, int K, int flags, int *st)
{
    *st = RTV_OK;
    if (!s->gm_use || M <= 64 || (flags & ~(RTV_MM_GELU | RTV_MM_ACCUM)) ||
        (flags & RTV_MM_GELU && !s->lt_gelu) || N % 8 || K % 8 || ldx % 8 || ldy % 8 ||
        (((uintptr_t)x | (uintptr_t)w | (uintptr_t)y) % 16))
        return 1;
    rtv_gm_plan p;
    if (!gm_plan(s, M, N, K, &p)) return 1;
    gm_args a;
    memset(&a, 0, sizeof(a));
    if (rtv_cuda_tmap_bf16(s->wg_encode, &a.tx, x, M, K, ldx, RTV_GM_BM / p.cn) ||
        rtv_cuda_tmap_bf16(s->wg_encode, &a.tw, w, N, K, K, p.bn / p.cm))
        return 1;
    a.y = (bf16 *)y;
    a.bias = (const bf16 *)bias;
    a.M = M; a.N = N; a.KT = rtv_cdiv(K, RTV_GM_BK); a.kper = p.kper; a.ldy = ldy;
    a.cm = p.cm; a.cn = p.cn; a.sk = p.sk; a.gelu = (flags & RTV_MM_GELU) != 0;
    a.accum = (flags & RTV_MM_ACCUM) != 0;
    const int ctas = p.mt * p.nt * p.sk;
    a.trace = s->capturing || ctas > 1024 ? NULL : s->gm_trace; /* eager launches only */
    if (a.trace) s->gm_trace_ctas = ctas;
    const void *fn;
    const int smem = gm_func_attr(p.bn, &fn);
    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg = rtv_cuda_launch_cfg(s, attr, dim3(p.mt, p.nt, p.sk),
                                                 dim3(GM_THREADS), smem, 1);
    if (p.cm * p.cn * p.sk > 1) {
        attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
        attr[cfg.numAttrs].val.clusterDim.x = p.cm;
        attr[cfg.numAttrs].val.clusterDim.y = p.cn;
        attr[cfg.numAttrs].val.clusterDim.z = p.sk;
        cfg.numAttrs++;
    }
    void *args[] = { &a };
    const cudaError_t e = cudaLaunchKernelExC(&cfg, fn, args);
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "gemm_mc launch", __FILE__, __LINE__);
    return 0;
}
