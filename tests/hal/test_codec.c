/* Feetech and Dynamixel codecs against the worked bytes of shared/specs/servo_protocols.md
 * (§1.4, §2.2, §2.3, §2.6), the incremental parsers on garbage, truncated, corrupt and
 * wrong-id input, sign-magnitude fields and error texts. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "hal/dynamixel.h"
#include "hal/feetech.h"
#include "runtime/status.h"

static size_t hex(const char *s, uint8_t *out)
{
    size_t n = 0;
    unsigned v;
    int k;
    while (sscanf(s, " %2x%n", &v, &k) == 1) {
        out[n++] = (uint8_t)v;
        s += k;
    }
    return n;
}

static int same(const uint8_t *a, size_t na, const char *ref)
{
    uint8_t b[512];
    size_t nb = hex(ref, b);
    if (na != nb || memcmp(a, b, na)) {
        fprintf(stderr, "  got:");
        for (size_t i = 0; i < na; i++) fprintf(stderr, " %02X", a[i]);
        fprintf(stderr, "\n  ref: %s\n", ref);
        return 0;
    }
    return 1;
}

static void ft_enc(int id, int instr, const char *params, const char *ref)
{
    uint8_t p[256], out[300];
    size_t np = hex(params, p);
    size_t n = rtv_feetech_encode(out, sizeof(out), id, instr, p, np);
    CHECK_MSG(same(out, n, ref), "feetech id %d instr 0x%02X", id, instr);
}

static void dxl_enc(int id, int instr, const char *params, const char *ref)
{
    uint8_t p[256], out[400];
    size_t np = hex(params, p);
    size_t n = rtv_dxl_encode(out, sizeof(out), id, instr, p, np);
    CHECK_MSG(same(out, n, ref), "dxl id %d instr 0x%02X", id, instr);
}

static void test_feetech_vectors(void)
{
    ft_enc(1, RTV_FT_PING, "", "FF FF 01 02 01 FB");
    ft_enc(1, RTV_FT_READ, "38 02", "FF FF 01 04 02 38 02 BE");
    ft_enc(1, RTV_FT_READ, "03 02", "FF FF 01 04 02 03 02 F3");
    ft_enc(1, RTV_FT_WRITE, "28 01", "FF FF 01 04 03 28 01 CE");
    ft_enc(1, RTV_FT_WRITE, "37 00", "FF FF 01 04 03 37 00 C0");
    ft_enc(1, RTV_FT_WRITE, "2A 00 08", "FF FF 01 05 03 2A 00 08 C4");
    ft_enc(1, RTV_FT_REG_WRITE, "2A 00 08", "FF FF 01 05 04 2A 00 08 C3");
    ft_enc(0xFE, RTV_FT_ACTION, "", "FF FF FE 02 05 FA");
    ft_enc(0xFE, RTV_FT_SYNC_READ, "38 02 01 02 03 04 05 06",
           "FF FF FE 0A 82 38 02 01 02 03 04 05 06 26");
    ft_enc(0xFE, RTV_FT_SYNC_WRITE, "2A 02 01 00 08 02 00 08 03 00 08 04 00 08 05 00 08 06 00 08",
           "FF FF FE 16 83 2A 02 01 00 08 02 00 08 03 00 08 04 00 08 05 00 08 06 00 08 F7");
    ft_enc(1, RTV_FT_RESET, "", "FF FF 01 02 0A F2");
    /* status packets: encoded like instructions with the error byte in place of INSTR */
    ft_enc(1, 0, "", "FF FF 01 02 00 FC");
    ft_enc(1, 0, "00 08", "FF FF 01 04 00 00 08 F2");
    ft_enc(1, 0, "09 03", "FF FF 01 04 00 09 03 EE");
    for (int i = 1; i <= 6; i++) {
        uint8_t out[16];
        char ref[64];
        snprintf(ref, sizeof(ref), "FF FF %02X 04 00 00 08 %02X", i, ~(i + 12) & 0xFF);
        size_t n = rtv_feetech_encode(out, sizeof(out), i, 0, (const uint8_t[]){ 0, 8 }, 2);
        CHECK_MSG(same(out, n, ref), "sync read reply of servo %d", i);
    }
    uint8_t big[300], p[260] = { 0 };
    CHECK(rtv_feetech_encode(big, sizeof(big), 1, 3, p, 249) == 0); /* LEN would exceed 250 */
    CHECK(rtv_feetech_encode(big, 7, 1, 3, p, 2) == 0);            /* cap too small */
}

