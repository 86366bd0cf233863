/* runtime/bench.h — `rtvla bench KIND`: each benchmark prints a table and, where asked,
 * CSV/JSON. Output formats are stable across commits so figures can be compared. */
#ifndef RTV_BENCH_H
#define RTV_BENCH_H

int rtv_bench_bus(int argc, char **argv);   /* hal: sync write + sync read round trips */
int rtv_bench_loop(int argc, char **argv);  /* runtime: wake-up jitter of the RT threads */
int rtv_bench_model(int argc, char **argv); /* model: per-component latency */
int rtv_bench_split(int argc, char **argv); /* gpu: SM split sweep */

#endif
