/* kernels/backend.h — the op table that model code calls, whatever the backend.
 *
 * Model code (vision/, encoder/, action/) is an explicit sequence of calls through an
 * rtv_backend; it never branches on the backend and never dereferences a tensor pointer.
 * Two kinds of tensor pointer appear in the ops:
 *   - activations: `void *` in the backend's activation dtype (act_bytes per element);
 *     CPU: fp32 host memory; CUDA: bf16 device memory. Offsets are taken with rtv_act_at().
 *   - weights:     `const void *` in the backend's weight dtype, produced by upload_weight().
 * Matrices are row-major. A linear layer's weight is (N, K) = (out, in), PyTorch layout.
 *
 * Streams: every op takes the caller's rtv_stream, one per calling thread (VL thread, action
 * thread). Ops on one stream run in call order; ops never allocate, never synchronize (except
 * sync/download as documented) and never create handles. All ops return RTV_OK or a status
 * (shape or alignment errors are RTV_E_ARG with the op named).
 *
 * Lifetime: rtv_backend_cpu() / rtv_backend_cuda() return a static table; alloc/free and
 * stream_new/free are init-time calls.
 */
#ifndef RTV_BACKEND_H
#define RTV_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef enum rtv_dtype {
    RTV_DT_F32 = 0,
    RTV_DT_BF16 = 1,
    RTV_DT_F16 = 2,
} rtv_dtype;

size_t rtv_dtype_size(rtv_dtype dt);
const char *rtv_dtype_name(rtv_dtype dt);
/* Scalar conversions used by loaders and tests (round-to-nearest-even for bf16). */
float rtv_bf16_to_f32(uint16_t h);
uint16_t rtv_f32_to_bf16(float f);
float rtv_f16_to_f32(uint16_t h);
uint16_t rtv_f32_to_f16(float f);

/* Flags of matmul's epilogue (applied in this order: bias, activation, accumulate). */
enum {
    RTV_MM_GELU = 1 << 0,  /* y = gelu_tanh(.)  */
    RTV_MM_SILU = 1 << 1,  /* y = silu(.)       */
    RTV_MM_ACCUM = 1 << 2, /* y += result (residual add); without it y = result */
};

typedef struct rtv_stream rtv_stream; /* opaque; per calling thread */

/* Key rows a single-segment attention may read: n rounded up to a multiple of 8. */
#define RTV_ATTN_KEY_PAD(n) (((n) + 7) & ~7)

/* rms_mlp's optional tail: the next layer's fused qkv projection (norm folded) with its row
 * scale and RoPE on the first rope_heads heads (rows at positions pos0 ..). */
typedef struct rtv_qkv_next {
    const void *w; /* [cols, dim] weights */
    void *y;       /* output rows [rows, cols], row stride ld */
    int ld, cols, rope_heads, head_dim, pos0;
    float theta;
    /* optional hint (NULL: none): the weights the layer reads next after its attention (its
     * o-proj, after_bytes bytes), which a backend may start pulling into its cache while the
     * qkv projection runs, since the attention between them reads no weights */
    const void *after;
    size_t after_bytes;
} rtv_qkv_next;

/* expert_layers' call: the action expert's layers (folded norms) on this step's rows. */
typedef struct rtv_expert_step {
    int rows, dim, mlp;             /* rows of x (<= 64), width, MLP width */
    int heads, kv_heads, head_dim, layers;
    int kv_row;                     /* qkv rows go to row kv_row of lq[l]; keys [0, kv_row + rows) */
    int limit_rows, limit_keys;     /* attention's limit rule */
    float eps, theta;               /* RMSNorm epsilon, RoPE base */
    void *x;                        /* [rows, dim] residual stream, updated in place */
    void *const *lq;                /* per layer [kv_row + rows, qkv] rows: prefix K/V filled */
    const void *const *w_qkv, *const *w_o, *const *w_gu, *const *w_down; /* per layer */
} rtv_expert_step;

