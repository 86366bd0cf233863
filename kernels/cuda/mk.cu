/* kernels/cuda/mk.cu — the action expert's layers of one Euler step as ONE persistent kernel
 * (the `expert_layers` op), running the task plan of mk_plan.h. OPT-IN (RTV_MK=1) until it
 * wins; sm_90a only (built in the wgmma archive; elsewhere the model runs the layers op by op).
 *
 * Why (kernels/README, "The CUDA backend"): the action cycle is ~1,900 launches, and every
 * op-level kernel tried pays a fixed cost per launch and cannot stream its weights before its
 * predecessor ends, except through programmatic launch, which cuBLAS never grants. Here one
 * CTA per SM runs its list of tasks; a task waits (counters in global memory) only for the
 * tasks whose output it reads, and its weights, which depend on nothing, stream in before
 * that wait, across task and layer boundaries.
 *
 * A CTA: warps 0-3 are the consumer warpgroup, warp 4 lane 0 the producer.
 * - GEMM tasks (QKV, O, GU, DOWN; 64 output features = two 32-row weight boxes, K in 64-wide
 *   chunks) flow through two rings: MK_NW stages of weight chunks (64 rows x 64 K) and MK_NA
 *   of activation chunks (64 rows x 64 K, rows past n read as zeros), 128-byte swizzled, as in
 *   wgemm.cu. The producer keeps two cursors over its CTA's chunks: weights are issued as soon
 *   as a weight stage is free, activations once the chunk's task has its inputs (its counters
 *   are met); so the weights of the next tasks stream in (up to MK_NW chunks ahead) while this
 *   one waits or computes. The weight ring is the deeper one because the time a CTA waits for
 *   its inputs is what it can fill with weights (tests/kernels/mk_sim.c models it).
 *   The consumers run wgmma.m64n64k16 from the rings, sum x^2 of the activation rows for the
 *   folded norm's row scale (QKV and GU read x with K = dim), stage the fp32 tile in shared
 *   memory and run the epilogue: row scale + RoPE into the layer's qkv rows, row scale +
 *   GeGLU into ff, or for O and DOWN the residual add into x, or with K splits an fp32 partial
 *   in slot `split`; the split that arrives last sums the slots in split order and adds the
 *   residual (deterministic).
 * - ATT tasks (head, key split) run on the consumers from their own region (Q 64 x 256, one
 *   chunk of 80 keys of K and of V, TMA-loaded once the counters are met): S = Q K^T
 *   (wgmma m64n80k16), limit rule, online softmax in registers, P as the register A operand of
 *   O += P V (wgmma m64n128k16), as attn_wg.cu. One split writes att; several write records
 *   (O unnormalized, max, sum) and the last to arrive combines them in split order.
 * Signalling: a task's stores, a proxy fence (TMA reads them), the consumers' barrier, then
 * thread 0 releases the counter (or arrives on the tile's, acquiring the other splits'
 * writes). Reads of other CTAs' data by plain loads (the residual, partials, records) go
 * through L2 (ld.global.cg) after an acquire by thread 0 and a barrier.
 * Counters are zeroed by a memset before each launch (captured with it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "tmap.h"
#include "tune.h"
#include "wgmma.cuh"
#include "wg_softmax.cuh"

extern "C" {
#include "kernels/cuda/mk_plan.h"
}

#define MK_MAXL 24          /* layers in one launch */
#define MK_THREADS 160      /* the consumer warpgroup + the producer warp */
#define MK_STAGE 8192       /* a ring stage: one chunk (64 rows x 64 K bf16) */
#define MK_NW 10            /* weight ring stages: how far weights stream ahead */
#define MK_NA 4             /* activation ring stages */
#define MK_KB RTV_MK_KEY_CHUNK /* attention keys per chunk (mk_plan.h) */
#define MK_HD 256           /* head_dim (pi0) */
#define MK_HB (MK_HD / 64)  /* 64-column boxes per head */
#define MK_QBOX 8192        /* 64 rows x 64 columns bf16 */
#define MK_KVBOX (MK_KB * 128)
#define MK_ATT (MK_HB * MK_QBOX + 2 * MK_HB * MK_KVBOX) /* Q, K chunk, V chunk */
#define MK_STG 68           /* fp32 row stride of the staged GEMM tile (in the ATT region) */
#define MK_RECF (MK_HD + 8) /* floats per attention record: O, max, sum, pad */
#define MK_SMEM (1024 + (MK_NW + MK_NA) * MK_STAGE + MK_ATT)
/* the trace's marks per task: the consumers start it, its inputs are in shared memory (first
 * chunk or Q), its own work is done, its output is complete (signalled, after the reduction
 * where it did one) */
#define MK_MARKS 4

struct mk_args {
    CUtensorMap tw[MK_MAXL][4];  /* weights qkv, o, gate_up, down: boxes of 64 K x 32 rows */
    CUtensorMap tlq[MK_MAXL][2]; /* layer's qkv rows: boxes of 64 x 64 rows (Q), 64 x 80 (K/V) */
    CUtensorMap tx, tatt, tff;   /* activations: boxes of 64 x 64 rows */
    bf16 *x, *att, *ff;
    bf16 *lq[MK_MAXL];
    float *part;                 /* split partials [W / 64][16][64][64]: a tile's splits, each
                                  * 64 rows x 64 columns, contiguous (one bulk copy per split) */
    float *arec;                 /* attention records [nh][splits][64][RECF] */
    unsigned *ctr;
    unsigned long long *trace;   /* RTV_MK_TRACE=1: per task MK_MARKS %globaltimer values */
    const rtv_mk_task *task;
    const int *cta_first, *cta_task;
    int n, W, F, nh, nkv, kv_row, limit_rows, limit_keys, qkv, a_splits;
    float eps, log2_theta, scale2;
    unsigned ctr_fam[8], ctr_per_layer; /* rtv_mk_ctrs: names a stuck wait's counter */
};

#ifdef WG_KERNEL
static __device__ __forceinline__ void mk_mark(const mk_args &a, int tix, int m)
{
    if (a.trace && threadIdx.x == 0) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
        a.trace[(size_t)tix * MK_MARKS + m] = t;
    }
}
static __device__ __forceinline__ unsigned mk_ld_acquire(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
static __device__ __forceinline__ void mk_release_add(unsigned *p)
{
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(p) : "memory");
}
static __device__ __forceinline__ unsigned mk_arrive(unsigned *p)
{
    unsigned old;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(old) : "l"(p) : "memory");
    return old;
}
static __device__ __forceinline__ void mk_proxy_global(void)
{
    asm volatile("fence.proxy.async.global;" ::: "memory");
}
static __device__ __forceinline__ void mk_sync_consumers(void)
{
    asm volatile("bar.sync 1, 128;" ::: "memory");
}
static __device__ __forceinline__ int mk_ready(const mk_args &a, const rtv_mk_task &t)
{
    for (int w = 0; w < t.nwait; w++)
        if (mk_ld_acquire(a.ctr + t.wait[w].ctr) < t.wait[w].target) return 0;
    return 1;
}
static __device__ __forceinline__ int mk_is_gemm(int op) { return op != RTV_MK_ATT; }
/* split p's partial of O / DOWN task t's tile: 64 rows x 64 floats, contiguous */
static __device__ __forceinline__ float *mk_part(const mk_args &a, const rtv_mk_task &t, int p)
{
    return a.part + ((size_t)(t.col0 / 64) * RTV_MK_MAXSPLIT + p) * 64 * 64;
}
/* A wait that cannot end (a plan or counter bug) fails the launch after ~2^32 cycles (~2 s)
 * instead of hanging the stream, first printing what it waited for. */
