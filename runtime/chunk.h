/* runtime/chunk.h — executing action chunks on the control thread.
 *
 * A chunk is H actions of `dof` values (robot units) computed from one observation taken at
 * t_obs_ns; action i is the command for time t_obs_ns + i * step_ns (step_ns = the control
 * period: the chunk's actions are spaced like the dataset frames, which must equal
 * robot.control_hz). At each control tick the executor picks, by time, the action for "now":
 * index i = round((now - t_obs) / step). Actions whose time passed while the chunk was being
 * computed or delivered are skipped (counted), never replayed; a tick that lands past the end
 * of every chunk yields nothing (the caller holds position).
 *
 * Aggregation: `latest` uses only the newest chunk. `ensemble` averages the action for "now"
 * over every retained chunk that covers it, with ACT's temporal-ensemble weights
 * w_k = exp(-decay * k), k = 0 for the oldest chunk (older predictions weigh more).
 *
 * Threads: init/free init-time; everything else is the control thread's (_rt: copies into
 * preallocated memory, no allocation, no syscall).
 */
#ifndef RTV_CHUNK_H
#define RTV_CHUNK_H

#include <stdint.h>

#include "runtime/config.h"

typedef struct rtv_chunk_exec {
    int horizon, dof, cap;
    int64_t step_ns;
    rtv_aggregate agg;
    float decay;
    float *act;             /* (cap, horizon, dof), ring of retained chunks */
    int64_t *t_obs_ns;      /* (cap) */
    uint64_t *seq;          /* (cap) */
    int *next;              /* (cap) first index not yet executed or skipped */
    int *used;              /* (cap) actions of this chunk that went into an output */
    float *wsum;            /* (dof) scratch */
    int n, newest;          /* retained chunks; ring index of the newest */
    /* totals (control thread writes; read them after the thread stopped or as approximations) */
    uint64_t n_chunks;      /* chunks pushed */
    uint64_t n_consumed;    /* actions of the newest chunk executed */
    uint64_t n_skipped;     /* actions of the newest chunk whose time passed unexecuted */
    uint64_t n_repeat;      /* ticks that landed on an index already executed */
    uint64_t n_empty;       /* ticks with no action (no chunk, or all chunks ran out) */
} rtv_chunk_exec;

/* What one tick picked. */
typedef struct rtv_chunk_pick {
    uint64_t seq;           /* newest chunk that contributed */
    int index;              /* its action index */
    int skipped;            /* its actions skipped on this tick (index - next, >= 0) */
    int first;              /* first tick that used this chunk */
    int n_contrib;          /* chunks averaged (1 for latest) */
} rtv_chunk_pick;

/* cap: chunks retained for ensemble (>= 1; latest uses 1). step_ns > 0. RTV_E_ARG/NOMEM. */
int rtv_chunk_exec_init(rtv_chunk_exec *x, int horizon, int dof, int64_t step_ns,
                        rtv_aggregate agg, float decay, int cap);
void rtv_chunk_exec_free(rtv_chunk_exec *x);
/* Copies act (horizon x dof) in as the newest chunk; with `latest` it replaces the others. */
void rtv_chunk_exec_push_rt(rtv_chunk_exec *x, const float *act, int64_t t_obs_ns, uint64_t seq);
/* Forgets every chunk (hold / stop). */
void rtv_chunk_exec_clear_rt(rtv_chunk_exec *x);
/* The action for now_ns into out[dof]: returns 1, or 0 when no retained chunk covers now
 * (out untouched). */
int rtv_chunk_exec_step_rt(rtv_chunk_exec *x, int64_t now_ns, float *out, rtv_chunk_pick *pick);

#endif
