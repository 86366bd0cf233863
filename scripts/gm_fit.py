#!/usr/bin/env python3
"""Fits gemm_mc.cu's cost model (kernels/cuda/gm_plan.h rtv_gm_try) to bench_matmul output.

Usage: scripts/gm_fit.py gm_mm.txt   (the file `STEPS=gm scripts/gpu_run.sh` writes)

Reads the "mc B/CM/CN/SK  us" rows of SigLIP's and the prefix's 512-row shapes, fits
  t = F0 + Fb*bn + Fc*[multicast] + Fs*[split] + kper * max(a + b*bn, l2_bytes / L2) * (1 + mc)
by random search on log time, and prints the parameters (the ones gm_plan.h carries) and each
configuration's measured against modelled time. Plain Python, no packages.
"""
import math
import random
import re
import sys

SHAPES = {  # name: M, N, K (bench_matmul's shape names)
    'v.qkv': (512, 3456, 1152), 'v.o+res': (512, 1152, 1152), 'v.fc1': (512, 4304, 1152),
    'v.fc2+res': (512, 1152, 4304), 'p.qkv': (512, 2560, 2048), 'p.o+res': (512, 2048, 2048),
    'p.down+res': (512, 2048, 16384),
}


def cdiv(a, b):
    return -(-a // b)


def points(path):
    pts = []
    for line in open(path):
        m = re.match(r'(\S+)\s+(?:gelu\s+)?mc (\d+)/(\d+)/(\d+)/(\d+)\s+([\d.]+)', line)
        if not m or m.group(1) not in SHAPES:
            continue
        bn, cm, cn, sk = map(int, m.group(2, 3, 4, 5))
        M, N, K = SHAPES[m.group(1)]
        kper = cdiv(cdiv(K, 64), sk)
        mt = cdiv(cdiv(M, 128), cm) * cm
        nt = cdiv(cdiv(N, bn), cn) * cn
        pts.append((m.group(1), bn, cm, cn, sk, float(m.group(6)), kper, mt * nt * sk))
    return pts


def model(p, P):
    a, b, L2, mc, F0, Fb, Fc, Fs = P
    _, bn, cm, cn, sk, _, kper, ctas = p
    step = max(a + b * bn, ctas * (128 * 128 / cn + bn * 128 / cm) / L2)
    step *= 1 + mc * (cm * cn > 1)
    return F0 + Fb * bn + Fc * (cm * cn > 1) + Fs * (sk > 1) + kper * step


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pts = points(sys.argv[1])
    if len(pts) < 8:
        sys.exit('%s: %d configurations found, need at least 8' % (sys.argv[1], len(pts)))

    def err(P):
        return sum((math.log(model(p, P)) - math.log(p[5])) ** 2 for p in pts)

    random.seed(1)
    P = [0.29, 0.00113, 7.5e6, 0.05, 2.0, 0.03, 2.0, 1.0]
    cur = err(P)
    for _ in range(60000):
        Q = [x * math.exp(random.gauss(0, 0.05)) if random.random() < 0.5 else x for x in P]
        e = err(Q)
        if e < cur:
            P, cur = Q, e
    print('%d configurations; step %.3f + %.5f*bn us, L2 %.2f TB/s, multicast +%.1f%%/step; '
          'fixed %.2f + %.4f*bn us, +%.2f multicast, +%.2f split; rms %.1f%% (log)'
          % (len(pts), P[0], P[1], P[2] / 1e6, P[3] * 100, P[4], P[5], P[6], P[7],
             100 * math.sqrt(cur / len(pts))))
    for p in pts:
        print('%-10s %3d/%d/%d/%d  measured %7.2f  model %7.2f' % (p[0], p[1], p[2], p[3], p[4],
                                                                  p[5], model(p, P)))


if __name__ == '__main__':
    main()