static void test_feetech_parser(void)
{
    uint8_t buf[256];
    rtv_packet pk;
    size_t used;
    /* the model reply after garbage that contains a lone FF and a fake header */
    size_t n = hex("13 FF 00 FF FF FF 01 04 00 09 03 EE 55", buf);
    int r = rtv_feetech_parse(buf, n, 1, &pk, &used);
    CHECK(r == RTV_PARSE_OK);
    CHECK(pk.id == 1 && pk.err == 0 && pk.n == 2 && pk.data[0] == 0x09 && pk.data[1] == 0x03);
    CHECK(used == 12);
    /* incremental: one byte at a time, only the last byte completes it */
    n = hex("FF FF 01 04 00 00 08 F2", buf);
    for (size_t k = 1; k < n; k++) {
        r = rtv_feetech_parse(buf, k, 1, &pk, &used);
        CHECK_MSG(r == RTV_PARSE_NEED && used == 0, "prefix of %zu bytes: r %d used %zu", k, r, used);
    }
    r = rtv_feetech_parse(buf, n, 1, &pk, &used);
    CHECK(r == RTV_PARSE_OK && pk.id == 1 && (pk.data[0] | pk.data[1] << 8) == 2048);
    /* bad checksum: corrupt, drop the header only */
    n = hex("FF FF 01 04 00 00 08 F3", buf);
    r = rtv_feetech_parse(buf, n, 1, &pk, &used);
    CHECK(r == RTV_PARSE_CORRUPT && used == 2);
    /* truncated packet followed by a full one: the full one is found */
    n = hex("FF FF 02 04 00 00 FF FF 01 04 00 00 08 F2 00 00", buf);
    size_t off = 0;
    int found = 0;
    for (int it = 0; it < 10 && off < n; it++) {
        r = rtv_feetech_parse(buf + off, n - off, 1, &pk, &used);
        off += used;
        if (r == RTV_PARSE_OK) { found = pk.id == 1 && pk.n == 2; break; }
        if (r == RTV_PARSE_NEED) break;
    }
    CHECK(found);
    /* error byte > 0x7F is framing, not a packet; id 0xFE is not a reply */
    n = hex("FF FF 01 02 80 7C", buf);
    CHECK(rtv_feetech_parse(buf, n, 1, &pk, &used) == RTV_PARSE_NEED);
    n = hex("FF FF FE 02 00 FF", buf);
    CHECK(rtv_feetech_parse(buf, n, 1, &pk, &used) == RTV_PARSE_NEED);
    /* the instruction side parses the host's sync read */
    n = hex("FF FF FE 0A 82 38 02 01 02 03 04 05 06 26", buf);
    r = rtv_feetech_parse(buf, n, 0, &pk, &used);
    CHECK(r == RTV_PARSE_OK && pk.id == 0xFE && pk.instr == 0x82 && pk.n == 8 && used == n);
    /* a trailing FF is kept (it may start a header) */
    n = hex("00 11 FF", buf);
    CHECK(rtv_feetech_parse(buf, n, 1, &pk, &used) == RTV_PARSE_NEED && used == 2);
}

