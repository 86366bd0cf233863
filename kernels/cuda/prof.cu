/* kernels/cuda/prof.cu — per-op GPU time, for finding where a forward pass spends its time.
 *
 * RTV_CUDA_PROF=1 wraps every op of the "cuda" backend with two CUDA events on the caller's
 * stream (eager launches only: the policy runs without graphs while a stage profile is on, and
 * with RTV_GRAPHS=0). At each sync the elapsed times are added per op; at exit a table goes to
 * stderr: calls, total ms, mean us per op; rows "<= 64" (the action suffix) apart from the
 * rest (vision tower and prefix). Off (no wrapper installed) by default. */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_impl.h"

enum { P_MATMUL, P_LAYERNORM, P_RMSNORM, P_ROPE, P_ATTENTION, P_GEGLU, P_ADDW, P_AXPY, P_SCALE,
       P_COPY2D, P_MEANROWS, P_PREPROCESS, P_PATCHIFY, P_UPLOAD, P_DOWNLOAD, P_MATMUL_S,
       P_ATTN_S, P_RMS_S, P_OTHER_S, P_EXPERT, P_N };
static const char *const p_names[P_N] = { "matmul", "layernorm", "rmsnorm", "rope", "attention",
    "geglu", "add_weight_rows", "axpy", "scale", "copy2d", "mean_rows", "preprocess", "patchify",
    "upload", "download", "matmul M<=64", "attention q<=64", "rmsnorm r<=64", "others r<=64",
    "expert_layers" };

#define P_MAX 16384
static struct {
    cudaEvent_t ev[2 * P_MAX];
    int op[P_MAX];
    int n, ready;
    double ms[P_N];
    long calls[P_N];
    rtv_backend inner;
} P;

static void p_flush(void)
{
    for (int i = 0; i < P.n; i++) {
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, P.ev[2 * i], P.ev[2 * i + 1]) == cudaSuccess) {
            P.ms[P.op[i]] += ms;
            P.calls[P.op[i]]++;
        }
    }
    P.n = 0;
}

static void p_report(void)
{
    double tot = 0;
    for (int i = 0; i < P_N; i++) tot += P.ms[i];
    fprintf(stderr, "\nRTV_CUDA_PROF: GPU time per op (eager launches, events around each op)\n"
                    "%-16s %10s %12s %10s %7s\n", "op", "calls", "total ms", "mean us", "share");
    for (int i = 0; i < P_N; i++)
        if (P.calls[i])
            fprintf(stderr, "%-16s %10ld %12.3f %10.2f %6.1f%%\n", p_names[i], P.calls[i],
                    P.ms[i], 1000.0 * P.ms[i] / P.calls[i], tot > 0 ? 100.0 * P.ms[i] / tot : 0);
}

static int p_begin(rtv_stream *s, int op)
{
    if (s->capturing) return -1;
    if (P.n >= P_MAX) {
        cudaStreamSynchronize(s->s);
        p_flush();
    }
    int i = P.n++;
    P.op[i] = op;
    cudaEventRecord(P.ev[2 * i], s->s);
    return i;
}

static void p_end(rtv_stream *s, int i)
{
    if (i >= 0) cudaEventRecord(P.ev[2 * i + 1], s->s);
}

#define WRAP(fn, op, params, args)                                                          \
    static int p_##fn params                                                                \
    {                                                                                       \
        int i_ = p_begin(s, op);                                                            \
        int r_ = P.inner.fn args;                                                           \
        p_end(s, i_);                                                                       \
        return r_;                                                                          \
    }

WRAP(matmul, M <= 64 ? P_MATMUL_S : P_MATMUL, (rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
     const void *bias, int M, int N, int K, int flags), (s, y, ldy, x, ldx, w, bias, M, N, K, flags))
WRAP(matmul_geglu, M <= 64 ? P_MATMUL_S : P_MATMUL, (rtv_stream *s, void *y, void *gu,
     const void *x, int ldx, const void *w, int M, int F, int K), (s, y, gu, x, ldx, w, M, F, K))
WRAP(layernorm, P_LAYERNORM, (rtv_stream *s, void *y, const void *x, const void *w, const void *b,
     int rows, int dim, float eps), (s, y, x, w, b, rows, dim, eps))
WRAP(rmsnorm, rows <= 64 ? P_RMS_S : P_RMSNORM, (rtv_stream *s, void *y, const void *x, const void *w, int rows, int dim,
     float eps), (s, y, x, w, rows, dim, eps))
WRAP(rope, rows <= 64 ? P_OTHER_S : P_ROPE, (rtv_stream *s, void *x, int ld, int rows, int n_heads, int head_dim, int pos0,
     float theta), (s, x, ld, rows, n_heads, head_dim, pos0, theta))
WRAP(attention, n_q <= 64 ? P_ATTN_S : P_ATTENTION, (rtv_stream *s, void *out, int ldo, const void *q, int ldq,
     const void *k0, const void *v0, int ld0, int n0, const void *k1, const void *v1, int ld1,
     int n1, int n_q, int n_heads, int n_kv_heads, int head_dim, float scale, int limit_rows,
     int limit_keys), (s, out, ldo, q, ldq, k0, v0, ld0, n0, k1, v1, ld1, n1, n_q, n_heads,
     n_kv_heads, head_dim, scale, limit_rows, limit_keys))
