/* rtvla bench bus [--baud 1000000] [--servos 6] [--n 10000] [--latency-us 100] [--gap-us 0]
 *                 [--proto feetech|dynamixel] [--port PATH]
 *
 * One control tick's bus traffic, n times: SYNC_WRITE of Goal_Position to every servo, then
 * SYNC_READ of the state block the robot layer reads (Feetech 56..63: position, velocity,
 * load, voltage, temperature; Dynamixel 126..135). Against the simulator (wire time at
 * --baud, reply latency, gap between replies) unless --port names a real bus. Prints
 * p50/p99/max of the round trip, the wire-time floor, and the bus counters, in a stable table. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/bus.h"
#include "hal/dynamixel.h"
#include "hal/feetech.h"
#include "hal/serial.h"
#include "hal/sim.h"
#include "runtime/bench.h"
#include "runtime/status.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: rtvla bench bus [--baud 1000000] [--servos 6] [--n 10000] [--latency-us 100]\n"
               "                       [--gap-us 0] [--proto feetech|dynamixel] [--port PATH] [--prio 0]\n"
               "sync write + sync read round trips against the simulated bus (or PATH);\n"
               "--prio N runs the bench thread and the simulator at SCHED_FIFO N, as the control\n"
               "thread runs the bus in `rtvla run`\n");
}

static int int_arg(const char *name, const char *v, long lo, long hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "rtvla bench bus: %s '%s': expected an integer in %ld..%ld\n", name, v, lo, hi);
        return 0;
    }
    *out = (int)x;
    return 1;
}

int rtv_bench_bus(int argc, char **argv)
{
    int baud = 1000000, servos = 6, n = 10000, latency_us = 100, gap_us = 0, prio = 0;
    rtv_bus_proto proto = RTV_BUS_FEETECH;
    const char *port = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) ok = 0;
        else if (!strcmp(a, "--baud")) ok = int_arg(a, v, 9600, 4000000, &baud);
        else if (!strcmp(a, "--servos")) ok = int_arg(a, v, 1, RTV_SIM_MAX_SERVOS, &servos);
        else if (!strcmp(a, "--n")) ok = int_arg(a, v, 1, 10000000, &n);
        else if (!strcmp(a, "--latency-us")) ok = int_arg(a, v, 0, 100000, &latency_us);
        else if (!strcmp(a, "--gap-us")) ok = int_arg(a, v, 0, 100000, &gap_us);
        else if (!strcmp(a, "--prio")) ok = int_arg(a, v, 0, 99, &prio);
        else if (!strcmp(a, "--port")) port = v;
        else if (!strcmp(a, "--proto") && (!strcmp(v, "feetech") || !strcmp(v, "dynamixel")))
            proto = !strcmp(v, "feetech") ? RTV_BUS_FEETECH : RTV_BUS_DYNAMIXEL;
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "rtvla bench bus: bad or unknown argument '%s'%s\n", a,
                    v ? "" : " (missing value)");
            usage(stderr);
            return 2;
        }
        i++;
    }
    int prio_got = 0;
    if (prio > 0) {
        struct sched_param sp = { .sched_priority = prio };
        int e = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (e) fprintf(stderr, "rtvla bench bus: SCHED_FIFO %d refused (%s): measuring at normal "
                       "priority\n", prio, strerror(e));
        else prio_got = prio;
    }
    rtv_sim *sim = NULL;
    if (!port) {
        rtv_sim_opts so;
        rtv_sim_opts_default(&so, proto, servos);
        so.baud = baud;
        so.latency_us = latency_us;
        so.gap_us = gap_us;
        so.rt_prio = prio;
        if (rtv_sim_start(&sim, &so)) {
            fprintf(stderr, "rtvla bench bus: %s\n", rtv_last_error());
            return 1;
        }
        port = rtv_sim_path(sim);
    }
    rtv_bus *bus = NULL;
    int64_t *rt = calloc((size_t)n, sizeof(*rt));
    int rc = 1;
    if (!rt || rtv_bus_open(&bus, port, baud, proto, 2)) {
        fprintf(stderr, "rtvla bench bus: %s\n", rt ? rtv_last_error() : "out of memory");
        goto out;
    }
    int ft = proto == RTV_BUS_FEETECH;
    int goal_addr = ft ? RTV_STS_GOAL_POSITION : RTV_XL_GOAL_POSITION, goal_len = ft ? 2 : 4;
    int read_addr = ft ? RTV_STS_PRESENT_POSITION : RTV_XL_PRESENT_CURRENT, read_len = ft ? 8 : 10;
    uint8_t ids[RTV_SIM_MAX_SERVOS], goals[RTV_SIM_MAX_SERVOS * 4], state[RTV_SIM_MAX_SERVOS * 16];
    for (int i = 0; i < servos; i++) ids[i] = (uint8_t)(i + 1);
    int errors = 0;
    char first_err[RTV_ERR_MAX] = "";
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < servos; i++) { /* a slow sweep, so the servos move */
            int g = 2048 + ((k / 4 + i * 50) % 400) - 200;
            memset(goals + i * goal_len, 0, (size_t)goal_len);
            goals[i * goal_len] = (uint8_t)g;
            goals[i * goal_len + 1] = (uint8_t)(g >> 8);
        }
        int64_t t0 = rtv_serial_now_ns();
        int st = rtv_bus_sync_write_rt(bus, goal_addr, goal_len, ids, servos, goals);
        if (!st) st = rtv_bus_sync_read_rt(bus, read_addr, read_len, ids, servos, state);
        rt[k] = rtv_serial_now_ns() - t0;
        if (st && !errors++) snprintf(first_err, sizeof(first_err), "%s", rtv_last_error());
    }
    qsort(rt, (size_t)n, sizeof(*rt), cmp_i64);
    size_t out_bytes = (ft ? 6 : 10) + (size_t)servos * (size_t)(goal_len + 1) + (ft ? 2 : 4) /* sync write */
                       + (ft ? 6 : 10) + (ft ? 2 : 4) + (size_t)servos;                        /* sync read */
    size_t in_bytes = (size_t)servos * (size_t)(read_len + (ft ? 6 : 11));
    double wire_us = (double)rtv_serial_wire_ns(out_bytes + in_bytes, baud) / 1e3;
    rtv_bus_counters c;
    rtv_bus_counters_get(bus, &c);
    printf("bench bus: %s %s, %d servos, %d baud, latency %d us, gap %d us, n %d, fifo %d/%d\n",
           ft ? "feetech" : "dynamixel", sim ? "simulator" : port, servos, baud, latency_us, gap_us, n,
           prio_got, sim ? rtv_sim_rt_prio(sim) : 0);
    printf("%-34s %9s %9s %9s %9s %9s\n", "transaction", "wire_us", "p50_us", "p99_us", "max_us", "errors");
    char what[64];
    snprintf(what, sizeof(what), "sync_write(%d)+sync_read(%d..%d)", goal_addr, read_addr, read_addr + read_len - 1);
    printf("%-34s %9.1f %9.1f %9.1f %9.1f %9d\n", what, wire_us, rt[n / 2] / 1e3,
           rt[(size_t)((double)n * 0.99) < (size_t)n ? (size_t)((double)n * 0.99) : (size_t)n - 1] / 1e3,
           rt[n - 1] / 1e3, errors);
    printf("counters: transactions %llu retries %llu corrupt %llu timeouts %llu failures %llu\n",
           (unsigned long long)c.transactions, (unsigned long long)c.retries,
           (unsigned long long)c.corrupt, (unsigned long long)c.timeouts, (unsigned long long)c.failures);
    if (errors) printf("first error: %s\n", first_err);
    rc = errors ? 1 : 0;
out:
    free(rt);
    rtv_bus_close(bus);
    rtv_sim_stop(sim);
    return rc;
}
