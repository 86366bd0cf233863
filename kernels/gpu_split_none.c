/* kernels/gpu_split_none.c — gpu_split.h in a build without CUDA: only "off" exists. */
#include <stdio.h>
#include <string.h>

#include "kernels/gpu_split.h"
#include "runtime/status.h"

const char *rtv_gpu_split_mode_name(rtv_gpu_split_mode m)
{
    static const char *names[] = { "off", "streams", "green", "mps" };
    return (unsigned)m < 4 ? names[m] : "?";
}

int rtv_gpu_split_init(rtv_gpu_split *out, int device, rtv_gpu_split_mode mode, int action_sms)
{
    (void)device;
    (void)action_sms;
    memset(out, 0, sizeof(*out));
    if (mode != RTV_GPU_SPLIT_OFF)
        return rtv_fail(RTV_E_UNSUPPORTED, "gpu.split.mode: %s needs the CUDA backend, and "
                        "this rtvla was built without it (rebuild with -Dcuda=enabled)",
                        rtv_gpu_split_mode_name(mode));
    snprintf(out->note, sizeof(out->note), "off: no GPU in this build");
    return RTV_OK;
}

int rtv_gpu_split_use(rtv_gpu_side side)
{
    (void)side;
    return RTV_OK;
}

void rtv_gpu_split_free(void) {}

int rtv_gpu_mps_running(void) { return 0; }
