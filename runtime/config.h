/* runtime/config.h — the configuration file, as one table of keys, frozen at start.
 *
 * One static table (runtime/config.c) lists every key: dotted path, type, default, range or
 * choices, unit and one-line doc. The YAML parser (libcyaml), `--set key.path=value`
 * overrides, validation (errors name the file, the key path and what was expected; unknown
 * keys are rejected), `rtvla config` and configs/README.md all come from that table.
 * rtv_config_load() fills a plain rtv_config; after start, threads read it as a const snapshot.
 * Fields added here must be added to the table too (a static assert counts them).
 */
#ifndef RTV_CONFIG_H
#define RTV_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/model_cfg.h"

#define RTV_PATH_MAX 512
#define RTV_MAX_CAMERAS 8
#define RTV_MAX_MOTORS 16

typedef enum rtv_stale_policy { RTV_STALE_HOLD, RTV_STALE_CONTINUE, RTV_STALE_STOP } rtv_stale_policy;
typedef enum rtv_aggregate { RTV_AGG_LATEST, RTV_AGG_ENSEMBLE } rtv_aggregate;
typedef enum rtv_torque_exit { RTV_TORQUE_OFF, RTV_TORQUE_HOLD } rtv_torque_exit;
typedef enum rtv_split_mode { RTV_SPLIT_OFF, RTV_SPLIT_STREAMS, RTV_SPLIT_GREEN, RTV_SPLIT_MPS } rtv_split_mode;

typedef struct rtv_camera_cfg {
    char name[32];             /* view name, e.g. "base_0_rgb" */
    char source[RTV_PATH_MAX]; /* "synthetic", "file:PATH", or a V4L2 device "/dev/videoN" */
    int width, height, fps;
    int max_age_ms;            /* a frame older than this is not used */
} rtv_camera_cfg;

typedef struct rtv_config {
    char path[RTV_PATH_MAX];   /* file it came from ("<embedded default>" for none) */

    struct {
        char preset[32];                 /* "pi0" | "pi0-tiny": fills m, then keys override */
        rtv_model_cfg m;
        char checkpoint[RTV_PATH_MAX];   /* checkpoint dir, or "random" for seeded weights */
        char backend[16];                /* "cpu" | "cuda" */
        uint64_t seed;                   /* random weights and flow noise */
    } model;

    struct {
        char type[16];                   /* "so100" | "so101" | "koch" */
        char port[RTV_PATH_MAX];         /* "/dev/ttyACM0", ..., or "sim" */
        int baud;                        /* 1000000 */
        char calibration[RTV_PATH_MAX];  /* LeRobot calibration JSON ("" = sim default) */
        int n_motors;
        int ids[RTV_MAX_MOTORS];
        int control_hz;                  /* control thread rate, e.g. 50 */
        float max_relative_target;       /* max change per tick, normalized units (0 = off) */
        rtv_torque_exit torque_on_exit;
        int retries;                     /* immediate retries per bus transaction (2) */
        int sim_latency_us;              /* simulator reply latency */
        float sim_noise;                 /* simulator position noise, ticks (std) */
        float sim_tau_ms;                /* simulator first-order time constant */
    } robot;

    int n_cameras;
    rtv_camera_cfg cameras[RTV_MAX_CAMERAS];

    struct {
        int action_hz;                   /* 10 */
        int max_reuse;                   /* action cycles one encoding may serve */
        int max_age_ms;                  /* older features are stale */
        rtv_stale_policy stale_policy;
        int vl_every_n_cycles;           /* VL pacing: 0 = back to back */
        rtv_aggregate aggregate;
        float ensemble_decay;            /* temporal-ensemble weight decay (ACT's m) */
        int prio_control, prio_action, prio_vl; /* SCHED_FIFO priorities (0 = SCHED_OTHER;
                                                 * action -1: rtv_cfg_action_prio decides) */
        int cpu_control, cpu_action, cpu_vl;    /* CPU affinity (-1 = any) */
        int history;                     /* copy of model.m.history (key model.history) */
    } runtime;

    struct {
        int device;
        rtv_split_mode split_mode;
        int action_sms;                  /* SMs for the action side; the rest go to VL */
    } gpu;

    struct {
        char dir[RTV_PATH_MAX];          /* run folders go to <dir>/<timestamp>/ */
        int status_line;                 /* print the status line on a terminal */
    } log;
} rtv_config;

