/* tests/runtime/test_rt.c — real-time helpers and the no-allocation proof.
 *
 * - period skip arithmetic (missed deadlines counted, same phase grid, never a burst);
 * - a real 200 Hz loop with an injected 23 ms stall: 4 periods counted as missed and the
 *   next wake-up is on the grid;
 * - SCHED_FIFO: if the OS grants it, the thread really runs FIFO at that priority; if it is
 *   refused, the grant says SCHED_OTHER + refused (both checked against sched_getscheduler);
 * - the allocation counter (this executable links tests/runtime/alloc_count.c): a marked
 *   thread's malloc/free/strdup/printf-to-memstream are counted, an unmarked thread's are not;
 *   then a marked thread runs 2000 cycles of mailbox take, chunk step, telemetry push and the
 *   period wait and must make zero allocator calls.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "runtime/chunk.h"
#include "runtime/mailbox.h"
#include "runtime/rt.h"
#include "runtime/status.h"
#include "runtime/telemetry.h"

static void test_skip(void)
{
    uint64_t m;
    CHECK(rtv_period_skip(100, 10, 50, &m) == 100 && m == 0);
    CHECK(rtv_period_skip(100, 10, 100, &m) == 110 && m == 1);
    CHECK(rtv_period_skip(100, 10, 109, &m) == 110 && m == 1);
    CHECK(rtv_period_skip(100, 10, 135, &m) == 140 && m == 4);
}

static void test_period(void)
{
    rtv_period p;
    const int64_t per = 5000000; /* 200 Hz */
    int64_t t0 = rtv_clock_now_ns();
    rtv_period_init(&p, per, t0);
    uint64_t missed = 0, total = 0;
    for (int i = 0; i < 10; i++) {
        rtv_period_wait_rt(&p, &missed);
        total += missed;
    }
    CHECK_MSG(total == 0 && p.overruns == 0, "an idle 200 Hz loop missed %llu",
              (unsigned long long)p.overruns);
    int64_t before = p.next_ns;
    rtv_clock_sleep_until(rtv_clock_now_ns() + 23000000); /* stall 23 ms: 4.6 periods */
    rtv_period_wait_rt(&p, &missed);
    CHECK_MSG(missed == 4 || missed == 5, "missed %llu", (unsigned long long)missed);
    CHECK((p.next_ns - before) % per == 0); /* still on the grid */
    CHECK(p.next_ns - rtv_clock_now_ns() <= per);
}

typedef struct fifo_res {
    rtv_rt_grant g;
    int policy, prio;
} fifo_res;

static void *fifo_thread(void *a_)
{
    fifo_res *r = a_;
    rtv_rt_thread_setup("rtv-test-fifo", 42, 0, 64 * 1024, &r->g);
    struct sched_param sp;
    pthread_getschedparam(pthread_self(), &r->policy, &sp);
    r->prio = sp.sched_priority;
    return NULL;
}

static void test_fifo(void)
{
    fifo_res r;
    pthread_t th;
    CHECK(rtv_rt_thread_create(&th, "fifo", 256 * 1024, fifo_thread, &r) == RTV_OK);
    pthread_join(th, NULL);
    char buf[64];
    printf("SCHED_FIFO available: %d; granted: %s\n", rtv_rt_fifo_available(),
           rtv_rt_grant_str(&r.g, buf, sizeof(buf)));
    if (r.g.policy == SCHED_FIFO) {
        CHECK(r.policy == SCHED_FIFO && r.prio == 42 && r.g.priority == 42 && !r.g.fifo_refused);
        CHECK(rtv_rt_fifo_available());
    } else {
        CHECK(r.policy == SCHED_OTHER && r.g.fifo_refused && !rtv_rt_fifo_available());
    }
    CHECK(r.g.cpu == 0 || r.g.affinity_refused);
}

/* ---- allocation counting ---- */
static void *alloc_marked(void *a)
{
    (void)a;
    rtv_rt_thread_mark();
    uint64_t c0 = rtv_rt_alloc_count();
    /* the asm barriers keep the compiler from folding malloc/free pairs away */
    char src[8] = "x";
    __asm__ volatile("" : : "r"(src) : "memory");
    void *p = malloc(100);
    __asm__ volatile("" : : "r"(p) : "memory");
    free(p);
    char *s = strdup(src); /* libc's internal malloc call is counted too */
    __asm__ volatile("" : : "r"(s) : "memory");
    free(s);
    uint64_t c1 = rtv_rt_alloc_count();
    rtv_rt_thread_unmark();
    return (void *)(uintptr_t)(c1 - c0);
}