WRAP(attention_batch, n_q <= 64 ? P_ATTN_S : P_ATTENTION, (rtv_stream *s, int nb, void *out, int ldo,
     size_t so, const void *q, int ldq, size_t sq, const void *k, const void *v, int ldkv,
     size_t skv, int n_k, int n_q, int n_heads, int n_kv_heads, int head_dim, float scale),
     (s, nb, out, ldo, so, q, ldq, sq, k, v, ldkv, skv, n_k, n_q, n_heads, n_kv_heads, head_dim,
      scale))
WRAP(geglu, rows <= 64 ? P_OTHER_S : P_GEGLU, (rtv_stream *s, void *y, const void *gu, int rows, int ff), (s, y, gu, rows, ff))
WRAP(rms_rope, rows <= 64 ? P_OTHER_S : P_ROPE, (rtv_stream *s, void *y, int ld, int cols, const void *x,
     int dim, float eps, int rows, int n_heads, int head_dim, int pos0, float theta),
     (s, y, ld, cols, x, dim, eps, rows, n_heads, head_dim, pos0, theta))
WRAP(rms_geglu, rows <= 64 ? P_OTHER_S : P_GEGLU, (rtv_stream *s, void *y, const void *gu, const void *x,
     int dim, float eps, int rows, int ff), (s, y, gu, x, dim, eps, rows, ff))
WRAP(matmul_rms_geglu, M <= 64 ? P_MATMUL_S : P_MATMUL, (rtv_stream *s, void *y, void *gu,
     const void *x, const void *w, int M, int F, int K, float eps), (s, y, gu, x, w, M, F, K, eps))
WRAP(rms_mlp, rows <= 64 ? P_MATMUL_S : P_MATMUL, (rtv_stream *s, void *x, const void *att,
     const void *w_o, int qd, const void *w_gu, const void *w_down, void *gu, void *ff, int dim,
     float eps, int rows, int F, const rtv_qkv_next *nq),
     (s, x, att, w_o, qd, w_gu, w_down, gu, ff, dim, eps, rows, F, nq))
/* a declined call launches nothing: its (empty) interval still counts as a call */
WRAP(expert_layers, P_EXPERT, (rtv_stream *s, const rtv_expert_step *e), (s, e))
WRAP(add_weight_rows, P_ADDW, (rtv_stream *s, void *y, const void *w, int rows, int dim,
     int period), (s, y, w, rows, dim, period))
WRAP(axpy, P_AXPY, (rtv_stream *s, void *y, const void *x, float alpha, size_t n), (s, y, x, alpha, n))
WRAP(scale, P_SCALE, (rtv_stream *s, void *y, const void *x, float alpha, size_t n), (s, y, x, alpha, n))
WRAP(copy2d, rows <= 64 ? P_OTHER_S : P_COPY2D, (rtv_stream *s, void *dst, int ldd, const void *src, int lds, int rows,
     int cols), (s, dst, ldd, src, lds, rows, cols))
WRAP(mean_rows, P_MEANROWS, (rtv_stream *s, void *y, const void *x, int ldx, int rows, int dim),
     (s, y, x, ldx, rows, dim))
WRAP(preprocess, P_PREPROCESS, (rtv_stream *s, void *y, const uint8_t *rgb, int w, int h,
     int stride, int out), (s, y, rgb, w, h, stride, out))
WRAP(patchify, P_PATCHIFY, (rtv_stream *s, void *y, const void *img, int n_img, int size, int p),
     (s, y, img, n_img, size, p))
WRAP(upload, P_UPLOAD, (rtv_stream *s, void *dst, const float *src, size_t n), (s, dst, src, n))
WRAP(download, P_DOWNLOAD, (rtv_stream *s, float *dst, const void *src, size_t n), (s, dst, src, n))

static int p_sync(rtv_stream *s)
{
    int r = P.inner.sync(s);
    if (!r) p_flush();
    return r;
}

/* Installs the wrappers into b when RTV_CUDA_PROF=1 (called once by rtv_backend_cuda). */
void rtv_cuda_prof_install(rtv_backend *b)
{
    const char *e = getenv("RTV_CUDA_PROF");
    if (!e || e[0] != '1' || P.ready) return;
    for (int i = 0; i < 2 * P_MAX; i++)
        if (cudaEventCreate(&P.ev[i]) != cudaSuccess) return;
    P.inner = *b;
    P.ready = 1;
    b->matmul = p_matmul; b->matmul_geglu = p_matmul_geglu; b->layernorm = p_layernorm; b->rmsnorm = p_rmsnorm; b->rope = p_rope;
    b->attention = p_attention; b->attention_batch = p_attention_batch; b->geglu = p_geglu; b->add_weight_rows = p_add_weight_rows;
    b->axpy = p_axpy; b->scale = p_scale; b->copy2d = p_copy2d; b->mean_rows = p_mean_rows;
    b->preprocess = p_preprocess; b->patchify = p_patchify; b->upload = p_upload;
    b->download = p_download; b->sync = p_sync;
    if (b->rms_rope) { b->rms_rope = p_rms_rope; b->rms_geglu = p_rms_geglu; }
    if (b->rms_mlp) b->rms_mlp = p_rms_mlp;
    if (b->matmul_rms_geglu) b->matmul_rms_geglu = p_matmul_rms_geglu;
    if (b->expert_layers) b->expert_layers = p_expert_layers;
    atexit(p_report);
}
