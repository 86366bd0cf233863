/* hal/dynamixel.c — Dynamixel Protocol 2.0 codec, X-series table, Koch motor table. */
#include "hal/dynamixel.h"

#include <stdio.h>
#include <string.h>

static uint16_t crc_table[256];

/* The table is T[i] = bitwise CRC of (i << 8), computed once before main. */
__attribute__((constructor)) static void crc_table_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        unsigned c = i << 8;
        for (int k = 0; k < 8; k++) c = (c & 0x8000) ? (c << 1) ^ 0x8005 : c << 1;
        crc_table[i] = (uint16_t)c;
    }
}

uint16_t rtv_dxl_crc16(uint16_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ p[i]) & 0xFF]);
    return crc;
}

size_t rtv_dxl_encode(uint8_t *out, size_t cap, int id, int instr, const uint8_t *params,
                      size_t n)
{
    if (cap < 10 || id < 0 || id > 0xFE || instr < 0 || instr > 0xFF) return 0;
    out[0] = 0xFF;
    out[1] = 0xFF;
    out[2] = 0xFD;
    out[3] = 0x00;
    out[4] = (uint8_t)id;
    size_t k = 7;
    out[k++] = (uint8_t)instr;
    /* Stuff: after any FF FF FD in the INST..params stream, insert FD. */
    for (size_t i = 0; i < n; i++) {
        if (k + 1 + 2 > cap) return 0;
        out[k++] = params[i];
        if (params[i] == 0xFD && k >= 10 && out[k - 2] == 0xFF && out[k - 3] == 0xFF) {
            if (k + 1 + 2 > cap) return 0;
            out[k++] = 0xFD;
        }
    }
    size_t len = k - 7 + 2;
    if (len > 0xFFFF || k + 2 > cap) return 0;
    out[5] = (uint8_t)(len & 0xFF);
    out[6] = (uint8_t)(len >> 8);
    uint16_t crc = rtv_dxl_crc16(0, out, k);
    out[k++] = (uint8_t)(crc & 0xFF);
    out[k++] = (uint8_t)(crc >> 8);
    return k;
}

int rtv_dxl_parse(const uint8_t *buf, size_t n, int status, rtv_packet *pkt, uint8_t *scratch,
                  size_t cap, size_t *used)
{
    size_t i = 0;
    for (;;) {
        while (i + 2 < n && !(buf[i] == 0xFF && buf[i + 1] == 0xFF && buf[i + 2] == 0xFD)) i++;
        if (i + 2 >= n) { /* keep a possible partial header at the end */
            size_t keep = 0;
            if (n >= 1 && buf[n - 1] == 0xFF) keep = 1;
            if (n >= 2 && buf[n - 2] == 0xFF && buf[n - 1] == 0xFF) keep = 2;
            *used = n - keep;
            return RTV_PARSE_NEED;
        }
        if (i + 8 > n) {
            *used = i;
            return RTV_PARSE_NEED;
        }
        int id = buf[i + 4];
        size_t len = (size_t)buf[i + 5] | (size_t)buf[i + 6] << 8;
        int inst = buf[i + 7];
        /* FF FF FD FD is a stuffed byte, not a header; then the SDK's acceptance rules. */
        if (buf[i + 3] != 0x00 || len < 3 || len > RTV_DXL_MAX_PACKET ||
            (status ? id > 0xFC || inst != RTV_DXL_STATUS || len < 4 : id > 0xFE || id == 0xFD)) {
            i++;
            continue;
        }
        size_t total = len + 7;
        if (i + total > n) {
            *used = i;
            return RTV_PARSE_NEED;
        }
        const uint8_t *p = buf + i;
        uint16_t crc = rtv_dxl_crc16(0, p, total - 2);
        if ((crc & 0xFF) != p[total - 2] || (crc >> 8) != p[total - 1]) {
            *used = i + 3;
            return RTV_PARSE_CORRUPT;
        }
        /* Unstuff INST..params (drop the FD after each FF FF FD); INST itself is not kept. */
        size_t m = 0;
        const uint8_t *q = p + 7;
        size_t qn = total - 9;
        for (size_t j = 1; j < qn; j++) {
            if (q[j] == 0xFD && j >= 3 && q[j - 1] == 0xFD && q[j - 2] == 0xFF && q[j - 3] == 0xFF)
                continue;
            if (m >= cap) {
                *used = i + total;
                return RTV_PARSE_CORRUPT;
            }
            scratch[m++] = q[j];
        }
        pkt->id = id;
        pkt->instr = inst;
        if (status) {
            if (m < 1) { /* status without ERR byte */
                *used = i + total;
                return RTV_PARSE_CORRUPT;
            }
            pkt->err = scratch[0];
            pkt->data = scratch + 1;
            pkt->n = m - 1;
        } else {
            pkt->err = 0;
            pkt->data = scratch;
            pkt->n = m;
        }
        *used = i + total;
        return RTV_PARSE_OK;
    }
}