#define MK_WATCHDOG (1ll << 32)
static __device__ __noinline__ void mk_stuck(const mk_args &a, const rtv_mk_task &t,
                                             const char *who)
{
    /* the counter families of rtv_mk_ctrs, in its order */
    const char *const fam[8] = { "qkv head", "attention group", "attention arrivals", "o done",
                                 "o tile arrivals", "gate_up group", "down done",
                                 "down tile arrivals" };
    printf("rtvla mk: CTA %d %s stuck at task op %d layer %d tile %d split %d:", blockIdx.x, who,
           t.op, t.layer, t.tile, t.split);
    for (int w = 0; w < t.nwait; w++) {
        const unsigned c = t.wait[w].ctr, l = c / a.ctr_per_layer, i = c % a.ctr_per_layer;
        int f = 0;
        while (f < 7 && i >= a.ctr_fam[f + 1]) f++;
        printf(" counter %u (layer %u %s %u) = %u of %u;", c, l, fam[f], i - a.ctr_fam[f],
               *(volatile unsigned *)(a.ctr + c), t.wait[w].target);
    }
    printf("\n");
    __trap();
}
/* a shared-memory barrier wait of the consumers, with the same watchdog */
static __device__ __forceinline__ void mk_wait_bar(uint64_t *b, unsigned parity, const mk_args &a,
                                                   const rtv_mk_task &t)
{
    const long long t0 = clock64();
    while (!wg_try(b, parity))
        if (clock64() - t0 > MK_WATCHDOG) mk_stuck(a, t, "consumer (shared-memory data)");
}
static __device__ __forceinline__ void mk_wait_ready(const mk_args &a, const rtv_mk_task &t)
{
    const long long t0 = clock64();
    while (!mk_ready(a, t)) {
        __nanosleep(32);
        if (clock64() - t0 > MK_WATCHDOG) mk_stuck(a, t, "consumer");
    }
}

/* the two 32-row weight boxes of a GEMM task and its weight map */
static __device__ __forceinline__ void mk_rows(const mk_args &a, const rtv_mk_task &t, int *r0,
                                               int *r1)
{
    switch (t.op) {
    case RTV_MK_QKV:
        *r0 = t.tile * MK_HD + (int)t.col0;
        *r1 = *r0 + MK_HD / 2;
        break;
    case RTV_MK_GU:
        *r0 = (int)t.col0;
        *r1 = a.F + (int)t.col0;
        break;
    default:
        *r0 = (int)t.col0;
        *r1 = (int)t.col0 + 32;
        break;
    }
}
static __device__ __forceinline__ const CUtensorMap *mk_wmap(const mk_args &a,
                                                             const rtv_mk_task &t)
{
    const int i = t.op == RTV_MK_QKV ? 0 : t.op == RTV_MK_O ? 1 : t.op == RTV_MK_GU ? 2 : 3;
    return &a.tw[t.layer][i];
}
static __device__ __forceinline__ const CUtensorMap *mk_amap(const mk_args &a,
                                                             const rtv_mk_task &t)
{
    return t.op == RTV_MK_O ? &a.tatt : t.op == RTV_MK_DOWN ? &a.tff : &a.tx;
}

/* The producer: weights of chunk wseq as soon as its stage is free, activations of chunk aseq
 * once its task's counters are met. */
static __device__ void mk_produce(const mk_args &a, int first, int last, unsigned char *wring,
                                  unsigned char *aring, uint64_t *wfull, uint64_t *wempty,
                                  uint64_t *afull, uint64_t *aempty)
{
    int wi = first, wc = 0, ai = first, ac = 0, a_ok = 0;
    unsigned wseq = 0, aseq = 0;
    rtv_mk_task wt, at;
    /* the next GEMM task at or after i */
#define MK_SKIP(i, t)                                                                       \
    do {                                                                                    \
        while ((i) < last && !mk_is_gemm(a.task[a.cta_task[(i)]].op)) (i)++;                \
        if ((i) < last) (t) = a.task[a.cta_task[(i)]];                                      \
    } while (0)
    MK_SKIP(wi, wt);
    MK_SKIP(ai, at);
    long long idle = clock64();
    while (ai < last) {
        int did = 0;
        if (wi < last) {
            const int s = (int)(wseq % MK_NW);
            if (wseq < MK_NW || wg_test(&wempty[s], ((wseq / MK_NW) - 1) & 1)) {
                int r0, r1;
                mk_rows(a, wt, &r0, &r1);
                const int k = (int)wt.k0 + 64 * wc;
                unsigned char *st = wring + (size_t)s * MK_STAGE;
                wg_expect(&wfull[s], MK_STAGE);
                wg_tma(st, mk_wmap(a, wt), k, r0, &wfull[s]);
                wg_tma(st + 4096, mk_wmap(a, wt), k, r1, &wfull[s]);
                wseq++;
                if (++wc == (int)wt.nk / 64) {
                    wc = 0;
                    wi++;
                    MK_SKIP(wi, wt);
                }
                did = 1;
            }
        }
        const int sa = (int)(aseq % MK_NA);
        if (aseq < wseq && (aseq < MK_NA || wg_test(&aempty[sa], ((aseq / MK_NA) - 1) & 1))) {
            if (!a_ok && mk_ready(a, at)) {
                a_ok = 1;
                mk_proxy_global(); /* generic-proxy writes of other CTAs, read by TMA */
            }
            if (a_ok) {
                wg_expect(&afull[sa], MK_STAGE);
                wg_tma(aring + (size_t)sa * MK_STAGE, mk_amap(a, at), (int)at.k0 + 64 * ac, 0,
                       &afull[sa]);
                aseq++;
                if (++ac == (int)at.nk / 64) {
                    ac = 0;
                    a_ok = 0;
                    ai++;
                    MK_SKIP(ai, at);
                }
                did = 1;
            }
        }
        if (did) {
            idle = clock64();
        } else {
            __nanosleep(20);
            if (clock64() - idle > MK_WATCHDOG) /* the task whose activations it waits for */
                mk_stuck(a, at, aseq < wseq ? "producer (inputs)" : "producer (ring stage)");
        }
    }
#undef MK_SKIP
}

/* After a task's stores: a proxy fence (TMA reads them), the consumers' barrier, then thread 0
 * releases its counter, or arrives at its tile's (acquire + release); the barrier makes the
 * other threads' stores part of that release (CUTLASS's semaphore pattern, no per-thread
 * __threadfence). Returns 1 (to every consumer) where this split arrived last and must
 * reduce. */
