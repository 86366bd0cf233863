/* kernels/cuda/wgemm.cu — the action expert's few-row GEMMs on Hopper's asynchronous tensor
 * cores (wgmma), with the neighbouring passes in the epilogue; the rms_mlp op as four of them.
 * OPT-IN (RTV_WGMMA=1) until it wins in the action cycle; sm_90 only (built for sm_90a in its
 * own archive, see meson.build; elsewhere the op runs the unfused launches).
 *
 * y[M, cols] = epi(x[M, K] . W[rows, K]^T) for M <= 64 (the expert's 50 or 51 rows): bound by
 * streaming the weights once. Why this kernel and not skinny.cu / mlp.cu (kernels/README):
 * those run mma.sync from one or two warps per scheduler and were latency-bound, loading a
 * whole slice and then computing. Here one producer thread keeps a ring of TMA copies in
 * flight and one consumer warpgroup runs wgmma straight from shared memory (4 instructions
 * per 64-wide K chunk, asynchronous), so loads and tensor work overlap and the issue cost per
 * chunk is a handful of instructions.
 *
 * A CTA: tile t of 64 output features (two boxes of 32 weight rows, r0 and r1, see wg_rows),
 * K split s of ks (a thread-block cluster of ks CTAs along grid.y, chunks [s nk / ks, (s+1) nk
 * / ks)). Warps 0-3: the consumer warpgroup; warp 4 lane 0: the producer. Each ring stage
 * holds the activation chunk (64 rows x 64 K, rows past M arrive as zeros) and the weight chunk
 * (64 rows x 64 K), both 128-byte swizzled, which is the layout wgmma's descriptors name. The
 * weight copies of the first stages go out before griddepcontrol.wait (they do not depend on
 * the previous kernel), and every CTA lets its dependent launch at once, so a chain of these
 * GEMMs keeps weight copies in flight across kernel boundaries.
 * D = X . W^T: token rows x feature columns in the warpgroup's registers; staged in fp32 in
 * shared memory, then the ks partials of a row are summed over DSMEM in split order
 * (deterministic) by the CTA that owns the row (row % ks == rank). Epilogue items: a row and 4
 * columns of each half (j and j + 32 pair up):
 *   PLAIN  y = act(v + bias) (+ y with RTV_MM_ACCUM), or y = s_r v (the tail of a ROPE GEMM);
 *   GEGLU  y[:, 32 t + j] = gelu_tanh(s_r g) (s_r u), gate rows r0 = 32 t, up rows r1 = F + 32 t;
 *   ROPE   rows r0 = h hd + 32 q and r1 = r0 + hd / 2 of head h: (a, b) -> (a cs - b sn,
 *          b cs + a sn) of s_r v, angle (pos0 + row) theta^(-2 i / hd), as rms_rope.
 * s_r = rsqrt(mean(x[r, :]^2) + eps) (the folded RMSNorm), summed from the activation chunks as
 * they pass through shared memory (K = dim). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "tmap.h"
#include "wgmma.cuh"

#define WG_THREADS 160 /* the consumer warpgroup + the producer warp */
#define WG_MAXS 8      /* ring stages at most */
#define WG_STAGE 16384 /* bytes per stage: activation chunk, then weight chunk */
#define WG_STG 68      /* fp32 row stride of the staged tile */
#define WG_RS 68       /* fp32 row stride of a pushed partial row: 64 columns, x^2 sum at 64 */
#define WG_RCV (72 * WG_RS * 4) /* bytes for the pushed partials: ks x rows owned <= 64 + 7 rows */

enum { WG_PLAIN = 0, WG_GEGLU = 1, WG_ROPE = 2 };

struct wg_args {
    CUtensorMap tx, tw; /* x: box 64 x 64 rows; w: box 64 x 32 rows */
    bf16 *y;
    const bf16 *bias;
    int ldy, M, N, nk, flags, mode, scale, ff, rtiles, hd, pos0, dim, stages;
    float eps, log2_theta;
    int early;        /* let the dependent launch at the start (else after the main loop) */
    const char *pf;   /* non-NULL: pull pf_bytes from here into L2 (a later launch's weights) */
    unsigned long long pf_bytes;
    int push;         /* ks > 1: partials pushed into the owner's shared memory (st.async), not
                         pulled after a cluster barrier (RTV_WGMMA_PUSH=0 pulls) */
    long long *trace; /* non-NULL: per-CTA phase clocks (RTV_WGMMA_TRACE=1, tune.h) */
    unsigned long long *chain; /* non-NULL: per CTA 8 values (WG_CHAIN) */
};

static __device__ __forceinline__ unsigned long long wg_gtime(void)
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}
/* chain trace value i of this CTA: %globaltimer at 0 start, 1 dependency met (producer),
 * 2 end, 4 first chunk in, 5 MMAs done, 6 partials exchanged, 7 epilogue done; 3: the SM */
