/* runtime/policy_impl.h — private to the model files: the weight structs, the per-thread
 * workspaces and the forward functions of each part (vision/siglip.c, encoder/gemma.c,
 * action/sensor.c, action/flow.c, action/regression.c), which runtime/policy.c strings
 * together. Not a public header: the runtime sees runtime/policy.h only.
 *
 * Shapes in comments use the config's names: Wv vis_width, T tokens per view, D llm_width,
 * FF llm_mlp, We exp_width, FFe exp_mlp, R reg_hidden, A action_dim, H chunk, Q = n_heads *
 * head_dim, KV = n_kv_heads * head_dim, QKV = Q + 2 KV, P max prefix rows, L llm_depth.
 * Every weight pointer is backend weight memory (layout fused at load, see runtime/weights.c);
 * every activation pointer backend activation memory. Model code only passes them to ops.
 */
#ifndef RTV_POLICY_IMPL_H
#define RTV_POLICY_IMPL_H

#include <stdint.h>

#include "kernels/backend.h"
#include "runtime/policy.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

/* ---- weights ---- */

typedef struct rtv_vis_layer {
    const void *ln1_w, *ln1_b; /* (Wv) */
    const void *qkv_w;         /* (3 Wv, Wv): rows q, k, v */
    const void *qkv_b;         /* (3 Wv) */
    const void *o_w, *o_b;     /* (Wv, Wv), (Wv) */
    const void *ln2_w, *ln2_b; /* (Wv) */
    const void *fc1_w, *fc1_b; /* (vis_mlp, Wv), (vis_mlp) */
    const void *fc2_w, *fc2_b; /* (Wv, vis_mlp), (Wv) */
} rtv_vis_layer;

/* One Gemma decoder layer (prefix LLM or action expert; width W, MLP F). */
typedef struct rtv_gemma_layer {
    const void *ln_attn; /* (W) RMSNorm w, applied as (1 + w) */
    const void *qkv;     /* (QKV, W): rows q (Q), k (KV), v (KV) */
    const void *o;       /* (W, Q) */
    const void *ln_ffw;  /* (W) */
    const void *gate_up; /* (2 F, W): rows gate, up */
    const void *down;    /* (W, F) */
} rtv_gemma_layer;

typedef struct rtv_weights {
    /* vision tower + projector */
    const void *patch_w;  /* (Wv, 3 p p), patch vector in (c, kh, kw) order */
    const void *patch_b;  /* (Wv) */
    const void *pos;      /* (T, Wv) */
    rtv_vis_layer *vis;   /* [vis_depth] (host array) */
    const void *post_w, *post_b; /* (Wv) */
    const void *proj_w;   /* (D, Wv) */
    const void *proj_b;   /* (D) */
    /* prefix LLM */
    rtv_gemma_layer *llm; /* [L] */
    const void *llm_norm; /* (D) final RMSNorm, used for pooled features */
    /* action expert and pi0 heads (flow) */
    rtv_gemma_layer *exp; /* [L] */
    const void *exp_norm; /* (We) */
    const void *state_w, *state_b;   /* state_proj (We, A), (We) */
    const void *act_in_w, *act_in_b; /* action_in_proj (We, A), (We) */
    const void *mlp_in_a;            /* action_time_mlp_in columns 0..We-1: (We, We) */
    const void *time_bias;           /* (steps, We): mlp_in[:, We:] . posemb(t_k) + mlp_in.b */
    const void *mlp_out_w, *mlp_out_b; /* action_time_mlp_out (We, We), (We) */
    const void *act_out_w, *act_out_b; /* action_out_proj (A, We), (A) */
    /* regression head */
    const void *reg_in_w, *reg_in_b;       /* (R, D), (R) */
    const void *reg_state_w, *reg_state_b; /* (R, A), (R) */
    const void *reg_fc_w, *reg_fc_b;       /* (R, R), (R) */
    const void *reg_out_w, *reg_out_b;     /* (H A, R), (H A) */
    /* sensor history (cfg.history > 0) */
    const void *hist_w, *hist_b; /* (head width, history * 3 * robot_dof), (head width) */
} rtv_weights;

/* Where the token embedding rows come from (kept on the host, gathered at set_task). */
typedef struct rtv_embed_src {
    const rtv_safetensors *st;  /* loaded: the open checkpoint (mmap); NULL: random */
    const rtv_st_tensor *t;     /* (vocab, D) in the file */
    uint64_t seed;              /* random: the policy seed */
} rtv_embed_src;

