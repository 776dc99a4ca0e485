#!/usr/bin/env bash
# Debian 12 system libraries that the PyPI wheels need: EGL/OSMesa for headless MuJoCo rendering.
# Installs only what is missing, and only when it can (root + apt-get); otherwise says what to install.
set -euo pipefail
pkgs=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libopengl0 libosmesa6)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "WARNING: missing system packages (headless rendering may fail): ${missing[*]}" >&2
  echo "         install them with: sudo apt-get install ${missing[*]}" >&2
fi