static __device__ __forceinline__ int mk_done(const mk_args &a, const rtv_mk_task &t,
                                              int *flag, int tix)
{
    mk_mark(a, tix, 2);
    mk_proxy_global();
    mk_sync_consumers();
    if (threadIdx.x == 0) {
        int last = 0;
        if (t.nsplit > 1)
            last = mk_arrive(a.ctr + t.arrive) == (unsigned)(t.nsplit - 1);
        else
            mk_release_add(a.ctr + t.signal);
        *flag = last;
        if (!last) mk_mark(a, tix, 3);
    }
    mk_sync_consumers();
    return *flag;
}
static __device__ __forceinline__ void mk_reduced(const mk_args &a, const rtv_mk_task &t,
                                                  int tix)
{
    mk_proxy_global();
    mk_sync_consumers();
    if (threadIdx.x == 0) mk_release_add(a.ctr + t.signal);
    mk_mark(a, tix, 3);
}

/* The last split of an O or DOWN tile: x's tile += the splits' partials, summed in split
 * order. The partials come into shared memory by one bulk copy per split (the copy engine,
 * not a chain of per-thread L2 round trips), and each thread loads its items' residuals
 * before summing. Not inlined: its own registers. */
static __device__ __noinline__ void mk_sum_splits(const mk_args &a, const rtv_mk_task &t,
                                                  float *stg, uint64_t *rbar, unsigned *ruses)
{
    const int tid = threadIdx.x;
    const int S = t.nsplit, items = a.n * 16;
    const unsigned bytes = (unsigned)a.n * 256; /* one split's rows (64 floats each) */
    float *sp = stg; /* [S][n][64] (the region: the tile is no longer staged; entry_build
                      * keeps S n 256 bytes within it) */
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); /* the tile's reads */
    mk_sync_consumers();
    if (tid == 0) {
        mk_proxy_global(); /* the partials: other CTAs' generic stores */
        wg_expect(rbar, S * bytes);
        for (int p = 0; p < S; p++)
            wg_bulk(sp + (size_t)p * a.n * 64, mk_part(a, t, p), bytes, rbar);
    }
    uint2 res[8]; /* items tid, tid + 128, ... (at most 64 rows x 16 / 128) */
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int it = tid + 128 * k;
        if (it < items)
            res[k] = __ldcg((const uint2 *)(a.x + (size_t)(it >> 4) * a.W + t.col0 +
                                            4 * (it & 15)));
    }
    mk_wait_bar(rbar, *ruses & 1, a, t);
    (*ruses)++;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int it = tid + 128 * k;
        if (it >= items) continue;
        const int row = it >> 4, c4 = 4 * (it & 15);
        float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int p = 0; p < S; p++) { /* shared memory: short latency, in split order */
            const float4 v = *(const float4 *)(sp + ((size_t)p * a.n + row) * 64 + c4);
            s.x += v.x;
            s.y += v.y;
            s.z += v.z;
            s.w += v.w;
        }
        const float2 o0 = __bfloat1622float2(*(const __nv_bfloat162 *)&res[k].x);
        const float2 o1 = __bfloat1622float2(*(const __nv_bfloat162 *)&res[k].y);
        rtv_put_bf16x4(a.x + (size_t)row * a.W + t.col0 + c4, o0.x + s.x, o0.y + s.y,
                       o1.x + s.z, o1.y + s.w);
    }
}

/* One GEMM task on the consumers: its chunks from the ring (seq: the CTA's chunk count so
 * far), then its epilogue. */
static __device__ void mk_gemm(const mk_args &a, const rtv_mk_task &t, unsigned char *wring,
                               unsigned char *aring, uint64_t *bars, unsigned *seq, float *stg,
                               uint64_t *rbar, unsigned *ruses, int *flag, int tix)
{
    uint64_t *wfull = bars, *wempty = wfull + MK_NW, *afull = wempty + MK_NW,
             *aempty = afull + MK_NA;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nch = (int)t.nk / 64, scale = t.op == RTV_MK_QKV || t.op == RTV_MK_GU;
    float d[32];
    float ss = 0.f;
    /* the producer has waited for the inputs; the epilogue of O and DOWN also reads x (the
     * residual), so the consumers acquire them too (met by the time the first chunk lands) */
    if (tid == 0 && (t.op == RTV_MK_O || t.op == RTV_MK_DOWN)) mk_wait_ready(a, t);
    for (int c = 0; c < nch; c++, (*seq)++) {
        const unsigned j = *seq;
        unsigned char *xs = aring + (size_t)(j % MK_NA) * MK_STAGE;
        unsigned char *ws = wring + (size_t)(j % MK_NW) * MK_STAGE;
        mk_wait_bar(&wfull[j % MK_NW], (j / MK_NW) & 1, a, t);
        mk_wait_bar(&afull[j % MK_NA], (j / MK_NA) & 1, a, t);
        if (c == 0) mk_mark(a, tix, 1);
        const uint64_t dx = wg_desc(xs), dw = wg_desc(ws);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wg_mma(d, dx + 2 * kk, dw + 2 * kk, c > 0 || kk > 0);
        wg_commit();
        if (scale) /* row tid / 2, half tid % 2 of the chunk */
            wg_add_sumsq64(&ss, xs + (tid >> 1) * 128 + (tid & 1) * 64);
        wg_wait_group<1>(); /* chunk c - 1's MMAs are done: its stages may be refilled */
        if (c > 0 && lane == 0) {
            wg_arrive(&wempty[(j - 1) % MK_NW]);
            wg_arrive(&aempty[(j - 1) % MK_NA]);
        }
    }
    wg_wait_group<0>();
    if (lane == 0) {
        wg_arrive(&wempty[(*seq - 1) % MK_NW]);
        wg_arrive(&aempty[(*seq - 1) % MK_NA]);
    }
    /* stage the tile: D rows 16 warp + lane / 4 (+ 8), columns 8 j + 2 (lane % 4) (+ 1) */
    float *ssq = stg + 64 * MK_STG;
    const int rr = 16 * warp + (lane >> 2), cc = 2 * (lane & 3);
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    mk_sync_consumers(); /* the previous task is done with the region */
#pragma unroll
    for (int j = 0; j < 8; j++) {
        *(float2 *)&stg[rr * MK_STG + 8 * j + cc] = make_float2(d[4 * j], d[4 * j + 1]);
        *(float2 *)&stg[(rr + 8) * MK_STG + 8 * j + cc] = make_float2(d[4 * j + 2], d[4 * j + 3]);
    }
    if (!(tid & 1)) ssq[tid >> 1] = ss;
    mk_sync_consumers();
    int r0, r1;
    mk_rows(a, t, &r0, &r1);
    const int l = t.layer;
    for (int it = tid; it < a.n * 8; it += 128) {
        const int row = it >> 3, c4 = 4 * (it & 7);
        const float4 v0 = *(const float4 *)&stg[row * MK_STG + c4];
        const float4 v1 = *(const float4 *)&stg[row * MK_STG + 32 + c4];
        const float sr = scale ? rsqrtf(ssq[row] / a.W + a.eps) : 1.f;
        float g[4] = { v0.x * sr, v0.y * sr, v0.z * sr, v0.w * sr };
        float u[4] = { v1.x * sr, v1.y * sr, v1.z * sr, v1.w * sr };
        if (t.op == RTV_MK_QKV) {
            bf16 *yr = a.lq[l] + (size_t)(a.kv_row + row) * a.qkv;
            if (t.tile < a.nh + a.nkv) { /* q and k heads: RoPE on the pairs (i, i + hd / 2) */
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = (int)t.col0 + c4 + e;
                    const float inv_freq = exp2f(-(2.0f * i / MK_HD) * a.log2_theta);
                    float sn, cs;
                    sincosf((float)(a.kv_row + row) * inv_freq, &sn, &cs);
                    const float p = g[e] * cs - u[e] * sn, q = u[e] * cs + g[e] * sn;
                    g[e] = p;
                    u[e] = q;
                }
            }
            rtv_put_bf16x4(yr + r0 + c4, g[0], g[1], g[2], g[3]);
            rtv_put_bf16x4(yr + r1 + c4, u[0], u[1], u[2], u[3]);
        } else if (t.op == RTV_MK_GU) {
            rtv_put_bf16x4(a.ff + (size_t)row * a.F + t.col0 + c4, rtv_gelu_tanh(g[0]) * u[0],
                           rtv_gelu_tanh(g[1]) * u[1], rtv_gelu_tanh(g[2]) * u[2],
                           rtv_gelu_tanh(g[3]) * u[3]);
        } else if (t.nsplit > 1) { /* O, DOWN: the split's partial */
            float *pr = mk_part(a, t, t.split) + row * 64;
            *(float4 *)(pr + c4) = v0;
            *(float4 *)(pr + 32 + c4) = v1;
        } else { /* O, DOWN without splits: x += tile */
            bf16 *xr = a.x + (size_t)row * a.W + t.col0 + c4;
            const uint2 o = __ldcg((const uint2 *)xr), p = __ldcg((const uint2 *)(xr + 32));
            const float2 o0 = __bfloat1622float2(*(const __nv_bfloat162 *)&o.x);
            const float2 o1 = __bfloat1622float2(*(const __nv_bfloat162 *)&o.y);
            const float2 p0 = __bfloat1622float2(*(const __nv_bfloat162 *)&p.x);
            const float2 p1 = __bfloat1622float2(*(const __nv_bfloat162 *)&p.y);
            rtv_put_bf16x4(xr, o0.x + g[0], o0.y + g[1], o1.x + g[2], o1.y + g[3]);
            rtv_put_bf16x4(xr + 32, p0.x + u[0], p0.y + u[1], p1.x + u[2], p1.y + u[3]);
        }
    }
    if (!mk_done(a, t, flag, tix)) return;
    mk_sum_splits(a, t, stg, rbar, ruses);
    mk_reduced(a, t, tix);
}

