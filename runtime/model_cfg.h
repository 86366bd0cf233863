/* runtime/model_cfg.h — the model's dimensions and choices, as one plain struct.
 *
 * Presets: "pi0" (the real dimensions, shared/specs/pi0.md) and "pi0-tiny" (a few small layers
 * for tests and the CPU demo). Every line of model code serves both; head type, chunk length,
 * flow steps and view count are values here, set from the config file's `model` section.
 */
#ifndef RTV_MODEL_CFG_H
#define RTV_MODEL_CFG_H

typedef enum rtv_head {
    RTV_HEAD_FLOW = 0,       /* pi0 action expert, flow matching (Euler steps) */
    RTV_HEAD_REGRESSION = 1, /* MLP from pooled VL features + sensor encoding */
} rtv_head;

typedef struct rtv_model_cfg {
    char preset[32];

    /* SigLIP vision tower */
    int image_size;   /* 224 */
    int patch;        /* 14 */
    int vis_width;    /* 1152 */
    int vis_depth;    /* 27 */
    int vis_heads;    /* 16 (head dim = width / heads) */
    int vis_mlp;      /* 4304 */
    float vis_ln_eps; /* 1e-6 */

    /* Gemma prefix LLM (PaliGemma text model) */
    int llm_width;    /* 2048 */
    int llm_depth;    /* 18 */
    int llm_mlp;      /* 16384 */
    int vocab;        /* 257152 */

    /* attention shape, shared by LLM and expert */
    int n_heads;      /* 8 */
    int n_kv_heads;   /* 1 */
    int head_dim;     /* 256 */
    float rope_theta; /* 10000 */
    float rms_eps;    /* 1e-6 */

    /* action expert (flow head); depth == llm_depth */
    int exp_width;    /* 1024 */
    int exp_mlp;      /* 4096 */

    /* regression head */
    int reg_hidden;   /* 1024 */

    /* I/O */
    int action_dim;     /* padded state/action width the model sees: 32 */
    int robot_dof;      /* real state/action dims (<= action_dim), from the stats or config */
    int chunk;          /* H: actions per chunk, 50 */
    int steps;          /* flow Euler steps, 10 */
    int n_views;        /* camera views encoded per VL call */
    int max_prompt;     /* max task tokens incl. BOS and "\n" (openpi: 48) */
    int history;        /* sensor history window (0 = state only) */
    rtv_head head;
} rtv_model_cfg;

/* Fills cfg with a preset ("pi0", "pi0-tiny"); RTV_E_ARG naming the known presets. */
int rtv_model_cfg_preset(rtv_model_cfg *cfg, const char *name);
/* Checks internal consistency (divisibility, ranges); RTV_E_ARG naming the field. */
int rtv_model_cfg_validate(const rtv_model_cfg *cfg);
/* Derived sizes */
static inline int rtv_model_tokens_per_view(const rtv_model_cfg *c)
{
    return (c->image_size / c->patch) * (c->image_size / c->patch);
}
static inline int rtv_model_max_prefix(const rtv_model_cfg *c)
{
    return c->n_views * rtv_model_tokens_per_view(c) + c->max_prompt;
}
static inline int rtv_model_qkv_dim(const rtv_model_cfg *c)
{
    return (c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
}

#endif
