/* runtime/safetensors.c — safetensors reader (mmap or io_uring) and writer.
 *
 * Open: pread the 8-byte length and the JSON header, validate every entry (dtype, shape,
 * data_offsets against the data section, no overlaps, no duplicate names), then map the file or
 * read the data section into one page-aligned buffer. All names live in one string arena; a
 * name-sorted index serves rtv_st_find by binary search.
 */
#include "runtime/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/status.h"

#define URING_CHUNK (64u << 20) /* bytes per read request */
#define URING_DEPTH 4           /* requests in flight */

struct rtv_safetensors {
    char *path;
    int n;
    rtv_st_tensor *t;
    int *by_name;         /* indices of t sorted by name */
    char *names;          /* arena of NUL-terminated names */
    void *map;            /* whole file (RTV_ST_MMAP) */
    size_t map_len;
    void *buf;            /* data section copy (read modes) */
    const uint8_t *data;  /* data section */
    uint64_t data_len;
    char io_used[200];
};

/* ---- dtypes: every name the safetensors format defines, with its size in bits ---- */

static const struct {
    const char *name;
    int bits;
    int ok; /* loadable by rtvla */
    rtv_dtype dt;
} st_dtypes[] = {
    {"F32", 32, 1, RTV_DT_F32},  {"BF16", 16, 1, RTV_DT_BF16}, {"F16", 16, 1, RTV_DT_F16},
    {"F64", 64, 0, RTV_DT_F32},  {"I64", 64, 0, RTV_DT_F32},   {"U64", 64, 0, RTV_DT_F32},
    {"I32", 32, 0, RTV_DT_F32},  {"U32", 32, 0, RTV_DT_F32},   {"I16", 16, 0, RTV_DT_F32},
    {"U16", 16, 0, RTV_DT_F32},  {"I8", 8, 0, RTV_DT_F32},     {"U8", 8, 0, RTV_DT_F32},
    {"BOOL", 8, 0, RTV_DT_F32},  {"F8_E5M2", 8, 0, RTV_DT_F32}, {"F8_E4M3", 8, 0, RTV_DT_F32},
    {"F8_E8M0", 8, 0, RTV_DT_F32}, {"C64", 64, 0, RTV_DT_F32}, {"F6_E2M3", 6, 0, RTV_DT_F32},
    {"F6_E3M2", 6, 0, RTV_DT_F32}, {"F4", 4, 0, RTV_DT_F32},
};
#define N_DTYPES ((int)(sizeof(st_dtypes) / sizeof(st_dtypes[0])))

static int dtype_lookup(const char *name)
{
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(st_dtypes[i].name, name)) return i;
    return -1;
}

static const char *st_dtype_name(rtv_dtype dt)
{
    switch (dt) {
    case RTV_DT_F32: return "F32";
    case RTV_DT_BF16: return "BF16";
    case RTV_DT_F16: return "F16";
    }
    return NULL;
}

