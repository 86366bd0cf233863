/* hal/robot.c — open/configure the arm, real-time state read and goal write, torque policy,
 * and the robot part of `rtvla check`. */
#include "hal/robot.h"

#include <errno.h>
#include <grp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hal/dynamixel.h"
#include "hal/feetech.h"
#include "hal/serial.h"
#include "runtime/status.h"

struct rtv_robot {
    rtv_bus *bus;
    rtv_sim *sim;
    rtv_bus_proto proto;
    rtv_torque_exit torque_on_exit;
    int n;
    uint8_t ids[RTV_MAX_MOTORS];
    char names[RTV_MAX_MOTORS][32];
    int model[RTV_MAX_MOTORS];               /* reported by the servo */
    rtv_motor_units mode[RTV_MAX_MOTORS];
    rtv_calib calib;                         /* as loaded (file values) */
    rtv_motor_calib cal_sw[RTV_MAX_MOTORS];  /* what the conversions use (DXL: drive_mode 0) */
    rtv_safety safety;
    rtv_robot_state last;                    /* w/r: control thread after open */
    int read_addr, read_len;
    uint8_t rx[RTV_MAX_MOTORS * 16];
    uint8_t tx[RTV_MAX_MOTORS * 4];
    float goal_buf[RTV_MAX_MOTORS];
    FILE *log;
    char port[RTV_PATH_MAX];
};

/* ---- arm description --------------------------------------------------------------------- */

static int arm_table(const char *type, rtv_bus_proto *proto, const rtv_motor_desc **m, int *n)
{
    if (!strcmp(type, "so100") || !strcmp(type, "so101")) {
        *proto = RTV_BUS_FEETECH;
        *m = rtv_feetech_so101_motors(n);
        return RTV_OK;
    }
    if (!strcmp(type, "koch")) {
        *proto = RTV_BUS_DYNAMIXEL;
        *m = rtv_dxl_koch_motors(n);
        return RTV_OK;
    }
    return rtv_fail(RTV_E_ARG, "robot.type '%s': expected so100, so101 or koch", type);
}

/* Joint i's name and motor description (NULL beyond the arm's table). */
static const rtv_motor_desc *joint_desc(const rtv_motor_desc *m, int n_table, int i)
{
    return i < n_table ? &m[i] : NULL;
}

static void joint_name(const rtv_motor_desc *d, int id, char *buf, size_t cap)
{
    if (d) snprintf(buf, cap, "%s", d->name);
    else snprintf(buf, cap, "motor_%d", id);
}

void rtv_robot_sim_calib(const rtv_config *cfg, rtv_calib *c)
{
    rtv_bus_proto proto = RTV_BUS_FEETECH;
    const rtv_motor_desc *m = NULL;
    int nt = 0;
    memset(c, 0, sizeof(*c));
    if (arm_table(cfg->robot.type, &proto, &m, &nt)) nt = 0;
    c->n = cfg->robot.n_motors;
    for (int i = 0; i < c->n; i++) {
        rtv_motor_calib *k = &c->m[i];
        const rtv_motor_desc *d = joint_desc(m, nt, i);
        joint_name(d, cfg->robot.ids[i], k->name, sizeof(k->name));
        k->id = cfg->robot.ids[i];
        k->range_min = 1024;
        k->range_max = 3072;
        if (!strcmp(k->name, "wrist_roll")) {
            k->range_min = 0;
            k->range_max = 4095;
        } else if (d && d->gripper) {
            k->range_min = 2048;
            k->range_max = 3072;
        }
    }
}

static void sim_opts_from_cfg(const rtv_config *cfg, rtv_bus_proto proto, rtv_sim_opts *so)
{
    rtv_sim_opts_default(so, proto, cfg->robot.n_motors);
    const rtv_motor_desc *m = NULL;
    int nt = 0;
    rtv_bus_proto p2 = RTV_BUS_FEETECH;
    if (arm_table(cfg->robot.type, &p2, &m, &nt)) nt = 0;
    for (int i = 0; i < so->n_servos; i++) {
        so->ids[i] = cfg->robot.ids[i];
        if (i < nt) so->model_numbers[i] = m[i].model_number;
        so->initial_ticks[i] = 2048;
    }
    so->baud = cfg->robot.baud;
    so->latency_us = cfg->robot.sim_latency_us;
    so->noise_ticks = cfg->robot.sim_noise;
    so->tau_ms = cfg->robot.sim_tau_ms;
    /* The simulator stands in for servos, which answer within microseconds whatever the host
     * is doing: its thread runs at the control thread's SCHED_FIFO priority (when granted),
     * so an encode on the same cores does not delay its replies. */
    so->rt_prio = cfg->runtime.prio_control;
}