/* The combine's sums: items (row, 4 columns) of att's head columns, U items per thread at a
 * time with the S (<= SMAX) splits' records of all of them loaded before any sum (records:
 * [split][rstride rows][RECF] at src, in shared memory when smem) */
template <int SMAX, int U> /* not inlined: its own registers, after the attention's are dead */
static __device__ __noinline__ void mk_combine(const mk_args &a, int S, const float *src,
                                                  int rstride, const float *wgt, bf16 *out,
                                                  int ldo, bool smem)
{
    constexpr int CPR = MK_HD / 4; /* float4 columns per row */
    const int items = a.n * CPR;
    for (int i0 = threadIdx.x; i0 < items; i0 += 128 * U) {
        float4 u[U][SMAX];
#pragma unroll
        for (int k = 0; k < U; k++) {
            const int it = i0 + 128 * k;
            if (it >= items) break;
            const int row = it / CPR, c4 = 4 * (it % CPR);
#pragma unroll
            for (int p = 0; p < SMAX; p++)
                if (p < S) {
                    const float4 *q = (const float4 *)(src + ((size_t)p * rstride + row) *
                                                                 MK_RECF + c4);
                    u[k][p] = smem ? *q : __ldcg(q);
                }
        }
#pragma unroll
        for (int k = 0; k < U; k++) {
            const int it = i0 + 128 * k;
            if (it >= items) break;
            const int row = it / CPR, c4 = 4 * (it % CPR);
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int p = 0; p < SMAX; p++)
                if (p < S) {
                    const float w = wgt[row * 16 + p];
                    v.x += w * u[k][p].x;
                    v.y += w * u[k][p].y;
                    v.z += w * u[k][p].z;
                    v.w += w * u[k][p].w;
                }
            rtv_put_bf16x4(out + (size_t)row * ldo + c4, v.x, v.y, v.z, v.w);
        }
    }
}

/* The last split of a head's attention combines the splits' records into att: each row's
 * split weights exp2(max_p - M) / L, then the rows' sums in split order. Where the records fit
 * the region they come in by one bulk copy per split; otherwise each thread loads several
 * items' records of every split at once (mk_combine). Not inlined: its own registers. */
static __device__ __noinline__ void mk_att_combine(const mk_args &a, const rtv_mk_task &t,
                                                   unsigned char *reg, uint64_t *rbar,
                                                   unsigned *ruses)
{
    const int tid = threadIdx.x, h = t.tile, S = t.nsplit, Q = a.nh * MK_HD;
    float *wgt = (float *)reg; /* [64][16] */
    float *rs = wgt + 64 * 16; /* bulk: [S][n][RECF] */
    const unsigned rbytes = (unsigned)a.n * MK_RECF * 4;
    const bool bulk = 64 * 16 * 4 + (size_t)S * rbytes <= MK_ATT;
    if (bulk) {
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        mk_sync_consumers();
        if (tid == 0) {
            mk_proxy_global();
            wg_expect(rbar, S * rbytes);
            for (int p = 0; p < S; p++)
                wg_bulk(rs + (size_t)p * a.n * MK_RECF,
                        a.arec + (size_t)(h * S + p) * 64 * MK_RECF, rbytes, rbar);
        }
        mk_wait_bar(rbar, *ruses & 1, a, t);
        (*ruses)++;
    }
    if (tid < a.n) {
        float mm[RTV_MK_MAXSPLIT], ll[RTV_MK_MAXSPLIT];
#pragma unroll
        for (int p = 0; p < RTV_MK_MAXSPLIT; p++)
            if (p < S) {
                const float *r = bulk ? rs + ((size_t)p * a.n + tid) * MK_RECF + MK_HD
                                      : a.arec + ((size_t)(h * S + p) * 64 + tid) * MK_RECF + MK_HD;
                mm[p] = bulk ? r[0] : __ldcg(r);
                ll[p] = bulk ? r[1] : __ldcg(r + 1);
            }
        float M = -INFINITY, L = 0.f;
#pragma unroll
        for (int p = 0; p < RTV_MK_MAXSPLIT; p++)
            if (p < S) M = fmaxf(M, mm[p]);
#pragma unroll
        for (int p = 0; p < RTV_MK_MAXSPLIT; p++)
            if (p < S) {
                mm[p] = mm[p] == -INFINITY ? 0.f : exp2f(mm[p] - M);
                L += mm[p] * ll[p];
            }
        const float inv = L > 0.f ? 1.f / L : 0.f;
#pragma unroll
        for (int p = 0; p < RTV_MK_MAXSPLIT; p++)
            if (p < S) wgt[tid * 16 + p] = mm[p] * inv;
    }
    mk_sync_consumers();
    const float *src = bulk ? rs : a.arec + (size_t)h * S * 64 * MK_RECF;
    const int rstride = bulk ? a.n : 64; /* rows per split block */
    bf16 *out = a.att + h * MK_HD;
    if (bulk || S > 8)
        mk_combine<RTV_MK_MAXSPLIT, 1>(a, S, src, rstride, wgt, out, Q, bulk);
    else if (S > 4)
        mk_combine<8, 2>(a, S, src, rstride, wgt, out, Q, bulk);
    else if (S > 2)
        mk_combine<4, 4>(a, S, src, rstride, wgt, out, Q, bulk);
    else
        mk_combine<2, 8>(a, S, src, rstride, wgt, out, Q, bulk);
}