/* ---- helpers ---- */

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int pread_full(int fd, void *dst, size_t len, uint64_t off, const char *path)
{
    uint8_t *d = dst;
    while (len) {
        ssize_t r = pread(fd, d, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return rtv_fail(RTV_E_OS, "%s: read at offset %llu: %s", path,
                            (unsigned long long)off, strerror(errno));
        }
        if (r == 0)
            return rtv_fail(RTV_E_INPUT, "%s: file ends at offset %llu, expected %zu more bytes",
                            path, (unsigned long long)off, len);
        d += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return RTV_OK;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_name(const void *a, const void *b, void *ctx)
{
    const rtv_st_tensor *t = ctx;
    return strcmp(t[*(const int *)a].name, t[*(const int *)b].name);
}

static int cmp_offset(const void *a, const void *b, void *ctx)
{
    const rtv_st_tensor *t = ctx;
    const rtv_st_tensor *x = &t[*(const int *)a], *y = &t[*(const int *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return 0;
}

/* ---- header validation ---- */

static int parse_entry(rtv_safetensors *st, const cJSON *e, rtv_st_tensor *t)
{
    const char *path = st->path, *name = t->name;
    if (!cJSON_IsObject(e))
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': expected an object with dtype, shape, "
                        "data_offsets", path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd))
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': missing or non-string \"dtype\"", path,
                        name);
    int di = dtype_lookup(jd->valuestring);
    if (di < 0)
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': unknown dtype '%.32s' (safetensors "
                        "dtypes: F32 BF16 F16 F64 I64 U64 I32 U32 I16 U16 I8 U8 BOOL F8_*, ...)",
                        path, name, jd->valuestring);
    t->dtype_name = st_dtypes[di].name;
    t->dtype_ok = st_dtypes[di].ok;
    t->dt = st_dtypes[di].dt;
    if (!cJSON_IsArray(js))
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': missing or non-array \"shape\"", path,
                        name);
    int nd = cJSON_GetArraySize(js);
    if (nd > RTV_ST_MAX_DIMS)
        return rtv_fail(RTV_E_UNSUPPORTED, "%s: tensor '%s': %d dims, at most %d supported",
                        path, name, nd, RTV_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(cJSON_GetArrayItem(js, i), &d))
            return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': shape[%d] is not a non-negative "
                            "integer", path, name, i);
        t->shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(numel, d, &numel)) overflow = 1;
    }
    uint64_t bits, want;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)st_dtypes[di].bits, &bits))
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': shape overflows 64 bits", path, name);
    want = bits / 8;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': \"data_offsets\" must be [begin, end]",
                        path, name);
    uint64_t b, en;
    if (!json_u64(cJSON_GetArrayItem(jo, 0), &b) || !json_u64(cJSON_GetArrayItem(jo, 1), &en))
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': data_offsets are not non-negative "
                        "integers", path, name);
    if (b > en)
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they "
                        "begin", path, name, (unsigned long long)b, (unsigned long long)en);
    if (en > st->data_len)
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] out of range: "
                        "data section is %llu bytes", path, name, (unsigned long long)b,
                        (unsigned long long)en, (unsigned long long)st->data_len);
    if (bits % 8 || en - b != want) {
        char shp[160];
        int k = snprintf(shp, sizeof(shp), "(");
        for (int i = 0; i < nd && k < (int)sizeof(shp) - 24; i++)
            k += snprintf(shp + k, sizeof(shp) - (size_t)k, "%s%lld", i ? ", " : "",
                          (long long)t->shape[i]);
        snprintf(shp + k, sizeof(shp) - (size_t)k, ")");
        return rtv_fail(RTV_E_INPUT, "%s: tensor '%s': shape %s x %s needs %llu%s bytes, "
                        "data_offsets [%llu, %llu] hold %llu", path, name, shp, t->dtype_name,
                        (unsigned long long)want, bits % 8 ? " and a fraction" : "",
                        (unsigned long long)b, (unsigned long long)en,
                        (unsigned long long)(en - b));
    }
    t->offset = b;
    t->nbytes = en - b;
    return RTV_OK;
}

