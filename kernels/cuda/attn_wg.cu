/* kernels/cuda/attn_wg.cu — attention for head_dim 128 / 256 over long keys on Hopper's
 * asynchronous tensor cores (wgmma), one launch: the action expert's 50-51 rows x 8 heads over
 * the prefix KV cache plus its own keys (pi0: 563 keys, one KV head), where the cuBLAS path
 * runs three kernels (QK GEMM, softmax, PV GEMM: ~11.6 us per layer and step on the H100,
 * none of which lets the next kernel start early). sm_90a only (the wgemm.cu archive), on by
 * default there for n_q <= 64; elsewhere, and with RTV_WG_ATTN=0, the cuBLAS path runs.
 *
 * Why this is not the flash-decoding kernels that lost three times (kernels/README): those
 * were mma.sync chains of L2 round trips at one or two warps per scheduler. Here a CTA's
 * operands arrive by three TMA copies (Q, K chunk, V chunk) and its whole S = Q K^T is 16
 * wgmma instructions, P.V 10: the CTA is a handful of asynchronous operations, not a chain.
 *
 * Grid (heads x row blocks of 64 query rows, key splits); the splits of a (head, row block)
 * form a thread-block cluster. One warpgroup per CTA; thread 0 issues the copies. A split
 * walks its keys in chunks of WA_KB (one chunk for pi0's 563 keys over 8 splits):
 *   S = Q K^T (wgmma m64n80k16, both operands from shared memory, K-major);
 *   limit rule and key range masked to -inf, scaled, online softmax in registers (a row's
 *   max and sum over its quad of lanes), P rounded to bf16 in the accumulators' layout, which
 *   is wgmma's register A-fragment layout;
 *   O += P V (wgmma m64n128k16, P from registers, V from shared memory N-major).
 * The splits then combine in the cluster: each sends each of its rows, unscaled with its max
 * and sum, to the row's owner (row % splits == rank) by one bulk copy completing on the
 * owner's mbarrier; the owner scales and sums the splits' rows in split order
 * (deterministic) from its own shared memory and divides by the summed row sums.
 * RTV_WG_ATTN_PUSH=0 combines over DSMEM instead: each split publishes its row maxima, scales
 * its O to the cluster's maximum and stages it, and the owners pull the staged rows.
 * Measured (H100, 2026-12-07): action cycle 8.53 ms against 8.81 on the cuBLAS path (pull);
 * push 7.80 against pull 8.01 in a later lease; the kernel ~11.8k cycles after its
 * dependency wait, ~6.8k of them the combine (kernels/README).
 * Numerics against the cuBLAS path: the same fp32 logits and bf16 P.V operands, but P is
 * rounded before normalization (as flash attention does), not after. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "tmap.h"
#include "wgmma.cuh"
#include "wg_softmax.cuh"

#define WA_KB 80        /* keys per chunk: the S wgmma's N */
#define WA_MAXSPLIT 8   /* key splits (a portable cluster) */
#define WA_THREADS 128  /* one warpgroup */
#define WA_ITEMS 4      /* combine items per thread whose remote loads go out together */
#define WA_QBOX 8192    /* bytes of a Q box: 64 rows x 64 head_dim */
#define WA_KVBOX (WA_KB * 128) /* bytes of a K or V box: WA_KB rows x 64 head_dim */

struct wa_args {
    CUtensorMap tq, tk, tv; /* q: box 64 x 64 rows; k, v: box 64 x WA_KB rows */
    bf16 *out;
    int ldo, n_q, n_k, heads, group, per, limit_rows, limit_keys;
    float scale2; /* scale * log2(e): logits in base 2 */
    long long *trace; /* non-NULL: per CTA WA_MARKS clock64 values (RTV_WG_ATTN_TRACE=1) */
};

