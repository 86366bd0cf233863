/* runtime/telemetry.h — per-thread timing records, written to the run folder by a logger thread.
 *
 * Each producing thread owns one rtv_tel_ring (single producer, single consumer: the logger).
 * rtv_tel_push_rt() copies one fixed-size record into it: two atomic ops, no syscall, no lock,
 * no allocation; when the ring is full the record is dropped and counted. The logger thread
 * (SCHED_OTHER) drains every ring each 10 ms and appends the records to
 * <run_dir>/telemetry.bin with io_uring writes (pwrite when io_uring is refused). At close the
 * file header (thread and stage names, record and drop counts) is written at offset 0.
 *
 * telemetry.bin: an 8 KiB header (rtv_tel_header, little-endian, fixed layout) then
 * rtv_tel_rec records (48 bytes each) in drain order (per thread in push order).
 *
 * rtv_tel_file_read() loads a file back; rtv_tel_summarize() writes summary.json and
 * summary.txt (per stage: count, duration p50/p95/p99/max, flag counts, value percentiles and
 * integer histograms); rtv_tel_trace_write() writes a Chrome-trace JSON (one track per thread).
 *
 * Threads: open/add_thread/start/close: init-time (one control thread). push_rt: the ring's
 * own thread only. The reading functions: any non-real-time thread.
 */
#ifndef RTV_TELEMETRY_H
#define RTV_TELEMETRY_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define RTV_TEL_MAX_THREADS 8
#define RTV_TEL_MAX_STAGES 32
#define RTV_TEL_NV 4
#define RTV_TEL_NAME 32
#define RTV_TEL_HEADER_BYTES 8192

/* Record flags */
enum {
    RTV_TEL_F_MISS = 1u << 0,   /* deadline missed (woke after a skipped period, or ran over) */
    RTV_TEL_F_STALE = 1u << 1,  /* used stale features (stale_policy continue) */
    RTV_TEL_F_HOLD = 1u << 2,   /* held position this cycle */
    RTV_TEL_F_FAULT = 1u << 3,  /* a device or compute error this cycle */
    RTV_TEL_F_FRESH = 1u << 4,  /* fresh input this cycle (new encoding / new chunk) */
};
#define RTV_TEL_N_FLAGS 5

/* One record; also the on-disk layout. */
typedef struct rtv_tel_rec {
    int64_t t_start_ns, t_end_ns; /* CLOCK_MONOTONIC */
    uint64_t seq;                 /* per-ring push counter, drops included (gaps = drops) */
    uint16_t thread, stage;       /* indices into the header's tables */
    uint32_t flags;               /* RTV_TEL_F_* */
    float v[RTV_TEL_NV];          /* stage-defined values (see the stage's v_names) */
} rtv_tel_rec;
_Static_assert(sizeof(rtv_tel_rec) == 48, "telemetry record layout is part of the file format");

/* A stage: what a record with this stage id measures. v_names[i] "" = unused; hist_mask bit i
 * set = value i is a small non-negative integer summarized as a histogram. */
typedef struct rtv_tel_stage {
    char name[RTV_TEL_NAME];
    char v_names[RTV_TEL_NV][24];
    uint32_t hist_mask;
    uint32_t pad;
} rtv_tel_stage;

typedef struct rtv_tel_header {
    char magic[8];                /* "RTVTEL01" */
    uint32_t version;             /* 1 */
    uint32_t header_bytes;        /* RTV_TEL_HEADER_BYTES */
    uint32_t rec_bytes;           /* sizeof(rtv_tel_rec) */
    uint32_t n_threads, n_stages;
    uint32_t writer;              /* 1 = io_uring, 2 = pwrite */
    uint64_t n_records;           /* records in the file */
    uint64_t n_dropped;           /* records dropped because a ring was full */
    int64_t t0_ns;                /* CLOCK_MONOTONIC at open */
    int64_t t0_wall_ns;           /* CLOCK_REALTIME at open */
    char thread_names[RTV_TEL_MAX_THREADS][RTV_TEL_NAME];
    rtv_tel_stage stages[RTV_TEL_MAX_STAGES];
} rtv_tel_header;
_Static_assert(sizeof(rtv_tel_header) <= RTV_TEL_HEADER_BYTES, "header fits its reserved space");

