/* kernels/cuda/split.cu — SM split between the action and VL sides (kernels/gpu_split.h).
 *
 * Green contexts and MPS affinity contexts are driver-API objects. rtvla does not link
 * libcuda (a binary built with CUDA must still start on a machine without a driver), so the
 * driver functions are fetched through cudaGetDriverEntryPointByVersion. Recipe per
 * shared/specs/gpu_rt.md 1.3: primary context first; ONE split call (groups of separate calls
 * may overlap); descriptors; green contexts; effective counts read back; streams created per
 * partition with that partition's context current while the cuBLAS handles are made. */
#include <cuda.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <stdlib.h>

#include "cuda_impl.h"

extern "C" {
#include "kernels/gpu_split.h"
}

extern "C" int (*rtv_cuda_stream_factory)(cudaStream_t *out, int *sm_count);

typedef CUresult (*fn_GetDevResource)(CUdevice, CUdevResource *, CUdevResourceType);
typedef CUresult (*fn_SplitByCount)(CUdevResource *, unsigned *, const CUdevResource *,
                                    CUdevResource *, unsigned, unsigned);
typedef CUresult (*fn_GenerateDesc)(CUdevResourceDesc *, CUdevResource *, unsigned);
typedef CUresult (*fn_GreenCtxCreate)(CUgreenCtx *, CUdevResourceDesc, CUdevice, unsigned);
typedef CUresult (*fn_GreenCtxDestroy)(CUgreenCtx);
typedef CUresult (*fn_GreenCtxGetDevResource)(CUgreenCtx, CUdevResource *, CUdevResourceType);
typedef CUresult (*fn_GreenCtxStreamCreate)(CUstream *, CUgreenCtx, unsigned, int);
typedef CUresult (*fn_CtxFromGreenCtx)(CUcontext *, CUgreenCtx);
typedef CUresult (*fn_CtxCreate_v4)(CUcontext *, CUctxCreateParams *, unsigned, CUdevice);
typedef CUresult (*fn_CtxDestroy)(CUcontext);
typedef CUresult (*fn_CtxPush)(CUcontext);
typedef CUresult (*fn_CtxPop)(CUcontext *);
typedef CUresult (*fn_CtxSetCurrent)(CUcontext);
typedef CUresult (*fn_CtxGetExecAffinity)(CUexecAffinityParam *, CUexecAffinityType);
typedef CUresult (*fn_StreamCreateWithPriority)(CUstream *, unsigned, int);
typedef CUresult (*fn_GetErrorString)(CUresult, const char **);

static struct {
    rtv_gpu_split info;
    int active;
    CUdevice dev;
    CUgreenCtx green[2];
    CUcontext ctx[2];      /* green-derived or MPS affinity contexts */
    int prio_hi, prio_lo;
    fn_GreenCtxStreamCreate green_stream;
    fn_GreenCtxDestroy green_destroy;
    fn_CtxDestroy ctx_destroy;
    fn_CtxPush push;
    fn_CtxPop pop;
    fn_CtxSetCurrent set_current;
    fn_StreamCreateWithPriority stream_prio;
    fn_GetErrorString errstr;
} sp;

static __thread int tl_side = RTV_GPU_SIDE_ACTION;

static void *drv(const char *name, unsigned version)
{
    void *fn = NULL;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion(name, &fn, version, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
        return NULL;
    return fn;
}

static int drv_fail(CUresult r, const char *what)
{
    const char *s = NULL;
    if (sp.errstr) sp.errstr(r, &s);
    return rtv_fail(RTV_E_DEVICE, "GPU split: %s failed: CUresult %d (%s)", what, (int)r,
                    s ? s : "?");
}

extern "C" const char *rtv_gpu_split_mode_name(rtv_gpu_split_mode m)
{
    switch (m) {
    case RTV_GPU_SPLIT_OFF: return "off";
    case RTV_GPU_SPLIT_STREAMS: return "streams";
    case RTV_GPU_SPLIT_GREEN: return "green";
    case RTV_GPU_SPLIT_MPS: return "mps";
    }
    return "?";
}

extern "C" int rtv_gpu_mps_running(void)
{
    const char *dir = getenv("CUDA_MPS_PIPE_DIRECTORY");
    char path[512];
    snprintf(path, sizeof(path), "%s/control", dir && *dir ? dir : "/tmp/nvidia-mps");
    struct stat st;
    /* the control endpoint is a UNIX socket (r580; older daemons used a FIFO) */
    return stat(path, &st) == 0 && (S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode));
}

