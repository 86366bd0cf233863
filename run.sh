#!/usr/bin/env bash
# Installs what is missing, builds, and runs rtvla on the embedded default: CPU backend, tiny
# seeded model, synthetic cameras, simulated servo bus. Extra args go to `rtvla run`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/deps.sh
bash scripts/build.sh
exec ./build/rtvla run -c configs/sim.yaml --task "pick up the red cube" --duration 20 "$@"
