/* tests/cuda/test_cuda_ops.c — every CUDA op against the CPU backend (test-backend-ops style).
 *
 * Inputs are seeded random values rounded to bf16 first, so both backends see identical
 * numbers and only the arithmetic differs (CPU: fp32; CUDA: bf16 storage, fp32 accumulate).
 * Tolerance: relative max error 2e-2 — bf16 output rounding is 2^-9 relative per value, and
 * intermediate bf16 roundings (attention probabilities, GEMM outputs before an epilogue) add a
 * few more ulps. Exits 77 (meson: skipped) when there is no CUDA device. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "check.h"
#include "kernels/backend.h"
#include "kernels/cuda/tune.h"
#include "runtime/status.h"

static const rtv_backend *C, *G;
static rtv_stream *cs, *gs;
static uint64_t rng = 0x1234567u;

static float frand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rnd(size_t n, float amp)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = rtv_bf16_to_f32(rtv_f32_to_bf16(amp * frand()));
    return v;
}

/* A tensor on both backends. */
typedef struct { void *c, *g; size_t n; } pair;

static pair act(const float *h, size_t n)
{
    pair p = { NULL, NULL, n };
    CHECK(C->alloc(&p.c, n * 4) == 0);
    CHECK(G->alloc(&p.g, n * 2 + 256) == 0);
    if (h) {
        CHECK(C->upload(cs, p.c, h, n) == 0);
        CHECK(G->upload(gs, p.g, h, n) == 0);
        CHECK(G->sync(gs) == 0);
    }
    return p;
}

static pair wt(const float *h, size_t n)
{
    pair p = { NULL, NULL, n };
    CHECK(C->alloc(&p.c, n * 4) == 0);
    CHECK(G->alloc(&p.g, n * 2 + 256) == 0);
    CHECK(C->upload_weight(p.c, h, RTV_DT_F32, n) == 0);
    CHECK(G->upload_weight(p.g, h, RTV_DT_F32, n) == 0);
    return p;
}

static void drop(pair p) { C->free(p.c); G->free(p.g); }

static void compare(const char *what, pair p, float tol)
{
    float *a = malloc(p.n * 4), *b = malloc(p.n * 4);
    CHECK(C->download(cs, a, p.c, p.n) == 0);
    CHECK(C->sync(cs) == 0);
    CHECK(G->download(gs, b, p.g, p.n) == 0);
    CHECK(G->sync(gs) == 0);
    if (!check_close_(__FILE__, __LINE__, what, b, a, (long)p.n, tol))
        fprintf(stderr, "  (%s: %s)\n", what, rtv_last_error());
    free(a); free(b);
}

/* y (row stride ldy) = x (row stride ldx) . w^T: strides wider than the matrices check that
 * the kernels honour them (the expert writes q/k/v rows inside a wider per-layer buffer). */
static void t_matmul_ld(int M, int N, int K, int flags, int bias, int ldx, int ldy)
{
    float *x = rnd((size_t)M * ldx, 1), *w = rnd((size_t)N * K, 1.0f / sqrtf(K)), *b = rnd(N, 0.5f);
    float *y0 = rnd((size_t)M * ldy, 1);
    pair X = act(x, (size_t)M * ldx), W = wt(w, (size_t)N * K), B = wt(b, N), Y = act(y0, (size_t)M * ldy);
    CHECK(C->matmul(cs, Y.c, ldy, X.c, ldx, W.c, bias ? B.c : NULL, M, N, K, flags) == 0);
    int st = G->matmul(gs, Y.g, ldy, X.g, ldx, W.g, bias ? B.g : NULL, M, N, K, flags);
    CHECK_MSG(st == 0, "%s", rtv_last_error());
    char what[128];
    snprintf(what, sizeof(what), "matmul M=%d N=%d K=%d flags=%d bias=%d ldx=%d ldy=%d", M, N, K,
             flags, bias, ldx, ldy);
    compare(what, Y, 2e-2f); /* also the columns between N and ldy: they must be untouched */
    drop(X); drop(W); drop(B); drop(Y);
    free(x); free(w); free(b); free(y0);
}

static void t_matmul(int M, int N, int K, int flags, int bias)
{
    t_matmul_ld(M, N, K, flags, bias, K, N);
}

/* matmul for M > 64 through gemm_mc.cu (sm_90a; elsewhere these run cuBLASLt and still must
 * match): SigLIP's shapes as planned, then every tile width with multicast groups and K splits
 * on shapes with a short last row tile, a short last column tile, a K tail and wide strides.
 * Each fixed configuration must really run (rtv_cuda_gm_describe), not fall back. */
