/* hal/feetech.c — Feetech STS codec, control table and SO-100/101 motor table. */
#include "hal/feetech.h"

#include <stdio.h>
#include <string.h>

#include "runtime/status.h"

static uint8_t checksum(const uint8_t *p, size_t n) /* bytes after FF FF, before CHK */
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) sum += p[i];
    return (uint8_t)(~sum & 0xFF);
}

size_t rtv_feetech_encode(uint8_t *out, size_t cap, int id, int instr, const uint8_t *params,
                          size_t n)
{
    size_t total = n + 6;
    if (total > cap || n + 2 > 250 || id < 0 || id > 0xFE || instr < 0 || instr > 0xFF) return 0;
    out[0] = 0xFF;
    out[1] = 0xFF;
    out[2] = (uint8_t)id;
    out[3] = (uint8_t)(n + 2);
    out[4] = (uint8_t)instr;
    if (n) memcpy(out + 5, params, n);
    out[5 + n] = checksum(out + 2, n + 3);
    return total;
}

int rtv_feetech_parse(const uint8_t *buf, size_t n, int status, rtv_packet *pkt, size_t *used)
{
    size_t i = 0;
    for (;;) {
        while (i + 1 < n && !(buf[i] == 0xFF && buf[i + 1] == 0xFF)) i++;
        if (i + 1 >= n) { /* no header: keep a trailing 0xFF, it may start one */
            *used = (n && buf[n - 1] == 0xFF) ? n - 1 : n;
            return RTV_PARSE_NEED;
        }
        if (i + 5 > n) { /* id, len and instr/error decide whether this is a header */
            *used = i;
            return RTV_PARSE_NEED;
        }
        int id = buf[i + 2], len = buf[i + 3];
        /* Framing rules of the vendor receiver: id <= 0xFD for replies, len 2..250, error
         * byte <= 0x7F. A failure means this FF FF was not a header: advance one byte. */
        if ((status ? id > 0xFD : id > 0xFE) || len < 2 || len > 250 ||
            (status && buf[i + 4] > 0x7F)) {
            i++;
            continue;
        }
        size_t total = (size_t)len + 4;
        if (i + total > n) {
            *used = i;
            return RTV_PARSE_NEED;
        }
        const uint8_t *p = buf + i;
        if (checksum(p + 2, total - 3) != p[total - 1]) {
            *used = i + 2;
            return RTV_PARSE_CORRUPT;
        }
        pkt->id = id;
        pkt->instr = status ? 0 : p[4];
        pkt->err = status ? p[4] : 0;
        pkt->data = p + 5;
        pkt->n = (size_t)len - 2;
        *used = i + total;
        return RTV_PARSE_OK;
    }
}

const char *rtv_feetech_error_text(int err, char *buf, size_t cap)
{
    static const struct { int bit; const char *text; } bits[] = {
        { RTV_FT_ERR_VOLTAGE, "input voltage" }, { RTV_FT_ERR_ANGLE, "angle sensor" },
        { RTV_FT_ERR_OVERHEAT, "overheat" }, { RTV_FT_ERR_OVERCURRENT, "over-current" },
        { 0x10, "reserved bit 4" }, { RTV_FT_ERR_OVERLOAD, "overload" },
        { 0x40, "reserved bit 6" }, { 0x80, "reserved bit 7" },
    };
    size_t k = 0;
    if (!cap) return buf;
    buf[0] = 0;
    if (!err) {
        snprintf(buf, cap, "no error");
        return buf;
    }
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        if (!(err & bits[i].bit)) continue;
        int w = snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", bits[i].text);
        if (w < 0 || (size_t)w >= cap - k) break;
        k += (size_t)w;
    }
    return buf;
}

int rtv_feetech_sm_encode(int v, int sign_bit, uint16_t *out)
{
    int mag = v < 0 ? -v : v;
    if (sign_bit < 1 || sign_bit > 15 || mag >= (1 << sign_bit))
        return rtv_fail(RTV_E_ARG, "sign-magnitude: |%d| does not fit below bit %d (max %d)", v,
                        sign_bit, (1 << sign_bit) - 1);
    *out = (uint16_t)(v < 0 ? (1u << sign_bit) | (unsigned)mag : (unsigned)mag);
    return RTV_OK;
}

