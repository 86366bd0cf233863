/* runtime/policy.h — pi0 (and the regression head) as the runtime sees it: load, encode, act.
 *
 * The split the runtime needs:
 *   rtv_policy_encode()  VL thread: camera views + task -> rtv_features (prefix KV + pooled)
 *   rtv_policy_act_rt()  action thread: rtv_features + robot state + seed -> action chunk
 * Each thread owns its own context (workspace arena + backend stream), so the two calls run
 * at once. A policy (weights) is shared read-only by both. Features objects are allocated by
 * the policy (sized for the worst case) and written only by encode.
 *
 * Threads: load/new/free are init-time. encode may allocate nothing either, but is not
 * real-time (it is the VL thread's call). act_rt allocates nothing, takes no lock and does no
 * file I/O; on any failure it returns a status and leaves `chunk` untouched.
 */
#ifndef RTV_POLICY_H
#define RTV_POLICY_H

#include <stdint.h>

#include "kernels/backend.h"
#include "runtime/model_cfg.h"
#include "runtime/normstats.h"
#include "vision/image.h"

typedef struct rtv_policy rtv_policy;
typedef struct rtv_vl_ctx rtv_vl_ctx;
typedef struct rtv_act_ctx rtv_act_ctx;

/* One complete VL encoding. Buffers are backend memory; metadata host. */
typedef struct rtv_features {
    /* [layers] -> K and V of the prefix, (max_prefix, n_kv_heads*head_dim) each, interleaved by
     * row: one buffer per layer with rows [K | V] (row stride 2 * n_kv_heads*head_dim), k[l]
     * at its start and v[l] = k[l] + n_kv_heads*head_dim, so each moves as one 2-D copy */
    void **k, **v;
    void *pooled;         /* (llm_width) activations: mean of the final-normed prefix states;
                           * NULL unless the head reads it (regression): with the flow head
                           * the last prefix layer stops at its K/V (encoder/gemma.c) */
    int n_prefix;         /* valid prefix rows (views * tokens_per_view + prompt tokens) */
    uint64_t seq;         /* encode sequence number, set by the caller */
    uint32_t task_id;     /* changes when the task string changes */
    int64_t t_capture_ns[8]; /* capture time of each view's frame (CLOCK_MONOTONIC) */
    int64_t t_encode_start_ns, t_encode_end_ns;
} rtv_features;

/* Loads a checkpoint directory (model.safetensors, tokenizer.model, stats; see README) built
 * for cfg, onto backend b. Errors name the file and the tensor or field. */
int rtv_policy_load(rtv_policy **out, const rtv_model_cfg *cfg, const rtv_backend *b,
                    const char *ckpt_dir);
/* Same, with seeded random weights and identity-ish stats (cfg decides sizes); no files. */
int rtv_policy_random(rtv_policy **out, const rtv_model_cfg *cfg, const rtv_backend *b,
                      uint64_t seed);
/* The policy a config asks for: backend model.backend; model.checkpoint "random" means
 * rtv_policy_random(model.m, model.seed), anything else a checkpoint directory. */
struct rtv_config;
int rtv_policy_from_config(rtv_policy **out, const struct rtv_config *cfg);
void rtv_policy_free(rtv_policy *p);
const rtv_model_cfg *rtv_policy_cfg(const rtv_policy *p);
const rtv_norm_stats *rtv_policy_stats(const rtv_policy *p);

int rtv_features_new(rtv_policy *p, rtv_features **out);
void rtv_features_free(rtv_policy *p, rtv_features *f);

int rtv_vl_ctx_new(rtv_policy *p, rtv_vl_ctx **out);
void rtv_vl_ctx_free(rtv_vl_ctx *c);
/* Tokenizes the task (openpi rule: strip, '_' -> ' ', BOS + text + "\n"), truncating to
 * max_prompt with a warning in the returned count; call whenever the task changes.
 * Returns RTV_OK, a negative status, or (> 0) the number of tokens truncated away; the
 * caller prints the warning. The empty string gives zero prompt tokens. */
int rtv_vl_set_task(rtv_vl_ctx *c, const char *task);
/* Encodes n_views frames (n_views == cfg.n_views) and the current task into f. */
int rtv_policy_encode(rtv_vl_ctx *c, const rtv_frame *views, int n_views, rtv_features *f);

int rtv_act_ctx_new(rtv_policy *p, rtv_act_ctx **out);
void rtv_act_ctx_free(rtv_act_ctx *c);
/* One action cycle: state_raw[robot_dof] (robot units) and optional history
 * (history x 3 x robot_dof: positions, velocities, loads; NULL when cfg.history == 0) ->
 * chunk[chunk * robot_dof] in robot units. seed picks the flow noise. */
int rtv_policy_act_rt(rtv_act_ctx *c, const rtv_features *f, const float *state_raw,
                      const float *history, uint64_t seed, float *chunk);

#endif
