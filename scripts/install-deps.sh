#!/usr/bin/env bash
# Installs the Debian 12 packages medseg needs to build, test and benchmark.
# Library dependencies: OpenBLAS, libpng, libjpeg-turbo, libzip, zlib, libarchive, libcrypto,
# cJSON, nifticlib, OpenJPEG, CharLS, libcurl, oneDNN, xxHash. npm (the benchmark's ONNX Runtime peer).
# Test oracles and peers (never used by the product): python3-numpy/-pil/-torch/-scipy/-skimage/
# -nibabel/-pydicom/-gdcm/-opencv, dcm2niix.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libopenblas-dev libopenblas0-pthread libpng-dev libjpeg62-turbo-dev libzip-dev zlib1g-dev
      libarchive-dev libssl-dev libcjson-dev libnifti2-dev libopenjp2-7-dev libcharls-dev
      libcurl4-openssl-dev libdnnl-dev libxxhash-dev xxhash
      python3-numpy python3-pil python3-torch python3-scipy python3-skimage python3-nibabel
      python3-pydicom python3-gdcm python3-opencv dcm2niix)
# the benchmark runs ONNX Runtime through npm: Debian's npm only where no npm is installed already
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