#define WG_CHAIN(i, v)                                                                      \
    do {                                                                                    \
        if (a.chain) a.chain[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 + (i)] = (v);  \
    } while (0)

/* phase p of this CTA's trace: clock64 cycles; slot 7 holds the global timer at the start */
#define WG_MARK(p)                                                                          \
    do {                                                                                    \
        if (a.trace) a.trace[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 + (p)] = clock64(); \
    } while (0)

/* The two 32-row weight boxes of tile t and where their columns go. */
static __device__ __forceinline__ void wg_rows(const wg_args &a, int t, int *r0, int *r1)
{
    if (a.mode == WG_GEGLU) {
        *r0 = 32 * t;
        *r1 = a.ff + 32 * t;
    } else if (a.mode == WG_ROPE && t < a.rtiles) {
        const int per = a.hd / 64, h = t / per, q = t % per;
        *r0 = h * a.hd + 32 * q;
        *r1 = *r0 + a.hd / 2;
    } else {
        const int base = a.mode == WG_ROPE ? a.rtiles * 64 : 0;
        *r0 = base + 64 * (t - (a.mode == WG_ROPE ? a.rtiles : 0));
        *r1 = *r0 + 32;
    }
}

/* PLAIN epilogue of 4 columns from col: bias, activation, accumulation (old: y's 4 values,
 * loaded ahead by the caller), bf16 stores */
static __device__ __forceinline__ void wg_plain(const wg_args &a, bf16 *yr, int col, float *v,
                                                uint2 old)
{
    if (col >= a.N) return;
    if (a.bias) {
        const uint2 bb = *(const uint2 *)(a.bias + col);
        const float2 b0 = __bfloat1622float2(*(const __nv_bfloat162 *)&bb.x);
        const float2 b1 = __bfloat1622float2(*(const __nv_bfloat162 *)&bb.y);
        v[0] += b0.x; v[1] += b0.y; v[2] += b1.x; v[3] += b1.y;
    }
#pragma unroll
    for (int e = 0; e < 4; e++) {
        if (a.flags & RTV_MM_GELU) v[e] = rtv_gelu_tanh(v[e]);
        else if (a.flags & RTV_MM_SILU) v[e] = v[e] / (1.0f + __expf(-v[e]));
    }
    if (a.flags & RTV_MM_ACCUM) {
        const float2 y0 = __bfloat1622float2(*(const __nv_bfloat162 *)&old.x);
        const float2 y1 = __bfloat1622float2(*(const __nv_bfloat162 *)&old.y);
        v[0] += y0.x; v[1] += y0.y; v[2] += y1.x; v[3] += y1.y;
    }
    rtv_put_bf16x4(yr + col, v[0], v[1], v[2], v[3]);
}

/* The residual's 4 values at y[row][col] for RTV_MM_ACCUM (zeros past N or without it) */
static __device__ __forceinline__ uint2 wg_old(const wg_args &a, const bf16 *yr, int col)
{
    return (a.flags & RTV_MM_ACCUM) && col < a.N ? *(const uint2 *)(yr + col) : make_uint2(0, 0);
}