static void *alloc_unmarked(void *a)
{
    (void)a;
    for (int i = 0; i < 100; i++) free(malloc(64));
    return NULL;
}

typedef struct loop_arg {
    rtv_mailbox *mb;
    rtv_chunk_exec *x;
    rtv_tel_ring *ring;
    uint64_t allocs;
    int cycles_used;
} loop_arg;

static void *rt_loop(void *a_)
{
    loop_arg *a = a_;
    rtv_rt_grant g;
    rtv_rt_thread_setup("rtv-test-loop", 10, -1, 64 * 1024, &g);
    rtv_period p;
    rtv_period_init(&p, 100000, rtv_clock_now_ns()); /* 10 kHz: 2000 cycles in 0.2 s */
    float out[6];
    /* warm-up cycle unmarked, then everything counts */
    for (int i = 0; i < 2001; i++) {
        if (i == 1) {
            rtv_rt_thread_mark();
            a->allocs = rtv_rt_alloc_count();
        }
        rtv_period_wait_rt(&p, NULL);
        int64_t t = rtv_clock_now_ns();
        rtv_mb_take tk;
        rtv_mailbox_take_rt(a->mb, t, &tk);
        if (tk.verdict == RTV_MB_USE) a->cycles_used++;
        rtv_mailbox_tick_rt(a->mb);
        rtv_chunk_pick pk;
        rtv_chunk_exec_step_rt(a->x, t, out, &pk);
        rtv_tel_push_rt(a->ring, 0, t, rtv_clock_now_ns(), 0, out[0], 0, 0, 0);
    }
    a->allocs = rtv_rt_alloc_count() - a->allocs;
    rtv_rt_thread_unmark();
    return NULL;
}

static void test_alloc(void)
{
    CHECK_MSG(rtv_rt_alloc_counting(), "alloc_count.c interposer not linked");
    pthread_t th;
    void *ret;
    uint64_t c0 = rtv_rt_alloc_count();
    pthread_create(&th, NULL, alloc_unmarked, NULL);
    pthread_join(th, NULL);
    CHECK(rtv_rt_alloc_count() == c0);
    pthread_create(&th, NULL, alloc_marked, NULL);
    pthread_join(th, &ret);
    CHECK_MSG((uintptr_t)ret == 4, "malloc+free+strdup+free on a marked thread counted %lu",
              (unsigned long)(uintptr_t)ret);

    /* the real-time building blocks allocate nothing */
    static float pl[3];
    void *pp[3] = { &pl[0], &pl[1], &pl[2] };
    rtv_mailbox *mb = aligned_alloc(64, (sizeof(rtv_mailbox) + 63) / 64 * 64);
    rtv_mailbox_cfg mc = { .max_reuse = 5, .policy = RTV_STALE_HOLD, .every_n_cycles = 2 };
    rtv_mailbox_init(mb, pp, &mc);
    rtv_mailbox_publish(mb, rtv_clock_now_ns(), rtv_clock_now_ns());
    rtv_chunk_exec x;
    rtv_chunk_exec_init(&x, 50, 6, 20000000, RTV_AGG_ENSEMBLE, 0.01f, 8);
    float chunk[300] = { 0 };
    rtv_chunk_exec_push_rt(&x, chunk, rtv_clock_now_ns(), 1);
    char dir[] = "/tmp/rtv_test_rt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    static const rtv_tel_stage st[] = { { .name = "loop" } };
    rtv_telemetry *t;
    loop_arg a = { .mb = mb, .x = &x };
    CHECK(rtv_telemetry_open(&t, dir, st, 1, 4096) == RTV_OK);
    CHECK(rtv_telemetry_add_thread(t, "loop", &a.ring) == RTV_OK);
    CHECK(rtv_telemetry_start(t, 0) == RTV_OK);
    rtv_rt_thread_create(&th, "loop", 256 * 1024, rt_loop, &a);
    pthread_join(th, NULL);
    uint64_t nrec, ndrop;
    CHECK(rtv_telemetry_close(t, &nrec, &ndrop) == RTV_OK);
    CHECK(nrec == 2001 && ndrop == 0);
    CHECK(a.cycles_used == 5); /* max_reuse 5, then hold */
    CHECK_MSG(a.allocs == 0, "%llu allocator calls on the real-time loop after warm-up",
              (unsigned long long)a.allocs);
    rtv_chunk_exec_free(&x);
    free(mb);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    test_skip();
    test_period();
    test_fifo();
    test_alloc();
    return check_report(argv[0]);
}
