/* runtime/weights.c — the pi0 weight table: checkpoint names, shapes from the config, random
 * initialisation, and where each tensor lands in backend memory.
 *
 * One static table drives loading (rtv_weights_load), seeded weights (rtv_weights_random), the
 * checkpoint generator (rtv_weights_write_random) and the printed table. Names are the openpi
 * PyTorch / lerobot/pi0_base names (shared/specs/pi0.md 5.2); each is also accepted with a
 * leading "model." (LeRobot-trained files). Fused layouts in backend memory: SigLIP qkv
 * (3 Wv, Wv) + bias (3 Wv); Gemma/expert qkv (QKV, W) from q/k/v rows; gate_up (2 F, W) from
 * gate/up rows. action_time_mlp_in is split at load: its action half becomes mlp_in_a, its time
 * half is folded with the fixed Euler times into a per-step bias table. The token embedding
 * table stays on the host (rows gathered at set_task).
 *
 * Random values: tensor `name` element i = scale * u * sqrt(3) (+ offset), u uniform in (-1, 1)
 * from splitmix64's finaliser of key + (i + 1) * golden, key = mix(seed ^ fnv1a64(name)):
 * counter-based, so a value does not depend on load order or on which tensors are loaded.
 * Values are rounded to bf16 so that bf16 and f32 checkpoints of one seed hold the same numbers.
 */
#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/policy_impl.h"
#include "runtime/status.h"

/* ---- dimension symbols: shapes are written with these, resolved from the config ---- */
enum {
    Z_END = 0, Z_3, Z_P, Z_PIN, Z_T, Z_VW, Z_2VW, Z_3VW, Z_VMLP, Z_D, Z_FF, Z_2FF, Z_Q, Z_KV, Z_QKV,
    Z_QKV_K, Z_QKV_V, Z_WE, Z_2WE, Z_FFE, Z_2FFE, Z_A, Z_R, Z_HA, Z_VOCAB, Z_HIST, Z_HW,
};

static int64_t dim_of(const rtv_model_cfg *c, int z)
{
    switch (z) {
    case Z_3: return 3;
    case Z_P: return c->patch;
    case Z_PIN: return 3LL * c->patch * c->patch;
    case Z_T: return rtv_model_tokens_per_view(c);
    case Z_VW: return c->vis_width;
    case Z_2VW: return 2LL * c->vis_width;
    case Z_3VW: return 3LL * c->vis_width;
    case Z_VMLP: return c->vis_mlp;
    case Z_D: return c->llm_width;
    case Z_FF: return c->llm_mlp;
    case Z_2FF: return 2LL * c->llm_mlp;
    case Z_Q: return (int64_t)c->n_heads * c->head_dim;
    case Z_KV: return (int64_t)c->n_kv_heads * c->head_dim;
    case Z_QKV: return rtv_model_qkv_dim(c);
    case Z_QKV_K: return (int64_t)c->n_heads * c->head_dim;                     /* k rows */
    case Z_QKV_V: return (int64_t)(c->n_heads + c->n_kv_heads) * c->head_dim;   /* v rows */
    case Z_WE: return c->exp_width;
    case Z_2WE: return 2LL * c->exp_width;
    case Z_FFE: return c->exp_mlp;
    case Z_2FFE: return 2LL * c->exp_mlp;
    case Z_A: return c->action_dim;
    case Z_R: return c->reg_hidden;
    case Z_HA: return (int64_t)c->chunk * c->action_dim;
    case Z_VOCAB: return c->vocab;
    case Z_HIST: return 3LL * c->history * c->robot_dof;
    case Z_HW: return rtv_weights_head_width(c);
    default: return 0;
    }
}

/* How a tensor is initialised at random (u: unit-variance uniform). */
enum {
    I_LINEAR, /* u / sqrt(fan_in): keeps activations O(1) */
    I_BIAS,   /* 0.05 u */
    I_RMS,    /* 0.1 u: RMSNorm weight, applied as (1 + w) */
    I_LN_W,   /* 1 + 0.1 u */
    I_LN_B,   /* 0.05 u */
    I_EMBED,  /* u / sqrt(D): rows are multiplied by sqrt(D) at use */
    I_POS,    /* 0.5 u */
};
/* Which configurations need a tensor. */
enum { N_ALL, N_FLOW, N_REG, N_HIST };
/* Which layer array a row repeats over. */
enum { L_NONE, L_VIS, L_LLM, L_EXP };
/* Destinations that are not a plain weight field. */
#define D_EMBED ((unsigned)-1)   /* stays in the file / generated on demand */
#define D_MLP_IN_W ((unsigned)-2) /* split + folded after load */
#define D_MLP_IN_B ((unsigned)-3)

typedef struct wrow {
    const char *name;       /* canonical name; %d = layer index */
    uint8_t layers;         /* L_* */
    uint8_t shape[4];       /* Z_* symbols, Z_END-terminated */
    uint8_t init, need;
    unsigned dst;           /* offsetof into rtv_weights / layer struct, or D_* */
    uint8_t row_off;        /* Z_* rows before this piece in a fused slot (Z_END: 0) */
    uint8_t fused_rows;     /* Z_* rows of the whole fused slot (Z_END: not fused) */
} wrow;

