#include "runtime/rt.h"

#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "runtime/status.h"

/* ---- memory ---- */

void *rtv_alloc_lines(size_t bytes)
{
    if (bytes > SIZE_MAX - 63) return NULL;
    const size_t n = (bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) memset(p, 0, n ? n : 64);
    return p;
}

/* ---- process ---- */

void rtv_rt_process_init(rtv_rt_process *p, size_t heap_reserve_bytes)
{
    memset(p, 0, sizeof(*p));
    /* Heap first: with trimming off and no mmap, memory freed later stays in the heap, so the
     * reserve below stays resident and locked. */
    p->malloc_tuned = mallopt(M_TRIM_THRESHOLD, -1) == 1 && mallopt(M_MMAP_MAX, 0) == 1;
    if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0) {
        p->mlocked = 1;
    } else {
        int e = errno;
        snprintf(p->warning, sizeof(p->warning),
                 "mlockall refused (%s): pages may fault on real-time threads; fix: run as root "
                 "or raise the memlock limit (ulimit -l unlimited, limits.conf memlock)",
                 strerror(e));
        fprintf(stderr, "rtvla: warning: %s\n", p->warning);
    }
    if (heap_reserve_bytes) {
        volatile char *h = malloc(heap_reserve_bytes);
        if (h) {
            for (size_t i = 0; i < heap_reserve_bytes; i += 4096) h[i] = 1;
            free((void *)h);
        }
    }
}

/* ---- threads ---- */

static atomic_int fifo_warned;

static void prefault_stack(size_t bytes)
{
    if (!bytes) return;
    /* A VLA on the stack, written; the empty asm keeps the compiler from eliding the writes. */
    char buf[bytes];
    memset(buf, 0, bytes);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

int rtv_rt_thread_setup(const char *name, int fifo_prio, int cpu, size_t stack_prefault_bytes,
                        rtv_rt_grant *g)
{
    memset(g, 0, sizeof(*g));
    g->policy = SCHED_OTHER;
    g->cpu = -1;
    if (name) pthread_setname_np(pthread_self(), name);
    prefault_stack(stack_prefault_bytes);

    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        int e = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (e == 0) {
            g->cpu = cpu;
        } else {
            g->affinity_refused = 1;
            fprintf(stderr, "rtvla: warning: thread %s: CPU %d refused (%s); running on any CPU\n",
                    name ? name : "?", cpu, strerror(e));
        }
    }

    if (fifo_prio > 0) {
        struct sched_param sp = { .sched_priority = fifo_prio };
        int e = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (e == 0) {
            g->policy = SCHED_FIFO;
            g->priority = fifo_prio;
            return RTV_OK;
        }
        g->fifo_refused = 1;
        if (atomic_exchange(&fifo_warned, 1) == 0) {
            struct rlimit rl = { 0, 0 };
            getrlimit(RLIMIT_RTPRIO, &rl);
            fprintf(stderr,
                    "rtvla: warning: SCHED_FIFO %d refused for thread %s (%s; RLIMIT_RTPRIO %ld): "
                    "running SCHED_OTHER with 1 ns timer slack, expect more jitter. Fix: "
                    "`ulimit -r 95` or '@realtime - rtprio 95' in /etc/security/limits.conf "
                    "(systemd: LimitRTPRIO=95), or CAP_SYS_NICE; in a container, an RT budget "
                    "for its cgroup\n",
                    fifo_prio, name ? name : "?", strerror(e), (long)rl.rlim_cur);
        }
    }
    /* SCHED_OTHER threads have 50 us of timer slack by default; 1 ns cuts wake-up lateness
     * several-fold (shared/specs/gpu_rt.md 5.3). FIFO threads have none. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    return RTV_OK;
}

/* Bytes of static TLS of every loaded object (PT_TLS segments). glibc carves static TLS out
 * of each thread's stack, and cuBLAS/cudart bring hundreds of KiB of it: without adding it,
 * a 256 KiB real-time stack can be mostly TLS and the stack prefault overflows. */
static int tls_phdr_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS)
            *(size_t *)data += info->dlpi_phdr[i].p_memsz + info->dlpi_phdr[i].p_align;
    return 0;
}

static size_t static_tls_bytes(void)
{
    size_t n = 0;
    dl_iterate_phdr(tls_phdr_cb, &n);
    return n;
}

