/* kernels/cuda/gemm_geglu.cu — the prefix LLM's MLP input for many rows on Hopper (wgmma +
 * TMA, sm_90a): y[M, F] = rms_geglu(x . w[2F, K]^T) in one kernel (backend.h
 * matmul_rms_geglu), where the default path runs cuBLASLt's GEMM into gu [M, 2F] and then
 * rms_geglu reads it back (pi0's prefix: 512 x 32768 x 2048, 102.5 us for the GEMM at 670
 * TFLOP/s and ~15.7 us for the pass over its 33.5 MB of output, H100, bench_matmul).
 *
 * A CTA computes 128 rows x 128 output columns: the 128 gate rows of w and the matching 128 up
 * rows (F further on) form one 256-row B tile, so every gate value and its up value land in
 * the same thread's accumulators (columns j and j + 128 of a wgmma m64n256 tile). Warpgroup 0
 * is the producer (one thread issues the TMA copies of a 4-stage ring: 128 x 64 of x, 2 x 128
 * x 64 of w, 48 KB a stage), warpgroups 1 and 2 each multiply 64 of the rows (4 wgmma
 * m64n256k16 per 64-wide K step, both operands from shared memory). While its MMAs run, a
 * consumer also sums the squares of its x rows from the same tiles: the folded RMSNorm's row
 * scale s_r = rsqrt(mean(x^2) + eps) needs x's whole row, which is exactly the K loop. The
 * epilogue writes gelu_tanh(s_r g) * (s_r u) as bf16 from the fp32 accumulators (the two-pass
 * path rounds g and u to bf16 first: this one is the more exact of the two).
 * Launched programmatically: the first stages' weight tiles (no earlier kernel writes w) are
 * requested before griddepcontrol.wait, x's after it. Its ring waits trap after ~9 s instead of
 * hanging the stream (wg_wait_peers), so a fault shows as a launch error.
 * On by default (RTV_WG_GEGLU=0 leaves the op out of the table and the model calls matmul and
 * rms_geglu itself): 127.6 us against 126.0 for cuBLASLt's GEMM + the pass in bench_matmul, but
 * in the VL encode's graph, where it also saves the pass's launch, VL encode -0.13 ms (H100,
 * 2026-12-07, kernels/README). Without sm_90a, or for M <= 64, F % 128 or K % 64, the op runs
 * the same two launches. */
#include <stdio.h>
#include <string.h>

#include <cuda.h>

#include "cuda_impl.h"
#include "mma.cuh"
#include "tmap.h"
#include "wgmma.cuh"
#ifdef WG_KERNEL
#include "wgmma_n.cuh"
#endif

#define GG_BM 128                 /* x rows per CTA: two consumer warpgroups of 64 */
#define GG_BF 128                 /* output columns per CTA (gate rows; as many up rows) */
#define GG_BK 64                  /* K per stage: one 128-byte swizzled row */
#define GG_ST 4                   /* ring stages */
#define GG_A (GG_BM * 128)        /* bytes of a stage's x tile */
#define GG_B (2 * GG_BF * 128)    /* bytes of a stage's w tile (gate rows, then up rows) */
#define GG_STAGE (GG_A + GG_B)
#define GG_THREADS 384
#define GG_SMEM (1024 + GG_ST * GG_STAGE + 2 * GG_ST * 8 + GG_BM * 4)

struct gg_args {
    CUtensorMap tx, tw; /* x: box 64 x 128 rows; w: box 64 x 128 rows */
    bf16 *y;
    int M, F, K;
    float eps;
};

#ifdef WG_KERNEL
/* sum of squares of 8 bf16 */
static __device__ __forceinline__ float gg_sq8(uint4 v)
{
    const unsigned u[4] = { v.x, v.y, v.z, v.w };
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float lo = __uint_as_float(u[i] << 16), hi = __uint_as_float(u[i] & 0xFFFF0000u);
        s = fmaf(lo, lo, s);
        s = fmaf(hi, hi, s);
    }
    return s;
}
#endif