#define VT "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
#define LM "paligemma_with_expert.paligemma.model.language_model."
#define EX "paligemma_with_expert.gemma_expert.model."
#define WF(f) offsetof(rtv_weights, f)
#define VF(f) offsetof(rtv_vis_layer, f)
#define GF(f) offsetof(rtv_gemma_layer, f)
#define S1(a) {a}
#define S2(a, b) {a, b}

static const wrow table[] = {
    /* SigLIP */
    {VT "embeddings.patch_embedding.weight", L_NONE, {Z_VW, Z_3, Z_P, Z_P}, I_LINEAR, N_ALL, WF(patch_w), 0, 0},
    {VT "embeddings.patch_embedding.bias", L_NONE, S1(Z_VW), I_BIAS, N_ALL, WF(patch_b), 0, 0},
    {VT "embeddings.position_embedding.weight", L_NONE, S2(Z_T, Z_VW), I_POS, N_ALL, WF(pos), 0, 0},
    {VT "encoder.layers.%d.layer_norm1.weight", L_VIS, S1(Z_VW), I_LN_W, N_ALL, VF(ln1_w), 0, 0},
    {VT "encoder.layers.%d.layer_norm1.bias", L_VIS, S1(Z_VW), I_LN_B, N_ALL, VF(ln1_b), 0, 0},
    {VT "encoder.layers.%d.self_attn.q_proj.weight", L_VIS, S2(Z_VW, Z_VW), I_LINEAR, N_ALL, VF(qkv_w), 0, Z_3VW},
    {VT "encoder.layers.%d.self_attn.k_proj.weight", L_VIS, S2(Z_VW, Z_VW), I_LINEAR, N_ALL, VF(qkv_w), Z_VW, Z_3VW},
    {VT "encoder.layers.%d.self_attn.v_proj.weight", L_VIS, S2(Z_VW, Z_VW), I_LINEAR, N_ALL, VF(qkv_w), Z_2VW, Z_3VW},
    {VT "encoder.layers.%d.self_attn.q_proj.bias", L_VIS, S1(Z_VW), I_BIAS, N_ALL, VF(qkv_b), 0, Z_3VW},
    {VT "encoder.layers.%d.self_attn.k_proj.bias", L_VIS, S1(Z_VW), I_BIAS, N_ALL, VF(qkv_b), Z_VW, Z_3VW},
    {VT "encoder.layers.%d.self_attn.v_proj.bias", L_VIS, S1(Z_VW), I_BIAS, N_ALL, VF(qkv_b), Z_2VW, Z_3VW},
    {VT "encoder.layers.%d.self_attn.out_proj.weight", L_VIS, S2(Z_VW, Z_VW), I_LINEAR, N_ALL, VF(o_w), 0, 0},
    {VT "encoder.layers.%d.self_attn.out_proj.bias", L_VIS, S1(Z_VW), I_BIAS, N_ALL, VF(o_b), 0, 0},
    {VT "encoder.layers.%d.layer_norm2.weight", L_VIS, S1(Z_VW), I_LN_W, N_ALL, VF(ln2_w), 0, 0},
    {VT "encoder.layers.%d.layer_norm2.bias", L_VIS, S1(Z_VW), I_LN_B, N_ALL, VF(ln2_b), 0, 0},
    {VT "encoder.layers.%d.mlp.fc1.weight", L_VIS, S2(Z_VMLP, Z_VW), I_LINEAR, N_ALL, VF(fc1_w), 0, 0},
    {VT "encoder.layers.%d.mlp.fc1.bias", L_VIS, S1(Z_VMLP), I_BIAS, N_ALL, VF(fc1_b), 0, 0},
    {VT "encoder.layers.%d.mlp.fc2.weight", L_VIS, S2(Z_VW, Z_VMLP), I_LINEAR, N_ALL, VF(fc2_w), 0, 0},
    {VT "encoder.layers.%d.mlp.fc2.bias", L_VIS, S1(Z_VW), I_BIAS, N_ALL, VF(fc2_b), 0, 0},
    {VT "post_layernorm.weight", L_NONE, S1(Z_VW), I_LN_W, N_ALL, WF(post_w), 0, 0},
    {VT "post_layernorm.bias", L_NONE, S1(Z_VW), I_LN_B, N_ALL, WF(post_b), 0, 0},
    {"paligemma_with_expert.paligemma.model.multi_modal_projector.linear.weight", L_NONE, S2(Z_D, Z_VW), I_LINEAR, N_ALL, WF(proj_w), 0, 0},
    {"paligemma_with_expert.paligemma.model.multi_modal_projector.linear.bias", L_NONE, S1(Z_D), I_BIAS, N_ALL, WF(proj_b), 0, 0},
    /* Gemma prefix LLM */
    {LM "embed_tokens.weight", L_NONE, S2(Z_VOCAB, Z_D), I_EMBED, N_ALL, D_EMBED, 0, 0},
    {LM "layers.%d.input_layernorm.weight", L_LLM, S1(Z_D), I_RMS, N_ALL, GF(ln_attn), 0, 0},
    {LM "layers.%d.self_attn.q_proj.weight", L_LLM, S2(Z_Q, Z_D), I_LINEAR, N_ALL, GF(qkv), 0, Z_QKV},
    {LM "layers.%d.self_attn.k_proj.weight", L_LLM, S2(Z_KV, Z_D), I_LINEAR, N_ALL, GF(qkv), Z_QKV_K, Z_QKV},
    {LM "layers.%d.self_attn.v_proj.weight", L_LLM, S2(Z_KV, Z_D), I_LINEAR, N_ALL, GF(qkv), Z_QKV_V, Z_QKV},
    {LM "layers.%d.self_attn.o_proj.weight", L_LLM, S2(Z_D, Z_Q), I_LINEAR, N_ALL, GF(o), 0, 0},
    {LM "layers.%d.post_attention_layernorm.weight", L_LLM, S1(Z_D), I_RMS, N_ALL, GF(ln_ffw), 0, 0},
    {LM "layers.%d.mlp.gate_proj.weight", L_LLM, S2(Z_FF, Z_D), I_LINEAR, N_ALL, GF(gate_up), 0, Z_2FF},
    {LM "layers.%d.mlp.up_proj.weight", L_LLM, S2(Z_FF, Z_D), I_LINEAR, N_ALL, GF(gate_up), Z_FF, Z_2FF},
    {LM "layers.%d.mlp.down_proj.weight", L_LLM, S2(Z_D, Z_FF), I_LINEAR, N_ALL, GF(down), 0, 0},
    {LM "norm.weight", L_NONE, S1(Z_D), I_RMS, N_ALL, WF(llm_norm), 0, 0},
    /* action expert */
    {EX "layers.%d.input_layernorm.weight", L_EXP, S1(Z_WE), I_RMS, N_FLOW, GF(ln_attn), 0, 0},
    {EX "layers.%d.self_attn.q_proj.weight", L_EXP, S2(Z_Q, Z_WE), I_LINEAR, N_FLOW, GF(qkv), 0, Z_QKV},
    {EX "layers.%d.self_attn.k_proj.weight", L_EXP, S2(Z_KV, Z_WE), I_LINEAR, N_FLOW, GF(qkv), Z_QKV_K, Z_QKV},
    {EX "layers.%d.self_attn.v_proj.weight", L_EXP, S2(Z_KV, Z_WE), I_LINEAR, N_FLOW, GF(qkv), Z_QKV_V, Z_QKV},
    {EX "layers.%d.self_attn.o_proj.weight", L_EXP, S2(Z_WE, Z_Q), I_LINEAR, N_FLOW, GF(o), 0, 0},
    {EX "layers.%d.post_attention_layernorm.weight", L_EXP, S1(Z_WE), I_RMS, N_FLOW, GF(ln_ffw), 0, 0},
    {EX "layers.%d.mlp.gate_proj.weight", L_EXP, S2(Z_FFE, Z_WE), I_LINEAR, N_FLOW, GF(gate_up), 0, Z_2FFE},
    {EX "layers.%d.mlp.up_proj.weight", L_EXP, S2(Z_FFE, Z_WE), I_LINEAR, N_FLOW, GF(gate_up), Z_FFE, Z_2FFE},
    {EX "layers.%d.mlp.down_proj.weight", L_EXP, S2(Z_WE, Z_FFE), I_LINEAR, N_FLOW, GF(down), 0, 0},
    {EX "norm.weight", L_NONE, S1(Z_WE), I_RMS, N_FLOW, WF(exp_norm), 0, 0},
    /* pi0 heads */
    {"state_proj.weight", L_NONE, S2(Z_WE, Z_A), I_LINEAR, N_FLOW, WF(state_w), 0, 0},
    {"state_proj.bias", L_NONE, S1(Z_WE), I_BIAS, N_FLOW, WF(state_b), 0, 0},
    {"action_in_proj.weight", L_NONE, S2(Z_WE, Z_A), I_LINEAR, N_FLOW, WF(act_in_w), 0, 0},
    {"action_in_proj.bias", L_NONE, S1(Z_WE), I_BIAS, N_FLOW, WF(act_in_b), 0, 0},
    {"action_time_mlp_in.weight", L_NONE, S2(Z_WE, Z_2WE), I_LINEAR, N_FLOW, D_MLP_IN_W, 0, 0},
    {"action_time_mlp_in.bias", L_NONE, S1(Z_WE), I_BIAS, N_FLOW, D_MLP_IN_B, 0, 0},
    {"action_time_mlp_out.weight", L_NONE, S2(Z_WE, Z_WE), I_LINEAR, N_FLOW, WF(mlp_out_w), 0, 0},
    {"action_time_mlp_out.bias", L_NONE, S1(Z_WE), I_BIAS, N_FLOW, WF(mlp_out_b), 0, 0},
    {"action_out_proj.weight", L_NONE, S2(Z_A, Z_WE), I_LINEAR, N_FLOW, WF(act_out_w), 0, 0},
    {"action_out_proj.bias", L_NONE, S1(Z_A), I_BIAS, N_FLOW, WF(act_out_b), 0, 0},
    /* regression head (ours; docs/checkpoints.md) */
    {"reg_head.in_proj.weight", L_NONE, S2(Z_R, Z_D), I_LINEAR, N_REG, WF(reg_in_w), 0, 0},
    {"reg_head.in_proj.bias", L_NONE, S1(Z_R), I_BIAS, N_REG, WF(reg_in_b), 0, 0},
    {"reg_head.state_proj.weight", L_NONE, S2(Z_R, Z_A), I_LINEAR, N_REG, WF(reg_state_w), 0, 0},
    {"reg_head.state_proj.bias", L_NONE, S1(Z_R), I_BIAS, N_REG, WF(reg_state_b), 0, 0},
    {"reg_head.fc.weight", L_NONE, S2(Z_R, Z_R), I_LINEAR, N_REG, WF(reg_fc_w), 0, 0},
    {"reg_head.fc.bias", L_NONE, S1(Z_R), I_BIAS, N_REG, WF(reg_fc_b), 0, 0},
    {"reg_head.out_proj.weight", L_NONE, S2(Z_HA, Z_R), I_LINEAR, N_REG, WF(reg_out_w), 0, 0},
    {"reg_head.out_proj.bias", L_NONE, S1(Z_HA), I_BIAS, N_REG, WF(reg_out_b), 0, 0},
    /* sensor history (ours) */
    {"sensor_history_proj.weight", L_NONE, S2(Z_HW, Z_HIST), I_LINEAR, N_HIST, WF(hist_w), 0, 0},
    {"sensor_history_proj.bias", L_NONE, S1(Z_HW), I_BIAS, N_HIST, WF(hist_b), 0, 0},
};
#define N_ROWS ((int)(sizeof(table) / sizeof(table[0])))
/* Fields of rtv_weights (pointers) minus the 3 layer arrays, plus 12 + 6 per-layer fields:
 * every one must have a table row (the split mlp_in adds mlp_in_a + time_bias). */
