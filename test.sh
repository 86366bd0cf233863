#!/usr/bin/env bash
# Installs what is missing, builds, runs every CPU test, ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"
bash scripts/deps.sh || exit 1
bash scripts/build.sh || exit 1
meson test -C build --num-processes 2 --print-errorlogs --no-suite cuda --no-suite cuda-pi0 "$@"
rc=$?
python3 scripts/test_summary.py build/meson-logs/testlog.json
exit $rc
