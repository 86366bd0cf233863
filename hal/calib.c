/* hal/calib.c — LeRobot calibration JSON (cJSON) and unit conversions. */
#include "hal/calib.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/status.h"

static const char *const fields[] = { "id", "drive_mode", "homing_offset", "range_min", "range_max" };

static int get_int(const char *path, const char *motor, const cJSON *obj, const char *field, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!v) return rtv_fail(RTV_E_INPUT, "%s: motor '%s': missing field '%s'", path, motor, field);
    if (!cJSON_IsNumber(v))
        return rtv_fail(RTV_E_INPUT, "%s: motor '%s': '%s' must be an integer, got %s", path, motor,
                        field, cJSON_IsString(v) ? "a string" : cJSON_IsNull(v) ? "null" : "a non-number");
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 2e9)
        return rtv_fail(RTV_E_INPUT, "%s: motor '%s': '%s' must be an integer, got %g", path, motor, field, d);
    *out = (int)d;
    return RTV_OK;
}

static int check_motor(const char *path, const rtv_motor_calib *m, int feetech)
{
    if (m->id < 0 || m->id > 252)
        return rtv_fail(RTV_E_INPUT, "%s: motor '%s': id %d, expected 0..252", path, m->name, m->id);
    if (m->drive_mode != 0 && m->drive_mode != 1)
        return rtv_fail(RTV_E_INPUT, "%s: motor '%s': drive_mode %d, expected 0 or 1", path, m->name, m->drive_mode);
    if (m->range_min >= m->range_max)
        return rtv_fail(RTV_E_INPUT, "%s: motor '%s': range_min %d >= range_max %d (recalibrate: "
                        "the range must be swept while calibrating)", path, m->name, m->range_min, m->range_max);
    if (feetech) {
        if (m->range_min < 0 || m->range_max > 4095)
            return rtv_fail(RTV_E_INPUT, "%s: motor '%s': range %d..%d, expected within 0..4095 "
                            "(STS3215 single-turn ticks)", path, m->name, m->range_min, m->range_max);
        if (abs(m->homing_offset) > 2047)
            return rtv_fail(RTV_E_INPUT, "%s: motor '%s': homing_offset %d, expected -2047..2047 "
                            "(sign-magnitude bit 11 on the servo)", path, m->name, m->homing_offset);
    } else if (abs(m->homing_offset) > 1044479) {
        return rtv_fail(RTV_E_INPUT, "%s: motor '%s': homing_offset %d, expected -1044479..1044479",
                        path, m->name, m->homing_offset);
    }
    return RTV_OK;
}

int rtv_calib_load(rtv_calib *c, const char *path, const char *const *names, int n_names, int feetech)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->path, sizeof(c->path), "%s", path);
    if (n_names > RTV_MAX_MOTORS)
        return rtv_fail(RTV_E_ARG, "%s: %d motors asked, at most %d", path, n_names, RTV_MAX_MOTORS);
    FILE *f = fopen(path, "rb");
    if (!f) return rtv_fail(RTV_E_INPUT, "%s: cannot open calibration file: %s (calibrate with "
                            "lerobot-calibrate, or set robot.calibration)", path, strerror(errno));
    char *text = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || size > (1 << 20) || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return rtv_fail(RTV_E_INPUT, "%s: not a calibration file (size %ld, expected < 1 MiB)", path, size);
    }
    text = malloc((size_t)size + 1);
    if (!text) {
        fclose(f);
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    text[got] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, got, &end, 0);
    int st = RTV_OK;
    if (!root) {
        long off = end ? (long)(end - text) : -1;
        st = rtv_fail(RTV_E_INPUT, "%s: invalid JSON near byte %ld", path, off);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        st = rtv_fail(RTV_E_INPUT, "%s: expected a JSON object keyed by motor name", path);
        goto out;
    }
    int n_file = cJSON_GetArraySize(root);
    if (n_names == 0) {
        if (n_file > RTV_MAX_MOTORS) {
            st = rtv_fail(RTV_E_INPUT, "%s: %d motors, at most %d", path, n_file, RTV_MAX_MOTORS);
            goto out;
        }
    }
    int n_want = n_names ? n_names : n_file;
    for (int i = 0; i < n_want; i++) {
        const cJSON *obj;
        const char *name;
        if (n_names) {
            name = names[i];
            obj = cJSON_GetObjectItemCaseSensitive(root, name);
            if (!obj) {
                char have[256] = "";
                size_t k = 0;
                const cJSON *it;
                cJSON_ArrayForEach(it, root) {
                    if (k + 40 >= sizeof(have)) break;
                    k += (size_t)snprintf(have + k, sizeof(have) - k, "%s%s", k ? ", " : "", it->string);
                }
                st = rtv_fail(RTV_E_INPUT, "%s: motor '%s' missing (file has: %s)", path, name,
                              k ? have : "no motors");
                goto out;
            }
        } else {
            obj = cJSON_GetArrayItem(root, i);
            name = obj->string;
        }
        rtv_motor_calib *m = &c->m[i];
        if (strlen(name) >= sizeof(m->name)) {
            st = rtv_fail(RTV_E_INPUT, "%s: motor name '%.40s...' too long", path, name);
            goto out;
        }
        snprintf(m->name, sizeof(m->name), "%s", name);
        if (!cJSON_IsObject(obj)) {
            st = rtv_fail(RTV_E_INPUT, "%s: motor '%s': expected an object with %s, %s, %s, %s, %s",
                          path, name, fields[0], fields[1], fields[2], fields[3], fields[4]);
            goto out;
        }
        int *dst[] = { &m->id, &m->drive_mode, &m->homing_offset, &m->range_min, &m->range_max };
        for (int k = 0; k < 5; k++)
            if ((st = get_int(path, name, obj, fields[k], dst[k]))) goto out;
        if ((st = check_motor(path, m, feetech))) goto out;
        for (int j = 0; j < i; j++)
            if (c->m[j].id == m->id) {
                st = rtv_fail(RTV_E_INPUT, "%s: motors '%s' and '%s' both have id %d", path,
                              c->m[j].name, name, m->id);
                goto out;
            }
        c->n = i + 1;
    }
