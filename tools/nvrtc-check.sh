#!/usr/bin/env bash
# Compiles every CUDA kernel of the model crate (crates/model/src/backend/cuda/kernels.cu) to PTX
# with NVRTC and checks each kernel's parameter list against the launches' signatures: no GPU and
# no CUDA toolkit needed, only the NVRTC library, which this installs from PyPI into a virtual
# environment when it is not there yet (about 110 MB).
#
#   tools/nvrtc-check.sh [PTX_OUT]   PTX_OUT: also write the PTX there
#
# NVRTC_PACKAGE picks the wheel (default nvidia-cuda-nvrtc-cu12, libnvrtc.so.12; the CUDA 13 one is
# nvidia-cuda-nvrtc), NVRTC_VENV its folder (default target/nvrtc-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NVRTC_VENV:-target/nvrtc-venv}
package=${NVRTC_PACKAGE:-nvidia-cuda-nvrtc-cu12}
lib_of() { find "$1" -name 'libnvrtc.so.*' ! -name '*alt*' ! -name '*builtins*' 2>/dev/null | head -1; }
if [ -z "$(lib_of "$venv")" ]; then
    echo "installing $package into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "$package"
fi
lib=$(lib_of "$venv")
[ -z "$lib" ] || lib=$(realpath "$lib")
[ -n "$lib" ] || { echo "no libnvrtc.so.* in $venv after installing $package" >&2; exit 1; }
echo "NVRTC: $lib"
export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SYMBIONT_REQUIRE_NVRTC=1
if [ $# -ge 1 ]; then
    SYMBIONT_WRITE_PTX=$(realpath -m "$1")
    export SYMBIONT_WRITE_PTX
fi
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} cargo test --release --features cuda \
    -p symbiont-model --test cuda_parity kernels_compile_with_nvrtc -- --nocapture