/* ---- register helpers (init-time) -------------------------------------------------------- */

static int rd(rtv_robot *r, int i, int addr, int size, int32_t *v)
{
    uint32_t u = 0;
    int st = rtv_bus_read_u(r->bus, r->ids[i], addr, size, &u);
    if (st) return rtv_fail_prefix(st, "robot joint %s", r->names[i]);
    *v = size == 4 ? (int32_t)u : (int32_t)u;
    return RTV_OK;
}

static int wr(rtv_robot *r, int i, int addr, int size, uint32_t v)
{
    int st = rtv_bus_write_u(r->bus, r->ids[i], addr, size, v);
    return st ? rtv_fail_prefix(st, "robot joint %s", r->names[i]) : RTV_OK;
}

static int torque_off_one(rtv_robot *r, int i)
{
    int st;
    if (r->proto == RTV_BUS_FEETECH) {
        if ((st = wr(r, i, RTV_STS_TORQUE_ENABLE, 1, 0))) return st;
        return wr(r, i, RTV_STS_LOCK, 1, 0);
    }
    return wr(r, i, RTV_XL_TORQUE_ENABLE, 1, 0);
}

/* Writes the calibration to servos whose registers differ (torque off first). */
static int sync_calibration(rtv_robot *r)
{
    for (int i = 0; i < r->n; i++) {
        const rtv_motor_calib *c = &r->calib.m[i];
        int32_t off = 0, lo = 0, hi = 0, dm = 0;
        int st;
        if (r->proto == RTV_BUS_FEETECH) {
            if ((st = rd(r, i, RTV_STS_HOMING_OFFSET, 2, &off)) || (st = rd(r, i, RTV_STS_MIN_POSITION, 2, &lo)) ||
                (st = rd(r, i, RTV_STS_MAX_POSITION, 2, &hi)))
                return st;
            off = rtv_feetech_sm_decode((uint16_t)off, 11);
        } else {
            if ((st = rd(r, i, RTV_XL_HOMING_OFFSET, 4, &off)) || (st = rd(r, i, RTV_XL_MIN_POSITION, 4, &lo)) ||
                (st = rd(r, i, RTV_XL_MAX_POSITION, 4, &hi)) || (st = rd(r, i, RTV_XL_DRIVE_MODE, 1, &dm)))
                return st;
            dm &= 1;
        }
        if (off == c->homing_offset && lo == c->range_min && hi == c->range_max &&
            (r->proto == RTV_BUS_FEETECH || dm == c->drive_mode))
            continue;
        fprintf(r->log, "robot: %s (id %d): servo has offset %d range %d..%d%s, calibration %s "
                "says %d, %d..%d: writing the calibration\n", r->names[i], r->ids[i], off, lo, hi,
                r->proto == RTV_BUS_DYNAMIXEL ? (dm ? " drive_mode 1" : " drive_mode 0") : "",
                r->calib.path[0] ? r->calib.path : "(built-in)", c->homing_offset, c->range_min, c->range_max);
        if ((st = torque_off_one(r, i))) return st;
        if (r->proto == RTV_BUS_FEETECH) {
            uint16_t x;
            if ((st = rtv_feetech_sm_encode(c->homing_offset, 11, &x))) return st;
            if ((st = wr(r, i, RTV_STS_HOMING_OFFSET, 2, x)) || (st = wr(r, i, RTV_STS_MIN_POSITION, 2, (uint32_t)c->range_min)) ||
                (st = wr(r, i, RTV_STS_MAX_POSITION, 2, (uint32_t)c->range_max)))
                return st;
        } else {
            if ((st = wr(r, i, RTV_XL_HOMING_OFFSET, 4, (uint32_t)c->homing_offset)) ||
                (st = wr(r, i, RTV_XL_MIN_POSITION, 4, (uint32_t)c->range_min)) ||
                (st = wr(r, i, RTV_XL_MAX_POSITION, 4, (uint32_t)c->range_max)) ||
                (st = wr(r, i, RTV_XL_DRIVE_MODE, 1, (uint32_t)c->drive_mode)))
                return st;
        }
    }
    return RTV_OK;
}

