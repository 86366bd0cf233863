/* hal/safety.h — what stands between a policy's action and the servos.
 *
 * rtv_safety_apply_rt() is the single path every goal takes (rtv_robot_write_rt calls it):
 *   1. any NaN/inf in the goal vector: the whole vector is rejected and replaced by the
 *      present position (hold), counted;
 *   2. max_relative_target (LeRobot semantics): each goal clamped to present ± max_step,
 *      where present is the latest state read from the bus; 0 disables it;
 *   3. joint limits, last: each goal clamped to [lo, hi] (calibration range and config), so
 *      the output is inside the limits even when the joint is not.
 * A watchdog helper says when actions have stopped coming (no fresh action for timeout_ms:
 * hold). Units are the robot's normalized units (degrees, or -100..100 / 0..100).
 * Plain struct, no allocation; the _rt functions are for the control thread.
 */
#ifndef RTV_HAL_SAFETY_H
#define RTV_HAL_SAFETY_H

#include <stdint.h>

#include "runtime/config.h"

typedef struct rtv_safety {
    int n;                          /* joints */
    float lo[RTV_MAX_MOTORS];       /* joint limits, normalized units */
    float hi[RTV_MAX_MOTORS];
    float max_step;                 /* max |goal - present| per tick; 0 = off */
    int64_t watchdog_ns;            /* 0 = off */
    /* counters (w: control thread; r: anyone, relaxed) */
    uint64_t n_limit_clamps;        /* joints clamped to a limit */
    uint64_t n_step_clamps;         /* joints clamped by max_step */
    uint64_t n_rejected;            /* goal vectors rejected (NaN/inf) */
    uint64_t n_watchdog;            /* ticks held by the watchdog */
} rtv_safety;

enum {
    RTV_SAFETY_LIMIT = 1 << 0,      /* a joint was clamped to its limits */
    RTV_SAFETY_STEP = 1 << 1,       /* a joint was clamped by max_step */
    RTV_SAFETY_REJECTED = 1 << 2,   /* non-finite goal: output = present (hold) */
};

/* lo[i] < hi[i] required; max_step >= 0; watchdog_ms >= 0. Errors name the joint. */
int rtv_safety_init(rtv_safety *s, int n, const float *lo, const float *hi, float max_step,
                    int watchdog_ms);
/* goal -> out (may alias goal). present: latest measured positions (finite). Returns the
 * RTV_SAFETY_* flags of what it did. */
int rtv_safety_apply_rt(rtv_safety *s, const float *goal, const float *present, float *out);
/* 1 if the last action (at last_action_ns, CLOCK_MONOTONIC) is older than the watchdog
 * timeout at now_ns: the caller holds position. Counts. */
int rtv_safety_watchdog_rt(rtv_safety *s, int64_t now_ns, int64_t last_action_ns);

#endif
