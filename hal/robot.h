/* hal/robot.h — the arm as the runtime sees it.
 *
 * rtv_robot_open() takes the robot section of the config (type, port, baud, ids, calibration,
 * retries, max_relative_target, torque_on_exit, sim.*): with port "sim" it first starts the
 * simulator (hal/sim.h) and opens its pty like a real port. It then pings every servo and
 * checks its model, loads the LeRobot calibration (the simulator's built-in one when
 * robot.calibration is ""), writes the calibration to servos whose registers differ (torque
 * off; the diff is logged), applies LeRobot's configuration (return delay 0, position mode,
 * gains, gripper current limits), sets every goal to the present position and enables torque.
 *
 * Units: positions in the normalized units a LeRobot policy was trained on — SO-100/101 body
 * joints in degrees (lerobot's use_degrees default since 2026-02), Koch body joints in
 * -100..100, grippers 0..100; rtv_robot_opts.body_mode overrides (older SO datasets: -100..100).
 *
 * Real-time: rtv_robot_read_rt (one SYNC_READ of position, velocity and load),
 * rtv_robot_write_rt (safety filter, then one SYNC_WRITE of Goal_Position) and
 * rtv_robot_hold_rt use only memory allocated at open; the control thread owns them.
 * Every goal goes through rtv_safety_apply_rt (hal/safety.h): nothing outside the joint
 * limits, no step larger than max_relative_target, no NaN ever reaches a servo.
 * Everything else is init-time / non-real-time.
 */
#ifndef RTV_HAL_ROBOT_H
#define RTV_HAL_ROBOT_H

#include <stdint.h>
#include <stdio.h>

#include "hal/bus.h"
#include "hal/calib.h"
#include "hal/motor.h"
#include "hal/safety.h"
#include "hal/sim.h"
#include "runtime/config.h"

typedef struct rtv_robot rtv_robot;

typedef struct rtv_robot_state {
    int n;                                /* joints, in robot.ids order */
    int64_t t_ns;                         /* CLOCK_MONOTONIC when the read completed */
    int stale;                            /* 1: the last read failed, values are older */
    float pos[RTV_MAX_MOTORS];            /* normalized units (see above) */
    float vel[RTV_MAX_MOTORS];            /* normalized units per second */
    float load[RTV_MAX_MOTORS];           /* Feetech, XL430: % of max torque; XL330: mA */
    int32_t pos_ticks[RTV_MAX_MOTORS];    /* raw Present_Position */
    uint8_t servo_err[RTV_MAX_MOTORS];    /* last status ERROR byte per joint (0 = fine) */
} rtv_robot_state;

typedef struct rtv_robot_opts {
    int body_mode;                        /* -1: by robot type; else an rtv_motor_units */
    int watchdog_ms;                      /* hold when no fresh action for this long (0: off) */
    int configure;                        /* 1: write LeRobot's servo settings at open */
    FILE *log;                            /* calibration diffs and notes (NULL: stderr) */
} rtv_robot_opts;

void rtv_robot_opts_default(rtv_robot_opts *o);

int rtv_robot_open(rtv_robot **out, const rtv_config *cfg);
int rtv_robot_open_opts(rtv_robot **out, const rtv_config *cfg, const rtv_robot_opts *o);
/* Applies the torque policy (robot.torque_on_exit: off = torque off and Lock 0 with 5
 * retries per servo; hold = goal = present, torque stays on), closes the port, stops the
 * simulator. Returns the first error of the policy step (the robot is freed anyway).
 * Accepts NULL. */
int rtv_robot_close(rtv_robot *r);
/* The same torque policy, now (fatal fault); the robot stays open. */
int rtv_robot_safe_stop(rtv_robot *r);

/* One SYNC_READ of the state into *st (and the robot's cached copy). On failure the cached
 * copy is returned with stale = 1 and the error status; the caller holds. */
int rtv_robot_read_rt(rtv_robot *r, rtv_robot_state *st);
/* goal[n] in normalized units -> safety filter -> ticks -> one SYNC_WRITE. Uses the positions
 * of the last read as "present" for max_relative_target. *flags (may be NULL) gets the
 * RTV_SAFETY_* flags. */
int rtv_robot_write_rt(rtv_robot *r, const float *goal, int *flags);
/* Goal = last read position, for every joint. */
int rtv_robot_hold_rt(rtv_robot *r);
/* Torque on (goal = present first) or off, every servo. Non-real-time. */
int rtv_robot_torque(rtv_robot *r, int on);

int rtv_robot_n_joints(const rtv_robot *r);
const char *rtv_robot_joint_name(const rtv_robot *r, int i);
rtv_motor_units rtv_robot_joint_mode(const rtv_robot *r, int i);
const rtv_calib *rtv_robot_calib(const rtv_robot *r);
rtv_bus *rtv_robot_bus(rtv_robot *r);
rtv_safety *rtv_robot_safety(rtv_robot *r);
rtv_sim *rtv_robot_sim(rtv_robot *r);     /* NULL unless robot.port is "sim" */
const char *rtv_robot_port(const rtv_robot *r); /* the path actually opened */

/* Built-in calibration of the simulated arm (ids from cfg, LeRobot names): body joints
 * 1024..3072, wrist_roll 0..4095, gripper 2048..3072, offsets 0. */
void rtv_robot_sim_calib(const rtv_config *cfg, rtv_calib *c);

/* `rtvla check`, robot part: port exists and is accessible (dialout), adapter latency timer
 * and low-latency flag, calibration file, then every servo pinged (id, model, position).
 * Prints "  [ok]   ..." / "  [FAIL] ..." / "  [warn] ..." lines with fixes to out; returns 0
 * when all needed items pass, 1 otherwise. Moves nothing (no torque change, no writes). */
int rtv_robot_check(const rtv_config *cfg, FILE *out);

#endif
