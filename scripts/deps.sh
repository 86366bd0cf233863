#!/usr/bin/env bash
# Installs the Debian 12 packages rtvla needs to build and test (skips what is present).
set -euo pipefail
pkgs=(build-essential meson ninja-build pkg-config python3
      libopenblas-dev libcjson-dev liburing-dev libcyaml-dev libyaml-dev libserialport-dev libv4l-dev
      libjpeg-dev sentencepiece)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "rtvla: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
