/* runtime/run.h — one robot run: the threads of DESIGN.md "Data flow", wired and supervised.
 *
 *   camera capture (hal, one per view) -> VL thread: latest frame of every view + task ->
 *   rtv_policy_encode -> feature mailbox -> action thread (action_hz, SCHED_FIFO): newest
 *   features + latest robot state -> rtv_policy_act_rt -> chunk stamped with the state's time
 *   -> control thread (robot.control_hz, SCHED_FIFO): time-indexed action (latest | ensemble),
 *   safety filter, SYNC_WRITE, SYNC_READ -> state cell -> action thread.
 *
 * Every handoff is a wait-free triple buffer (runtime/mailbox.h). The action and control
 * threads allocate nothing, take no lock and do no file I/O after their first cycle; they
 * report through telemetry rings (runtime/telemetry.h) drained by the logger thread into
 * <log.dir>/<timestamp>/. The calling thread supervises: status line once per second on a
 * terminal, the stop conditions, and at the end the summary.
 *
 * Safety: the control thread holds position (goal = present, once) when the action thread
 * says hold (stale features, stale_policy hold), when the newest chunk has run out, and when
 * no message came from the action thread for 4 action periods (watchdog: a stalled or dead
 * action/VL thread never leaves the arm moving). Bus failures or servo error bits on 5
 * consecutive control ticks (at least 100 ms) are a fault: the control thread stops writing
 * and the supervisor applies the torque policy (rtv_robot_safe_stop). stale_policy stop does
 * the same. A stop request (rtv_run_request_stop(1), SIGINT/SIGTERM) holds, then closes the
 * robot with robot.torque_on_exit; a second request (2, second Ctrl-C) turns torque off now.
 */
#ifndef RTV_RUN_H
#define RTV_RUN_H

#include <stdint.h>

#include "runtime/config.h"

typedef struct rtv_run rtv_run;

typedef struct rtv_run_opts {
    const char *task;            /* the instruction given to the policy (required) */
    double duration_s;           /* stop after this long (0: until a stop request) */
    int signals;                 /* install SIGINT/SIGTERM handlers (the CLI does) */
    int status_line;             /* -1: when stdout is a terminal and log.status_line; 0/1 */
    int quiet;                   /* no summary on stdout */
    /* supervisor hook, called about every 50 ms from the calling thread (tests inject faults
     * with it); t_ms since the threads started. May be NULL. */
    void (*on_tick)(rtv_run *run, int64_t t_ms, void *user);
    void *user;
} rtv_run_opts;

typedef enum rtv_run_end {
    RTV_RUN_END_DURATION = 0,    /* --duration elapsed */
    RTV_RUN_END_REQUEST,         /* stop request / signal: hold, then torque policy */
    RTV_RUN_END_HARD,            /* second request: torque off at once */
    RTV_RUN_END_FAULT,           /* servo/bus fault or stale_policy stop: safe stop */
    RTV_RUN_END_ERROR,           /* a thread could not run (message in rtv_last_error) */
} rtv_run_end;

typedef struct rtv_run_result {
    char run_dir[RTV_PATH_MAX + 64];
    rtv_run_end end;
    char end_reason[256];
    double seconds;              /* threads' running time */
    uint64_t vl_encodes, vl_errors;
    uint64_t act_cycles, act_chunks, act_holds, act_stale, act_misses;
    uint64_t ctrl_ticks, ctrl_misses, ctrl_holds, ctrl_watchdog, ctrl_bus_errors;
    uint64_t actions_consumed, actions_skipped, chunks_received;
    uint64_t mb_fresh, mb_reused, mb_skipped;
    uint64_t rt_allocs;          /* allocator calls on action/control after warm-up (counted
                                    only when the test interposer is linked: rt_alloc_counted) */
    int rt_alloc_counted;
    uint64_t tel_records, tel_dropped;
    float max_move;              /* largest |position - start| over joints, normalized units */
    int torque_off_at_exit;      /* the torque policy ran and left torque off */
    char sched_action[48], sched_control[48], sched_vl[48];
    char gpu_split[256];   /* the effective SM split (kernels/gpu_split.h note), "" on CPU */
} rtv_run_result;

/* Runs until the duration, a stop request or a fault; then shuts down as described above,
 * writes summary.json/summary.txt and fills *res. Returns RTV_OK when the run itself worked
 * (a fault that was handled by a safe stop is still RTV_OK: see res->end), else an error
 * naming what failed (config, model, robot, camera, run folder). */
int rtv_run_main(const rtv_config *cfg, const rtv_run_opts *opts, rtv_run_result *res);

/* 1: graceful stop; 2: torque off now. Async-signal-safe; acts on the current run. */
void rtv_run_request_stop(int level);

/* For the on_tick hook (tests): the robot (hal/robot.h) of the run; NULL before it opened. */
struct rtv_robot *rtv_run_robot(rtv_run *run);
/* Makes the VL thread sleep stall_ms before its next encode (an injected VL stall). */
void rtv_run_inject_vl_stall(rtv_run *run, int stall_ms);

#endif