/* Stream factory installed while a split is active: creates the calling thread's stream on
 * its side and reports that side's SM count for cuBLAS's heuristics. */
static int split_stream(cudaStream_t *out, int *sm_count)
{
    int side = tl_side;
    CUstream s = NULL;
    CUresult r;
    *sm_count = side == RTV_GPU_SIDE_ACTION ? sp.info.action_sms : sp.info.vl_sms;
    switch (sp.info.mode) {
    case RTV_GPU_SPLIT_GREEN:
        r = sp.green_stream(&s, sp.green[side], CU_STREAM_NON_BLOCKING,
                            side == RTV_GPU_SIDE_ACTION ? sp.prio_hi : sp.prio_lo);
        if (r != CUDA_SUCCESS) return drv_fail(r, "cuGreenCtxStreamCreate");
        break;
    case RTV_GPU_SPLIT_MPS:
        if ((r = sp.push(sp.ctx[side])) != CUDA_SUCCESS) return drv_fail(r, "cuCtxPushCurrent");
        r = sp.stream_prio(&s, CU_STREAM_NON_BLOCKING,
                           side == RTV_GPU_SIDE_ACTION ? sp.prio_hi : sp.prio_lo);
        sp.pop(NULL);
        if (r != CUDA_SUCCESS) return drv_fail(r, "cuStreamCreateWithPriority (MPS context)");
        break;
    default: {
        int prio = sp.info.mode == RTV_GPU_SPLIT_STREAMS
                       ? (side == RTV_GPU_SIDE_ACTION ? sp.prio_hi : sp.prio_lo)
                       : 0;
        CU_TRY(cudaStreamCreateWithPriority((cudaStream_t *)&s, cudaStreamNonBlocking, prio));
    }
    }
    *out = (cudaStream_t)s;
    return RTV_OK;
}

/* Context to make current while the stream's cuBLAS handles are created (NULL: primary). */
extern "C" void *rtv_cuda_split_ctx(void)
{
    if (!sp.active) return NULL;
    if (sp.info.mode == RTV_GPU_SPLIT_GREEN || sp.info.mode == RTV_GPU_SPLIT_MPS)
        return sp.ctx[tl_side];
    return NULL;
}

extern "C" int rtv_cuda_split_push(void *ctx)
{
    CUresult r = sp.push((CUcontext)ctx);
    return r == CUDA_SUCCESS ? RTV_OK : drv_fail(r, "cuCtxPushCurrent");
}

extern "C" void rtv_cuda_split_pop(void) { sp.pop(NULL); }