/* phase marks of the trace (thread 0 of each CTA; chunk 0's for the loop's inner marks) */
#define WA_MARKS 12
static const char *const wa_mark_names[WA_MARKS] = {
    "start", "dep wait", "Q+K in", "S", "softmax", "V in", "P.V", "loop end",
    "exchange 1", /* pull: row maxima exchanged; push: records staged, peers ready */
    "exchange 2", /* pull: O staged, cluster barrier; push: our records have arrived */
    "combine", "end"
};
#define WA_MARK(i)                                                                          \
    do {                                                                                    \
        if (a.trace && tid == 0)                                                            \
            a.trace[(size_t)(blockIdx.y * gridDim.x + blockIdx.x) * WA_MARKS + (i)] = clock64(); \
    } while (0)

/* shared memory: Q boxes, K boxes, V boxes (the staged O after the loop reuses K and V), row
 * maxima and scaled sums, three barriers; + 1024 for the swizzle's alignment */
static size_t wa_smem(int hb) { return 1024 + (size_t)hb * (WA_QBOX + 2 * WA_KVBOX) + 512 + 64; }
/* push (the default): a split's row goes to its owner as one record (O in fp32, then the row's
 * maximum and sum, padded: head_dim + 8 floats), and the owner keeps a receive area of
 * splits x owned rows records (at most 71: 8 x 8, 7 x 10, 6 x 11, ...) */
static int wa_rec(int hb) { return (64 * hb + 8) * 4; }
static size_t wa_smem_push(int hb) { return wa_smem(hb) + (size_t)71 * wa_rec(hb); }


#ifdef WG_KERNEL
/* the splits' barrier: the cluster's, or the CTA's when there is one split */
static __device__ __forceinline__ void wa_sync(int nsplit)
{
    if (nsplit > 1)
        wg_cluster_sync();
    else
        __syncthreads();
}
static __device__ __forceinline__ float wa_ld(const float *p, int rank, int nsplit)
{
    return nsplit > 1 ? wg_ld_peer(p, rank) : *p;
}
static __device__ __forceinline__ float4 wa_ld4(const float *p, int rank, int nsplit)
{
    return nsplit > 1 ? wg_ld_peer4(p, rank) : *(const float4 *)p;
}
#endif

/* HB: head_dim / 64 (2 or 4); PUSH: the splits (more than one) send their rows to the owners
 * by bulk copies instead of the owners pulling them */
