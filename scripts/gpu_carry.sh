#!/usr/bin/env bash
# Packs a CUDA build of rtvla and the shared libraries it needs from this (Debian 12) machine
# into .devcarry/, for a GPU machine that has the NVIDIA driver and CUDA runtime but not our
# Debian dependencies (OpenBLAS, cJSON, liburing, libcyaml, libserialport, libv4l2, libjpeg).
# Usage: scripts/gpu_carry.sh BUILD_DIR   (then run scripts/gpu_run.sh on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:?usage: scripts/gpu_carry.sh BUILD_DIR}
rm -rf .devcarry && mkdir -p .devcarry/bin .devcarry/lib
cp "$B/rtvla" "$B/tests/cuda/test_cuda_ops" "$B/tests/cuda/test_cuda_policy" \
   "$B/tests/cuda/test_gpu_mailbox" "$B/tests/cuda/bench_matmul" .devcarry/bin/
# the binaries carry a fat binary for five GPU architectures each: compressed, the carry stays
# under the device's 64 MiB (gpu_run.sh unpacks them)
for b in .devcarry/bin/*; do xz -T2 -6 "$b"; done
for so in $(ldd "$B/rtvla" | awk '/=>/ {print $3}'); do
  case "$(basename "$so")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libstdc++*|libgcc_s*|libcuda*|libcublas*) ;;
    libopenblas*) xz -T2 -6 -c "$so" > ".devcarry/lib/$(basename "$so").xz" ;;
    *) cp -L "$so" .devcarry/lib/ ;;
  esac
done
du -sh .devcarry