static void t_matmul_mc(void)
{
    char cfg[96];
    const int have = rtv_cuda_gm_tune(gs, 1, 0, 0, 0, 0);
    const int fl[] = { 0, RTV_MM_GELU, RTV_MM_ACCUM };
    t_matmul(512, 3456, 1152, 0, 1);            /* SigLIP qkv */
    t_matmul(512, 1152, 1152, RTV_MM_ACCUM, 1); /* o-proj + residual */
    t_matmul(512, 4304, 1152, RTV_MM_GELU, 1);  /* fc1 + GELU */
    t_matmul(512, 1152, 4304, RTV_MM_ACCUM, 1); /* fc2 + residual: K % 64 != 0 */
    t_matmul(512, 2048, 16384, RTV_MM_ACCUM, 0); /* the prefix's down-proj */
    t_matmul(65, 96, 64, 0, 1);                 /* the fewest rows it takes */
    t_matmul(100, 40, 72, RTV_MM_SILU, 1);      /* SiLU: never its (cuBLASLt) */
    /* tile width, cm, cn, sk */
    const int cf[][4] = { { 128, 1, 1, 1 }, { 128, 4, 1, 1 }, { 160, 4, 1, 2 }, { 96, 2, 1, 3 },
                          { 128, 2, 2, 2 }, { 96, 4, 2, 1 }, { 160, 1, 1, 8 }, { 256, 2, 2, 1 },
                          { 192, 1, 4, 2 }, { 256, 1, 2, 4 } };
    for (size_t i = 0; i < sizeof(cf) / sizeof(cf[0]); i++) {
        rtv_cuda_gm_tune(gs, 1, cf[i][0], cf[i][1], cf[i][2], cf[i][3]);
        if (have)
            CHECK_MSG(rtv_cuda_gm_describe(gs, 300, 520, 456, cfg, sizeof(cfg)),
                      "gemm_mc %d/%d/%d/%d does not take 300 x 520 x 456", cf[i][0], cf[i][1],
                      cf[i][2], cf[i][3]);
        for (int f = 0; f < 3; f++) {
            t_matmul(300, 520, 456, fl[f], f != 2);
            t_matmul_ld(129, 264, 1000, fl[f], 1, 1000 + 24, 264 + 8);
        }
    }
    /* three K splits of SigLIP's fc2 (68 K steps: 23, 23, 22), which read NaN in bench_matmul */
    rtv_cuda_gm_tune(gs, 1, 160, 2, 1, 3);
    t_matmul(512, 1152, 4304, RTV_MM_ACCUM, 1);
    rtv_cuda_gm_tune(gs, 1, 128, 2, 1, 3);
    t_matmul(512, 1152, 4304, RTV_MM_ACCUM, 1);
    rtv_cuda_gm_tune(gs, 1, 0, 0, 0, 0); /* planned again, as the stream started */
}

/* matmul_geglu (CUDA: the few-row kernel's GeGLU epilogue where it takes the shape, else
 * cuBLASLt + the geglu pass) against the CPU's matmul then geglu: fused shapes (one row, the
 * expert's MLP, a row stride wider than K) and the two fallbacks (an F no tile divides, M > 64). */
static void t_matmul_geglu(int M, int F, int K, int ldx)
{
    float *x = rnd((size_t)M * ldx, 1), *w = rnd((size_t)2 * F * K, 1.0f / sqrtf(K));
    pair X = act(x, (size_t)M * ldx), W = wt(w, (size_t)2 * F * K);
    pair GU = act(NULL, (size_t)M * 2 * F), Y = act(NULL, (size_t)M * F);
    CHECK(C->matmul(cs, GU.c, 2 * F, X.c, ldx, W.c, NULL, M, 2 * F, K, 0) == 0);
    CHECK(C->geglu(cs, Y.c, GU.c, M, F) == 0);
    CHECK(G->matmul_geglu != NULL);
    int st = G->matmul_geglu(gs, Y.g, GU.g, X.g, ldx, W.g, M, F, K);
    CHECK_MSG(st == 0, "%s", rtv_last_error());
    char what[96];
    snprintf(what, sizeof(what), "matmul_geglu M=%d F=%d K=%d ldx=%d", M, F, K, ldx);
    compare(what, Y, 2e-2f);
    drop(X); drop(W); drop(GU); drop(Y);
    free(x); free(w);
}

/* matmul_rms_geglu (CUDA: one wgmma kernel unless RTV_WG_GEGLU=0; sm_90a, M > 64, F % 128 == 0
 * and K % 64 == 0; else the GEMM and rms_geglu) against the CPU's matmul then rms_geglu. The
 * kernel's cases: the prefix's shape scaled down in F, a last row tile cut short, fewer K steps
 * than ring stages (3, 1) and more (9: the ring wraps twice); then two fallbacks. */
static void t_matmul_rms_geglu(int M, int F, int K)
{
    float *x = rnd((size_t)M * K, 1), *w = rnd((size_t)2 * F * K, 1.0f / sqrtf(K));
    pair X = act(x, (size_t)M * K), W = wt(w, (size_t)2 * F * K);
    pair GU = act(NULL, (size_t)M * 2 * F), Y = act(NULL, (size_t)M * F);
    CHECK(C->matmul(cs, GU.c, 2 * F, X.c, K, W.c, NULL, M, 2 * F, K, 0) == 0);
    CHECK(C->rms_geglu(cs, Y.c, GU.c, X.c, K, 1e-6f, M, F) == 0);
    CHECK(G->matmul_rms_geglu != NULL);
    int st = G->matmul_rms_geglu(gs, Y.g, GU.g, X.g, W.g, M, F, K, 1e-6f);
    CHECK_MSG(st == 0, "%s", rtv_last_error());
    char what[96];
    snprintf(what, sizeof(what), "matmul_rms_geglu M=%d F=%d K=%d", M, F, K);
    compare(what, Y, 2e-2f);
    drop(X); drop(W); drop(GU); drop(Y);
    free(x); free(w);
}

/* GELU after a GEMM, value by value: W = identity makes y = x exactly (bf16 inputs, fp32
 * accumulation), so y = gelu_tanh(x) rounded once. Inputs cover [-6, 6], where the tanh form
 * and the erf form of GELU differ by far more than a bf16 ulp (gelu(-3): -0.00364 vs -0.00405),
 * so this fails if an epilogue computes the erf form. */
static void t_gelu_exact(void)
{
    const int M = 64, K = 256;
    float *x = malloc(sizeof(float) * M * K), *w = calloc((size_t)K * K, sizeof(float));
    float *y = malloc(sizeof(float) * M * K);
    for (int i = 0; i < M * K; i++) x[i] = rtv_bf16_to_f32(rtv_f32_to_bf16(-6.0f + 12.0f * i / (M * K - 1)));
    for (int i = 0; i < K; i++) w[(size_t)i * K + i] = 1.0f;
    pair X = act(x, (size_t)M * K), W = wt(w, (size_t)K * K), Y = act(NULL, (size_t)M * K);
    CHECK(G->matmul(gs, Y.g, K, X.g, K, W.g, NULL, M, K, K, RTV_MM_GELU) == 0);
    CHECK(G->download(gs, y, Y.g, (size_t)M * K) == 0);
    CHECK(G->sync(gs) == 0);
    int bad = 0;
    for (int i = 0; i < M * K; i++) {
        double v = x[i], ref = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        double tol = fabs(ref) * (1.0 / 128) + 1e-6; /* one bf16 ulp and a half */
        if (fabs(y[i] - ref) > tol && bad++ < 5)
            fprintf(stderr, "  gelu(%g): %g, gelu_tanh %g\n", v, y[i], ref);
    }
    CHECK_MSG(bad == 0, "GELU after matmul: %d of %d values off gelu_tanh", bad, M * K);
    drop(X); drop(W); drop(Y);
    free(x); free(w); free(y);
}

