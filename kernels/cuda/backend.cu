/* kernels/cuda/backend.cu — the "cuda" rtv_backend: bf16 activations and weights on the
 * device, fp32 accumulation; streams, memory, transfers and graph capture. The ops live in
 * the other files of this folder, one per op family. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "tune.h"

int rtv_cuda_fail(cudaError_t e, const char *what, const char *file, int line)
{
    return rtv_fail(RTV_E_DEVICE, "CUDA: %s failed: %s (%s) at %s:%d", what,
                    cudaGetErrorName(e), cudaGetErrorString(e), file, line);
}

int rtv_cublas_fail(int st, const char *what, const char *file, int line)
{
    return rtv_fail(RTV_E_DEVICE, "cuBLAS: %s failed with status %d (%s) at %s:%d", what, st,
                    cublasGetStatusString((cublasStatus_t)st), file, line);
}

void *rtv_cuda_scratch(rtv_stream *s, size_t bytes)
{
    size_t off = (s->scratch_used + 255) & ~(size_t)255;
    if (off + bytes > s->scratch_bytes) {
        rtv_fail(RTV_E_NOMEM, "CUDA stream scratch: one op needs %zu bytes, %zu of %zu taken "
                 "(raise RTV_CUDA_SCRATCH_MB)", bytes, s->scratch_used, s->scratch_bytes);
        return NULL;
    }
    s->scratch_used = off + bytes;
    return s->scratch + off;
}

void *rtv_cuda_staging(rtv_stream *s, size_t bytes)
{
    size_t off = (s->staging_used + 255) & ~(size_t)255;
    if (off + bytes > s->staging_bytes) {
        rtv_fail(RTV_E_NOMEM, "CUDA stream staging: need %zu more bytes, %zu of %zu used "
                 "(raise RTV_CUDA_STAGING_MB)", bytes, s->staging_used, s->staging_bytes);
        return NULL;
    }
    s->staging_used = off + bytes;
    return s->staging + off;
}

static size_t env_mb(const char *name, size_t def_mb)
{
    const char *v = getenv(name);
    long mb = v ? strtol(v, NULL, 10) : 0;
    return (size_t)(mb > 0 ? mb : (long)def_mb) << 20;
}

/* Stream creation hook: the SM-split code (split.cu) installs a function that returns the
 * cudaStream_t for the calling thread's side and that side's SM count; NULL means an ordinary
 * non-blocking stream on the whole GPU. */
extern "C" int (*rtv_cuda_stream_factory)(cudaStream_t *out, int *sm_count);
int (*rtv_cuda_stream_factory)(cudaStream_t *out, int *sm_count) = NULL;
extern "C" void *rtv_cuda_split_ctx(void);
extern "C" int rtv_cuda_split_push(void *ctx);
extern "C" void rtv_cuda_split_pop(void);

static void cuda_stream_free(rtv_stream *s)
{
    if (!s) return;
    if (s->wg_chain) rtv_cuda_wgemm_chain_report(s, stderr); /* RTV_WGMMA_TRACE=1 */
    if (s->wa_trace) rtv_cuda_attn_wg_report(s, stderr); /* RTV_WG_ATTN_TRACE=1 */
    rtv_cuda_plans_free(s);
    rtv_cuda_mk_free(s);
    if (s->blas) cublasDestroy(s->blas);
    if (s->lt) cublasLtDestroy(s->lt);
    cudaFree(s->blas_ws);
    cudaFree(s->lt_ws);
    cudaFree(s->scratch);
    cudaFree(s->sk_cnt);
    cudaFree(s->sk_trace);
    cudaFree(s->wg_trace);
    cudaFree(s->gm_trace);
    cudaFree(s->wg_chain);
    cudaFree(s->wa_trace);
    cudaFree(s->mlp_sync);
    cudaFree(s->mlp_trace);
    cudaFreeHost(s->staging);
    if (s->done) cudaEventDestroy(s->done);
    if (s->s) cudaStreamDestroy(s->s);
    free(s);
}

