#!/usr/bin/env python3
"""Where a graph replay's time goes, from an Nsight Systems GPU trace.

Usage: nsys_cycle.py TRACE.csv [MIN_KERNELS[-MAX_KERNELS]]

TRACE.csv is `nsys stats -r cuda_gpu_trace -f csv` of a run that replays CUDA graphs (profiled
with --cuda-graph-trace=node). The trace is cut into replays where the GPU idles for more than
15 us; the replays with the most common length of at least MIN_KERNELS (default 1000: the
action cycle; 200-999: the VL encode) are lined up position by position (a graph runs the
same sequence each time).
Printed: the replay's span, the kernels' summed time and the summed gaps between one kernel's
end and the next one's start (negative where programmatic launches overlap), then per kernel
name its count per replay, median duration and median gap before it, and the sequence of the
replay's middle stretch (one expert layer and step) kernel by kernel.
"""
import csv
import statistics
import sys
from collections import Counter, defaultdict


def col(header, *keys):
    for i, h in enumerate(header):
        if all(k in h for k in keys):
            return i
    raise SystemExit("nsys_cycle: no column with %s in %s" % (keys, header))


def short(name):
    n = name.split("(")[0]
    return n[:60]


def main():
    path = sys.argv[1]
    lim = (sys.argv[2] if len(sys.argv) > 2 else "1000").split("-")
    min_k, max_k = int(lim[0]), int(lim[1]) if len(lim) > 1 else 1 << 30
    rows = []
    with open(path, newline="") as f:
        rd = csv.reader(f)
        header = None
        for r in rd:
            if header is None:
                if any("Start" in h for h in r) and any("Name" in h for h in r):
                    header = r
                    ci, cd, cn = col(r, "Start"), col(r, "Duration"), col(r, "Name")
                continue
            if len(r) <= max(ci, cd, cn):
                continue
            try:
                rows.append((float(r[ci]), float(r[cd]), short(r[cn])))
            except ValueError:
                continue
    if not rows:
        raise SystemExit("nsys_cycle: no rows in %s" % path)
    rows.sort()
    segs, cur, end = [], [], None
    for st, du, nm in rows:
        if cur and st - end > 15000:
            segs.append(cur)
            cur, end = [], None
        cur.append((st, du, nm))
        end = st + du if end is None else max(end, st + du)
    segs.append(cur)
    lens = Counter(len(s) for s in segs if min_k <= len(s) <= max_k)
    if not lens:
        raise SystemExit("nsys_cycle: no replay of %d+ kernels (lengths: %s)" %
                         (min_k, sorted(Counter(len(s) for s in segs).items())[-8:]))
    n, reps = lens.most_common(1)[0]
    sel = [s for s in segs if len(s) == n][1:]  # the first may carry warm-up effects
    if not sel:
        sel = [s for s in segs if len(s) == n]
    print("replays of %d kernels: %d (lengths seen: %s)" % (n, len(sel), dict(lens)))
    span = statistics.median(s[-1][0] + s[-1][1] - s[0][0] for s in sel)
    busy = statistics.median(sum(d for _, d, _ in s) for s in sel)
    gaps = statistics.median(sum(s[i][0] - (s[i - 1][0] + s[i - 1][1]) for i in range(1, n))
                             for s in sel)
    print("span %.1f us, kernels %.1f us, gaps %.1f us (median over replays)" %
          (span / 1e3, busy / 1e3, gaps / 1e3))
    dur = [statistics.median(s[i][1] for s in sel) for i in range(n)]
    gap = [0.0] + [statistics.median(s[i][0] - (s[i - 1][0] + s[i - 1][1]) for s in sel)
                   for i in range(1, n)]
    names = [sel[0][i][2] for i in range(n)]
    by = defaultdict(list)
    for i in range(n):
        by[names[i]].append(i)
    print("%-60s %5s %9s %9s %9s %9s" % ("kernel", "count", "dur us", "gap us", "sum dur",
                                          "sum gap"))
    for nm, idx in sorted(by.items(), key=lambda kv: -sum(dur[i] for i in kv[1])):
        print("%-60s %5d %9.2f %9.2f %9.1f %9.1f" % (
            nm, len(idx), statistics.median(dur[i] for i in idx) / 1e3,
            statistics.median(gap[i] for i in idx) / 1e3, sum(dur[i] for i in idx) / 1e3,
            sum(gap[i] for i in idx) / 1e3))
    mid = n // 2
    print("sequence around the middle (position: gap before, duration, us):")
    for i in range(max(1, mid - 12), min(n, mid + 12)):
        print("  %5d %8.2f %8.2f  %s" % (i, gap[i] / 1e3, dur[i] / 1e3, names[i]))


if __name__ == "__main__":
    main()
