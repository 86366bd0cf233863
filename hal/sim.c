/* hal/sim.c — the servo-bus simulator thread (see sim.h for the model). */
#include "hal/sim.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "hal/dynamixel.h"
#include "hal/feetech.h"
#include "hal/serial.h"
#include "runtime/status.h"

#define MAX_FAULTS 8
#define REGS 256

typedef struct servo {
    int id;
    uint8_t reg[REGS];       /* control table, little-endian */
    double x;                /* actual encoder position, ticks */
    double v;                /* ticks/s */
    int64_t t_ns;            /* time x was last advanced to */
    int reg_pending;         /* REG_WRITE waiting for ACTION */
    int pend_addr, pend_n;
    uint8_t pend[64];
} servo;

/* Where each protocol keeps what the dynamics read and write. */
typedef struct layout {
    int torque, goal, goal_size, present, present_size, vel, vel_size, load, load_size;
    int voltage, temp, moving, offset, offset_size, min, max, lim_size, model, firmware;
} layout;

static const layout ft_layout = {
    RTV_STS_TORQUE_ENABLE, RTV_STS_GOAL_POSITION, 2, RTV_STS_PRESENT_POSITION, 2,
    RTV_STS_PRESENT_VELOCITY, 2, RTV_STS_PRESENT_LOAD, 2, RTV_STS_PRESENT_VOLTAGE,
    RTV_STS_PRESENT_TEMPERATURE, RTV_STS_MOVING, RTV_STS_HOMING_OFFSET, 2, RTV_STS_MIN_POSITION,
    RTV_STS_MAX_POSITION, 2, RTV_STS_MODEL_NUMBER, RTV_STS_FIRMWARE_MAJOR,
};
static const layout dxl_layout = {
    RTV_XL_TORQUE_ENABLE, RTV_XL_GOAL_POSITION, 4, RTV_XL_PRESENT_POSITION, 4,
    RTV_XL_PRESENT_VELOCITY, 4, RTV_XL_PRESENT_CURRENT, 2, RTV_XL_PRESENT_VOLTAGE,
    RTV_XL_PRESENT_TEMPERATURE, RTV_XL_MOVING, RTV_XL_HOMING_OFFSET, 4, RTV_XL_MIN_POSITION,
    RTV_XL_MAX_POSITION, 4, RTV_XL_MODEL_NUMBER, RTV_XL_FIRMWARE,
};

