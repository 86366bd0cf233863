/* kernels/cuda/cuda_impl.h — private to the CUDA backend: the stream object and checks.
 *
 * One rtv_stream per calling thread: a CUDA stream, a cuBLAS and a cuBLASLt handle with their
 * own workspaces (so that graph capture never allocates), a device scratch area for attention
 * logits and dtype conversion, and pinned host staging for uploads.
 * Scratch is per op: an op calls rtv_cuda_scratch_begin() and then takes what it needs. Ops on
 * one stream run in order, so the next op may reuse the same bytes (also inside a graph).
 * Staging is written by the host at enqueue time, so it is a bump allocator reset by sync().
 */
#ifndef RTV_CUDA_IMPL_H
#define RTV_CUDA_IMPL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" {
#include "kernels/backend.h"
#include "runtime/status.h"
}

typedef __nv_bfloat16 bf16;

#define RTV_CUDA_LT_CACHE 128
#define RTV_SK_TILES 1024

struct rtv_lt_plan {
    int M, N, K, ldx, ldy, epi, beta1, valid;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
};

#define RTV_WG_RING 64 /* wgmma launches the chain trace keeps (wgemm.cu) */

struct rtv_stream {
    cudaStream_t s;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *blas_ws, *lt_ws;      /* device workspaces */
    size_t blas_ws_bytes, lt_ws_bytes;
    char *scratch;              /* device scratch of the op being enqueued (see below) */
    size_t scratch_bytes, scratch_used;
    char *staging;              /* pinned host staging, bump-allocated, reset by sync */
    size_t staging_bytes, staging_used;
    int capturing;
    cudaEvent_t done;           /* recorded and waited on by sync (blocking, not spinning) */
    int spin;                   /* RTV_CUDA_SPIN=1: sync by cudaStreamSynchronize instead */
    int sm_count;               /* SMs of this stream's partition (0 = whole GPU) */
    int dev_sms;                /* SMs of the device */
    /* skinny GEMM (skinny.cu): on/off and tuning (tune.h: sk_tile: 0 auto, 1 = 64 rows, 2 = 128), clusters,
     * shared memory limit, registers of each kernel (NT - 1, tile: 64 / 128 rows) */
    int sk_mode, sk_tile, sk_target_pct, sk_cluster, sk_smem_max;
    int sk_geglu;               /* matmul_geglu fused in the skinny kernel (RTV_SKINNY_GEGLU=0: off) */
    int sk_tma;                 /* sm_90: 2-D tensor-map copies (RTV_SKINNY_TMA=0: cp.async) */
    int sk_evict;               /* weights streamed with an L2 evict-first hint (RTV_SKINNY_EVICT=0: off) */
    void *sk_encode;            /* cuTensorMapEncodeTiled (driver entry point), NULL: none */
    long long *sk_trace;        /* per-CTA phase clocks of the last skinny launch (RTV_SKINNY_TRACE=1) */
    int sk_trace_ctas;
    int sk_regs[8][2][2];       /* [NT - 1][64 / 128 rows][1 / 2 warps per row block] */
    int sk_kw;                  /* warps per row block: 0 automatic, 1 or 2 (RTV_SKINNY_KW) */
    int attn_small, attn_small_smem; /* one-kernel attention (attn_small.cu; RTV_FUSED_ATTN=0: off) */
    int attn_small_rb;          /* its 16-row blocks per CTA: 2, or 4 (RTV_ATTN_RB=4) */
    int wa_use;                 /* wgmma attention (attn_wg.cu; RTV_WG_ATTN: 0 off, 1 n_q <= 64 (default), 2 any) */
    int wa_push;                /* splits' rows sent by bulk copies (RTV_WG_ATTN_PUSH=0: pull) */
    int wa_split;               /* it runs in SM-share streams too (RTV_WG_ATTN_SPLIT=0: not) */
    int gg_use;                 /* matmul_rms_geglu as one wgmma kernel (RTV_WG_GEGLU) */
    int gg_ok;                  /* that kernel exists here (sm_90a image, tensor maps) */
    int gm_use, gm_ok;          /* matmul for M > 64 on gemm_mc.cu (RTV_GM=1: on); exists here */
    int gm_bn, gm_cm, gm_cn, gm_sk; /* its configuration fixed by rtv_cuda_gm_tune (0: planned) */
    long long *gm_trace;        /* RTV_GM_TRACE=1: the last eager launch's phase clocks */
    int gm_trace_ctas;
    int gm_clusters[5][9];      /* [tile width] [cluster size]: clusters that fit at once
                                 * (gm_plan.h: RTV_GM_NBN x RTV_GM_MAXCL + 1) */
    long long *wa_trace;        /* RTV_WG_ATTN_TRACE=1: the last launch's phase clocks per CTA */
    int wa_trace_ctas;
    int lt_algo;                /* index into cuBLASLt's heuristic list (tune.h; 0 = its choice) */
    int lt_gelu;                /* GELU-tanh in the cuBLASLt epilogue (RTV_LT_GELU=0: a pass) */
    int rope_heads;             /* rms_rope's angles shared by the heads (RTV_ROPE_HEADS=0: per head) */
    int pdl;                    /* skinny GEMM as a programmatic dependent launch (sm_90+, RTV_PDL=0: off) */
    int pdl_small;              /* one-pass kernels launched programmatically (RTV_PDL_SMALL) */
    int pdl_edge;               /* captured graphs: programmatic edges fire at the upstream's
                                 * launch (RTV_PDL_EDGE=0: off; cuda_capture_end) */
    int *sk_cnt;                /* skinny GEMM split-K arrival counters (RTV_SK_TILES, zeroed) */
    /* fused MLP (mlp.cu): RTV_FUSED_MLP=0 off; CTAs (0: unfused launches), ring stages, grid
     * barrier and split-K arrival counters (zeroed, each reset by its last user) */
    int mlp_mode, mlp_grid, mlp_stages, mlp_coop, mlp_oproj, mlp_qkv, mlp_stagger;
    unsigned *mlp_sync;
    unsigned long long *mlp_trace; /* RTV_MLP_TRACE=1: per-CTA phase marks of eager launches */
    /* few-row GEMMs on wgmma (wgemm.cu, RTV_WGMMA=1): usable here, ring stages, and
     * cuTensorMapEncodeTiled */
    int wg_ok, wg_use, wg_stages, wg_maxks, wg_early;
    int wg_stages_set, wg_push, wg_stages1;
    int wg_pf_on; /* RTV_WGMMA_PF: honour rtv_qkv_next's after hint */
    const void *wg_pf; /* the hint for the next wg_run only */
    size_t wg_pf_bytes; /* RTV_WGMMA_STAGES given; partials pushed (RTV_WGMMA_PUSH); ring stages without a K split (RTV_WGMMA_STAGES1) */
    int wg_matmul;              /* plain matmul calls take it too (RTV_WGMMA_MATMUL=0: only rms_mlp) */
    int wg_parts;               /* rms_mlp's GEMMs on it (RTV_WGMMA_PARTS: o/gu/down/qkv bits) */
    void *wg_encode;
    long long *wg_trace; /* RTV_WGMMA_TRACE=1: per-CTA phase clocks of the last eager launch */
    int wg_trace_ctas;
    /* RTV_WGMMA_TRACE=1: per CTA 8 values (%globaltimer at 7 points and the SM, WG_CHAIN in
     * wgemm.cu) of the last RTV_WG_RING launches, graph replays included (slot = launch number
     * % ring, set at launch or capture), for rtv_cuda_wgemm_chain_report */
    unsigned long long *wg_chain;
    long wg_chain_n;
    struct { long seq; int ctas, mode, n, k, ks; } wg_chain_info[RTV_WG_RING];
    /* the expert's layers as one persistent kernel (mk.cu, RTV_MK=1): on, usable here, its
     * cache of plans and launch parameters, cuTensorMapEncodeTiled */
    int mk_use, mk_ok;
    void *mk_cache, *mk_encode;
    struct rtv_lt_plan plans[RTV_CUDA_LT_CACHE];
};

