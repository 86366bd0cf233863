/* kernels/cuda/prefetch.cu — the prefetch op: the next GEMM's weights into L2 on a side stream.
 *
 * The action expert's GEMMs stream 4-17 MB of weights each at M = 50 rows; every GEMM ramps up
 * from an empty pipe and reaches a third of HBM bandwidth (kernels/README.md). The model calls
 * prefetch(w_next) just before it launches the current GEMM; here that forks a side stream (an
 * event recorded on the caller's stream, so the prefetch starts no earlier than the current
 * GEMM), runs one kernel that pulls w_next through L2, and joins it back before the op after
 * the next prefetch call: the GEMM that reads w_next waits until its weights have been read
 * once, which under a graph is a dependency edge, not a host wait. HBM then streams the next
 * weights while the current GEMM, RoPE, attention and norms run.
 *
 * Modes (RTV_PREFETCH; off by default until it has run on a GPU): 1 loads through L2 from a few CTAs (every architecture;
 * the kernel ends when the bytes have arrived, so the join means "in L2"); 2 on sm_90 issues
 * cp.async.bulk.prefetch.L2 (fire and forget: the kernel ends at once, the copy engine keeps
 * going); 0 off. Weights larger than 40% of L2 are not prefetched (they would evict the
 * current GEMM's). RTV_PREFETCH_CTAS sets the loader's CTAs (default: a quarter of the
 * stream's SMs). */
#include <stdlib.h>

#include "cuda_impl.h"

#define PF_THREADS 256
#define PF_DEPTH 8 /* 16-byte loads in flight per thread */

static __device__ __forceinline__ uint4 pf_ld(const uint4 *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* Reads n16 16-byte units at p; the XOR of what arrived goes to *sink (a word of the stream's
 * own, read by nothing) only when it equals one constant, so the loads cannot be dropped. */
static __global__ void __launch_bounds__(PF_THREADS) pf_load_k(const uint4 *p, size_t n16,
                                                               unsigned *sink)
{
    const size_t stride = (size_t)gridDim.x * PF_THREADS;
    size_t i = (size_t)blockIdx.x * PF_THREADS + threadIdx.x;
    unsigned x = 0;
    for (; i + (PF_DEPTH - 1) * stride < n16; i += PF_DEPTH * stride) {
        uint4 v[PF_DEPTH];
#pragma unroll
        for (int d = 0; d < PF_DEPTH; d++) v[d] = pf_ld(p + i + d * stride);
#pragma unroll
        for (int d = 0; d < PF_DEPTH; d++) x ^= v[d].x ^ v[d].w;
    }
    for (; i < n16; i += stride) x ^= pf_ld(p + i).y;
    if (x == 0x9E3779B9u) *sink = x;
}

/* sm_90: bulk L2 prefetches of `chunk` bytes each, one per thread (fire and forget). Mode 2
 * is turned into mode 1 below sm_90 (rtv_cuda_prefetch_init), so elsewhere this does nothing. */
static __global__ void __launch_bounds__(PF_THREADS) pf_bulk_k(const char *p, size_t bytes,
                                                               unsigned chunk)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const size_t i = (size_t)blockIdx.x * PF_THREADS + threadIdx.x;
    for (size_t off = i * chunk; off < bytes; off += (size_t)gridDim.x * PF_THREADS * chunk) {
        const unsigned n = bytes - off < chunk ? (unsigned)(bytes - off) : chunk;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(
                         (unsigned long long)__cvta_generic_to_global(p + off)),
                     "r"(n)
                     : "memory");
    }
#else
    (void)p;
    (void)bytes;
    (void)chunk;
#endif
}

int rtv_cuda_prefetch_init(rtv_stream *s)
{
    int dev = 0, l2 = 0, major = 0;
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    CU_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    const char *m = getenv("RTV_PREFETCH"), *c = getenv("RTV_PREFETCH_CTAS");
    s->pf_mode = m && m[0] >= '0' && m[0] <= '2' ? m[0] - '0' : 0; /* opt-in until measured */
    if (s->pf_mode == 2 && major < 9) s->pf_mode = 1;
    if (!s->pf_s) s->pf_mode = 0;
    s->pf_max = (size_t)l2 * 2 / 5;
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    s->pf_ctas = c && atoi(c) > 0 ? atoi(c) : (sms / 4 > 0 ? sms / 4 : 1);
    s->pf_pending = 0;
    if (s->pf_mode) CU_TRY(cudaMalloc((void **)&s->pf_sink, 16));
    return RTV_OK;
}

/* The caller's stream waits for the prefetch still out (sync and capture_end call this: a
 * capture must join every stream it forked). */
int rtv_cuda_prefetch_join(rtv_stream *s)
{
    if (s->pf_pending) {
        CU_TRY(cudaStreamWaitEvent(s->s, s->pf_join, 0));
        s->pf_pending = 0;
    }
    return RTV_OK;
}

int rtv_cuda_prefetch(rtv_stream *s, const void *w, size_t bytes)
{
    if (!s->pf_mode || !w || bytes < 4096 || bytes > s->pf_max || (uintptr_t)w % 16) return RTV_OK;
    /* the fork: the side stream starts after what the caller has enqueued so far */
    CU_TRY(cudaEventRecord(s->pf_fork, s->s));
    CU_TRY(cudaStreamWaitEvent(s->pf_s, s->pf_fork, 0));
    /* the previous prefetch's weights are read by the op the caller enqueues next */
    int st = rtv_cuda_prefetch_join(s);
    if (st) return st;
    if (s->pf_mode == 2) {
        const unsigned chunk = 32u << 10;
        size_t n = (bytes + chunk - 1) / chunk;
        unsigned ctas = rtv_cdiv(n, PF_THREADS);
        pf_bulk_k<<<ctas, PF_THREADS, 0, s->pf_s>>>((const char *)w, bytes & ~(size_t)15, chunk);
    } else {
        pf_load_k<<<s->pf_ctas, PF_THREADS, 0, s->pf_s>>>((const uint4 *)w, bytes / 16, s->pf_sink);
    }
    LAUNCH_CHECK("prefetch");
    CU_TRY(cudaEventRecord(s->pf_join, s->pf_s));
    s->pf_pending = 1;
    return RTV_OK;
}