static int cuda_stream_new(rtv_stream **out)
{
    *out = NULL;
    rtv_stream *s = (rtv_stream *)calloc(1, sizeof(*s));
    if (!s) return rtv_fail(RTV_E_NOMEM, "CUDA stream: out of host memory");
    int st = RTV_OK, sms = 0, pushed = 0;
    cudaError_t e;
    void *ctx = NULL;
    if (rtv_cuda_stream_factory) {
        if ((st = rtv_cuda_stream_factory(&s->s, &sms))) goto fail;
    } else if ((e = cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking)) != cudaSuccess) {
        st = rtv_cuda_fail(e, "cudaStreamCreateWithFlags", __FILE__, __LINE__);
        goto fail;
    }
    s->blas_ws_bytes = 32u << 20;
    s->lt_ws_bytes = 32u << 20;
    s->scratch_bytes = env_mb("RTV_CUDA_SCRATCH_MB", 128);
    s->staging_bytes = env_mb("RTV_CUDA_STAGING_MB", 64);
    if ((e = cudaMalloc(&s->blas_ws, s->blas_ws_bytes)) != cudaSuccess ||
        (e = cudaMalloc(&s->lt_ws, s->lt_ws_bytes)) != cudaSuccess ||
        (e = cudaMalloc((void **)&s->scratch, s->scratch_bytes)) != cudaSuccess ||
        (e = cudaHostAlloc((void **)&s->staging, s->staging_bytes, cudaHostAllocDefault)) !=
            cudaSuccess) {
        st = rtv_cuda_fail(e, "allocating stream workspaces", __FILE__, __LINE__);
        goto fail;
    }
    /* cuBLAS handles are made with the partition's context current (gpu_rt.md 1.3 step 7) */
    if ((ctx = rtv_cuda_split_ctx())) {
        if ((st = rtv_cuda_split_push(ctx))) goto fail;
        pushed = 1;
    }
    if (cublasCreate(&s->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS) {
        st = rtv_fail(RTV_E_DEVICE, "cuBLAS: could not create a handle");
        goto fail;
    }
    /* sync waits on this event, sleeping (see cuda_sync); made in the stream's context */
    s->spin = rtv_cuda_env_switch("RTV_CUDA_SPIN", 0);
    if ((e = cudaEventCreateWithFlags(&s->done, cudaEventBlockingSync |
                                                    cudaEventDisableTiming)) != cudaSuccess) {
        st = rtv_cuda_fail(e, "cudaEventCreateWithFlags", __FILE__, __LINE__);
        goto fail;
    }
    if (pushed) {
        rtv_cuda_split_pop();
        pushed = 0;
    }
    s->sm_count = sms;
    s->lt_gelu = rtv_cuda_env_switch("RTV_LT_GELU", 1);
    s->rope_heads = rtv_cuda_env_switch("RTV_ROPE_HEADS", 1);
    if ((st = rtv_cuda_skinny_init(s)) || (st = rtv_cuda_attn_small_init(s)) ||
        (st = rtv_cuda_mlp_init(s)) || (st = rtv_cuda_wgemm_init(s)) ||
        (st = rtv_cuda_attn_wg_init(s)) || (st = rtv_cuda_gg_init(s)) ||
        (st = rtv_cuda_gm_init(s)) || (st = rtv_cuda_mk_init(s)))
        goto fail;
    if (sms > 0) cublasSetSmCountTarget(s->blas, sms);
    if (cublasSetStream(s->blas, s->s) != CUBLAS_STATUS_SUCCESS ||
        cublasSetWorkspace(s->blas, s->blas_ws, s->blas_ws_bytes) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        st = rtv_fail(RTV_E_DEVICE, "cuBLAS: could not configure the handle");
        goto fail;
    }
    *out = s;
    return RTV_OK;
fail:
    if (pushed) rtv_cuda_split_pop();
    cuda_stream_free(s);
    return st;
}

static int cuda_alloc(void **out, size_t bytes)
{
    *out = NULL;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 256);
    /* zeroed once: rows a kernel may read before anything wrote them (padded attention keys)
     * hold finite values */
    if (e == cudaSuccess) e = cudaMemset(*out, 0, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        *out = NULL;
        return rtv_fail(RTV_E_NOMEM, "CUDA: cannot allocate %.1f MiB of device memory "
                        "(%.1f MiB free of %.1f MiB): %s", bytes / 1048576.0, fr / 1048576.0,
                        tot / 1048576.0, cudaGetErrorString(e));
    }
    return RTV_OK;
}