/* Records the failed call's text and file:line; returns RTV_E_DEVICE. */
int rtv_cuda_fail(cudaError_t e, const char *what, const char *file, int line);
int rtv_cublas_fail(int st, const char *what, const char *file, int line);
#define CU_TRY(call)                                                                        \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) return rtv_cuda_fail(e_, #call, __FILE__, __LINE__);        \
    } while (0)
#define BLAS_TRY(call)                                                                      \
    do {                                                                                    \
        int st_ = (int)(call);                                                              \
        if (st_ != 0) return rtv_cublas_fail(st_, #call, __FILE__, __LINE__);              \
    } while (0)
/* After a kernel launch. */
#define LAUNCH_CHECK(name) CU_TRY(cudaGetLastError())

/* Bump allocations from the stream's scratch (device) and staging (pinned host). */
static inline void rtv_cuda_scratch_begin(rtv_stream *s) { s->scratch_used = 0; }
void *rtv_cuda_scratch(rtv_stream *s, size_t bytes);
void *rtv_cuda_staging(rtv_stream *s, size_t bytes);

/* GELU, tanh form (gelu_pytorch_tanh), in fp32: the elementwise pass and GEMM epilogues. */
static __device__ __forceinline__ float rtv_gelu_tanh(float x)
{
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(k0 * (x + k1 * x * x * x)));
}

