/* hal/camera_slot.c — see camera_slot.h. */
#include "hal/camera_slot.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/status.h"

#define FRESH 4u
#define INDEX 3u

int rtv_frameslot_init(rtv_frameslot *s, int w, int h)
{
    memset(s, 0, sizeof(*s));
    if (w < 1 || h < 1 || w > 16384 || h > 16384)
        return rtv_fail(RTV_E_ARG, "frame slot: size %dx%d, expected 1..16384 px per side", w, h);
    size_t one = (size_t)w * 3 * (size_t)h;
    s->pixels = calloc(3, one);
    if (!s->pixels) return rtv_fail(RTV_E_NOMEM, "frame slot: no memory for 3 x %zu bytes", one);
    s->w = w;
    s->h = h;
    s->stride = w * 3;
    atomic_init(&s->latest, 0u);
    s->back = 1;
    s->front = 2;
    s->front_valid = 0;
    return RTV_OK;
}

void rtv_frameslot_free(rtv_frameslot *s)
{
    if (!s) return;
    free(s->pixels);
    s->pixels = NULL;
}

int rtv_frameslot_publish_rt(rtv_frameslot *s, int64_t t_capture_ns, uint64_t seq)
{
    s->meta[s->back].t_capture_ns = t_capture_ns;
    s->meta[s->back].seq = seq;
    unsigned prev = atomic_exchange_explicit(&s->latest, (unsigned)s->back | FRESH,
                                             memory_order_acq_rel);
    s->back = (int)(prev & INDEX);
    return (prev & FRESH) != 0;
}

int rtv_frameslot_take_rt(rtv_frameslot *s, rtv_frame *out)
{
    int fresh = 0;
    if (atomic_load_explicit(&s->latest, memory_order_relaxed) & FRESH) {
        unsigned prev = atomic_exchange_explicit(&s->latest, (unsigned)s->front,
                                                 memory_order_acq_rel);
        s->front = (int)(prev & INDEX);
        s->front_valid = 1;
        fresh = 1;
    }
    if (!s->front_valid) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    int i = s->front;
    *out = (rtv_frame){
        .rgb = s->pixels + (size_t)i * (size_t)s->h * (size_t)s->stride,
        .w = s->w, .h = s->h, .stride = s->stride,
        .t_capture_ns = s->meta[i].t_capture_ns,
        .seq = s->meta[i].seq,
    };
    return fresh;
}