/* One attention task (head tile, keys [k0, k0 + nk)) on the consumers. abar: Q, K, V
 * barriers; uses: this CTA's Q loads so far, chunk loads so far (phases). */
static __device__ void mk_attention(const mk_args &a, const rtv_mk_task &t, unsigned char *reg,
                                    uint64_t *abar, unsigned *quses, unsigned *kuses,
                                    unsigned *ruses, int *flag, int tix)
{
    uint64_t *rbar = &abar[3]; /* the combine's bulk copies */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, q4 = lane & 3;
    const int h = t.tile, l = t.layer, kvh = h / (a.nh / a.nkv);
    const int kcol = (a.nh + kvh) * MK_HD, vcol = (a.nh + a.nkv + kvh) * MK_HD;
    const int k0 = (int)t.k0, k1 = k0 + (int)t.nk, nc = ((int)t.nk + MK_KB - 1) / MK_KB;
    unsigned char *qs = reg, *ks = qs + MK_HB * MK_QBOX, *vs = ks + MK_HB * MK_KVBOX;
    /* generic accesses of the region (the last epilogue) before TMA writes into it */
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    mk_sync_consumers();
    if (tid == 0) {
        /* a split of prefix keys only (written before this launch; its boxes end at its own
         * keys, see entry_build) loads K and V before waiting for q */
        const int early = k1 <= a.kv_row;
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1) {
                mk_wait_ready(a, t);
                mk_proxy_global();
                wg_expect(&abar[0], MK_HB * MK_QBOX);
                for (int b = 0; b < MK_HB; b++)
                    wg_tma(qs + b * MK_QBOX, &a.tlq[l][0], h * MK_HD + 64 * b, a.kv_row,
                           &abar[0]);
            }
            if (pass == !early) {
                wg_expect(&abar[1], MK_HB * MK_KVBOX);
                for (int b = 0; b < MK_HB; b++)
                    wg_tma(ks + b * MK_KVBOX, &a.tlq[l][1], kcol + 64 * b, k0, &abar[1]);
                wg_expect(&abar[2], MK_HB * MK_KVBOX);
                for (int b = 0; b < MK_HB; b++)
                    wg_tma(vs + b * MK_KVBOX, &a.tlq[l][1], vcol + 64 * b, k0, &abar[2]);
            }
        }
    }
    const int r0 = 16 * warp + (lane >> 2), r1 = r0 + 8;
    const int n_k = a.kv_row + a.n;
    const int e0 = min(k1, r0 < a.limit_rows ? a.limit_keys : n_k);
    const int e1 = min(k1, r1 < a.limit_rows ? a.limit_keys : n_k);
    float o[MK_HB * 32];
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    mk_wait_bar(&abar[0], *quses & 1, a, t);
    (*quses)++;
    mk_mark(a, tix, 1);
    for (int c = 0; c < nc; c++) {
        const int kb = k0 + c * MK_KB;
        float s[40];
        mk_wait_bar(&abar[1], *kuses & 1, a, t);
        wg_fence();
#pragma unroll
        for (int b = 0; b < MK_HB; b++) {
            const uint64_t dq = wg_desc(qs + b * MK_QBOX), dk = wg_desc(ks + b * MK_KVBOX);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_mma_s80(s, dq + 2 * kk, dk + 2 * kk, b > 0 || kk > 0);
        }
        wg_commit();
        wg_wait_group<0>();
        mk_sync_consumers(); /* every warp's S is done with the K chunk */
        if (tid == 0 && c + 1 < nc) {
            wg_expect(&abar[1], MK_HB * MK_KVBOX);
            for (int b = 0; b < MK_HB; b++)
                wg_tma(ks + b * MK_KVBOX, &a.tlq[l][1], kcol + 64 * b, kb + MK_KB, &abar[1]);
        }
        uint32_t pa[20];
        wg_softmax80<MK_HB * 32>(s, kb, q4, e0, e1, a.scale2, &m0, &m1, &l0, &l1, o,
                                 c > 0, pa);
        mk_wait_bar(&abar[2], *kuses & 1, a, t);
        (*kuses)++;
        wg_fence();
#pragma unroll
        for (int u = 0; u < MK_KB / 16; u++)
#pragma unroll
            for (int hh = 0; hh < MK_HB / 2; hh++)
                wg_mma_pv128(o + 64 * hh, pa + 4 * u,
                          wg_desc_n(vs + 2 * hh * MK_KVBOX + u * 2048, MK_KVBOX), c > 0 || u > 0);
        wg_commit();
        wg_wait_group<0>();
        mk_sync_consumers(); /* every warp's P.V is done with the V chunk */
        if (tid == 0 && c + 1 < nc) {
            wg_expect(&abar[2], MK_HB * MK_KVBOX);
            for (int b = 0; b < MK_HB; b++)
                wg_tma(vs + b * MK_KVBOX, &a.tlq[l][1], vcol + 64 * b, kb + MK_KB, &abar[2]);
        }
    }
    l0 = rtv_quad_sum(l0);
    l1 = rtv_quad_sum(l1);
    const int S = t.nsplit, Q = a.nh * MK_HD;
    if (S == 1) {
        const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
        for (int hh = 0; hh < MK_HB / 2; hh++)
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float *d = o + 64 * hh + 4 * j;
                const int col = h * MK_HD + 128 * hh + 8 * j + 2 * q4;
                if (r0 < a.n)
                    *(uint32_t *)(a.att + (size_t)r0 * Q + col) =
                        rtv_pack_bf16x2(d[0] * i0, d[1] * i0);
                if (r1 < a.n)
                    *(uint32_t *)(a.att + (size_t)r1 * Q + col) =
                        rtv_pack_bf16x2(d[2] * i1, d[3] * i1);
            }
        mk_done(a, t, flag, tix);
        return;
    }
    float *rec = a.arec + ((size_t)(h * S + t.split) * 64) * MK_RECF;
#pragma unroll
    for (int hh = 0; hh < MK_HB / 2; hh++)
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const float *d = o + 64 * hh + 4 * j;
            const int col = 128 * hh + 8 * j + 2 * q4;
            *(float2 *)(rec + (size_t)r0 * MK_RECF + col) = make_float2(d[0], d[1]);
            *(float2 *)(rec + (size_t)r1 * MK_RECF + col) = make_float2(d[2], d[3]);
        }
    if (q4 == 0) {
        *(float2 *)(rec + (size_t)r0 * MK_RECF + MK_HD) = make_float2(m0, l0);
        *(float2 *)(rec + (size_t)r1 * MK_RECF + MK_HD) = make_float2(m1, l1);
    }
    if (!mk_done(a, t, flag, tix)) return;
    mk_att_combine(a, t, reg, rbar, ruses);
    mk_reduced(a, t, tix);
}
#endif