static void test_sign_magnitude(void)
{
    uint16_t x;
    CHECK(rtv_feetech_sm_encode(-100, 15, &x) == 0 && x == 0x8064);
    CHECK(rtv_feetech_sm_encode(-300, 11, &x) == 0 && x == 0x092C);
    CHECK(rtv_feetech_sm_encode(-50, 10, &x) == 0 && x == 0x0432);
    CHECK(rtv_feetech_sm_encode(2047, 11, &x) == 0 && x == 2047);
    CHECK(rtv_feetech_sm_encode(2073, 11, &x) == RTV_E_ARG); /* LeRobot's "Magnitude 2073" */
    CHECK(strstr(rtv_last_error(), "2073") != NULL);
    CHECK(rtv_feetech_sm_decode(0x8064, 15) == -100);
    CHECK(rtv_feetech_sm_decode(0x092C, 11) == -300);
    CHECK(rtv_feetech_sm_decode(0x0432, 10) == -50);
    CHECK(rtv_feetech_sm_decode(0x0800, 15) == 2048);
    for (int bit = 10; bit <= 15; bit++)
        for (int v = -(1 << bit) + 1; v < (1 << bit); v += 37) {
            CHECK(rtv_feetech_sm_encode(v, bit, &x) == 0);
            if (rtv_feetech_sm_decode(x, bit) != v) { CHECK(0); break; }
        }
}

static void test_dxl_vectors(void)
{
    uint8_t s9[] = "123456789";
    CHECK(rtv_dxl_crc16(0, s9, 9) == 0xFEE8);
    dxl_enc(1, RTV_DXL_PING, "", "FF FF FD 00 01 03 00 01 19 4E");
    dxl_enc(0xFE, RTV_DXL_PING, "", "FF FF FD 00 FE 03 00 01 31 42");
    dxl_enc(1, RTV_DXL_STATUS, "00 06 04 26", "FF FF FD 00 01 07 00 55 00 06 04 26 65 5D");
    dxl_enc(1, RTV_DXL_READ, "84 00 04 00", "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15");
    dxl_enc(1, RTV_DXL_STATUS, "00 A6 00 00 00", "FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0");
    dxl_enc(1, RTV_DXL_WRITE, "74 00 00 02 00 00", "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89");
    dxl_enc(1, RTV_DXL_STATUS, "00", "FF FF FD 00 01 04 00 55 00 A1 0C");
    dxl_enc(0xFE, RTV_DXL_SYNC_READ, "84 00 04 00 01 02", "FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA");
    dxl_enc(0xFE, RTV_DXL_SYNC_WRITE, "74 00 04 00 01 96 00 00 00 02 AA 00 00 00",
            "FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00 82 87");
    dxl_enc(0xFE, 0x92, "01 90 00 02 00 02 92 00 01 00", "FF FF FD 00 FE 0D 00 92 01 90 00 02 00 02 92 00 01 00 1A 05");
    dxl_enc(1, RTV_DXL_ACTION, "", "FF FF FD 00 01 03 00 05 02 CE");
    dxl_enc(1, RTV_DXL_REBOOT, "", "FF FF FD 00 01 03 00 08 2F 4E");
    dxl_enc(0xFE, RTV_DXL_SYNC_READ, "84 00 04 00 01 02 03 04 05 06",
            "FF FF FD 00 FE 0D 00 82 84 00 04 00 01 02 03 04 05 06 B2 9B");
    dxl_enc(0xFE, RTV_DXL_SYNC_WRITE,
            "74 00 04 00 01 00 08 00 00 02 00 08 00 00 03 00 08 00 00 04 00 08 00 00 05 00 08 00 00 06 00 08 00 00",
            "FF FF FD 00 FE 25 00 83 74 00 04 00 01 00 08 00 00 02 00 08 00 00 03 00 08 00 00 04 00 08 00 00 05 00 08 00 00 06 00 08 00 00 81 BB");
    /* §2.2 stuffing: write id 1, addr 116, data FF FF FD 00 */
    dxl_enc(1, RTV_DXL_WRITE, "74 00 FF FF FD 00", "FF FF FD 00 01 0A 00 03 74 00 FF FF FD FD 00 21 E7");
}