static void t_norms(int rows, int dim)
{
    float *x = rnd((size_t)rows * dim, 3), *w = rnd(dim, 0.5f), *b = rnd(dim, 0.5f);
    pair X = act(x, (size_t)rows * dim), W = wt(w, dim), B = wt(b, dim);
    pair Y = act(NULL, (size_t)rows * dim);
    CHECK(C->layernorm(cs, Y.c, X.c, W.c, B.c, rows, dim, 1e-6f) == 0);
    CHECK(G->layernorm(gs, Y.g, X.g, W.g, B.g, rows, dim, 1e-6f) == 0);
    compare("layernorm", Y, 2e-2f);
    CHECK(C->rmsnorm(cs, Y.c, X.c, W.c, rows, dim, 1e-6f) == 0);
    CHECK(G->rmsnorm(gs, Y.g, X.g, W.g, rows, dim, 1e-6f) == 0);
    compare("rmsnorm", Y, 2e-2f);
    drop(X); drop(W); drop(B); drop(Y);
    free(x); free(w); free(b);
}

static void t_rope(int rows, int heads, int hd, int ld, int pos0)
{
    float *x = rnd((size_t)rows * ld, 2);
    pair X = act(x, (size_t)rows * ld);
    CHECK(C->rope(cs, X.c, ld, rows, heads, hd, pos0, 10000.0f) == 0);
    CHECK(G->rope(gs, X.g, ld, rows, heads, hd, pos0, 10000.0f) == 0);
    compare("rope", X, 2e-2f);
    drop(X);
    free(x);
}

/* The RMSNorm behind its GEMM (backend.h): rms_rope on a qkv-like row (q/k heads rotated, the
 * rest scaled, nothing past cols written: compare covers the whole stride) and rms_geglu. */
static void t_rms_fold(int rows, int dim, int heads, int hd, int cols, int ld, int ff)
{
    float *x = rnd((size_t)rows * dim, 3), *y = rnd((size_t)rows * ld, 2);
    float *gu = rnd((size_t)rows * 2 * ff, 2);
    pair X = act(x, (size_t)rows * dim), Y = act(y, (size_t)rows * ld);
    pair GU = act(gu, (size_t)rows * 2 * ff), F = act(NULL, (size_t)rows * ff);
    char what[128];
    CHECK(G->rms_rope != NULL && G->rms_geglu != NULL);
    CHECK(C->rms_rope(cs, Y.c, ld, cols, X.c, dim, 1e-6f, rows, heads, hd, 531, 1e4f) == 0);
    CHECK(G->rms_rope(gs, Y.g, ld, cols, X.g, dim, 1e-6f, rows, heads, hd, 531, 1e4f) == 0);
    snprintf(what, sizeof(what), "rms_rope rows=%d dim=%d heads=%d hd=%d cols=%d ld=%d", rows,
             dim, heads, hd, cols, ld);
    compare(what, Y, 2e-2f);
    CHECK(C->rms_geglu(cs, F.c, GU.c, X.c, dim, 1e-6f, rows, ff) == 0);
    CHECK(G->rms_geglu(gs, F.g, GU.g, X.g, dim, 1e-6f, rows, ff) == 0);
    snprintf(what, sizeof(what), "rms_geglu rows=%d dim=%d ff=%d", rows, dim, ff);
    compare(what, F, 2e-2f);
    drop(X); drop(Y); drop(GU); drop(F);
    free(x); free(y); free(gu);
}

/* rms_mlp (the end of an expert layer: o-proj when qd > 0, then the MLP block; one persistent
 * kernel on CUDA) against the CPU backend's matmul + residual, matmul, rms_geglu, matmul +
 * residual; applied twice, so the second launch finds the grid barrier and the split-K
 * counters reset by the first. */