_Static_assert(sizeof(rtv_weights) / sizeof(void *) == 32, "rtv_weights changed: update table");
_Static_assert(sizeof(rtv_vis_layer) / sizeof(void *) == 12, "rtv_vis_layer changed");
_Static_assert(sizeof(rtv_gemma_layer) / sizeof(void *) == 6, "rtv_gemma_layer changed");

static const char *const lm_head_name = "paligemma_with_expert.paligemma.lm_head.weight";

int rtv_weights_head_width(const rtv_model_cfg *c)
{
    return c->head == RTV_HEAD_FLOW ? c->exp_width : c->reg_hidden;
}

static int row_needed(const rtv_model_cfg *c, const wrow *r, int all_heads)
{
    switch (r->need) {
    case N_FLOW: return all_heads || c->head == RTV_HEAD_FLOW;
    case N_REG: return all_heads || c->head == RTV_HEAD_REGRESSION;
    case N_HIST: return c->history > 0;
    default: return 1;
    }
}

static int row_layers(const rtv_model_cfg *c, const wrow *r)
{
    return r->layers == L_NONE ? 1 : r->layers == L_VIS ? c->vis_depth : c->llm_depth;
}

static int row_shape(const rtv_model_cfg *c, const wrow *r, int64_t *shape)
{
    int n = 0;
    while (n < 4 && r->shape[n]) {
        shape[n] = dim_of(c, r->shape[n]);
        n++;
    }
    return n;
}