static void test_dxl_parser(void)
{
    uint8_t buf[512], scratch[RTV_DXL_MAX_PACKET];
    rtv_packet pk;
    size_t used;
    /* the stuffed packet parses back to the unstuffed parameters */
    size_t n = hex("00 FF FF FD 00 01 0A 00 03 74 00 FF FF FD FD 00 21 E7", buf);
    int r = rtv_dxl_parse(buf, n, 0, &pk, scratch, sizeof(scratch), &used);
    CHECK(r == RTV_PARSE_OK && pk.id == 1 && pk.instr == 3 && pk.n == 6 && used == n);
    CHECK(pk.n == 6 && !memcmp(pk.data, "\x74\x00\xFF\xFF\xFD\x00", 6));
    /* status: ERR split off */
    n = hex("FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0", buf);
    r = rtv_dxl_parse(buf, n, 1, &pk, scratch, sizeof(scratch), &used);
    CHECK(r == RTV_PARSE_OK && pk.err == 0 && pk.n == 4 && pk.data[0] == 0xA6);
    /* incremental */
    for (size_t k = 1; k < n; k++) {
        r = rtv_dxl_parse(buf, k, 1, &pk, scratch, sizeof(scratch), &used);
        CHECK_MSG(r == RTV_PARSE_NEED && used == 0, "prefix %zu: r %d used %zu", k, r, used);
    }
    /* CRC error */
    buf[n - 1] ^= 1;
    r = rtv_dxl_parse(buf, n, 1, &pk, scratch, sizeof(scratch), &used);
    CHECK(r == RTV_PARSE_CORRUPT && used == 3);
    /* an instruction is not a status; a status is accepted only with INST 0x55 */
    n = hex("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15", buf);
    CHECK(rtv_dxl_parse(buf, n, 1, &pk, scratch, sizeof(scratch), &used) == RTV_PARSE_NEED);
    /* stuffed FF FF FD FD inside data is not a header */
    n = hex("FF FF FD FD 00 FF FF FD 00 01 04 00 55 00 A1 0C", buf);
    r = rtv_dxl_parse(buf, n, 1, &pk, scratch, sizeof(scratch), &used);
    CHECK(r == RTV_PARSE_OK && pk.id == 1 && pk.n == 0 && used == n);
    /* round trip of every byte pattern that needs stuffing, several in a row */
    uint8_t params[40], out[128];
    for (int i = 0; i < 40; i++) params[i] = (uint8_t)(i % 3 == 2 ? 0xFD : 0xFF);
    size_t m = rtv_dxl_encode(out, sizeof(out), 7, 3, params, sizeof(params));
    CHECK(m > 0 && rtv_dxl_parse(out, m, 0, &pk, scratch, sizeof(scratch), &used) == RTV_PARSE_OK);
    CHECK(pk.n == sizeof(params) && !memcmp(pk.data, params, sizeof(params)));
    char text[200];
    rtv_dxl_error_text(0x87, text, sizeof(text));
    CHECK(strstr(text, "alert") && strstr(text, "access error"));
    rtv_feetech_error_text(0x24, text, sizeof(text));
    CHECK(!strcmp(text, "overheat, overload"));
}

static void test_tables(void)
{
    int n;
    const rtv_motor_desc *m = rtv_feetech_so101_motors(&n);
    CHECK(n == 6 && !strcmp(m[0].name, "shoulder_pan") && !strcmp(m[5].name, "gripper") && m[5].gripper);
    for (int i = 0; i < n; i++) CHECK(m[i].id == i + 1 && m[i].model_number == 777);
    m = rtv_dxl_koch_motors(&n);
    CHECK(n == 6 && m[0].model_number == 1060 && m[2].model_number == 1200);
    CHECK(!strcmp(rtv_feetech_reg_name(56), "Present_Position"));
    CHECK(rtv_feetech_reg(31)->sign_bit == 11 && rtv_feetech_reg(60)->sign_bit == 10);
    CHECK(!strcmp(rtv_dxl_reg_name(116), "Goal_Position") && rtv_dxl_reg(132)->size == 4);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_feetech_vectors();
    test_feetech_parser();
    test_sign_magnitude();
    test_dxl_vectors();
    test_dxl_parser();
    test_tables();
    return check_report(argv[0]);
}
