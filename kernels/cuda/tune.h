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
 * for new streams). wk: warps splitting K inside a CTA (0 = automatic, 1 or 2); target_pct:
 * grid size aimed at, in percent of the stream's SMs (0 = 100). */
void rtv_cuda_matmul_tune(struct rtv_stream *s, int mode, int wk, int target_pct);
/* cuBLASLt plans take the heuristic's index-th algorithm (0..7; 0 = its first choice, the
 * default) from now on; cached plans are dropped. */
int rtv_cuda_lt_algo(struct rtv_stream *s, int index);

#ifdef __cplusplus
}
#endif
#endif
