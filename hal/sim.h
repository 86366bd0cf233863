/* hal/sim.h — a servo bus simulated behind a pseudo-terminal.
 *
 * rtv_sim_start() opens a pty pair (posix_openpt, raw mode), keeps its own slave fd open (so
 * the host may close and reopen the port), and runs one thread that reads instruction packets
 * from the master and answers as N servos would: Feetech STS3215 or Dynamixel X series
 * register files, first-order dynamics toward the goal (time constant tau, velocity cap),
 * Gaussian position noise, torque-enable semantics, homing offset and position limits.
 * The pty delivers bytes at once whatever the baud, so the simulator adds the wire time of a
 * real bus (10 bit-times per byte at opts.baud) for requests and replies, the reply latency,
 * and a gap between consecutive replies of a SYNC_READ; replies leave at the time their last
 * byte would arrive on a real bus.
 * Open rtv_sim_path() like a real port (the termios back end takes it).
 *
 * Fault injection (rtv_sim_inject): drop a reply (no reply = timeout), corrupt its checksum,
 * send garbage before it, truncate it, answer with a wrong id, set ERROR bits, or delay it —
 * for a servo id or any, for the next `count` replies and/or with a probability (seeded).
 *
 * Threads: start/stop/inject/servo/set_actual from any non-real-time thread (a mutex guards the
 * servos; the host's bus code never takes it). rtv_sim_stop() closes the master: an open host
 * port then sees the device disappear, as with an unplugged adapter.
 */
#ifndef RTV_HAL_SIM_H
#define RTV_HAL_SIM_H

#include <stdint.h>

#include "hal/bus.h"

#define RTV_SIM_MAX_SERVOS 16

typedef struct rtv_sim rtv_sim;

typedef struct rtv_sim_opts {
    rtv_bus_proto proto;
    int n_servos;                          /* 1..RTV_SIM_MAX_SERVOS */
    int ids[RTV_SIM_MAX_SERVOS];           /* bus ids */
    int model_numbers[RTV_SIM_MAX_SERVOS]; /* what PING / Model_Number report */
    int initial_ticks[RTV_SIM_MAX_SERVOS]; /* start position, present ticks */
    int baud;                              /* wire-time emulation at this rate; 0 = none */
    int latency_us;                        /* end of request -> start of the first reply */
    int gap_us;                            /* between replies of one SYNC_READ / broadcast PING */
    float noise_ticks;                     /* present position noise, standard deviation */
    float tau_ms;                          /* first-order time constant toward the goal */
    float vmax_ticks_s;                    /* velocity cap (STS3215 no-load ~46 rpm = 3140) */
    uint64_t seed;                         /* noise and fault probabilities */
    int rt_prio;                           /* SCHED_FIFO priority of the sim thread (0: normal;
                                            * refused -> stays normal, see rtv_sim_rt_prio) */
} rtv_sim_opts;

/* Defaults: n servos with ids 1..n, SO-101 (Feetech: sts3215 777) or Koch (Dynamixel:
 * xl430 1060 for ids 1-2, xl330 1200 after) model numbers, 1 Mbaud, latency 100 us, gap 0,
 * noise 0.5 ticks, tau 50 ms, vmax 3140 ticks/s, everything at 2048. */
void rtv_sim_opts_default(rtv_sim_opts *o, rtv_bus_proto proto, int n_servos);

int rtv_sim_start(rtv_sim **out, const rtv_sim_opts *opts);
/* Stops the thread, closes the pty. Accepts NULL. */
void rtv_sim_stop(rtv_sim *s);
/* The pty slave path ("/dev/pts/N") to open as the bus port. */
const char *rtv_sim_path(const rtv_sim *s);

typedef enum rtv_sim_fault_kind {
    RTV_SIM_DROP,          /* no reply: the host times out */
    RTV_SIM_BAD_CHECKSUM,  /* last byte (checksum / CRC high byte) flipped */
    RTV_SIM_GARBAGE,       /* `bytes` random bytes sent before the reply */
    RTV_SIM_TRUNCATE,      /* only the first half of the reply */
    RTV_SIM_WRONG_ID,      /* reply carries id + 1 (valid checksum) */
    RTV_SIM_ERROR_BITS,    /* ERROR byte = err_bits (valid checksum) */
    RTV_SIM_DELAY,         /* reply delayed by delay_us (arrives late / during the next request) */
} rtv_sim_fault_kind;

typedef struct rtv_sim_fault {
    rtv_sim_fault_kind kind;
    int id;                /* servo id, 0 = any servo */
    int count;             /* replies to affect; -1 = no limit */
    float probability;     /* 0 = every matching reply, else per reply (seeded) */
    int err_bits;          /* RTV_SIM_ERROR_BITS */
    int bytes;             /* RTV_SIM_GARBAGE (default 7 when 0) */
    int delay_us;          /* RTV_SIM_DELAY */
} rtv_sim_fault;

/* Adds a fault (up to 8 active). */
int rtv_sim_inject(rtv_sim *s, const rtv_sim_fault *f);
void rtv_sim_clear_faults(rtv_sim *s);

typedef struct rtv_sim_servo {
    int id;
    double actual_ticks;   /* encoder position (before offset) */
    int present_ticks;     /* what Present_Position reads, without noise */
    int goal_ticks;        /* Goal_Position register */
    int torque;            /* Torque_Enable register */
    int offset;            /* Homing_Offset register (decoded) */
} rtv_sim_servo;

/* Snapshot of servo id (dynamics advanced to now). RTV_E_ARG if no such id. */
int rtv_sim_servo_get(rtv_sim *s, int id, rtv_sim_servo *out);
/* Moves servo id by hand to present position ticks (as a person would with torque off). */
int rtv_sim_set_present(rtv_sim *s, int id, int ticks);

typedef struct rtv_sim_stats {
    uint64_t packets;      /* valid instruction packets received */
    uint64_t bad_packets;  /* failed checksum/CRC (ignored, no reply) */
    uint64_t replies;      /* status packets sent */
    uint64_t faults;       /* faults applied */
} rtv_sim_stats;
void rtv_sim_stats_get(rtv_sim *s, rtv_sim_stats *out);
/* The SCHED_FIFO priority the sim thread actually runs at (0: normal scheduling). */
int rtv_sim_rt_prio(rtv_sim *s);

#endif