static int64_t numel_of(const int64_t *shape, int n)
{
    int64_t e = 1;
    for (int i = 0; i < n; i++)
        e *= shape[i];
    return e;
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "(");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, n == 1 ? ",)" : ")");
}

/* ---- random values ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}


typedef struct rgen {
    uint64_t key;
    float scale, offset;
} rgen;

static rgen rgen_for(const rtv_model_cfg *c, uint64_t seed, const wrow *r, const char *name)
{
    int64_t shape[4];
    int n = row_shape(c, r, shape);
    int64_t fan_in = n > 1 ? numel_of(shape, n) / shape[0] : 1;
    rgen g = {mix64(seed ^ fnv1a64(name)), 1.0f, 0.0f};
    switch (r->init) {
    case I_LINEAR: g.scale = (float)(1.0 / sqrt((double)fan_in)); break;
    case I_BIAS: g.scale = 0.05f; break;
    case I_RMS: g.scale = 0.1f; break;
    case I_LN_W: g.scale = 0.1f; g.offset = 1.0f; break;
    case I_LN_B: g.scale = 0.05f; break;
    case I_EMBED: g.scale = (float)(1.0 / sqrt((double)c->llm_width)); break;
    case I_POS: g.scale = 0.5f; break;
    }
    return g;
}

static float rgen_at(const rgen *g, uint64_t i)
{
    uint64_t z = mix64(g->key + (i + 1) * 0x9E3779B97F4A7C15ull);
    double u = ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0) * 2.0 - 1.0; /* (-1, 1) */
    float v = (float)(g->offset + g->scale * u * 1.7320508075688772);
    return rtv_bf16_to_f32(rtv_f32_to_bf16(v));
}

typedef struct rgen_part {
    const rgen *g;
    float *out;
    int64_t i0, i1;
} rgen_part;

static void *rgen_part_main(void *arg)
{
    const rgen_part *pt = arg;
    for (int64_t i = pt->i0; i < pt->i1; i++)
        pt->out[i] = rgen_at(pt->g, (uint64_t)i);
    return NULL;
}

/* Element i depends only on (key, i): large tensors are filled by several threads (pi0 has
 * 3.5 G values; one core takes about a minute). Init-time only. */
static void rgen_fill(const rgen *g, float *out, int64_t n)
{
    enum { MAX_T = 16 };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = n < (1 << 20) ? 1 : (int)(cpus < 1 ? 1 : cpus > MAX_T ? MAX_T : cpus);
    rgen_part parts[MAX_T];
    pthread_t th[MAX_T];
    int started[MAX_T] = { 0 };
    for (int t = 0; t < nt; t++)
        parts[t] = (rgen_part){ g, out, n * t / nt, n * (t + 1) / nt };
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&th[t], NULL, rgen_part_main, &parts[t]) == 0;
    rgen_part_main(&parts[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            rgen_part_main(&parts[t]); /* could not start a thread: do its part here */
    }
}