static __global__ void __launch_bounds__(MK_THREADS, 1) mk_k(const __grid_constant__ mk_args a)
{
#ifdef WG_KERNEL
    extern __shared__ __align__(1024) unsigned char mk_raw[];
    unsigned char *wring = mk_raw + ((1024 - (wg_saddr(mk_raw) & 1023)) & 1023);
    unsigned char *aring = wring + (size_t)MK_NW * MK_STAGE;
    unsigned char *reg = aring + (size_t)MK_NA * MK_STAGE; /* the ATT region / staged tile */
    /* weight ring full / empty, activation ring full / empty; attention Q, K, V, sums */
    __shared__ __align__(8) uint64_t bars[2 * MK_NW + 2 * MK_NA], abar[4];
    __shared__ int flag;
    const int tid = threadIdx.x;
    const int first = a.cta_first[blockIdx.x], last = a.cta_first[blockIdx.x + 1];
    if (tid == 0) {
        for (int i = 0; i < MK_NW; i++) {
            wg_bar_init(&bars[i], 1);
            wg_bar_init(&bars[MK_NW + i], 4); /* empty: one arrival per consumer warp */
        }
        for (int i = 0; i < MK_NA; i++) {
            wg_bar_init(&bars[2 * MK_NW + i], 1);
            wg_bar_init(&bars[2 * MK_NW + MK_NA + i], 4);
        }
        for (int i = 0; i < 4; i++) wg_bar_init(&abar[i], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (tid >= 128) {
        if (tid == 128)
            mk_produce(a, first, last, wring, aring, bars, bars + MK_NW, bars + 2 * MK_NW,
                       bars + 2 * MK_NW + MK_NA);
        return;
    }
    unsigned seq = 0, quses = 0, kuses = 0, ruses = 0;
    for (int i = first; i < last; i++) {
        const int tix = a.cta_task[i];
        const rtv_mk_task t = a.task[tix];
        mk_mark(a, tix, 0);
        if (t.op == RTV_MK_ATT)
            mk_attention(a, t, reg, abar, &quses, &kuses, &ruses, &flag, tix);
        else
            mk_gemm(a, t, wring, aring, bars, &seq, (float *)reg, &abar[3], &ruses, &flag, tix);
    }
#else
    (void)a; /* not an sm_90a build: never launched (mk_ok is 0) */
#endif
}

/* ---- host side ---- */

#define MK_CACHE 8

struct mk_entry {
    int valid;
    int declined;          /* the kernel cannot run this call's shape: the model's layers do */
    rtv_expert_step key;   /* dims and pointers (the arrays' contents below) */
    const void *ptrs[5][MK_MAXL];
    rtv_mk_plan plan;
    void *dev;             /* tasks, CTA offsets and lists */
    float *part, *arec;
    unsigned *ctr;
    bf16 *att, *ff;
    mk_args *args;         /* host copy of the launch parameters */
    int ctas;
};

struct mk_cache {
    mk_entry e[MK_CACHE];
    int next;
    int trace_on;                 /* RTV_MK_TRACE=1 */
    unsigned long long *trace;    /* the last launch's marks (sized for the largest plan) */
    int trace_cap;                /* tasks it holds */
    const mk_entry *last;         /* the entry launched last (its plan reads the trace) */
    int last_ops;                 /* rtv_cuda_mk_tune: ops of the last layer (0: all) */
    int akeys;                    /* RTV_MK_AKEYS: 80-key chunks per attention split (>= 1) */
};

static void entry_free(mk_entry *e) /* also a partly built one (fields zero or owned) */
{
    rtv_mk_plan_free(&e->plan);
    cudaFree(e->dev);
    cudaFree(e->part);
    cudaFree(e->arec);
    cudaFree(e->ctr);
    cudaFree(e->att);
    cudaFree(e->ff);
    free(e->args);
    memset(e, 0, sizeof(*e));
}

static const char *const mk_op_names[RTV_MK_NOPS] = { "qkv", "attention", "o", "gate_up",
                                                      "down" };

/* RTV_MK_TRACE=1: the last launch, per op: mean us from a task's start to its inputs in
 * shared memory, to its work done, to its output complete; then per layer the span of each op
 * (first task start .. last output) from the launch's first mark. */
static void mk_report(rtv_stream *s, FILE *f)
{
    mk_cache *c = (mk_cache *)s->mk_cache;
    if (!c || !c->trace || !c->last || !c->last->valid) return;
    const rtv_mk_plan *p = &c->last->plan;
    const size_t n = (size_t)p->ntask * MK_MARKS;
    unsigned long long *h = (unsigned long long *)malloc(n * sizeof(*h));
    if (!h) return;
    if (cudaStreamSynchronize(s->s) != cudaSuccess ||
        cudaMemcpy(h, c->trace, n * sizeof(*h), cudaMemcpyDeviceToHost) != cudaSuccess) {
        cudaGetLastError();
        free(h);
        return;
    }
    unsigned long long t0 = ~0ull, t1 = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i] && h[i] < t0) t0 = h[i];
        if (h[i] > t1) t1 = h[i];
    }
    fprintf(f, "expert kernel, last launch (rows %d, %d layers, %d CTAs, %d tasks): %.1f us\n",
            p->d.n, p->d.layers, p->d.ctas, p->ntask, (double)(t1 - t0) / 1000.0);
    fprintf(f, "  op          tasks  to inputs  work  to output (us, mean)\n");
    for (int op = 0; op < RTV_MK_NOPS; op++) {
        double d[3] = { 0, 0, 0 };
        int cnt = 0;
        for (int i = 0; i < p->ntask; i++) {
            if (p->task[i].op != op) continue;
            const unsigned long long *m = h + (size_t)i * MK_MARKS;
            for (int k = 0; k < 3; k++) d[k] += (double)(m[k + 1] - m[k]) / 1000.0;
            cnt++;
        }
        if (cnt)
            fprintf(f, "  %-10s %6d %10.2f %5.2f %10.2f\n", mk_op_names[op], cnt, d[0] / cnt,
                    d[1] / cnt, d[2] / cnt);
    }
    fprintf(f, "  layer: op span from first start to last output, us from the launch's start\n");
    for (int l = 0; l < p->d.layers; l++) {
        if (l > 1 && l < p->d.layers - 1) continue; /* the first two and the last */
        fprintf(f, "  %5d:", l);
        for (int op = 0; op < RTV_MK_NOPS; op++) {
            unsigned long long a = ~0ull, b = 0;
            for (int i = 0; i < p->ntask; i++) {
                if (p->task[i].op != op || p->task[i].layer != l) continue;
                const unsigned long long *m = h + (size_t)i * MK_MARKS;
                if (m[0] < a) a = m[0];
                if (m[3] > b) b = m[3];
            }
            if (b)
                fprintf(f, " %s %.1f-%.1f", mk_op_names[op], (double)(a - t0) / 1000.0,
                        (double)(b - t0) / 1000.0);
        }
        fputc('\n', f);
    }
    free(h);
}

void rtv_cuda_mk_free(rtv_stream *s)
{
    mk_cache *c = (mk_cache *)s->mk_cache;
    if (!c) return;
    if (c->trace_on) mk_report(s, stderr);
    for (int i = 0; i < MK_CACHE; i++) entry_free(&c->e[i]);
    cudaFree(c->trace);
    free(c);
    s->mk_cache = NULL;
}

