/* hal/calib.h — LeRobot calibration files and the tick <-> normalized-unit conversions.
 *
 * File: JSON object keyed by motor name, each {"id", "drive_mode", "homing_offset",
 * "range_min", "range_max"} (integers; integer-valued floats such as 363.0 accepted), as
 * LeRobot writes it to ~/.cache/huggingface/lerobot/calibration/robots/<name>/<id>.json.
 * Conversions follow LeRobot's _normalize/_unnormalize exactly (servo_protocols.md §3.3):
 *   DEGREES:        n = (raw - (min+max)/2) * 360/4095           (no clamp, no drive mode)
 *   RANGE_M100_100: n = (clamp(raw) - min)/(max - min)*200 - 100  (negated if drive_mode)
 *   RANGE_0_100:    n = (clamp(raw) - min)/(max - min)*100        (100 - n if drive_mode)
 * and back with truncation toward zero (Python int()). Dynamixel ignores drive_mode in
 * software (the servo's Drive_Mode register inverts), so callers pass drive_mode 0 there.
 * Pure conversions: no allocation, callable on the real-time thread.
 */
#ifndef RTV_HAL_CALIB_H
#define RTV_HAL_CALIB_H

#include "hal/motor.h"
#include "runtime/config.h"

typedef struct rtv_motor_calib {
    char name[32];
    int id;
    int drive_mode;          /* 0 or 1 */
    int homing_offset;       /* ticks, as written to the servo */
    int range_min, range_max; /* ticks, present-position coordinates */
} rtv_motor_calib;

typedef struct rtv_calib {
    char path[RTV_PATH_MAX]; /* file it came from ("" if built in code) */
    int n;
    rtv_motor_calib m[RTV_MAX_MOTORS];
} rtv_calib;

/* Reads path and checks that every motor in names[0..n_names) is there (n_names 0: any set),
 * with min < max and values the servo family accepts (Feetech: 0 <= min < max <= 4095,
 * |homing_offset| <= 2047; Dynamixel: |homing_offset| <= 1044479). The result lists the motors
 * in names order. Errors name the file, the motor and the field, with expected vs got. */
int rtv_calib_load(rtv_calib *c, const char *path, const char *const *names, int n_names,
                   int feetech);
/* Writes c as LeRobot does (indent 4, motors in c order). */
int rtv_calib_save(const rtv_calib *c, const char *path);
/* Index of motor name in c, -1 if absent. */
int rtv_calib_find(const rtv_calib *c, const char *name);

/* Raw ticks -> normalized units. range_min == range_max is rejected at load. */
double rtv_calib_to_norm(const rtv_motor_calib *m, rtv_motor_units mode, int raw);
/* Normalized units -> raw ticks (LeRobot clamps only in the RANGE modes). */
int rtv_calib_from_norm(const rtv_motor_calib *m, rtv_motor_units mode, double n);
/* Normalized units per tick (for velocities): 360/4095, 200/(max-min) or 100/(max-min);
 * negative when drive_mode inverts. */
double rtv_calib_units_per_tick(const rtv_motor_calib *m, rtv_motor_units mode);

#endif