/* ---- destination slots ---- */

static const void **dst_slot(rtv_policy *p, const wrow *r, int layer)
{
    char *base;
    switch (r->layers) {
    case L_VIS: base = (char *)&p->vis_layers[layer]; break;
    case L_LLM: base = (char *)&p->llm_layers[layer]; break;
    case L_EXP: base = (char *)&p->exp_layers[layer]; break;
    default: base = (char *)&p->w; break;
    }
    return (const void **)(base + r->dst);
}

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Carves every needed weight slot out of one arena (dry: only sums the bytes). */
static int layout(rtv_policy *p, int dry, size_t *total)
{
    const rtv_model_cfg *c = &p->cfg;
    size_t wsz = rtv_dtype_size(p->b->w_dt), sum = 0;
    for (int i = 0; i < N_ROWS; i++) {
        const wrow *r = &table[i];
        if (!row_needed(c, r, 0) || r->dst == D_EMBED || r->dst == D_MLP_IN_W ||
            r->dst == D_MLP_IN_B || r->row_off)
            continue; /* fused pieces after the first share the first one's slot */
        int64_t shape[4];
        int n = row_shape(c, r, shape);
        int64_t numel = numel_of(shape, n);
        if (r->fused_rows)
            numel = numel / shape[0] * dim_of(c, r->fused_rows);
        size_t bytes = align256((size_t)numel * wsz);
        for (int l = 0; l < row_layers(c, r); l++) {
            sum += bytes;
            if (!dry) {
                void *ptr = rtv_arena_take(&p->w_arena, bytes);
                if (!ptr)
                    return rtv_fail_prefix(RTV_E_NOMEM, "weights");
                *dst_slot(p, r, l) = ptr;
            }
        }
    }
    if (c->head == RTV_HEAD_FLOW) {
        size_t b1 = align256((size_t)c->exp_width * c->exp_width * wsz);
        size_t b2 = align256((size_t)c->steps * c->exp_width * wsz);
        sum += b1 + b2;
        if (!dry) {
            p->w.mlp_in_a = rtv_arena_take(&p->w_arena, b1);
            p->w.time_bias = rtv_arena_take(&p->w_arena, b2);
            if (!p->w.mlp_in_a || !p->w.time_bias)
                return rtv_fail_prefix(RTV_E_NOMEM, "weights");
        }
    }
    *total = sum;
    return RTV_OK;
}

static int alloc_weights(rtv_policy *p)
{
    const rtv_model_cfg *c = &p->cfg;
    size_t total;
    p->exp_norms_folded = c->head == RTV_HEAD_FLOW && p->b->rms_rope && p->b->rms_geglu;
    const char *pf = getenv("RTV_PREFIX_FOLD"); /* 0: the prefix runs its norms (comparing) */
    p->llm_norms_folded = p->b->rms_rope && p->b->rms_geglu && !(pf && pf[0] == '0');
    const char *pfull = getenv("RTV_PREFIX_FULL");
    p->prefix_full = pfull && pfull[0] == '1';
    p->vis_layers = calloc((size_t)c->vis_depth, sizeof(*p->vis_layers));
    p->llm_layers = calloc((size_t)c->llm_depth, sizeof(*p->llm_layers));
    p->exp_layers = calloc((size_t)c->llm_depth, sizeof(*p->exp_layers));
    if (!p->vis_layers || !p->llm_layers || !p->exp_layers)
        return rtv_fail(RTV_E_NOMEM, "weights: out of memory for the layer tables");
    p->w.vis = p->vis_layers;
    p->w.llm = p->llm_layers;
    p->w.exp = p->exp_layers;
    layout(p, 1, &total);
    int st = rtv_arena_init(&p->w_arena, p->b, total);
    if (st)
        return rtv_fail_prefix(st, "weights (%zu bytes)", total);
    return layout(p, 0, &total);
}

static void to_f32(float *out, const void *src, rtv_dtype dt, int64_t n);

/* The norms folded into the GEMMs after them (p->exp_norms_folded for the expert,
 * p->llm_norms_folded for the prefix LLM, set where the backend has rms_rope and rms_geglu):
 * column k of q/k/v and of gate/up is multiplied by (1 + w[k]) of the RMSNorm before it, in
 * fp32 before the backend stores it, and the norm's row scale runs after the GEMM (backend.h).
 * The norm's own weight is still uploaded, unused. fold_ln holds each layer's two norm weights
 * in fp32 as they are put (the table lists every layer's norm before the GEMM rows that read
 * it): [0 prefix, 1 expert][layer][0 attention, 1 MLP][fold_width]. */
static int fold_width(const rtv_model_cfg *c)
{
    return c->llm_width > c->exp_width ? c->llm_width : c->exp_width;
}

/* The slot of row r in fold_ln (-1: r is not folded). */
static int fold_slot(const rtv_policy *p, const wrow *r, int l)
{
    int t;
    if (r->layers == L_LLM && p->llm_norms_folded) t = 0;
    else if (r->layers == L_EXP && p->exp_norms_folded) t = 1;
    else return -1;
    int k;
    if (r->dst == GF(ln_attn) || r->dst == GF(qkv)) k = 0;
    else if (r->dst == GF(ln_ffw) || r->dst == GF(gate_up)) k = 1;
    else return -1;
    return (t * p->cfg.llm_depth + l) * 2 + k;
}