/* LeRobot's configure() (servo_protocols.md §3.4 / §2.9), torque off throughout. */
static int configure(rtv_robot *r)
{
    int st;
    for (int i = 0; i < r->n; i++) {
        if ((st = torque_off_one(r, i))) return st;
        int grip = r->mode[i] == RTV_NORM_RANGE_0_100;
        if (r->proto == RTV_BUS_FEETECH) {
            int32_t phase = 0;
            if ((st = wr(r, i, RTV_STS_RETURN_DELAY, 1, 0)) || (st = wr(r, i, RTV_STS_MAX_ACCELERATION, 1, 254)) ||
                (st = wr(r, i, RTV_STS_ACCELERATION, 1, 254)) || (st = rd(r, i, RTV_STS_PHASE, 1, &phase)))
                return st;
            if ((phase & 0x10) && (st = wr(r, i, RTV_STS_PHASE, 1, (uint32_t)(phase & ~0x10)))) return st;
            if ((st = wr(r, i, RTV_STS_OPERATING_MODE, 1, 0)) || (st = wr(r, i, RTV_STS_P_COEF, 1, 16)) ||
                (st = wr(r, i, RTV_STS_I_COEF, 1, 0)) || (st = wr(r, i, RTV_STS_D_COEF, 1, 32)))
                return st;
            if (grip && ((st = wr(r, i, RTV_STS_MAX_TORQUE_LIMIT, 2, 500)) ||
                         (st = wr(r, i, RTV_STS_PROTECTION_CURRENT, 2, 250)) ||
                         (st = wr(r, i, RTV_STS_OVERLOAD_TORQUE, 1, 25))))
                return st;
        } else {
            if ((st = wr(r, i, RTV_XL_RETURN_DELAY, 1, 0)) || (st = wr(r, i, RTV_XL_OPERATING_MODE, 1, grip ? 5 : 4)))
                return st;
            if (!strcmp(r->names[i], "elbow_flex") &&
                ((st = wr(r, i, RTV_XL_POSITION_P, 2, 1500)) || (st = wr(r, i, RTV_XL_POSITION_I, 2, 0)) ||
                 (st = wr(r, i, RTV_XL_POSITION_D, 2, 600))))
                return st;
        }
    }
    return RTV_OK;
}

/* ---- open / close ------------------------------------------------------------------------ */

void rtv_robot_opts_default(rtv_robot_opts *o)
{
    o->body_mode = -1;
    o->watchdog_ms = 0;
    o->configure = 1;
    o->log = NULL;
}

int rtv_robot_open(rtv_robot **out, const rtv_config *cfg)
{
    rtv_robot_opts o;
    rtv_robot_opts_default(&o);
    return rtv_robot_open_opts(out, cfg, &o);
}

