#!/usr/bin/env bash
# Installs everything Orbit needs on Debian/Ubuntu: system packages (FUSE 3, its headers, a C
# toolchain, the programs the tests drive) and the npm dependencies, building the native binding.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(fuse3 libfuse3-dev pkg-config build-essential python3 attr util-linux coreutils git rsync tar gzip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ! command -v node >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The binding is rebuilt by npm ci; skip the reinstall when the lockfile has not changed since.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.orbit-installed-lock || [ ! -f build/Release/orbit_fuse.node ]; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.orbit-installed-lock
fi
