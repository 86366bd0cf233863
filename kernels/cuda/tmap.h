/* kernels/cuda/tmap.h — 2-D tensor maps (TMA descriptors) for the few-row GEMMs (skinny.cu,
 * wgemm.cu), host side. The encoder is the driver's cuTensorMapEncodeTiled, fetched once per
 * stream through the runtime (no link against libcuda). */
#ifndef RTV_CUDA_TMAP_H
#define RTV_CUDA_TMAP_H

#include <cuda.h>

#include "cuda_impl.h"

typedef CUresult (*rtv_tmap_encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                       const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                       const cuuint32_t *, CUtensorMapInterleave,
                                       CUtensorMapSwizzle, CUtensorMapL2promotion,
                                       CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled, or NULL where the driver has none (the caller's other path). */
static inline void *rtv_cuda_tmap_encoder(void)
{
    cudaDriverEntryPointQueryResult q;
    void *fn = NULL;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
        return fn;
    cudaGetLastError();
    return NULL;
}

/* m = a 2-D tensor map of the bf16 matrix p [rows][cols] (row stride ld elements) in boxes of
 * 64 columns x box_rows rows, 128-byte swizzle, rows past the end read as zeros. Returns 0 on
 * success. Pure host computation (no driver call reaches the GPU). */
static inline int rtv_cuda_tmap_bf16(void *encode, CUtensorMap *m, const void *p, int rows,
                                     int cols, int ld, int box_rows)
{
    cuuint64_t dims[2] = { (cuuint64_t)cols, (cuuint64_t)rows };
    cuuint64_t strides[1] = { (cuuint64_t)ld * 2 };
    cuuint32_t box[2] = { 64, (cuuint32_t)box_rows }, es[2] = { 1, 1 };
    return ((rtv_tmap_encode_fn)encode)(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)p, dims,
                                        strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                        CU_TENSOR_MAP_SWIZZLE_128B,
                                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS;
}

#endif