static __global__ void __launch_bounds__(WG_THREADS, 1) wgemm_k(const __grid_constant__ wg_args a)
{
#ifdef WG_KERNEL
    extern __shared__ __align__(1024) unsigned char wg_raw[];
    unsigned char *sh = wg_raw + ((1024 - (wg_saddr(wg_raw) & 1023)) & 1023);
    __shared__ __align__(8) uint64_t full[WG_MAXS], empty[WG_MAXS], xbar;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int ks = gridDim.y, rank = blockIdx.y, S = a.stages;
    const int c0 = rank * a.nk / ks, n = (rank + 1) * a.nk / ks - c0;
    int r0, r1;
    wg_rows(a, blockIdx.x, &r0, &r1);
    if (a.trace && tid == 0) {
        unsigned long long gt;
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(gt));
        a.trace[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 + 7] = (long long)gt;
        WG_MARK(0);
    }
    if (a.chain && tid == 0) {
        unsigned sm;
        asm volatile("mov.u32 %0, %smid;" : "=r"(sm));
        WG_CHAIN(0, wg_gtime());
        WG_CHAIN(3, sm);
    }
    if (a.early) rtv_griddep_launch(); /* the next GEMM may place its CTAs and copy weights */
    const int my_rows = (a.M - rank + ks - 1) / ks; /* rows owned: rank, rank + ks, ... < M */
    const bool push = a.push && ks > 1;
    float *rcv = (float *)(sh + (size_t)S * WG_STAGE); /* push: [split][my_rows][WG_RS] */
    if (tid == 0) {
        for (int i = 0; i < S; i++) {
            wg_bar_init(&full[i], 1);
            wg_bar_init(&empty[i], 4); /* one arrival per consumer warp */
        }
        if (push) { /* completes when every peer's partial rows (and x^2 sums) have landed */
            wg_bar_init(&xbar, 1);
            wg_expect(&xbar, (unsigned)((ks - 1) * my_rows * (256 + (a.scale ? 4 : 0))));
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    /* push: peers may store into us once they have waited on this; the wait comes after the
     * main loop, so the cluster barrier costs nothing on the critical path */
    if (push) asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
    float *stg = (float *)sh;            /* [64][WG_STG] after the main loop (reuses the ring) */
    float *ssq = stg + 64 * WG_STG;      /* [64] partial sums of x^2 per row */
    if (warp == 4) {
        if (lane == 0) {
            asm volatile("prefetch.tensormap [%0];" ::"l"((uint64_t)&a.tw) : "memory");
            asm volatile("prefetch.tensormap [%0];" ::"l"((uint64_t)&a.tx) : "memory");
            const int pre = n < S ? n : S;
            for (int i = 0; i < pre; i++) {
                unsigned char *st = sh + (size_t)i * WG_STAGE;
                wg_expect(&full[i], WG_STAGE);
                wg_tma(st + 8192, &a.tw, 64 * (c0 + i), r0, &full[i]);
                wg_tma(st + 8192 + 4096, &a.tw, 64 * (c0 + i), r1, &full[i]);
            }
            if (a.pf) { /* this CTA's share of a later launch's weights, into L2 */
                const unsigned long long C = (unsigned long long)gridDim.x * gridDim.y,
                    cta = (unsigned long long)blockIdx.y * gridDim.x + blockIdx.x,
                    per = ((a.pf_bytes + C - 1) / C + 15) & ~15ull,
                    end = (cta + 1) * per < a.pf_bytes ? (cta + 1) * per : a.pf_bytes;
                for (unsigned long long o = cta * per; o < end; o += 16384) {
                    const unsigned sz = (unsigned)(end - o < 16384 ? end - o : 16384);
                    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a.pf + o),
                                 "r"(sz) : "memory");
                }
            }
            WG_MARK(1);
            rtv_griddep_wait(); /* the activations are the previous kernel's output */
            WG_MARK(2);
            if (a.chain) WG_CHAIN(1, wg_gtime());
            for (int i = 0; i < pre; i++)
                wg_tma(sh + (size_t)i * WG_STAGE, &a.tx, 64 * (c0 + i), 0, &full[i]);
            for (int i = S; i < n; i++) {
                const int s = i % S;
                unsigned char *st = sh + (size_t)s * WG_STAGE;
                wg_wait(&empty[s], ((i / S) - 1) & 1);
                wg_expect(&full[s], WG_STAGE);
                wg_tma(st + 8192, &a.tw, 64 * (c0 + i), r0, &full[s]);
                wg_tma(st + 8192 + 4096, &a.tw, 64 * (c0 + i), r1, &full[s]);
                wg_tma(st, &a.tx, 64 * (c0 + i), 0, &full[s]);
            }
        }
        __syncwarp();
        if (push) asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    } else {
        float d[32];
        float ss = 0.f;
        for (int i = 0; i < n; i++) {
            const int s = i % S;
            unsigned char *st = sh + (size_t)s * WG_STAGE;
            wg_wait(&full[s], (i / S) & 1);
            if (i == 0 && tid == 0) {
                WG_MARK(3);
                WG_CHAIN(4, wg_gtime());
            }
            const uint64_t dx = wg_desc(st), dw = wg_desc(st + 8192);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_mma(d, dx + 2 * kk, dw + 2 * kk, i > 0 || kk > 0);
            wg_commit();
            if (a.scale) /* row tid / 2, half tid % 2 of the chunk */
                wg_add_sumsq64(&ss, st + (tid >> 1) * 128 + (tid & 1) * 64);
            wg_wait_group<1>(); /* chunk i - 1's MMAs are done: its stage may be refilled */
            if (i > 0 && lane == 0) wg_arrive(&empty[(i - 1) % S]);
        }
        wg_wait_group<0>();
        if (tid == 0) {
            WG_MARK(4);
            WG_CHAIN(5, wg_gtime());
        }
        /* D fragment: rows 16 warp + lane / 4 (+ 8), columns 8 j + 2 (lane % 4) (+ 1) */
        const int rr = 16 * warp + (lane >> 2), cc = 2 * (lane & 3);
        ss += __shfl_xor_sync(0xffffffffu, ss, 1);
        if (push) {
            /* row r goes to its owner q = r % ks, slot [rank][r / ks] there; the owner's own
             * rows are plain stores into its own slot */
            asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = rr + 8 * h;
                if (r >= a.M) continue;
                const int q = r % ks, qrows = (a.M - q + ks - 1) / ks;
                float *dst = rcv + (size_t)(rank * qrows + r / ks) * WG_RS + cc;
                if (q == rank) {
#pragma unroll
                    for (int j = 0; j < 8; j++)
                        *(float2 *)(dst + 8 * j) = make_float2(d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
                } else {
                    const unsigned rd = wg_peer(dst, q), rb = wg_peer(&xbar, q);
#pragma unroll
                    for (int j = 0; j < 8; j++) wg_push2(rd + 32 * j, rb, d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
                }
            }
            const int r = tid >> 1;
            if (a.scale && !(tid & 1) && r < a.M) {
                const int q = r % ks, qrows = (a.M - q + ks - 1) / ks;
                float *dst = rcv + (size_t)(rank * qrows + r / ks) * WG_RS + 64;
                if (q == rank) *dst = ss;
                else wg_push1(wg_peer(dst, q), wg_peer(&xbar, q), ss);
            }
        } else {
            asm volatile("bar.sync 1, 128;" ::: "memory"); /* every warp's MMAs read the ring */
#pragma unroll
            for (int j = 0; j < 8; j++) {
                *(float2 *)&stg[rr * WG_STG + 8 * j + cc] = make_float2(d[4 * j], d[4 * j + 1]);
                *(float2 *)&stg[(rr + 8) * WG_STG + 8 * j + cc] = make_float2(d[4 * j + 2], d[4 * j + 3]);
            }
            if (!(tid & 1)) ssq[tid >> 1] = ss;
        }
    }
    __syncthreads();
    if (!a.early) rtv_griddep_launch();
    rtv_griddep_wait(); /* y (accumulated into, written) belongs to the previous kernel too */
    /* the first item's residual values load while the cluster meets (its latency off the tail) */
    const bool plain = a.mode == WG_PLAIN || (a.mode == WG_ROPE && (int)blockIdx.x >= a.rtiles);
    uint2 o0 = make_uint2(0, 0), o1 = o0;
    if (plain && tid < my_rows * 8) {
        const bf16 *yr = a.y + (size_t)(rank + (tid >> 3) * ks) * a.ldy;
        o0 = wg_old(a, yr, r0 + 4 * (tid & 7));
        o1 = wg_old(a, yr, r1 + 4 * (tid & 7));
    }
    if (push) wg_wait_peers(&xbar, 0);  /* every peer's partial rows are here */
    else if (ks > 1) wg_cluster_sync(); /* every split's partial tile is staged */
    if (tid == 0) {
        WG_MARK(5);
        WG_CHAIN(6, wg_gtime());
    }

    for (int it = tid; it < my_rows * 8; it += WG_THREADS) {
        const int row = rank + (it >> 3) * ks, c4 = 4 * (it & 7);
        const float *p0 = stg + row * WG_STG + c4;
        float4 v0 = make_float4(0.f, 0.f, 0.f, 0.f), v1 = v0;
        float sq = 0.f;
        if (ks == 1) {
            v0 = *(const float4 *)p0;
            v1 = *(const float4 *)(p0 + 32);
            sq = ssq[row];
        } else if (push) { /* slot [q][it / 8] of each split q, in split order */
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (q < ks) {
                    const float *pq = rcv + (size_t)(q * my_rows + (it >> 3)) * WG_RS + c4;
                    const float4 A = *(const float4 *)pq, B = *(const float4 *)(pq + 32);
                    v0.x += A.x; v0.y += A.y; v0.z += A.z; v0.w += A.w;
                    v1.x += B.x; v1.y += B.y; v1.z += B.z; v1.w += B.w;
                    if (a.scale) sq += pq[64 - c4];
                }
        } else {
            float4 A[8], B[8];
            float Q[8];
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (q < ks) {
                    A[q] = wg_ld_peer4(p0, q);
                    B[q] = wg_ld_peer4(p0 + 32, q);
                    Q[q] = a.scale ? wg_ld_peer(ssq + row, q) : 0.f;
                }
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (q < ks) { /* split order: the same sums in every run */
                    v0.x += A[q].x; v0.y += A[q].y; v0.z += A[q].z; v0.w += A[q].w;
                    v1.x += B[q].x; v1.y += B[q].y; v1.z += B[q].z; v1.w += B[q].w;
                    sq += Q[q];
                }
        }
        const float sr = a.scale ? rsqrtf(sq / a.dim + a.eps) : 1.f;
        float g[4] = { v0.x * sr, v0.y * sr, v0.z * sr, v0.w * sr };
        float u[4] = { v1.x * sr, v1.y * sr, v1.z * sr, v1.w * sr };
        bf16 *yr = a.y + (size_t)row * a.ldy;
        if (a.mode == WG_GEGLU) {
            rtv_put_bf16x4(yr + 32 * blockIdx.x + c4, rtv_gelu_tanh(g[0]) * u[0],
                    rtv_gelu_tanh(g[1]) * u[1], rtv_gelu_tanh(g[2]) * u[2],
                    rtv_gelu_tanh(g[3]) * u[3]);
        } else if (a.mode == WG_ROPE && (int)blockIdx.x < a.rtiles) {
            const int i0 = r0 % a.hd + c4; /* the pair index of column c4 */
            float o0[4], o1[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float inv_freq = exp2f(-(2.0f * (i0 + e) / a.hd) * a.log2_theta);
                float sn, cs;
                sincosf((float)(a.pos0 + row) * inv_freq, &sn, &cs);
                o0[e] = g[e] * cs - u[e] * sn;
                o1[e] = u[e] * cs + g[e] * sn;
            }
            rtv_put_bf16x4(yr + r0 + c4, o0[0], o0[1], o0[2], o0[3]);
            rtv_put_bf16x4(yr + r1 + c4, o1[0], o1[1], o1[2], o1[3]);
        } else {
            if (it != tid) { /* past the first item: load its residual now */
                o0 = wg_old(a, yr, r0 + c4);
                o1 = wg_old(a, yr, r1 + c4);
            }
            wg_plain(a, yr, r0 + c4, g, o0);
            wg_plain(a, yr, r1 + c4, u, o1);
        }
    }
    if (tid == 0) {
        WG_MARK(6);
        WG_CHAIN(7, wg_gtime());
    }
    if (ks > 1 && !push) wg_cluster_sync(); /* no CTA leaves while a peer still reads its tile */
    if (a.chain && tid == 0) WG_CHAIN(2, wg_gtime());
#else
    (void)a; /* not an sm_90a build of this kernel: never launched (wg_ok is 0) */
#endif
}

