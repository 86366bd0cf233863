/* Every bus instruction against the simulator over a real pty (termios back end), fault
 * injection -> retries -> a clear fault after the budget, wire-time emulation, and a port
 * that disappears. Feetech and Dynamixel. */
#include <string.h>
#include <time.h>

#include "check.h"
#include "hal/bus.h"
#include "hal/dynamixel.h"
#include "hal/feetech.h"
#include "hal/serial.h"
#include "hal/sim.h"
#include "runtime/status.h"

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static rtv_bus_counters counters(rtv_bus *b)
{
    rtv_bus_counters c;
    rtv_bus_counters_get(b, &c);
    return c;
}

static int read_pos(rtv_bus *b, int id)
{
    uint32_t u = 0;
    if (rtv_bus_read_u(b, id, RTV_STS_PRESENT_POSITION, 2, &u)) return -99999;
    return rtv_feetech_sm_decode((uint16_t)u, 15);
}

static void start(rtv_sim **sim, rtv_bus **bus, rtv_bus_proto proto, int latency_us)
{
    rtv_sim_opts o;
    rtv_sim_opts_default(&o, proto, 6);
    o.noise_ticks = 0;
    o.tau_ms = 10;
    o.latency_us = latency_us;
    *sim = NULL;
    *bus = NULL;
    CHECK(rtv_sim_start(sim, &o) == RTV_OK);
    if (!*sim) return;
    CHECK_MSG(rtv_bus_open(bus, rtv_sim_path(*sim), 1000000, proto, 2) == RTV_OK, "%s", rtv_last_error());
    if (*bus) rtv_bus_set_timeout_us(*bus, 15000); /* a loaded 2-core CI machine can take 3 ms to answer; faults cost 15 ms per attempt */
}