struct rtv_sim {
    rtv_sim_opts o;
    const layout *L;
    int master, slave_keep, stop_fd;
    char path[64];
    pthread_t thread;
    int thread_started;
    int started;             /* set by the sim thread once its scheduling is settled */
    pthread_mutex_t mu;      /* guards sv, faults, rng, stats */
    servo sv[RTV_SIM_MAX_SERVOS];
    rtv_sim_fault faults[MAX_FAULTS];
    int n_faults;
    uint64_t rng;
    rtv_sim_stats stats;
    int64_t bus_free_ns;     /* sim thread only: when the wire is idle again */
    int rt_prio;             /* granted SCHED_FIFO priority (w: sim thread before first packet) */
    uint8_t in[8192];
    size_t in_n;
    uint8_t scratch[RTV_DXL_MAX_PACKET];
    uint8_t out[4 * RTV_DXL_MAX_PACKET];
};

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t rnd(rtv_sim *s) /* xorshift64* */
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ull;
}
static double rnd_unit(rtv_sim *s) { return (double)(rnd(s) >> 11) / 9007199254740992.0; }
static double rnd_gauss(rtv_sim *s)
{
    double u = rnd_unit(s), v = rnd_unit(s);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static uint32_t get_u(const servo *sv, int addr, int size)
{
    uint32_t v = 0;
    for (int i = 0; i < size; i++) v |= (uint32_t)sv->reg[(addr + i) & 0xFF] << (8 * i);
    return v;
}
static void put_u(servo *sv, int addr, int size, uint32_t v)
{
    for (int i = 0; i < size; i++) sv->reg[(addr + i) & 0xFF] = (uint8_t)(v >> (8 * i));
}

/* Signed register values: Feetech sign-magnitude (bit per field), Dynamixel two's complement. */
static int get_s(const rtv_sim *s, const servo *sv, int addr, int size, int ft_bit)
{
    uint32_t u = get_u(sv, addr, size);
    if (s->o.proto == RTV_BUS_FEETECH) return ft_bit ? rtv_feetech_sm_decode((uint16_t)u, ft_bit) : (int)u;
    return size == 4 ? (int32_t)u : size == 2 ? (int16_t)u : (int8_t)u;
}
static void put_s(const rtv_sim *s, servo *sv, int addr, int size, int ft_bit, int v)
{
    if (s->o.proto == RTV_BUS_FEETECH) {
        int lim = (1 << ft_bit) - 1;
        if (v > lim) v = lim;
        if (v < -lim) v = -lim;
        uint16_t x = 0;
        rtv_feetech_sm_encode(v, ft_bit, &x);
        put_u(sv, addr, size, x);
    } else {
        put_u(sv, addr, size, (uint32_t)v);
    }
}

static int goal_bit(const rtv_sim *s) { return s->o.proto == RTV_BUS_FEETECH ? 15 : 0; }
static int offset_of(const rtv_sim *s, const servo *sv)
{
    return get_s(s, sv, s->L->offset, s->L->offset_size, 11);
}
/* Present ticks for an actual encoder position. Feetech: (actual - offset) mod 4096;
 * Dynamixel: actual + offset (no wrap: extended position). */
static double present_of(const rtv_sim *s, const servo *sv, double x)
{
    if (s->o.proto == RTV_BUS_FEETECH) {
        double p = fmod(x - offset_of(s, sv), 4096.0);
        return p < 0 ? p + 4096.0 : p;
    }
    return x + offset_of(s, sv);
}
static double actual_of(const rtv_sim *s, const servo *sv, double present)
{
    if (s->o.proto == RTV_BUS_FEETECH) return present + offset_of(s, sv);
    return present - offset_of(s, sv);
}

static int clamp_goal(const rtv_sim *s, const servo *sv, int g)
{
    if (s->o.proto == RTV_BUS_DYNAMIXEL && sv->reg[RTV_XL_OPERATING_MODE] == 4) return g;
    int lo = (int)get_u(sv, s->L->min, s->L->lim_size), hi = (int)get_u(sv, s->L->max, s->L->lim_size);
    if (s->o.proto == RTV_BUS_DYNAMIXEL) {
        lo = (int32_t)get_u(sv, s->L->min, 4);
        hi = (int32_t)get_u(sv, s->L->max, 4);
    }
    if (hi < lo) return g;
    return g < lo ? lo : g > hi ? hi : g;
}

/* Advances the dynamics of sv to now and refreshes its present registers. Caller holds mu. */
static void advance(rtv_sim *s, servo *sv, int64_t now)
{
    double dt = (double)(now - sv->t_ns) * 1e-9;
    sv->t_ns = now;
    int torque = sv->reg[s->L->torque] == 1;
    double v = 0;
    if (torque && dt > 0) {
        int goal = get_s(s, sv, s->L->goal, s->L->goal_size, goal_bit(s));
        double target = actual_of(s, sv, goal);
        if (s->o.proto == RTV_BUS_FEETECH) { /* shortest way round the encoder circle */
            double d = fmod(target - sv->x, 4096.0);
            if (d > 2048) d -= 4096;
            if (d < -2048) d += 4096;
            target = sv->x + d;
        }
        double tau = s->o.tau_ms > 0 ? s->o.tau_ms * 1e-3 : 1e-3;
        double dx = (target - sv->x) * (1.0 - exp(-dt / tau));
        double cap = s->o.vmax_ticks_s * dt;
        if (dx > cap) dx = cap;
        if (dx < -cap) dx = -cap;
        sv->x += dx;
        v = dx / dt;
    }
    if (dt > 0) sv->v = v;
    double p = present_of(s, sv, sv->x) + (s->o.noise_ticks > 0 ? s->o.noise_ticks * rnd_gauss(s) : 0);
    int pi = (int)lround(p);
    if (s->o.proto == RTV_BUS_FEETECH) pi = ((pi % 4096) + 4096) % 4096;
    put_s(s, sv, s->L->present, s->L->present_size, 15, pi);
    int err = 0;
    if (torque) {
        int goal = get_s(s, sv, s->L->goal, s->L->goal_size, goal_bit(s));
        err = goal - (int)lround(present_of(s, sv, sv->x));
    }
    if (s->o.proto == RTV_BUS_FEETECH) {
        put_s(s, sv, s->L->vel, 2, 15, (int)lround(sv->v));                 /* ticks/s */
        int load = err * 2;                                                  /* 0.1 % */
        put_s(s, sv, s->L->load, 2, 10, load > 1000 ? 1000 : load < -1000 ? -1000 : load);
        sv->reg[s->L->voltage] = 74;                                         /* 7.4 V */
    } else {
        put_s(s, sv, s->L->vel, 4, 0, (int)lround(sv->v / (0.229 * 4096.0 / 60.0))); /* 0.229 rpm */
        int cur = err * 2;                                                   /* mA */
        put_s(s, sv, s->L->load, 2, 0, cur > 1750 ? 1750 : cur < -1750 ? -1750 : cur);
        put_u(sv, s->L->voltage, 2, 50);                                     /* 5.0 V */
    }
    sv->reg[s->L->temp] = 32;
    sv->reg[s->L->moving] = fabs(sv->v) > 5.0;
    /* Torque off: the goal follows the joint, so enabling torque holds it where it is. */
    if (!torque) put_s(s, sv, s->L->goal, s->L->goal_size, goal_bit(s), (int)lround(present_of(s, sv, sv->x)));
}

static void servo_init(rtv_sim *s, servo *sv, int id, int model, int ticks, int64_t now)
{
    memset(sv, 0, sizeof(*sv));
    sv->id = id;
    sv->t_ns = now;
    if (s->o.proto == RTV_BUS_FEETECH) {
        sv->reg[RTV_STS_FIRMWARE_MAJOR] = 3;
        sv->reg[RTV_STS_FIRMWARE_MINOR] = 10;
        put_u(sv, RTV_STS_MODEL_NUMBER, 2, (uint32_t)model);
        sv->reg[RTV_STS_ID] = (uint8_t)id;
        sv->reg[RTV_STS_RESPONSE_LEVEL] = 1;
        put_u(sv, RTV_STS_MIN_POSITION, 2, 0);
        put_u(sv, RTV_STS_MAX_POSITION, 2, 4095);
        put_u(sv, RTV_STS_MAX_TORQUE_LIMIT, 2, 1000);
        sv->reg[RTV_STS_P_COEF] = 32;
        sv->reg[RTV_STS_LOCK] = 1;
    } else {
        put_u(sv, RTV_XL_MODEL_NUMBER, 2, (uint32_t)model);
        sv->reg[RTV_XL_FIRMWARE] = 48;
        sv->reg[RTV_XL_ID] = (uint8_t)id;
        sv->reg[RTV_XL_OPERATING_MODE] = 3;
        sv->reg[13] = 2; /* Protocol_Type */
        put_u(sv, RTV_XL_MAX_POSITION, 4, 4095);
        put_u(sv, RTV_XL_MIN_POSITION, 4, 0);
        sv->reg[RTV_XL_STATUS_RETURN_LEVEL] = 2;
        put_u(sv, RTV_XL_POSITION_P, 2, 400);
    }
    sv->x = ticks;
    advance(s, sv, now);
}

static servo *find(rtv_sim *s, int id)
{
    for (int i = 0; i < s->o.n_servos; i++)
        if (s->sv[i].id == id) return &s->sv[i];
    return NULL;
}

/* Applies a register write; returns a Dynamixel error number (0 ok). Caller holds mu. */
static int write_regs(rtv_sim *s, servo *sv, int addr, const uint8_t *d, int n, int64_t now)
{
    if (addr < 0 || n < 0 || addr + n > REGS) return 7;
    if (s->o.proto == RTV_BUS_DYNAMIXEL && addr < RTV_XL_TORQUE_ENABLE && sv->reg[RTV_XL_TORQUE_ENABLE])
        return 7; /* EEPROM write with torque on: access error */
    advance(s, sv, now);
    int torque_before = sv->reg[s->L->torque];
    memcpy(sv->reg + addr, d, (size_t)n);
    const layout *L = s->L;
    if (addr <= L->torque && L->torque < addr + n) {
        if (s->o.proto == RTV_BUS_FEETECH && sv->reg[L->torque] == 128) {
            /* 128: take the present position as 2048 (rewrites the offset) */
            double p_now = present_of(s, sv, sv->x);
            int off = offset_of(s, sv) + (int)lround(p_now) - 2048;
            if (off > 2047) off -= 4096;
            if (off < -2047) off += 4096;
            put_s(s, sv, L->offset, 2, 11, off);
            sv->reg[L->torque] = (uint8_t)torque_before;
        }
        if (sv->reg[L->torque] && !torque_before) /* enabling: hold where the joint is */
            put_s(s, sv, L->goal, L->goal_size, goal_bit(s), (int)lround(present_of(s, sv, sv->x)));
    }
    if (addr < L->goal + L->goal_size && L->goal < addr + n) {
        if (sv->reg[L->torque] == 1) {
            int g = get_s(s, sv, L->goal, L->goal_size, goal_bit(s));
            put_s(s, sv, L->goal, L->goal_size, goal_bit(s), clamp_goal(s, sv, g));
        }
    }
    advance(s, sv, now);
    return 0;
}

/* ---- replies ----------------------------------------------------------------------------- */

static void sleep_until(int64_t t)
{
    struct timespec ts = { (time_t)(t / 1000000000), (long)(t % 1000000000) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

static void send_bytes(rtv_sim *s, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(s->master, p + done, n - done);
        if (w > 0) done += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = { s->master, POLLOUT, 0 };
            poll(&pf, 1, 10);
        } else return; /* host gone: nothing to do */
    }
}

static size_t encode_status(rtv_sim *s, uint8_t *out, size_t cap, int id, int err,
                            const uint8_t *data, size_t n)
{
    if (s->o.proto == RTV_BUS_FEETECH) return rtv_feetech_encode(out, cap, id, err, data, n);
    uint8_t p[RTV_DXL_MAX_PACKET];
    if (n + 1 > sizeof(p)) return 0;
    p[0] = (uint8_t)err;
    if (n) memcpy(p + 1, data, n);
    return rtv_dxl_encode(out, cap, id, RTV_DXL_STATUS, p, n + 1);
}

/* Sends one status packet of servo id after `lead_ns` of bus silence, applying faults. The
 * bytes leave when the last of them would reach the host on a real bus. */
static void reply(rtv_sim *s, int id, int err, const uint8_t *data, size_t n, int64_t lead_ns)
{
    int drop = 0, bad_sum = 0, garbage = 0, truncate = 0, wrong_id = 0;
    int64_t delay_ns = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_faults; i++) {
        rtv_sim_fault *f = &s->faults[i];
        if (f->count == 0 || (f->id && f->id != id)) continue;
        if (f->probability > 0 && rnd_unit(s) >= f->probability) continue;
        if (f->count > 0) f->count--;
        s->stats.faults++;
        switch (f->kind) {
        case RTV_SIM_DROP: drop = 1; break;
        case RTV_SIM_BAD_CHECKSUM: bad_sum = 1; break;
        case RTV_SIM_GARBAGE: garbage = f->bytes > 0 ? f->bytes : 7; break;
        case RTV_SIM_TRUNCATE: truncate = 1; break;
        case RTV_SIM_WRONG_ID: wrong_id = 1; break;
        case RTV_SIM_ERROR_BITS: err = f->err_bits; break;
        case RTV_SIM_DELAY: delay_ns += (int64_t)f->delay_us * 1000; break;
        }
    }
    uint8_t junk[64];
    for (int i = 0; i < garbage && i < (int)sizeof(junk); i++) junk[i] = (uint8_t)rnd(s);
    pthread_mutex_unlock(&s->mu);
    if (drop) return;
    size_t len = encode_status(s, s->out, sizeof(s->out), wrong_id ? (id + 1) & 0xFF : id, err, data, n);
    if (!len) return;
    if (bad_sum) s->out[len - 1] ^= 0x5A;
    if (truncate) len /= 2;
    size_t g = garbage > (int)sizeof(junk) ? sizeof(junk) : (size_t)garbage;
    int64_t start = s->bus_free_ns + lead_ns + delay_ns;
    int64_t end = start + rtv_serial_wire_ns(len + g, s->o.baud);
    sleep_until(end);
    if (g) send_bytes(s, junk, g);
    send_bytes(s, s->out, len);
    s->bus_free_ns = end;
    pthread_mutex_lock(&s->mu);
    s->stats.replies++;
    pthread_mutex_unlock(&s->mu);
}