typedef struct rtv_backend {
    const char *name;  /* "cpu", "cuda" */
    int act_bytes;     /* bytes per activation element */
    rtv_dtype act_dt;  /* activation dtype */
    rtv_dtype w_dt;    /* weight dtype */

    /* ---- memory and streams (init time only) ---- */
    int (*stream_new)(rtv_stream **out);
    void (*stream_free)(rtv_stream *s);
    /* Allocates bytes of backend memory (host for CPU, device for CUDA), 256-byte aligned. */
    int (*alloc)(void **out, size_t bytes);
    void (*free)(void *p);
    /* Converts n elements of src (host, dtype src_dt) into backend weight memory dst. */
    int (*upload_weight)(void *dst, const void *src, rtv_dtype src_dt, size_t n);

    /* ---- host <-> activation transfers (allowed on the hot path) ---- */
    /* n fp32 host values -> activations (stream-ordered; src must stay valid until sync). */
    int (*upload)(rtv_stream *s, void *dst, const float *src, size_t n);
    /* n activations -> fp32 host values; valid after sync(s). */
    int (*download)(rtv_stream *s, float *dst, const void *src, size_t n);
    /* Waits until all work on s has finished. The one wait per call on the hot path. */
    int (*sync)(rtv_stream *s);

    /* ---- ops ---- */
    /* y[M,N] (row stride ldy) = epilogue(x[M,K] (row stride ldx) . w[N,K]^T + bias[N]).
     * w and bias are weights (rtv_w_at() offsets are fine); bias may be NULL. */
    int (*matmul)(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                  const void *bias, int M, int N, int K, int flags);
    /* y = (x - mean) / sqrt(var + eps) * w + b per row; y may equal x. */
    int (*layernorm)(rtv_stream *s, void *y, const void *x, const void *w, const void *b,
                     int rows, int dim, float eps);
    /* y = x * rsqrt(mean(x^2) + eps) * (1 + w) per row (fp32 statistics); y may equal x. */
    int (*rmsnorm)(rtv_stream *s, void *y, const void *x, const void *w, int rows, int dim,
                   float eps);
    /* In place RoPE, half-split layout (pairs i, i+hd/2), base theta, on n_heads heads of
     * head_dim at x + r*ld for rows r = 0..rows-1; row r has position pos0 + r. */
    int (*rope)(rtv_stream *s, void *x, int ld, int rows, int n_heads, int head_dim, int pos0,
                float theta);
    /* Multi-query/grouped attention. Queries q[n_q, n_heads*hd] (row stride ldq). Keys and
     * values are two concatenated segments: seg 0 = k0/v0 (n0 rows, stride ld0), seg 1 = k1/v1
     * (n1 rows, stride ld1; n1 may be 0 and k1/v1 NULL). Each K/V row holds n_kv_heads*hd;
     * query head h reads kv head h / (n_heads / n_kv_heads). Logits are scaled by `scale`,
     * softmax in fp32. Query rows r < limit_rows see only keys j < limit_keys (global index
     * over seg0 then seg1); other rows see all n0 + n1 keys. out[n_q, n_heads*hd] (stride ldo).
     * With one segment (n1 == 0), seg 0 must have readable, finite rows up to
     * RTV_ATTN_KEY_PAD(n0): a backend may run its GEMMs over the padded key count (tensor-core
     * kernels want it a multiple of 8) and gives the extra keys weight 0. */
    int (*attention)(rtv_stream *s, void *out, int ldo, const void *q, int ldq,
                     const void *k0, const void *v0, int ld0, int n0,
                     const void *k1, const void *v1, int ld1, int n1,
                     int n_q, int n_heads, int n_kv_heads, int head_dim, float scale,
                     int limit_rows, int limit_keys);
    /* Optional (NULL: call attention() nb times): nb independent attentions of one shape, one
     * key segment each, no limit rule; attention i reads q + i*sq, k + i*skv, v + i*skv and
     * writes out + i*so (offsets in elements). SigLIP's views: one launch instead of one per
     * view. */
    int (*attention_batch)(rtv_stream *s, int nb, void *out, int ldo, size_t so, const void *q,
                           int ldq, size_t sq, const void *k, const void *v, int ldkv,
                           size_t skv, int n_k, int n_q, int n_heads, int n_kv_heads,
                           int head_dim, float scale);
    /* GeGLU: y[r, j] = gelu_tanh(gu[r, j]) * gu[r, ff + j]; gu is [rows, 2*ff], y [rows, ff]. */
    int (*geglu)(rtv_stream *s, void *y, const void *gu, int rows, int ff);
    /* Optional (NULL: matmul into gu, then geglu): y[M, F] = geglu(x[M,K] (row stride ldx) .
     * w[2F,K]^T), w the gate rows then the up rows as for matmul with N = 2F, no bias. gu
     * [M, 2F] is the caller's workspace for a backend that runs the two steps (its contents
     * afterwards are unspecified); y must not overlap x, w or gu. */
    int (*matmul_geglu)(rtv_stream *s, void *y, void *gu, const void *x, int ldx, const void *w,
                        int M, int F, int K);
    /* Optional, both or neither (NULL: rmsnorm before the GEMM, then rope / geglu): an RMSNorm
     * moved behind the GEMM that reads it. With the norm's (1 + w) folded into the GEMM's input
     * columns at load (W'[n, k] = W[n, k] (1 + w[k])), rmsnorm(x) . W^T = s_r (x . W'^T) row by
     * row, s_r = rsqrt(mean(x[r, :]^2) + eps) over x[rows, dim] (contiguous; fp32 statistics
     * as rmsnorm). rms_rope scales y[r, 0:cols] (row stride ld) by s_r and applies RoPE, as
     * rope(), to its first n_heads heads; rms_geglu is geglu() with the gate and up values each
     * scaled by s_r. The model uses them for the action expert, where each norm is a
     * launch-bound pass over 50 rows. */
    int (*rms_rope)(rtv_stream *s, void *y, int ld, int cols, const void *x, int dim, float eps,
                    int rows, int n_heads, int head_dim, int pos0, float theta);
    int (*rms_geglu)(rtv_stream *s, void *y, const void *gu, const void *x, int dim, float eps,
                     int rows, int ff);
    /* Optional (NULL: matmul into gu, then rms_geglu; set only with rms_geglu): the folded
     * MLP input in one call, y[M, F] = rms_geglu(x . w[2F, K]^T) with the row scale from x
     * itself (x contiguous [M, K], dim = K), w the gate rows then the up rows. gu [M, 2F] is
     * the caller's workspace for a backend that runs the two steps (contents afterwards
     * unspecified); y must not overlap x, w or gu. */
    int (*matmul_rms_geglu)(rtv_stream *s, void *y, void *gu, const void *x, const void *w,
                            int M, int F, int K, float eps);
    /* Optional (NULL: the ops one by one): the end of a Gemma layer after attention, with the
     * MLP's norm folded (as rms_geglu), in one call:
     *   x += att . w_o^T (when att is not NULL: att [rows, qd], w_o [dim, qd]), then
     *   x += ff . w_down[dim, F]^T with ff = rms_geglu(x . w_gu[2F, dim]^T),
     *   then, with nq, the next layer's start: nq->y = x . nq->w^T, scaled and rotated as
     *   rms_rope(nq->y, nq->ld, nq->cols, x, dim, eps, rows, nq->rope_heads, ...).
     * w_gu is the gate rows then the up rows with the norm's (1 + w) folded in; x contiguous
     * [rows, dim]; gu [rows, 2F] and ff [rows, F] are the caller's workspaces (contents
     * afterwards unspecified). A backend may run it as one kernel (the action expert: 50 rows,
     * where each of these GEMMs is a short, launch-bound weight stream). */
    int (*rms_mlp)(rtv_stream *s, void *x, const void *att, const void *w_o, int qd,
                   const void *w_gu, const void *w_down, void *gu, void *ff, int dim, float eps,
                   int rows, int F, const rtv_qkv_next *nq);
    /* Optional (NULL, or RTV_E_UNSUPPORTED for a call it does not take, with no error set:
     * the model runs the layers op by op): e->layers action-expert layers with folded norms,
     * each exactly encoder/gemma.c's layer on rows x[0, rows) at positions kv_row ..:
     *   lq[l][kv_row + r] = rms_rope(x . w_qkv[l]^T) (q and k heads rotated, v scaled);
     *   att = attention(q, K/V rows [0, kv_row + rows) of lq[l], limit rule);
     *   x += att . w_o[l]^T; x += rms_geglu(x . w_gu[l]^T) . w_down[l]^T.
     * The pointer arrays are read during the call only. A backend may run all layers as one
     * persistent kernel (kernels/cuda/mk.cu). */
    int (*expert_layers)(rtv_stream *s, const rtv_expert_step *e);
    /* y[r, :] += w[r % period, :] for r < rows (w a weight [period, dim]): position
     * embeddings (period = tokens per view) and broadcast biases (period = 1). */
    int (*add_weight_rows)(rtv_stream *s, void *y, const void *w, int rows, int dim,
                           int period);
    /* y[i] += alpha * x[i], i < n (the Euler update). */
    int (*axpy)(rtv_stream *s, void *y, const void *x, float alpha, size_t n);
    /* y[i] = alpha * x[i] (y may equal x). */
    int (*scale)(rtv_stream *s, void *y, const void *x, float alpha, size_t n);
    /* 2-D copy: rows x cols elements from src (stride lds) to dst (stride ldd). */
    int (*copy2d)(rtv_stream *s, void *dst, int ldd, const void *src, int lds, int rows,
                  int cols);
    /* y[dim] = mean over rows of x[rows, dim] (row stride ldx). */
    int (*mean_rows)(rtv_stream *s, void *y, const void *x, int ldx, int rows, int dim);
    /* Image preprocessing: host RGB24 rgb (w x h, row stride `stride` bytes) -> activations
     * [out, out, 3] in [-1, 1]: resize-with-pad (bilinear, aspect kept, centred, black pad)
     * exactly as shared/specs/pi0.md 4.1. The host buffer must stay valid until sync. */
    int (*preprocess)(rtv_stream *s, void *y, const uint8_t *rgb, int w, int h, int stride,
                      int out);
    /* Patch extraction: images [n_img, size, size, 3] -> y [n_img * (size/p)^2, 3*p*p],
     * patch vector in (c, kh, kw) order (PyTorch conv weight (W, 3, p, p) flattened),
     * patches row-major over the (size/p) x (size/p) grid. */
    int (*patchify)(rtv_stream *s, void *y, const void *img, int n_img, int size, int p);


    /* ---- graph capture (NULL on backends without it) ---- */
    int (*capture_begin)(rtv_stream *s);
    int (*capture_end)(rtv_stream *s, void **graph_out);
    int (*graph_launch)(rtv_stream *s, void *graph);
    void (*graph_free)(void *graph);

    /* ---- host memory the device copies from (NULL where copies need nothing) ---- */
    /* Page-locks [p, p + bytes) of ordinary host memory that preprocess() will read from
     * (camera frame buffers): the frame's copy to the device becomes one DMA straight from it,
     * with no copy into staging memory on the calling thread. host_unpin(p) before the memory
     * is freed. Init time only. */
    int (*host_pin)(void *p, size_t bytes);
    void (*host_unpin)(void *p);

    /* ---- device memory in use and total, whole device (NULL on the CPU backend) ---- */
    int (*mem_info)(size_t *used, size_t *total);
} rtv_backend;

