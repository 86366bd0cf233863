/* runtime/run_control.c — the robot's lifetime during a run and the control thread
 * (see runtime/run.h for what it does and runtime/run_impl.h for why it is its own file). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hal/robot.h"
#include "runtime/run_impl.h"
#include "runtime/status.h"

/* ---- control thread ---- */

static void publish_state(rtv_run *r, const rtv_robot_state *st)
{
    state_msg *m = &r->state_slot[rtv_tribuf_write_idx(&r->state_tb)];
    m->t_ns = st->t_ns;
    memcpy(m->pos, st->pos, sizeof(float) * (size_t)r->dof);
    if (r->history) {
        /* history ring -> (history, 3, dof), oldest first; missing frames repeat the oldest */
        int H = r->history, d = r->dof;
        size_t fr = (size_t)3 * (size_t)d;
        float *row = r->hist_ring + (size_t)r->hist_head * fr;
        memcpy(row, st->pos, sizeof(float) * (size_t)d);
        memcpy(row + d, st->vel, sizeof(float) * (size_t)d);
        memcpy(row + 2 * d, st->load, sizeof(float) * (size_t)d);
        r->hist_head = (r->hist_head + 1) % H;
        if (r->hist_n < H) r->hist_n++;
        for (int k = 0; k < H; k++) {
            int age = H - 1 - k; /* frames back from the newest */
            if (age >= r->hist_n) age = r->hist_n - 1;
            int idx = ((r->hist_head - 1 - age) % H + H) % H;
            memcpy(m->hist + (size_t)k * fr, r->hist_ring + (size_t)idx * fr, sizeof(float) * fr);
        }
    }
    rtv_tribuf_publish(&r->state_tb);
}