static __global__ void __launch_bounds__(GG_THREADS, 1) gg_k(const __grid_constant__ gg_args a)
{
#ifdef WG_KERNEL
    extern __shared__ __align__(1024) unsigned char gg_raw[];
    unsigned char *sh = gg_raw + ((1024 - (wg_saddr(gg_raw) & 1023)) & 1023);
    uint64_t *full = (uint64_t *)(sh + GG_ST * GG_STAGE), *empty = full + GG_ST;
    float *rs = (float *)(empty + GG_ST); /* [GG_BM] row scales */
    const int tid = threadIdx.x, wg = tid >> 7, t = tid & 127;
    const int m0 = blockIdx.x * GG_BM, f0 = blockIdx.y * GG_BF, KT = a.K / GG_BK;
    rtv_griddep_launch();
    if (tid == 0) {
        for (int i = 0; i < GG_ST; i++) {
            wg_bar_init(&full[i], 1);
            wg_bar_init(&empty[i], 8); /* lane 0 of each consumer warp */
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (wg == 0) { /* the producer */
        if (tid == 0) {
            const int pre = KT < GG_ST ? KT : GG_ST;
            for (int k = 0; k < pre; k++) { /* w is no earlier kernel's output */
                unsigned char *st = sh + k * GG_STAGE;
                wg_expect(&full[k], GG_STAGE);
                wg_tma(st + GG_A, &a.tw, k * GG_BK, f0, &full[k]);
                wg_tma(st + GG_A + GG_B / 2, &a.tw, k * GG_BK, a.F + f0, &full[k]);
            }
            rtv_griddep_wait(); /* x is */
            for (int k = 0; k < pre; k++)
                wg_tma(sh + k * GG_STAGE, &a.tx, k * GG_BK, m0, &full[k]);
            for (int k = pre; k < KT; k++) {
                const int s = k % GG_ST;
                unsigned char *st = sh + s * GG_STAGE;
                wg_wait_peers(&empty[s], ((k / GG_ST) - 1) & 1); /* load k - GG_ST consumed */
                wg_expect(&full[s], GG_STAGE);
                wg_tma(st, &a.tx, k * GG_BK, m0, &full[s]);
                wg_tma(st + GG_A, &a.tw, k * GG_BK, f0, &full[s]);
                wg_tma(st + GG_A + GG_B / 2, &a.tw, k * GG_BK, a.F + f0, &full[s]);
            }
        }
        return;
    }
    rtv_griddep_wait(); /* (before any global access of ours) */
    const int c = wg - 1, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, q4 = lane & 3;
    const int srow = t >> 1, shalf = t & 1; /* the x row (of our 64) whose squares we sum */
    float d[128];
    float ss = 0.f;
    for (int k = 0; k < KT; k++) {
        const int s = k % GG_ST;
        const unsigned char *st = sh + s * GG_STAGE;
        wg_wait_peers(&full[s], (k / GG_ST) & 1);
        wg_fence();
        const uint64_t da = wg_desc(st + c * (GG_A / 2)), db = wg_desc(st + GG_A);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wg_mma_n256(d, da + 2 * kk, db + 2 * kk, k > 0 || kk > 0);
        wg_commit();
        /* half of the row's 128-byte line (the swizzle permutes 16-byte chunks within it, and
         * the sum does not care which is which); the chunk order is rotated by the row so that
         * a warp's 16 rows, whose lines all start at bank 0, spread over the banks */
        const unsigned char *p = st + c * (GG_A / 2) + srow * 128 + shalf * 64;
#pragma unroll
        for (int i = 0; i < 4; i++) ss += gg_sq8(*(const uint4 *)(p + 16 * ((i + srow) & 3)));
        wg_wait_group<1>(); /* the previous step's MMAs are done with their stage */
        if (k > 0 && lane == 0) wg_arrive(&empty[(k - 1) % GG_ST]);
    }
    wg_wait_group<0>();
    ss += __shfl_xor_sync(0xFFFFFFFFu, ss, 1);
    if (!shalf) rs[c * 64 + srow] = rsqrtf(ss / a.K + a.eps);
    asm volatile("bar.sync %0, 128;" ::"r"(1 + c) : "memory"); /* our warpgroup's scales */
    const int r0 = 16 * warp + g, r1 = r0 + 8;
    const float s0 = rs[c * 64 + r0], s1 = rs[c * 64 + r1];
    const int y0 = m0 + c * 64 + r0, y1 = y0 + 8;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const int col = f0 + 8 * j + 2 * q4;
        const float *gv = d + 4 * j, *uv = d + 4 * (j + 16);
        if (y0 < a.M)
            *(uint32_t *)(a.y + (size_t)y0 * a.F + col) =
                rtv_pack_bf16x2(rtv_gelu_tanh(gv[0] * s0) * (uv[0] * s0),
                                rtv_gelu_tanh(gv[1] * s0) * (uv[1] * s0));
        if (y1 < a.M)
            *(uint32_t *)(a.y + (size_t)y1 * a.F + col) =
                rtv_pack_bf16x2(rtv_gelu_tanh(gv[2] * s1) * (uv[2] * s1),
                                rtv_gelu_tanh(gv[3] * s1) * (uv[3] * s1));
    }
#else
    (void)a; /* not an sm_90a build: never launched (gg_use is 0) */
#endif
}

int rtv_cuda_gg_init(rtv_stream *s)
{
    s->gg_use = s->gg_ok = 0;
    /* nothing at all with RTV_WG_GEGLU=0 (the op is not in the table then, backend.cu); and
     * nothing where the GPU is not sm_90 or has no tensor maps (wgemm_init) */
    if (!rtv_cuda_env_switch("RTV_WG_GEGLU", 1) || !s->wg_encode) return RTV_OK;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, gg_k) != cudaSuccess) { /* no sm_90a image */
        cudaGetLastError();
        return RTV_OK;
    }
    CU_TRY(cudaFuncSetAttribute(gg_k, cudaFuncAttributeMaxDynamicSharedMemorySize, GG_SMEM));
    s->gg_ok = 1;
    s->gg_use = 1;
    return RTV_OK;
}