/* An on/off environment switch read at stream creation: '0...' is off, '1...' is on, anything
 * else (or unset) is def. */
static inline int rtv_cuda_env_switch(const char *name, int def)
{
    const char *v = getenv(name);
    return v && v[0] == '0' ? 0 : v && v[0] == '1' ? 1 : def;
}

/* A kernel's per-CTA phase trace (8 values per CTA, `ctas` of them in device memory at dev)
 * into out, at most max_ctas CTAs; returns the CTA count, 0 without a trace. Synchronizes. */
static inline int rtv_cuda_trace_copy(rtv_stream *s, const long long *dev, int ctas,
                                      long long *out, int max_ctas)
{
    if (!dev || ctas <= 0) return 0;
    const int n = ctas < max_ctas ? ctas : max_ctas;
    if (cudaStreamSynchronize(s->s) != cudaSuccess ||
        cudaMemcpy(out, dev, (size_t)n * 8 * sizeof(long long), cudaMemcpyDeviceToHost) !=
            cudaSuccess)
        return 0;
    return n;
}

static inline unsigned rtv_cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

/* A cudaLaunchKernelEx configuration on s's stream: a programmatic dependent launch when pdl
 * (the kernel calls griddepcontrol.wait before reading its inputs), and cy > 1 CTAs along y as
 * one thread-block cluster. attr: room for 2. */
static inline cudaLaunchConfig_t rtv_cuda_cfg(rtv_stream *s, cudaLaunchAttribute *attr, dim3 grid,
                                              dim3 block, size_t smem, int cy, int pdl)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s->s;
    cfg.attrs = attr;
    if (pdl) {
        attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[cfg.numAttrs].val.programmaticStreamSerializationAllowed = 1;
        cfg.numAttrs++;
    }
    if (cy > 1) {
        attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
        attr[cfg.numAttrs].val.clusterDim.x = 1;
        attr[cfg.numAttrs].val.clusterDim.y = cy;
        attr[cfg.numAttrs].val.clusterDim.z = 1;
        cfg.numAttrs++;
    }
    return cfg;
}
/* the GEMM and attention kernels: programmatic when s->pdl (RTV_PDL=0: off) */
static inline cudaLaunchConfig_t rtv_cuda_launch_cfg(rtv_stream *s, cudaLaunchAttribute *attr,
                                                     dim3 grid, dim3 block, size_t smem, int cy)
{
    return rtv_cuda_cfg(s, attr, grid, block, smem, cy, s->pdl);
}

/* Launches a one-pass kernel (it starts with rtv_grid_begin) on s's stream: programmatically
 * with s->pdl_small, so that it may take its SMs while the previous kernel still runs, plainly
 * otherwise. Errors are left for LAUNCH_CHECK (cudaGetLastError). */