template <int HB, bool PUSH>
static __global__ void __launch_bounds__(WA_THREADS, 1) attn_wg_k(const __grid_constant__ wa_args a)
{
#ifdef WG_KERNEL
    constexpr int HD = 64 * HB, OS = HD + 8; /* OS: fp32 row stride of the staged O */
    constexpr int RECF = HD + 8;             /* PUSH: floats per record (O, max, sum, pad) */
    extern __shared__ __align__(1024) unsigned char wa_raw[];
    unsigned char *sh = wa_raw + ((1024 - (wg_saddr(wa_raw) & 1023)) & 1023);
    unsigned char *qs = sh, *ks = qs + HB * WA_QBOX, *vs = ks + HB * WA_KVBOX;
    float *st_m = (float *)(vs + HB * WA_KVBOX), *st_l = st_m + 64;
    uint64_t *bar = (uint64_t *)(st_l + 64); /* Q, K chunk, V chunk; PUSH: records in */
    float *rcv = (float *)(bar + 8);         /* PUSH: [split][owned slot][RECF] */
    float *os = (float *)ks;                 /* [64][OS] after the loop (reuses K and V) */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q4 = lane & 3;
    const int h = blockIdx.x % a.heads, rb = blockIdx.x / a.heads;
    const int rank = blockIdx.y, nsplit = gridDim.y;
    const int kcol = (h / a.group) * HD; /* the kv head's columns */
    const int k0 = rank * a.per, k1 = min(a.n_k, k0 + a.per);
    const int nc = k1 > k0 ? (k1 - k0 + WA_KB - 1) / WA_KB : 0;
    /* the rows this CTA owns (rank, rank + nsplit, ... below 64 and n_q) */
    const int lim = min(64, a.n_q - rb * 64);
    const int owned = rank < lim ? (lim - rank + nsplit - 1) / nsplit : 0;
    const int slots = (64 + nsplit - 1) / nsplit; /* PUSH: records per split in rcv */
    WA_MARK(0);
    rtv_griddep_launch(); /* the next kernel may place its CTAs and stream its weights */
    if (tid == 0) {
        for (int i = 0; i < 3; i++) wg_bar_init(&bar[i], 1);
        if (PUSH) { /* completes when every split's records of our rows have landed */
            wg_bar_init(&bar[3], 1);
            wg_expect(&bar[3], (unsigned)(nsplit * owned * RECF * 4));
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        rtv_griddep_wait(); /* q, k and v are earlier kernels' output */
        WA_MARK(1);
        wg_expect(&bar[0], HB * WA_QBOX);
        for (int b = 0; b < HB; b++)
            wg_tma(qs + b * WA_QBOX, &a.tq, h * HD + 64 * b, rb * 64, &bar[0]);
        if (nc > 0) {
            wg_expect(&bar[1], HB * WA_KVBOX);
            for (int b = 0; b < HB; b++)
                wg_tma(ks + b * WA_KVBOX, &a.tk, kcol + 64 * b, k0, &bar[1]);
            wg_expect(&bar[2], HB * WA_KVBOX);
            for (int b = 0; b < HB; b++)
                wg_tma(vs + b * WA_KVBOX, &a.tv, kcol + 64 * b, k0, &bar[2]);
        }
    }
    __syncthreads(); /* the barriers are initialized */
    /* PUSH: peers may copy into us once they have waited on this; the wait comes after the
     * main loop, so the cluster barrier costs nothing on the critical path */
    if (PUSH) asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");

    /* this thread's rows of the accumulators: r0 and r0 + 8 (tokens t0, t1), and where their
     * keys end (the split's end, or the limit rule's) */
    const int r0 = 16 * warp + g, r1 = r0 + 8, t0 = rb * 64 + r0, t1 = t0 + 8;
    const int e0 = min(k1, t0 < a.limit_rows ? a.limit_keys : a.n_k);
    const int e1 = min(k1, t1 < a.limit_rows ? a.limit_keys : a.n_k);
    float o[HB * 32];
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    if (nc == 0) /* (the host gives every split keys) */
#pragma unroll
        for (int i = 0; i < HB * 32; i++) o[i] = 0.f;
    wg_wait(&bar[0], 0); /* also before leaving: no copy may land after we exit */
    for (int c = 0; c < nc; c++) {
        const int kb = k0 + c * WA_KB;
        float s[40];
        wg_wait(&bar[1], c & 1);
        if (c == 0) WA_MARK(2);
        wg_fence();
#pragma unroll
        for (int b = 0; b < HB; b++) {
            const uint64_t dq = wg_desc(qs + b * WA_QBOX), dk = wg_desc(ks + b * WA_KVBOX);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_mma_s80(s, dq + 2 * kk, dk + 2 * kk, b > 0 || kk > 0);
        }
        wg_commit();
        wg_wait_group<0>();
        if (c == 0) WA_MARK(3);
        __syncthreads(); /* every warp's S is done with the K chunk: the next may come in */
        if (tid == 0 && c + 1 < nc) {
            wg_expect(&bar[1], HB * WA_KVBOX);
            for (int b = 0; b < HB; b++)
                wg_tma(ks + b * WA_KVBOX, &a.tk, kcol + 64 * b, kb + WA_KB, &bar[1]);
        }
        /* mask, scale, online softmax; P as wgmma A fragments */
        uint32_t pa[20];
        wg_softmax80<HB * 32>(s, kb, q4, e0, e1, a.scale2, &m0, &m1, &l0, &l1, o, c > 0, pa);
        if (c == 0) WA_MARK(4);
        wg_wait(&bar[2], c & 1);
        if (c == 0) WA_MARK(5);
        wg_fence();
#pragma unroll
        for (int t = 0; t < WA_KB / 16; t++)
#pragma unroll
            for (int hh = 0; hh < HB / 2; hh++)
                wg_mma_pv128(o + 64 * hh, pa + 4 * t,
                          wg_desc_n(vs + 2 * hh * WA_KVBOX + t * 2048, WA_KVBOX), c > 0 || t > 0);
        wg_commit();
        wg_wait_group<0>();
        if (c == 0) WA_MARK(6);
        __syncthreads(); /* every warp's P.V is done with the V chunk */
        if (tid == 0 && c + 1 < nc) {
            wg_expect(&bar[2], HB * WA_KVBOX);
            for (int b = 0; b < HB; b++)
                wg_tma(vs + b * WA_KVBOX, &a.tv, kcol + 64 * b, kb + WA_KB, &bar[2]);
        }
    }

    WA_MARK(7);
    l0 = rtv_quad_sum(l0); /* the rows' sums (each lane of a quad held its columns' share) */
    l1 = rtv_quad_sum(l1);
    if constexpr (PUSH) {
        /* each row as one record (O unscaled, its maximum and sum) into the owner's receive
         * area by a bulk copy; the owner scales and sums the splits' records in split order */
        float *stg = (float *)ks; /* [64][RECF] (reuses K and V) */
#pragma unroll
        for (int hh = 0; hh < HB / 2; hh++)
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float *d = o + 64 * hh + 4 * j;
                const int col = 128 * hh + 8 * j + 2 * q4;
                *(float2 *)(stg + r0 * RECF + col) = make_float2(d[0], d[1]);
                *(float2 *)(stg + r1 * RECF + col) = make_float2(d[2], d[3]);
            }
        if (q4 == 0) {
            *(float2 *)(stg + r0 * RECF + HD) = make_float2(m0, l0);
            *(float2 *)(stg + r1 * RECF + HD) = make_float2(m1, l1);
        }
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); /* for the bulk copies */
        __syncthreads();
        asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); /* peers' barriers are set */
        WA_MARK(8);
        if (tid < lim) { /* row tid to its owner, slot tid / nsplit of our split */
            const unsigned ow = tid % nsplit;
            const unsigned dst = wg_peer(rcv + (rank * slots + tid / nsplit) * RECF, ow);
            asm volatile("cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes"
                         " [%0], [%1], %2, [%3];" ::"r"(dst), "r"(wg_saddr(stg + tid * RECF)),
                         "r"(RECF * 4), "r"(wg_peer(&bar[3], ow))
                         : "memory");
        }
        wg_wait_peers(&bar[3], 0);
        /* every copy into us has landed, so every copy of ours into a peer whose records are
         * complete has too: arrive now, wait before leaving (a CTA must not exit while its
         * records are still being read out of its shared memory) */
        asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
        WA_MARK(9);
        /* each owned row's split weights, once: exp2(max_p - M) / L, L the weighted sum of the
         * splits' row sums (st_m holds [owned row][split], unused by the push combine) */
        if (tid < owned) {
            float M = -INFINITY, L = 0.f;
            for (int p = 0; p < nsplit; p++) M = fmaxf(M, rcv[(p * slots + tid) * RECF + HD]);
            for (int p = 0; p < nsplit; p++) {
                const float *rec = rcv + (p * slots + tid) * RECF;
                const float w = rec[HD] == -INFINITY ? 0.f : exp2f(rec[HD] - M);
                st_m[tid * nsplit + p] = w;
                L += w * rec[HD + 1];
            }
            const float inv = L > 0.f ? 1.f / L : 0.f;
            for (int p = 0; p < nsplit; p++) st_m[tid * nsplit + p] *= inv;
        }
        __syncthreads();
        constexpr int CPR = HD / 4; /* float4 columns per row */
        for (int i = tid; i < owned * CPR; i += WA_THREADS) {
            const int j = i / CPR, c4 = i % CPR;
            float4 u[WA_MAXSPLIT];
#pragma unroll
            for (int p = 0; p < WA_MAXSPLIT; p++) /* the loads first, all in flight together */
                if (p < nsplit) u[p] = *(const float4 *)(rcv + (p * slots + j) * RECF + 4 * c4);
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int p = 0; p < WA_MAXSPLIT; p++) /* summed in split order: deterministic */
                if (p < nsplit) {
                    const float w = st_m[j * nsplit + p];
                    v.x += w * u[p].x;
                    v.y += w * u[p].y;
                    v.z += w * u[p].z;
                    v.w += w * u[p].w;
                }
            rtv_put_bf16x4(a.out + (size_t)(rb * 64 + rank + j * nsplit) * a.ldo + h * HD + 4 * c4,
                           v.x, v.y, v.z, v.w);
        }
    } else {
        /* combine the splits: row maxima out, O scaled to the cluster's maximum and staged */
        if (q4 == 0) {
            st_m[r0] = m0;
            st_m[r1] = m1;
        }
        wa_sync(nsplit);
        WA_MARK(8);
        /* every split's maximum of rows r0 and r1, the loads issued together (a remote load is a
         * round trip of several hundred cycles; one after another they cost more than the MMAs) */
        float pm0[WA_MAXSPLIT], pm1[WA_MAXSPLIT];
#pragma unroll
        for (int p = 0; p < WA_MAXSPLIT; p++)
            if (p < nsplit) {
                pm0[p] = wa_ld(st_m + r0, p, nsplit);
                pm1[p] = wa_ld(st_m + r1, p, nsplit);
            }
        float M0 = -INFINITY, M1 = -INFINITY;
#pragma unroll
        for (int p = 0; p < WA_MAXSPLIT; p++)
            if (p < nsplit) {
                M0 = fmaxf(M0, pm0[p]);
                M1 = fmaxf(M1, pm1[p]);
            }
        const float f0 = m0 == -INFINITY ? 0.f : exp2f(m0 - M0);
        const float f1 = m1 == -INFINITY ? 0.f : exp2f(m1 - M1);
#pragma unroll
        for (int hh = 0; hh < HB / 2; hh++)
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float *d = o + 64 * hh + 4 * j;
                const int col = 128 * hh + 8 * j + 2 * q4;
                *(float2 *)(os + r0 * OS + col) = make_float2(d[0] * f0, d[1] * f0);
                *(float2 *)(os + r1 * OS + col) = make_float2(d[2] * f1, d[3] * f1);
            }
        if (q4 == 0) {
            st_l[r0] = l0 * f0;
            st_l[r1] = l1 * f1;
        }
        wa_sync(nsplit);
        WA_MARK(9);
        /* the rows this CTA owns: each item, one row's 4 columns, sums the splits' staged
         * values in split order over the summed row sums; a thread takes WA_ITEMS items at a
         * time and issues all their remote loads first */
        constexpr int CPR = HD / 4; /* float4 columns per row */
        for (int i0 = tid; i0 < owned * CPR; i0 += WA_THREADS * WA_ITEMS) {
            float4 u[WA_ITEMS][WA_MAXSPLIT];
            float lv[WA_ITEMS][WA_MAXSPLIT];
#pragma unroll
            for (int it = 0; it < WA_ITEMS; it++) {
                const int i = i0 + it * WA_THREADS, r = rank + (i / CPR) * nsplit;
                if (i < owned * CPR)
#pragma unroll
                    for (int p = 0; p < WA_MAXSPLIT; p++)
                        if (p < nsplit) {
                            u[it][p] = wa_ld4(os + r * OS + 4 * (i % CPR), p, nsplit);
                            lv[it][p] = wa_ld(st_l + r, p, nsplit);
                        }
            }
#pragma unroll
            for (int it = 0; it < WA_ITEMS; it++) {
                const int i = i0 + it * WA_THREADS, r = rank + (i / CPR) * nsplit;
                if (i >= owned * CPR) break;
                float L = 0.f;
                float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
                for (int p = 0; p < WA_MAXSPLIT; p++)
                    if (p < nsplit) {
                        L += lv[it][p];
                        v.x += u[it][p].x;
                        v.y += u[it][p].y;
                        v.z += u[it][p].z;
                        v.w += u[it][p].w;
                    }
                const float inv = L > 0.f ? 1.f / L : 0.f;
                rtv_put_bf16x4(a.out + (size_t)(rb * 64 + r) * a.ldo + h * HD + 4 * (i % CPR),
                               v.x * inv, v.y * inv, v.z * inv, v.w * inv);
            }
        }
    }
    WA_MARK(10);
    if constexpr (PUSH) /* arrived after our records came in; by now the peers have too */
        asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    else
        wa_sync(nsplit); /* the peers are done reading our staged rows before we leave */
    WA_MARK(11);