static int parse_header(rtv_safetensors *st, char *json, size_t len)
{
    const char *path = st->path;
    if (len == 0 || json[0] != '{')
        return rtv_fail(RTV_E_INPUT, "%s: header does not start with '{' (not a safetensors "
                        "file?)", path);
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &endp, 0);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t at = ep && ep >= json && ep <= json + len ? (size_t)(ep - json) : 0;
        return rtv_fail(RTV_E_INPUT, "%s: header is not valid JSON (error near byte %zu of "
                        "%zu)", path, at, len);
    }
    /* Only whitespace (the writer's padding) may follow the JSON object. */
    for (const char *p = endp; p && p < json + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return rtv_fail(RTV_E_INPUT, "%s: header has trailing bytes after the JSON object "
                            "(byte %zu)", path, (size_t)(p - json));
        }
    int rc = RTV_OK;
    if (!cJSON_IsObject(root)) {
        rc = rtv_fail(RTV_E_INPUT, "%s: header is not a JSON object", path);
        goto out;
    }
    int n = 0;
    size_t names_len = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                rc = rtv_fail(RTV_E_INPUT, "%s: \"__metadata__\" is not an object", path);
                goto out;
            }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    rc = rtv_fail(RTV_E_INPUT, "%s: \"__metadata__\" value '%s' is not a "
                                  "string", path, m->string);
                    goto out;
                }
            continue;
        }
        n++;
        names_len += strlen(e->string) + 1;
    }
    st->n = n;
    st->t = calloc((size_t)n + 1, sizeof(*st->t));
    st->by_name = calloc((size_t)n + 1, sizeof(*st->by_name));
    st->names = malloc(names_len + 1);
    if (!st->t || !st->by_name || !st->names) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory for %d tensor entries", path, n);
        goto out;
    }
    char *np = st->names;
    int i = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        size_t l = strlen(e->string);
        if (l == 0) {
            rc = rtv_fail(RTV_E_INPUT, "%s: tensor with an empty name", path);
            goto out;
        }
        memcpy(np, e->string, l + 1);
        st->t[i].name = np;
        np += l + 1;
        if ((rc = parse_entry(st, e, &st->t[i]))) goto out;
        st->by_name[i] = i;
        i++;
    }
    qsort_r(st->by_name, (size_t)n, sizeof(int), cmp_name, st->t);
    for (i = 1; i < n; i++)
        if (!strcmp(st->t[st->by_name[i]].name, st->t[st->by_name[i - 1]].name)) {
            rc = rtv_fail(RTV_E_INPUT, "%s: tensor '%s' appears twice in the header", path,
                          st->t[st->by_name[i]].name);
            goto out;
        }
    /* Overlaps: walk tensors by begin offset, remembering the furthest end so far. */
    int *ord = malloc(((size_t)n + 1) * sizeof(*ord));
    if (!ord) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    int m = 0;
    for (i = 0; i < n; i++)
        if (st->t[i].nbytes) ord[m++] = i;
    qsort_r(ord, (size_t)m, sizeof(int), cmp_offset, st->t);
    int far = -1;
    for (i = 0; i < m; i++) {
        const rtv_st_tensor *a = &st->t[ord[i]];
        if (far >= 0 && a->offset < st->t[far].offset + st->t[far].nbytes) {
            const rtv_st_tensor *o = &st->t[far];
            rc = rtv_fail(RTV_E_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap "
                          "tensor '%s' [%llu, %llu]", path, a->name,
                          (unsigned long long)a->offset,
                          (unsigned long long)(a->offset + a->nbytes), o->name,
                          (unsigned long long)o->offset,
                          (unsigned long long)(o->offset + o->nbytes));
            break;
        }
        if (far < 0 || a->offset + a->nbytes > st->t[far].offset + st->t[far].nbytes)
            far = ord[i];
    }
    free(ord);
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- data: io_uring reads of <= 64 MiB chunks, several in flight ---- */