struct rtv_policy {
    rtv_model_cfg cfg;          /* robot_dof resolved */
    const rtv_backend *b;
    rtv_arena w_arena;          /* every weight, one allocation */
    rtv_weights w;
    int exp_norms_folded;       /* the expert's RMSNorm weights are folded into qkv and gate_up
                                 * (weights.c; the backend has rms_rope and rms_geglu) */
    int llm_norms_folded;       /* the same for the prefix LLM (RTV_PREFIX_FOLD=0: not) */
    int prefix_full;            /* RTV_PREFIX_FULL=1: the flow head's last prefix layer runs
                                 * whole (comparing; its output has no reader, gemma.c) */
    rtv_vis_layer *vis_layers;  /* host arrays behind w.vis / w.llm / w.exp */
    rtv_gemma_layer *llm_layers, *exp_layers;
    rtv_safetensors *st;        /* open checkpoint (embedding rows), NULL for random */
    rtv_embed_src embed;
    struct rtv_tokenizer *tok;  /* NULL for random policies: set_task then needs one */
    rtv_norm_stats stats;
    char ckpt_dir[512];
};

/* ---- stage timing (bench model) ---- */
enum {
    RTV_STAGE_PREPROCESS, RTV_STAGE_VISION, RTV_STAGE_PREFIX, /* encode */
    RTV_STAGE_SENSOR, RTV_STAGE_HEAD,                         /* act */
    RTV_STAGE_COUNT
};
/* When a context has a profile attached, it syncs its stream after each stage and adds the
 * stage's wall time (ns) to t_ns[stage]. Off (NULL) by default: no syncs between stages. */
typedef struct rtv_stage_prof {
    int64_t t_ns[RTV_STAGE_COUNT];
} rtv_stage_prof;
void rtv_vl_ctx_set_profile(rtv_vl_ctx *c, rtv_stage_prof *p);
void rtv_act_ctx_set_profile(rtv_act_ctx *c, rtv_stage_prof *p);

/* ---- workspaces ---- */

/* VL thread: images, vision activations, prefix activations. */
typedef struct rtv_vl_ws {
    void *img;     /* (n_views, S, S, 3) */
    void *patches; /* (n_views T, 3 p p) */
    void *vh;      /* (n_views T, Wv) vision residual stream */
    void *vn;      /* (n_views T, Wv) normed */
    void *vqkv;    /* (n_views T, 3 Wv) */
    void *vatt;    /* (n_views T, Wv) */
    void *vmlp;    /* (n_views T, vis_mlp) */
    void *x;       /* (P, D) prefix residual stream: [image tokens of every view; task tokens] */
    void *xn;      /* (P, D) */
    void *qkv;     /* (P, QKV) */
    void *att;     /* (P, Q) */
    void *gu;      /* (P, 2 FF) */
    void *ff;      /* (P, FF) */
} rtv_vl_ws;

/* Action thread: sensor, flow and regression activations. */
typedef struct rtv_act_ws {
    void *state;   /* (A) normalized, padded state */
    void *hist;    /* (history * 3 * robot_dof) scaled history, or NULL */
    void *sens;    /* (head width) sensor encoding: state token (flow) or state term (reg) */
    void *xt;      /* (H, A) flow sample x_t; regression output */
    void *v;       /* (H, A) velocity */
    void *aemb;    /* (H, We) */
    void *sx;      /* (1 + H, We) suffix residual stream: [state token; action tokens] */
    void *sxn;     /* (1 + H, We) */
    void *qkv;     /* (1 + H, QKV) */
    void *att;     /* (1 + H, Q) */
    void *gu;      /* (1 + H, 2 FFe) */
    void *ff;      /* (1 + H, FFe) */
    void **lq;       /* [L] -> (P + 1 + H, QKV): per expert layer, rows [0, n_prefix) hold the
                        prefix K/V (columns Q.., copied from the features once per cycle), the
                        rows after them the suffix's qkv projection, written in place: the
                        suffix attends to one contiguous key range and no K/V is copied per
                        step */
    void *rgu;       /* (2 R) regression: [h0 ; ones] so that geglu gives gelu(h0) exactly */
    void *rh1, *rh2; /* (R) regression hidden */
    int expert_fused; /* the last expert pass ran as one expert_layers call (backend.h) */
} rtv_act_ws;

/* Introspection for tests: the VL workspace (after encode, vn holds the vision tower's
 * post-LayerNorm output) and the last normalized (H, A) chunk of an action context (host). */