#endif
}

int rtv_cuda_attn_wg_init(rtv_stream *s)
{
    /* RTV_WG_ATTN: 1 (default) for few query rows (n_q <= 64: the action expert, where it
     * measured 8.48 against 8.81 ms per action cycle), 2 for any (the prefix too: neutral),
     * 0 off (the cuBLAS path) */
    const char *e = getenv("RTV_WG_ATTN");
    s->wa_use = e && e[0] >= '0' && e[0] <= '2' && !e[1] ? e[0] - '0' : 1;
    if (!s->wg_encode) s->wa_use = 0; /* wgemm_init found no sm_90a image or tensor maps */
    if (!s->wa_use) return RTV_OK;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, attn_wg_k<4, false>) != cudaSuccess) {
        cudaGetLastError();
        s->wa_use = 0;
        return RTV_OK;
    }
    if (rtv_cuda_env_switch("RTV_WG_ATTN_TRACE", 0)) {
        CU_TRY(cudaMalloc((void **)&s->wa_trace, (size_t)1024 * WA_MARKS * sizeof(long long)));
        CU_TRY(cudaMemset(s->wa_trace, 0, (size_t)1024 * WA_MARKS * sizeof(long long)));
    }
    /* the splits' rows pushed to their owners: action cycle 7.80 against 8.01 ms pulled (H100,
     * 2026-12-07, one lease); RTV_WG_ATTN_PUSH=0 pulls */
    s->wa_push = rtv_cuda_env_switch("RTV_WG_ATTN_PUSH", 1);
    /* in streams on a share of the SMs too (green contexts, MPS), its splits fitted to the
     * share: bench split green 64 action alone p99 7.95 against 9.03 ms on the cuBLAS path,
     * under VL load 9.37 against 10.62 (H100, 2026-12-07); RTV_WG_ATTN_SPLIT=0: cuBLAS there */
    s->wa_split = rtv_cuda_env_switch("RTV_WG_ATTN_SPLIT", 1);
    CU_TRY(cudaFuncSetAttribute(attn_wg_k<2, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)wa_smem(2)));
    CU_TRY(cudaFuncSetAttribute(attn_wg_k<4, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)wa_smem(4)));
    CU_TRY(cudaFuncSetAttribute(attn_wg_k<2, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)wa_smem_push(2)));
    CU_TRY(cudaFuncSetAttribute(attn_wg_k<4, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)wa_smem_push(4)));
    return RTV_OK;
}

