/* runtime/model_cfg.c — the two model presets and the consistency check of rtv_model_cfg.
 * Dimensions: shared/specs/pi0.md (PaliGemma 3B: SigLIP So400m/14 + Gemma 2B; expert Gemma 300M). */
#include "runtime/model_cfg.h"

#include <stdio.h>
#include <string.h>

#include "runtime/status.h"

static const rtv_model_cfg presets[] = {
    {
        .preset = "pi0",
        .image_size = 224, .patch = 14,
        .vis_width = 1152, .vis_depth = 27, .vis_heads = 16, .vis_mlp = 4304, .vis_ln_eps = 1e-6f,
        .llm_width = 2048, .llm_depth = 18, .llm_mlp = 16384, .vocab = 257152,
        .n_heads = 8, .n_kv_heads = 1, .head_dim = 256, .rope_theta = 10000.0f, .rms_eps = 1e-6f,
        .exp_width = 1024, .exp_mlp = 4096,
        .reg_hidden = 1024,
        .action_dim = 32, .robot_dof = 6, .chunk = 50, .steps = 10, .n_views = 2,
        .max_prompt = 48, .history = 0, .head = RTV_HEAD_FLOW,
    },
    {
        .preset = "pi0-tiny",
        .image_size = 224, .patch = 14,
        .vis_width = 64, .vis_depth = 2, .vis_heads = 4, .vis_mlp = 128, .vis_ln_eps = 1e-6f,
        .llm_width = 128, .llm_depth = 2, .llm_mlp = 256, .vocab = 1024,
        .n_heads = 4, .n_kv_heads = 1, .head_dim = 32, .rope_theta = 10000.0f, .rms_eps = 1e-6f,
        .exp_width = 64, .exp_mlp = 128,
        .reg_hidden = 64,
        .action_dim = 32, .robot_dof = 6, .chunk = 50, .steps = 10, .n_views = 2,
        .max_prompt = 48, .history = 0, .head = RTV_HEAD_FLOW,
    },
};
#define N_PRESETS ((int)(sizeof(presets) / sizeof(presets[0])))

int rtv_model_cfg_preset(rtv_model_cfg *cfg, const char *name)
{
    for (int i = 0; i < N_PRESETS; i++)
        if (name && !strcmp(name, presets[i].preset)) {
            *cfg = presets[i];
            return RTV_OK;
        }
    return rtv_fail(RTV_E_ARG, "model preset '%s' is unknown: expected one of pi0, pi0-tiny",
                    name ? name : "(null)");
}

/* Each check names the field, its value and the rule. */
#define RANGE(field, lo, hi)                                                                  \
    do {                                                                                      \
        if (c->field < (lo) || c->field > (hi))                                               \
            return rtv_fail(RTV_E_ARG, "model '%s': " #field " is %d, expected [%d, %d]", \
                            c->preset, (int)c->field, (int)(lo), (int)(hi));                  \
    } while (0)
#define DIVISIBLE(a, b)                                                                       \
    do {                                                                                      \
        if (c->a % c->b)                                                                      \
            return rtv_fail(RTV_E_ARG,                                                        \
                            "model '%s': " #a " (%d) is not divisible by " #b " (%d)",        \
                            c->preset, c->a, c->b);                                           \
    } while (0)
#define POSITIVE_F(field)                                                                     \
    do {                                                                                      \
        if (!(c->field > 0.0f))                                                               \
            return rtv_fail(RTV_E_ARG, "model '%s': " #field " is %g, expected > 0",          \
                            c->preset, (double)c->field);                                     \
    } while (0)

int rtv_model_cfg_validate(const rtv_model_cfg *c)
{
    /* Upper bounds keep every derived size (tokens, q/kv dims, weight counts) far from int
     * overflow; they are several times the largest model rtvla targets. */
    RANGE(image_size, 14, 4096);
    RANGE(patch, 1, 256);
    DIVISIBLE(image_size, patch);
    RANGE(vis_width, 1, 16384);
    RANGE(vis_depth, 1, 256);
    RANGE(vis_heads, 1, 256);
    DIVISIBLE(vis_width, vis_heads);
    RANGE(vis_mlp, 1, 65536);
    POSITIVE_F(vis_ln_eps);

    RANGE(llm_width, 1, 16384);
    RANGE(llm_depth, 1, 256);
    RANGE(llm_mlp, 1, 65536);
    RANGE(vocab, 2, 1 << 20);

    RANGE(n_heads, 1, 256);
    RANGE(n_kv_heads, 1, 256);
    DIVISIBLE(n_heads, n_kv_heads); /* grouped-query attention: whole groups */
    RANGE(head_dim, 2, 1024);
    if (c->head_dim % 2)
        return rtv_fail(RTV_E_ARG, "model '%s': head_dim is %d, expected even (RoPE rotates pairs)",
                        c->preset, c->head_dim);
    /* q dim = n_heads * head_dim need not equal a width (pi0's expert: width 1024, q 2048), but
     * both widths must split evenly across the heads that share the attention. */
    DIVISIBLE(llm_width, n_heads);
    DIVISIBLE(exp_width, n_heads);
    if (c->n_heads * c->head_dim > 65536)
        return rtv_fail(RTV_E_ARG, "model '%s': n_heads * head_dim = %d, expected <= 65536",
                        c->preset, c->n_heads * c->head_dim);
    POSITIVE_F(rope_theta);
    POSITIVE_F(rms_eps);

    RANGE(exp_width, 1, 16384);
    RANGE(exp_mlp, 1, 65536);
    RANGE(reg_hidden, 1, 65536);

    RANGE(action_dim, 1, 32);
    RANGE(robot_dof, 0, c->action_dim); /* 0: taken from the stats or the robot at load */
    RANGE(chunk, 1, 1000);
    RANGE(steps, 1, 100);
    RANGE(n_views, 1, 8);
    RANGE(max_prompt, 2, 1024); /* at least BOS and the "\n" separator */
    RANGE(history, 0, 64);
    if (c->head != RTV_HEAD_FLOW && c->head != RTV_HEAD_REGRESSION)
        return rtv_fail(RTV_E_ARG, "model '%s': head is %d, expected flow (0) or regression (1)",
                        c->preset, (int)c->head);
    return RTV_OK;
}
