/* runtime/run_impl.h — what runtime/run.c (set-up, VL and action threads, supervisor) and
 * runtime/run_control.c (robot lifetime and the control thread) share. Private to the run. */
#ifndef RTV_RUN_IMPL_H
#define RTV_RUN_IMPL_H

#include <stdatomic.h>
#include <stdint.h>

#include "runtime/chunk.h"
#include "runtime/config.h"
#include "runtime/mailbox.h"
#include "runtime/rt.h"
#include "runtime/run.h"
#include "runtime/telemetry.h"

struct rtv_policy;
struct rtv_vl_ctx;
struct rtv_act_ctx;
struct rtv_features;
struct rtv_robot;
struct rtv_camera;

#define RUN_STACK_BYTES (1024 * 1024)     /* RT thread stacks (locked by mlockall) */
#define RUN_STACK_PREFAULT (256 * 1024)
#define RUN_FAULT_TICKS_MIN 5             /* consecutive bad control ticks that make a fault */
#define RUN_WIN 256                       /* status-line window of action cycle durations */

enum { ST_VL, ST_ACT, ST_CTRL, ST_BUS_WRITE, ST_BUS_READ, N_STAGES };

enum { CMD_ACT = 1, CMD_HOLD = 2, CMD_STOP = 3 };

/* action -> control; one triple-buffer slot. w:act r:ctrl, ordered by the exchange. */
typedef struct chunk_msg {
    int cmd;
    int64_t t_obs_ns;        /* the robot state's read time the chunk was computed from */
    int64_t t_pub_ns;
    uint64_t seq;            /* message number */
    uint64_t chunk_seq;      /* chunk number (CMD_ACT) */
    float *act;              /* (chunk, dof) robot units */
} chunk_msg;

/* control -> action; one triple-buffer slot. w:ctrl r:act. */
typedef struct state_msg {
    int64_t t_ns;            /* CLOCK_MONOTONIC when the bus read completed; 0 = none yet */
    float pos[RTV_MAX_MOTORS]; /* (dof) robot units */
    float *hist;             /* (history, 3, dof): pos, vel, load per frame, oldest first;
                                NULL when history 0 */
} state_msg;

struct rtv_run {
    int gpu_split;                    /* rtv_gpu_split_init succeeded: free at the end */
    const rtv_config *cfg;
    const rtv_run_opts *opts;
    int dof, horizon, history, n_cams;

    struct rtv_policy *policy;
    struct rtv_vl_ctx *vl;
    struct rtv_act_ctx *act;
    struct rtv_features *feat[3];
    struct rtv_robot *robot;
    struct rtv_camera *cams[RTV_MAX_CAMERAS];
    void *cam_pinned[RTV_MAX_CAMERAS]; /* camera buffers page-locked by the backend (host_pin) */
    const struct rtv_backend *b;       /* the model's backend (for host_unpin at the end) */
    rtv_telemetry *tel;
    rtv_tel_ring *ring_vl, *ring_act, *ring_ctrl;

    rtv_mailbox *mb;                 /* 64-byte aligned */
    rtv_tribuf chunk_tb;
    chunk_msg chunk_slot[3];
    rtv_tribuf state_tb;
    state_msg state_slot[3];
    rtv_chunk_exec exec;

    /* control-private */
    float goal[RTV_MAX_MOTORS];
    float *hist_ring;                /* (history, 3, dof) ring, control thread */
    int hist_n, hist_head;
    float start_pos[RTV_MAX_MOTORS];
    int have_start;
    float max_move;
    /* action-private */
    float *hist_copy;

    /* shared flags */
    _Atomic int stop;                /* 0 run, 1 graceful, 2 hard */
    _Atomic int fault;               /* 1: a thread stopped for a fault; reason in fault_msg */
    _Atomic int fault_claim;         /* the thread that sets the fault first writes fault_msg */
    char fault_msg[256];             /* w: faulting thread before fault=1 (release) */
    _Atomic int vl_stall_ms;
    _Atomic int ctrl_started, act_started;

    /* live counters (relaxed) for the status line and the result */
    _Atomic uint64_t vl_encodes, vl_errors;
    _Atomic uint64_t act_cycles, act_chunks, act_holds, act_stale, act_misses, act_uses_sum;
    _Atomic uint32_t vl_age_ms;
    _Atomic uint32_t act_dur_us[RUN_WIN];
    _Atomic uint64_t ctrl_ticks, ctrl_misses, ctrl_holds, ctrl_watchdog, ctrl_bus_errors;

    rtv_rt_grant g_vl, g_act, g_ctrl;
    uint64_t rt_allocs_act, rt_allocs_ctrl; /* alloc count at warm-up end, per thread */
    _Atomic int act_marked, ctrl_marked;
    int64_t t_start_ns;
    int watchdog_ms;
};

/* run.c */
void rtv_run_set_fault(rtv_run *r, const char *what, const char *detail);
/* run_control.c */
int rtv_run_robot_open(rtv_run *r);          /* opens the robot, checks its joints vs dof */
void *rtv_run_control_main(void *arg);       /* the control thread */
/* Torque handling after the threads stopped: hard -> torque off now; fault -> safe stop;
 * then close with the configured exit policy. Returns the close status. */
int rtv_run_robot_finish(rtv_run *r, rtv_run_end end, int *torque_off);

#endif
