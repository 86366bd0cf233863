#!/usr/bin/env python3
"""Summarizes the `ab` step of scripts/gpu_run.sh: for each variant (a "== VARIANT (time)"
header followed by bench rows "name p50 p95 p99 max mean"), the p50 of every run of it and
their median, per measure, so that a variant's repeats (AB_REPEAT) and the drift within a
lease show side by side. Usage: ab_summary.py ab.txt"""
import re
import statistics
import sys


def main(path):
    runs = {}  # variant -> measure -> [p50 per run]
    order = []
    cur = None
    with open(path) as f:
        for line in f:
            m = re.match(r"== (\S+) \(", line)
            if m:
                cur = m.group(1)
                if cur not in runs:
                    runs[cur] = {}
                    order.append(cur)
                continue
            m = re.match(r"(\w+)\s+([0-9.]+)\s", line)
            if m and cur:
                runs[cur].setdefault(m.group(1), []).append(float(m.group(2)))
    if not order:
        print("ab_summary: no variants in %s" % path)
        return 1
    measures = []
    for v in order:
        for k in runs[v]:
            if k not in measures:
                measures.append(k)
    print("p50 ms, median over runs [each run]")
    print("%-40s %s" % ("variant", "  ".join("%-26s" % k for k in measures)))
    for v in order:
        cells = []
        for k in measures:
            xs = runs[v].get(k, [])
            cells.append("%-26s" % ("%.3f [%s]" % (statistics.median(xs), " ".join("%.3f" % x for x in xs))
                                    if xs else "-"))
        print("%-40s %s" % (v, "  ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else (print(__doc__) or 2))