static int init_green(int action_sms)
{
    fn_GetDevResource get_res = (fn_GetDevResource)drv("cuDeviceGetDevResource", 12040);
    fn_SplitByCount split = (fn_SplitByCount)drv("cuDevSmResourceSplitByCount", 12040);
    fn_GenerateDesc gen = (fn_GenerateDesc)drv("cuDevResourceGenerateDesc", 12040);
    fn_GreenCtxCreate create = (fn_GreenCtxCreate)drv("cuGreenCtxCreate", 12040);
    fn_GreenCtxGetDevResource gres = (fn_GreenCtxGetDevResource)drv("cuGreenCtxGetDevResource", 12040);
    fn_CtxFromGreenCtx from = (fn_CtxFromGreenCtx)drv("cuCtxFromGreenCtx", 12040);
    sp.green_stream = (fn_GreenCtxStreamCreate)drv("cuGreenCtxStreamCreate", 12050);
    sp.green_destroy = (fn_GreenCtxDestroy)drv("cuGreenCtxDestroy", 12040);
    if (!get_res || !split || !gen || !create || !gres || !from || !sp.green_stream ||
        !sp.green_destroy)
        return rtv_fail(RTV_E_UNSUPPORTED, "GPU split: this driver has no green contexts "
                        "(needs CUDA 12.5 / r555 or newer); use gpu.split.mode: mps or streams");
    CUdevResource all, groups[1], rest;
    CUresult r;
    memset(&all, 0, sizeof(all));
    if ((r = get_res(sp.dev, &all, CU_DEV_RESOURCE_TYPE_SM)) != CUDA_SUCCESS)
        return drv_fail(r, "cuDeviceGetDevResource");
    sp.info.device_sms = (int)all.sm.smCount;
    sp.info.granularity = (int)all.sm.minSmPartitionSize;
    if (action_sms < 1 || action_sms >= (int)all.sm.smCount)
        return rtv_fail(RTV_E_ARG, "gpu.split.action_sms: expected 1..%u on this GPU (%u SMs), "
                        "got %d", all.sm.smCount - 1, all.sm.smCount, action_sms);
    unsigned n = 1;
    memset(groups, 0, sizeof(groups));
    memset(&rest, 0, sizeof(rest));
    if ((r = split(groups, &n, &all, &rest, 0, (unsigned)action_sms)) != CUDA_SUCCESS || n != 1)
        return drv_fail(r, "cuDevSmResourceSplitByCount");
    if (rest.sm.smCount == 0)
        return rtv_fail(RTV_E_ARG, "gpu.split.action_sms: %d rounds up to %u SMs, which leaves "
                        "none for the VL thread", action_sms, groups[0].sm.smCount);
    CUdevResourceDesc d[2];
    if ((r = gen(&d[0], &groups[0], 1)) != CUDA_SUCCESS ||
        (r = gen(&d[1], &rest, 1)) != CUDA_SUCCESS)
        return drv_fail(r, "cuDevResourceGenerateDesc");
    for (int i = 0; i < 2; i++) {
        if ((r = create(&sp.green[i], d[i], sp.dev, CU_GREEN_CTX_DEFAULT_STREAM)) != CUDA_SUCCESS)
            return drv_fail(r, "cuGreenCtxCreate");
        if ((r = from(&sp.ctx[i], sp.green[i])) != CUDA_SUCCESS)
            return drv_fail(r, "cuCtxFromGreenCtx");
        CUdevResource eff;
        memset(&eff, 0, sizeof(eff));
        if ((r = gres(sp.green[i], &eff, CU_DEV_RESOURCE_TYPE_SM)) != CUDA_SUCCESS)
            return drv_fail(r, "cuGreenCtxGetDevResource");
        if (i == 0) sp.info.action_sms = (int)eff.sm.smCount;
        else sp.info.vl_sms = (int)eff.sm.smCount;
    }
    snprintf(sp.info.note, sizeof(sp.info.note),
             "green contexts: asked %d action SMs, granted %d (granularity %d); VL %d of %d",
             action_sms, sp.info.action_sms, sp.info.granularity, sp.info.vl_sms,
             sp.info.device_sms);
    return RTV_OK;
}

static int init_mps(int action_sms)
{
    fn_CtxCreate_v4 create = (fn_CtxCreate_v4)drv("cuCtxCreate", 13000);
    fn_CtxGetExecAffinity aff = (fn_CtxGetExecAffinity)drv("cuCtxGetExecAffinity", 11040);
    if (!create || !aff)
        return rtv_fail(RTV_E_UNSUPPORTED, "GPU split: this driver lacks cuCtxCreate_v4 / "
                        "execution affinity (needs an r580 driver)");
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, (int)sp.dev);
    sp.info.device_sms = sms;
    sp.info.granularity = 2;
    if (action_sms < 1 || action_sms >= sms)
        return rtv_fail(RTV_E_ARG, "gpu.split.action_sms: expected 1..%d on this GPU, got %d",
                        sms - 1, action_sms);
    int want[2] = { action_sms, sms - action_sms };
    for (int i = 0; i < 2; i++) {
        CUexecAffinityParam p;
        memset(&p, 0, sizeof(p));
        p.type = CU_EXEC_AFFINITY_TYPE_SM_COUNT;
        p.param.smCount.val = (unsigned)want[i];
        CUctxCreateParams cp;
        memset(&cp, 0, sizeof(cp));
        cp.execAffinityParams = &p;
        cp.numExecAffinityParams = 1;
        CUresult r = create(&sp.ctx[i], &cp, 0, sp.dev);
        if (r == CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY || !rtv_gpu_mps_running())
            return rtv_fail(RTV_E_UNSUPPORTED, "gpu.split.mode: mps needs the MPS control "
                            "daemon, which is not running for this user. Start it with: "
                            "nvidia-cuda-mps-control -d   (as the user that runs rtvla; set "
                            "CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY if you moved "
                            "them), then start rtvla again");
        if (r != CUDA_SUCCESS) return drv_fail(r, "cuCtxCreate with SM affinity");
        sp.pop(NULL); /* cuCtxCreate made it current; keep the primary current */
        sp.push(sp.ctx[i]);
        CUexecAffinityParam got;
        memset(&got, 0, sizeof(got));
        aff(&got, CU_EXEC_AFFINITY_TYPE_SM_COUNT);
        sp.pop(NULL);
        if (i == 0) sp.info.action_sms = (int)got.param.smCount.val;
        else sp.info.vl_sms = (int)got.param.smCount.val;
    }
    snprintf(sp.info.note, sizeof(sp.info.note),
             "MPS execution affinity: asked %d action SMs, granted %d; VL %d of %d", action_sms,
             sp.info.action_sms, sp.info.vl_sms, sp.info.device_sms);
    return RTV_OK;
}