int rtv_cuda_wgemm_init(rtv_stream *s)
{
    int dev = 0, major = 0, minor = 0;
    s->wg_ok = 0;
    s->wg_matmul = 1;
    s->wg_parts = 15;
    s->wg_encode = NULL;
    s->wg_trace = NULL;
    s->wg_trace_ctas = 0;
    s->wg_chain = NULL;
    s->wg_chain_n = 0;
    s->wg_use = rtv_cuda_env_switch("RTV_WGMMA", 0); /* opt-in (see top); tune.h switches it */
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CU_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major != 9 || minor != 0) return RTV_OK; /* wgmma as built here: sm_90a only */
    void *fn = rtv_cuda_tmap_encoder();
    if (!fn) return RTV_OK;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, wgemm_k) != cudaSuccess) { /* no sm_90a image */
        cudaGetLastError();
        return RTV_OK;
    }
    const char *k = getenv("RTV_WGMMA_KS"); /* the most K splits (1..8; default 8) */
    s->wg_maxks = k && k[0] >= '1' && k[0] <= '8' && !k[1] ? k[0] - '0' : 8;
    s->wg_early = rtv_cuda_env_switch("RTV_WGMMA_EARLY", 1);
    s->wg_matmul = rtv_cuda_env_switch("RTV_WGMMA_MATMUL", 1);
    /* RTV_WGMMA_PARTS: which of rms_mlp's GEMMs take it, a sum of 1 o-proj, 2 gate/up, 4 down,
     * 8 next qkv (default 15: all); the others run as plain matmuls and the unfused passes
     * (on cuBLASLt only with RTV_WGMMA_MATMUL=0, else plain matmuls take this kernel too) */
    const char *pp = getenv("RTV_WGMMA_PARTS");
    char *pe = NULL;
    const long pv = pp && pp[0] ? strtol(pp, &pe, 10) : 15;
    s->wg_parts = pe && *pe == 0 && pv >= 0 && pv <= 15 ? (int)pv : 15;
    if (pp && s->wg_parts != pv)
        fprintf(stderr, "rtvla: RTV_WGMMA_PARTS=%s: expected 0..15, using 15 (all)\n", pp);
    if (rtv_cuda_env_switch("RTV_WGMMA_TRACE", 0)) {
        CU_TRY(cudaMalloc((void **)&s->wg_trace, (size_t)1024 * 8 * sizeof(long long)));
        CU_TRY(cudaMemset(s->wg_trace, 0, (size_t)1024 * 8 * sizeof(long long)));
        const size_t cb = (size_t)RTV_WG_RING * 1024 * 8 * sizeof(unsigned long long);
        CU_TRY(cudaMalloc((void **)&s->wg_chain, cb));
        CU_TRY(cudaMemset(s->wg_chain, 0, cb));
        s->wg_chain_n = 0;
    }
    const char *e = getenv("RTV_WGMMA_STAGES");
    s->wg_stages_set = e && e[0] >= '2' && e[0] <= '8' && !e[1];
    s->wg_stages = s->wg_stages_set ? e[0] - '0' : 6;
    s->wg_push = rtv_cuda_env_switch("RTV_WGMMA_PUSH", 1);
    s->wg_pf_on = rtv_cuda_env_switch("RTV_WGMMA_PF", 1);
    s->wg_pf = NULL;
    /* launches without a K split (the long weight streams: gate_up) may take a deeper ring */
    const char *e1 = getenv("RTV_WGMMA_STAGES1");
    s->wg_stages1 = e1 && e1[0] >= '2' && e1[0] <= '8' && !e1[1] ? e1[0] - '0' : s->wg_stages;
    CU_TRY(cudaFuncSetAttribute(wgemm_k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                1024 + WG_MAXS * WG_STAGE + WG_RCV));
    CU_TRY(cudaFuncSetAttribute(wgemm_k, cudaFuncAttributePreferredSharedMemoryCarveout,
                                cudaSharedmemCarveoutMaxShared));
    s->wg_encode = fn;
    s->wg_ok = 1;
    return RTV_OK;
}

