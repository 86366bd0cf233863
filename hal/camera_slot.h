/* hal/camera_slot.h — the newest-frame triple buffer between a capture thread and a reader.
 *
 * Three frame buffers: the writer fills its private back buffer, then publishes it with one
 * atomic exchange against the shared "latest" index (release: pixels and metadata before the
 * index); the reader, when the fresh bit is set, exchanges its own front buffer for "latest"
 * (acquire) and reads front until its next take. The three indices are always a permutation
 * of {0, 1, 2}, so the buffer the reader holds is never written. Neither side waits, locks or
 * allocates. One writer thread and one reader thread per slot.
 */
#ifndef RTV_CAMERA_SLOT_H
#define RTV_CAMERA_SLOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "vision/image.h"

typedef struct rtv_frameslot {
    uint8_t *pixels;                 /* 3 buffers of h * stride bytes, one allocation */
    int w, h, stride;                /* px, px, bytes per row (w * 3) */
    struct {
        int64_t t_capture_ns;        /* CLOCK_MONOTONIC */
        uint64_t seq;
    } meta[3];                       /* meta[i] belongs to whoever holds buffer i */
    _Alignas(64) atomic_uint latest; /* w:both r:both; buffer index | FRESH; acq_rel exchange */
    _Alignas(64) int back;           /* w:writer r:writer; the buffer being filled */
    _Alignas(64) int front;          /* w:reader r:reader; the buffer being read */
    int front_valid;                 /* w:reader r:reader; 0 until the first publish is taken */
} rtv_frameslot;

/* Allocates three w x h RGB24 buffers (zeroed). Errors: bad size, out of memory. */
int rtv_frameslot_init(rtv_frameslot *s, int w, int h);
/* Accepts a zeroed slot. */
void rtv_frameslot_free(rtv_frameslot *s);

/* Writer: the buffer to fill next (h rows of s->stride bytes). */
static inline uint8_t *rtv_frameslot_back_rt(rtv_frameslot *s)
{
    return s->pixels + (size_t)s->back * (size_t)s->h * (size_t)s->stride;
}
/* Writer: publishes the back buffer. Returns 1 if it replaced a frame the reader never took. */
int rtv_frameslot_publish_rt(rtv_frameslot *s, int64_t t_capture_ns, uint64_t seq);
/* Reader: *out = the newest published frame. Returns 1 if it is newer than the previous
 * take's, 0 if it is the same frame again, -1 if nothing was ever published (*out zeroed). */
int rtv_frameslot_take_rt(rtv_frameslot *s, rtv_frame *out);

#endif