static void test_feetech_instructions(void)
{
    rtv_sim *sim;
    rtv_bus *bus;
    start(&sim, &bus, RTV_BUS_FEETECH, 50);
    if (!bus) return;
    CHECK(!strcmp(rtv_serial_backend_name(rtv_bus_serial(bus)), "termios"));
    CHECK(rtv_serial_is_pty(rtv_sim_path(sim)));
    CHECK(rtv_serial_latency_timer_ms(rtv_sim_path(sim), NULL, 0) == -1);
    /* PING (+ model READ) */
    for (int id = 1; id <= 6; id++) {
        int model = 0;
        CHECK(rtv_bus_ping(bus, id, &model) == RTV_OK && model == 777);
    }
    int model = 0;
    int64_t t0 = rtv_serial_now_ns();
    CHECK(rtv_bus_ping(bus, 9, &model) == RTV_E_TIMEOUT);
    int64_t dt = rtv_serial_now_ns() - t0;
    CHECK_MSG(strstr(rtv_last_error(), "servo 9") && strstr(rtv_last_error(), "3 attempts"), "%s", rtv_last_error());
    CHECK_MSG(dt >= 9000000 && dt < 100000000, "3 attempts of 3 ms took %lld ns", (long long)dt);
    /* READ */
    CHECK(read_pos(bus, 1) == 2048);
    uint8_t fw[2];
    CHECK(rtv_bus_read(bus, 1, RTV_STS_FIRMWARE_MAJOR, fw, 2) == RTV_OK && fw[0] == 3 && fw[1] == 10);
    /* WRITE with torque off: goal ignored */
    CHECK(rtv_bus_write_u(bus, 2, RTV_STS_GOAL_POSITION, 2, 1000) == RTV_OK);
    sleep_ms(60);
    CHECK(read_pos(bus, 2) == 2048);
    /* torque on, then the joint follows the goal (tau 10 ms) */
    CHECK(rtv_bus_write_u(bus, 2, RTV_STS_TORQUE_ENABLE, 1, 1) == RTV_OK);
    CHECK(rtv_bus_write_u(bus, 2, RTV_STS_GOAL_POSITION, 2, 1900) == RTV_OK);
    sleep_ms(150);
    int p = read_pos(bus, 2);
    CHECK_MSG(p >= 1895 && p <= 1905, "position %d, goal 1900", p);
    /* goal clamped to the servo's position limits */
    CHECK(rtv_bus_write_u(bus, 2, RTV_STS_MAX_POSITION, 2, 2100) == RTV_OK);
    CHECK(rtv_bus_write_u(bus, 2, RTV_STS_GOAL_POSITION, 2, 3000) == RTV_OK);
    rtv_sim_servo sv;
    CHECK(rtv_sim_servo_get(sim, 2, &sv) == RTV_OK && sv.goal_ticks == 2100 && sv.torque == 1);
    /* REG_WRITE + ACTION (broadcast, no reply) */
    CHECK(rtv_bus_write_u(bus, 3, RTV_STS_TORQUE_ENABLE, 1, 1) == RTV_OK);
    uint8_t g[2] = { 0x00, 0x07 }; /* 1792 */
    CHECK(rtv_bus_reg_write(bus, 3, RTV_STS_GOAL_POSITION, g, 2) == RTV_OK);
    CHECK(rtv_sim_servo_get(sim, 3, &sv) == RTV_OK && sv.goal_ticks == 2048);
    CHECK(rtv_bus_action(bus, 0xFE) == RTV_OK);
    sleep_ms(5);
    CHECK(rtv_sim_servo_get(sim, 3, &sv) == RTV_OK && sv.goal_ticks == 1792);
    /* SYNC_WRITE + SYNC_READ */
    uint8_t ids[6] = { 1, 2, 3, 4, 5, 6 }, goals[12], st[48];
    for (int i = 0; i < 6; i++) CHECK(rtv_bus_write_u(bus, ids[i], RTV_STS_TORQUE_ENABLE, 1, 1) == RTV_OK);
    CHECK(rtv_bus_write_u(bus, 2, RTV_STS_MAX_POSITION, 2, 4095) == RTV_OK);
    for (int i = 0; i < 6; i++) {
        goals[2 * i] = (uint8_t)(2000 + 10 * i);
        goals[2 * i + 1] = (uint8_t)((2000 + 10 * i) >> 8);
    }
    CHECK(rtv_bus_sync_write_rt(bus, RTV_STS_GOAL_POSITION, 2, ids, 6, goals) == RTV_OK);
    sleep_ms(150);
    CHECK(rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 8, ids, 6, st) == RTV_OK);
    for (int i = 0; i < 6; i++) {
        int pos = rtv_feetech_sm_decode((uint16_t)(st[8 * i] | st[8 * i + 1] << 8), 15);
        CHECK_MSG(pos >= 2000 + 10 * i - 3 && pos <= 2000 + 10 * i + 3, "servo %d at %d", i + 1, pos);
        CHECK(st[8 * i + 6] == 74 && st[8 * i + 7] == 32); /* voltage 7.4 V, 32 C */
    }
    /* broadcast WRITE: no reply expected */
    CHECK(rtv_bus_write_u(bus, 0xFE, RTV_STS_ACCELERATION, 1, 254) == RTV_OK);
    sleep_ms(5);
    uint32_t acc = 0;
    CHECK(rtv_bus_read_u(bus, 5, RTV_STS_ACCELERATION, 1, &acc) == RTV_OK && acc == 254);
    /* homing: Torque_Enable 128 makes the present position 2048 */
    CHECK(rtv_bus_write_u(bus, 4, RTV_STS_TORQUE_ENABLE, 1, 0) == RTV_OK);
    CHECK(rtv_sim_set_present(sim, 4, 2500) == RTV_OK && read_pos(bus, 4) == 2500);
    CHECK(rtv_bus_write_u(bus, 4, RTV_STS_TORQUE_ENABLE, 1, 128) == RTV_OK);
    CHECK(read_pos(bus, 4) == 2048);
    uint32_t off = 0;
    CHECK(rtv_bus_read_u(bus, 4, RTV_STS_HOMING_OFFSET, 2, &off) == RTV_OK &&
          rtv_feetech_sm_decode((uint16_t)off, 11) == 452);
    /* a sync read naming an absent servo fails after the budget, naming it */
    uint8_t ids7[2] = { 1, 7 };
    CHECK(rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 2, ids7, 2, st) == RTV_E_TIMEOUT);
    CHECK_MSG(strstr(rtv_last_error(), "servo 7 ") && strstr(rtv_last_error(), "Present_Position"), "%s", rtv_last_error());
    /* bad arguments */
    CHECK(rtv_bus_read(bus, 300, 0, st, 1) == RTV_E_ARG);
    CHECK(rtv_bus_read(bus, 1, 0, st, 0) == RTV_E_ARG);
    rtv_sim_stats ss;
    rtv_sim_stats_get(sim, &ss);
    CHECK(ss.bad_packets == 0 && ss.packets > 40);
    rtv_bus_close(bus);
    rtv_sim_stop(sim);
}

