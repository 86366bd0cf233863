/* runtime/safetensors.h — read and write safetensors files.
 *
 * Format: u64 little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "BF16"|"F16"|"F32"|..., "shape": [...], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {...}}, then the data section. rtv_st_open validates everything before
 * any tensor is used: header length vs file size, JSON, dtype names, shape x dtype size ==
 * e - b, offsets in range, no two tensors overlapping. Errors name the file, the tensor and
 * what was expected. Data is mapped read-only (or read with io_uring when mapping is not
 * wanted); pointers from rtv_st_data stay valid until rtv_st_close.
 */
#ifndef RTV_SAFETENSORS_H
#define RTV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#define RTV_ST_MAX_DIMS 8

typedef struct rtv_st_tensor {
    const char *name;
    rtv_dtype dt;           /* valid only when dtype_ok */
    int ndim;
    int64_t shape[RTV_ST_MAX_DIMS];
    uint64_t offset, nbytes; /* within the data section */
    const char *dtype_name; /* as written in the file: "BF16", "I64", ... */
    int dtype_ok;           /* 1: BF16/F16/F32; 0: a known safetensors dtype rtvla does not
                             * load (I64, I32, F64, U8, BOOL, ...): rtv_st_data refuses it */
} rtv_st_tensor;

typedef struct rtv_safetensors rtv_safetensors;

enum { RTV_ST_MMAP = 0, RTV_ST_READ_URING = 1 };
/* Largest header accepted (the reference implementation's limit). */
#define RTV_ST_MAX_HEADER 100000000ull

int rtv_st_open(rtv_safetensors **out, const char *path, int mode);
void rtv_st_close(rtv_safetensors *st);
const char *rtv_st_path(const rtv_safetensors *st);
int rtv_st_count(const rtv_safetensors *st);
const rtv_st_tensor *rtv_st_at(const rtv_safetensors *st, int i);
const rtv_st_tensor *rtv_st_find(const rtv_safetensors *st, const char *name); /* NULL if absent */
/* Data of t (size t->nbytes, little-endian, no alignment beyond 1 byte guaranteed). NULL with
 * RTV_E_UNSUPPORTED in rtv_last_error() when t's dtype is not BF16/F16/F32. */
const void *rtv_st_data(const rtv_safetensors *st, const rtv_st_tensor *t);
int64_t rtv_st_numel(const rtv_st_tensor *t);
/* Like rtv_st_find, but a missing tensor is RTV_E_INPUT ("<file>: no tensor '<name>' (N
 * tensors in file)") and an unsupported dtype RTV_E_UNSUPPORTED naming tensor and dtype. */
int rtv_st_require(const rtv_safetensors *st, const char *name, const rtv_st_tensor **out);
/* How the data was obtained: "mmap", "io_uring", or "pread (io_uring unavailable: <why>)".
 * RTV_ST_READ_URING falls back to pread when io_uring_queue_init fails (seccomp, old kernel,
 * io_uring_disabled sysctl); the note is also printed once to stderr. */
const char *rtv_st_io_used(const rtv_safetensors *st);

/* Writer: collects tensors (data copied or referenced until finish) and writes the file. */
typedef struct rtv_st_writer rtv_st_writer;
int rtv_st_writer_new(rtv_st_writer **out);
/* data must stay valid until rtv_st_writer_finish; shape has ndim entries. */
int rtv_st_writer_add(rtv_st_writer *w, const char *name, rtv_dtype dt, int ndim,
                      const int64_t *shape, const void *data);
/* Writes "<path>.tmp" then renames it over path. Header: {"__metadata__":{"format":"pt"},
 * tensors in insertion order}, padded with spaces so the data section starts 8-byte aligned;
 * tensor data contiguous in insertion order. Also frees w (on failure too). */
int rtv_st_writer_finish(rtv_st_writer *w, const char *path);
void rtv_st_writer_free(rtv_st_writer *w);

#endif