/* Loads path (NULL: the embedded default, configs/sim.yaml's content), applies the n_sets
 * "key.path=value" overrides in order, validates. Errors name file, key path and expectation.
 * model.preset is resolved first (file, then --set), then every other key; so an explicit
 * model.chunk etc. overrides the preset's value wherever it is written. Lists: "1,2,3".
 * Camera fields: "cameras[1].width=640" (the entry must exist). Non-real-time. */
int rtv_config_load(rtv_config *cfg, const char *path, const char *const *sets, int n_sets);
/* Prints every key with its value, type, range and doc (rtvla config). */
void rtv_config_print(const rtv_config *cfg, FILE *f);
/* Writes the key reference as markdown (rtvla config --doc > configs/README.md). */
void rtv_config_doc(FILE *f);

/* The embedded default: every key at its table default (what configs/sim.yaml spells out). */
void rtv_config_defaults(rtv_config *cfg);
/* Applies one "key.path=value" without cross-field validation. model.preset refills model.m
 * from the preset (dropping earlier model overrides). Errors: "--set key: expected ..., got ...",
 * with the closest known key for an unknown one. */
int rtv_config_set(rtv_config *cfg, const char *assignment);
/* Formats one key's value as text that rtv_config_set accepts back ("" if the key is unknown
 * or the camera index is out of range: RTV_E_ARG). */
int rtv_config_get(const rtv_config *cfg, const char *path, char *buf, size_t n);
/* Ranges and cross-field checks (views == cameras, control_hz >= action_hz, ...), naming
 * cfg->path and the key path. rtv_config_load calls it; call it after changing a config. */
int rtv_config_validate(const rtv_config *cfg);

/* The key table (read-only). One row per key; camera rows ("cameras[].name") describe the
 * fields of each list entry and their offsets are into rtv_camera_cfg. */
typedef enum rtv_cfg_type {
    RTV_CFG_INT,      /* int */
    RTV_CFG_U64,      /* uint64_t (no range) */
    RTV_CFG_FLOAT,    /* float */
    RTV_CFG_BOOL,     /* int 0/1; true|false|yes|no|on|off|1|0 */
    RTV_CFG_STRING,   /* char[size] */
    RTV_CFG_CHOICE,   /* char[size] holding one of choices */
    RTV_CFG_ENUM,     /* C enum (int), value = index in choices */
    RTV_CFG_INT_LIST, /* int[size / sizeof(int)], count (int) at count_offset */
} rtv_cfg_type;

enum {
    RTV_CFG_FROM_PRESET = 1 << 0, /* a model override: default is the preset's value */
    RTV_CFG_CAMERA = 1 << 1,      /* field of a cameras[] entry (offset into rtv_camera_cfg) */
    RTV_CFG_PATH = 1 << 2,        /* a file path: a leading "~/" becomes $HOME/ */
};

typedef struct rtv_cfg_key {
    const char *path;            /* "runtime.max_reuse", "cameras[].width" */
    rtv_cfg_type type;
    unsigned flags;              /* RTV_CFG_FROM_PRESET, RTV_CFG_CAMERA */
    unsigned offset, size;       /* the field, bytes */
    unsigned count_offset;       /* RTV_CFG_INT_LIST: offset of its int count */
    const char *def;             /* default, as --set text (NULL for RTV_CFG_FROM_PRESET) */
    double min, max;             /* INT, FLOAT, INT_LIST items; STRING/CHOICE: min length */
    const char *const *choices;  /* CHOICE, ENUM: NULL-terminated names */
    const char *unit;            /* "Hz", "ms", "" ... */
    const char *doc;             /* one line */
} rtv_cfg_key;

const rtv_cfg_key *rtv_config_keys(int *n_keys);

/* The action thread's SCHED_FIFO priority (0: SCHED_OTHER): runtime.priorities.action, or
 * for -1 (the default) 70 when the model runs on a GPU and 0 on the CPU backend. On the CPU the
 * action thread computes for tens of ms per cycle; at SCHED_FIFO it keeps SCHED_OTHER kernel
 * workers off its core, among them the tty workers that carry the servo bus's bytes (measured,
 * 2-core VM, sim bus: bus_read p95 15-18 ms and control misses at FIFO 70, 2.0 ms and none
 * at SCHED_OTHER). With a GPU the thread sleeps while the GPU works. */
int rtv_cfg_action_prio(const rtv_config *cfg);

#endif