static void t_rms_mlp(int rows, int dim, int ff, int qd, int qcols, int rheads, int hd)
{
    float *x = rnd((size_t)rows * dim, 2), *wgu = rnd((size_t)2 * ff * dim, 1.0f / sqrtf(dim));
    float *wd = rnd((size_t)dim * ff, 1.0f / sqrtf(ff));
    float *at = rnd((size_t)rows * (qd ? qd : 1), 1), *wo = rnd((size_t)dim * (qd ? qd : 1), 1.0f / sqrtf(qd ? qd : 1));
    float *wq = rnd((size_t)(qcols ? qcols : 1) * dim, 1.0f / sqrtf(dim));
    const int ldy = qcols + 8; /* a gap after each output row */
    pair X = act(x, (size_t)rows * dim), WGU = wt(wgu, (size_t)2 * ff * dim);
    pair WD = wt(wd, (size_t)dim * ff), GU = act(NULL, (size_t)rows * 2 * ff);
    pair F = act(NULL, (size_t)rows * ff), AT = act(at, (size_t)rows * (qd ? qd : 1));
    pair WO = wt(wo, (size_t)dim * (qd ? qd : 1)), WQ = wt(wq, (size_t)(qcols ? qcols : 1) * dim);
    pair Y = act(NULL, (size_t)rows * ldy);
    CHECK(G->rms_mlp != NULL);
    for (int rep = 0; rep < 2; rep++) {
        if (qd) CHECK(C->matmul(cs, X.c, dim, AT.c, qd, WO.c, NULL, rows, dim, qd, RTV_MM_ACCUM) == 0);
        CHECK(C->matmul(cs, GU.c, 2 * ff, X.c, dim, WGU.c, NULL, rows, 2 * ff, dim, 0) == 0);
        CHECK(C->rms_geglu(cs, F.c, GU.c, X.c, dim, 1e-6f, rows, ff) == 0);
        CHECK(C->matmul(cs, X.c, dim, F.c, ff, WD.c, NULL, rows, dim, ff, RTV_MM_ACCUM) == 0);
        if (qcols) {
            CHECK(C->matmul(cs, Y.c, ldy, X.c, dim, WQ.c, NULL, rows, qcols, dim, 0) == 0);
            CHECK(C->rms_rope(cs, Y.c, ldy, qcols, X.c, dim, 1e-6f, rows, rheads, hd, 517, 1e4f) == 0);
        }
        /* after: the o-proj weights as the L2 hint (a real range: the prefetch runs, results unchanged) */
        rtv_qkv_next nq = { WQ.g, Y.g, ldy, qcols, rheads, hd, 517, 1e4f, qd ? WO.g : NULL,
                            (size_t)dim * qd * 2 };
        int st = G->rms_mlp(gs, X.g, qd ? AT.g : NULL, qd ? WO.g : NULL, qd, WGU.g, WD.g, GU.g,
                            F.g, dim, 1e-6f, rows, ff, qcols ? &nq : NULL);
        CHECK_MSG(st == 0, "%s", rtv_last_error());
    }
    char what[128];
    snprintf(what, sizeof(what), "rms_mlp x2 rows=%d dim=%d ff=%d qd=%d", rows, dim, ff, qd);
    compare(what, X, 2e-2f);
    if (qcols) {
        snprintf(what, sizeof(what), "rms_mlp next qkv rows=%d dim=%d cols=%d heads=%d hd=%d",
                 rows, dim, qcols, rheads, hd);
        /* the gap columns were never written on either side: zero-fill both to compare */
        float *z = calloc((size_t)rows * ldy, sizeof(float)), *yc = malloc((size_t)rows * ldy * 4);
        CHECK(C->download(cs, yc, Y.c, (size_t)rows * ldy) == 0);
        CHECK(C->sync(cs) == 0);
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < qcols; k++) z[(size_t)r * ldy + k] = yc[(size_t)r * ldy + k];
        pair Z = act(z, (size_t)rows * ldy);
        for (int r = 0; r < rows; r++) /* the GPU's rows into Z's, gaps stay 0 */
            CHECK(G->copy2d(gs, rtv_act_at(G, Z.g, (size_t)r * ldy), qcols,
                            rtv_act_at(G, Y.g, (size_t)r * ldy), qcols, 1, qcols) == 0);
        compare(what, Z, 2e-2f);
        drop(Z);
        free(z); free(yc);
    }
    drop(X); drop(WGU); drop(WD); drop(GU); drop(F); drop(AT); drop(WO); drop(WQ); drop(Y);
    free(x); free(wgu); free(wd); free(at); free(wo); free(wq);
}

/* expert_layers (mk.cu, one persistent kernel per call) against encoder/gemma.c's layer run
 * op by op on the CPU: `layers` folded-norm layers on `rows` rows after kv_row keys of prefix,
 * twice in a row (its counters must start from zero again). Checks x and every layer's qkv
 * rows. last_ops (1..4; 0: all) stops both after that many ops of the last layer: 1 checks
 * the qkv tasks alone, 3 the attention and o-proj through x. Where the kernel cannot run (not
 * sm_90a) the op declines and the case is reported. */
