/* tests/runtime/test_mailbox.c — the triple buffer and the feature mailbox.
 *
 * Unit part: verdicts (empty, fresh, reuse, stale by count and by age under hold / continue /
 * stop), the uses histogram and skipped count, pacing (wants, timeout, close).
 * Stress part: a writer thread publishes RTV_STRESS_N (default 2,000,000) payloads, each filled
 * with words derived from its sequence number plus a checksum; the reader takes as fast as it
 * can and checks every slot it holds: checksum and pattern intact (no torn read), held payload
 * unchanged while held (the writer never touches the reader's slot), seq never decreases, and
 * seq >= the last publish the writer had completed before the take (no lost publish: the newest
 * is always reachable). At the end the reader must get exactly the last seq.
 * Run it under ThreadSanitizer by hand: meson setup -Db_sanitize=thread /tmp/build-tsan ...
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "runtime/mailbox.h"
#include "runtime/rt.h"
#include "runtime/status.h"

#define WORDS 61

typedef struct payload {
    uint64_t seq;
    uint64_t w[WORDS];
    uint64_t sum;
} payload;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static void fill(payload *p, uint64_t seq)
{
    p->seq = seq;
    uint64_t s = seq;
    for (int i = 0; i < WORDS; i++) {
        p->w[i] = mix(seq * 131 + (uint64_t)i);
        s += p->w[i] * (uint64_t)(i + 1);
    }
    p->sum = s;
}

static int intact(const payload *p)
{
    uint64_t s = p->seq;
    for (int i = 0; i < WORDS; i++) {
        if (p->w[i] != mix(p->seq * 131 + (uint64_t)i)) return 0;
        s += p->w[i] * (uint64_t)(i + 1);
    }
    return s == p->sum;
}

static void unit_tribuf(void)
{
    rtv_tribuf t;
    rtv_tribuf_init(&t);
    CHECK(rtv_tribuf_take_rt(&t) == 0);
    uint32_t w0 = rtv_tribuf_write_idx(&t);
    rtv_tribuf_publish(&t);
    CHECK(rtv_tribuf_write_idx(&t) != w0);
    CHECK(rtv_tribuf_take_rt(&t) == 1);
    CHECK(rtv_tribuf_read_idx(&t) == w0);
    CHECK(rtv_tribuf_take_rt(&t) == 0);
    CHECK(rtv_tribuf_read_idx(&t) == w0);
    /* two publishes, one take: the reader gets the second */
    uint32_t a = rtv_tribuf_write_idx(&t);
    rtv_tribuf_publish(&t);
    uint32_t b = rtv_tribuf_write_idx(&t);
    rtv_tribuf_publish(&t);
    CHECK(a != b);
    CHECK(rtv_tribuf_take_rt(&t) == 1);
    CHECK(rtv_tribuf_read_idx(&t) == b);
    /* indices stay a permutation of {0,1,2} */
    for (int i = 0; i < 100; i++) {
        if (i % 3) rtv_tribuf_publish(&t);
        if (i % 2) rtv_tribuf_take_rt(&t);
        uint32_t bk = atomic_load(&t.back) & 3u;
        CHECK(t.wr != t.rd && t.wr != bk && t.rd != bk && t.wr < 3 && t.rd < 3 && bk < 3);
    }
}