const char *rtv_dxl_error_text(int err, char *buf, size_t cap)
{
    static const char *const num[] = {
        "no error", "result fail", "instruction error", "CRC error", "data range error",
        "data length error", "data limit error", "access error (read-only, undefined address, "
        "or EEPROM write with torque on)",
    };
    int e = err & 0x7F;
    snprintf(buf, cap, "%s%s%s", err & RTV_DXL_ERR_ALERT ? "alert (hardware error latched: read "
             "Hardware_Error_Status)" : "", (err & RTV_DXL_ERR_ALERT) && e ? ", " : "",
             e < 8 ? ((err & RTV_DXL_ERR_ALERT) && !e ? "" : num[e]) : "unknown error number");
    return buf;
}

static const rtv_reg x_regs[] = {
    { "Model_Number", 0, 2, 0 }, { "Model_Information", 2, 4, 0 }, { "Firmware_Version", 6, 1, 0 },
    { "ID", 7, 1, 0 }, { "Baud_Rate", 8, 1, 0 }, { "Return_Delay_Time", 9, 1, 0 },
    { "Drive_Mode", 10, 1, 0 }, { "Operating_Mode", 11, 1, 0 }, { "Secondary_ID", 12, 1, 0 },
    { "Protocol_Type", 13, 1, 0 }, { "Homing_Offset", 20, 4, 1 }, { "Moving_Threshold", 24, 4, 0 },
    { "Temperature_Limit", 31, 1, 0 }, { "Max_Voltage_Limit", 32, 2, 0 },
    { "Min_Voltage_Limit", 34, 2, 0 }, { "PWM_Limit", 36, 2, 0 }, { "Current_Limit", 38, 2, 0 },
    { "Velocity_Limit", 44, 4, 0 }, { "Max_Position_Limit", 48, 4, 0 },
    { "Min_Position_Limit", 52, 4, 0 }, { "Shutdown", 63, 1, 0 }, { "Torque_Enable", 64, 1, 0 },
    { "LED", 65, 1, 0 }, { "Status_Return_Level", 68, 1, 0 },
    { "Registered_Instruction", 69, 1, 0 }, { "Hardware_Error_Status", 70, 1, 0 },
    { "Velocity_I_Gain", 76, 2, 0 }, { "Velocity_P_Gain", 78, 2, 0 },
    { "Position_D_Gain", 80, 2, 0 }, { "Position_I_Gain", 82, 2, 0 },
    { "Position_P_Gain", 84, 2, 0 }, { "Bus_Watchdog", 98, 1, 1 }, { "Goal_PWM", 100, 2, 1 },
    { "Goal_Current", 102, 2, 1 }, { "Goal_Velocity", 104, 4, 1 },
    { "Profile_Acceleration", 108, 4, 0 }, { "Profile_Velocity", 112, 4, 0 },
    { "Goal_Position", 116, 4, 1 }, { "Realtime_Tick", 120, 2, 0 }, { "Moving", 122, 1, 0 },
    { "Moving_Status", 123, 1, 0 }, { "Present_PWM", 124, 2, 1 },
    { "Present_Current", 126, 2, 1 }, { "Present_Velocity", 128, 4, 1 },
    { "Present_Position", 132, 4, 1 }, { "Velocity_Trajectory", 136, 4, 0 },
    { "Position_Trajectory", 140, 4, 0 }, { "Present_Input_Voltage", 144, 2, 0 },
    { "Present_Temperature", 146, 1, 0 },
};

const rtv_reg *rtv_dxl_regs(int *n)
{
    *n = (int)(sizeof(x_regs) / sizeof(x_regs[0]));
    return x_regs;
}

const rtv_reg *rtv_dxl_reg(int addr)
{
    for (size_t i = 0; i < sizeof(x_regs) / sizeof(x_regs[0]); i++)
        if (x_regs[i].addr == addr) return &x_regs[i];
    return NULL;
}

const char *rtv_dxl_reg_name(int addr)
{
    const rtv_reg *r = rtv_dxl_reg(addr);
    return r ? r->name : "?";
}

static const rtv_motor_desc koch[] = {
    { "shoulder_pan", 1, "xl430-w250", RTV_XL430_W250_MODEL, 0 },
    { "shoulder_lift", 2, "xl430-w250", RTV_XL430_W250_MODEL, 0 },
    { "elbow_flex", 3, "xl330-m288", RTV_XL330_M288_MODEL, 0 },
    { "wrist_flex", 4, "xl330-m288", RTV_XL330_M288_MODEL, 0 },
    { "wrist_roll", 5, "xl330-m288", RTV_XL330_M288_MODEL, 0 },
    { "gripper", 6, "xl330-m288", RTV_XL330_M288_MODEL, 1 },
};

const rtv_motor_desc *rtv_dxl_koch_motors(int *n)
{
    *n = (int)(sizeof(koch) / sizeof(koch[0]));
    return koch;
}
