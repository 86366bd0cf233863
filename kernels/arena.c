/* kernels/arena.c — one backend allocation carved into 256-byte-aligned views.
 *
 * rtv_arena_init makes the allocation (host or device memory, whatever the backend's alloc
 * gives); rtv_arena_take bumps an offset; there is no per-view free, only rtv_arena_free. */
#include <string.h>

#include "kernels/backend.h"
#include "runtime/status.h"

#define ARENA_ALIGN 256u

int rtv_arena_init(rtv_arena *a, const rtv_backend *b, size_t bytes)
{
    if (!a || !b) return rtv_fail(RTV_E_ARG, "arena: NULL %s", a ? "backend" : "arena");
    memset(a, 0, sizeof(*a));
    void *p = NULL;
    int st = b->alloc(&p, bytes);
    if (st) return rtv_fail_prefix(st, "arena of %zu bytes on %s", bytes, b->name);
    a->b = b;
    a->base = p;
    a->size = bytes;
    return RTV_OK;
}

void *rtv_arena_take(rtv_arena *a, size_t bytes)
{
    if (!a || !a->base) {
        rtv_fail(RTV_E_ARG, "arena: take of %zu bytes from an arena that is not initialised",
                 bytes);
        return NULL;
    }
    size_t off = (a->used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (off > a->size || bytes > a->size - off) {
        size_t left = off < a->size ? a->size - off : 0;
        rtv_fail(RTV_E_NOMEM, "arena (%s, %zu bytes): requested %zu bytes, %zu left "
                 "(%zu used)", a->b->name, a->size, bytes, left, a->used);
        return NULL;
    }
    a->used = off + bytes;
    return a->base + off;
}

void rtv_arena_free(rtv_arena *a)
{
    if (!a) return;
    if (a->base && a->b) a->b->free(a->base);
    memset(a, 0, sizeof(*a));
}