static int read_uring(rtv_safetensors *st, int fd, uint64_t off0, struct io_uring *ring)
{
    struct {
        uint64_t off, left; /* offset within the data section, bytes still to read */
        int busy;
    } slot[URING_DEPTH];
    memset(slot, 0, sizeof(slot));
    uint8_t *base = st->buf;
    uint64_t next = 0, len = st->data_len;
    int inflight = 0, rc = RTV_OK;
    for (;;) {
        for (int s = 0; s < URING_DEPTH && next < len && !rc; s++) {
            if (slot[s].busy) continue;
            uint64_t n = len - next < URING_CHUNK ? len - next : URING_CHUNK;
            slot[s].off = next;
            slot[s].left = n;
            slot[s].busy = 1;
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            io_uring_prep_read(sqe, fd, base + next, (unsigned)n, off0 + next);
            io_uring_sqe_set_data64(sqe, (uint64_t)s);
            next += n;
            inflight++;
        }
        if (!inflight) break;
        int r = io_uring_submit_and_wait(ring, 1);
        if (r < 0 && r != -EINTR) {
            /* Nothing new was queued; what is in flight still completes below. */
            if (!rc) rc = rtv_fail(RTV_E_OS, "%s: io_uring submit: %s", st->path, strerror(-r));
            struct io_uring_cqe *c;
            while (inflight && io_uring_wait_cqe(ring, &c) == 0) {
                io_uring_cqe_seen(ring, c);
                inflight--;
            }
            return rc;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            int s = (int)io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            seen++;
            inflight--;
            if (rc) continue;
            if (res == -EINTR || res == -EAGAIN) {
                res = 0; /* resubmit unchanged */
            } else if (res < 0) {
                rc = rtv_fail(RTV_E_OS, "%s: read at offset %llu: %s", st->path,
                              (unsigned long long)(off0 + slot[s].off), strerror(-res));
                continue;
            } else if (res == 0) {
                rc = rtv_fail(RTV_E_INPUT, "%s: file ends at offset %llu, expected %llu more "
                              "bytes", st->path, (unsigned long long)(off0 + slot[s].off),
                              (unsigned long long)slot[s].left);
                continue;
            }
            slot[s].off += (uint64_t)res;
            slot[s].left -= (uint64_t)res;
            if (slot[s].left) { /* short read: queue the rest */
                struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
                io_uring_prep_read(sqe, fd, base + slot[s].off, (unsigned)slot[s].left,
                                   off0 + slot[s].off);
                io_uring_sqe_set_data64(sqe, (uint64_t)s);
                inflight++;
            } else {
                slot[s].busy = 0;
            }
        }
        io_uring_cq_advance(ring, seen);
        /* On error keep looping without queueing new chunks until every read is back, so no
         * read lands in memory the caller frees. */
    }
    return rc;
}

static int load_data(rtv_safetensors *st, int fd, uint64_t off0, uint64_t fsize, int mode)
{
    if (mode == RTV_ST_MMAP) {
        if (fsize == 0) return RTV_OK;
        st->map = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
        if (st->map == MAP_FAILED) {
            st->map = NULL;
            return rtv_fail(RTV_E_OS, "%s: mmap of %llu bytes: %s", st->path,
                            (unsigned long long)fsize, strerror(errno));
        }
        st->map_len = (size_t)fsize;
        st->data = (const uint8_t *)st->map + off0;
        snprintf(st->io_used, sizeof(st->io_used), "mmap");
        return RTV_OK;
    }
    size_t alloc = ((size_t)st->data_len + 4095) & ~(size_t)4095;
    if (alloc == 0) alloc = 4096;
    if (posix_memalign(&st->buf, 4096, alloc)) {
        st->buf = NULL;
        return rtv_fail(RTV_E_NOMEM, "%s: cannot allocate %llu bytes for the data section",
                        st->path, (unsigned long long)st->data_len);
    }
    st->data = st->buf;
    struct io_uring ring;
    int r = io_uring_queue_init(URING_DEPTH * 2, &ring, 0);
    if (r < 0) {
        static int noted;
        snprintf(st->io_used, sizeof(st->io_used), "pread (io_uring unavailable: %s)",
                 strerror(-r));
        if (!noted) {
            noted = 1;
            fprintf(stderr, "note: %s: io_uring_queue_init failed (%s); reading with pread\n",
                    st->path, strerror(-r));
        }
        return pread_full(fd, st->buf, (size_t)st->data_len, off0, st->path);
    }
    snprintf(st->io_used, sizeof(st->io_used), "io_uring");
    int rc = read_uring(st, fd, off0, &ring);
    io_uring_queue_exit(&ring);
    return rc;
}

/* ---- public reader ---- */