static void unit_verdicts(void)
{
    payload p[3];
    void *pp[3] = { &p[0], &p[1], &p[2] };
    rtv_mailbox mb;
    rtv_mb_take tk;
    const int64_t MS = 1000000;

    rtv_mailbox_cfg bad = { .max_reuse = 0 };
    CHECK(rtv_mailbox_init(&mb, pp, &bad) == RTV_E_ARG);

    rtv_mailbox_cfg c = { .max_reuse = 3, .max_age_ns = 500 * MS, .policy = RTV_STALE_HOLD };
    CHECK(rtv_mailbox_init(&mb, pp, &c) == RTV_OK);
    rtv_mailbox_take_rt(&mb, 0, &tk);
    CHECK(tk.verdict == RTV_MB_EMPTY && tk.slot == NULL);

    fill(rtv_mailbox_write_slot(&mb)->payload, 1);
    rtv_mailbox_publish(&mb, 100 * MS, 150 * MS);
    rtv_mailbox_take_rt(&mb, 200 * MS, &tk);
    CHECK(tk.verdict == RTV_MB_USE && tk.fresh && tk.uses == 1 && !tk.stale);
    CHECK(tk.slot && tk.slot->seq == 1 && ((payload *)tk.slot->payload)->seq == 1);
    CHECK(tk.age_ns == 100 * MS);
    rtv_mailbox_take_rt(&mb, 300 * MS, &tk);
    CHECK(tk.verdict == RTV_MB_USE && !tk.fresh && tk.uses == 2);
    rtv_mailbox_take_rt(&mb, 400 * MS, &tk);
    CHECK(tk.verdict == RTV_MB_USE && tk.uses == 3);
    rtv_mailbox_take_rt(&mb, 450 * MS, &tk); /* 4th use > max_reuse 3 */
    CHECK(tk.verdict == RTV_MB_HOLD && tk.stale);
    rtv_mailbox_take_rt(&mb, 460 * MS, &tk); /* holding does not consume */
    CHECK(tk.verdict == RTV_MB_HOLD && tk.uses == 3);
    CHECK(mb.n_hold == 2 && mb.n_fresh == 1 && mb.n_reused == 2);

    /* recovery: a fresh encoding arrives */
    fill(rtv_mailbox_write_slot(&mb)->payload, 2);
    rtv_mailbox_publish(&mb, 450 * MS, 470 * MS);
    rtv_mailbox_take_rt(&mb, 500 * MS, &tk);
    CHECK(tk.verdict == RTV_MB_USE && tk.fresh && tk.uses == 1 && tk.slot->seq == 2);
    CHECK(mb.uses_hist[3] == 1);

    /* stale by age (capture 450 ms, limit 500 ms) */
    rtv_mailbox_take_rt(&mb, 951 * MS, &tk);
    CHECK(tk.verdict == RTV_MB_HOLD && tk.stale);

    /* skipped: 3 publishes before one take */
    for (uint64_t s = 3; s <= 5; s++) {
        fill(rtv_mailbox_write_slot(&mb)->payload, s);
        rtv_mailbox_publish(&mb, 1000 * MS, 1000 * MS);
    }
    rtv_mailbox_take_rt(&mb, 1001 * MS, &tk);
    CHECK(tk.fresh && tk.slot->seq == 5 && mb.n_skipped == 2);
    CHECK(((payload *)tk.slot->payload)->seq == 5 && intact(tk.slot->payload));
    CHECK(mb.uses_hist[1] == 1); /* encoding 2 served one cycle */
    rtv_mailbox_finish(&mb);
    CHECK(mb.uses_hist[1] == 2);

    /* continue: stale but used, counted */
    c.policy = RTV_STALE_CONTINUE;
    c.max_reuse = 1;
    rtv_mailbox_init(&mb, pp, &c);
    fill(rtv_mailbox_write_slot(&mb)->payload, 1);
    rtv_mailbox_publish(&mb, 0, 0);
    rtv_mailbox_take_rt(&mb, 1, &tk);
    CHECK(tk.verdict == RTV_MB_USE && !tk.stale);
    rtv_mailbox_take_rt(&mb, 2, &tk);
    CHECK(tk.verdict == RTV_MB_USE && tk.stale && tk.uses == 2 && mb.n_stale == 1);

    /* stop */
    c.policy = RTV_STALE_STOP;
    rtv_mailbox_init(&mb, pp, &c);
    fill(rtv_mailbox_write_slot(&mb)->payload, 1);
    rtv_mailbox_publish(&mb, 0, 0);
    rtv_mailbox_take_rt(&mb, 1, &tk);
    rtv_mailbox_take_rt(&mb, 2, &tk);
    CHECK(tk.verdict == RTV_MB_STOP && mb.n_stop == 1);
}

/* ---- pacing ---- */
typedef struct pace_arg {
    rtv_mailbox *mb;
    _Atomic int encodes;
    _Atomic int done;
} pace_arg;

static void *pace_vl(void *a_)
{
    pace_arg *a = a_;
    int r;
    while ((r = rtv_mailbox_wait_want(a->mb, -1)) == 1) atomic_fetch_add(&a->encodes, 1);
    atomic_store(&a->done, r == 0 ? 1 : -1);
    return NULL;
}

static void unit_pacing(void)
{
    payload p[3];
    void *pp[3] = { &p[0], &p[1], &p[2] };
    rtv_mailbox mb;
    rtv_mailbox_cfg c = { .max_reuse = 10, .policy = RTV_STALE_HOLD, .every_n_cycles = 3 };
    CHECK(rtv_mailbox_init(&mb, pp, &c) == RTV_OK);
    CHECK(rtv_mailbox_wait_want(&mb, 20) == -1); /* nothing wanted: times out */
    rtv_mailbox_tick_rt(&mb);                    /* tick 0 posts */
    CHECK(rtv_mailbox_wait_want(&mb, 0) == 1);
    rtv_mailbox_tick_rt(&mb);
    rtv_mailbox_tick_rt(&mb);
    CHECK(rtv_mailbox_wait_want(&mb, 10) == -1); /* ticks 1, 2 post nothing */
    rtv_mailbox_tick_rt(&mb);                    /* tick 3 posts */
    CHECK(rtv_mailbox_wait_want(&mb, 10) == 1);

    /* a blocked VL thread is woken by the action side, and by close */
    pace_arg a = { .mb = &mb };
    pthread_t th;
    pthread_create(&th, NULL, pace_vl, &a);
    struct timespec ms5 = { 0, 5000000 };
    for (int i = 0; i < 30; i++) {
        rtv_mailbox_tick_rt(&mb);
        nanosleep(&ms5, NULL);
    }
    int64_t t0 = rtv_clock_now_ns();
    while (atomic_load(&a.encodes) < 10 && rtv_clock_now_ns() - t0 < 2000000000LL)
        nanosleep(&ms5, NULL);
    CHECK_MSG(atomic_load(&a.encodes) == 10, "30 ticks at N=3 -> 10 encodes, got %d",
              atomic_load(&a.encodes));
    rtv_mailbox_close(&mb);
    pthread_join(th, NULL);
    CHECK(atomic_load(&a.done) == 1);
    CHECK(rtv_mailbox_wait_want(&mb, -1) == 0);

    /* pacing off: never blocks */
    c.every_n_cycles = 0;
    rtv_mailbox_init(&mb, pp, &c);
    CHECK(rtv_mailbox_wait_want(&mb, -1) == 1);
}