/* ---- instruction handling ---------------------------------------------------------------- */

static void handle(rtv_sim *s, const rtv_packet *pk, size_t wire_len, int64_t t_rx)
{
    const int ft = s->o.proto == RTV_BUS_FEETECH;
    int64_t start = s->bus_free_ns > t_rx ? s->bus_free_ns : t_rx;
    s->bus_free_ns = start + rtv_serial_wire_ns(wire_len, s->o.baud);
    const int64_t lat = (int64_t)s->o.latency_us * 1000, gap = (int64_t)s->o.gap_us * 1000;
    const uint8_t *p = pk->data;
    size_t n = pk->n;
    const int hdr = ft ? 2 : 4; /* address + length bytes of READ / SYNC_* */
    uint8_t data[RTV_DXL_MAX_PACKET];
    int64_t now = rtv_serial_now_ns();
    int instr = pk->instr;
    int bcast = pk->id == 0xFE;

    if (instr == (ft ? RTV_FT_PING : RTV_DXL_PING)) {
        int k = 0;
        for (int i = 0; i < s->o.n_servos; i++) {
            servo *sv = &s->sv[i];
            if (!bcast && sv->id != pk->id) continue;
            pthread_mutex_lock(&s->mu);
            size_t dn = 0;
            if (!ft) {
                data[0] = sv->reg[RTV_XL_MODEL_NUMBER];
                data[1] = sv->reg[RTV_XL_MODEL_NUMBER + 1];
                data[2] = sv->reg[RTV_XL_FIRMWARE];
                dn = 3;
            }
            pthread_mutex_unlock(&s->mu);
            reply(s, sv->id, 0, data, dn, k++ ? gap : lat);
        }
        return;
    }
    if (instr == (ft ? RTV_FT_READ : RTV_DXL_READ)) {
        servo *sv = find(s, pk->id);
        if (!sv || n != (size_t)hdr) return;
        int addr = ft ? p[0] : p[0] | p[1] << 8, len = ft ? p[1] : p[2] | p[3] << 8;
        if (addr + len > REGS || len < 1) {
            if (!ft) reply(s, sv->id, 7, NULL, 0, lat); /* access error */
            return;                                      /* Feetech: no reply */
        }
        pthread_mutex_lock(&s->mu);
        advance(s, sv, now);
        memcpy(data, sv->reg + addr, (size_t)len);
        pthread_mutex_unlock(&s->mu);
        reply(s, sv->id, 0, data, (size_t)len, lat);
        return;
    }
    if (instr == (ft ? RTV_FT_WRITE : RTV_DXL_WRITE) || instr == (ft ? RTV_FT_REG_WRITE : RTV_DXL_REG_WRITE)) {
        int an = ft ? 1 : 2;
        if (n < (size_t)an + 1) return;
        int addr = ft ? p[0] : p[0] | p[1] << 8;
        int reg = instr == (ft ? RTV_FT_REG_WRITE : RTV_DXL_REG_WRITE);
        for (int i = 0; i < s->o.n_servos; i++) {
            servo *sv = &s->sv[i];
            if (!bcast && sv->id != pk->id) continue;
            int e = 0;
            pthread_mutex_lock(&s->mu);
            int quiet = ft && sv->reg[RTV_STS_RESPONSE_LEVEL] == 0;
            if (reg) {
                if (n - (size_t)an <= sizeof(sv->pend) && addr + (int)(n - (size_t)an) <= REGS) {
                    sv->reg_pending = 1;
                    sv->pend_addr = addr;
                    sv->pend_n = (int)(n - (size_t)an);
                    memcpy(sv->pend, p + an, n - (size_t)an);
                } else e = 7;
            } else {
                e = write_regs(s, sv, addr, p + an, (int)(n - (size_t)an), now);
            }
            pthread_mutex_unlock(&s->mu);
            if (bcast || quiet) continue;
            reply(s, sv->id, ft ? 0 : e, NULL, 0, lat);
        }
        return;
    }
    if (instr == (ft ? RTV_FT_ACTION : RTV_DXL_ACTION)) {
        for (int i = 0; i < s->o.n_servos; i++) {
            servo *sv = &s->sv[i];
            if (!bcast && sv->id != pk->id) continue;
            int e = 0;
            pthread_mutex_lock(&s->mu);
            if (sv->reg_pending) {
                e = write_regs(s, sv, sv->pend_addr, sv->pend, sv->pend_n, now);
                sv->reg_pending = 0;
            } else if (!ft) e = 2; /* ACTION without REG_WRITE: instruction error */
            pthread_mutex_unlock(&s->mu);
            if (!bcast) reply(s, sv->id, ft ? 0 : e, NULL, 0, lat);
        }
        return;
    }
    if (instr == (ft ? RTV_FT_SYNC_READ : RTV_DXL_SYNC_READ)) {
        if (!bcast || n < (size_t)hdr + 1) return;
        int addr = ft ? p[0] : p[0] | p[1] << 8, len = ft ? p[1] : p[2] | p[3] << 8;
        if (addr + len > REGS || len < 1) return;
        int k = 0;
        for (size_t j = (size_t)hdr; j < n; j++) {
            servo *sv = find(s, p[j]);
            if (!sv) continue; /* absent id: silence, the host times out */
            pthread_mutex_lock(&s->mu);
            advance(s, sv, rtv_serial_now_ns());
            memcpy(data, sv->reg + addr, (size_t)len);
            pthread_mutex_unlock(&s->mu);
            reply(s, sv->id, 0, data, (size_t)len, k++ ? gap : lat);
        }
        return;
    }
    if (instr == (ft ? RTV_FT_SYNC_WRITE : RTV_DXL_SYNC_WRITE)) {
        if (!bcast || n < (size_t)hdr) return;
        int addr = ft ? p[0] : p[0] | p[1] << 8, len = ft ? p[1] : p[2] | p[3] << 8;
        if (len < 1 || (n - (size_t)hdr) % (size_t)(len + 1)) return;
        pthread_mutex_lock(&s->mu);
        for (size_t j = (size_t)hdr; j + (size_t)len < n + 1; j += (size_t)len + 1) {
            servo *sv = find(s, p[j]);
            if (sv) write_regs(s, sv, addr, p + j + 1, len, now);
        }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if ((ft && instr == RTV_FT_RESET) || (!ft && instr == RTV_DXL_REBOOT)) {
        servo *sv = find(s, pk->id);
        if (!sv) return;
        pthread_mutex_lock(&s->mu);
        if (!ft) {
            sv->reg[RTV_XL_HARDWARE_ERROR] = 0;
            sv->reg[RTV_XL_TORQUE_ENABLE] = 0;
        }
        pthread_mutex_unlock(&s->mu);
        reply(s, sv->id, 0, NULL, 0, lat);
        return;
    }
    /* Unknown instruction: Dynamixel answers "instruction error", Feetech stays silent. */
    if (!ft && !bcast && find(s, pk->id)) reply(s, pk->id, 2, NULL, 0, lat);
}

static void *sim_main(void *arg)
{
    rtv_sim *s = arg;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wire-time sleeps need µs, not the 50 µs default */
    if (s->o.rt_prio > 0) {
        struct sched_param sp = { .sched_priority = s->o.rt_prio };
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0)
            __atomic_store_n(&s->rt_prio, s->o.rt_prio, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&s->started, 1, __ATOMIC_RELEASE);
    for (;;) {
        struct pollfd pf[2] = { { s->master, POLLIN, 0 }, { s->stop_fd, POLLIN, 0 } };
        int r = poll(pf, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || (pf[1].revents & POLLIN)) break;
        if (!(pf[0].revents & POLLIN)) {
            if (pf[0].revents & (POLLERR | POLLNVAL)) break;
            continue;
        }
        if (s->in_n == sizeof(s->in)) s->in_n = 0; /* garbage flood: start over */
        ssize_t got = read(s->master, s->in + s->in_n, sizeof(s->in) - s->in_n);
        if (got <= 0) {
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            struct timespec ts = { 0, 1000000 }; /* EIO while no slave is open: wait */
            nanosleep(&ts, NULL);
            continue;
        }
        int64_t t_rx = rtv_serial_now_ns();
        s->in_n += (size_t)got;
        for (;;) {
            rtv_packet pk;
            size_t used = 0;
            int pr = s->o.proto == RTV_BUS_FEETECH
                         ? rtv_feetech_parse(s->in, s->in_n, 0, &pk, &used)
                         : rtv_dxl_parse(s->in, s->in_n, 0, &pk, s->scratch, sizeof(s->scratch), &used);
            if (pr == RTV_PARSE_OK) {
                pthread_mutex_lock(&s->mu);
                s->stats.packets++;
                pthread_mutex_unlock(&s->mu);
                /* pk.data may point into s->in: handle before dropping the bytes */
                handle(s, &pk, used, t_rx);
            } else if (pr == RTV_PARSE_CORRUPT) {
                pthread_mutex_lock(&s->mu);
                s->stats.bad_packets++;
                pthread_mutex_unlock(&s->mu);
            }
            if (used) {
                memmove(s->in, s->in + used, s->in_n - used);
                s->in_n -= used;
            }
            if (pr == RTV_PARSE_NEED) break;
        }
    }
    return NULL;
}

/* ---- public ------------------------------------------------------------------------------ */

void rtv_sim_opts_default(rtv_sim_opts *o, rtv_bus_proto proto, int n_servos)
{
    memset(o, 0, sizeof(*o));
    o->proto = proto;
    o->n_servos = n_servos < 1 ? 1 : n_servos > RTV_SIM_MAX_SERVOS ? RTV_SIM_MAX_SERVOS : n_servos;
    for (int i = 0; i < o->n_servos; i++) {
        o->ids[i] = i + 1;
        o->model_numbers[i] = proto == RTV_BUS_FEETECH ? RTV_STS3215_MODEL
                              : i < 2 ? RTV_XL430_W250_MODEL : RTV_XL330_M288_MODEL;
        o->initial_ticks[i] = 2048;
    }
    o->baud = 1000000;
    o->latency_us = 100;
    o->noise_ticks = 0.5f;
    o->tau_ms = 50;
    o->vmax_ticks_s = 3140;
    o->seed = 1;
}

int rtv_sim_start(rtv_sim **out, const rtv_sim_opts *o)
{
    *out = NULL;
    if (o->n_servos < 1 || o->n_servos > RTV_SIM_MAX_SERVOS)
        return rtv_fail(RTV_E_ARG, "sim: %d servos, expected 1..%d", o->n_servos, RTV_SIM_MAX_SERVOS);
    for (int i = 0; i < o->n_servos; i++) {
        if (o->ids[i] < 0 || o->ids[i] > 252)
            return rtv_fail(RTV_E_ARG, "sim: servo id %d, expected 0..252", o->ids[i]);
        for (int j = 0; j < i; j++)
            if (o->ids[j] == o->ids[i]) return rtv_fail(RTV_E_ARG, "sim: servo id %d listed twice", o->ids[i]);
    }
    rtv_sim *s = calloc(1, sizeof(*s));
    if (!s) return rtv_fail(RTV_E_NOMEM, "sim: out of memory");
    s->o = *o;
    s->L = o->proto == RTV_BUS_FEETECH ? &ft_layout : &dxl_layout;
    s->master = s->slave_keep = s->stop_fd = -1;
    s->rng = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    pthread_mutex_init(&s->mu, NULL);
    int st;
    s->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s->master < 0 || grantpt(s->master) || unlockpt(s->master) ||
        ptsname_r(s->master, s->path, sizeof(s->path))) {
        st = rtv_fail(RTV_E_OS, "sim: pseudo-terminal: %s", strerror(errno));
        goto fail;
    }
    fcntl(s->master, F_SETFL, fcntl(s->master, F_GETFL) | O_NONBLOCK);
    s->slave_keep = open(s->path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    if (s->slave_keep < 0 || tcgetattr(s->slave_keep, &t)) {
        st = rtv_fail(RTV_E_OS, "sim: %s: %s", s->path, strerror(errno));
        goto fail;
    }
    cfmakeraw(&t); /* a fresh pty is cooked: echo and CR/LF mapping would corrupt packets */
    if (tcsetattr(s->slave_keep, TCSANOW, &t)) {
        st = rtv_fail(RTV_E_OS, "sim: %s: raw mode: %s", s->path, strerror(errno));
        goto fail;
    }
    s->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (s->stop_fd < 0) {
        st = rtv_fail(RTV_E_OS, "sim: eventfd: %s", strerror(errno));
        goto fail;
    }
    int64_t now = rtv_serial_now_ns();
    for (int i = 0; i < o->n_servos; i++)
        servo_init(s, &s->sv[i], o->ids[i], o->model_numbers[i], o->initial_ticks[i], now);
    s->bus_free_ns = now;
    if (pthread_create(&s->thread, NULL, sim_main, s)) {
        st = rtv_fail(RTV_E_OS, "sim: cannot start its thread");
        goto fail;
    }
    s->thread_started = 1;
    while (!__atomic_load_n(&s->started, __ATOMIC_ACQUIRE)) sched_yield();
    *out = s;
    return RTV_OK;
fail:
    rtv_sim_stop(s);
    return st;
}

void rtv_sim_stop(rtv_sim *s)
{
    if (!s) return;
    if (s->thread_started) {
        uint64_t one = 1;
        if (write(s->stop_fd, &one, sizeof(one)) < 0) {}
        pthread_join(s->thread, NULL);
    }
    if (s->master >= 0) close(s->master);
    if (s->slave_keep >= 0) close(s->slave_keep);
    if (s->stop_fd >= 0) close(s->stop_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *rtv_sim_path(const rtv_sim *s) { return s->path; }

int rtv_sim_inject(rtv_sim *s, const rtv_sim_fault *f)
{
    pthread_mutex_lock(&s->mu);
    int ok = s->n_faults < MAX_FAULTS;
    if (ok) s->faults[s->n_faults++] = *f;
    pthread_mutex_unlock(&s->mu);
    return ok ? RTV_OK : rtv_fail(RTV_E_ARG, "sim: more than %d faults at once", MAX_FAULTS);
}

void rtv_sim_clear_faults(rtv_sim *s)
{
    pthread_mutex_lock(&s->mu);
    s->n_faults = 0;
    pthread_mutex_unlock(&s->mu);
}

int rtv_sim_servo_get(rtv_sim *s, int id, rtv_sim_servo *o)
{
    servo *sv = find(s, id);
    if (!sv) return rtv_fail(RTV_E_ARG, "sim: no servo with id %d", id);
    pthread_mutex_lock(&s->mu);
    advance(s, sv, rtv_serial_now_ns());
    o->id = id;
    o->actual_ticks = sv->x;
    o->present_ticks = (int)lround(present_of(s, sv, sv->x));
    if (s->o.proto == RTV_BUS_FEETECH) o->present_ticks = ((o->present_ticks % 4096) + 4096) % 4096;
    o->goal_ticks = get_s(s, sv, s->L->goal, s->L->goal_size, goal_bit(s));
    o->torque = sv->reg[s->L->torque];
    o->offset = offset_of(s, sv);
    pthread_mutex_unlock(&s->mu);
    return RTV_OK;
}

int rtv_sim_set_present(rtv_sim *s, int id, int ticks)
{
    servo *sv = find(s, id);
    if (!sv) return rtv_fail(RTV_E_ARG, "sim: no servo with id %d", id);
    pthread_mutex_lock(&s->mu);
    advance(s, sv, rtv_serial_now_ns());
    sv->x = actual_of(s, sv, ticks);
    sv->v = 0;
    advance(s, sv, rtv_serial_now_ns());
    pthread_mutex_unlock(&s->mu);
    return RTV_OK;
}

int rtv_sim_rt_prio(rtv_sim *s) { return __atomic_load_n(&s->rt_prio, __ATOMIC_ACQUIRE); }

void rtv_sim_stats_get(rtv_sim *s, rtv_sim_stats *o)
{
    pthread_mutex_lock(&s->mu);
    *o = s->stats;
    pthread_mutex_unlock(&s->mu);
}