int rtv_st_open(rtv_safetensors **out, const char *path, int mode)
{
    *out = NULL;
    if (mode != RTV_ST_MMAP && mode != RTV_ST_READ_URING)
        return rtv_fail(RTV_E_ARG, "%s: unknown safetensors read mode %d", path, mode);
    rtv_safetensors *st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
    }
    int rc = RTV_OK;
    char *hdr = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = rtv_fail(errno == ENOENT ? RTV_E_INPUT : RTV_E_OS, "%s: cannot open: %s", path,
                      strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb)) {
        rc = rtv_fail(RTV_E_OS, "%s: stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = rtv_fail(RTV_E_INPUT, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8) {
        rc = rtv_fail(RTV_E_INPUT, "%s: file is %llu bytes, too short for the 8-byte header "
                      "length", path, (unsigned long long)fsize);
        goto fail;
    }
    uint8_t lenb[8];
    if ((rc = pread_full(fd, lenb, 8, 0, path))) goto fail;
    uint64_t hlen = le64(lenb);
    if (hlen > fsize - 8) {
        rc = rtv_fail(RTV_E_INPUT, "%s: header length %llu exceeds file size %llu", path,
                      (unsigned long long)hlen, (unsigned long long)fsize);
        goto fail;
    }
    if (hlen > RTV_ST_MAX_HEADER) {
        rc = rtv_fail(RTV_E_INPUT, "%s: header length %llu exceeds the %llu-byte limit", path,
                      (unsigned long long)hlen, RTV_ST_MAX_HEADER);
        goto fail;
    }
    if (!(hdr = malloc((size_t)hlen + 1))) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: cannot allocate the %llu-byte header", path,
                      (unsigned long long)hlen);
        goto fail;
    }
    if ((rc = pread_full(fd, hdr, (size_t)hlen, 8, path))) goto fail;
    hdr[hlen] = 0;
    st->data_len = fsize - 8 - hlen;
    if ((rc = parse_header(st, hdr, (size_t)hlen))) goto fail;
    free(hdr);
    hdr = NULL;
    if ((rc = load_data(st, fd, 8 + hlen, fsize, mode))) goto fail;
    close(fd);
    *out = st;
    return RTV_OK;
fail:
    free(hdr);
    if (fd >= 0) close(fd);
    rtv_st_close(st);
    return rc;
}

void rtv_st_close(rtv_safetensors *st)
{
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    free(st->buf);
    free(st->t);
    free(st->by_name);
    free(st->names);
    free(st->path);
    free(st);
}

const char *rtv_st_path(const rtv_safetensors *st) { return st->path; }
int rtv_st_count(const rtv_safetensors *st) { return st->n; }
const char *rtv_st_io_used(const rtv_safetensors *st) { return st->io_used; }