/* ---- stress ---- */
typedef struct stress {
    rtv_mailbox mb;
    payload pl[3];
    uint64_t n;
    _Atomic uint64_t done_seq;  /* last seq whose publish returned (writer, release) */
    _Atomic int writer_done;
} stress;

static void *stress_writer(void *a_)
{
    stress *s = a_;
    uint64_t rng = 0x1234567;
    for (uint64_t seq = 1; seq <= s->n; seq++) {
        rtv_mailbox_slot *sl = rtv_mailbox_write_slot(&s->mb);
        fill(sl->payload, seq);
        rtv_mailbox_publish(&s->mb, (int64_t)seq, (int64_t)seq);
        atomic_store_explicit(&s->done_seq, seq, memory_order_release);
        rng = mix(rng);
        if ((rng & 0xfff) == 0) sched_yield(); /* vary the interleaving */
    }
    atomic_store(&s->writer_done, 1);
    return NULL;
}

static void stress_run(uint64_t n)
{
    stress *s = aligned_alloc(64, (sizeof(stress) + 63) / 64 * 64);
    memset(s, 0, sizeof(*s));
    s->n = n;
    void *pp[3] = { &s->pl[0], &s->pl[1], &s->pl[2] };
    rtv_mailbox_cfg c = { .max_reuse = 1 << 30, .policy = RTV_STALE_CONTINUE };
    CHECK(rtv_mailbox_init(&s->mb, pp, &c) == RTV_OK);
    pthread_t th;
    pthread_create(&th, NULL, stress_writer, s);

    uint64_t last = 0, takes = 0, fresh = 0, torn = 0, lost = 0, backwards = 0, changed = 0;
    uint64_t held_sum = 0, held_seq = 0;
    for (;;) {
        int wdone = atomic_load(&s->writer_done);
        uint64_t before = atomic_load_explicit(&s->done_seq, memory_order_acquire);
        rtv_mb_take tk;
        rtv_mailbox_take_rt(&s->mb, 0, &tk);
        takes++;
        if (tk.verdict == RTV_MB_EMPTY) {
            if (before) lost++;
            continue;
        }
        const payload *p = tk.slot->payload;
        if (tk.fresh) {
            fresh++;
            if (!intact(p) || p->seq != tk.slot->seq) torn++;
            if (tk.slot->seq < last) backwards++;
            held_seq = p->seq;
            held_sum = p->sum;
        } else if (p->seq != held_seq || p->sum != held_sum || !intact(p)) {
            changed++; /* the writer touched the slot we hold */
        }
        last = tk.slot->seq;
        if (last < before) lost++;
        if (wdone && last == s->n) break;
        if (wdone && !tk.fresh && last != s->n) { lost++; break; }
    }
    pthread_join(th, NULL);
    CHECK_MSG(torn == 0, "%llu torn reads", (unsigned long long)torn);
    CHECK_MSG(changed == 0, "%llu held slots modified", (unsigned long long)changed);
    CHECK_MSG(backwards == 0, "seq went backwards %llu times", (unsigned long long)backwards);
    CHECK_MSG(lost == 0, "%llu takes missed a completed publish", (unsigned long long)lost);
    CHECK(last == n);
    CHECK(fresh > 1);
    printf("stress: %llu publishes, %llu takes, %llu fresh, %llu skipped by the reader\n",
           (unsigned long long)n, (unsigned long long)takes, (unsigned long long)fresh,
           (unsigned long long)s->mb.n_skipped);
    free(s);
}

int main(int argc, char **argv)
{
    unit_tribuf();
    unit_verdicts();
    unit_pacing();
    const char *e = getenv("RTV_STRESS_N");
    uint64_t n = e ? strtoull(e, NULL, 10) : 2000000;
    stress_run(n ? n : 1);
    return check_report(argv[0]);
}