/* Uploads n host values (dtype dt) into the slot of row r, layer l, at the row's offset;
 * fold_ln (NULL: no folding) as above. */
static int put(rtv_policy *p, const wrow *r, int l, const void *src, rtv_dtype dt, int64_t n,
               int64_t rows, float *fold_ln)
{
    const void *slot = *dst_slot(p, r, l);
    const int64_t cols = n / rows, off = r->row_off ? dim_of(&p->cfg, r->row_off) * cols : 0;
    void *dst = (void *)rtv_w_at(p->b, slot, (size_t)off);
    const int k = fold_ln ? fold_slot(p, r, l) : -1;
    if (k < 0) return p->b->upload_weight(dst, src, dt, (size_t)n);
    const int we = r->layers == L_LLM ? p->cfg.llm_width : p->cfg.exp_width;
    float *nw = fold_ln + (size_t)k * fold_width(&p->cfg);
    if (r->dst == GF(ln_attn) || r->dst == GF(ln_ffw)) {
        to_f32(nw, src, dt, n); /* n == we: the shape was checked */
        return p->b->upload_weight(dst, src, dt, (size_t)n);
    }
    float *w = malloc((size_t)n * sizeof(float));
    if (!w) {
        char name[256];
        snprintf(name, sizeof(name), r->name, l);
        return rtv_fail(RTV_E_NOMEM, "weights: out of memory folding the norm into '%s'", name);
    }
    to_f32(w, src, dt, n);
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < we; j++) w[i * cols + j] *= 1.0f + nw[j];
    int st = p->b->upload_weight(dst, w, RTV_DT_F32, (size_t)n);
    free(w);
    return st;
}

/* fold_ln for p (NULL with *st = RTV_OK where nothing is folded). */
static float *fold_ln_new(const rtv_policy *p, int *st)
{
    *st = RTV_OK;
    if (!p->exp_norms_folded && !p->llm_norms_folded) return NULL;
    float *f = calloc((size_t)2 * p->cfg.llm_depth * 2 * fold_width(&p->cfg), sizeof(float));
    if (!f) *st = rtv_fail(RTV_E_NOMEM, "weights: out of memory for the norm weights");
    return f;
}

/* Splits action_time_mlp_in (We, 2 We) into its action half and the per-step time bias:
 * time_bias[k] = W[:, We:] . posemb(t_k, We) + b with t_k = 1 - k / steps (double sums). */
static int fold_time_mlp(rtv_policy *p, const float *w_in, const float *b_in)
{
    const rtv_model_cfg *c = &p->cfg;
    int we = c->exp_width;
    float *a = malloc((size_t)we * we * sizeof(float));
    float *tb = malloc((size_t)c->steps * we * sizeof(float));
    double *pe = malloc((size_t)we * sizeof(double));
    int st = RTV_E_NOMEM;
    if (!a || !tb || !pe) {
        rtv_fail(RTV_E_NOMEM, "weights: out of memory folding action_time_mlp_in");
        goto out;
    }
    for (int r = 0; r < we; r++)
        memcpy(a + (size_t)r * we, w_in + (size_t)r * 2 * we, (size_t)we * sizeof(float));
    for (int k = 0; k < c->steps; k++) {
        rtv_flow_posemb(rtv_flow_time(k, c->steps), we, pe);
        for (int r = 0; r < we; r++) {
            double acc = b_in[r];
            const float *wr = w_in + (size_t)r * 2 * we + we;
            for (int j = 0; j < we; j++)
                acc += (double)wr[j] * pe[j];
            tb[(size_t)k * we + r] = (float)acc;
        }
    }
    if ((st = p->b->upload_weight((void *)p->w.mlp_in_a, a, RTV_DT_F32, (size_t)we * we)))
        goto out;
    st = p->b->upload_weight((void *)p->w.time_bias, tb, RTV_DT_F32, (size_t)c->steps * we);
out:
    free(a);
    free(tb);
    free(pe);
    return st;
}

static void to_f32(float *out, const void *src, rtv_dtype dt, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == RTV_DT_F32)
            memcpy(&out[i], (const char *)src + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const char *)src + 2 * i, 2);
            out[i] = dt == RTV_DT_BF16 ? rtv_bf16_to_f32(h) : rtv_f16_to_f32(h);
        }
    }
}

/* ---- loading ---- */

static const rtv_st_tensor *lookup(const rtv_safetensors *st, const char *name, char *used_name,
                                   size_t cap)
{
    const rtv_st_tensor *t = rtv_st_find(st, name);
    snprintf(used_name, cap, "%s", name);
    if (!t) {
        snprintf(used_name, cap, "model.%s", name);
        t = rtv_st_find(st, used_name);
        if (!t)
            snprintf(used_name, cap, "%s", name);
    }
    return t;
}

static int tensor_index(const rtv_safetensors *st, const rtv_st_tensor *t)
{
    for (int i = 0, n = rtv_st_count(st); i < n; i++)
        if (rtv_st_at(st, i) == t)
            return i;
    return -1;
}

