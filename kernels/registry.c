/* kernels/registry.c — backend lookup by name, and the fallback for builds without CUDA. */
#include <string.h>

#include "kernels/backend.h"
#include "runtime/status.h"

#ifndef RTV_HAVE_CUDA
/* Built without the CUDA backend (kernels/cuda/backend.cu defines it otherwise). */
const rtv_backend *rtv_backend_cuda(void) { return NULL; }
#endif

int rtv_backend_by_name(const char *name, const rtv_backend **out)
{
    if (!out) return rtv_fail(RTV_E_ARG, "backend: NULL output pointer");
    *out = NULL;
    if (!name) return rtv_fail(RTV_E_ARG, "backend: expected \"cpu\" or \"cuda\", got NULL");
    if (!strcmp(name, "cpu")) {
        *out = rtv_backend_cpu();
        return RTV_OK;
    }
    if (!strcmp(name, "cuda")) {
        *out = rtv_backend_cuda();
        if (*out) return RTV_OK;
#ifdef RTV_HAVE_CUDA
        return rtv_fail(RTV_E_UNSUPPORTED, "backend \"cuda\": no usable CUDA device (check "
                        "nvidia-smi and CUDA_VISIBLE_DEVICES); use backend \"cpu\"");
#else
        return rtv_fail(RTV_E_UNSUPPORTED, "backend \"cuda\": this rtvla was built without the "
                        "CUDA backend (rebuild with -Dcuda=enabled and nvcc + cuBLAS "
                        "installed); use backend \"cpu\"");
#endif
    }
    return rtv_fail(RTV_E_ARG, "backend: expected \"cpu\" or \"cuda\", got \"%s\"", name);
}