static void test_faults(void)
{
    rtv_sim *sim;
    rtv_bus *bus;
    start(&sim, &bus, RTV_BUS_FEETECH, 50);
    if (!bus) return;
    uint8_t ids[6] = { 1, 2, 3, 4, 5, 6 }, st[48];
    rtv_bus_counters c0, c1;
    struct {
        rtv_sim_fault_kind kind;
        const char *name;
    } one_shot[] = {
        { RTV_SIM_DROP, "drop" }, { RTV_SIM_BAD_CHECKSUM, "checksum" }, { RTV_SIM_TRUNCATE, "truncate" },
        { RTV_SIM_WRONG_ID, "wrong id" },
    };
    /* one bad reply: one retry, then success */
    for (size_t k = 0; k < sizeof(one_shot) / sizeof(one_shot[0]); k++) {
        c0 = counters(bus);
        rtv_sim_fault f = { .kind = one_shot[k].kind, .id = 3, .count = 1 };
        CHECK(rtv_sim_inject(sim, &f) == RTV_OK);
        int r = rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 8, ids, 6, st);
        c1 = counters(bus);
        CHECK_MSG(r == RTV_OK, "%s: %s", one_shot[k].name, rtv_last_error());
        CHECK_MSG(c1.retries == c0.retries + 1, "%s: retries %llu -> %llu", one_shot[k].name,
                  (unsigned long long)c0.retries, (unsigned long long)c1.retries);
        if (one_shot[k].kind == RTV_SIM_BAD_CHECKSUM) CHECK(c1.corrupt == c0.corrupt + 1);
        if (one_shot[k].kind == RTV_SIM_WRONG_ID) CHECK(c1.stray >= c0.stray + 1);
        if (one_shot[k].kind == RTV_SIM_DROP) CHECK(c1.timeouts == c0.timeouts + 1);
        rtv_sim_clear_faults(sim);
    }
    /* garbage before a reply costs nothing: the parser skips it */
    c0 = counters(bus);
    rtv_sim_fault gf = { .kind = RTV_SIM_GARBAGE, .id = 0, .count = 6, .bytes = 11 };
    CHECK(rtv_sim_inject(sim, &gf) == RTV_OK);
    CHECK(rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 8, ids, 6, st) == RTV_OK);
    CHECK(counters(bus).retries == c0.retries);
    rtv_sim_clear_faults(sim);
    /* a servo that stopped answering: the budget (2 retries) runs out -> clear fault */
    rtv_sim_fault drop = { .kind = RTV_SIM_DROP, .id = 5, .count = -1 };
    CHECK(rtv_sim_inject(sim, &drop) == RTV_OK);
    c0 = counters(bus);
    CHECK(rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 8, ids, 6, st) == RTV_E_TIMEOUT);
    c1 = counters(bus);
    CHECK_MSG(strstr(rtv_last_error(), "servo 5") && strstr(rtv_last_error(), "Present_Position") &&
              strstr(rtv_last_error(), "no status packet"), "%s", rtv_last_error());
    CHECK(c1.retries == c0.retries + 2 && c1.failures == c0.failures + 1 && c1.timeouts == c0.timeouts + 3);
    /* corrupt every time: RTV_E_DEVICE, "corrupt" */
    rtv_sim_clear_faults(sim);
    rtv_sim_fault bad = { .kind = RTV_SIM_BAD_CHECKSUM, .id = 2, .count = -1 };
    CHECK(rtv_sim_inject(sim, &bad) == RTV_OK);
    CHECK(rtv_bus_read(bus, 2, RTV_STS_PRESENT_POSITION, st, 2) == RTV_E_DEVICE);
    CHECK_MSG(strstr(rtv_last_error(), "servo 2") && strstr(rtv_last_error(), "corrupt"), "%s", rtv_last_error());
    /* after the fault clears, the bus works again */
    rtv_sim_clear_faults(sim);
    CHECK(rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 8, ids, 6, st) == RTV_OK);
    /* servo error bits: READ fails with the decoded text; SYNC_READ returns data + the bits */
    rtv_sim_fault eb = { .kind = RTV_SIM_ERROR_BITS, .id = 4, .count = 1, .err_bits = RTV_FT_ERR_OVERLOAD };
    CHECK(rtv_sim_inject(sim, &eb) == RTV_OK);
    CHECK(rtv_bus_read(bus, 4, RTV_STS_PRESENT_POSITION, st, 2) == RTV_E_DEVICE);
    CHECK_MSG(strstr(rtv_last_error(), "servo 4") && strstr(rtv_last_error(), "overload"), "%s", rtv_last_error());
    rtv_sim_clear_faults(sim);
    eb.count = 1;
    eb.err_bits = RTV_FT_ERR_OVERHEAT;
    CHECK(rtv_sim_inject(sim, &eb) == RTV_OK);
    CHECK(rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 8, ids, 6, st) == RTV_OK);
    CHECK(rtv_bus_servo_error(bus, 4) == RTV_FT_ERR_OVERHEAT && rtv_bus_servo_error(bus, 3) == 0);
    rtv_sim_clear_faults(sim);
    /* probabilistic drops at 20 %: the retry budget absorbs nearly all */
    rtv_sim_fault pd = { .kind = RTV_SIM_DROP, .id = 0, .count = -1, .probability = 0.05f };
    CHECK(rtv_sim_inject(sim, &pd) == RTV_OK);
    int fails = 0;
    for (int k = 0; k < 100; k++) fails += rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 2, ids, 6, st) != RTV_OK;
    CHECK_MSG(fails <= 3, "%d of 100 sync reads failed at 5 %% drops per reply", fails);
    CHECK(counters(bus).retries > c1.retries);
    rtv_sim_clear_faults(sim);
    /* a late reply (delayed past the deadline) is retried; the stale bytes do not confuse it */
    rtv_sim_fault late = { .kind = RTV_SIM_DELAY, .id = 1, .count = 1, .delay_us = 30000 };
    CHECK(rtv_sim_inject(sim, &late) == RTV_OK);
    CHECK(read_pos(bus, 1) == 2048);
    CHECK(read_pos(bus, 2) == 2048);
    rtv_bus_close(bus);
    rtv_sim_stop(sim);
}

