/* hal/dynamixel.h — Dynamixel Protocol 2.0 codec (byte stuffing, CRC-16/BUYPASS), X-series
 * control table, Koch motor table.
 *
 * Frame: FF FF FD 00 ID LEN_L LEN_H INST P1..PN CRC_L CRC_H; status: INST = 0x55 then ERR.
 * LEN counts INST + stuffed params + 2, the CRC covers the stuffed packet from the first 0xFF.
 * Every FF FF FD inside INST..params is sent as FF FF FD FD. Little-endian, two's complement.
 * Pure functions, no allocation. Byte-level reference: shared/specs/servo_protocols.md §2.
 */
#ifndef RTV_HAL_DYNAMIXEL_H
#define RTV_HAL_DYNAMIXEL_H

#include <stddef.h>
#include <stdint.h>

#include "hal/motor.h"
#include "hal/packet.h"

enum {
    RTV_DXL_PING = 0x01, RTV_DXL_READ = 0x02, RTV_DXL_WRITE = 0x03, RTV_DXL_REG_WRITE = 0x04,
    RTV_DXL_ACTION = 0x05, RTV_DXL_REBOOT = 0x08, RTV_DXL_STATUS = 0x55,
    RTV_DXL_SYNC_READ = 0x82, RTV_DXL_SYNC_WRITE = 0x83, RTV_DXL_BROADCAST = 0xFE,
    RTV_DXL_MAX_PACKET = 1024,
};

/* X-series addresses used by the runtime and the simulator. */
enum {
    RTV_XL_MODEL_NUMBER = 0, RTV_XL_FIRMWARE = 6, RTV_XL_ID = 7, RTV_XL_BAUD_RATE = 8,
    RTV_XL_RETURN_DELAY = 9, RTV_XL_DRIVE_MODE = 10, RTV_XL_OPERATING_MODE = 11,
    RTV_XL_HOMING_OFFSET = 20, RTV_XL_MAX_POSITION = 48, RTV_XL_MIN_POSITION = 52,
    RTV_XL_TORQUE_ENABLE = 64, RTV_XL_STATUS_RETURN_LEVEL = 68, RTV_XL_HARDWARE_ERROR = 70,
    RTV_XL_POSITION_D = 80, RTV_XL_POSITION_I = 82, RTV_XL_POSITION_P = 84,
    RTV_XL_GOAL_POSITION = 116, RTV_XL_MOVING = 122, RTV_XL_PRESENT_CURRENT = 126,
    RTV_XL_PRESENT_VELOCITY = 128, RTV_XL_PRESENT_POSITION = 132,
    RTV_XL_PRESENT_VOLTAGE = 144, RTV_XL_PRESENT_TEMPERATURE = 146,
    RTV_XL430_W250_MODEL = 1060, RTV_XL330_M288_MODEL = 1200,
};

/* ERR field: bit 7 alert, bits 0..6 an error number 1..7 (§2.5). */
enum { RTV_DXL_ERR_ALERT = 0x80 };

/* CRC-16/BUYPASS (poly 0x8005, init 0, no reflection) over n bytes, starting from crc. */
uint16_t rtv_dxl_crc16(uint16_t crc, const uint8_t *p, size_t n);

/* Encodes (and stuffs) one packet; returns its length, or 0 if it does not fit in cap. */
size_t rtv_dxl_encode(uint8_t *out, size_t cap, int id, int instr, const uint8_t *params,
                      size_t n);
/* Incremental parse of buf[0..n) (hal/packet.h). status = 1 accepts only status packets
 * (INST 0x55, id <= 0xFC) and splits off ERR; 0 accepts instructions. The unstuffed
 * parameters go to scratch (cap bytes, >= RTV_DXL_MAX_PACKET suffices); pkt->data points there. */
int rtv_dxl_parse(const uint8_t *buf, size_t n, int status, rtv_packet *pkt, uint8_t *scratch,
                  size_t cap, size_t *used);

/* "alert (hardware error latched), data range error". Returns buf. */
const char *rtv_dxl_error_text(int err, char *buf, size_t cap);

/* X-series control table (LeRobot names); NULL / "?" when addr is not a register start. */
const rtv_reg *rtv_dxl_regs(int *n);
const rtv_reg *rtv_dxl_reg(int addr);
const char *rtv_dxl_reg_name(int addr);

/* Koch follower: xl430-w250 at ids 1, 2; xl330-m288 at ids 3..6, gripper last. */
const rtv_motor_desc *rtv_dxl_koch_motors(int *n);

#endif
