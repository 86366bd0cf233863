/* tests/runtime/alloc_count.c — test-only malloc interposer: counts allocator calls made on
 * threads flagged real-time (rtv_rt_thread_mark) into rtv_rt_alloc_note().
 *
 * Linked into a test executable, these definitions take precedence over libc's for every
 * caller in the process (the executable comes first in symbol lookup), libc's own internal
 * calls included (stdio buffers, strdup, ...). They forward to glibc's __libc_* entry points.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/rt.h"

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

void *malloc(size_t n);
void *calloc(size_t n, size_t m);
void *realloc(void *p, size_t n);
void free(void *p);
void *memalign(size_t align, size_t n);
void *aligned_alloc(size_t align, size_t n);
int posix_memalign(void **out, size_t align, size_t n);

static inline void note(void)
{
    if (rtv_rt_thread_is_marked()) rtv_rt_alloc_note();
}

__attribute__((constructor)) static void alloc_count_on(void) { rtv_rt_alloc_set_counting(1); }

void *malloc(size_t n)
{
    note();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    note();
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    note();
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (p) note();
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    note();
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    note();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    note();
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