extern "C" int rtv_cuda_gg_tune(rtv_stream *s, int on)
{
    s->gg_use = on && s->gg_ok;
    return s->gg_ok;
}

int rtv_cuda_matmul_rms_geglu(rtv_stream *s, void *y, void *gu, const void *x, const void *w,
                              int M, int F, int K, float eps)
{
    if (M <= 0 || F <= 0 || K <= 0 || !(eps >= 0.0f))
        return rtv_fail(RTV_E_ARG, "matmul_rms_geglu: bad shape M=%d F=%d K=%d eps=%g", M, F,
                        K, (double)eps);
    if (s->gg_use && M > 64 && F % GG_BF == 0 && K % GG_BK == 0 && F / GG_BF <= 65535 &&
        !(((uintptr_t)x | (uintptr_t)w) % 16) && !((uintptr_t)y % 4)) {
        gg_args a;
        memset(&a, 0, sizeof(a));
        if (!rtv_cuda_tmap_bf16(s->wg_encode, &a.tx, x, M, K, K, GG_BM) &&
            !rtv_cuda_tmap_bf16(s->wg_encode, &a.tw, w, 2 * F, K, K, GG_BF)) {
            a.y = (bf16 *)y;
            a.M = M; a.F = F; a.K = K; a.eps = eps;
            cudaLaunchAttribute attr[2];
            const cudaLaunchConfig_t cfg = rtv_cuda_launch_cfg(
                s, attr, dim3(rtv_cdiv(M, GG_BM), F / GG_BF), dim3(GG_THREADS), GG_SMEM, 1);
            const cudaError_t e = cudaLaunchKernelEx(&cfg, gg_k, a);
            return e == cudaSuccess ? RTV_OK
                                    : rtv_cuda_fail(e, "matmul_rms_geglu launch", __FILE__,
                                                    __LINE__);
        }
    }
    /* the two-pass path: cuBLASLt (or the few-row kernels) into gu, then rms_geglu */
    int st = rtv_cuda_matmul(s, gu, 2 * F, x, K, w, NULL, M, 2 * F, K, 0);
    return st ? st : rtv_cuda_rms_geglu(s, y, gu, x, K, eps, M, F);
}