static void test_wire_time(void)
{
    rtv_sim_opts o;
    rtv_sim_opts_default(&o, RTV_BUS_FEETECH, 6);
    o.baud = 115200;
    o.latency_us = 0;
    rtv_sim *sim = NULL;
    rtv_bus *bus = NULL;
    CHECK(rtv_sim_start(&sim, &o) == RTV_OK);
    CHECK(sim && rtv_bus_open(&bus, rtv_sim_path(sim), 115200, RTV_BUS_FEETECH, 0) == RTV_OK);
    if (!bus) {
        rtv_sim_stop(sim);
        return;
    }
    uint8_t ids[6] = { 1, 2, 3, 4, 5, 6 }, st[48];
    rtv_bus_set_timeout_us(bus, 50000); /* 8.5 ms of wire time plus a loaded machine's delays */
    int64_t wire = rtv_serial_wire_ns(14 + 6 * 14, 115200); /* 8.5 ms */
    int64_t best = INT64_MAX;
    for (int k = 0; k < 3; k++) {
        int64_t t0 = rtv_serial_now_ns();
        CHECK(rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 8, ids, 6, st) == RTV_OK);
        int64_t dt = rtv_serial_now_ns() - t0;
        if (dt < best) best = dt;
    }
    CHECK_MSG(best >= wire && best < wire + 20000000, "sync read took %lld ns, wire time %lld ns",
              (long long)best, (long long)wire);
    rtv_bus_close(bus);
    rtv_sim_stop(sim);
}

