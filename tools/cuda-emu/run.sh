#!/usr/bin/env bash
# Runs the CUDA backend's parity tests (crates/model/tests/cuda_parity.rs) without a GPU, against
# the host-only driver and cuBLAS stand-ins of this folder (fake_cuda.cpp, fake_cublas.cpp): cudarc,
# the backend's host code (pointer offsets, GEMM operand swaps, launches, tapes) and the logic of
# every kernel in kernels.cu (compiled for the host by g++) run for real; the GPU's own arithmetic
# and scheduling do not. Extra arguments go to the test binary (e.g. a test name, --nocapture).
#
# The stand-in driver ignores the PTX it is given, so the kernels are "loaded" from a file
# (SYMBIONT_CUDA_PTX) instead of compiled: NVRTC is neither needed nor loaded (NVRTC itself talks to
# libcuda.so.1 and crashes against the stand-in).
set -euo pipefail
cd "$(dirname "$0")/../.."
tools/cuda-emu/build.sh
export LD_LIBRARY_PATH="$PWD/target/cuda-emu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SYMBIONT_CUDA_PTX="$PWD/crates/model/src/backend/cuda/kernels.cu"
export SYMBIONT_REQUIRE_GPU=1
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} cargo test --release --features cuda \
    -p symbiont-model --test cuda_parity -- --test-threads=1 "$@"