static void t_expert_layers(int rows, int dim, int ff, int heads, int kvh, int layers,
                            int kv_row, int lim_r, int lim_k, int last_ops, int akeys)
{
    const int hd = 256, Q = heads * hd, QKV = (heads + 2 * kvh) * hd, keys = kv_row + rows;
    char what[160];
    if (!G->expert_layers || !rtv_cuda_mk_usable(gs)) {
        /* only sm_90a builds the kernel: elsewhere it is reported, on an H100 it is a failure */
        int dev = 0, major = 0, minor = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
        CHECK_MSG(major != 9 || minor != 0, "expert_layers: the persistent kernel is not usable "
                  "on this compute capability 9.0 GPU");
        printf("expert_layers rows=%d: the persistent kernel needs sm_90a (this GPU: %d.%d)\n",
               rows, major, minor);
        return;
    }
    float *x = rnd((size_t)rows * dim, 2);
    pair X = act(x, (size_t)rows * dim), AT = act(NULL, (size_t)rows * Q);
    pair GU = act(NULL, (size_t)rows * 2 * ff), F = act(NULL, (size_t)rows * ff);
    pair LQ[4], WQ[4], WO[4], WG[4], WD[4];
    void *lq[4];
    const void *wq[4], *wo[4], *wg[4], *wd[4];
    float *hosts[5 * 4];
    for (int l = 0; l < layers; l++) {
        float *h;
        hosts[5 * l] = h = rnd((size_t)keys * QKV, 1); /* prefix K/V; suffix rows overwritten */
        LQ[l] = act(h, (size_t)keys * QKV);
        hosts[5 * l + 1] = h = rnd((size_t)QKV * dim, 1.5f / sqrtf(dim));
        WQ[l] = wt(h, (size_t)QKV * dim);
        hosts[5 * l + 2] = h = rnd((size_t)dim * Q, 1.0f / sqrtf(Q));
        WO[l] = wt(h, (size_t)dim * Q);
        hosts[5 * l + 3] = h = rnd((size_t)2 * ff * dim, 1.5f / sqrtf(dim));
        WG[l] = wt(h, (size_t)2 * ff * dim);
        hosts[5 * l + 4] = h = rnd((size_t)dim * ff, 1.0f / sqrtf(ff));
        WD[l] = wt(h, (size_t)dim * ff);
        lq[l] = LQ[l].g;
        wq[l] = WQ[l].g;
        wo[l] = WO[l].g;
        wg[l] = WG[l].g;
        wd[l] = WD[l].g;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    const rtv_expert_step e = { rows, dim, ff, heads, kvh, hd, layers, kv_row, lim_r, lim_k,
                                1e-6f, 1e4f, X.g, lq, wq, wo, wg, wd };
    CHECK(rtv_cuda_mk_tune(gs, last_ops, akeys));
    for (int rep = 0; rep < 2; rep++) {
        for (int l = 0; l < layers; l++) {
            const int nops = l == layers - 1 && last_ops ? last_ops : 5;
            void *y = (float *)LQ[l].c + (size_t)kv_row * QKV;
            CHECK(C->matmul(cs, y, QKV, X.c, dim, WQ[l].c, NULL, rows, QKV, dim, 0) == 0);
            CHECK(C->rms_rope(cs, y, QKV, QKV, X.c, dim, 1e-6f, rows, heads + kvh, hd, kv_row,
                              1e4f) == 0);
            if (nops < 3) /* the attention's output is not visible without the o-proj */
                continue;
            CHECK(C->attention(cs, AT.c, Q, y, QKV, (float *)LQ[l].c + Q,
                               (float *)LQ[l].c + Q + kvh * hd, QKV, keys, NULL, NULL, 0, 0,
                               rows, heads, kvh, hd, scale, lim_r, lim_k) == 0);
            CHECK(C->matmul(cs, X.c, dim, AT.c, Q, WO[l].c, NULL, rows, dim, Q, RTV_MM_ACCUM) == 0);
            if (nops < 5) /* ff is not visible without the down projection */
                continue;
            CHECK(C->matmul(cs, GU.c, 2 * ff, X.c, dim, WG[l].c, NULL, rows, 2 * ff, dim, 0) == 0);
            CHECK(C->rms_geglu(cs, F.c, GU.c, X.c, dim, 1e-6f, rows, ff) == 0);
            CHECK(C->matmul(cs, X.c, dim, F.c, ff, WD[l].c, NULL, rows, dim, ff,
                            RTV_MM_ACCUM) == 0);
        }
        const int st = G->expert_layers(gs, &e);
        CHECK_MSG(st == 0, "expert_layers rows=%d: %d %s", rows, st,
                  st == RTV_E_UNSUPPORTED ? "(declined)" : rtv_last_error());
        CHECK(G->sync(gs) == 0);
    }
    CHECK(rtv_cuda_mk_tune(gs, 0, 2)); /* back to the defaults */
    snprintf(what, sizeof(what), "expert_layers x2 x rows=%d dim=%d ff=%d heads=%d layers=%d "
             "kv_row=%d limit=%d/%d ops=%d akeys=%d", rows, dim, ff, heads, layers, kv_row, lim_r,
             lim_k, last_ops, akeys);
    compare(what, X, 3e-2f);
    for (int l = 0; l < layers; l++) {
        snprintf(what, sizeof(what), "expert_layers qkv rows of layer %d (rows=%d kv_row=%d)", l,
                 rows, kv_row);
        compare(what, LQ[l], 3e-2f); /* prefix rows untouched on both, suffix rows computed */
    }
    for (int l = 0; l < layers; l++) {
        drop(LQ[l]); drop(WQ[l]); drop(WO[l]); drop(WG[l]); drop(WD[l]);
        for (int i = 0; i < 5; i++) free(hosts[5 * l + i]);
    }
    drop(X); drop(AT); drop(GU); drop(F);
    free(x);
}

static void t_attention(int n_q, int n0, int n1, int heads, int kvh, int hd, int lim_r, int lim_k)
{
    int ldq = heads * hd + 2 * kvh * hd; /* fused qkv layout */
    /* seg 0 has readable rows up to RTV_ATTN_KEY_PAD(n0), as the op's contract asks */
    const size_t n0p = (size_t)RTV_ATTN_KEY_PAD(n0);
    float *q = rnd((size_t)n_q * ldq, 2), *kv0 = rnd(n0p * 2 * kvh * hd, 2);
    float *kv1 = rnd((size_t)(n1 ? n1 : 1) * ldq, 2);
    pair Q = act(q, (size_t)n_q * ldq), KV0 = act(kv0, n0p * 2 * kvh * hd);
    pair KV1 = act(kv1, (size_t)(n1 ? n1 : 1) * ldq), O = act(NULL, (size_t)n_q * heads * hd);
    int ld0 = 2 * kvh * hd;
    const void *k0c = KV0.c, *v0c = rtv_cact_at(C, KV0.c, kvh * hd);
    const void *k0g = KV0.g, *v0g = rtv_cact_at(G, KV0.g, kvh * hd);
    const void *k1c = n1 ? rtv_cact_at(C, KV1.c, heads * hd) : NULL;
    const void *v1c = n1 ? rtv_cact_at(C, KV1.c, (heads + kvh) * hd) : NULL;
    const void *k1g = n1 ? rtv_cact_at(G, KV1.g, heads * hd) : NULL;
    const void *v1g = n1 ? rtv_cact_at(G, KV1.g, (heads + kvh) * hd) : NULL;
    float sc = 1.0f / sqrtf((float)hd);
    CHECK(C->attention(cs, O.c, heads * hd, Q.c, ldq, k0c, v0c, ld0, n0, k1c, v1c, ldq, n1, n_q,
                       heads, kvh, hd, sc, lim_r, lim_k) == 0);
    int st = G->attention(gs, O.g, heads * hd, Q.g, ldq, k0g, v0g, ld0, n0, k1g, v1g, ldq, n1,
                          n_q, heads, kvh, hd, sc, lim_r, lim_k);
    CHECK_MSG(st == 0, "%s", rtv_last_error());
    char what[128];
    snprintf(what, sizeof(what), "attention q=%d k=%d+%d heads=%d/%d hd=%d limit=%d/%d", n_q, n0,
             n1, heads, kvh, hd, lim_r, lim_k);
    compare(what, O, 3e-2f);
    drop(Q); drop(KV0); drop(KV1); drop(O);
    free(q); free(kv0); free(kv1);
}

/* attention_batch (SigLIP's views in one launch) against the CPU backend's attention() per
 * item: nb items laid out as the vision tower lays out its views (fused qkv rows, item i at row
 * i * n), and a head_dim the one-kernel path does not take (the per-item fallback). */
static void t_attention_batch(int nb, int n, int heads, int hd)
{
    const int ldq = 3 * heads * hd, W = heads * hd;
    float *q = rnd((size_t)nb * n * ldq, 2);
    pair Q = act(q, (size_t)nb * n * ldq), O = act(NULL, (size_t)nb * n * W);
    float sc = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < nb; i++) {
        const void *qi = rtv_cact_at(C, Q.c, (size_t)i * n * ldq);
        CHECK(C->attention(cs, rtv_act_at(C, O.c, (size_t)i * n * W), W, qi, ldq,
                           rtv_cact_at(C, qi, W), rtv_cact_at(C, qi, 2 * W), ldq, n, NULL, NULL,
                           0, 0, n, heads, heads, hd, sc, 0, 0) == 0);
    }
    int st = G->attention_batch(gs, nb, O.g, W, (size_t)n * W, Q.g, ldq, (size_t)n * ldq,
                                rtv_cact_at(G, Q.g, W), rtv_cact_at(G, Q.g, 2 * W), ldq,
                                (size_t)n * ldq, n, n, heads, heads, hd, sc);
    CHECK_MSG(st == 0, "%s", rtv_last_error());
    char what[96];
    snprintf(what, sizeof(what), "attention_batch %d x (q=k=%d heads=%d hd=%d)", nb, n, heads, hd);
    compare(what, O, 3e-2f);
    drop(Q); drop(O);
    free(q);
}