/* One GEMM. wrows: weight rows (PLAIN: N; GEGLU: 2 ff; ROPE: the qkv columns). Returns 1 when
 * the shape is not for this kernel (the caller runs the unfused ops), else 0 with *st set. */
static int wg_run(rtv_stream *s, int mode, void *y, int ldy, const void *x, int ldx,
                  const void *w, const void *bias, int M, int wrows, int K, int flags, int scale,
                  float eps, int ff, int rheads, int hd, int pos0, float theta, int *st)
{
    *st = RTV_OK;
    if (!s->wg_ok || !s->wg_use || M < 1 || M > 64 || K % 64 || wrows % 32 || ldx % 8 || ldy % 4 ||
        (((uintptr_t)x | (uintptr_t)w) & 15) || (((uintptr_t)y | (uintptr_t)bias) & 7))
        return 1;
    int tiles, rtiles = 0;
    if (mode == WG_GEGLU) {
        if (wrows != 2 * ff || ff % 32 || ldy < ff) return 1;
        tiles = ff / 32;
    } else if (mode == WG_ROPE) {
        const int tail = wrows - rheads * hd;
        if (hd % 64 || tail < 0 || tail % 64 || ldy < wrows) return 1;
        rtiles = rheads * (hd / 64);
        tiles = rtiles + tail / 64;
    } else {
        if (ldy < wrows) return 1;
        tiles = (wrows + 63) / 64;
    }
    const int nk = K / 64;
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    int ks = sms / tiles;
    ks = ks < 1 ? 1 : ks > s->wg_maxks ? s->wg_maxks : ks;
    ks = ks > nk ? nk : ks;
    const int per = (nk + ks - 1) / ks;
    const int push = s->wg_push && ks > 1;
    /* pushed partials take WG_RCV more bytes: one stage fewer keeps two CTAs per SM (this
     * launch's and the next one's, whose weights stream in before its dependency is met) */
    const int smax = ks == 1 ? s->wg_stages1 : s->wg_stages_set ? s->wg_stages : push ? 5 : 6;
    const int S = per < smax ? (per < 2 ? 2 : per) : smax;
    wg_args a;
    memset(&a, 0, sizeof(a));
    if (rtv_cuda_tmap_bf16(s->wg_encode, &a.tx, x, M, K, ldx, 64) ||
        rtv_cuda_tmap_bf16(s->wg_encode, &a.tw, w, wrows, K, K, 32))
        return 1;
    a.y = (bf16 *)y;
    a.bias = (const bf16 *)bias;
    a.ldy = ldy; a.M = M; a.N = wrows; a.nk = nk; a.flags = flags; a.mode = mode;
    a.scale = scale; a.ff = ff; a.rtiles = rtiles; a.hd = hd; a.pos0 = pos0; a.dim = K;
    a.stages = S; a.eps = eps; a.log2_theta = mode == WG_ROPE ? log2f(theta) : 0.f;
    a.early = s->wg_early;
    a.push = push;
    if (s->wg_pf_on && s->wg_pf && !((uintptr_t)s->wg_pf & 15)) {
        a.pf = (const char *)s->wg_pf;
        a.pf_bytes = s->wg_pf_bytes & ~(size_t)15;
    }
    s->wg_pf = NULL; /* a hint for this launch only */
    a.trace = s->capturing || tiles * ks > 1024 ? NULL : s->wg_trace;
    if (a.trace) s->wg_trace_ctas = tiles * ks;
    if (s->wg_chain && tiles * ks <= 1024) { /* the chain trace: eager and captured launches */
        const int slot = (int)(s->wg_chain_n % RTV_WG_RING);
        a.chain = s->wg_chain + (size_t)slot * 1024 * 8;
        s->wg_chain_info[slot].seq = s->wg_chain_n++;
        s->wg_chain_info[slot].ctas = tiles * ks;
        s->wg_chain_info[slot].mode = mode;
        s->wg_chain_info[slot].n = wrows;
        s->wg_chain_info[slot].k = K;
        s->wg_chain_info[slot].ks = ks;
    }
    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg =
        rtv_cuda_launch_cfg(s, attr, dim3(tiles, ks), dim3(WG_THREADS),
                            1024 + (size_t)S * WG_STAGE + (push ? WG_RCV : 0), ks);
    cudaError_t e = cudaLaunchKernelEx(&cfg, wgemm_k, a);
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "wgmma GEMM launch", __FILE__, __LINE__);
    return 0;
}