int rtv_cuda_attn_wg(rtv_stream *s, void *out, int ldo, const void *q, int ldq, const void *k,
                     const void *v, int ldkv, int n_k, int n_q, int n_heads, int n_kv_heads,
                     int head_dim, float scale, int limit_rows, int limit_keys, int *st)
{
    *st = RTV_OK;
    const int rblocks = (n_q + 63) / 64;
    /* s->sm_count > 0: the stream runs in a share of the SMs (a green context or MPS
     * affinity); RTV_WG_ATTN_SPLIT=0 keeps the cuBLAS path there */
    if ((s->sm_count > 0 && !s->wa_split) || !s->wa_use || (s->wa_use == 1 && n_q > 64) ||
        (head_dim != 128 && head_dim != 256) || n_k < 1 || n_q < 1 || ldq % 8 || ldkv % 8 ||
        ldo % 4 || (size_t)rblocks * n_heads > 65535 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 || (uintptr_t)out % 8)
        return 1;
    /* key splits: at most 8 (one cluster) and no more CTAs than SMs, each a multiple of 8
     * keys, none empty */
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    int sp = (n_k + WA_KB - 1) / WA_KB, fit = sms / (rblocks * n_heads);
    sp = sp > WA_MAXSPLIT ? WA_MAXSPLIT : sp;
    sp = sp > fit ? (fit < 1 ? 1 : fit) : sp;
    const int per = (((n_k + sp - 1) / sp) + 7) & ~7;
    sp = (n_k + per - 1) / per;
    wa_args a;
    memset(&a, 0, sizeof(a));
    if (rtv_cuda_tmap_bf16(s->wg_encode, &a.tq, q, n_q, n_heads * head_dim, ldq, 64) ||
        rtv_cuda_tmap_bf16(s->wg_encode, &a.tk, k, n_k, n_kv_heads * head_dim, ldkv, WA_KB) ||
        rtv_cuda_tmap_bf16(s->wg_encode, &a.tv, v, n_k, n_kv_heads * head_dim, ldkv, WA_KB))
        return 1;
    a.out = (bf16 *)out;
    a.ldo = ldo; a.n_q = n_q; a.n_k = n_k; a.heads = n_heads; a.group = n_heads / n_kv_heads;
    a.per = per; a.limit_rows = limit_rows; a.limit_keys = limit_keys;
    a.scale2 = scale * 1.4426950408889634f;
    const int ctas = n_heads * rblocks * sp;
    if (s->wa_trace && ctas <= 1024) { /* eager and captured launches: the last one's marks */
        a.trace = s->wa_trace;
        s->wa_trace_ctas = ctas;
    }
    const int hb = head_dim / 64, push = s->wa_push && sp > 1;
    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg =
        rtv_cuda_launch_cfg(s, attr, dim3(n_heads * rblocks, sp), dim3(WA_THREADS),
                            push ? wa_smem_push(hb) : wa_smem(hb), sp);
    void (*kern)(wa_args) = hb == 4 ? (push ? attn_wg_k<4, true> : attn_wg_k<4, false>)
                                    : (push ? attn_wg_k<2, true> : attn_wg_k<2, false>);
    cudaError_t e = cudaLaunchKernelEx(&cfg, kern, a);
    if (e != cudaSuccess) *st = rtv_cuda_fail(e, "attention (wgmma) launch", __FILE__, __LINE__);
    return 0;
}

