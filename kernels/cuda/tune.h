/* kernels/cuda/tune.h — knobs of the CUDA backend for benchmarks and experiments (C and C++).
 * Not part of the op table: model code never calls these. */
#ifndef RTV_CUDA_TUNE_H
#define RTV_CUDA_TUNE_H

#ifdef __cplusplus
extern "C" {
#endif

struct rtv_stream;
/* Few-row GEMM path of matmul (skinny.cu) on this stream: mode 0 = cuBLASLt only (default),
 * 1 = the skinny kernel where the shape allows (RTV_SKINNY=1 in the environment turns it on
 * for new streams). tile: weight rows per CTA (0 = automatic, 1 = 64, 2 = 128); target_pct:
 * the most CTAs allowed, in percent of what fits on the stream's SMs at once (0 = 100). */
void rtv_cuda_matmul_tune(struct rtv_stream *s, int mode, int tile, int target_pct);
/* The wgmma few-row GEMM (wgemm.cu) on this stream: 1 = where the GPU and shape allow (before
 * the skinny kernel and cuBLASLt), 0 = off. RTV_WGMMA=1 turns it on for new streams. */
void rtv_cuda_wgemm_tune(struct rtv_stream *s, int on);
/* With RTV_WGMMA_TRACE=1 at stream creation: the last eager wgmma launch's clock64 per CTA at
 * 7 marks (start, weight copies issued, dependency wait over, first chunk in, MMAs done,
 * partials exchanged, epilogue done) and %globaltimer at the start, 8 values per CTA. */
int rtv_cuda_wgemm_trace(struct rtv_stream *s, long long *out, int max_ctas);
/* With RTV_WGMMA_TRACE=1: how the last (up to 64) wgmma launches, graph replays included,
 * followed each other on the GPU, in ns (%globaltimer), one line per pair of shapes (previous
 * -> this) on f (a FILE *), medians over the pair's launches: the span of a launch (first CTA
 * start to last CTA end), the gap from the previous launch's last CTA end to this one's first
 * CTA start (negative: they overlapped), the signal (previous last end to this one's first
 * dependency met), and a CTA's mean phases: wait at griddepcontrol.wait, first chunk, MMAs,
 * exchange, epilogue, to the end, life. Synchronizes the stream. Called at stream free too
 * when the trace is on. */
void rtv_cuda_wgemm_chain_report(struct rtv_stream *s, void *f);
/* matmul_rms_geglu's wgmma kernel (gemm_geglu.cu) on this stream: 1 = where the GPU and shape
 * allow (the default), 0 = the GEMM and rms_geglu. Returns whether the kernel exists here:
 * RTV_WG_GEGLU=0 at backend / stream creation leaves the op and its kernel out. */
int rtv_cuda_gg_tune(struct rtv_stream *s, int on);
/* matmul's wgmma kernel for M > 64 (gemm_mc.cu) on this stream: on = 1 where the GPU and
 * shape allow (RTV_GM=1 sets it for new streams), 0 = cuBLASLt. bn (96, 128, 160, 192, 256:
 * the tile width), cm (a weight tile multicast over cm row tiles), cn (an x tile multicast over
 * cn column tiles) and sk (K splits) fix its configuration (bn = 0: planned per shape); a shape
 * that the fixed configuration does not fit runs cuBLASLt. Returns whether the kernel exists
 * here. */
int rtv_cuda_gm_tune(struct rtv_stream *s, int on, int bn, int cm, int cn, int sk);
/* The configuration it would run for M x N x K, as text into buf; 0: none (cuBLASLt). */
int rtv_cuda_gm_describe(struct rtv_stream *s, int M, int N, int K, char *buf, int n);
/* cuBLASLt plans take the heuristic's index-th algorithm (0..7; 0 = its first choice, the
 * default) from now on; cached plans are dropped. */
int rtv_cuda_lt_algo(struct rtv_stream *s, int index);
/* With RTV_SKINNY_TRACE=1 at stream creation: the last skinny launch's clock64 at 7 phase
 * marks per CTA (start, weight copies issued, after the dependency wait, weights in, after
 * the MMAs, after the split-K exchange, end) and %globaltimer at the start, 8 values per CTA
 * into out; returns the CTA count (0: no trace). Synchronizes the stream. */
int rtv_cuda_skinny_trace(struct rtv_stream *s, long long *out, int max_ctas);
/* The same for gemm_mc.cu (RTV_GM_TRACE=1), from its first consumer thread: start, the
 * dependency met, the first stage in, the MMAs done, the split partials exchanged, the output
 * tile staged, end; %globaltimer at the start. */
int rtv_cuda_gm_trace(struct rtv_stream *s, long long *out, int max_ctas);
/* Whether expert_layers runs its persistent kernel (mk.cu) on this stream: RTV_MK=1 at stream
 * creation, an sm_90a image and the tensor-map encoder. */
int rtv_cuda_mk_usable(struct rtv_stream *s);
/* The kernel runs only the first last_ops ops (1 qkv .. 5 down; 0: all, the default) of the
 * last layer of each call, to check it part by part, and (akeys > 0) attention splits of
 * akeys 80-key chunks (RTV_MK_AKEYS; 0 keeps the setting). Drops its cached plans
 * (synchronizes). Returns 0 where the kernel is not usable or an argument is out of range. */
int rtv_cuda_mk_tune(struct rtv_stream *s, int last_ops, int akeys);

#ifdef __cplusplus
}
#endif
#endif