const rtv_st_tensor *rtv_st_at(const rtv_safetensors *st, int i)
{
    return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const rtv_st_tensor *rtv_st_find(const rtv_safetensors *st, const char *name)
{
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const rtv_st_tensor *t = &st->t[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (!c) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const void *rtv_st_data(const rtv_safetensors *st, const rtv_st_tensor *t)
{
    static const uint8_t empty[8];
    if (!t->dtype_ok) {
        rtv_fail(RTV_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s; rtvla loads BF16, F16 and "
                 "F32", st->path, t->name, t->dtype_name);
        return NULL;
    }
    return t->nbytes ? st->data + t->offset : empty;
}

int64_t rtv_st_numel(const rtv_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int rtv_st_require(const rtv_safetensors *st, const char *name, const rtv_st_tensor **out)
{
    const rtv_st_tensor *t = rtv_st_find(st, name);
    *out = NULL;
    if (!t)
        return rtv_fail(RTV_E_INPUT, "%s: no tensor '%s' (%d tensors in file)", st->path, name,
                        st->n);
    if (!t->dtype_ok)
        return rtv_fail(RTV_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s; rtvla loads BF16, "
                        "F16 and F32", st->path, name, t->dtype_name);
    *out = t;
    return RTV_OK;
}

/* ---- writer ---- */

typedef struct st_wentry {
    char *name;
    rtv_dtype dt;
    int ndim;
    int64_t shape[RTV_ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
} st_wentry;

struct rtv_st_writer {
    st_wentry *e;
    int n, cap;
};

int rtv_st_writer_new(rtv_st_writer **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? RTV_OK : rtv_fail(RTV_E_NOMEM, "safetensors writer: out of memory");
}

void rtv_st_writer_free(rtv_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w);
}

int rtv_st_writer_add(rtv_st_writer *w, const char *name, rtv_dtype dt, int ndim,
                      const int64_t *shape, const void *data)
{
    if (!name || !*name || !strcmp(name, "__metadata__"))
        return rtv_fail(RTV_E_ARG, "safetensors writer: invalid tensor name '%s'",
                        name ? name : "(null)");
    if (!st_dtype_name(dt))
        return rtv_fail(RTV_E_ARG, "safetensors writer: tensor '%s': unknown dtype %d", name,
                        (int)dt);
    if (ndim < 0 || ndim > RTV_ST_MAX_DIMS)
        return rtv_fail(RTV_E_ARG, "safetensors writer: tensor '%s': %d dims (0..%d)", name,
                        ndim, RTV_ST_MAX_DIMS);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return rtv_fail(RTV_E_ARG, "safetensors writer: tensor '%s' added twice", name);
    uint64_t nb = dt == RTV_DT_F32 ? 4 : 2; /* F32 or BF16/F16 (checked above) */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return rtv_fail(RTV_E_ARG, "safetensors writer: tensor '%s': shape[%d] = %lld", name,
                            i, (long long)shape[i]);
        if (__builtin_mul_overflow(nb, (uint64_t)shape[i], &nb))
            return rtv_fail(RTV_E_ARG, "safetensors writer: tensor '%s': size overflows", name);
    }
    if (nb && !data)
        return rtv_fail(RTV_E_ARG, "safetensors writer: tensor '%s': data is NULL", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        st_wentry *e = realloc(w->e, (size_t)cap * sizeof(*e));
        if (!e) return rtv_fail(RTV_E_NOMEM, "safetensors writer: out of memory");
        w->e = e;
        w->cap = cap;
    }
    st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof(*e));
    if (!(e->name = strdup(name))) return rtv_fail(RTV_E_NOMEM, "safetensors writer: no memory");
    e->dt = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = nb;
    e->data = data;
    w->n++;
    return RTV_OK;
}

/* Growable string for the header. */
typedef struct { char *p; size_t n, cap; int oom; } st_buf;

static void sb_put(st_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(st_buf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

int rtv_st_writer_finish(rtv_st_writer *w, const char *path)
{
    st_buf h = {0};
    char num[64], *tmp = NULL;
    FILE *f = NULL;
    int rc = RTV_OK;
    uint64_t off = 0;
    sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < w->n; i++) {
        const st_wentry *e = &w->e[i];
        sb_str(&h, ",");
        sb_json_string(&h, e->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, st_dtype_name(e->dt));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof(num), "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_str(&h, num);
        }
        snprintf(num, sizeof(num), "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + e->nbytes));
        sb_str(&h, num);
        off += e->nbytes;
    }
    sb_str(&h, "}");
    while (!h.oom && (8 + h.n) % 8) sb_put(&h, " ", 1);
    if (h.oom) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory building the header", path);
        goto out;
    }
    size_t pl = strlen(path);
    if (!(tmp = malloc(pl + 5))) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    if (!(f = fopen(tmp, "wb"))) {
        rc = rtv_fail(RTV_E_OS, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    int ok = fwrite(lenb, 1, 8, f) == 8 && fwrite(h.p, 1, h.n, f) == h.n;
    for (int i = 0; ok && i < w->n; i++)
        if (w->e[i].nbytes) ok = fwrite(w->e[i].data, 1, w->e[i].nbytes, f) == w->e[i].nbytes;
    int cerr = fclose(f);
    f = NULL;
    if (!ok || cerr) {
        rc = rtv_fail(RTV_E_OS, "%s: write failed: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path)) {
        rc = rtv_fail(RTV_E_OS, "%s: cannot rename %s into place: %s", path, tmp,
                      strerror(errno));
        unlink(tmp);
    }
out:
    free(tmp);
    free(h.p);
    rtv_st_writer_free(w);
    return rc;
}