int rtv_cuda_mk_init(rtv_stream *s)
{
    int dev = 0, major = 0, minor = 0, coop = 0;
    s->mk_ok = 0;
    s->mk_cache = NULL;
    s->mk_use = rtv_cuda_env_switch("RTV_MK", 0); /* opt-in until it wins (see top) */
    if (!s->mk_use) return RTV_OK;
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CU_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    CU_TRY(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
    if (major != 9 || minor != 0 || !coop) return RTV_OK;
    s->mk_encode = rtv_cuda_tmap_encoder();
    if (!s->mk_encode) return RTV_OK;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, mk_k) != cudaSuccess) { /* no sm_90a image */
        cudaGetLastError();
        return RTV_OK;
    }
    CU_TRY(cudaFuncSetAttribute(mk_k, cudaFuncAttributeMaxDynamicSharedMemorySize, MK_SMEM));
    mk_cache *c = (mk_cache *)calloc(1, sizeof(mk_cache));
    if (!c) return rtv_fail(RTV_E_NOMEM, "expert kernel: out of host memory");
    c->trace_on = rtv_cuda_env_switch("RTV_MK_TRACE", 0);
    /* RTV_MK_AKEYS=k: attention splits of k 80-key chunks (fewer splits, less to combine,
     * longer loops; more where the keys need over 16 splits). Default 2, the timing model's
     * choice (tests/kernels/mk_sim.c: ~5.0 against ~5.5 ms per cycle with 1) until measured */
    const char *ak = getenv("RTV_MK_AKEYS");
    c->akeys = ak && ak[0] >= '1' && ak[0] <= '8' && !ak[1] ? ak[0] - '0' : 2;
    if (ak && c->akeys != ak[0] - '0')
        fprintf(stderr, "rtvla: RTV_MK_AKEYS=%s: expected 1..8, using 2\n", ak);
    s->mk_cache = c;
    s->mk_ok = 1;
    return RTV_OK;
}

static int same_key(const mk_entry *e, const rtv_expert_step *x)
{
    const rtv_expert_step *k = &e->key;
    if (k->rows != x->rows || k->dim != x->dim || k->mlp != x->mlp || k->heads != x->heads ||
        k->kv_heads != x->kv_heads || k->head_dim != x->head_dim || k->layers != x->layers ||
        k->kv_row != x->kv_row || k->limit_rows != x->limit_rows ||
        k->limit_keys != x->limit_keys || k->eps != x->eps || k->theta != x->theta ||
        k->x != x->x)
        return 0;
    for (int l = 0; l < x->layers; l++)
        if (e->ptrs[0][l] != x->lq[l] || e->ptrs[1][l] != x->w_qkv[l] ||
            e->ptrs[2][l] != x->w_o[l] || e->ptrs[3][l] != x->w_gu[l] ||
            e->ptrs[4][l] != x->w_down[l])
            return 0;
    return 1;
}

/* e now answers calls like x (the pointer arrays' contents are copied) */
static void entry_key(mk_entry *e, const rtv_expert_step *x)
{
    e->key = *x;
    e->key.lq = NULL; /* the caller's arrays: their contents are kept in ptrs */
    e->key.w_qkv = e->key.w_o = e->key.w_gu = e->key.w_down = NULL;
    for (int l = 0; l < x->layers; l++) {
        e->ptrs[0][l] = x->lq[l];
        e->ptrs[1][l] = x->w_qkv[l];
        e->ptrs[2][l] = x->w_o[l];
        e->ptrs[3][l] = x->w_gu[l];
        e->ptrs[4][l] = x->w_down[l];
    }
    e->valid = 1;
}

