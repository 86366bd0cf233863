/* `rtvla bench loop`: wake-up lateness of periodic threads shaped like rtvla's action and
 * control threads (absolute CLOCK_MONOTONIC sleeps, as runtime/run.c does), first with
 * SCHED_FIFO, then with SCHED_OTHER (+1 ns timer slack), optionally with busy threads as load.
 * Prints one stable table; figures are the sleep's lateness past each deadline, in us. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "runtime/bench.h"
#include "runtime/rt.h"
#include "runtime/status.h"

#define MAX_HZ 4

typedef struct loop_thread {
    int hz, prio;
    double seconds;
    rtv_rt_grant grant;
    int64_t *late_ns;       /* (cap) samples */
    size_t n, cap;
    uint64_t overruns;
} loop_thread;

static _Atomic int load_stop;

static void *busy(void *a)
{
    (void)a;
    volatile uint64_t x = 0;
    while (!atomic_load_explicit(&load_stop, memory_order_relaxed)) x++;
    return NULL;
}

static void *loop_main(void *a_)
{
    loop_thread *t = a_;
    char name[16];
    snprintf(name, sizeof(name), "rtv-bench-%d", t->hz);
    rtv_rt_thread_setup(name, t->prio, -1, 64 * 1024, &t->grant);
    rtv_period p;
    int64_t period = 1000000000LL / t->hz;
    rtv_period_init(&p, period, rtv_clock_now_ns());
    while (t->n < t->cap) t->late_ns[t->n++] = rtv_period_wait_rt(&p, NULL);
    t->overruns = p.overruns;
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(const int64_t *v, size_t n, double p)
{
    if (!n) return 0;
    size_t k = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return (double)v[k - 1] / 1e3;
}

static int parse_hz(const char *s, int *hz, int *n)
{
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 10000 || *n == MAX_HZ) return -1;
        hz[(*n)++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return *n ? 0 : -1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: rtvla bench loop [--seconds S] [--hz 10,50] [--prio P] [--load N]\n"
               "  --seconds S  seconds per scheduling mode (default 60)\n"
               "  --hz LIST    loop rates, one thread each (default 10,50: action, control)\n"
               "  --prio P     SCHED_FIFO priority of the loops (default 80)\n"
               "  --load N     N busy SCHED_OTHER threads running meanwhile (default 0)\n");
}

