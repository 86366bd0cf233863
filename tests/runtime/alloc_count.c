/* tests/runtime/alloc_count.c — test-only malloc interposer: counts allocator calls made on
 * threads flagged real-time (rtv_rt_thread_mark) into rtv_rt_alloc_note().
 *
 * Linked into a test executable, these definitions take precedence over libc's for every
 * caller in the process (the executable comes first in symbol lookup), libc's own internal
 * calls included (stdio buffers, strdup, ...). They forward to glibc's __libc_* entry points.
 *
 * Under AddressSanitizer or ThreadSanitizer (-Db_sanitize=...) the sanitizer owns the allocator
 * and its interceptors allocate behind our back (strdup, ...), so replacing malloc would mix two
 * heaps; there the counter is fed by the sanitizer's own malloc and free hooks instead.
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

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* exported by libasan and libtsan (sanitizer_common), not declared in GCC 12's headers */
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *));

static void malloc_hook(const volatile void *p, size_t n) { note(); }
static void free_hook(const volatile void *p) { note(); }

__attribute__((constructor)) static void alloc_count_on(void)
{
    if (__sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook))
        rtv_rt_alloc_set_counting(1);
}
#else
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
#endif