/* the plan, its device copy, the buffers and the launch parameters for x (first call only) */
static int entry_build(rtv_stream *s, mk_entry *e, const rtv_expert_step *x)
{
    const int QKV = (x->heads + 2 * x->kv_heads) * x->head_dim, Q = x->heads * x->head_dim;
    int ctas = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    if (ctas <= 0) {
        int dev = 0;
        CU_TRY(cudaGetDevice(&dev));
        CU_TRY(cudaDeviceGetAttribute(&ctas, cudaDevAttrMultiProcessorCount, dev));
    }
    mk_cache *c = (mk_cache *)s->mk_cache;
    rtv_mk_dims d = { x->rows, x->dim, x->mlp, x->heads, x->kv_heads, x->head_dim, x->layers,
                      x->kv_row, x->limit_rows, x->limit_keys, ctas, c->last_ops };
    const int keys = x->kv_row + x->rows;
    /* key splits of whole 80-key chunks: a split's K/V boxes then hold only its own keys (or
     * rows past the buffer, read as zeros), never rows another task may be writing, whose
     * stale bits could be NaN (0 x NaN in P.V) */
    rtv_mk_shape sh = rtv_mk_shape_cuda(keys, c->akeys); /* RTV_MK_AKEYS: chunks per split */
    char err[256];
    /* the planner's K splits for O and DOWN, fewer where a tile's partials (splits x rows x
     * 64 floats) would not fit the region its reduction gathers them in (mk_sum_splits) */
    for (int pass = 0; pass < 2; pass++) {
        if (rtv_mk_plan_build(&e->plan, &d, &sh, err, sizeof(err)))
            return rtv_fail(RTV_E_ARG, "expert kernel: %s", err);
        int os = e->plan.sh.o_splits, ds = e->plan.sh.d_splits;
        while (os > 1 && (size_t)os * x->rows * 256 > MK_ATT) os /= 2;
        while (ds > 1 && (size_t)ds * x->rows * 256 > MK_ATT) ds /= 2;
        if (os == e->plan.sh.o_splits && ds == e->plan.sh.d_splits) break;
        sh.o_splits = os;
        sh.d_splits = ds;
        rtv_mk_plan_free(&e->plan);
    }
    const rtv_mk_plan *p = &e->plan;
    if (!p->task || (Q / p->sh.o_splits) % 64 || (x->mlp / p->sh.d_splits) % 64 ||
        (size_t)p->sh.o_splits * x->rows * 256 > MK_ATT ||
        (size_t)p->sh.d_splits * x->rows * 256 > MK_ATT) {
        rtv_mk_plan_free(&e->plan);
        return RTV_E_UNSUPPORTED; /* K ranges of whole 64-wide chunks, partials that fit */
    }
    const size_t tb = (size_t)p->ntask * sizeof(rtv_mk_task);
    const size_t fb = (size_t)(ctas + 1) * sizeof(int), lb = (size_t)p->ntask * sizeof(int);
    char *dev = NULL;
    CU_TRY(cudaMalloc((void **)&dev, tb + fb + lb));
    e->dev = dev;
    CU_TRY(cudaMemcpy(dev, p->task, tb, cudaMemcpyHostToDevice));
    CU_TRY(cudaMemcpy(dev + tb, p->cta_first, fb, cudaMemcpyHostToDevice));
    CU_TRY(cudaMemcpy(dev + tb + fb, p->cta_task, lb, cudaMemcpyHostToDevice));
    CU_TRY(cudaMalloc((void **)&e->part,
                      (size_t)(x->dim / 64) * RTV_MK_MAXSPLIT * 64 * 64 * sizeof(float)));
    CU_TRY(cudaMalloc((void **)&e->arec,
                      (size_t)x->heads * p->sh.a_splits * 64 * MK_RECF * sizeof(float)));
    CU_TRY(cudaMalloc((void **)&e->ctr, (size_t)p->nctr * sizeof(unsigned)));
    CU_TRY(cudaMalloc((void **)&e->att, (size_t)64 * Q * sizeof(bf16)));
    CU_TRY(cudaMalloc((void **)&e->ff, (size_t)64 * x->mlp * sizeof(bf16)));
    mk_args *a = (mk_args *)aligned_alloc(64, (sizeof(mk_args) + 63) / 64 * 64);
    if (!a) return rtv_fail(RTV_E_NOMEM, "expert kernel: out of host memory");
    memset(a, 0, sizeof(*a));
    e->args = a;
    void *enc = s->mk_encode;
    int bad = 0;
    for (int l = 0; l < x->layers; l++) {
        bad |= rtv_cuda_tmap_bf16(enc, &a->tw[l][0], x->w_qkv[l], QKV, x->dim, x->dim, 32);
        bad |= rtv_cuda_tmap_bf16(enc, &a->tw[l][1], x->w_o[l], x->dim, Q, Q, 32);
        bad |= rtv_cuda_tmap_bf16(enc, &a->tw[l][2], x->w_gu[l], 2 * x->mlp, x->dim, x->dim, 32);
        bad |= rtv_cuda_tmap_bf16(enc, &a->tw[l][3], x->w_down[l], x->dim, x->mlp, x->mlp, 32);
        bad |= rtv_cuda_tmap_bf16(enc, &a->tlq[l][0], x->lq[l], keys, QKV, QKV, 64);
        bad |= rtv_cuda_tmap_bf16(enc, &a->tlq[l][1], x->lq[l], keys, QKV, QKV, MK_KB);
        a->lq[l] = (bf16 *)x->lq[l];
    }
    bad |= rtv_cuda_tmap_bf16(enc, &a->tx, x->x, x->rows, x->dim, x->dim, 64);
    bad |= rtv_cuda_tmap_bf16(enc, &a->tatt, e->att, x->rows, Q, Q, 64);
    bad |= rtv_cuda_tmap_bf16(enc, &a->tff, e->ff, x->rows, x->mlp, x->mlp, 64);
    if (bad) return rtv_fail(RTV_E_DEVICE, "expert kernel: a tensor map was refused");
    a->x = (bf16 *)x->x;
    a->att = e->att;
    a->ff = e->ff;
    a->part = e->part;
    a->arec = e->arec;
    a->ctr = e->ctr;
    /* one trace buffer for every plan, never reallocated (captured graphs hold its address);
     * a plan larger than it runs untraced */
    if (c->trace_on && !c->trace) {
        c->trace_cap = p->ntask > 16384 ? p->ntask : 16384;
        CU_TRY(cudaMalloc((void **)&c->trace, (size_t)c->trace_cap * MK_MARKS * 8));
    }
    a->trace = c->trace && p->ntask <= c->trace_cap ? c->trace : NULL;
    a->task = (const rtv_mk_task *)dev;
    a->cta_first = (const int *)(dev + tb);
    a->cta_task = (const int *)(dev + tb + fb);
    a->n = x->rows;
    a->W = x->dim;
    a->F = x->mlp;
    a->nh = x->heads;
    a->nkv = x->kv_heads;
    a->kv_row = x->kv_row;
    a->limit_rows = x->limit_rows;
    a->limit_keys = x->limit_keys;
    a->qkv = QKV;
    a->a_splits = p->sh.a_splits;
    rtv_mk_ctrs cl;
    rtv_mk_ctr_layout(&p->d, &p->sh, &cl);
    const unsigned fam[8] = { cl.qh, cl.ag, cl.aa, cl.od, cl.oa, cl.gg, cl.dd, cl.da };
    memcpy(a->ctr_fam, fam, sizeof(fam));
    a->ctr_per_layer = cl.per_layer;
    a->eps = x->eps;
    a->log2_theta = log2f(x->theta);
    a->scale2 = (float)(1.4426950408889634 / sqrt((double)x->head_dim));
    e->ctas = ctas;
    entry_key(e, x);
    return RTV_OK;
}

extern "C" int rtv_cuda_mk_usable(rtv_stream *s) { return s->mk_use && s->mk_ok; }

extern "C" int rtv_cuda_mk_tune(rtv_stream *s, int last_ops, int akeys)
{
    mk_cache *c = (mk_cache *)s->mk_cache;
    if (!c || last_ops < 0 || last_ops > RTV_MK_NOPS || akeys < 0 || akeys > 8) return 0;
    if (cudaStreamSynchronize(s->s) != cudaSuccess) return 0;
    for (int i = 0; i < MK_CACHE; i++) entry_free(&c->e[i]); /* plans for the new setting */
    c->last = NULL;
    c->last_ops = last_ops;
    if (akeys) c->akeys = akeys;
    return 1;
}

int rtv_cuda_expert_layers(rtv_stream *s, const rtv_expert_step *x)
{
    mk_cache *c = (mk_cache *)s->mk_cache;
    if (!s->mk_use || !s->mk_ok || !c) return RTV_E_UNSUPPORTED;
    /* what the kernel is built for: pi0's head_dim, rows in one 64-row tile, whole 64-wide
     * chunks and 32-pair RoPE groups, 16-byte aligned rows */
    const int QKV = (x->heads + 2 * x->kv_heads) * x->head_dim;
    if (x->head_dim != MK_HD || x->rows < 1 || x->rows > 64 || x->layers < 1 ||
        x->layers > MK_MAXL || x->dim % 64 || x->mlp % 64 || x->heads % x->kv_heads ||
        QKV % 8 || x->limit_rows > 64)
        return RTV_E_UNSUPPORTED;
    mk_entry *e = NULL;
    for (int i = 0; i < MK_CACHE && !e; i++)
        if (c->e[i].valid && same_key(&c->e[i], x)) e = &c->e[i];
    if (!e) {
        if (s->capturing) return RTV_E_UNSUPPORTED; /* built by the eager call before */
        e = &c->e[c->next];
        c->next = (c->next + 1) % MK_CACHE;
        entry_free(e);
        const int st = entry_build(s, e, x);
        if (st) {
            entry_free(e);
            if (st == RTV_E_UNSUPPORTED) { /* remembered: no plan is built per call */
                entry_key(e, x);
                e->declined = 1;
            }
            return st;
        }
    }
    if (e->declined) return RTV_E_UNSUPPORTED;
    CU_TRY(cudaMemsetAsync(e->ctr, 0, (size_t)e->plan.nctr * sizeof(unsigned), s->s));
    if (e->args->trace)
        c->last = e;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1; /* every CTA resident at once: they wait on each other */
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)e->ctas);
    cfg.blockDim = dim3(MK_THREADS);
    cfg.dynamicSmemBytes = MK_SMEM;
    cfg.stream = s->s;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    CU_TRY(cudaLaunchKernelEx(&cfg, mk_k, *e->args));
    LAUNCH_CHECK("mk_k");
    return RTV_OK;
}