/* Pointer to element n of an activation buffer. */
static inline void *rtv_act_at(const rtv_backend *b, void *a, size_t n)
{
    return (char *)a + n * (size_t)b->act_bytes;
}
static inline const void *rtv_cact_at(const rtv_backend *b, const void *a, size_t n)
{
    return (const char *)a + n * (size_t)b->act_bytes;
}
/* Pointer to element n of a weight buffer. */
static inline const void *rtv_w_at(const rtv_backend *b, const void *w, size_t n)
{
    return (const char *)w + n * rtv_dtype_size(b->w_dt);
}

const rtv_backend *rtv_backend_cpu(void);
/* NULL when rtvla was built without CUDA. */
const rtv_backend *rtv_backend_cuda(void);
/* "cpu" or "cuda"; RTV_E_UNSUPPORTED naming what is missing. */
int rtv_backend_by_name(const char *name, const rtv_backend **out);

/* ---- arenas: one allocation per memory kind, carved into named views ---- */
typedef struct rtv_arena {
    const rtv_backend *b;
    char *base;
    size_t size, used;
} rtv_arena;

int rtv_arena_init(rtv_arena *a, const rtv_backend *b, size_t bytes);
/* Takes n bytes, 256-byte aligned; NULL (and an error message) when the arena is full. */
void *rtv_arena_take(rtv_arena *a, size_t bytes);
void rtv_arena_free(rtv_arena *a);

#endif
