/* runtime/mailbox.h — wait-free "latest value" handoff between two threads.
 *
 * rtv_tribuf is the bare triple buffer (shared/specs/gpu_rt.md 4.2): three slot indices, one
 * shared `back` index with a dirty bit on its own cache line, one writer and one reader. The
 * writer fills slot rtv_tribuf_write_idx() and publishes it with one atomic exchange (acq_rel);
 * the reader, when the dirty bit is set, swaps its slot for the newest one with one exchange
 * (acq_rel) and otherwise keeps its slot. The slot a side holds is never touched by the other.
 * Neither side waits, locks, allocates or makes a syscall. Used for the feature mailbox (VL ->
 * action), the chunk handoff (action -> control) and the robot state cell (control -> action).
 *
 * rtv_mailbox is the feature mailbox on top of it: three payload slots (rtv_features* in the
 * runtime, anything in tests) with host metadata, the reuse count of the encoding the reader
 * holds, the staleness decision (max_reuse / max_age_ms -> stale_policy), and optional pacing
 * (the VL thread encodes only every N action cycles: the action thread bumps a "want" counter
 * and wakes the VL thread with a futex; the VL side blocks, the action side never does).
 *
 * Threads: *_init/_free: init-time. write_slot/publish/wait_want: writer (VL) only.
 * take_rt/tick_rt: reader (action) only. close: any thread (wakes a waiting writer).
 */
#ifndef RTV_MAILBOX_H
#define RTV_MAILBOX_H

#include <stdatomic.h>
#include <stdint.h>

#include "runtime/config.h"

#define RTV_TRIBUF_DIRTY 4u

typedef struct rtv_tribuf {
    _Alignas(64) _Atomic uint32_t back; /* w:both; slot index | DIRTY; exchange acq_rel only */
    _Alignas(64) uint32_t wr;           /* writer-private slot index */
    _Alignas(64) uint32_t rd;           /* reader-private slot index */
} rtv_tribuf;

void rtv_tribuf_init(rtv_tribuf *t);                    /* wr 0, back 1, rd 2; nothing dirty */
static inline uint32_t rtv_tribuf_write_idx(const rtv_tribuf *t) { return t->wr; }
/* Writer: makes slot wr the newest; the writer gets another free slot in wr. */
void rtv_tribuf_publish(rtv_tribuf *t);
/* Reader: if something newer was published since the last take, moves it into rd and returns
 * 1; else returns 0 and rd is unchanged. Either way the reader then reads slot rd. */
int rtv_tribuf_take_rt(rtv_tribuf *t);
static inline uint32_t rtv_tribuf_read_idx(const rtv_tribuf *t) { return t->rd; }

/* ---- feature mailbox ---- */

/* Host metadata of one slot; w:vl before publish, r:act after take (ordered by the exchange). */
typedef struct rtv_mailbox_slot {
    void *payload;          /* rtv_features* (runtime) or a test payload; set at init */
    uint64_t seq;           /* encode sequence number, 1, 2, ... (0 = never written) */
    int64_t t_capture_ns;   /* oldest capture time among the views encoded */
    int64_t t_ready_ns;     /* when the encoding was complete (publish time) */
} rtv_mailbox_slot;

typedef enum rtv_mb_verdict {
    RTV_MB_EMPTY = 0,       /* nothing published yet: hold */
    RTV_MB_USE,             /* use the slot (fresh, reused within bounds, or stale + continue) */
    RTV_MB_HOLD,            /* stale and stale_policy == hold: hold position, do not use */
    RTV_MB_STOP,            /* stale and stale_policy == stop: safe stop */
} rtv_mb_verdict;

/* What one take decided; filled by rtv_mailbox_take_rt. */
typedef struct rtv_mb_take {
    rtv_mb_verdict verdict;
    rtv_mailbox_slot *slot; /* the slot the reader holds (NULL when EMPTY) */
    int fresh;              /* the slot was newly taken this call */
    int stale;              /* past max_reuse or max_age_ms */
    uint32_t uses;          /* cycles this encoding has served, this one included (USE) */
    int64_t age_ns;         /* now - t_capture_ns of the held encoding */
} rtv_mb_take;

typedef struct rtv_mailbox_cfg {
    int max_reuse;          /* cycles one encoding may serve; the next one is stale (>= 1) */
    int64_t max_age_ns;     /* capture-to-use age past which it is stale (0 = no limit) */
    rtv_stale_policy policy;
    int every_n_cycles;     /* pacing: 0 = VL runs back to back; N: one want per N ticks */
} rtv_mailbox_cfg;

#define RTV_MB_HIST 32      /* uses histogram buckets: 1..31, and 32 for >= 32 */

typedef struct rtv_mailbox {
    rtv_tribuf tb;
    rtv_mailbox_slot slot[3];
    rtv_mailbox_cfg cfg;
    /* reader-private (action thread) */
    uint32_t uses;              /* uses of the held encoding */
    uint64_t ticks;             /* tick_rt calls */
    uint64_t n_fresh, n_reused, n_stale, n_hold, n_stop; /* verdict counts */
    uint64_t n_skipped;         /* encodings published but replaced before the reader took them */
    uint64_t last_seq;          /* seq of the held encoding */
    uint64_t uses_hist[RTV_MB_HIST + 1]; /* [k] = taken encodings that served k cycles */
    /* pacing: w:act (increment, release) r:vl (acquire); futex word is `want` itself */
    _Alignas(64) _Atomic uint32_t want;
    _Atomic uint32_t vl_waiting;   /* w:vl r:act; 1 while the VL thread sleeps on `want` */
    _Atomic int closed;
    uint32_t want_seen;            /* vl-private: wants consumed */
    uint64_t published;            /* vl-private: publishes done */
} rtv_mailbox;

/* payload[3]: the three slot payloads (owned by the caller). RTV_E_ARG on bad cfg. */
int rtv_mailbox_init(rtv_mailbox *mb, void *const payload[3], const rtv_mailbox_cfg *cfg);
/* VL: the slot to fill next (its payload is not seen by the reader until publish). */
rtv_mailbox_slot *rtv_mailbox_write_slot(rtv_mailbox *mb);
/* VL: sets seq (1, 2, ...), t_capture_ns and t_ready_ns = now_ns on the write slot, then
 * publishes it. For GPU payloads the caller has waited for the encode to finish. */
void rtv_mailbox_publish(rtv_mailbox *mb, int64_t t_capture_ns, int64_t now_ns);
/* Action, once per cycle: takes the newest encoding if there is one, counts the use, decides. */
void rtv_mailbox_take_rt(rtv_mailbox *mb, int64_t now_ns, rtv_mb_take *out);
/* Action, once per cycle: advances pacing; every N-th tick posts a want and, if the VL thread
 * sleeps, wakes it (FUTEX_WAKE, never blocks). No-op when pacing is off. */
void rtv_mailbox_tick_rt(rtv_mailbox *mb);
/* VL: with pacing, blocks until a want is posted (or close, or timeout_ms; -1 = no timeout).
 * Returns 1 when the VL thread should encode, 0 on close, -1 on timeout. Without pacing
 * returns 1 at once (0 after close). */
int rtv_mailbox_wait_want(rtv_mailbox *mb, int timeout_ms);
/* Wakes the writer for shutdown; later wait_want calls return 0. */
void rtv_mailbox_close(rtv_mailbox *mb);
/* Reader-side: records the held encoding's uses into the histogram (call at end of run). */
void rtv_mailbox_finish(rtv_mailbox *mb);

#endif
