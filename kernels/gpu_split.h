/* kernels/gpu_split.h — split the GPU's SMs between the action thread and the VL thread.
 *
 * Modes (config gpu.split.mode):
 *   off     one context, ordinary streams: both sides compete for every SM.
 *   streams one context, the action stream at the highest priority, VL at the lowest. Priorities
 *           only reorder pending blocks; kept as the measured fallback.
 *   green   CUDA green contexts (driver API >= 12.4, one split call: the action group gets
 *           action_sms rounded up to the hardware granularity, the VL group the remainder).
 *   mps     two contexts with an SM-count execution affinity; needs a running MPS control
 *           daemon (nvidia-cuda-mps-control -d), refused with the command to start it otherwise.
 * Device memory is shared by both sides (ordinary cudaMalloc allocations).
 *
 * Threads: rtv_gpu_split_init/free once at start-up (before any backend stream exists).
 * rtv_gpu_split_use(side) is per thread: the calling thread's next backend stream_new() creates
 * its stream (and cuBLAS handles) on that side's partition. Built without CUDA, init returns
 * RTV_E_UNSUPPORTED for every mode but off.
 */
#ifndef RTV_GPU_SPLIT_H
#define RTV_GPU_SPLIT_H

typedef enum rtv_gpu_split_mode {
    RTV_GPU_SPLIT_OFF = 0,
    RTV_GPU_SPLIT_STREAMS = 1,
    RTV_GPU_SPLIT_GREEN = 2,
    RTV_GPU_SPLIT_MPS = 3,
} rtv_gpu_split_mode;

typedef enum rtv_gpu_side { RTV_GPU_SIDE_ACTION = 0, RTV_GPU_SIDE_VL = 1 } rtv_gpu_side;

typedef struct rtv_gpu_split {
    rtv_gpu_split_mode mode;
    int device_sms;         /* SMs of the device */
    int action_sms, vl_sms; /* effective counts read back from the driver (device_sms if shared) */
    int granularity;        /* SM granularity of the split (green: minSmPartitionSize) */
    char note[256];         /* what was asked, what was granted, and why */
} rtv_gpu_split;

const char *rtv_gpu_split_mode_name(rtv_gpu_split_mode m);
int rtv_gpu_split_init(rtv_gpu_split *out, int device, rtv_gpu_split_mode mode, int action_sms);
int rtv_gpu_split_use(rtv_gpu_side side);
void rtv_gpu_split_free(void);
/* 1 if an MPS control daemon answers for this process's pipe directory. */
int rtv_gpu_mps_running(void);

#endif
