#!/usr/bin/env bash
# What scripts/gpu-check.sh needs on a GPU machine that reaches no package registry: the Debian
# 12 packages of ddactor's build dependencies other than LibTorch (the GPU machine's PyTorch
# brings a CUDA LibTorch), as .deb files to unpack there with `dpkg -x`, Fashion-MNIST for a swarm
# of two GPU peers, and the SD 1.5 UNet's config.json for the UNet benchmark. About 42 MB.
#
#   scripts/make-gpu-bundle.sh [BUNDLE_DIR]     (default .gpu-bundle, beside the sources)
#
# .gitignore ignores the folder; carry it to the GPU
# machine with the working tree; there, run scripts/gpu-check.sh BUNDLE_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bundle=${1:-$root/.gpu-bundle}
mkdir -p "$bundle/debs"
packages=(
  libcaf-dev libcaf-core0.17 libcaf-io0.17
  libtomlplusplus-dev libtomlplusplus3 libzstd-dev libzstd1 zlib1g-dev zlib1g libstb-dev libstb0
  nlohmann-json3-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libcli11-dev
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libgtest-dev
  libsodium-dev libsodium23 libssl-dev libssl3 libgloo-dev libgloo0
  dataset-fashion-mnist
)
# The -dev packages' libfoo.so links point at the runtime packages' files: both come along, so
# that nothing in the bundle links to a library of the GPU machine's own distribution.
# apt-get writes as the _apt user where it can; a root-owned folder gets a harmless warning.
(cd "$bundle/debs" && apt-get download "${packages[@]}")
fixtures=${DDACTOR_SD1_FIXTURES:-$root/../shared/fixtures/sd1}
if [ -f "$fixtures/manifests/sd15_unet_config.json" ]; then
  cp "$fixtures/manifests/sd15_unet_config.json" "$bundle/"
else
  echo "no $fixtures/manifests/sd15_unet_config.json: the UNet benchmark will be skipped" >&2
fi
du -sh "$bundle"