/* matmul for few rows through this kernel; 1: not its shape (the caller uses cuBLASLt). */
int rtv_cuda_wgemm(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                   const void *bias, int M, int N, int K, int flags, int *st)
{
    if (!s->wg_matmul) return 1; /* RTV_WGMMA_MATMUL=0: only rms_mlp's GEMMs take it */
    return wg_run(s, WG_PLAIN, y, ldy, x, ldx, w, bias, M, N, K, flags, 0, 0.f, 0, 0, 0, 0, 0.f,
                  st);
}

/* matmul_geglu's GEMM and GeGLU in one launch; 1: not its shape. */
int rtv_cuda_wgemm_geglu(rtv_stream *s, void *y, const void *x, int ldx, const void *w, int M,
                         int F, int K, int *st)
{
    if (!s->wg_matmul) return 1; /* as rtv_cuda_wgemm: RTV_WGMMA_MATMUL=0 keeps it off */
    return wg_run(s, WG_GEGLU, y, F, x, ldx, w, NULL, M, 2 * F, K, 0, 0, 0.f, F, 0, 0, 0, 0.f, st);
}

extern "C" void rtv_cuda_wgemm_tune(rtv_stream *s, int on) { s->wg_use = on; }

static int wg_cmpll(const void *p, const void *q)
{
    const long long a = *(const long long *)p, b = *(const long long *)q;
    return (a > b) - (a < b);
}

