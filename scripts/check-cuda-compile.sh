#!/bin/sh
# Compiles ddactor's CUDA code paths (the files with DDACTOR_WITH_CUDA) with them switched on,
# against this machine's LibTorch headers and the CUDA toolkit, without a CUDA LibTorch to link:
# a check that they still compile where no GPU build is possible (Debian's LibTorch is CPU-only;
# its c10/cuda headers lack only the generated c10/cuda/impl/cuda_cmake_macros.h, stubbed here).
# The c10d definitions are those a CUDA LibTorch's `torch` target gives its users.
# Run it on Debian 12 and in the Debian 13 chroot (LibTorch 2.6). A real CUDA build is
# `cmake -DDDACTOR_CUDA=ON -DCMAKE_PREFIX_PATH=<libtorch>` on a machine with a CUDA LibTorch.
#
#   scripts/check-cuda-compile.sh [CUDA_HOME]   (default /usr/local/cuda)
set -eu
cuda_home=${1:-/usr/local/cuda}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub/c10/cuda/impl"
echo '#define C10_CUDA_BUILD_SHARED_LIBS' > "$work/stub/c10/cuda/impl/cuda_cmake_macros.h"
files=$(cd "$root" && grep -rl --include='*.cpp' 'DDACTOR_WITH_CUDA' actors app models runtime tests bench)
status=0
for file in $files; do
  if c++ -std=gnu++20 -O0 -Wall -Wextra -Wno-unused-parameter -Werror -fsyntax-only \
       -D_GLIBCXX_USE_CXX11_ABI=1 -DDDACTOR_WITH_CUDA=1 -DUSE_DISTRIBUTED -DUSE_C10D_GLOO \
       -DUSE_C10D_NCCL -I"$root" -isystem "$work/stub" \
       -isystem /usr/include/torch/csrc/api/include -isystem "$cuda_home/include" \
       $(pkg-config --cflags spdlog fmt 2>/dev/null || true) "$root/$file"; then
    echo "ok      $file"
  else
    echo "FAILED  $file"
    status=1
  fi
done
exit $status
