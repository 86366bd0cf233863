/* tests/cuda/bench_matmul.c — the action expert's GEMM shapes: cuBLASLt against the skinny
 * kernel (kernels/cuda/skinny.cu) in its tuning variants and the wgmma kernel (wgemm.cu). Not a test: a measuring tool for
 * kernel work (`bench_matmul [reps [shape [variant]]]`), run on the GPU machine.
 *
 * Weights rotate over enough copies (>= 256 MiB) that no launch finds its weights in L2, as in
 * the real cycle (0.6 GB of expert weights per Euler step). Each variant runs as a captured
 * graph of 64 launches, timed on the host around launch + sync; the median of the repetitions
 * is printed per GEMM, with the weight bandwidth it implies and the relative L2 error of the
 * output against the cuBLASLt result on the same inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/cuda/tune.h"
#include "runtime/status.h"

static const rtv_backend *G;
static rtv_stream *S;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, ": %s\n", rtv_last_error()); exit(1); } while (0)

typedef struct { const char *name; int M, N, K, flags, bias; } shape;
#define GEGLU 0x100 /* shape flag: matmul_geglu (y [M, N/2]) instead of matmul */
#define RMSGEGLU 0x200 /* shape flag: matmul_rms_geglu (y [M, N/2]) instead of matmul */
typedef struct { const char *name; int mode, wk, pct; } variant;

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "bench_matmul: reps must be 1..64, got '%s'\n", argv[1]);
        return 2;
    }
    const char *only_shape = argc > 2 ? argv[2] : NULL, *only_var = argc > 3 ? argv[3] : NULL;
    G = rtv_backend_cuda();
    if (!G) { printf("no CUDA device\n"); return 77; }
    if (G->stream_new(&S)) DIE("stream");
    shape sh[] = {
        { "qkv", 51, 2560, 1024, 0, 0 },          { "o+res", 51, 1024, 2048, RTV_MM_ACCUM, 0 },
        { "gate_up", 51, 8192, 1024, 0, 0 },      { "gate_up+geglu", 51, 8192, 1024, GEGLU, 0 },      { "down+res", 51, 1024, 4096, RTV_MM_ACCUM, 0 },
        { "mlp_in silu", 50, 1024, 1024, RTV_MM_SILU, 1 }, { "act_out", 50, 32, 1024, 0, 1 },
        { "qkv M=8", 8, 2560, 1024, 0, 0 },
        /* SigLIP (2 views of 256 tokens) and the prefix: cuBLASLt's candidates */
        { "v.qkv", 512, 3456, 1152, 0, 1 },        { "v.o+res", 512, 1152, 1152, RTV_MM_ACCUM, 1 },
        { "v.fc1 gelu", 512, 4304, 1152, RTV_MM_GELU, 1 }, { "v.fc2+res", 512, 1152, 4304, RTV_MM_ACCUM, 1 },
        { "p.qkv", 512, 2560, 2048, 0, 0 },        { "p.o+res", 512, 2048, 2048, RTV_MM_ACCUM, 0 },
        { "p.gate_up", 512, 32768, 2048, 0, 0 },   { "p.gate_up+geglu", 512, 32768, 2048, GEGLU, 0 },
        { "p.down+res", 512, 2048, 16384, RTV_MM_ACCUM, 0 },
        { "p.gate_up+rmsgeglu", 512, 32768, 2048, RMSGEGLU, 0 },
    };
    variant va[] = { { "cublasLt", 0, 0, 0 }, { "wgmma", 2, 0, 0 }, { "skinny auto", 1, 0, 0 },
                     { "sk bn64", 1, 1, 0 }, { "sk bn128", 1, 2, 0 },
                     { "sk bn64 50%", 1, 1, 50 }, { "sk bn128 50%", 1, 2, 50 },
                     { "sk bn64 200%", 1, 1, 200 }, { "sk bn128 200%", 1, 2, 200 },
                     { "lt algo 1", -1, 1, 0 }, { "lt algo 2", -1, 2, 0 }, { "lt algo 3", -1, 3, 0 },
                     { "lt algo 4", -1, 4, 0 }, { "lt algo 5", -1, 5, 0 },
                     /* gemm_mc.cu for M > 64: planned, and fixed as tile width / cm / cn /
                      * sk (cm: weight tile multicast over row tiles, cn: x tile over column
                      * tiles, sk: K splits) */
                     { "mc", 3, 0, 0 }, { "mc 128/1/1/1", 3, 128, 111 },
                     { "mc 128/4/1/1", 3, 128, 411 }, { "mc 128/2/2/1", 3, 128, 221 },
                     { "mc 128/4/2/1", 3, 128, 421 }, { "mc 128/2/2/2", 3, 128, 222 },
                     { "mc 128/4/1/2", 3, 128, 412 }, { "mc 256/1/1/1", 3, 256, 111 },
                     { "mc 256/2/1/1", 3, 256, 211 }, { "mc 256/4/1/1", 3, 256, 411 },
                     { "mc 256/2/2/1", 3, 256, 221 }, { "mc 256/2/1/2", 3, 256, 212 },
                     { "mc 192/4/1/1", 3, 192, 411 }, { "mc 160/2/1/3", 3, 160, 213 },
                     { "mc 96/4/2/1", 3, 96, 421 } };
    const int NV = sizeof(va) / sizeof(va[0]), L = 64;
    { /* the floor: a graph of tiny kernels (axpy on 64 elements) */
        void *v, *graph = NULL;
        float h[64] = { 0 };
        double t[64];
        if (G->alloc(&v, 256) || G->upload(S, v, h, 64) || G->sync(S) || G->capture_begin(S)) DIE("floor");
        for (int i = 0; i < 64; i++)
            if (G->axpy(S, v, v, 0.5f, 64)) DIE("floor");
        if (G->capture_end(S, &graph) || G->graph_launch(S, graph) || G->sync(S)) DIE("floor");
        for (int r = 0; r < reps && r < 64; r++) {
            double t0 = now();
            if (G->graph_launch(S, graph) || G->sync(S)) DIE("floor");
            t[r] = (now() - t0) / 64;
        }
        qsort(t, reps < 64 ? reps : 64, sizeof(double), cmpd);
        printf("graph launch floor (tiny kernel): %.2f us per kernel\n", t[(reps < 64 ? reps : 64) / 2] * 1e6);
        G->graph_free(graph);
        G->free(v);
    }
    printf("%-12s %-12s %9s %9s %10s %9s\n", "shape", "variant", "us/GEMM", "GB/s(w)", "rel.err",
           "TFLOP/s");
    for (size_t si = 0; si < sizeof(sh) / sizeof(sh[0]); si++) {
        shape s = sh[si];
        if (only_shape && strcmp(only_shape, s.name)) continue;
        if (s.flags & RMSGEGLU && !G->matmul_rms_geglu) {
            printf("%-12s (matmul_rms_geglu is not in the op table: RTV_WG_GEGLU=0)\n",
                   s.name);
            continue;
        }
        size_t wn = (size_t)s.N * s.K, wbytes = wn * 2;
        int copies = (int)((256u << 20) / wbytes) + 1;
        if (copies > L) copies = L;
        uint16_t *hw = malloc(wn * 2);
        void **w = calloc(copies, sizeof(void *));
        for (int c = 0; c < copies; c++) {
            for (size_t i = 0; i < wn; i++) hw[i] = rtv_f32_to_bf16(frand() / sqrtf(s.K));
            if (G->alloc(&w[c], wbytes) || G->upload_weight(w[c], hw, RTV_DT_BF16, wn))
                DIE("weights");
        }
        float *hx = malloc(sizeof(float) * s.M * (size_t)s.K), *hy = malloc(sizeof(float) * s.M * (size_t)s.N);
        float *ref = malloc(sizeof(float) * s.M * (size_t)s.N), *out = malloc(sizeof(float) * s.M * (size_t)s.N);
        float *hb = malloc(sizeof(float) * s.N);
        for (size_t i = 0; i < (size_t)s.M * s.K; i++) hx[i] = frand();
        for (size_t i = 0; i < (size_t)s.M * s.N; i++) hy[i] = frand();
        for (int i = 0; i < s.N; i++) hb[i] = frand();
        void *x, *y, *y0, *y2, *b = NULL;
        const size_t nout = (size_t)s.M * (s.flags & (GEGLU | RMSGEGLU) ? s.N / 2 : s.N);
        if (G->alloc(&y2, nout * 2) || G->alloc(&x, (size_t)s.M * s.K * 2) || G->alloc(&y, (size_t)s.M * s.N * 2) ||
            G->alloc(&y0, (size_t)s.M * s.N * 2) || G->alloc(&b, (size_t)s.N * 2) ||
            G->upload(S, x, hx, (size_t)s.M * s.K) || G->upload(S, y0, hy, (size_t)s.M * s.N) ||
            G->upload_weight(b, hb, RTV_DT_F32, s.N) || G->sync(S))
            DIE("inputs");
        for (int v = 0; v < NV; v++) {
            if (v && only_var && strcmp(only_var, va[v].name)) continue;
            /* the few-row kernels do not take M > 64; matmul_rms_geglu's kernel is "wgmma" */
            if (s.M > 64 && va[v].mode > 0 && va[v].mode != 3 &&
                !(s.flags & RMSGEGLU && va[v].mode == 2))
                continue;
            if (va[v].mode == 3 && (s.M <= 64 || s.flags & (GEGLU | RMSGEGLU))) continue;
            if (va[v].mode < 0 && !only_var) continue; /* cuBLASLt's candidates: on request */
            if (va[v].mode < 0) { /* cuBLASLt's wk-th candidate */
                rtv_cuda_matmul_tune(S, 0, 0, 0);
                rtv_cuda_lt_algo(S, va[v].wk);
            } else {
                rtv_cuda_lt_algo(S, 0);
                rtv_cuda_matmul_tune(S, va[v].mode == 1, va[v].wk, va[v].pct);
            }
            rtv_cuda_wgemm_tune(S, va[v].mode == 2); /* the wgmma kernel (wgemm.cu) */
            rtv_cuda_gg_tune(S, va[v].mode == 2);    /* and matmul_rms_geglu's (gemm_geglu.cu) */
            /* matmul's kernel for M > 64 (gemm_mc.cu): in its variants only */
            if (!rtv_cuda_gm_tune(S, va[v].mode == 3, va[v].wk, va[v].pct / 100,
                                  va[v].pct / 10 % 10, va[v].pct % 10) &&
                va[v].mode == 3) {
                printf("%-12s %-12s (no gemm_mc kernel here)\n", s.name, va[v].name);
                continue;
            }
            if (va[v].mode == 3) {
                char cfg[96];
                if (!rtv_cuda_gm_describe(S, s.M, s.N, s.K, cfg, sizeof(cfg))) {
                    printf("%-12s %-12s (does not fit this shape)\n", s.name, va[v].name);
                    continue;
                }
                if (!va[v].wk) printf("%-12s %-12s plan: %s\n", s.name, va[v].name, cfg);
            }
            /* correctness: one launch from y0 */
            if (G->copy2d(S, y, s.N, y0, s.N, s.M, s.N) ||
                (s.flags & RMSGEGLU ? G->matmul_rms_geglu(S, y2, y, x, w[0], s.M, s.N / 2, s.K,
                                                          1e-6f)
                 : s.flags & GEGLU ? G->matmul_geglu(S, y2, y, x, s.K, w[0], s.M, s.N / 2, s.K)
                                 : G->matmul(S, y, s.N, x, s.K, w[0], s.bias ? b : NULL, s.M,
                                             s.N, s.K, s.flags)) ||
                G->download(S, v ? out : ref, s.flags & (GEGLU | RMSGEGLU) ? y2 : y, nout) ||
                G->sync(S))
                DIE("%s %s", s.name, va[v].name);
            double e2 = 0, r2 = 0;
            if (v) {
                for (size_t i = 0; i < nout; i++) {
                    double d = (double)out[i] - ref[i];
                    e2 += d * d;
                    r2 += (double)ref[i] * ref[i];
                }
            }
            void *graph = NULL;
            if (G->capture_begin(S)) DIE("capture");
            for (int i = 0; i < L; i++)
                if (s.flags & RMSGEGLU ? G->matmul_rms_geglu(S, y2, y, x, w[i % copies], s.M,
                                                             s.N / 2, s.K, 1e-6f)
                    : s.flags & GEGLU ? G->matmul_geglu(S, y2, y, x, s.K, w[i % copies], s.M,
                                                        s.N / 2, s.K)
                                    : G->matmul(S, y, s.N, x, s.K, w[i % copies], s.bias ? b : NULL,
                                                s.M, s.N, s.K, s.flags))
                    DIE("%s %s (capture)", s.name, va[v].name);
            if (G->capture_end(S, &graph)) DIE("capture end");
            double t[64];
            if (G->graph_launch(S, graph) || G->sync(S)) DIE("warm-up");
            for (int r = 0; r < reps && r < 64; r++) {
                double t0 = now();
                if (G->graph_launch(S, graph) || G->sync(S)) DIE("replay");
                t[r] = (now() - t0) / L;
            }
            qsort(t, reps < 64 ? reps : 64, sizeof(double), cmpd);
            double med = t[(reps < 64 ? reps : 64) / 2];
            printf("%-12s %-12s %9.2f %9.0f %10.2e %9.1f\n", s.name, va[v].name, med * 1e6,
                   wbytes / med / 1e9, v ? sqrt(e2 / (r2 > 0 ? r2 : 1)) : 0.0,
                   2.0 * s.M * s.N * s.K / med / 1e12);
            G->graph_free(graph);
            if (va[v].mode == 2) rtv_cuda_wgemm_chain_report(S, stdout); /* RTV_WGMMA_TRACE=1 */
            static long long tr[1024 * 8];
            /* the trace is of the correctness launch above (eager; graph launches have none) */
            int nc = va[v].mode == 1 ? rtv_cuda_skinny_trace(S, tr, 1024)
                     : va[v].mode == 2 ? rtv_cuda_wgemm_trace(S, tr, 1024)
                     : va[v].mode == 3 ? rtv_cuda_gm_trace(S, tr, 1024) : 0;
            if (nc > 0 && va[v].mode == 3) { /* RTV_GM_TRACE=1: gemm_mc's phases, mean and max */
                static const char *nm[6] = { "dep wait", "first stage", "main loop", "exchange",
                                             "stage tile", "store" };
                double ph[6] = { 0 }, mx[6] = { 0 };
                long long t0min = tr[7], t0max = tr[7];
                for (int c = 0; c < nc; c++) {
                    const long long *q = tr + (size_t)c * 8;
                    if (q[7] < t0min) t0min = q[7];
                    if (q[7] > t0max) t0max = q[7];
                    long long prev = q[0];
                    for (int i = 0; i < 6; i++) {
                        const double dt = (double)(q[i + 1] - prev);
                        ph[i] += dt;
                        if (dt > mx[i]) mx[i] = dt;
                        prev = q[i + 1];
                    }
                }
                printf("  trace %d CTAs, start spread %lld ns; kcycles mean/max:", nc,
                       t0max - t0min);
                for (int i = 0; i < 6; i++)
                    printf(" %s %.2f/%.2f", nm[i], ph[i] / nc / 1e3, mx[i] / 1e3);
                printf("\n");
            } else if (nc > 0) { /* RTV_SKINNY_TRACE=1: phases of the last launch, mean over CTAs */
                double ph[6] = { 0 };
                int full = 0;
                long long t0min = tr[7], t0max = tr[7];
                for (int c = 0; c < nc; c++) {
                    const long long *q = tr + (size_t)c * 8;
                    if (q[7] < t0min) t0min = q[7];
                    if (q[7] > t0max) t0max = q[7];
                    if (!q[6]) continue; /* a CTA that left before the epilogue */
                    full++;
                    for (int i = 0; i < 6; i++) ph[i] += (double)(q[i + 1] - q[i]);
                }
                printf("  trace %d CTAs (%d to the end), start spread %lld ns; kcycles: issue %.2f "
                       "wait %.2f weights %.2f mma %.2f exchange %.2f epilogue %.2f\n", nc, full,
                       t0max - t0min, ph[0] / full / 1e3, ph[1] / full / 1e3, ph[2] / full / 1e3,
                       ph[3] / full / 1e3, ph[4] / full / 1e3, ph[5] / full / 1e3);
            }
        }
        for (int c = 0; c < copies; c++) G->free(w[c]);
        G->free(x); G->free(y); G->free(y0); G->free(y2); G->free(b);
        free(w); free(hw); free(hb); free(hx); free(hy); free(ref); free(out);
    }
    G->stream_free(S);
    return 0;
}
