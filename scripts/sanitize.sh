#!/usr/bin/env bash
# The CPU tests again under the sanitizers (CI runs this after ./test.sh): built with
# AddressSanitizer + UndefinedBehaviorSanitizer (memory errors, leaks, misaligned objects,
# overflow, float-to-int casts out of range; the fuzz tests of the parsers mean most here)
# into build-asan/, and with ThreadSanitizer (the mailbox, telemetry, camera and bus threads,
# the whole run loop on the simulator) into build-tsan/. Any report fails its test; the meson
# logs are build-{asan,tsan}/meson-logs/testlog.json.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
for s in asan tsan; do
  # (UBSan's float-cast-overflow is not part of -fsanitize=undefined in GCC: a NaN or huge
  # float converted to an int, servo ticks above all, is undefined behaviour)
  extra=()
  [ $s = asan ] && san=address,undefined || san=thread
  [ $s = asan ] && extra=(-Dc_args=-fsanitize=float-cast-overflow
                          -Dc_link_args=-fsanitize=float-cast-overflow)
  rm -f build-$s/meson-logs/testlog.json
  if [ ! -f build-$s/build.ninja ]; then
    meson setup build-$s -Dcuda=disabled -Db_sanitize=$san -Db_lundef=false \
      -Dbuildtype=debugoptimized "${extra[@]}" >/dev/null || exit 1
  fi
  ninja -C build-$s >/dev/null || exit 1
  # scripts/tsan.supp: the one OpenBLAS frame TSan misreads; allocator_may_return_null: the
  # tests ask for impossible sizes and check the error; RTV_PUBLISH_N: each GPU-mailbox fill is
  # 10-20x slower under a sanitizer
  tsan=halt_on_error=1:exitcode=66:allocator_may_return_null=1:suppressions=$PWD/scripts/tsan.supp
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 TSAN_OPTIONS=$tsan RTV_PUBLISH_N=40 \
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    meson test -C build-$s --num-processes 2 --print-errorlogs --no-suite cuda \
      --no-suite cuda-pi0 || rc=1
done
exit $rc
