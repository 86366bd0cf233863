/* hal/motor.h — what an arm's motor table says about each joint (plain values). */
#ifndef RTV_HAL_MOTOR_H
#define RTV_HAL_MOTOR_H

/* LeRobot's normalization modes (shared/specs/servo_protocols.md §3.3). */
typedef enum rtv_motor_units {
    RTV_NORM_DEGREES,        /* body joints, SO arms since lerobot 6600b60 */
    RTV_NORM_RANGE_M100_100, /* body joints, Koch and older SO datasets */
    RTV_NORM_RANGE_0_100,    /* gripper */
} rtv_motor_units;

typedef struct rtv_motor_desc {
    const char *name;        /* LeRobot motor name: "shoulder_pan" ... "gripper" */
    int id;                  /* default bus id */
    const char *model;       /* "sts3215", "xl430-w250", "xl330-m288" */
    int model_number;        /* what the servo reports: 777, 1060, 1200 */
    int gripper;             /* 1: RANGE_0_100, 0: a body joint */
} rtv_motor_desc;

/* A register of a servo control table. */
typedef struct rtv_reg {
    const char *name;        /* LeRobot's name, e.g. "Present_Position" */
    int addr, size;          /* bytes */
    int sign_bit;            /* Feetech sign-magnitude bit (15, 11, 10); Dynamixel: 1 = signed */
} rtv_reg;

#endif