static void cuda_free(void *p) { if (p) cudaFree(p); }

static int cuda_upload_weight(void *dst, const void *src, rtv_dtype src_dt, size_t n)
{
    if (src_dt == RTV_DT_BF16) {
        CU_TRY(cudaMemcpy(dst, src, n * 2, cudaMemcpyHostToDevice));
        return RTV_OK;
    }
    /* Convert on the host in chunks of 16 Mi elements. */
    const size_t chunk = (size_t)16 << 20;
    uint16_t *tmp = (uint16_t *)malloc((n < chunk ? n : chunk) * 2);
    if (!tmp) return rtv_fail(RTV_E_NOMEM, "CUDA upload_weight: out of host memory");
    for (size_t i0 = 0; i0 < n; i0 += chunk) {
        size_t m = n - i0 < chunk ? n - i0 : chunk;
        for (size_t i = 0; i < m; i++) {
            float f = src_dt == RTV_DT_F32 ? ((const float *)src)[i0 + i]
                                           : rtv_f16_to_f32(((const uint16_t *)src)[i0 + i]);
            tmp[i] = rtv_f32_to_bf16(f);
        }
        cudaError_t e = cudaMemcpy((uint16_t *)dst + i0, tmp, m * 2, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            free(tmp);
            return rtv_cuda_fail(e, "cudaMemcpy (weights)", __FILE__, __LINE__);
        }
    }
    free(tmp);
    return RTV_OK;
}

static int cuda_upload(rtv_stream *s, void *dst, const float *src, size_t n)
{
    if (s->capturing)
        return rtv_fail(RTV_E_ARG, "CUDA upload: called inside a graph capture (a replay would "
                        "copy stale host data); upload before capture_begin");
    rtv_cuda_scratch_begin(s);
    float *st = (float *)rtv_cuda_staging(s, n * sizeof(float));
    float *dv = (float *)rtv_cuda_scratch(s, n * sizeof(float));
    if (!st || !dv) return RTV_E_NOMEM;
    memcpy(st, src, n * sizeof(float));
    CU_TRY(cudaMemcpyAsync(dv, st, n * sizeof(float), cudaMemcpyHostToDevice, s->s));
    return rtv_cuda_f32_to_bf16(s, dst, dv, n);
}

static int cuda_download(rtv_stream *s, float *dst, const void *src, size_t n)
{
    rtv_cuda_scratch_begin(s);
    float *dv = (float *)rtv_cuda_scratch(s, n * sizeof(float));
    if (!dv) return RTV_E_NOMEM;
    int st = rtv_cuda_bf16_to_f32(s, dv, src, n);
    if (st) return st;
    CU_TRY(cudaMemcpyAsync(dst, dv, n * sizeof(float), cudaMemcpyDeviceToHost, s->s));
    return RTV_OK;
}

/* The calling thread SLEEPS until the stream's work is done (an event made with
 * cudaEventBlockingSync), where cudaStreamSynchronize would by default spin whenever the
 * process has fewer CUDA contexts than CPUs. The action thread runs at SCHED_FIFO: spinning,
 * it would hold its core for the whole action cycle and keep SCHED_OTHER work off it, among
 * it the kernel workers that carry the servo bus's bytes (what the CPU backend showed: bus
 * replies late by 15-18 ms at p95, runtime.priorities.action in configs/README.md). The wake-up
 * costs tens of microseconds; RTV_CUDA_SPIN=1 spins (for comparing). */
static int cuda_sync(rtv_stream *s)
{
    if (s->spin) {
        CU_TRY(cudaStreamSynchronize(s->s));
    } else {
        CU_TRY(cudaEventRecord(s->done, s->s));
        CU_TRY(cudaEventSynchronize(s->done));
    }
    s->staging_used = 0;
    return RTV_OK;
}

