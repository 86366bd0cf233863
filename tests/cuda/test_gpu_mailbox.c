/* tests/cuda/test_gpu_mailbox.c — the feature mailbox with payloads in backend memory.
 *
 * As in the runtime: the writer (VL) thread fills a slot with device work on its own stream,
 * waits for that work (sync), then publishes; the reader (action) thread takes the newest slot
 * and reads it on its own stream. Each fill is long on purpose (the pattern is built by many
 * kernels over a 4 Mi-element buffer) so that a publish before the GPU work completed, or a
 * slot rewritten while the reader holds it, shows as a torn payload.
 *
 * Payload of encode k: x[i] = (k mod 16) + (i mod 7) / 8, built as upload((i mod 7) / 8) then
 * 16 axpy passes that each add (k mod 16) / 16: every partial sum is a multiple of 1/16 below
 * 16, exact in bf16 (8 significant bits) and fp32. The reader checks every element of every
 * taken slot against the seq in the slot's metadata, plus a checksum over the whole buffer.
 *
 * argv[1]: backend ("cpu" in CI, "cuda" on a GPU machine; exits 77 when it is missing).
 * RTV_PUBLISH_N: publishes (default 400; scripts/sanitize.sh runs fewer, each fill being
 * 10-20x slower under the sanitizers). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/backend.h"
#include "runtime/mailbox.h"
#include "runtime/rt.h"
#include "runtime/status.h"

#define N_ELEM (1u << 22)
#define STEPS 16

static const rtv_backend *B;
static rtv_mailbox mb;
static void *slots[3];   /* backend buffers */
static void *ones;       /* backend buffer of 1.0 */
static float *base;      /* host: (i mod 7) / 8 */
static _Atomic int writer_done;
static uint64_t n_publish = 400;

static float expect(uint64_t seq, size_t i) { return (float)(seq % 16) + (float)(i % 7) / 8.0f; }

static void *writer(void *arg)
{
    (void)arg;
    rtv_stream *s = NULL;
    if (B->stream_new(&s)) {
        fprintf(stderr, "writer stream: %s\n", rtv_last_error());
        atomic_store(&writer_done, -1);
        return NULL;
    }
    for (uint64_t k = 1; k <= n_publish; k++) {
        rtv_mailbox_slot *sl = rtv_mailbox_write_slot(&mb);
        void *x = sl->payload;
        int st = B->upload(s, x, base, N_ELEM);
        for (int j = 0; !st && j < STEPS; j++)
            st = B->axpy(s, x, ones, (float)(k % 16) / STEPS, N_ELEM);
        if (!st) st = B->sync(s); /* the publish comes after the GPU work is complete */
        if (st) {
            fprintf(stderr, "writer: %s\n", rtv_last_error());
            atomic_store(&writer_done, -1);
            break;
        }
        rtv_mailbox_publish(&mb, rtv_clock_now_ns(), rtv_clock_now_ns());
    }
    B->stream_free(s);
    if (atomic_load(&writer_done) == 0) atomic_store(&writer_done, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "cpu";
    if (rtv_backend_by_name(name, &B) || !B) {
        printf("backend %s not available: skipped\n", name);
        return 77;
    }
    const char *np = getenv("RTV_PUBLISH_N");
    if (np) {
        char *end;
        const long v = strtol(np, &end, 10);
        if (*end || v < 20 || v > 1000000) {
            fprintf(stderr, "RTV_PUBLISH_N=%s: expected a count 20..1000000\n", np);
            return 2;
        }
        n_publish = (uint64_t)v;
    }
    base = malloc(N_ELEM * sizeof(float));
    float *one_h = malloc(N_ELEM * sizeof(float));
    float *got = malloc(N_ELEM * sizeof(float));
    for (size_t i = 0; i < N_ELEM; i++) {
        base[i] = (float)(i % 7) / 8.0f;
        one_h[i] = 1.0f;
    }
    rtv_stream *rs = NULL;
    CHECK(B->stream_new(&rs) == 0);
    for (int i = 0; i < 3; i++) CHECK(B->alloc(&slots[i], (size_t)N_ELEM * B->act_bytes) == 0);
    CHECK(B->alloc(&ones, (size_t)N_ELEM * B->act_bytes) == 0);
    CHECK(B->upload(rs, ones, one_h, N_ELEM) == 0 && B->sync(rs) == 0);
    rtv_mailbox_cfg cfg = { .max_reuse = 1000000, .max_age_ns = 0, .policy = RTV_STALE_CONTINUE,
                            .every_n_cycles = 0 };
    CHECK(rtv_mailbox_init(&mb, slots, &cfg) == 0);

    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer, NULL) == 0);
    uint64_t takes = 0, fresh = 0, bad = 0, last_seq = 0, out_of_order = 0;
    while (1) {
        int done = atomic_load(&writer_done);
        rtv_mb_take t;
        rtv_mailbox_take_rt(&mb, rtv_clock_now_ns(), &t);
        if (t.verdict == RTV_MB_USE && t.fresh) {
            uint64_t seq = t.slot->seq;
            if (seq < last_seq) out_of_order++;
            last_seq = seq;
            CHECK(B->download(rs, got, t.slot->payload, N_ELEM) == 0 && B->sync(rs) == 0);
            double sum = 0, want = 0;
            size_t first_bad = (size_t)-1;
            for (size_t i = 0; i < N_ELEM; i++) {
                float e = expect(seq, i);
                sum += got[i];
                want += e;
                if (got[i] != e && first_bad == (size_t)-1) first_bad = i;
            }
            if (first_bad != (size_t)-1 || sum != want) {
                if (bad++ < 5)
                    fprintf(stderr, "seq %llu: element %zu is %g, expected %g; checksum %.1f vs "
                            "%.1f\n", (unsigned long long)seq, first_bad,
                            first_bad == (size_t)-1 ? 0.0 : got[first_bad],
                            first_bad == (size_t)-1 ? 0.0 : expect(seq, first_bad), sum, want);
            }
            fresh++;
        }
        takes++;
        if (done) {
            if (done < 0) break;
            /* the final publish is visible now */
            rtv_mailbox_take_rt(&mb, rtv_clock_now_ns(), &t);
            if (t.slot) last_seq = t.slot->seq;
            break;
        }
    }
    pthread_join(th, NULL);
    printf("backend %s: %d publishes of %u elements, %llu slots taken and verified, "
           "%llu torn, %llu out of order, last seq %llu\n", name, (int)n_publish, N_ELEM,
           (unsigned long long)fresh, (unsigned long long)bad,
           (unsigned long long)out_of_order, (unsigned long long)last_seq);
    CHECK(atomic_load(&writer_done) == 1);
    CHECK_MSG(bad == 0, "%llu torn payloads", (unsigned long long)bad);
    CHECK(out_of_order == 0);
    CHECK_MSG(fresh >= 10, "only %llu slots taken: the test exercised too little",
              (unsigned long long)fresh);
    CHECK(last_seq == n_publish);
    for (int i = 0; i < 3; i++) B->free(slots[i]);
    B->free(ones);
    B->stream_free(rs);
    free(base);
    free(one_h);
    free(got);
    return check_report(argv[0]);
}