int rtv_bench_loop(int argc, char **argv)
{
    double seconds = 60;
    int hz[MAX_HZ] = { 10, 50 }, n_hz = 2, prio = 80, load = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--seconds") && v) {
            seconds = strtod(v, &end);
            if (*end || !(seconds >= 0.1 && seconds <= 86400)) {
                fprintf(stderr, "rtvla bench loop: --seconds: expected 0.1..86400, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--hz") && v) {
            if (parse_hz(v, hz, &n_hz)) {
                fprintf(stderr, "rtvla bench loop: --hz: expected up to %d rates 1..10000 "
                                "separated by commas, got '%s'\n", MAX_HZ, v);
                return 2;
            }
        } else if (!strcmp(a, "--prio") && v) {
            long p = strtol(v, &end, 10);
            if (*end || p < 1 || p > 99) {
                fprintf(stderr, "rtvla bench loop: --prio: expected 1..99, got '%s'\n", v);
                return 2;
            }
            prio = (int)p;
        } else if (!strcmp(a, "--load") && v) {
            long l = strtol(v, &end, 10);
            if (*end || l < 0 || l > 256) {
                fprintf(stderr, "rtvla bench loop: --load: expected 0..256, got '%s'\n", v);
                return 2;
            }
            load = (int)l;
        } else {
            fprintf(stderr, "rtvla bench loop: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }

    rtv_rt_process proc;
    rtv_rt_process_init(&proc, 0);
    struct utsname u;
    uname(&u);
    FILE *rtk = fopen("/sys/kernel/realtime", "r");
    int preempt_rt = 0;
    if (rtk) {
        preempt_rt = fgetc(rtk) == '1';
        fclose(rtk);
    }
    if (!preempt_rt && strstr(u.version, "PREEMPT_RT")) preempt_rt = 1;
    int fifo_ok = rtv_rt_fifo_available();
    printf("rtvla bench loop: wake-up lateness past absolute CLOCK_MONOTONIC deadlines, us\n");
    printf("machine: %s %s, %ld CPUs, PREEMPT_RT %s, mlockall %s, SCHED_FIFO %s\n", u.sysname,
           u.release, sysconf(_SC_NPROCESSORS_ONLN), preempt_rt ? "yes" : "no",
           proc.mlocked ? "yes" : "refused", fifo_ok ? "granted" : "refused");
    printf("%.1f s per mode, %d busy load thread(s)\n\n", seconds, load);
    printf("%-12s %6s %8s %9s %9s %9s %9s %7s\n", "mode", "hz", "samples", "p50", "p99",
           "p99.9", "max", "missed");
    fflush(stdout);

    pthread_t lt[256];
    atomic_store(&load_stop, 0);
    for (int i = 0; i < load; i++) {
        if (rtv_rt_thread_create(&lt[i], "load", 256 * 1024, busy, NULL)) {
            fprintf(stderr, "rtvla bench loop: %s\n", rtv_last_error());
            atomic_store(&load_stop, 1);
            for (int k = 0; k < i; k++) pthread_join(lt[k], NULL);
            return 1;
        }
    }

    int rc = 0;
    for (int mode = 0; mode < 2; mode++) {
        loop_thread th[MAX_HZ];
        pthread_t pt[MAX_HZ];
        if (mode == 0 && !fifo_ok) {
            printf("%-12s %6s  refused (RLIMIT_RTPRIO or cgroup RT budget; see `rtvla check`)\n",
                   "SCHED_FIFO", "-");
            continue;
        }
        for (int k = 0; k < n_hz; k++) {
            memset(&th[k], 0, sizeof(th[k]));
            th[k].hz = hz[k];
            th[k].prio = mode == 0 ? prio : 0;
            th[k].cap = (size_t)(seconds * hz[k]);
            if (th[k].cap < 1) th[k].cap = 1;
            th[k].late_ns = calloc(th[k].cap, sizeof(int64_t));
            if (!th[k].late_ns) {
                fprintf(stderr, "rtvla bench loop: out of memory\n");
                return 1;
            }
        }
        for (int k = 0; k < n_hz; k++) {
            if (rtv_rt_thread_create(&pt[k], "loop", 256 * 1024, loop_main, &th[k])) {
                fprintf(stderr, "rtvla bench loop: %s\n", rtv_last_error());
                return 1;
            }
        }
        for (int k = 0; k < n_hz; k++) pthread_join(pt[k], NULL);
        for (int k = 0; k < n_hz; k++) {
            loop_thread *t = &th[k];
            qsort(t->late_ns, t->n, sizeof(int64_t), cmp_i64);
            const char *m = t->grant.policy == SCHED_FIFO ? "SCHED_FIFO" : "SCHED_OTHER";
            printf("%-12s %6d %8zu %9.1f %9.1f %9.1f %9.1f %7llu\n", m, t->hz, t->n,
                   pct_us(t->late_ns, t->n, 50), pct_us(t->late_ns, t->n, 99),
                   pct_us(t->late_ns, t->n, 99.9), t->n ? (double)t->late_ns[t->n - 1] / 1e3 : 0,
                   (unsigned long long)t->overruns);
            if (mode == 0 && t->grant.policy != SCHED_FIFO) rc = 1;
            free(t->late_ns);
        }
        fflush(stdout);
    }
    atomic_store(&load_stop, 1);
    for (int i = 0; i < load; i++) pthread_join(lt[i], NULL);
    return rc;
}
