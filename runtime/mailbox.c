#include "runtime/mailbox.h"

#include <errno.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/status.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the triple buffer needs lock-free 32-bit atomics");

/* ---- triple buffer ---- */

void rtv_tribuf_init(rtv_tribuf *t)
{
    t->wr = 0;
    atomic_init(&t->back, 1u);
    t->rd = 2;
}

void rtv_tribuf_publish(rtv_tribuf *t)
{
    /* release: our writes into slot wr happen-before the reader's acquire of it;
     * acquire: the reader's last reads of the slot we get back happen-before our next writes. */
    uint32_t old = atomic_exchange_explicit(&t->back, t->wr | RTV_TRIBUF_DIRTY,
                                            memory_order_acq_rel);
    t->wr = old & 3u;
}

int rtv_tribuf_take_rt(rtv_tribuf *t)
{
    if (!(atomic_load_explicit(&t->back, memory_order_relaxed) & RTV_TRIBUF_DIRTY)) return 0;
    uint32_t old = atomic_exchange_explicit(&t->back, t->rd, memory_order_acq_rel);
    t->rd = old & 3u;
    return 1;
}

/* ---- feature mailbox ---- */

int rtv_mailbox_init(rtv_mailbox *mb, void *const payload[3], const rtv_mailbox_cfg *cfg)
{
    memset(mb, 0, sizeof(*mb));
    if (cfg->max_reuse < 1)
        return rtv_fail(RTV_E_ARG, "mailbox: max_reuse must be >= 1, got %d", cfg->max_reuse);
    if (cfg->max_age_ns < 0 || cfg->every_n_cycles < 0)
        return rtv_fail(RTV_E_ARG, "mailbox: max_age (%lld ns) and every_n_cycles (%d) must be >= 0",
                        (long long)cfg->max_age_ns, cfg->every_n_cycles);
    rtv_tribuf_init(&mb->tb);
    for (int i = 0; i < 3; i++) mb->slot[i].payload = payload[i];
    mb->cfg = *cfg;
    atomic_init(&mb->want, 0u);
    atomic_init(&mb->vl_waiting, 0u);
    atomic_init(&mb->closed, 0);
    return RTV_OK;
}

rtv_mailbox_slot *rtv_mailbox_write_slot(rtv_mailbox *mb)
{
    return &mb->slot[rtv_tribuf_write_idx(&mb->tb)];
}

void rtv_mailbox_publish(rtv_mailbox *mb, int64_t t_capture_ns, int64_t now_ns)
{
    rtv_mailbox_slot *s = rtv_mailbox_write_slot(mb);
    s->seq = ++mb->published;
    s->t_capture_ns = t_capture_ns;
    s->t_ready_ns = now_ns;
    rtv_tribuf_publish(&mb->tb);
}

static void hist_add(rtv_mailbox *mb, uint32_t uses)
{
    mb->uses_hist[uses < RTV_MB_HIST ? uses : RTV_MB_HIST]++;
}

void rtv_mailbox_take_rt(rtv_mailbox *mb, int64_t now_ns, rtv_mb_take *out)
{
    memset(out, 0, sizeof(*out));
    if (rtv_tribuf_take_rt(&mb->tb)) {
        rtv_mailbox_slot *s = &mb->slot[rtv_tribuf_read_idx(&mb->tb)];
        if (mb->last_seq) hist_add(mb, mb->uses);
        if (s->seq > mb->last_seq + 1) mb->n_skipped += s->seq - mb->last_seq - 1;
        mb->last_seq = s->seq;
        mb->uses = 0;
        out->fresh = 1;
    }
    if (!mb->last_seq) {
        out->verdict = RTV_MB_EMPTY;
        return;
    }
    rtv_mailbox_slot *s = &mb->slot[rtv_tribuf_read_idx(&mb->tb)];
    out->slot = s;
    out->age_ns = now_ns - s->t_capture_ns;
    uint32_t uses = mb->uses + 1;
    out->stale = (int)uses > mb->cfg.max_reuse ||
                 (mb->cfg.max_age_ns > 0 && out->age_ns > mb->cfg.max_age_ns);
    if (out->stale && mb->cfg.policy != RTV_STALE_CONTINUE) {
        out->verdict = mb->cfg.policy == RTV_STALE_HOLD ? RTV_MB_HOLD : RTV_MB_STOP;
        if (out->verdict == RTV_MB_HOLD) mb->n_hold++;
        else mb->n_stop++;
        out->uses = mb->uses;
        return;
    }
    mb->uses = uses;
    out->uses = uses;
    out->verdict = RTV_MB_USE;
    if (out->stale) mb->n_stale++;
    if (out->fresh) mb->n_fresh++;
    else mb->n_reused++;
}

void rtv_mailbox_finish(rtv_mailbox *mb)
{
    if (mb->last_seq) hist_add(mb, mb->uses);
    mb->last_seq = 0;
    mb->uses = 0;
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

void rtv_mailbox_tick_rt(rtv_mailbox *mb)
{
    if (mb->cfg.every_n_cycles <= 0) return;
    if (mb->ticks++ % (uint64_t)mb->cfg.every_n_cycles) return;
    atomic_fetch_add_explicit(&mb->want, 1u, memory_order_seq_cst);
    /* seq_cst pairs with the VL side's store of vl_waiting before it re-reads `want`:
     * either it sees the new want, or we see it waiting and wake it. */
    if (atomic_load_explicit(&mb->vl_waiting, memory_order_seq_cst))
        futex(&mb->want, FUTEX_WAKE, 1, NULL);
}

int rtv_mailbox_wait_want(rtv_mailbox *mb, int timeout_ms)
{
    if (atomic_load(&mb->closed)) return 0;
    if (mb->cfg.every_n_cycles <= 0) return 1;
    int64_t deadline = 0;
    if (timeout_ms >= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)timeout_ms * 1000000;
    }
    for (;;) {
        if (atomic_load(&mb->closed)) return 0;
        uint32_t w = atomic_load_explicit(&mb->want, memory_order_acquire);
        if (w != mb->want_seen) {
            /* Several wants posted while we encoded collapse into one encode. */
            mb->want_seen = w;
            return 1;
        }
        atomic_store_explicit(&mb->vl_waiting, 1u, memory_order_seq_cst);
        if (atomic_load_explicit(&mb->want, memory_order_seq_cst) != w ||
            atomic_load(&mb->closed)) {
            atomic_store(&mb->vl_waiting, 0u);
            continue;
        }
        struct timespec rel, *relp = NULL;
        if (timeout_ms >= 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t left = deadline - ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
            if (left <= 0) {
                atomic_store(&mb->vl_waiting, 0u);
                return -1;
            }
            rel.tv_sec = left / 1000000000;
            rel.tv_nsec = left % 1000000000;
            relp = &rel;
        }
        futex(&mb->want, FUTEX_WAIT, w, relp); /* returns at once if want != w */
        atomic_store(&mb->vl_waiting, 0u);
    }
}

void rtv_mailbox_close(rtv_mailbox *mb)
{
    atomic_store(&mb->closed, 1);
    atomic_fetch_add(&mb->want, 1u);
    futex(&mb->want, FUTEX_WAKE, 1, NULL);
}