static void t_elementwise(void)
{
    int rows = 37, ff = 300, dim = 130, period = 7;
    float *gu = rnd((size_t)rows * 2 * ff, 3), *y = rnd((size_t)rows * dim, 1), *w = rnd((size_t)period * dim, 1);
    pair GU = act(gu, (size_t)rows * 2 * ff), Y = act(NULL, (size_t)rows * ff);
    CHECK(C->geglu(cs, Y.c, GU.c, rows, ff) == 0);
    CHECK(G->geglu(gs, Y.g, GU.g, rows, ff) == 0);
    compare("geglu", Y, 2e-2f);
    { /* ff % 8 == 0: the 16-byte kernel */
        int r2 = 9, f2 = 1024;
        float *gu2 = rnd((size_t)r2 * 2 * f2, 3);
        pair G2 = act(gu2, (size_t)r2 * 2 * f2), Y3 = act(NULL, (size_t)r2 * f2);
        CHECK(C->geglu(cs, Y3.c, G2.c, r2, f2) == 0);
        CHECK(G->geglu(gs, Y3.g, G2.g, r2, f2) == 0);
        compare("geglu ff=1024", Y3, 2e-2f);
        drop(G2); drop(Y3);
        free(gu2);
    }
    pair Y2 = act(y, (size_t)rows * dim), W = wt(w, (size_t)period * dim);
    CHECK(C->add_weight_rows(cs, Y2.c, W.c, rows, dim, period) == 0);
    CHECK(G->add_weight_rows(gs, Y2.g, W.g, rows, dim, period) == 0);
    compare("add_weight_rows", Y2, 2e-2f);
    CHECK(C->axpy(cs, Y2.c, GU.c, -0.1f, (size_t)rows * dim) == 0);
    CHECK(G->axpy(gs, Y2.g, GU.g, -0.1f, (size_t)rows * dim) == 0);
    compare("axpy", Y2, 2e-2f);
    CHECK(C->scale(cs, Y2.c, Y2.c, 45.25f, (size_t)rows * dim) == 0);
    CHECK(G->scale(gs, Y2.g, Y2.g, 45.25f, (size_t)rows * dim) == 0);
    compare("scale", Y2, 2e-2f);
    pair M = act(NULL, dim);
    CHECK(C->mean_rows(cs, M.c, Y2.c, dim, rows, dim) == 0);
    CHECK(G->mean_rows(gs, M.g, Y2.g, dim, rows, dim) == 0);
    compare("mean_rows", M, 2e-2f);
    pair D = act(NULL, 20 * 40);
    CHECK(C->copy2d(cs, D.c, 40, GU.c, 2 * ff, 20, 33) == 0);
    CHECK(G->copy2d(gs, D.g, 40, GU.g, 2 * ff, 20, 33) == 0);
    /* only the copied columns are defined: compare through a second copy into a dense block */
    pair D2 = act(NULL, 20 * 33);
    CHECK(C->copy2d(cs, D2.c, 33, D.c, 40, 20, 33) == 0);
    CHECK(G->copy2d(gs, D2.g, 33, D.g, 40, 20, 33) == 0);
    compare("copy2d", D2, 1e-6f);
    drop(GU); drop(Y); drop(Y2); drop(W); drop(M); drop(D); drop(D2);
    free(gu); free(y); free(w);
}

/* pin: the frame lies in page-locked memory (host_pin, as the runtime's camera buffers), so
 * the CUDA backend copies it by one DMA instead of through staging; the frame buffer then ends
 * right after the last row's pixels (stride > 3 w: padding that must not be read past) */
static void t_image(int w, int h, int pin)
{
    int out = 224, p = 14, stride = w * 3 + (pin ? 12 : 0);
    size_t bytes = (size_t)stride * (h - 1) + (size_t)w * 3;
    uint8_t *rgb = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) rgb[i] = (uint8_t)((i * 2654435761u) >> 24);
    if (pin) CHECK(G->host_pin(rgb, bytes) == 0);
    pair I = act(NULL, (size_t)out * out * 3);
    CHECK(C->preprocess(cs, I.c, rgb, w, h, stride, out) == 0);
    CHECK(G->preprocess(gs, I.g, rgb, w, h, stride, out) == 0);
    if (pin) {
        /* the DMA is stream-ordered: the frame may change once the stream is synced */
        CHECK(G->sync(gs) == 0);
        memset(rgb, 0, bytes);
        G->host_unpin(rgb);
    }
    char what[64];
    snprintf(what, sizeof(what), "preprocess %dx%d%s", w, h, pin ? " pinned" : "");
    compare(what, I, 1e-2f);
    int g = out / p;
    pair P = act(NULL, (size_t)g * g * 3 * p * p);
    CHECK(C->patchify(cs, P.c, I.c, 1, out, p) == 0);
    CHECK(G->patchify(gs, P.g, I.g, 1, out, p) == 0);
    compare("patchify", P, 1e-2f);
    drop(I); drop(P);
    free(rgb);
}