int rtv_weights_load(rtv_policy *p, rtv_safetensors *st)
{
    const rtv_model_cfg *c = &p->cfg;
    const char *path = rtv_st_path(st);
    int n_t = rtv_st_count(st), ret;
    char name[256], used[272], want[96], got[96];
    float *mlp_w = NULL, *mlp_b = NULL, *fold_ln = NULL;
    char *mark = calloc((size_t)n_t + 1, 1); /* 1 used, 2 known but not needed here */
    if (!mark)
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
    if ((ret = alloc_weights(p)) || (fold_ln = fold_ln_new(p, &ret), ret))
        goto out;

    for (int i = 0; i < N_ROWS; i++) {
        const wrow *r = &table[i];
        int needed = row_needed(c, r, 0);
        for (int l = 0; l < row_layers(c, r); l++) {
            snprintf(name, sizeof(name), r->name, l);
            const rtv_st_tensor *t = lookup(st, name, used, sizeof(used));
            if (!t && r->dst == D_EMBED)
                t = lookup(st, lm_head_name, used, sizeof(used)); /* tied embedding */
            if (!needed) {
                if (t)
                    mark[tensor_index(st, t)] = 2;
                continue;
            }
            int64_t shape[4];
            int nd = row_shape(c, r, shape);
            shape_str(want, sizeof(want), shape, nd);
            if (!t) {
                ret = rtv_fail(RTV_E_INPUT, "%s: missing tensor '%s' (expected shape %s, "
                               "bf16/f16/f32)", path, name, want);
                goto out;
            }
            mark[tensor_index(st, t)] = 1;
            int same = t->ndim == nd;
            for (int d = 0; same && d < nd; d++)
                same = t->shape[d] == shape[d];
            if (!same) {
                int64_t ts[RTV_ST_MAX_DIMS];
                for (int d = 0; d < t->ndim; d++)
                    ts[d] = t->shape[d];
                shape_str(got, sizeof(got), ts, t->ndim);
                ret = rtv_fail(RTV_E_INPUT, "%s: tensor '%s' is %s, expected %s (preset '%s')",
                               path, used, got, want, c->preset);
                goto out;
            }
            if (!t->dtype_ok) {
                ret = rtv_fail(RTV_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s, expected "
                               "BF16, F16 or F32", path, used, t->dtype_name);
                goto out;
            }
            const void *data = rtv_st_data(st, t);
            if (!data) {
                ret = rtv_fail_prefix(RTV_E_INPUT, "%s: tensor '%s'", path, used);
                goto out;
            }
            int64_t n = numel_of(shape, nd);
            if (r->dst == D_EMBED) {
                p->embed.st = st;
                p->embed.t = t;
            } else if (r->dst == D_MLP_IN_W || r->dst == D_MLP_IN_B) {
                float **dst = r->dst == D_MLP_IN_W ? &mlp_w : &mlp_b;
                if (!(*dst = malloc((size_t)n * sizeof(float)))) {
                    ret = rtv_fail(RTV_E_NOMEM, "%s: out of memory for '%s'", path, used);
                    goto out;
                }
                to_f32(*dst, data, t->dt, n);
            } else if ((ret = put(p, r, l, data, t->dt, n, shape[0], fold_ln))) {
                rtv_fail_prefix(ret, "%s: uploading '%s'", path, used);
                goto out;
            }
        }
    }
    if (c->head == RTV_HEAD_FLOW && (ret = fold_time_mlp(p, mlp_w, mlp_b)))
        goto out;

    int n_unused = 0, n_other = 0;
    char list[512] = "";
    size_t o = 0;
    for (int i = 0; i < n_t; i++) {
        if (mark[i] == 2)
            n_other++;
        if (mark[i])
            continue;
        if (n_unused++ < 3 && o < sizeof(list))
            o += (size_t)snprintf(list + o, sizeof(list) - o, "%s'%s'", n_unused > 1 ? ", " : "",
                                  rtv_st_at(st, i)->name);
    }
    if (n_unused)
        fprintf(stderr, "rtvla: %s: %d tensor%s unused (%s%s)\n", path, n_unused,
                n_unused > 1 ? "s" : "", list, n_unused > 3 ? ", ..." : "");
    (void)n_other; /* tensors of the other head / history: skipped without a note */
    ret = RTV_OK;
out:
    free(mark);
    free(mlp_w);
    free(mlp_b);
    free(fold_ln);
    return ret;
}

int rtv_weights_random(rtv_policy *p, uint64_t seed)
{
    const rtv_model_cfg *c = &p->cfg;
    char name[256];
    float *buf = NULL, *mlp_w = NULL, *mlp_b = NULL, *fold_ln = NULL;
    int ret;
    if ((ret = alloc_weights(p)) || (fold_ln = fold_ln_new(p, &ret), ret))
        return ret;
    p->embed.st = NULL;
    p->embed.seed = seed;
    for (int i = 0; i < N_ROWS; i++) {
        const wrow *r = &table[i];
        if (!row_needed(c, r, 0) || r->dst == D_EMBED)
            continue;
        int64_t shape[4];
        int nd = row_shape(c, r, shape);
        int64_t n = numel_of(shape, nd);
        for (int l = 0; l < row_layers(c, r); l++) {
            snprintf(name, sizeof(name), r->name, l);
            float *data = malloc((size_t)n * sizeof(float));
            if (!data) {
                ret = rtv_fail(RTV_E_NOMEM, "random weights: out of memory for '%s'", name);
                goto out;
            }
            rgen g = rgen_for(c, seed, r, name);
            rgen_fill(&g, data, n);
            if (r->dst == D_MLP_IN_W) {
                mlp_w = data;
            } else if (r->dst == D_MLP_IN_B) {
                mlp_b = data;
            } else {
                buf = data;
                ret = put(p, r, l, data, RTV_DT_F32, n, shape[0], fold_ln);
                free(buf);
                buf = NULL;
                if (ret)
                    goto out;
            }
        }
    }
    if (c->head == RTV_HEAD_FLOW)
        ret = fold_time_mlp(p, mlp_w, mlp_b);
out:
    free(mlp_w);
    free(mlp_b);
    free(fold_ln);
    return ret;
}

