/* runtime/normstats.h — state/action normalization statistics and their file formats.
 *
 * Sources (searched in this order by rtv_normstats_load_dir):
 *   LeRobot: policy_preprocessor.json + policy_preprocessor_step_<k>_normalizer_processor
 *            .safetensors (tensors observation.state.{mean,std,q01,q99,min,max}) and
 *            policy_postprocessor_step_<k>_unnormalizer_processor.safetensors (action.*);
 *   openpi:  norm_stats.json, or assets/<asset_id>/norm_stats.json:
 *            {"norm_stats": {"state": {"mean","std","q01","q99"}, "actions": {...}}}.
 * Formulas follow the source (shared/specs/pi0.md 4.3): openpi z-score uses std + 1e-6,
 * LeRobot std + 1e-8; quantile maps [q01, q99] to [-1, 1]. Normalized vectors are zero-padded
 * to the model's action_dim after normalization.
 */
#ifndef RTV_NORMSTATS_H
#define RTV_NORMSTATS_H

#define RTV_MAX_DOF 32

typedef enum rtv_norm_mode {
    RTV_NORM_MEAN_STD = 0, /* z-score (pi0) */
    RTV_NORM_QUANTILE = 1, /* q01/q99 (pi0.5) */
    RTV_NORM_IDENTITY = 2, /* no stats */
} rtv_norm_mode;

/* Whose formulas apply (shared/specs/pi0.md 4.3): they differ in where eps goes. */
typedef enum rtv_norm_src {
    RTV_NORM_SRC_OPENPI = 0,  /* (x-mean)/(std+eps), inverse x*(std+eps)+mean; quantile with
                               * (q99-q01+eps) both ways */
    RTV_NORM_SRC_LEROBOT = 1, /* (x-mean)/(std+eps), inverse x*std+mean; quantile denominator
                               * q99-q01, replaced by eps only where it is 0 */
} rtv_norm_src;

typedef struct rtv_norm_stats {
    rtv_norm_mode mode;
    rtv_norm_src src;
    float eps;             /* 1e-6 (openpi) or 1e-8 (LeRobot) */
    int dof;               /* real dims of state and actions */
    int state_dof;         /* may differ from action dof in some datasets; 0 = dof */
    float state_mean[RTV_MAX_DOF], state_std[RTV_MAX_DOF];
    float state_q01[RTV_MAX_DOF], state_q99[RTV_MAX_DOF];
    float action_mean[RTV_MAX_DOF], action_std[RTV_MAX_DOF];
    float action_q01[RTV_MAX_DOF], action_q99[RTV_MAX_DOF];
    char source[256];      /* file the stats came from */
} rtv_norm_stats;

/* Identity stats for dof dims. */
void rtv_normstats_identity(rtv_norm_stats *s, int dof);
/* Finds and loads stats in a checkpoint directory, first match wins: LeRobot
 * (dir/policy_preprocessor.json), dir/norm_stats.json, dir/assets/<id>/norm_stats.json (only
 * one asset id may have one). RTV_E_INPUT when none is found (message lists the places
 * searched) or a file is malformed (names the file and the field). */
int rtv_normstats_load_dir(rtv_norm_stats *s, const char *dir, rtv_norm_mode mode);
/* openpi norm_stats.json: "mean" and "std" are required for MEAN_STD, "q01" and "q99" for
 * QUANTILE (null counts as missing); fields present but not needed are still checked. */
int rtv_normstats_load_openpi(rtv_norm_stats *s, const char *json_path, rtv_norm_mode mode);
/* LeRobot processor files in dir: policy_preprocessor.json's normalizer_processor step gives
 * the state stats (its "state_file", tensors "<STATE feature>.<stat>"), and
 * policy_postprocessor.json's unnormalizer_processor step the action stats. The files' norm_map
 * must agree with mode (IDENTITY asks for none); eps comes from the step config. */
int rtv_normstats_load_lerobot(rtv_norm_stats *s, const char *dir, rtv_norm_mode mode);
int rtv_normstats_write_openpi(const rtv_norm_stats *s, const char *json_path);
/* Checks that the stats fit a model of `dof` real dims (<= action_dim). */
int rtv_normstats_check(const rtv_norm_stats *s, int dof, int action_dim, const char *what);

/* raw[state dof] -> out[padded] (normalized, zero-padded). Real-time safe. */
void rtv_normstats_state(const rtv_norm_stats *s, const float *raw, float *out, int padded);
/* in[n_steps][padded] normalized -> out[n_steps][dof] raw units. Real-time safe. */
void rtv_normstats_unnorm_actions(const rtv_norm_stats *s, const float *in, int padded,
                                  int n_steps, float *out);

#endif
