/* rtvla check -c CONFIG [--set k=v]...: is this machine ready to run CONFIG?
 *
 * Prints one checklist line per item ("[ok]", "[FAIL]", "[warn]") and, for every failure, the
 * command or setting that fixes it. Sections: config, robot (servo pings, port permissions,
 * adapter latency), cameras (devices, formats, a first frame), real-time limits (RLIMIT_RTPRIO,
 * RLIMIT_MEMLOCK, SCHED_FIFO actually granted), model files, GPU (device, SM split mode).
 * Exit status: 0 when everything the config needs is there, 1 otherwise, 2 on usage errors. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hal/camera.h"
#include "hal/robot.h"
#include "kernels/backend.h"
#include "kernels/gpu_split.h"
#include "runtime/cli.h"
#include "runtime/config.h"
#include "runtime/status.h"

static int n_fail, n_warn;

static void item(int ok, int warn_only, const char *what, const char *fix)
{
    if (ok) {
        printf("  [ok]   %s\n", what);
        return;
    }
    if (warn_only) n_warn++; else n_fail++;
    printf("  [%s] %s\n", warn_only ? "warn" : "FAIL", what);
    if (fix && *fix) printf("         fix: %s\n", fix);
}

static void *fifo_probe(void *arg)
{
    int prio = *(int *)arg;
    struct sched_param sp = { .sched_priority = prio };
    *(int *)arg = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    return NULL;
}

static void check_rt(const rtv_config *cfg)
{
    printf("real-time:\n");
    int want = cfg->runtime.prio_control;
    if (rtv_cfg_action_prio(cfg) > want) want = rtv_cfg_action_prio(cfg);
    if (cfg->runtime.prio_vl > want) want = cfg->runtime.prio_vl;
    struct rlimit rl;
    char buf[256];
    if (want > 0) {
        getrlimit(RLIMIT_RTPRIO, &rl);
        int ok = geteuid() == 0 || rl.rlim_cur == RLIM_INFINITY || (int)rl.rlim_cur >= want;
        snprintf(buf, sizeof(buf), "RLIMIT_RTPRIO %s allows SCHED_FIFO priority %d",
                 rl.rlim_cur == RLIM_INFINITY ? "unlimited" : "", want);
        if (rl.rlim_cur != RLIM_INFINITY)
            snprintf(buf, sizeof(buf), "RLIMIT_RTPRIO is %ld, config wants priority %d%s",
                     (long)rl.rlim_cur, want, geteuid() == 0 ? " (root: allowed)" : "");
        item(ok, 1, buf, "add '@realtime - rtprio 95' and '@realtime - memlock unlimited' to "
             "/etc/security/limits.d/rtvla.conf, 'sudo usermod -aG realtime $USER', log in again");
        int arg = want;
        pthread_t t;
        if (pthread_create(&t, NULL, fifo_probe, &arg) == 0) {
            pthread_join(t, NULL);
            snprintf(buf, sizeof(buf), "a thread can switch to SCHED_FIFO %d%s%s", want,
                     arg ? ": refused, " : "", arg ? strerror(arg) : "");
            item(arg == 0, 1, buf, "without it rtvla runs at normal priority (it says so in the "
                 "status line); see the RLIMIT_RTPRIO fix, or a cgroup without an RT budget");
        }
    } else {
        item(1, 0, "config asks for no real-time priority (runtime.priorities all 0)", NULL);
    }
    getrlimit(RLIMIT_MEMLOCK, &rl);
    snprintf(buf, sizeof(buf), "RLIMIT_MEMLOCK is %s%s",
             rl.rlim_cur == RLIM_INFINITY ? "unlimited" : "", "");
    if (rl.rlim_cur != RLIM_INFINITY)
        snprintf(buf, sizeof(buf), "RLIMIT_MEMLOCK is %lu KiB (mlockall of the whole process "
                 "needs more)", (unsigned long)(rl.rlim_cur >> 10));
    item(rl.rlim_cur == RLIM_INFINITY || geteuid() == 0, 1, buf,
         "'@realtime - memlock unlimited' in /etc/security/limits.d/rtvla.conf");
    FILE *f = fopen("/sys/kernel/realtime", "r");
    int prt = 0;
    if (f) {
        prt = fgetc(f) == '1';
        fclose(f);
    }
    item(prt, 1, prt ? "kernel is PREEMPT_RT" : "kernel is not PREEMPT_RT (fine for 10-50 Hz; "
         "wake-up tails are longer)", "install a PREEMPT_RT kernel (Debian: linux-image-rt-amd64)");
}

static void check_model(const rtv_config *cfg)
{
    printf("model:\n");
    char buf[RTV_PATH_MAX + 128];
    if (!strcmp(cfg->model.checkpoint, "random")) {
        snprintf(buf, sizeof(buf), "seeded random weights (preset %s, seed %llu)",
                 cfg->model.preset, (unsigned long long)cfg->model.seed);
        item(1, 0, buf, NULL);
        return;
    }
    static const char *files[] = { "model.safetensors", "tokenizer.model" };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct stat st;
        snprintf(buf, sizeof(buf), "%s/%s", cfg->model.checkpoint, files[i]);
        int ok = stat(buf, &st) == 0 && access(buf, R_OK) == 0;
        char what[RTV_PATH_MAX + 160];
        snprintf(what, sizeof(what), "%s %s", buf, ok ? "readable" : "missing or unreadable");
        item(ok, 0, what, "set model.checkpoint to a pi0 checkpoint folder (LeRobot or openpi "
             "PyTorch export), or 'random' to try the runtime without one");
    }
}

static void check_gpu(const rtv_config *cfg)
{
    printf("gpu:\n");
    if (strcmp(cfg->model.backend, "cuda")) {
        item(1, 0, "model.backend is cpu: no GPU needed", NULL);
        return;
    }
    const rtv_backend *b = NULL;
    int st = rtv_backend_by_name("cuda", &b);
    item(st == 0, 0, st ? rtv_last_error() : "CUDA backend and a CUDA device are available",
         "build with -Dcuda=enabled on a machine with nvcc and cuBLAS, and check nvidia-smi");
    if (st) return;
    rtv_gpu_split sp;
    st = rtv_gpu_split_init(&sp, cfg->gpu.device, (rtv_gpu_split_mode)cfg->gpu.split_mode,
                            cfg->gpu.action_sms);
    item(st == 0, 0, st ? rtv_last_error() : sp.note,
         "gpu.split.mode: streams or off work everywhere; mps needs nvidia-cuda-mps-control -d");
    rtv_gpu_split_free();
}

static void usage(FILE *f)
{
    fprintf(f, "usage: rtvla check -c CONFIG [--set key.path=value]...\n"
               "checks servos, cameras, permissions, real-time limits, model files and the GPU\n");
}

int rtv_cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof(*sets));
    int n_sets = 0, rc = 0;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[n_sets++] = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); goto out; }
        else {
            fprintf(stderr, "rtvla check: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            rc = 2;
            goto out;
        }
    }
    rtv_config cfg;
    printf("config:\n");
    if (rtv_config_load(&cfg, path, sets, n_sets)) {
        item(0, 0, rtv_last_error(), "edit the file (rtvla config --doc lists every key)");
        rc = 1;
        goto out;
    }
    item(1, 0, path ? path : "embedded default (configs/sim.yaml)", NULL);
    printf("robot:\n");
    if (rtv_robot_check(&cfg, stdout)) n_fail++;
    printf("cameras:\n");
    if (rtv_camera_check(&cfg, stdout)) n_fail++;
    check_rt(&cfg);
    check_model(&cfg);
    check_gpu(&cfg);
    printf("\n%d failed, %d warnings: %s\n", n_fail, n_warn,
           n_fail ? "fix the FAIL lines before `rtvla run`" : "ready to run");
    rc = n_fail ? 1 : 0;
out:
    free(sets);
    return rc;
}
