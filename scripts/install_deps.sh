#!/usr/bin/env bash
# Installs what infokv needs on a fresh Debian 12 machine (run as root or with sudo available).
# Arguments name extra Debian packages (scripts/run_eval.sh adds python3-matplotlib).
set -euo pipefail
pkgs=(cmake g++ make libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev python3 python3-pip "$@")
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