out:
    cJSON_Delete(root);
    free(text);
    if (st) c->n = 0;
    return st;
}

int rtv_calib_save(const rtv_calib *c, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return rtv_fail(RTV_E_OS, "%s: cannot write calibration: %s", path, strerror(errno));
    fprintf(f, "{\n");
    for (int i = 0; i < c->n; i++) {
        const rtv_motor_calib *m = &c->m[i];
        fprintf(f, "    \"%s\": {\n        \"id\": %d,\n        \"drive_mode\": %d,\n"
                   "        \"homing_offset\": %d,\n        \"range_min\": %d,\n"
                   "        \"range_max\": %d\n    }%s\n", m->name, m->id, m->drive_mode,
                m->homing_offset, m->range_min, m->range_max, i + 1 < c->n ? "," : "");
    }
    fprintf(f, "}");
    if (fclose(f)) return rtv_fail(RTV_E_OS, "%s: write failed: %s", path, strerror(errno));
    return RTV_OK;
}

int rtv_calib_find(const rtv_calib *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->m[i].name, name)) return i;
    return -1;
}

double rtv_calib_to_norm(const rtv_motor_calib *m, rtv_motor_units mode, int raw)
{
    double lo = m->range_min, hi = m->range_max;
    if (mode == RTV_NORM_DEGREES) return (raw - (lo + hi) / 2.0) * 360.0 / 4095.0;
    double v = raw < lo ? lo : raw > hi ? hi : raw;
    if (mode == RTV_NORM_RANGE_M100_100) {
        double n = (v - lo) / (hi - lo) * 200.0 - 100.0;
        return m->drive_mode ? -n : n;
    }
    double n = (v - lo) / (hi - lo) * 100.0;
    return m->drive_mode ? 100.0 - n : n;
}

int rtv_calib_from_norm(const rtv_motor_calib *m, rtv_motor_units mode, double n)
{
    double lo = m->range_min, hi = m->range_max;
    if (mode == RTV_NORM_DEGREES) {
        double r = n * 4095.0 / 360.0 + (lo + hi) / 2.0;
        if (!(r > -1e9)) r = -1e9; /* NaN lands here too; callers reject NaN before */
        if (r > 1e9) r = 1e9;
        return (int)r;
    }
    if (isnan(n)) n = 0;
    if (mode == RTV_NORM_RANGE_M100_100) {
        double x = m->drive_mode ? -n : n;
        x = x < -100 ? -100 : x > 100 ? 100 : x;
        return (int)((x + 100.0) / 200.0 * (hi - lo) + lo);
    }
    double x = m->drive_mode ? 100.0 - n : n;
    x = x < 0 ? 0 : x > 100 ? 100 : x;
    return (int)(x / 100.0 * (hi - lo) + lo);
}

double rtv_calib_units_per_tick(const rtv_motor_calib *m, rtv_motor_units mode)
{
    double span = m->range_max - m->range_min;
    if (mode == RTV_NORM_DEGREES) return 360.0 / 4095.0;
    double u = (mode == RTV_NORM_RANGE_M100_100 ? 200.0 : 100.0) / span;
    return m->drive_mode ? -u : u;
}