extern "C" void rtv_cuda_wgemm_chain_report(rtv_stream *s, void *fp)
{
    FILE *f = (FILE *)fp;
    const int L = s->wg_chain_n < RTV_WG_RING ? (int)s->wg_chain_n : RTV_WG_RING;
    if (!s->wg_chain || L < 2) return;
    const size_t per = (size_t)1024 * 8;
    unsigned long long *h = (unsigned long long *)malloc((size_t)RTV_WG_RING * per * 8);
    if (!h) return;
    if (cudaStreamSynchronize(s->s) != cudaSuccess ||
        cudaMemcpy(h, s->wg_chain, (size_t)RTV_WG_RING * per * 8, cudaMemcpyDeviceToHost) !=
            cudaSuccess) {
        free(h);
        return;
    }
    /* per launch (seq n - L .. n - 1): first start, first dependency met, last end, and the
     * CTAs' mean phases: 0 wait (start -> dependency met), 1 first chunk, 2 MMAs, 3 exchange,
     * 4 epilogue, 5 to the end, 6 life */
    enum { NPH = 7 };
    long long t0[RTV_WG_RING], td[RTV_WG_RING], t1[RTV_WG_RING], ph[RTV_WG_RING][NPH];
    char tag[RTV_WG_RING][32];
    for (int j = 0; j < L; j++) {
        const int slot = (int)((s->wg_chain_n - L + j) % RTV_WG_RING);
        const unsigned long long *c = h + (size_t)slot * per;
        const int n = s->wg_chain_info[slot].ctas;
        long long a0 = -1, ad = -1, a1 = -1, sum[NPH] = { 0 };
        for (int i = 0; i < n; i++) {
            const long long *q = (const long long *)c + 8 * i;
            if (a0 < 0 || q[0] < a0) a0 = q[0];
            if (ad < 0 || q[1] < ad) ad = q[1];
            if (q[2] > a1) a1 = q[2];
            const long long m[7] = { q[0], q[1], q[4], q[5], q[6], q[7], q[2] };
            for (int p = 0; p < 6; p++) sum[p] += m[p + 1] - m[p];
            sum[6] += q[2] - q[0];
        }
        t0[j] = a0; td[j] = ad; t1[j] = a1;
        for (int p = 0; p < NPH; p++) ph[j][p] = n ? sum[p] / n : 0;
        static const char mc[3] = { 'P', 'G', 'R' };
        snprintf(tag[j], sizeof(tag[j]), "%c%dx%d/%d", mc[s->wg_chain_info[slot].mode],
                 s->wg_chain_info[slot].n, s->wg_chain_info[slot].k, s->wg_chain_info[slot].ks);
    }
    free(h);
    fprintf(f, "wgmma chain, last %d launches, ns (shape: mode N x K / K splits), medians per pair "
               "prev -> this: n, span, gap (first start - prev last end), signal (first "
               "dependency met - prev last end), CTA means: wait, first chunk, mma, exchange, "
               "epilogue, end, life\n", L);
    int done[RTV_WG_RING] = { 0 };
    for (int j = 1; j < L; j++) {
        if (done[j]) continue;
        long long v[3 + NPH][RTV_WG_RING];
        int n = 0;
        for (int q = j; q < L; q++)
            if (!done[q] && !strcmp(tag[q], tag[j]) && !strcmp(tag[q - 1], tag[j - 1])) {
                done[q] = 1;
                v[0][n] = t1[q] - t0[q];
                v[1][n] = t0[q] - t1[q - 1];
                v[2][n] = td[q] - t1[q - 1];
                for (int p = 0; p < NPH; p++) v[3 + p][n] = ph[q][p];
                n++;
            }
        fprintf(f, "  %-14s -> %-14s %3d", tag[j - 1], tag[j], n);
        for (int k = 0; k < 3 + NPH; k++) {
            qsort(v[k], n, sizeof(long long), wg_cmpll);
            fprintf(f, " %6lld", v[k][n / 2]);
        }
        fputc('\n', f);
    }
    fprintf(f, "  whole: %lld ns from the first start to the last end over %d launches\n",
            t1[L - 1] - t0[0], L);
}