static int cuda_capture_begin(rtv_stream *s)
{
    CU_TRY(cudaStreamBeginCapture(s->s, cudaStreamCaptureModeThreadLocal));
    s->capturing = 1;
    return RTV_OK;
}

/* s->pdl_edge (on sm_90; RTV_PDL_EDGE=0: off): every programmatic edge of a captured graph
 * fires when all CTAs of its upstream kernel have started instead of when they have all
 * triggered or exited. The downstream kernel still waits for the upstream's completion in
 * griddepcontrol.wait, so the results are the same; what changes is that a one-pass kernel
 * behind a cuBLAS GEMM (which never triggers its dependents early) takes its SMs and is ready
 * while the GEMM runs, instead of being launched after it ends. Returns the number of edges
 * changed (RTV_PDL_EDGE_VERBOSE=1 prints it), or -1 on an error. */
static long graph_edges_at_launch(cudaGraph_t g)
{
    size_t n = 0;
    if (cudaGraphGetEdges(g, NULL, NULL, NULL, &n) != cudaSuccess) return -1;
    if (n == 0) return 0;
    cudaGraphNode_t *from = (cudaGraphNode_t *)malloc(2 * n * sizeof(cudaGraphNode_t));
    cudaGraphEdgeData *ed = (cudaGraphEdgeData *)malloc(n * sizeof(cudaGraphEdgeData));
    long changed = -1;
    if (from && ed && cudaGraphGetEdges(g, from, from + n, ed, &n) == cudaSuccess) {
        changed = 0;
        for (size_t i = 0; i < n && changed >= 0; i++) {
            if (ed[i].type != cudaGraphDependencyTypeProgrammatic ||
                ed[i].from_port != cudaGraphKernelNodePortProgrammatic)
                continue;
            cudaGraphEdgeData nd = ed[i];
            nd.from_port = cudaGraphKernelNodePortLaunchCompletion;
            if (cudaGraphRemoveDependencies(g, &from[i], &from[n + i], &ed[i], 1) != cudaSuccess ||
                cudaGraphAddDependencies(g, &from[i], &from[n + i], &nd, 1) != cudaSuccess)
                changed = -1;
            else
                changed++;
        }
    }
    free(from);
    free(ed);
    return changed;
}

static int cuda_capture_end(rtv_stream *s, void **graph_out)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t ex = NULL;
    s->capturing = 0;
    *graph_out = NULL;
    CU_TRY(cudaStreamEndCapture(s->s, &g));
    if (s->pdl_edge) {
        const long n = graph_edges_at_launch(g);
        if (n < 0) {
            cudaGraphDestroy(g);
            cudaGetLastError();
            return rtv_fail(RTV_E_DEVICE, "CUDA graph: changing its programmatic edges failed "
                                           "(RTV_PDL_EDGE=0 captures them as launched)");
        }
        if (getenv("RTV_PDL_EDGE_VERBOSE"))
            fprintf(stderr, "RTV_PDL_EDGE: %ld programmatic edges fire at launch\n", n);
    }
    cudaError_t e = cudaGraphInstantiate(&ex, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) return rtv_cuda_fail(e, "cudaGraphInstantiate", __FILE__, __LINE__);
    *graph_out = (void *)ex;
    return RTV_OK;
}

static int cuda_graph_launch(rtv_stream *s, void *graph)
{
    CU_TRY(cudaGraphLaunch((cudaGraphExec_t)graph, s->s));
    return RTV_OK;
}