int rtv_robot_open_opts(rtv_robot **out, const rtv_config *cfg, const rtv_robot_opts *o)
{
    *out = NULL;
    const rtv_motor_desc *table = NULL;
    int nt = 0, st;
    rtv_bus_proto proto = RTV_BUS_FEETECH;
    if ((st = arm_table(cfg->robot.type, &proto, &table, &nt))) return st;
    int n = cfg->robot.n_motors;
    if (n < 1 || n > RTV_MAX_MOTORS)
        return rtv_fail(RTV_E_ARG, "robot.ids: %d servos, expected 1..%d", n, RTV_MAX_MOTORS);
    int is_sim = !strcmp(cfg->robot.port, "sim");
    if (!is_sim && !cfg->robot.calibration[0])
        return rtv_fail(RTV_E_ARG, "robot.calibration: required for port %s (LeRobot calibration "
                        "JSON of this arm)", cfg->robot.port);
    rtv_robot *r = calloc(1, sizeof(*r));
    if (!r) return rtv_fail(RTV_E_NOMEM, "robot: out of memory");
    r->proto = proto;
    r->n = n;
    r->torque_on_exit = cfg->robot.torque_on_exit;
    r->log = o->log ? o->log : stderr;
    rtv_motor_units body = o->body_mode >= 0 ? (rtv_motor_units)o->body_mode
                         : proto == RTV_BUS_FEETECH ? RTV_NORM_DEGREES : RTV_NORM_RANGE_M100_100;
    const char *names[RTV_MAX_MOTORS];
    for (int i = 0; i < n; i++) {
        const rtv_motor_desc *d = joint_desc(table, nt, i);
        r->ids[i] = (uint8_t)cfg->robot.ids[i];
        joint_name(d, cfg->robot.ids[i], r->names[i], sizeof(r->names[i]));
        names[i] = r->names[i];
        r->mode[i] = d && d->gripper ? RTV_NORM_RANGE_0_100 : body;
    }
    /* calibration */
    if (cfg->robot.calibration[0]) {
        if ((st = rtv_calib_load(&r->calib, cfg->robot.calibration, names, n, proto == RTV_BUS_FEETECH)))
            goto fail;
        for (int i = 0; i < n; i++)
            if (r->calib.m[i].id != r->ids[i]) {
                st = rtv_fail(RTV_E_INPUT, "%s: motor '%s' has id %d, but robot.ids[%d] is %d",
                              cfg->robot.calibration, names[i], r->calib.m[i].id, i, r->ids[i]);
                goto fail;
            }
    } else {
        rtv_robot_sim_calib(cfg, &r->calib);
    }
    for (int i = 0; i < n; i++) {
        r->cal_sw[i] = r->calib.m[i];
        if (proto == RTV_BUS_DYNAMIXEL) r->cal_sw[i].drive_mode = 0; /* the servo inverts */
    }
    /* port */
    const char *path = cfg->robot.port;
    if (is_sim) {
        rtv_sim_opts so;
        sim_opts_from_cfg(cfg, proto, &so);
        if ((st = rtv_sim_start(&r->sim, &so))) goto fail;
        path = rtv_sim_path(r->sim);
    }
    snprintf(r->port, sizeof(r->port), "%s", path);
    if ((st = rtv_bus_open(&r->bus, path, cfg->robot.baud, proto, cfg->robot.retries))) goto fail;
    /* handshake: every servo answers with the model the arm needs */
    for (int i = 0; i < n; i++) {
        const rtv_motor_desc *d = joint_desc(table, nt, i);
        if ((st = rtv_bus_ping(r->bus, r->ids[i], &r->model[i]))) {
            st = rtv_fail_prefix(st, "robot %s: servo %d (%s) on %s", cfg->robot.type, r->ids[i],
                                 r->names[i], cfg->robot.port);
            goto fail;
        }
        if (d && r->model[i] != d->model_number) {
            st = rtv_fail(RTV_E_DEVICE, "robot %s: servo %d (%s) on %s reports model %d, expected "
                          "%d (%s): wrong id or wrong arm type?", cfg->robot.type, r->ids[i], r->names[i],
                          cfg->robot.port, r->model[i], d->model_number, d->model);
            goto fail;
        }
    }
    /* LeRobot's _assert_same_firmware: mixed STS firmware misbehaves on one bus (lerobot #1010) */
    if (proto == RTV_BUS_FEETECH) {
        int maj0 = -1, min0 = -1;
        for (int i = 0; i < n; i++) {
            uint8_t fw[2];
            if ((st = rtv_bus_read(r->bus, r->ids[i], RTV_STS_FIRMWARE_MAJOR, fw, 2))) {
                st = rtv_fail_prefix(st, "robot joint %s", r->names[i]);
                goto fail;
            }
            if (i == 0) {
                maj0 = fw[0];
                min0 = fw[1];
            } else if (fw[0] != maj0 || fw[1] != min0) {
                st = rtv_fail(RTV_E_DEVICE, "robot %s on %s: servo %d (%s) runs firmware %d.%d, servo %d "
                              "(%s) %d.%d: one version per bus is required (update with Feetech's FD "
                              "tool)", cfg->robot.type, cfg->robot.port, r->ids[0], r->names[0], maj0,
                              min0, r->ids[i], r->names[i], fw[0], fw[1]);
                goto fail;
            }
        }
    }
    if ((st = sync_calibration(r))) goto fail;
    if (o->configure && (st = configure(r))) goto fail;
    /* state block: Feetech 56..63 (pos, vel, load, V, T); Dynamixel 126..135 (cur/load, vel, pos) */
    r->read_addr = proto == RTV_BUS_FEETECH ? RTV_STS_PRESENT_POSITION : RTV_XL_PRESENT_CURRENT;
    r->read_len = proto == RTV_BUS_FEETECH ? 8 : 10;
    r->last.n = n;
    float lo[RTV_MAX_MOTORS], hi[RTV_MAX_MOTORS];
    for (int i = 0; i < n; i++) {
        double a = rtv_calib_to_norm(&r->cal_sw[i], r->mode[i], r->cal_sw[i].range_min);
        double b = rtv_calib_to_norm(&r->cal_sw[i], r->mode[i], r->cal_sw[i].range_max);
        lo[i] = (float)(a < b ? a : b);
        hi[i] = (float)(a < b ? b : a);
    }
    if ((st = rtv_safety_init(&r->safety, n, lo, hi, cfg->robot.max_relative_target, o->watchdog_ms)))
        goto fail;
    if ((st = rtv_robot_torque(r, 1))) goto fail;
    *out = r;
    return RTV_OK;
fail:
    rtv_bus_close(r->bus);
    rtv_sim_stop(r->sim);
    free(r);
    return st;
}