typedef struct rtv_tel_ring {
    _Alignas(64) _Atomic uint64_t head; /* w:producer (release) r:logger (acquire) */
    _Alignas(64) _Atomic uint64_t tail; /* w:logger (release) r:producer (acquire) */
    _Alignas(64) _Atomic uint64_t dropped; /* w:producer (relaxed) r:logger */
    uint64_t seq;                       /* producer-private */
    uint64_t mask;                      /* capacity - 1 */
    uint16_t thread;
    rtv_tel_rec *buf;                   /* (capacity) records */
} rtv_tel_ring;

typedef struct rtv_telemetry rtv_telemetry;

/* Creates <run_dir>/telemetry.bin (run_dir must exist) for the given stages; each ring holds
 * ring_capacity records (rounded up to a power of two). */
int rtv_telemetry_open(rtv_telemetry **out, const char *run_dir, const rtv_tel_stage *stages,
                       int n_stages, int ring_capacity);
/* Registers a producing thread (before start); its ring is returned. */
int rtv_telemetry_add_thread(rtv_telemetry *t, const char *name, rtv_tel_ring **ring);
/* Starts the logger thread. force_pwrite: skip io_uring (tests of the fallback). */
int rtv_telemetry_start(rtv_telemetry *t, int force_pwrite);
/* Live totals (any thread): records pushed so far and dropped so far, over all rings. */
void rtv_telemetry_counts(rtv_telemetry *t, uint64_t *pushed, uint64_t *dropped);
/* "io_uring" or "pwrite" once started. */
const char *rtv_telemetry_writer(const rtv_telemetry *t);
/* Stops the logger after a final drain, writes the header, closes the file, frees. The producers
 * must have stopped pushing. Totals out (either may be NULL). NULL t is fine. */
int rtv_telemetry_close(rtv_telemetry *t, uint64_t *n_records, uint64_t *n_dropped);

static inline void rtv_tel_push_rt(rtv_tel_ring *r, int stage, int64_t t_start_ns,
                                   int64_t t_end_ns, uint32_t flags, float v0, float v1,
                                   float v2, float v3)
{
    uint64_t seq = r->seq++;
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head - atomic_load_explicit(&r->tail, memory_order_acquire) > r->mask) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return;
    }
    rtv_tel_rec *e = &r->buf[head & r->mask];
    e->t_start_ns = t_start_ns;
    e->t_end_ns = t_end_ns;
    e->seq = seq;
    e->thread = r->thread;
    e->stage = (uint16_t)stage;
    e->flags = flags;
    e->v[0] = v0, e->v[1] = v1, e->v[2] = v2, e->v[3] = v3;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

/* ---- reading a run back ---- */
typedef struct rtv_tel_file {
    rtv_tel_header h;
    rtv_tel_rec *recs;            /* (h.n_records) */
} rtv_tel_file;

/* Reads <run_dir>/telemetry.bin; errors name the file and what is wrong (magic, sizes,
 * truncation, indices out of range). */
int rtv_tel_file_read(rtv_tel_file *f, const char *run_dir);
void rtv_tel_file_free(rtv_tel_file *f);

/* Writes <run_dir>/summary.json and summary.txt from f. extra_json: NULL or a JSON object text
 * whose members are copied into summary.json's "run" member and listed at the top of the
 * text. If txt_out is not NULL the text summary is also written there. */
int rtv_tel_summarize(const rtv_tel_file *f, const char *run_dir, const char *extra_json,
                      FILE *txt_out);
/* Per stage duration percentiles (ms) as the summary computes them; -1 for an empty stage. */
int rtv_tel_stage_stats(const rtv_tel_file *f, int stage, uint64_t *count, double *p50_ms,
                        double *p99_ms, double *max_ms);
/* Writes a Chrome-trace JSON (Perfetto opens it) to out_path. */
int rtv_tel_trace_write(const rtv_tel_file *f, const char *out_path);

#endif
