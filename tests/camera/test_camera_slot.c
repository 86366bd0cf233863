/* tests/camera/test_camera_slot.c — the newest-frame triple buffer: semantics, then a writer
 * and a reader thread hammering it. Every frame's bytes are a function of its seq, and its
 * capture time field carries the seq too, so a torn frame (pixels from one publish, metadata
 * from another, or pixels half-overwritten) is caught byte by byte.
 * Also build it with -Db_sanitize=thread (see hal/CAMERAS.md). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "hal/camera_slot.h"
#include "runtime/status.h"

#define W 64
#define H 8

static void fill(uint8_t *p, uint64_t seq)
{
    for (int i = 0; i < W * H * 3; i++) p[i] = (uint8_t)(seq * 131u + (unsigned)i);
}

static int intact(const rtv_frame *f)
{
    if ((uint64_t)f->t_capture_ns != f->seq * 1000) return 0;
    for (int i = 0; i < W * H * 3; i++)
        if (f->rgb[i] != (uint8_t)(f->seq * 131u + (unsigned)i)) return 0;
    return 1;
}

static void test_semantics(void)
{
    rtv_frameslot s;
    CHECK(rtv_frameslot_init(&s, 0, 4) == RTV_E_ARG);
    CHECK(rtv_frameslot_init(&s, W, H) == RTV_OK);
    rtv_frame f;
    CHECK(rtv_frameslot_take_rt(&s, &f) == -1 && f.rgb == NULL);

    fill(rtv_frameslot_back_rt(&s), 1);
    CHECK(rtv_frameslot_publish_rt(&s, 1000, 1) == 0);
    CHECK(rtv_frameslot_take_rt(&s, &f) == 1 && f.seq == 1 && intact(&f));
    const uint8_t *held = f.rgb;
    CHECK(rtv_frameslot_take_rt(&s, &f) == 0 && f.seq == 1 && f.rgb == held);

    /* Two publishes before a take: the second replaces the unread first; the reader gets the
     * newest, and the buffer it held is never the one being written. */
    uint8_t *b2 = rtv_frameslot_back_rt(&s);
    CHECK(b2 != held);
    fill(b2, 2);
    CHECK(rtv_frameslot_publish_rt(&s, 2000, 2) == 0);
    uint8_t *b3 = rtv_frameslot_back_rt(&s);
    CHECK(b3 != held);
    fill(b3, 3);
    CHECK(rtv_frameslot_publish_rt(&s, 3000, 3) == 1);
    CHECK(rtv_frameslot_take_rt(&s, &f) == 1 && f.seq == 3 && intact(&f));
    CHECK(f.w == W && f.h == H && f.stride == W * 3);
    rtv_frameslot_free(&s);
    rtv_frameslot_free(&s);
}

static rtv_frameslot S;
static atomic_int done;
static atomic_uint_fast64_t reader_fresh; /* how far the reader got: the writer runs until it has
                                             seen enough fresh frames (or 3 s pass) */
static uint64_t n_published;

static void *writer(void *arg)
{
    (void)arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t seq = 1;
    for (;; seq++) {
        fill(rtv_frameslot_back_rt(&S), seq);
        rtv_frameslot_publish_rt(&S, (int64_t)seq * 1000, seq);
        if ((seq & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            double el = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9;
            uint64_t rf = atomic_load_explicit(&reader_fresh, memory_order_relaxed);
            if (el > 3.0 || (seq >= 200000 && rf >= 20000)) break;
        }
    }
    n_published = seq;
    atomic_store_explicit(&done, 1, memory_order_release);
    return NULL;
}

static void test_stress(void)
{
    CHECK(rtv_frameslot_init(&S, W, H) == RTV_OK);
    atomic_store(&done, 0);
    atomic_store(&reader_fresh, 0);
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    uint64_t last = 0, takes = 0, fresh = 0, torn = 0, backwards = 0, stale_fresh = 0;
    rtv_frame f;
    while (!atomic_load_explicit(&done, memory_order_acquire)) {
        int r = rtv_frameslot_take_rt(&S, &f);
        if (r < 0) continue;
        takes++;
        if (!intact(&f)) torn++;
        if (f.seq < last) backwards++;
        if (r == 1) {
            fresh++;
            atomic_store_explicit(&reader_fresh, fresh, memory_order_relaxed);
            if (f.seq <= last) stale_fresh++;
        }
        last = f.seq;
        /* On a contended CI core, hand the CPU over now and then so the two threads interleave
         * more often than once per scheduler tick. */
        if (r == 0 && (takes & 63) == 0) sched_yield();
    }
    pthread_join(t, NULL);
    /* After the writer is done, the newest publish must be reachable. */
    int r = rtv_frameslot_take_rt(&S, &f);
    CHECK(r >= 0 && f.seq == n_published && intact(&f));
    printf("slot stress: %llu published, %llu takes (%llu fresh); torn %llu, backwards %llu\n",
           (unsigned long long)n_published, (unsigned long long)takes, (unsigned long long)fresh,
           (unsigned long long)torn, (unsigned long long)backwards);
    CHECK(n_published > 1000);
    CHECK(fresh > 100);
    CHECK(torn == 0);
    CHECK(backwards == 0);
    CHECK(stale_fresh == 0);
    rtv_frameslot_free(&S);
}

int main(int argc, char **argv)
{
    test_semantics();
    test_stress();
    return check_report(argv[0]);
}
