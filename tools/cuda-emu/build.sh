#!/usr/bin/env bash
# Builds the host-only CUDA stand-ins (see fake_cuda.cpp) into target/cuda-emu/: libcuda.so.1 (with
# kernels.cu compiled in) and libcublas.so. Needs g++ with C++20 (<barrier>, std::atomic_ref).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/cuda-emu
mkdir -p "$out"
kernels=$PWD/crates/model/src/backend/cuda/kernels.cu
# -ffp-contract=off: no fused multiply-adds, as kernels.cu is compiled by NVRTC (--fmad=false).
flags=(-std=c++20 -O2 -fPIC -shared -pthread -ffp-contract=off -Wall -Wno-unused-function)
g++ "${flags[@]}" -DKERNELS_CU="\"$kernels\"" -include tools/cuda-emu/emu.h \
    -Wl,-soname,libcuda.so.1 -o "$out/libcuda.so.1" tools/cuda-emu/fake_cuda.cpp
ln -sf libcuda.so.1 "$out/libcuda.so"
g++ "${flags[@]}" -Wl,-soname,libcublas.so -o "$out/libcublas.so" tools/cuda-emu/fake_cublas.cpp
echo "built $out: $(cd "$out" && ls | tr '\n' ' ')"
