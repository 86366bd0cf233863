/* hal/feetech.h — Feetech SCS/STS packet codec, STS3215 control table, SO-100/SO-101 motors.
 *
 * Frame: FF FF ID LEN INSTR|ERROR P1..PN CHK, LEN = N + 2, CHK = ~(ID + LEN + INSTR + ΣP) & 0xFF,
 * little-endian fields (STS), sign-magnitude encodings on some fields, broadcast id 0xFE.
 * Pure functions, no allocation: safe anywhere. Transactions (retries, deadlines) are in
 * hal/bus.h. Byte-level reference: shared/specs/servo_protocols.md §1.
 */
#ifndef RTV_HAL_FEETECH_H
#define RTV_HAL_FEETECH_H

#include <stddef.h>
#include <stdint.h>

#include "hal/motor.h"
#include "hal/packet.h"

enum {
    RTV_FT_PING = 0x01, RTV_FT_READ = 0x02, RTV_FT_WRITE = 0x03, RTV_FT_REG_WRITE = 0x04,
    RTV_FT_ACTION = 0x05, RTV_FT_RESET = 0x0A, RTV_FT_SYNC_READ = 0x82, RTV_FT_SYNC_WRITE = 0x83,
    RTV_FT_BROADCAST = 0xFE,
    RTV_FT_MAX_PACKET = 255,   /* bytes, header to checksum */
};

/* STS3215 control table addresses (bytes: see rtv_feetech_regs). */
enum {
    RTV_STS_FIRMWARE_MAJOR = 0, RTV_STS_FIRMWARE_MINOR = 1, RTV_STS_MODEL_NUMBER = 3,
    RTV_STS_ID = 5, RTV_STS_BAUD_RATE = 6, RTV_STS_RETURN_DELAY = 7,
    RTV_STS_RESPONSE_LEVEL = 8, RTV_STS_MIN_POSITION = 9, RTV_STS_MAX_POSITION = 11,
    RTV_STS_MAX_TORQUE_LIMIT = 16, RTV_STS_PHASE = 18, RTV_STS_P_COEF = 21, RTV_STS_D_COEF = 22,
    RTV_STS_I_COEF = 23, RTV_STS_PROTECTION_CURRENT = 28, RTV_STS_HOMING_OFFSET = 31,
    RTV_STS_OPERATING_MODE = 33, RTV_STS_OVERLOAD_TORQUE = 36, RTV_STS_TORQUE_ENABLE = 40,
    RTV_STS_ACCELERATION = 41, RTV_STS_GOAL_POSITION = 42, RTV_STS_GOAL_TIME = 44,
    RTV_STS_GOAL_VELOCITY = 46, RTV_STS_TORQUE_LIMIT = 48, RTV_STS_LOCK = 55,
    RTV_STS_PRESENT_POSITION = 56, RTV_STS_PRESENT_VELOCITY = 58, RTV_STS_PRESENT_LOAD = 60,
    RTV_STS_PRESENT_VOLTAGE = 62, RTV_STS_PRESENT_TEMPERATURE = 63, RTV_STS_STATUS = 65,
    RTV_STS_MOVING = 66, RTV_STS_PRESENT_CURRENT = 69, RTV_STS_MAX_ACCELERATION = 85,
    RTV_STS3215_MODEL = 777,
    RTV_STS_TICKS = 4096,      /* per turn */
};

/* Status ERROR bits (§1.5). */
enum {
    RTV_FT_ERR_VOLTAGE = 0x01, RTV_FT_ERR_ANGLE = 0x02, RTV_FT_ERR_OVERHEAT = 0x04,
    RTV_FT_ERR_OVERCURRENT = 0x08, RTV_FT_ERR_OVERLOAD = 0x20,
};

/* Encodes one packet into out; returns its length, or 0 if cap or the 250-byte limit is too
 * small (n params + 6 bytes). */
size_t rtv_feetech_encode(uint8_t *out, size_t cap, int id, int instr, const uint8_t *params,
                          size_t n);
/* Incremental parse of buf[0..n) (hal/packet.h). status = 1 parses servo replies (byte 4 is
 * the ERROR byte, > 0x7F is a framing error), 0 parses instructions. pkt->data points into buf. */
int rtv_feetech_parse(const uint8_t *buf, size_t n, int status, rtv_packet *pkt, size_t *used);

/* "overload, overheat" for err; "no error" for 0. Returns buf. */
const char *rtv_feetech_error_text(int err, char *buf, size_t cap);

/* Sign-magnitude (bit = 15, 11 or 10): encode fails with RTV_E_ARG when |v| >= 1 << bit. */
int rtv_feetech_sm_encode(int v, int sign_bit, uint16_t *out);
int rtv_feetech_sm_decode(uint16_t x, int sign_bit);

/* STS3215 control table (LeRobot names); NULL / "?" when addr is not a register start. */
const rtv_reg *rtv_feetech_regs(int *n);
const rtv_reg *rtv_feetech_reg(int addr);
const char *rtv_feetech_reg_name(int addr);

/* SO-100 / SO-101 follower: six sts3215, ids 1..6, gripper last. */
const rtv_motor_desc *rtv_feetech_so101_motors(int *n);

#endif