template <typename... P, typename... A>
static inline void rtv_cuda_go(rtv_stream *s, void (*kern)(P...), dim3 grid, dim3 block,
                               size_t smem, A... args)
{
    cudaLaunchAttribute attr[2];
    const cudaLaunchConfig_t cfg = rtv_cuda_cfg(s, attr, grid, block, smem, 1, s->pdl_small);
    cudaLaunchKernelEx(&cfg, kern, args...);
}

/* Launchers (one per op; same arguments as the rtv_backend entries). */
int rtv_cuda_matmul(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                    const void *bias, int M, int N, int K, int flags);
/* Destroys the stream's cached cuBLASLt plans (matmul.cu). */
void rtv_cuda_plans_free(rtv_stream *s);
/* The few-row GEMM (skinny.cu): returns 1 when the shape is not its, else 0 with *st set. */
int rtv_cuda_skinny(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                    const void *bias, int M, int N, int K, int flags, int *st);
int rtv_cuda_skinny_init(rtv_stream *s);
/* matmul_geglu (backend.h): fused in the few-row kernel where it can, else matmul + geglu. */
int rtv_cuda_matmul_geglu(rtv_stream *s, void *y, void *gu, const void *x, int ldx,
                          const void *w, int M, int F, int K);
/* One-kernel attention for n_k <= 256 and head_dim 16/32/64/72/128, one key segment
 * (attn_small.cu): returns 1 when the call is not its, else 0 with *st set. */
int rtv_cuda_attn_small(rtv_stream *s, void *out, int ldo, const void *q, int ldq, const void *k,
                        const void *v, int ldkv, int n_k, int n_q, int n_heads, int n_kv_heads,
                        int head_dim, float scale, int limit_rows, int limit_keys, int *st);
int rtv_cuda_attn_small_init(rtv_stream *s);
/* The same for nb attentions of one shape (offsets so, sq, skv in elements per attention). */
int rtv_cuda_attn_small_batch(rtv_stream *s, int nb, void *out, int ldo, size_t so,
                              const void *q, int ldq, size_t sq, const void *k, const void *v,
                              int ldkv, size_t skv, int n_k, int n_q, int n_heads,
                              int n_kv_heads, int head_dim, float scale, int limit_rows,
                              int limit_keys, int *st);
/* Attention for head_dim 128/256 over any key count on wgmma, one key segment (attn_wg.cu;
 * sm_90a, on by default for n_q <= 64, RTV_WG_ATTN): returns 1 when the call is not its,
 * else 0 with *st set. */
int rtv_cuda_attn_wg_init(rtv_stream *s);
void rtv_cuda_attn_wg_report(rtv_stream *s, void *fp); /* RTV_WG_ATTN_TRACE=1 */
int rtv_cuda_attn_wg(rtv_stream *s, void *out, int ldo, const void *q, int ldq, const void *k,
                     const void *v, int ldkv, int n_k, int n_q, int n_heads, int n_kv_heads,
                     int head_dim, float scale, int limit_rows, int limit_keys, int *st);
/* matmul_rms_geglu (backend.h): one wgmma kernel for many rows (gemm_geglu.cu, sm_90a,
 * on unless RTV_WG_GEGLU=0), else the GEMM into gu and rms_geglu. */
int rtv_cuda_gg_init(rtv_stream *s);
int rtv_cuda_matmul_rms_geglu(rtv_stream *s, void *y, void *gu, const void *x, const void *w,
                              int M, int F, int K, float eps);
/* matmul for M > 64 on wgmma with multicast weight tiles and in-cluster K splits (gemm_mc.cu;
 * sm_90a, opt-in RTV_GM=1): returns 1 when the call is not its (cuBLASLt runs it), else 0
 * with *st set. */
int rtv_cuda_gm_init(rtv_stream *s);
int rtv_cuda_gm(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                const void *bias, int M, int N, int K, int flags, int *st);
/* attention_batch: one attn_small launch, or attention() per item. */
int rtv_cuda_attention_batch(rtv_stream *s, int nb, void *out, int ldo, size_t so, const void *q,
                             int ldq, size_t sq, const void *k, const void *v, int ldkv,
                             size_t skv, int n_k, int n_q, int n_heads, int n_kv_heads,
                             int head_dim, float scale);