int rtv_robot_safe_stop(rtv_robot *r)
{
    if (r->torque_on_exit == RTV_TORQUE_HOLD) {
        rtv_robot_state st;
        int s1 = rtv_robot_read_rt(r, &st);
        int s2 = rtv_robot_hold_rt(r);
        return s1 ? s1 : s2;
    }
    rtv_bus_set_retries(r->bus, 5); /* LeRobot's disconnect budget */
    int first = RTV_OK;
    for (int i = 0; i < r->n; i++) {
        int st = torque_off_one(r, i);
        if (st && !first) first = st;
    }
    return first;
}

int rtv_robot_close(rtv_robot *r)
{
    if (!r) return RTV_OK;
    int st = rtv_robot_safe_stop(r);
    rtv_bus_close(r->bus);
    rtv_sim_stop(r->sim);
    free(r);
    return st;
}

int rtv_robot_torque(rtv_robot *r, int on)
{
    int st;
    if (!on) {
        for (int i = 0; i < r->n; i++)
            if ((st = torque_off_one(r, i))) return st;
        return RTV_OK;
    }
    rtv_robot_state s;
    if ((st = rtv_robot_read_rt(r, &s))) return st;
    if ((st = rtv_robot_hold_rt(r))) return st; /* goal = present: no jump when torque comes on */
    for (int i = 0; i < r->n; i++) {
        if (r->proto == RTV_BUS_FEETECH) {
            if ((st = wr(r, i, RTV_STS_TORQUE_ENABLE, 1, 1)) || (st = wr(r, i, RTV_STS_LOCK, 1, 1))) return st;
        } else if ((st = wr(r, i, RTV_XL_TORQUE_ENABLE, 1, 1))) {
            return st;
        }
    }
    return RTV_OK;
}

/* ---- real-time path ---------------------------------------------------------------------- */