static void cuda_graph_free(void *graph)
{
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

static int cuda_host_pin(void *p, size_t bytes)
{
    if (!p || !bytes) return rtv_fail(RTV_E_ARG, "CUDA host_pin: empty range");
    cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
    if (e != cudaSuccess)
        return rtv_fail(RTV_E_DEVICE, "CUDA: cannot page-lock %.1f MiB of host memory for "
                        "frame copies: %s", bytes / 1048576.0, cudaGetErrorString(e));
    return RTV_OK;
}

static void cuda_host_unpin(void *p)
{
    if (p) cudaHostUnregister(p);
}

static int cuda_mem_info(size_t *used, size_t *total)
{
    size_t fr = 0, tot = 0;
    CU_TRY(cudaMemGetInfo(&fr, &tot));
    *used = tot - fr;
    *total = tot;
    return RTV_OK;
}

void rtv_cuda_prof_install(rtv_backend *b);
static rtv_backend cuda_backend;

extern "C" const rtv_backend *rtv_backend_cuda(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return NULL;
    if (!cuda_backend.name) {
        rtv_backend b;
        memset(&b, 0, sizeof(b));
        b.name = "cuda";
        b.act_bytes = 2;
        b.act_dt = RTV_DT_BF16;
        b.w_dt = RTV_DT_BF16;
        b.stream_new = cuda_stream_new;
        b.stream_free = cuda_stream_free;
        b.alloc = cuda_alloc;
        b.free = cuda_free;
        b.upload_weight = cuda_upload_weight;
        b.upload = cuda_upload;
        b.download = cuda_download;
        b.sync = cuda_sync;
        b.matmul = rtv_cuda_matmul;
        b.layernorm = rtv_cuda_layernorm;
        b.rmsnorm = rtv_cuda_rmsnorm;
        b.rope = rtv_cuda_rope;
        b.attention = rtv_cuda_attention;
        b.attention_batch = rtv_cuda_attention_batch;
        b.geglu = rtv_cuda_geglu;
        b.matmul_geglu = rtv_cuda_matmul_geglu;
        /* the expert's norms behind their GEMMs: H100 action cycle 9.16 -> 8.60 ms in one
         * lease (RTV_NORM_FOLD=0 keeps rmsnorm before the GEMMs, for comparing) */
        if (rtv_cuda_env_switch("RTV_NORM_FOLD", 1)) {
            b.rms_rope = rtv_cuda_rms_rope;
            b.rms_geglu = rtv_cuda_rms_geglu;
            /* the GEMM before rms_geglu and rms_geglu in one call, one wgmma kernel for the
             * prefix's 512 rows (gemm_geglu.cu): VL encode 5.43 / 5.54 against 5.61 / 5.61 ms
             * (H100, 2026-12-07, alternating in one lease; the action cycle, whose 51 rows take
             * the two-launch fallback, unchanged); RTV_WG_GEGLU=0 leaves it out and the model
             * calls the two ops itself */
            if (rtv_cuda_env_switch("RTV_WG_GEGLU", 1))
                b.matmul_rms_geglu = rtv_cuda_matmul_rms_geglu;
            /* the expert's layer tail in one persistent kernel (mlp.cu): opt-in until it wins;
             * without it the model runs the ops one by one, as it did before */
            if (rtv_cuda_env_switch("RTV_FUSED_MLP", 0)) b.rms_mlp = rtv_cuda_rms_mlp;
            /* or as four wgmma GEMMs carrying the norms, GeGLU and RoPE (wgemm.cu): opt-in
             * until it wins; where the GPU is not sm_90 each falls back to the unfused ops */
            if (rtv_cuda_env_switch("RTV_WGMMA", 0)) b.rms_mlp = rtv_cuda_rms_mlp_wg;
            /* or all the expert's layers of an Euler step as one persistent kernel (mk.cu):
             * opt-in until it wins; it declines calls it cannot run (the layers op by op) */
            if (rtv_cuda_env_switch("RTV_MK", 0)) b.expert_layers = rtv_cuda_expert_layers;
        }
        b.add_weight_rows = rtv_cuda_add_weight_rows;
        b.axpy = rtv_cuda_axpy;
        b.scale = rtv_cuda_scale;
        b.copy2d = rtv_cuda_copy2d;
        b.mean_rows = rtv_cuda_mean_rows;
        b.preprocess = rtv_cuda_preprocess;
        b.patchify = rtv_cuda_patchify;
        b.capture_begin = cuda_capture_begin;
        b.capture_end = cuda_capture_end;
        b.graph_launch = cuda_graph_launch;
        b.graph_free = cuda_graph_free;
        b.mem_info = cuda_mem_info;
        b.host_pin = cuda_host_pin;
        b.host_unpin = cuda_host_unpin;
        rtv_cuda_prof_install(&b);
        cuda_backend = b;
    }
    return &cuda_backend;
}