int rtv_cuda_layernorm(rtv_stream *s, void *y, const void *x, const void *w, const void *b,
                       int rows, int dim, float eps);
int rtv_cuda_rmsnorm(rtv_stream *s, void *y, const void *x, const void *w, int rows, int dim,
                     float eps);
int rtv_cuda_rope(rtv_stream *s, void *x, int ld, int rows, int n_heads, int head_dim, int pos0,
                  float theta);
int rtv_cuda_attention(rtv_stream *s, void *out, int ldo, const void *q, int ldq,
                       const void *k0, const void *v0, int ld0, int n0,
                       const void *k1, const void *v1, int ld1, int n1,
                       int n_q, int n_heads, int n_kv_heads, int head_dim, float scale,
                       int limit_rows, int limit_keys);
int rtv_cuda_geglu(rtv_stream *s, void *y, const void *gu, int rows, int ff);
int rtv_cuda_rms_rope(rtv_stream *s, void *y, int ld, int cols, const void *x, int dim,
                      float eps, int rows, int n_heads, int head_dim, int pos0, float theta);
int rtv_cuda_rms_geglu(rtv_stream *s, void *y, const void *gu, const void *x, int dim, float eps,
                       int rows, int ff);
/* rms_mlp (backend.h): one persistent kernel where the shape allows, else three launches. */
int rtv_cuda_rms_mlp(rtv_stream *s, void *x, const void *att, const void *w_o, int qd,
                     const void *w_gu, const void *w_down, void *gu, void *ff, int dim,
                     float eps, int rows, int F, const rtv_qkv_next *nq);
int rtv_cuda_mlp_init(rtv_stream *s);
/* The few-row GEMM on wgmma (wgemm.cu; sm_90, opt-in RTV_WGMMA=1): rtv_cuda_wgemm returns 1
 * when the call is not its (the caller uses cuBLASLt), else 0 with *st set; rms_mlp as four
 * of its launches with the norms, GeGLU and RoPE in their epilogues. */
int rtv_cuda_wgemm_init(rtv_stream *s);
int rtv_cuda_wgemm(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                   const void *bias, int M, int N, int K, int flags, int *st);
int rtv_cuda_wgemm_geglu(rtv_stream *s, void *y, const void *x, int ldx, const void *w, int M,
                         int F, int K, int *st);
int rtv_cuda_rms_mlp_wg(rtv_stream *s, void *x, const void *att, const void *w_o, int qd,
                        const void *w_gu, const void *w_down, void *gu, void *ff, int dim,
                        float eps, int rows, int F, const rtv_qkv_next *nq);
/* expert_layers (backend.h) as one persistent kernel (mk.cu; sm_90a, opt-in RTV_MK=1):
 * RTV_E_UNSUPPORTED where it does not take the call (the model runs the layers op by op). */
int rtv_cuda_mk_init(rtv_stream *s);
void rtv_cuda_mk_free(rtv_stream *s);
int rtv_cuda_expert_layers(rtv_stream *s, const rtv_expert_step *e);
int rtv_cuda_add_weight_rows(rtv_stream *s, void *y, const void *w, int rows, int dim,
                             int period);
int rtv_cuda_axpy(rtv_stream *s, void *y, const void *x, float alpha, size_t n);
int rtv_cuda_scale(rtv_stream *s, void *y, const void *x, float alpha, size_t n);
int rtv_cuda_copy2d(rtv_stream *s, void *dst, int ldd, const void *src, int lds, int rows,
                    int cols);
int rtv_cuda_mean_rows(rtv_stream *s, void *y, const void *x, int ldx, int rows, int dim);
int rtv_cuda_activation(rtv_stream *s, void *y, int ldy, int rows, int cols, int flags);
int rtv_cuda_preprocess(rtv_stream *s, void *y, const uint8_t *rgb, int w, int h, int stride,
                        int out);
int rtv_cuda_patchify(rtv_stream *s, void *y, const void *img, int n_img, int size, int p);
int rtv_cuda_f32_to_bf16(rtv_stream *s, void *dst, const float *src, size_t n);
int rtv_cuda_bf16_to_f32(rtv_stream *s, float *dst, const void *src, size_t n);

#endif