static void test_disappearing_port(void)
{
    rtv_sim *sim;
    rtv_bus *bus;
    start(&sim, &bus, RTV_BUS_FEETECH, 0);
    if (!bus) return;
    CHECK(read_pos(bus, 1) == 2048);
    /* libserialport cannot open a pty (no sysfs entry, TIOCMGET fails): the reason for the
     * termios back end; AUTO picked termios above */
    rtv_serial *sp = NULL;
    CHECK(rtv_serial_open(&sp, rtv_sim_path(sim), 1000000, RTV_SERIAL_LIBSERIALPORT) != RTV_OK && !sp);
    rtv_serial_close(sp);
    rtv_sim_stop(sim); /* closes the master: the adapter is gone */
    uint8_t ids[2] = { 1, 2 }, st[4];
    int r = rtv_bus_sync_read_rt(bus, RTV_STS_PRESENT_POSITION, 2, ids, 2, st);
    CHECK_MSG(r == RTV_E_DEVICE && strstr(rtv_last_error(), "disappeared"), "r %d: %s", r, rtv_last_error());
    r = rtv_bus_sync_write_rt(bus, RTV_STS_GOAL_POSITION, 2, ids, 2, st);
    CHECK(r == RTV_E_DEVICE);
    rtv_bus_close(bus);
    /* a path that is not there */
    CHECK(rtv_bus_open(&bus, "/dev/ttyACM_rtvla_none", 1000000, RTV_BUS_FEETECH, 2) == RTV_E_DEVICE && !bus);
    CHECK_MSG(strstr(rtv_last_error(), "no such device"), "%s", rtv_last_error());
    /* a file that is not a tty */
    CHECK(rtv_serial_is_pty("/dev/null") == 0);
}

