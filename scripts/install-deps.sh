#!/usr/bin/env bash
# Installs every Debian 12 (or 13) package ddactor needs to build, test and run (nothing else
# is fetched).
# Uses sudo when not run as root.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libcaf-dev                       # C++ Actor Framework 0.17.6 (core, io)
  libtorch-dev libopenblas0-pthread # LibTorch CPU (1.13; 2.6 on Debian 13); OpenBLAS (not the
                                   # reference BLAS, 14x slower)
  libgloo-dev                      # Gloo's headers, for LibTorch's c10d ProcessGroupGloo (the
                                   # trainers of one node reduce through it)
  libtomlplusplus-dev libzstd-dev zlib1g-dev libstb-dev nlohmann-json3-dev
  libspdlog-dev libcli11-dev libcpp-httplib-dev libgtest-dev
  libsodium-dev                    # peer keys, link handshake and encryption
  libssl-dev                       # TLS for the HTTP endpoints (optional, off by default)
  dataset-fashion-mnist            # the embedded default data set
  prometheus                       # promtool and a server for the metrics tests
  chromium                         # a headless browser for the status page test
  python3-numpy python3-torch      # the Python interop test reads checkpoints with them
  iproute2                         # network namespaces for shaped-link benchmarks
  nftables                         # the lab's NAT routers (peers behind home routers)
)
run() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