/* RTV_WG_ATTN_TRACE=1: the last launch's phase times, mean over its CTAs, at stream free */
void rtv_cuda_attn_wg_report(rtv_stream *s, void *fp)
{
    FILE *f = (FILE *)fp;
    const int n = s->wa_trace_ctas;
    if (!s->wa_trace || n < 1) return;
    long long *h = (long long *)malloc((size_t)n * WA_MARKS * sizeof(long long));
    if (!h) return;
    if (cudaStreamSynchronize(s->s) == cudaSuccess &&
        cudaMemcpy(h, s->wa_trace, (size_t)n * WA_MARKS * sizeof(long long),
                   cudaMemcpyDeviceToHost) == cudaSuccess) {
        fprintf(f, "wgmma attention, last launch, %d CTAs: kcycles from the previous mark, mean "
                   "(max) over CTAs\n", n);
        for (int m = 1; m < WA_MARKS; m++) {
            double sum = 0, mx = 0;
            for (int c = 0; c < n; c++) {
                const double d = (double)(h[(size_t)c * WA_MARKS + m] -
                                          h[(size_t)c * WA_MARKS + m - 1]) / 1000.0;
                sum += d;
                mx = d > mx ? d : mx;
            }
            fprintf(f, "  %-10s %7.2f (%.2f)\n", wa_mark_names[m], sum / n, mx);
        }
    }
    cudaGetLastError();
    free(h);
}