const rtv_vl_ws *rtv_vl_ctx_ws(const rtv_vl_ctx *c);
const float *rtv_act_ctx_normalized(const rtv_act_ctx *c);
/* Graphs captured so far by a context (0 on backends without graphs or with RTV_GRAPHS=0). */
int rtv_vl_graph_captures(const rtv_vl_ctx *c);
int rtv_act_graph_captures(const rtv_act_ctx *c);
/* Whether the context's last expert pass ran as one expert_layers call (1) or op by op (0). */
int rtv_act_expert_fused(const rtv_act_ctx *c);

/* ---- model parts (each returns RTV_OK or the first failing op's status) ---- */

/* vision/siglip.c: ws->img (n_views images) -> prefix rows x[0 .. n_views T) (D wide). */
int rtv_siglip_forward(const rtv_policy *p, rtv_stream *s, rtv_vl_ws *ws, int n_views);
/* encoder/gemma.c: ws->x rows [0, n_prefix) -> f->k/v (after RoPE), f->pooled. */
int rtv_gemma_prefix(const rtv_policy *p, rtv_stream *s, rtv_vl_ws *ws, int n_prefix,
                     rtv_features *f);
/* encoder/gemma.c: one expert layer stack over suffix rows [row0, row0 + n) at positions
 * n_prefix + row0 ..; they attend to ws->lq rows [0, n_prefix + row0 + n): the prefix
 * cache (copied there by rtv_flow_sample) and suffix rows [0, row0 + n). */
int rtv_gemma_expert(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws, const rtv_features *f,
                     int row0, int n);

/* action/sensor.c: ws->state (normalized, A) and ws->hist (scaled history, when cfg.history)
 * -> ws->sens (head width). The caller uploads the inputs (runtime/policy.c), so this part
 * contains device work only and can be captured in a graph. */
int rtv_sensor_encode(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws);
/* action/sensor.c: raw history (history, 3, dof) -> scaled (same shape), see docs. RT-safe. */
void rtv_sensor_scale_history(const rtv_policy *p, const float *raw, float *out);

/* action/flow.c: ws->xt holds the noise (uploaded by the caller) and becomes the normalized
 * chunk. ws->sens holds the state token. Device work only (graph-capturable). */
int rtv_flow_sample(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws, const rtv_features *f);
/* action/flow.c: splitmix64 Box-Muller noise, n values (see docs/checkpoints.md). RT-safe. */
void rtv_flow_noise(uint64_t seed, float *out, int n);
/* action/flow.c: Euler time of step k: (float)(1 - k / steps), as a double. */
double rtv_flow_time(int k, int steps);
/* action/flow.c: pi0 time embedding posemb_sincos(t, dim, 4e-3, 4.0) in double. */
void rtv_flow_posemb(double t, int dim, double *out);

/* action/regression.c: f->pooled + ws->sens -> ws->xt (normalized chunk). */
int rtv_regression_forward(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws,
                           const rtv_features *f);

/* ---- runtime/weights.c: the weight table ---- */

/* Head width the sensor projects to: exp_width (flow) or reg_hidden (regression). */
int rtv_weights_head_width(const rtv_model_cfg *c);
/* Loads every tensor the cfg needs from st into p->w (arena allocated here). */
int rtv_weights_load(rtv_policy *p, rtv_safetensors *st);
/* Fills p->w with the seeded random values (identical to what the generator writes). */
int rtv_weights_random(rtv_policy *p, uint64_t seed);
/* Writes a complete model.safetensors for cfg (both heads; history proj if cfg->history). */
int rtv_weights_write_random(const rtv_model_cfg *cfg, uint64_t seed, rtv_dtype dt,
                             const char *path);
/* Host fp32 embedding row of token id (from the file or the seeded stream), times
 * sqrt(llm_width), into out[llm_width]. RTV_E_ARG when id is outside the table. */
int rtv_weights_embed_row(const rtv_policy *p, int id, float *out);
/* Prints the weight table for cfg (name, shape, required by) to f. */
void rtv_weights_print_table(const rtv_model_cfg *cfg, void *file);

/* runtime/policy.c: the seeded norm stats of random policies and generated checkpoints. */
void rtv_policy_random_stats(rtv_norm_stats *s, int dof, uint64_t seed);
/* runtime/cmd_model.c: writes a complete checkpoint directory (model.safetensors with both
 * heads, tokenizer.model, norm_stats.json, config.json) for cfg; creates dir if needed. */
int rtv_model_init_dir(const rtv_model_cfg *cfg, uint64_t seed, rtv_dtype dt, const char *dir);
/* runtime/policy.c: the openpi prompt rule; tokens written to ids[max]; *n = count. */
int rtv_policy_tokenize(const struct rtv_tokenizer *t, const char *task, int32_t *ids, int max,
                        int *n, int *n_needed);

#endif
