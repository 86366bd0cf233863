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
    rtv_dtype dt;
    int ndim;
    int64_t shape[RTV_ST_MAX_DIMS];
    uint64_t offset, nbytes; /* within the data section */
} rtv_st_tensor;

typedef struct rtv_safetensors rtv_safetensors;

enum { RTV_ST_MMAP = 0, RTV_ST_READ_URING = 1 };

int rtv_st_open(rtv_safetensors **out, const char *path, int mode);
void rtv_st_close(rtv_safetensors *st);
const char *rtv_st_path(const rtv_safetensors *st);
int rtv_st_count(const rtv_safetensors *st);
const rtv_st_tensor *rtv_st_at(const rtv_safetensors *st, int i);
const rtv_st_tensor *rtv_st_find(const rtv_safetensors *st, const char *name); /* NULL if absent */
const void *rtv_st_data(const rtv_safetensors *st, const rtv_st_tensor *t);
int64_t rtv_st_numel(const rtv_st_tensor *t);

/* Writer: collects tensors (data copied or referenced until finish) and writes the file. */
typedef struct rtv_st_writer rtv_st_writer;
int rtv_st_writer_new(rtv_st_writer **out);
/* data must stay valid until rtv_st_writer_finish; shape has ndim entries. */
int rtv_st_writer_add(rtv_st_writer *w, const char *name, rtv_dtype dt, int ndim,
                      const int64_t *shape, const void *data);
int rtv_st_writer_finish(rtv_st_writer *w, const char *path); /* also frees w */
void rtv_st_writer_free(rtv_st_writer *w);

#endif