void *rtv_run_control_main(void *arg)
{
    rtv_run *r = arg;
    const rtv_config *cfg = r->cfg;
    rtv_rt_thread_setup("rtv-control", cfg->runtime.prio_control, cfg->runtime.cpu_control,
                        RUN_STACK_PREFAULT, &r->g_ctrl);
    rtv_safety *safety = rtv_robot_safety(r->robot);
    int64_t period_ns = 1000000000LL / cfg->robot.control_hz;
    int fault_ticks = cfg->robot.control_hz / 10;
    if (fault_ticks < RUN_FAULT_TICKS_MIN) fault_ticks = RUN_FAULT_TICKS_MIN;
    rtv_period per;
    rtv_period_init(&per, period_ns, rtv_clock_now_ns());
    rtv_robot_state st;
    memset(&st, 0, sizeof(st));
    uint64_t last_msg = 0, tick = 0;
    int64_t last_msg_ns = rtv_clock_now_ns();
    int holding = 1, bad_ticks = 0, prev_over = 0;
    char err[200];

    /* first state before anything else, so the action thread has an observation */
    if (rtv_robot_read_rt(r->robot, &st) == RTV_OK) {
        publish_state(r, &st);
        memcpy(r->start_pos, st.pos, sizeof(float) * (size_t)r->dof);
        r->have_start = 1;
    }
    atomic_store(&r->ctrl_started, 1);
    while (1) {
        uint64_t missed = 0;
        int64_t late = rtv_period_wait_rt(&per, &missed);
        int stop = atomic_load(&r->stop);
        if (stop == 2) break; /* torque off now: the supervisor does it once we are out */
        if (atomic_load(&r->fault)) {
            rtv_robot_hold_rt(r->robot); /* e.g. stale_policy stop; then the safe stop */
            break;
        }
        int64_t t0 = rtv_clock_now_ns();
        uint32_t flags = 0;
        if (missed || prev_over) flags |= RTV_TEL_F_MISS;
        if (missed) atomic_fetch_add_explicit(&r->ctrl_misses, missed, memory_order_relaxed);
        if (stop == 1) {
            /* graceful stop: hold where we are, then let the supervisor apply torque policy */
            rtv_robot_hold_rt(r->robot);
            break;
        }
        /* newest message from the action thread */
        if (rtv_tribuf_take_rt(&r->chunk_tb)) {
            const chunk_msg *m = &r->chunk_slot[rtv_tribuf_read_idx(&r->chunk_tb)];
            if (m->seq != last_msg) {
                last_msg = m->seq;
                last_msg_ns = t0;
                if (m->cmd == CMD_ACT) {
                    rtv_chunk_exec_push_rt(&r->exec, m->act, m->t_obs_ns, m->chunk_seq);
                    flags |= RTV_TEL_F_FRESH;
                } else {
                    rtv_chunk_exec_clear_rt(&r->exec);
                }
            }
        }
        rtv_chunk_pick pk = { 0 };
        int have = 0;
        if (rtv_safety_watchdog_rt(safety, t0, last_msg_ns)) {
            rtv_chunk_exec_clear_rt(&r->exec); /* the action thread went silent */
            atomic_fetch_add_explicit(&r->ctrl_watchdog, 1, memory_order_relaxed);
        } else {
            have = rtv_chunk_exec_step_rt(&r->exec, t0, r->goal, &pk);
        }
        int wst = RTV_OK, sflags = 0;
        int64_t tw0 = rtv_clock_now_ns();
        if (have) {
            wst = rtv_robot_write_rt(r->robot, r->goal, &sflags);
            holding = 0;
        } else {
            flags |= RTV_TEL_F_HOLD;
            atomic_fetch_add_explicit(&r->ctrl_holds, 1, memory_order_relaxed);
            if (!holding) wst = rtv_robot_hold_rt(r->robot); /* goal = present, once */
            holding = 1;
        }
        int64_t tw1 = rtv_clock_now_ns();
        if (have || wst) rtv_tel_push_rt(r->ring_ctrl, ST_BUS_WRITE, tw0, tw1, wst ? RTV_TEL_F_FAULT : 0,
                                         (float)sflags, 0, 0, 0);
        if (wst) snprintf(err, sizeof(err), "write: %s", rtv_last_error());
        int rst = rtv_robot_read_rt(r->robot, &st);
        int64_t tr1 = rtv_clock_now_ns();
        rtv_tel_push_rt(r->ring_ctrl, ST_BUS_READ, tw1, tr1, rst ? RTV_TEL_F_FAULT : 0, 0, 0, 0, 0);
        int servo_err = 0;
        if (!rst) {
            publish_state(r, &st);
            for (int j = 0; j < st.n; j++) servo_err |= st.servo_err[j];
            if (r->have_start)
                for (int j = 0; j < r->dof; j++) {
                    float dm = fabsf(st.pos[j] - r->start_pos[j]);
                    if (dm > r->max_move) r->max_move = dm;
                }
        } else {
            snprintf(err, sizeof(err), "read: %s", rtv_last_error());
        }
        if (wst || rst || servo_err) {
            flags |= RTV_TEL_F_FAULT;
            atomic_fetch_add_explicit(&r->ctrl_bus_errors, 1, memory_order_relaxed);
            if (servo_err && !wst && !rst)
                snprintf(err, sizeof(err), "servo error bits 0x%02x", servo_err);
            if (++bad_ticks >= fault_ticks) {
                char what[64];
                snprintf(what, sizeof(what), "servo bus fault on %d consecutive control ticks",
                         bad_ticks);
                rtv_run_set_fault(r, what, err);
                break;
            }
        } else {
            bad_ticks = 0;
        }
        int64_t t1 = rtv_clock_now_ns();
        prev_over = t1 - t0 > period_ns;
        atomic_fetch_add_explicit(&r->ctrl_ticks, 1, memory_order_relaxed);
        rtv_tel_push_rt(r->ring_ctrl, ST_CTRL, t0, t1, flags, have ? (float)pk.index : NAN,
                        have ? (float)pk.skipped : NAN, have ? (float)pk.n_contrib : NAN,
                        (float)late / 1e3f);
        if (tick++ == 0) {
            r->rt_allocs_ctrl = rtv_rt_alloc_count();
            rtv_rt_thread_mark(); /* warm-up done: no allocation from here on */
            atomic_store(&r->ctrl_marked, 1);
        }
    }
    rtv_rt_thread_unmark();
    return NULL;
}

int rtv_run_robot_open(rtv_run *r)
{
    rtv_robot_opts ro;
    rtv_robot_opts_default(&ro);
    ro.watchdog_ms = r->watchdog_ms;
    int st = rtv_robot_open_opts(&r->robot, r->cfg, &ro);
    if (st) return st;
    if (rtv_robot_n_joints(r->robot) != r->dof)
        return rtv_fail(RTV_E_ARG, "%s: the model acts on %d joints (model.robot_dof) but "
                        "robot.ids lists %d", r->cfg->path, r->dof, rtv_robot_n_joints(r->robot));
    return RTV_OK;
}

int rtv_run_robot_finish(rtv_run *r, rtv_run_end end, int *torque_off)
{
    *torque_off = 0;
    if (!r->robot) return RTV_OK;
    if (end == RTV_RUN_END_HARD) {
        if (rtv_robot_torque(r->robot, 0) == RTV_OK) *torque_off = 1;
        else fprintf(stderr, "rtvla: torque off: %s\n", rtv_last_error());
    } else if (end == RTV_RUN_END_FAULT) {
        if (rtv_robot_safe_stop(r->robot))
            fprintf(stderr, "rtvla: safe stop: %s\n", rtv_last_error());
    }
    int st = rtv_robot_close(r->robot); /* exit torque policy */
    r->robot = NULL;
    if (!st && r->cfg->robot.torque_on_exit == RTV_TORQUE_OFF) *torque_off = 1;
    return st;
}