int rtv_weights_write_random(const rtv_model_cfg *cfg, uint64_t seed, rtv_dtype dt,
                             const char *path)
{
    rtv_st_writer *w;
    char name[256];
    int ret, n_bufs = 0, cap = 0;
    void **bufs = NULL;
    if (dt != RTV_DT_F32 && dt != RTV_DT_BF16 && dt != RTV_DT_F16)
        return rtv_fail(RTV_E_ARG, "%s: dtype must be bf16, f16 or f32", path);
    if ((ret = rtv_st_writer_new(&w)))
        return ret;
    for (int i = 0; i < N_ROWS && !ret; i++) {
        const wrow *r = &table[i];
        if (!row_needed(cfg, r, 1))
            continue;
        int64_t shape[4];
        int nd = row_shape(cfg, r, shape);
        int64_t n = numel_of(shape, nd);
        for (int l = 0; l < row_layers(cfg, r) && !ret; l++) {
            snprintf(name, sizeof(name), r->name, l);
            if (n_bufs == cap) {
                cap = cap ? 2 * cap : 256;
                void **nb = realloc(bufs, (size_t)cap * sizeof(*bufs));
                if (!nb) {
                    ret = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
                    break;
                }
                bufs = nb;
            }
            void *data = malloc((size_t)n * rtv_dtype_size(dt));
            if (!data) {
                ret = rtv_fail(RTV_E_NOMEM, "%s: out of memory for '%s'", path, name);
                break;
            }
            bufs[n_bufs++] = data;
            rgen g = rgen_for(cfg, seed, r, name);
            for (int64_t k = 0; k < n; k++) {
                float v = rgen_at(&g, (uint64_t)k);
                if (dt == RTV_DT_F32)
                    ((float *)data)[k] = v;
                else
                    ((uint16_t *)data)[k] = dt == RTV_DT_BF16 ? rtv_f32_to_bf16(v)
                                                              : rtv_f32_to_f16(v);
            }
            ret = rtv_st_writer_add(w, name, dt, nd, shape, data);
        }
    }
    if (!ret)
        ret = rtv_st_writer_finish(w, path);
    else
        rtv_st_writer_free(w);
    for (int i = 0; i < n_bufs; i++)
        free(bufs[i]);
    free(bufs);
    return ret;
}

int rtv_weights_embed_row(const rtv_policy *p, int id, float *out)
{
    const rtv_model_cfg *c = &p->cfg;
    int d = c->llm_width;
    float s = (float)sqrt((double)d);
    if (id < 0 || id >= c->vocab)
        return rtv_fail(RTV_E_ARG, "token id %d is outside the embedding table (vocab %d)", id,
                        c->vocab);
    if (p->embed.st) {
        const char *base = rtv_st_data(p->embed.st, p->embed.t);
        if (!base)
            return rtv_fail_prefix(RTV_E_INPUT, "embedding table");
        size_t es = rtv_dtype_size(p->embed.t->dt);
        to_f32(out, base + (size_t)id * d * es, p->embed.t->dt, d);
    } else {
        const wrow *r = NULL;
        for (int i = 0; i < N_ROWS && !r; i++)
            if (table[i].dst == D_EMBED)
                r = &table[i];
        rgen g = rgen_for(c, p->embed.seed, r, r->name);
        for (int j = 0; j < d; j++)
            out[j] = rgen_at(&g, (uint64_t)id * d + j);
    }
    for (int j = 0; j < d; j++)
        out[j] *= s;
    return RTV_OK;
}

void rtv_weights_print_table(const rtv_model_cfg *cfg, void *file)
{
    FILE *f = file;
    static const char *const need_name[] = {"all", "flow", "regression", "history"};
    char name[256], shp[96];
    for (int i = 0; i < N_ROWS; i++) {
        const wrow *r = &table[i];
        int64_t shape[4];
        int nd = row_shape(cfg, r, shape);
        shape_str(shp, sizeof(shp), shape, nd);
        int nl = row_layers(cfg, r);
        char one[256];
        snprintf(one, sizeof(one), r->name, 0);
        snprintf(name, sizeof(name), "%s", one);
        char *d = r->layers != L_NONE ? strstr(one, ".0.") : NULL;
        if (d)
            snprintf(name, sizeof(name), "%.*s.{0..%d}.%s", (int)(d - one), one, nl - 1, d + 3);
        fprintf(f, "%-96s %-18s %s%s\n", name, shp, need_name[r->need],
                row_needed(cfg, r, 0) ? "" : " (not used by this config)");
    }
}