int rtv_feetech_sm_decode(uint16_t x, int sign_bit)
{
    int mag = x & ((1 << sign_bit) - 1);
    return (x >> sign_bit) & 1 ? -mag : mag;
}

static const rtv_reg sts_regs[] = {
    { "Firmware_Major_Version", 0, 1, 0 }, { "Firmware_Minor_Version", 1, 1, 0 },
    { "Model_Number", 3, 2, 0 }, { "ID", 5, 1, 0 }, { "Baud_Rate", 6, 1, 0 },
    { "Return_Delay_Time", 7, 1, 0 }, { "Response_Status_Level", 8, 1, 0 },
    { "Min_Position_Limit", 9, 2, 0 }, { "Max_Position_Limit", 11, 2, 0 },
    { "Max_Temperature_Limit", 13, 1, 0 }, { "Max_Voltage_Limit", 14, 1, 0 },
    { "Min_Voltage_Limit", 15, 1, 0 }, { "Max_Torque_Limit", 16, 2, 0 }, { "Phase", 18, 1, 0 },
    { "Unloading_Condition", 19, 1, 0 }, { "LED_Alarm_Condition", 20, 1, 0 },
    { "P_Coefficient", 21, 1, 0 }, { "D_Coefficient", 22, 1, 0 }, { "I_Coefficient", 23, 1, 0 },
    { "Minimum_Startup_Force", 24, 2, 0 }, { "CW_Dead_Zone", 26, 1, 0 },
    { "CCW_Dead_Zone", 27, 1, 0 }, { "Protection_Current", 28, 2, 0 },
    { "Angular_Resolution", 30, 1, 0 }, { "Homing_Offset", 31, 2, 11 },
    { "Operating_Mode", 33, 1, 0 }, { "Protective_Torque", 34, 1, 0 },
    { "Protection_Time", 35, 1, 0 }, { "Overload_Torque", 36, 1, 0 },
    { "Velocity_closed_loop_P_proportional_coefficient", 37, 1, 0 },
    { "Over_Current_Protection_Time", 38, 1, 0 },
    { "Velocity_closed_loop_I_integral_coefficient", 39, 1, 0 },
    { "Torque_Enable", 40, 1, 0 }, { "Acceleration", 41, 1, 0 }, { "Goal_Position", 42, 2, 15 },
    { "Goal_Time", 44, 2, 0 }, { "Goal_Velocity", 46, 2, 15 }, { "Torque_Limit", 48, 2, 0 },
    { "Lock", 55, 1, 0 }, { "Present_Position", 56, 2, 15 }, { "Present_Velocity", 58, 2, 15 },
    { "Present_Load", 60, 2, 10 }, { "Present_Voltage", 62, 1, 0 },
    { "Present_Temperature", 63, 1, 0 }, { "Status", 65, 1, 0 }, { "Moving", 66, 1, 0 },
    { "Present_Current", 69, 2, 0 }, { "Goal_Position_2", 71, 2, 0 },
    { "Maximum_Acceleration", 85, 1, 0 },
};

const rtv_reg *rtv_feetech_regs(int *n)
{
    *n = (int)(sizeof(sts_regs) / sizeof(sts_regs[0]));
    return sts_regs;
}

const rtv_reg *rtv_feetech_reg(int addr)
{
    for (size_t i = 0; i < sizeof(sts_regs) / sizeof(sts_regs[0]); i++)
        if (sts_regs[i].addr == addr) return &sts_regs[i];
    return NULL;
}

const char *rtv_feetech_reg_name(int addr)
{
    const rtv_reg *r = rtv_feetech_reg(addr);
    return r ? r->name : "?";
}

static const rtv_motor_desc so101[] = {
    { "shoulder_pan", 1, "sts3215", RTV_STS3215_MODEL, 0 },
    { "shoulder_lift", 2, "sts3215", RTV_STS3215_MODEL, 0 },
    { "elbow_flex", 3, "sts3215", RTV_STS3215_MODEL, 0 },
    { "wrist_flex", 4, "sts3215", RTV_STS3215_MODEL, 0 },
    { "wrist_roll", 5, "sts3215", RTV_STS3215_MODEL, 0 },
    { "gripper", 6, "sts3215", RTV_STS3215_MODEL, 1 },
};

const rtv_motor_desc *rtv_feetech_so101_motors(int *n)
{
    *n = (int)(sizeof(so101) / sizeof(so101[0]));
    return so101;
}