extern "C" void rtv_gpu_split_free(void)
{
    if (!sp.active) return;
    rtv_cuda_stream_factory = NULL;
    for (int i = 0; i < 2; i++) {
        if (sp.info.mode == RTV_GPU_SPLIT_GREEN && sp.green[i]) sp.green_destroy(sp.green[i]);
        if (sp.info.mode == RTV_GPU_SPLIT_MPS && sp.ctx[i]) sp.ctx_destroy(sp.ctx[i]);
    }
    memset(&sp, 0, sizeof(sp));
}

extern "C" int rtv_gpu_split_init(rtv_gpu_split *out, int device, rtv_gpu_split_mode mode,
                                  int action_sms)
{
    memset(out, 0, sizeof(*out));
    rtv_gpu_split_free();
    CU_TRY(cudaSetDevice(device));
    CU_TRY(cudaFree(0)); /* primary context first (see gpu_rt.md 1.3 step 1) */
    sp.dev = (CUdevice)device;
    sp.info.mode = mode;
    sp.push = (fn_CtxPush)drv("cuCtxPushCurrent", 12000);
    sp.pop = (fn_CtxPop)drv("cuCtxPopCurrent", 12000);
    sp.set_current = (fn_CtxSetCurrent)drv("cuCtxSetCurrent", 12000);
    sp.ctx_destroy = (fn_CtxDestroy)drv("cuCtxDestroy", 12000);
    sp.stream_prio = (fn_StreamCreateWithPriority)drv("cuStreamCreateWithPriority", 12000);
    sp.errstr = (fn_GetErrorString)drv("cuGetErrorString", 12000);
    if (!sp.push || !sp.pop || !sp.set_current || !sp.ctx_destroy || !sp.stream_prio)
        return rtv_fail(RTV_E_UNSUPPORTED, "GPU split: driver entry points not found");
    CU_TRY(cudaDeviceGetStreamPriorityRange(&sp.prio_lo, &sp.prio_hi));
    int sms = 0;
    CU_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    int st = RTV_OK;
    switch (mode) {
    case RTV_GPU_SPLIT_OFF:
    case RTV_GPU_SPLIT_STREAMS:
        sp.info.device_sms = sp.info.action_sms = sp.info.vl_sms = sms;
        sp.info.granularity = sms;
        snprintf(sp.info.note, sizeof(sp.info.note), "%s: both sides share all %d SMs%s",
                 rtv_gpu_split_mode_name(mode), sms,
                 mode == RTV_GPU_SPLIT_STREAMS ? " (action stream at the highest priority)" : "");
        break;
    case RTV_GPU_SPLIT_GREEN: st = init_green(action_sms); break;
    case RTV_GPU_SPLIT_MPS: st = init_mps(action_sms); break;
    default: st = rtv_fail(RTV_E_ARG, "gpu.split.mode: unknown mode %d", (int)mode);
    }
    sp.active = 1;
    if (st) {
        rtv_gpu_split_free();
        return st;
    }
    rtv_cuda_stream_factory = split_stream;
    *out = sp.info;
    return RTV_OK;
}

extern "C" int rtv_gpu_split_use(rtv_gpu_side side)
{
    if (side != RTV_GPU_SIDE_ACTION && side != RTV_GPU_SIDE_VL)
        return rtv_fail(RTV_E_ARG, "GPU split: bad side %d", (int)side);
    tl_side = side;
    /* MPS: kernels launch into the calling thread's current context, so the thread that uses a
     * side's stream makes that side's affinity context current. (Green-context streams carry
     * their context; off and streams use the primary context.) */
    if (sp.active && sp.info.mode == RTV_GPU_SPLIT_MPS && sp.ctx[side]) {
        CUresult r = sp.set_current(sp.ctx[side]);
        if (r != CUDA_SUCCESS) return drv_fail(r, "cuCtxSetCurrent (MPS context)");
    }
    return RTV_OK;
}
