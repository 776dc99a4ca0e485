#!/usr/bin/env bash
# Build the separate LeRobot reference-reader environment (default .venv-lerobot) for
# tests/unit/test_lerobot_reference.py: Debian's FFmpeg libraries (torchcodec decodes with them)
# and requirements/lerobot.txt. Run by `make lerobot-env` (and so by `make test`).
set -euo pipefail
venv="${1:-.venv-lerobot}"
python="${PYTHON:-python3}"
pkgs=(libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"
  else
    echo "WARNING: missing FFmpeg libraries (LeRobot video decoding will fail): ${missing[*]}" >&2
    echo "         install them with: sudo apt-get install ${missing[*]}" >&2
  fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch==2.13.0 is in the same command (requirements/lerobot.txt), so nothing pulls a CUDA build.
"$venv/bin/python" -m pip install -q -r requirements/lerobot.txt