int rtv_rt_thread_create(void *thread_out, const char *name, size_t stack_bytes,
                         void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&a, SCHED_OTHER);
    struct sched_param sp = { .sched_priority = 0 };
    pthread_attr_setschedparam(&a, &sp);
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer keeps ~800 KiB of per-thread state in static TLS, which glibc carves
     * out of the thread's stack. */
    if (stack_bytes) stack_bytes += 2u << 20;
#endif
    if (stack_bytes) stack_bytes += (static_tls_bytes() + 4095) & ~(size_t)4095;
    if (stack_bytes) pthread_attr_setstacksize(&a, stack_bytes);
    int e = pthread_create((pthread_t *)thread_out, &a, fn, arg);
    pthread_attr_destroy(&a);
    if (e) return rtv_fail(RTV_E_OS, "thread %s: pthread_create: %s", name, strerror(e));
    return RTV_OK;
}

const char *rtv_rt_grant_str(const rtv_rt_grant *g, char *buf, int n)
{
    int k;
    if (g->policy == SCHED_FIFO)
        k = snprintf(buf, n, "SCHED_FIFO %d", g->priority);
    else
        k = snprintf(buf, n, "SCHED_OTHER%s", g->fifo_refused ? " (FIFO refused)" : "");
    if (k >= 0 && k < n && g->cpu >= 0) snprintf(buf + k, n - k, " cpu %d", g->cpu);
    return buf;
}

static void *fifo_probe(void *arg)
{
    struct sched_param sp = { .sched_priority = 1 };
    *(int *)arg = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
    return NULL;
}

int rtv_rt_fifo_available(void)
{
    pthread_t t;
    int ok = 0;
    if (pthread_create(&t, NULL, fifo_probe, &ok)) return 0;
    pthread_join(t, NULL);
    return ok;
}

/* ---- clocks ---- */

void rtv_clock_sleep_until(int64_t t_ns)
{
    struct timespec ts = { .tv_sec = t_ns / 1000000000, .tv_nsec = t_ns % 1000000000 };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

void rtv_period_init(rtv_period *p, int64_t period_ns, int64_t start_ns)
{
    p->period_ns = period_ns;
    p->next_ns = start_ns + period_ns;
    p->cycles = 0;
    p->overruns = 0;
}

int64_t rtv_period_skip(int64_t next_ns, int64_t period_ns, int64_t now_ns, uint64_t *missed)
{
    if (next_ns > now_ns) {
        *missed = 0;
        return next_ns;
    }
    uint64_t k = (uint64_t)((now_ns - next_ns) / period_ns) + 1;
    *missed = k;
    return next_ns + (int64_t)k * period_ns;
}

int64_t rtv_period_wait_rt(rtv_period *p, uint64_t *missed)
{
    uint64_t m = 0;
    int64_t now = rtv_clock_now_ns();
    if (now >= p->next_ns) {
        /* The deadline passed while we computed: do not sleep to it (that would be a burst of
         * back-to-back cycles); count the missed deadlines and wait for the next one. */
        p->next_ns = rtv_period_skip(p->next_ns, p->period_ns, now, &m);
        p->overruns += m;
    }
    rtv_clock_sleep_until(p->next_ns);
    int64_t late = rtv_clock_now_ns() - p->next_ns;
    p->next_ns += p->period_ns;
    p->cycles++;
    if (missed) *missed = m;
    return late > 0 ? late : 0;
}

/* ---- allocation counting ---- */

static _Thread_local int rt_marked;
static atomic_uint_fast64_t rt_allocs;
static atomic_int rt_counting;

void rtv_rt_thread_mark(void) { rt_marked = 1; }
void rtv_rt_thread_unmark(void) { rt_marked = 0; }
int rtv_rt_thread_is_marked(void) { return rt_marked; }
void rtv_rt_alloc_note(void) { atomic_fetch_add_explicit(&rt_allocs, 1, memory_order_relaxed); }
uint64_t rtv_rt_alloc_count(void) { return atomic_load(&rt_allocs); }
void rtv_rt_alloc_set_counting(int on) { atomic_store(&rt_counting, on); }
int rtv_rt_alloc_counting(void) { return atomic_load(&rt_counting); }