/* The last eager launch's trace (RTV_WGMMA_TRACE=1): 8 values per CTA into out; returns the
 * CTA count (0: none). Synchronizes the stream. */
extern "C" int rtv_cuda_wgemm_trace(rtv_stream *s, long long *out, int max_ctas)
{
    return rtv_cuda_trace_copy(s, s->wg_trace, s->wg_trace_ctas, out, max_ctas);
}

/* rms_mlp (backend.h) as four launches of the kernel above, each falling back to the unfused
 * ops where its shape is not the kernel's. */
int rtv_cuda_rms_mlp_wg(rtv_stream *s, void *x, const void *att, const void *w_o, int qd,
                        const void *w_gu, const void *w_down, void *gu, void *ff, int dim,
                        float eps, int rows, int F, const rtv_qkv_next *nq)
{
    int st;
    if (rows <= 0 || dim <= 0 || F <= 0 || (att && (!w_o || qd <= 0)))
        return rtv_fail(RTV_E_ARG, "rms_mlp: rows=%d dim=%d ff=%d qd=%d", rows, dim, F, qd);
    st = RTV_OK;
    if (att && (!(s->wg_parts & 1) ||
                wg_run(s, WG_PLAIN, x, dim, att, qd, w_o, NULL, rows, dim, qd, RTV_MM_ACCUM, 0,
                       0.f, 0, 0, 0, 0, 0.f, &st))) {
        if ((st = rtv_cuda_matmul(s, x, dim, att, qd, w_o, NULL, rows, dim, qd, RTV_MM_ACCUM)))
            return st;
    } else if (att && st)
        return st;
    if (!(s->wg_parts & 2) || wg_run(s, WG_GEGLU, ff, F, x, dim, w_gu, NULL, rows, 2 * F, dim, 0,
                                     1, eps, F, 0, 0, 0, 0.f, &st)) {
        if ((st = rtv_cuda_matmul(s, gu, 2 * F, x, dim, w_gu, NULL, rows, 2 * F, dim, 0)) ||
            (st = rtv_cuda_rms_geglu(s, ff, gu, x, dim, eps, rows, F)))
            return st;
    } else if (st)
        return st;
    if (!(s->wg_parts & 4) || wg_run(s, WG_PLAIN, x, dim, ff, F, w_down, NULL, rows, dim, F,
                                     RTV_MM_ACCUM, 0, 0.f, 0, 0, 0, 0, 0.f, &st)) {
        if ((st = rtv_cuda_matmul(s, x, dim, ff, F, w_down, NULL, rows, dim, F, RTV_MM_ACCUM)))
            return st;
    } else if (st)
        return st;
    if (!nq) return RTV_OK;
    s->wg_pf = nq->after; /* the o-proj after the attention: into L2 while this GEMM runs */
    s->wg_pf_bytes = nq->after_bytes;
    if (!(s->wg_parts & 8) ||
        wg_run(s, WG_ROPE, nq->y, nq->ld, x, dim, nq->w, NULL, rows, nq->cols, dim, 0, 1, eps, 0,
               nq->rope_heads, nq->head_dim, nq->pos0, nq->theta, &st)) {
        if ((st = rtv_cuda_matmul(s, nq->y, nq->ld, x, dim, nq->w, NULL, rows, nq->cols, dim, 0)) ||
            (st = rtv_cuda_rms_rope(s, nq->y, nq->ld, nq->cols, x, dim, eps, rows, nq->rope_heads,
                                    nq->head_dim, nq->pos0, nq->theta)))
            return st;
    }
    s->wg_pf = NULL;
    return st;
}