int main(int argc, char **argv)
{
    C = rtv_backend_cpu();
    setenv("RTV_FUSED_MLP", "1", 1); /* rms_mlp and its fused kernel (opt-in) */
    setenv("RTV_NORM_FOLD", "1", 1); /* rms_rope / rms_geglu present even if the caller's
                                      * environment switched them off */
    setenv("RTV_WG_GEGLU", "1", 1);  /* matmul_rms_geglu's wgmma kernel, whatever the caller set */
    setenv("RTV_MK", "1", 1);        /* expert_layers' persistent kernel (opt-in; only the
                                      * expert_layers cases call it) */
    G = rtv_backend_cuda();
    if (!G) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    CHECK(C->stream_new(&cs) == 0);
    CHECK(G->stream_new(&gs) == 0);
    int fl[] = { 0, RTV_MM_GELU, RTV_MM_SILU, RTV_MM_ACCUM };
    /* matmul through cuBLASLt (mode 0, the default) and through the few-row kernel (mode 1,
     * skinny.cu, opt-in), which takes the M <= 64 shapes below */
    for (int mode = 0; mode < 2; mode++) {
        rtv_cuda_matmul_tune(gs, mode, 0, 0);
        for (int i = 0; i < 4; i++) {
            t_matmul(7, 33, 64, fl[i], 1);
            t_matmul(256, 1152, 1152, fl[i], i != 3);
            t_matmul(51, 2560, 1024, fl[i], 0);
            /* the few-row kernel (skinny.cu): one row, split K with its cross-CTA reduction, one
             * column tile, every row count of an n-tile, wide strides */
            t_matmul(1, 1024, 1024, fl[i], 1);
            t_matmul(50, 1024, 4096, fl[i], i != 3);
            t_matmul(64, 32, 2048, fl[i], 1);
            t_matmul(13, 96, 384, fl[i], 0);
            t_matmul_ld(51, 1024, 2048, fl[i], 0, 2048 + 64, 2560);
        }
        /* repeated split-K calls: each must find its arrival counters back at zero (a stale count
         * would leave y unwritten, which the accumulate case shows) */
        for (int r = 0; r < 3; r++) t_matmul(50, 1024, 4096, RTV_MM_ACCUM, 0);
        t_matmul_geglu(51, 4096, 1024, 1024); /* the expert's MLP */
        t_matmul_geglu(1, 256, 512, 512);
        t_matmul_geglu(13, 96, 384, 392);
        t_matmul_geglu(64, 40, 128, 128);     /* no tile divides F: cuBLASLt + geglu */
        t_matmul_geglu(100, 128, 256, 256);   /* M > 64: cuBLASLt + geglu */
    }
    rtv_cuda_matmul_tune(gs, 0, 0, 0);
    t_matmul_mc();
    t_matmul_rms_geglu(512, 1024, 2048);
    t_matmul_rms_geglu(200, 256, 192);
    t_matmul_rms_geglu(130, 128, 64);
    t_matmul_rms_geglu(300, 384, 576);
    t_matmul_rms_geglu(51, 4096, 1024); /* M <= 64: the GEMM and rms_geglu */
    t_matmul_rms_geglu(100, 40, 128);   /* F % 128: the same */
    {
        void *d = NULL;
        CHECK(G->matmul_rms_geglu(gs, d, d, d, d, 0, 128, 64, 1e-6f) == RTV_E_ARG &&
              strstr(rtv_last_error(), "matmul_rms_geglu"));
    }
    t_gelu_exact();
    t_norms(7, 33);
    t_norms(5, 520); /* 16-byte rows, not a multiple of 256: one-warp-per-row kernels */
    t_norms(9, 1152); /* SigLIP width: LayerNorm in registers with a partial last chunk */
    t_norms(64, 2048);
    t_norms(51, 1024);
    t_rope(9, 8, 256, 2560, 0);
    t_rope(51, 1, 32, 64, 531);
    t_rope(512, 9, 256, 2560, 0);                     /* the prefix: q and k heads, 8 pairs per thread */
    t_rope(5, 3, 12, 40, 7);                          /* half head_dim not a multiple of 8: one pair per thread */
    t_rope(7, 2, 16, 36, 3);                          /* row stride not a multiple of 8 */
    t_rms_fold(51, 1024, 9, 256, 2560, 2560, 4096);   /* the expert: q+k rotated, v scaled */
    t_rms_fold(1, 1024, 9, 256, 2560, 2560 + 64, 4096); /* one row, a gap after the row */
    t_rms_fold(7, 36, 2, 12, 30, 33, 20);             /* odd sizes: scalar paths */
    t_rms_fold(512, 2048, 9, 256, 2560, 2560, 16384); /* the prefix: CTAs loop over a row */
    t_rms_fold(300, 40, 2, 12, 30, 33, 2001);         /* looping on the scalar paths */
    /* rms_rope with the angles shared by the heads (norm.cu rms_rope_h_k) */
    t_rms_fold(512, 2048, 1, 256, 512, 512, 64);      /* the prefix's K/V-only last layer */
    t_rms_fold(33, 256, 3, 128, 3 * 128 + 40, 3 * 128 + 42, 64); /* few rows: per head */
    t_rms_fold(700, 128, 2, 128, 300, 301, 64);       /* odd row stride: per head */
    t_rms_fold(9, 64, 20, 64, 20 * 64, 20 * 64, 64);  /* more heads than it holds: per head */
    t_rms_fold(600, 200, 3, 128, 3 * 128 + 20, 3 * 128 + 22, 64); /* many rows, a tail, a gap */
    t_rms_fold(601, 36, 3, 128, 3 * 128 + 2, 3 * 128 + 2, 64); /* x rows unaligned: scalar sum */
    t_rms_mlp(51, 1024, 4096, 2048, 2560, 9, 256);    /* the expert's layer end + next qkv, state row */
    t_rms_mlp(50, 1024, 4096, 2048, 2560, 9, 256);    /* the action rows alone */
    t_rms_mlp(50, 1024, 4096, 2048, 0, 0, 0);         /* the last layer: no next qkv */
    t_rms_mlp(50, 1024, 4096, 0, 0, 0, 0);            /* the MLP block alone */
    /* all the expert's layers of a step in one kernel (mk.cu): pi0's step 0 (the state token
     * sees the prefix and itself) and later steps, with 2 of its 18 layers; a narrow model with
     * two heads and few rows */
    t_expert_layers(51, 1024, 4096, 8, 1, 1, 512, 1, 513, 1, 1); /* part by part: qkv */
    t_expert_layers(51, 1024, 4096, 8, 1, 1, 512, 1, 513, 3, 1); /* + attention, o-proj */
    t_expert_layers(51, 1024, 4096, 8, 1, 2, 512, 1, 513, 0, 1);
    t_expert_layers(50, 1024, 4096, 8, 1, 2, 513, 0, 0, 0, 1);
    /* attention splits of 2 chunks (the default: four splits) and of 4 (two splits combined
     * from shared memory): several chunks per split */
    t_expert_layers(51, 1024, 4096, 8, 1, 1, 512, 1, 513, 3, 2);
    t_expert_layers(50, 1024, 4096, 8, 1, 2, 513, 0, 0, 0, 2);
    t_expert_layers(51, 1024, 4096, 8, 1, 1, 512, 1, 513, 3, 4);
    t_expert_layers(7, 256, 512, 2, 1, 3, 37, 0, 0, 0, 1);
    /* 64 rows (chunk 63 and the state token): O and DOWN splits capped to fit */
    t_expert_layers(64, 1024, 4096, 8, 1, 1, 512, 1, 513, 0, 1);
    t_rms_mlp(64, 1024, 4096, 2048, 2560, 9, 256);    /* chunk 63 + the state row */
    t_rms_mlp(1, 1024, 4096, 2048, 2560, 9, 256);     /* one row */
    t_rms_mlp(13, 256, 1024, 512, 640, 3, 128);       /* pi0-tiny sized: rotated and scaled tiles */
    t_rms_mlp(9, 64, 128, 192, 96, 2, 32);            /* two column blocks, one chunk per split */
    t_rms_mlp(5, 40, 20, 24, 36, 2, 12);              /* not the kernel's shape: the unfused ops */
    t_attention(256, 256, 0, 16, 16, 72, 0, 0);       /* SigLIP per view */
    t_attention(532, 532, 0, 8, 1, 256, 0, 0);        /* pi0 prefix, MQA */
    t_attention(51, 532, 51, 8, 1, 256, 1, 533);      /* suffix over cache, state-row limit */
    t_attention(13, 40, 9, 4, 2, 32, 3, 41);          /* GQA, odd sizes */
    t_attention(50, 563, 0, 8, 1, 256, 0, 0);         /* action rows over prefix + suffix, padded keys */
    t_attention(1, 513, 0, 8, 1, 256, 0, 0);          /* state token */
    t_attention(51, 563, 0, 8, 1, 256, 1, 513);       /* limit rule on one segment */
    t_attention(20, 100, 0, 4, 2, 256, 0, 0);         /* GQA at head_dim 256 */
    t_attention(64, 1024, 0, 2, 1, 256, 0, 0);        /* 64 rows, 1024 keys */
    t_attention(33, 37, 0, 3, 1, 256, 5, 9);          /* keys not a multiple of 8 or 16 */
    /* the one-kernel path (attn_small.cu: n_k <= 256, head_dim 16/32/64/72/128) */
    t_attention(100, 200, 0, 4, 1, 16, 0, 0);         /* MQA, rows past one CTA */
    t_attention(65, 256, 0, 2, 2, 128, 3, 100);       /* head_dim 128, limit rule */
    t_attention(1, 9, 0, 8, 4, 64, 0, 0);             /* one row, 9 keys, GQA */
    t_attention(129, 129, 0, 16, 16, 72, 0, 0);       /* SigLIP head_dim, odd sizes */
    t_attention(7, 37, 0, 4, 2, 32, 2, 30);           /* odd keys with the limit rule */
    t_attention(4, 1100, 0, 2, 1, 64, 0, 0);          /* rows longer than the register softmax */
    /* few rows over many keys (the expert's shape; a split-key kernel for them, 35b0d97, was
     * slower and removed): key limits that end early, head_dim 128 past attn_small's keys, 5
     * keys at head_dim 256, 4096 keys */
    t_attention(24, 300, 0, 8, 1, 256, 3, 9);
    t_attention(40, 300, 0, 4, 1, 128, 2, 70);
    t_attention(64, 5, 0, 2, 1, 256, 0, 0);
    t_attention(3, 4096, 0, 8, 1, 256, 0, 0);
    t_attention_batch(2, 256, 16, 72);                /* SigLIP, two views in one launch */
    t_attention_batch(3, 100, 4, 32);                 /* odd rows, three items */
    t_attention_batch(2, 40, 2, 256);                 /* head_dim 256: one attention() per item */
    t_elementwise();
    t_image(320, 240, 0);
    t_image(120, 200, 0);
    t_image(224, 224, 0);
    t_image(640, 480, 1);
    t_image(224, 224, 1);
    C->stream_free(cs);
    G->stream_free(gs);
    return check_report(argv[0]);
}
