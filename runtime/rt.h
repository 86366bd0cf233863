/* runtime/rt.h — real-time discipline: memory locking, scheduling, clocks, periodic sleeps,
 * and the allocation counter that proves real-time threads allocate nothing.
 *
 * Start-up (main thread, before any other thread exists): rtv_rt_process_init() locks memory
 * (mlockall CURRENT|FUTURE), stops malloc trimming and mmap use, and prefaults a heap reserve.
 * Each step that the OS refuses is recorded in rtv_rt_process (with the fix) and warned once;
 * the program continues.
 *
 * Per thread: rtv_rt_thread_setup() prefaults its stack, sets SCHED_FIFO at a priority (or
 * SCHED_OTHER with 1 ns timer slack when FIFO is refused: one warning naming the fix), pins it
 * to a CPU, and reports what was granted in rtv_rt_grant. Call it first in the thread.
 *
 * Loops: rtv_period is an absolute CLOCK_MONOTONIC schedule. rtv_period_wait_rt() sleeps to the
 * next deadline; when a deadline has already passed it counts the missed periods and re-phases
 * to the next future deadline (never a burst of catch-up cycles).
 *
 * Allocation counting: rtv_rt_thread_mark() flags the calling thread as real-time from that
 * point on (call it after the thread's warm-up). The counter is fed by a test-only malloc
 * interposer (tests/runtime/alloc_count.c) that calls rtv_rt_alloc_note() for every
 * malloc/calloc/realloc/free/memalign made on a flagged thread; without the interposer the
 * count stays 0 and rtv_rt_alloc_counting() says so.
 */
#ifndef RTV_RT_H
#define RTV_RT_H

#include <stdint.h>
#include <time.h>

/* ---- memory ---- */
/* Zeroed memory aligned to a cache line (64 bytes), for objects of a type with members aligned
 * to lines (mailbox, telemetry rings, frame slots: _Alignas(64)). malloc and calloc give 16
 * bytes, and accessing such an object there is undefined behaviour (the compiler may use
 * aligned vector moves on it; UBSan reports it). NULL when out of memory; free() releases it. */
void *rtv_alloc_lines(size_t bytes);

/* ---- process ---- */
typedef struct rtv_rt_process {
    int mlocked;            /* mlockall(MCL_CURRENT|MCL_FUTURE) succeeded */
    int malloc_tuned;       /* mallopt trim/mmap settings applied */
    char warning[256];      /* "" or the refusals with their fixes */
} rtv_rt_process;

/* heap_reserve_bytes: bytes malloc'ed, touched and freed so the heap holds that much resident
 * memory afterwards (0: none). Never fails: refusals go to p->warning and stderr. */
void rtv_rt_process_init(rtv_rt_process *p, size_t heap_reserve_bytes);

/* ---- threads ---- */
typedef struct rtv_rt_grant {
    int policy;             /* SCHED_FIFO or SCHED_OTHER: what the thread runs with */
    int priority;           /* granted FIFO priority (0 for SCHED_OTHER) */
    int cpu;                /* pinned CPU, -1 = any */
    int fifo_refused;       /* FIFO was asked for and refused (EPERM) */
    int affinity_refused;   /* the CPU was asked for and refused */
} rtv_rt_grant;

/* name: thread name (<= 15 chars, shown in top/perf); fifo_prio 0 = SCHED_OTHER, 1..99 = FIFO;
 * cpu -1 = no pinning; stack_prefault_bytes: stack bytes to touch (the thread's stack must be
 * larger: see rtv_rt_thread_create). Returns RTV_OK; refusals are reported in *g and warned
 * once per process (a second refusal in the same process is silent). */
int rtv_rt_thread_setup(const char *name, int fifo_prio, int cpu, size_t stack_prefault_bytes,
                        rtv_rt_grant *g);
/* pthread_create with an explicit stack size (bytes), SCHED_OTHER attributes (a new thread
 * never inherits FIFO from its creator) and a name. RTV_E_OS naming the thread on failure. */
int rtv_rt_thread_create(void *thread_out /* pthread_t* */, const char *name, size_t stack_bytes,
                         void *(*fn)(void *), void *arg);
/* "SCHED_FIFO 80 cpu 2" / "SCHED_OTHER (FIFO refused)" into buf. */
const char *rtv_rt_grant_str(const rtv_rt_grant *g, char *buf, int n);
/* Whether SCHED_FIFO can be had at all here (tries it on a short-lived thread). */
int rtv_rt_fifo_available(void);

/* ---- clocks ---- */
static inline int64_t rtv_clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* Sleeps until CLOCK_MONOTONIC time t_ns (absolute; EINTR resumed). */
void rtv_clock_sleep_until(int64_t t_ns);

typedef struct rtv_period {
    int64_t period_ns;
    int64_t next_ns;        /* the deadline the next wait sleeps to */
    uint64_t cycles;        /* waits done */
    uint64_t overruns;      /* periods missed in total (a cycle that ended k periods late adds k) */
} rtv_period;

/* First deadline = start_ns + period_ns. */
void rtv_period_init(rtv_period *p, int64_t period_ns, int64_t start_ns);
/* Sleeps until the next deadline and returns the wake-up lateness (ns, >= 0) relative to
 * it. If now is already past the deadline, the periods whose deadline passed are counted in
 * p->overruns (and returned through *missed), and the schedule moves on to the first deadline
 * in the future, on the same phase grid. */
int64_t rtv_period_wait_rt(rtv_period *p, uint64_t *missed);
/* The pure arithmetic of the skip: given deadline next_ns and now_ns, the number of
 * deadlines <= now_ns (0 if next_ns > now_ns) and the first deadline > now_ns. */
int64_t rtv_period_skip(int64_t next_ns, int64_t period_ns, int64_t now_ns, uint64_t *missed);

/* ---- allocation counting on real-time threads ---- */
void rtv_rt_thread_mark(void);      /* this thread is real-time from now on */
void rtv_rt_thread_unmark(void);    /* e.g. before the thread's shutdown path */
int rtv_rt_thread_is_marked(void);  /* async-signal-safe; no allocation */
void rtv_rt_alloc_note(void);       /* called by the interposer for each call on a marked thread */
uint64_t rtv_rt_alloc_count(void);  /* calls noted so far */
void rtv_rt_alloc_set_counting(int on); /* the interposer says it is linked in */
int rtv_rt_alloc_counting(void);

#endif