static void test_dynamixel(void)
{
    rtv_sim *sim;
    rtv_bus *bus;
    start(&sim, &bus, RTV_BUS_DYNAMIXEL, 50);
    if (!bus) return;
    int model = 0;
    CHECK(rtv_bus_ping(bus, 1, &model) == RTV_OK && model == RTV_XL430_W250_MODEL);
    CHECK(rtv_bus_ping(bus, 6, &model) == RTV_OK && model == RTV_XL330_M288_MODEL);
    CHECK(rtv_bus_ping(bus, 8, &model) == RTV_E_TIMEOUT);
    uint32_t u = 0;
    CHECK(rtv_bus_read_u(bus, 3, RTV_XL_PRESENT_POSITION, 4, &u) == RTV_OK && u == 2048);
    /* homing offset: present = actual + offset; negative values in two's complement */
    CHECK(rtv_bus_write_u(bus, 3, RTV_XL_HOMING_OFFSET, 4, (uint32_t)-100) == RTV_OK);
    CHECK(rtv_bus_read_u(bus, 3, RTV_XL_PRESENT_POSITION, 4, &u) == RTV_OK && (int32_t)u == 1948);
    /* torque on: EEPROM writes refused with an access error */
    CHECK(rtv_bus_write_u(bus, 3, RTV_XL_TORQUE_ENABLE, 1, 1) == RTV_OK);
    CHECK(rtv_bus_write_u(bus, 3, RTV_XL_OPERATING_MODE, 1, 4) == RTV_E_DEVICE);
    CHECK_MSG(strstr(rtv_last_error(), "access error") && strstr(rtv_last_error(), "Operating_Mode"), "%s", rtv_last_error());
    /* reading past the table: access error with no data */
    uint8_t buf[16];
    CHECK(rtv_bus_read(bus, 3, 250, buf, 10) == RTV_E_DEVICE);
    /* sync write goals, sync read the state block 126..135 */
    uint8_t ids[6] = { 1, 2, 3, 4, 5, 6 }, goals[24], st[60];
    for (int i = 0; i < 6; i++) {
        CHECK(rtv_bus_write_u(bus, ids[i], RTV_XL_TORQUE_ENABLE, 1, 1) == RTV_OK);
        uint32_t g = (uint32_t)(1500 + 100 * i);
        for (int k = 0; k < 4; k++) goals[4 * i + k] = (uint8_t)(g >> (8 * k));
    }
    CHECK(rtv_bus_sync_write_rt(bus, RTV_XL_GOAL_POSITION, 4, ids, 6, goals) == RTV_OK);
    sleep_ms(200);
    CHECK(rtv_bus_sync_read_rt(bus, RTV_XL_PRESENT_CURRENT, 10, ids, 6, st) == RTV_OK);
    for (int i = 0; i < 6; i++) {
        const uint8_t *p = st + 10 * i;
        int32_t pos = (int32_t)((uint32_t)p[6] | (uint32_t)p[7] << 8 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 24);
        CHECK_MSG(pos >= 1500 + 100 * i - 3 && pos <= 1500 + 100 * i + 3, "dxl servo %d at %d", i + 1, pos);
    }
    /* a goal value containing FF FF FD is stuffed and arrives intact */
    CHECK(rtv_bus_write_u(bus, 1, RTV_XL_TORQUE_ENABLE, 1, 0) == RTV_OK);
    uint8_t stuffed[4] = { 0xFF, 0xFF, 0xFD, 0x00 };
    CHECK(rtv_bus_write(bus, 1, 24 /* Moving_Threshold */, stuffed, 4) == RTV_OK);
    CHECK(rtv_bus_read(bus, 1, 24, buf, 4) == RTV_OK && !memcmp(buf, stuffed, 4));
    /* REG_WRITE + ACTION, unicast (with replies) */
    CHECK(rtv_bus_reg_write(bus, 2, RTV_XL_GOAL_POSITION, goals, 4) == RTV_OK);
    CHECK(rtv_bus_action(bus, 2) == RTV_OK);
    CHECK(rtv_bus_action(bus, 2) == RTV_E_DEVICE); /* nothing registered: instruction error */
    /* faults on CRC */
    rtv_sim_fault bad = { .kind = RTV_SIM_BAD_CHECKSUM, .id = 4, .count = 2 };
    CHECK(rtv_sim_inject(sim, &bad) == RTV_OK);
    rtv_bus_counters c0 = counters(bus);
    CHECK(rtv_bus_sync_read_rt(bus, RTV_XL_PRESENT_POSITION, 4, ids, 6, st) == RTV_OK);
    CHECK(counters(bus).retries == c0.retries + 2 && counters(bus).corrupt == c0.corrupt + 2);
    rtv_bus_close(bus);
    rtv_sim_stop(sim);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_feetech_instructions();
    test_faults();
    test_wire_time();
    test_disappearing_port();
    test_dynamixel();
    return check_report(argv[0]);
}