int rtv_robot_read_rt(rtv_robot *r, rtv_robot_state *out)
{
    int st = rtv_bus_sync_read_rt(r->bus, r->read_addr, r->read_len, r->ids, r->n, r->rx);
    if (st) {
        r->last.stale = 1;
        *out = r->last;
        return st;
    }
    rtv_robot_state *s = &r->last;
    s->t_ns = rtv_serial_now_ns();
    s->stale = 0;
    for (int i = 0; i < r->n; i++) {
        const uint8_t *p = r->rx + (size_t)i * (size_t)r->read_len;
        int32_t pos, vel_ticks_s;
        float load;
        if (r->proto == RTV_BUS_FEETECH) {
            pos = rtv_feetech_sm_decode((uint16_t)(p[0] | p[1] << 8), 15);
            vel_ticks_s = rtv_feetech_sm_decode((uint16_t)(p[2] | p[3] << 8), 15);
            load = 0.1f * (float)rtv_feetech_sm_decode((uint16_t)(p[4] | p[5] << 8), 10);
        } else {
            int16_t cur = (int16_t)(p[0] | p[1] << 8);
            int32_t v = (int32_t)((uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24);
            pos = (int32_t)((uint32_t)p[6] | (uint32_t)p[7] << 8 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 24);
            vel_ticks_s = (int32_t)lround(v * (0.229 * 4096.0 / 60.0));
            load = r->model[i] == RTV_XL430_W250_MODEL ? 0.1f * cur : (float)cur;
        }
        s->pos_ticks[i] = pos;
        s->pos[i] = (float)rtv_calib_to_norm(&r->cal_sw[i], r->mode[i], pos);
        s->vel[i] = (float)(vel_ticks_s * rtv_calib_units_per_tick(&r->cal_sw[i], r->mode[i]));
        s->load[i] = load;
        s->servo_err[i] = (uint8_t)rtv_bus_servo_error(r->bus, r->ids[i]);
    }
    *out = *s;
    return RTV_OK;
}

int rtv_robot_write_rt(rtv_robot *r, const float *goal, int *flags)
{
    float *g = r->goal_buf;
    int f = rtv_safety_apply_rt(&r->safety, goal, r->last.pos, g);
    if (flags) *flags = f;
    for (int i = 0; i < r->n; i++) {
        const rtv_motor_calib *c = &r->cal_sw[i];
        int raw = rtv_calib_from_norm(c, r->mode[i], g[i]);
        /* second guard in ticks: rounding never leaves the calibrated range */
        raw = raw < c->range_min ? c->range_min : raw > c->range_max ? c->range_max : raw;
        if (r->proto == RTV_BUS_FEETECH) {
            uint16_t x = 0;
            rtv_feetech_sm_encode(raw, 15, &x); /* raw in 0..4095: always fits */
            r->tx[2 * i] = (uint8_t)x;
            r->tx[2 * i + 1] = (uint8_t)(x >> 8);
        } else {
            uint32_t u = (uint32_t)raw;
            for (int k = 0; k < 4; k++) r->tx[4 * i + k] = (uint8_t)(u >> (8 * k));
        }
    }
    int addr = r->proto == RTV_BUS_FEETECH ? RTV_STS_GOAL_POSITION : RTV_XL_GOAL_POSITION;
    return rtv_bus_sync_write_rt(r->bus, addr, r->proto == RTV_BUS_FEETECH ? 2 : 4, r->ids, r->n, r->tx);
}

int rtv_robot_hold_rt(rtv_robot *r)
{
    float hold[RTV_MAX_MOTORS];
    memcpy(hold, r->last.pos, sizeof(hold));
    return rtv_robot_write_rt(r, hold, NULL);
}

int rtv_robot_n_joints(const rtv_robot *r) { return r->n; }
const char *rtv_robot_joint_name(const rtv_robot *r, int i) { return i >= 0 && i < r->n ? r->names[i] : "?"; }
rtv_motor_units rtv_robot_joint_mode(const rtv_robot *r, int i) { return r->mode[i]; }
const rtv_calib *rtv_robot_calib(const rtv_robot *r) { return &r->calib; }
rtv_bus *rtv_robot_bus(rtv_robot *r) { return r->bus; }
rtv_safety *rtv_robot_safety(rtv_robot *r) { return &r->safety; }
rtv_sim *rtv_robot_sim(rtv_robot *r) { return r->sim; }
const char *rtv_robot_port(const rtv_robot *r) { return r->port; }

/* ---- rtvla check ------------------------------------------------------------------------- */

static void item(FILE *out, int *fails, int ok, int warn_only, const char *what, const char *fix)
{
    if (ok) {
        fprintf(out, "  [ok]   %s\n", what);
        return;
    }
    if (!warn_only) (*fails)++;
    fprintf(out, "  [%s] %s\n", warn_only ? "warn" : "FAIL", what);
    if (fix && *fix) fprintf(out, "         fix: %s\n", fix);
}

static int check_port_file(const rtv_config *cfg, FILE *out, int *fails)
{
    const char *port = cfg->robot.port;
    char buf[RTV_PATH_MAX + 512];
    struct stat st;
    if (stat(port, &st)) {
        snprintf(buf, sizeof(buf), "port %s: %s", port, strerror(errno));
        rtv_serial_info ports[16];
        int n = 0;
        char fix[1024];
        size_t k = (size_t)snprintf(fix, sizeof(fix), "plug in and power the adapter; set robot.port to "
                                    "its /dev/serial/by-id/ name");
        if (rtv_serial_list(ports, 16, &n) == 0 && n > 0) {
            k += (size_t)snprintf(fix + k, sizeof(fix) - k, " (ports found:");
            for (int i = 0; i < n && i < 16 && k + 80 < sizeof(fix); i++)
                k += (size_t)snprintf(fix + k, sizeof(fix) - k, " %s%s%s%s", ports[i].path,
                                      ports[i].description[0] ? " [" : "", ports[i].description,
                                      ports[i].description[0] ? "]" : "");
            snprintf(fix + k, sizeof(fix) - k, ")");
        } else {
            snprintf(fix + k, sizeof(fix) - k, " (no serial ports found)");
        }
        item(out, fails, 0, 0, buf, fix);
        return 0;
    }
    int rw = access(port, R_OK | W_OK) == 0;
    struct group *g = getgrgid(st.st_gid);
    const char *grp = g ? g->gr_name : "dialout";
    snprintf(buf, sizeof(buf), "port %s is %s (group %s)", port, rw ? "readable and writable" :
             "not accessible to this user", grp);
    char fix[256];
    snprintf(fix, sizeof(fix), "sudo usermod -aG %s $USER, then log out and in again", grp);
    item(out, fails, rw, 0, buf, fix);
    char lfix[512];
    int ms = rtv_serial_latency_timer_ms(port, lfix, sizeof(lfix));
    if (ms < 0) snprintf(buf, sizeof(buf), "adapter has no FTDI latency timer (CDC-ACM or similar: "
                         "~1 ms USB frames)");
    else snprintf(buf, sizeof(buf), "FTDI latency timer %d ms%s", ms,
                  ms > 1 ? ": each status packet may wait that long (1 ms wanted)" : "");
    item(out, fails, ms <= 1, 1, buf, lfix);
    return rw;
}

int rtv_robot_check(const rtv_config *cfg, FILE *out)
{
    int fails = 0, st;
    char buf[RTV_ERR_MAX + 256];
    const rtv_motor_desc *table = NULL;
    int nt = 0;
    rtv_bus_proto proto = RTV_BUS_FEETECH;
    if ((st = arm_table(cfg->robot.type, &proto, &table, &nt))) {
        item(out, &fails, 0, 0, rtv_last_error(), "robot.type: so100, so101 or koch");
        return 1;
    }
    int is_sim = !strcmp(cfg->robot.port, "sim");
    int port_ok = is_sim || check_port_file(cfg, out, &fails);
    /* calibration */
    if (cfg->robot.calibration[0]) {
        rtv_calib c;
        const char *names[RTV_MAX_MOTORS];
        char nbuf[RTV_MAX_MOTORS][32];
        for (int i = 0; i < cfg->robot.n_motors; i++) {
            joint_name(joint_desc(table, nt, i), cfg->robot.ids[i], nbuf[i], sizeof(nbuf[i]));
            names[i] = nbuf[i];
        }
        st = rtv_calib_load(&c, cfg->robot.calibration, names, cfg->robot.n_motors, proto == RTV_BUS_FEETECH);
        snprintf(buf, sizeof(buf), "calibration %s%s", st ? "" : cfg->robot.calibration,
                 st ? rtv_last_error() : ": every motor present, ranges valid");
        item(out, &fails, !st, 0, buf, "run lerobot-calibrate for this arm and point robot.calibration at "
             "the JSON it writes (~/.cache/huggingface/lerobot/calibration/robots/...)");
    } else {
        item(out, &fails, is_sim, 0, is_sim ? "calibration: the simulator's built-in one"
             : "robot.calibration is empty", "set robot.calibration to the arm's LeRobot JSON");
    }
    if (!port_ok) {
        fprintf(out, "  [skip] servos not pinged: the port is not usable\n");
        return 1;
    }
    /* open and ping */
    rtv_sim *sim = NULL;
    const char *path = cfg->robot.port;
    if (is_sim) {
        rtv_sim_opts so;
        sim_opts_from_cfg(cfg, proto, &so);
        st = rtv_sim_start(&sim, &so);
        snprintf(buf, sizeof(buf), "simulated %s bus (%s): %s", cfg->robot.type,
                 proto == RTV_BUS_FEETECH ? "Feetech STS" : "Dynamixel 2.0", st ? rtv_last_error() : "started");
        item(out, &fails, !st, 0, buf, "the simulator needs /dev/ptmx (pseudo-terminals)");
        if (st) return 1;
        path = rtv_sim_path(sim);
    }
    rtv_bus *bus = NULL;
    st = rtv_bus_open(&bus, path, cfg->robot.baud, proto, cfg->robot.retries);
    if (st) {
        item(out, &fails, 0, 0, rtv_last_error(), "see the port line above");
        rtv_sim_stop(sim);
        return 1;
    }
    rtv_serial *sp = rtv_bus_serial(bus);
    snprintf(buf, sizeof(buf), "opened %s at %d baud (%s back end, ASYNC_LOW_LATENCY %s)", path,
             cfg->robot.baud, rtv_serial_backend_name(sp),
             rtv_serial_low_latency(sp) ? "on" : "not available on this driver");
    item(out, &fails, 1, 0, buf, NULL);
    for (int i = 0; i < cfg->robot.n_motors; i++) {
        const rtv_motor_desc *d = joint_desc(table, nt, i);
        char name[32];
        int id = cfg->robot.ids[i], model = 0;
        joint_name(d, id, name, sizeof(name));
        st = rtv_bus_ping(bus, id, &model);
        if (st) {
            snprintf(buf, sizeof(buf), "servo %d (%s): %s", id, name, rtv_last_error());
            item(out, &fails, 0, 0, buf, "check power and the daisy chain; the id and baud must match "
                 "(lerobot-setup-motors sets them)");
            continue;
        }
        uint32_t u = 0;
        int pst = proto == RTV_BUS_FEETECH ? rtv_bus_read_u(bus, id, RTV_STS_PRESENT_POSITION, 2, &u)
                                           : rtv_bus_read_u(bus, id, RTV_XL_PRESENT_POSITION, 4, &u);
        int32_t pos = proto == RTV_BUS_FEETECH ? rtv_feetech_sm_decode((uint16_t)u, 15) : (int32_t)u;
        int model_ok = !d || model == d->model_number;
        char posbuf[64];
        if (pst) snprintf(posbuf, sizeof(posbuf), "position unreadable");
        else snprintf(posbuf, sizeof(posbuf), "position %d ticks", pos);
        snprintf(buf, sizeof(buf), "servo %d (%s): model %d%s%s%s, %s", id, name, model,
                 d ? " (" : "", d ? (model_ok ? d->model : "expected ") : "", d ? ")" : "", posbuf);
        if (d && !model_ok) {
            char exp[64];
            snprintf(exp, sizeof(exp), "expected %d (%s)", d->model_number, d->model);
            snprintf(buf, sizeof(buf), "servo %d (%s): model %d, %s", id, name, model, exp);
        }
        item(out, &fails, model_ok && !pst, 0, buf, model_ok ? "servo answers ping but not reads: "
             "check the supply voltage" : "wrong arm type (robot.type) or two servos swapped ids");
    }
    rtv_bus_counters c;
    rtv_bus_counters_get(bus, &c);
    if (c.retries || c.corrupt) {
        snprintf(buf, sizeof(buf), "bus needed %llu retries (%llu corrupt packets) during the check",
                 (unsigned long long)c.retries, (unsigned long long)c.corrupt);
        item(out, &fails, 0, 1, buf, "noisy bus: check cables, the supply and that every servo "
             "runs the same firmware");
    }
    rtv_bus_close(bus);
    rtv_sim_stop(sim);
    return fails ? 1 : 0;
}
