/* kernels/cpu/backend.c — the "cpu" rtv_backend: memory, streams, transfers and the table.
 *
 * Memory is host memory from aligned_alloc (256-byte aligned, like the CUDA backend).
 * upload/download are memcpy and sync is a no-op, because every op has finished when it
 * returns. There is no graph capture (capture_* are NULL).
 *
 * Threads: the VL and action threads call ops at the same time, each on its own stream; the
 * ops share no mutable state except OpenBLAS. Debian's OpenBLAS (pthread build, 0.3.21) may be
 * called from several threads at once and gives correct results, but its multi-threaded GEMM
 * path runs one call at a time: measured on a 2-core VM, a 51x1024x1024 sgemm takes 1.2 ms
 * alone and waits ~1 s behind an 800x32768x2048 one on another thread. GEMMs OpenBLAS runs on
 * one thread (small ones, or all of them with RTV_BLAS_THREADS=1) do not wait: 1.4 ms mean in
 * the same test. Its thread count is set once, at the first stream_new, from
 * RTV_BLAS_THREADS (default: the number of online CPUs; 1 keeps the action thread's GEMMs
 * independent of the VL thread's). */
#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_impl.h"

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static int blas_status;            /* written once under blas_once */
static char blas_bad_value[64];

static void blas_init(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *v = getenv("RTV_BLAS_THREADS");
    if (v && *v) {
        char *end = NULL;
        errno = 0;
        long t = strtol(v, &end, 10);
        if (errno || *end || t < 1 || t > 1024) {
            snprintf(blas_bad_value, sizeof(blas_bad_value), "%s", v);
            blas_status = RTV_E_ARG;
            return;
        }
        n = t;
    }
    openblas_set_num_threads(n > 0 ? (int)n : 1);
}

static void cpu_stream_free(rtv_stream *s)
{
    if (!s) return;
    free(s->scratch);
    free(s);
}

static int cpu_stream_new(rtv_stream **out)
{
    if (!out) return rtv_fail(RTV_E_ARG, "cpu stream_new: NULL output pointer");
    *out = NULL;
    pthread_once(&blas_once, blas_init);
    if (blas_status)
        return rtv_fail(blas_status, "environment RTV_BLAS_THREADS: expected an integer "
                        "1..1024, got \"%s\"", blas_bad_value);
    rtv_stream *s = calloc(1, sizeof(*s));
    if (!s) return rtv_fail(RTV_E_NOMEM, "cpu stream: out of host memory");
    s->scratch_floats = RTV_CPU_SCRATCH_FLOATS;
    s->scratch = aligned_alloc(256, s->scratch_floats * sizeof(float));
    if (!s->scratch) {
        cpu_stream_free(s);
        return rtv_fail(RTV_E_NOMEM, "cpu stream: cannot allocate %zu MiB of scratch",
                        RTV_CPU_SCRATCH_FLOATS * sizeof(float) >> 20);
    }
    *out = s;
    return RTV_OK;
}

static int cpu_alloc(void **out, size_t bytes)
{
    if (!out) return rtv_fail(RTV_E_ARG, "cpu alloc: NULL output pointer");
    *out = NULL;
    if (bytes > SIZE_MAX - 255)
        return rtv_fail(RTV_E_NOMEM, "cpu alloc: %zu bytes is too large", bytes);
    size_t rounded = bytes ? (bytes + 255) & ~(size_t)255 : 256;
    void *p = aligned_alloc(256, rounded);
    if (!p)
        return rtv_fail(RTV_E_NOMEM, "cpu alloc: cannot allocate %.1f MiB of host memory",
                        bytes / 1048576.0);
    *out = p;
    return RTV_OK;
}

static void cpu_free(void *p) { free(p); }

static int cpu_upload_weight(void *dst, const void *src, rtv_dtype src_dt, size_t n)
{
    if (n && (!dst || !src)) return rtv_fail(RTV_E_ARG, "cpu upload_weight: NULL buffer");
    float *d = dst;
    switch (src_dt) {
    case RTV_DT_F32:
        if (n) memcpy(d, src, n * sizeof(float));
        return RTV_OK;
    case RTV_DT_BF16:
        for (size_t i = 0; i < n; i++) d[i] = rtv_bf16_to_f32(((const uint16_t *)src)[i]);
        return RTV_OK;
    case RTV_DT_F16:
        for (size_t i = 0; i < n; i++) d[i] = rtv_f16_to_f32(((const uint16_t *)src)[i]);
        return RTV_OK;
    }
    return rtv_fail(RTV_E_UNSUPPORTED, "cpu upload_weight: source dtype %d, expected f32, bf16 "
                    "or f16", (int)src_dt);
}

static int cpu_upload(rtv_stream *s, void *dst, const float *src, size_t n)
{
    if (n && (!dst || !src)) return rtv_fail(RTV_E_ARG, "cpu upload: NULL buffer");
    if (n && dst != src) memmove(dst, src, n * sizeof(float));
    return RTV_OK;
}

static int cpu_download(rtv_stream *s, float *dst, const void *src, size_t n)
{
    if (n && (!dst || !src)) return rtv_fail(RTV_E_ARG, "cpu download: NULL buffer");
    if (n && dst != src) memmove(dst, src, n * sizeof(float));
    return RTV_OK;
}

static int cpu_sync(rtv_stream *s) { return RTV_OK; }

static const rtv_backend cpu_backend = {
    .name = "cpu",
    .act_bytes = 4,
    .act_dt = RTV_DT_F32,
    .w_dt = RTV_DT_F32,
    .stream_new = cpu_stream_new,
    .stream_free = cpu_stream_free,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload_weight = cpu_upload_weight,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .matmul = rtv_cpu_matmul,
    .layernorm = rtv_cpu_layernorm,
    .rmsnorm = rtv_cpu_rmsnorm,
    .rope = rtv_cpu_rope,
    .attention = rtv_cpu_attention,
    .geglu = rtv_cpu_geglu,
    .rms_rope = rtv_cpu_rms_rope,
    .rms_geglu = rtv_cpu_rms_geglu,
    .add_weight_rows = rtv_cpu_add_weight_rows,
    .axpy = rtv_cpu_axpy,
    .scale = rtv_cpu_scale,
    .copy2d = rtv_cpu_copy2d,
    .mean_rows = rtv_cpu_mean_rows,
    .preprocess = rtv_cpu_preprocess,
    .patchify = rtv_cpu_patchify,
    .capture_begin = NULL,
    .capture_end = NULL,
    .graph_launch = NULL,
    .graph_free = NULL,
};

const rtv_backend *rtv_backend_cpu(void) { return &cpu_backend; }
