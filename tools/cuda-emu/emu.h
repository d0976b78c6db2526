// tools/cuda-emu: just enough of CUDA C++ for crates/model/src/backend/cuda/kernels.cu to compile
// and run on the host (g++ -std=c++20). One launch runs its blocks one after another on as many
// host threads as the block has; __syncthreads is a barrier among them, warp shuffles go through
// a block-wide exchange (every kernel of kernels.cu shuffles with all threads of the block), and
// __shared__ variables are function statics, which is right because only one block runs at a time.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
extern std::barrier<>* emu_barrier;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { emu_barrier->arrive_and_wait(); }

inline unsigned emu_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

template <class T>
T emu_shfl_xor(T v, int o) {
    static T slots[1024];
    unsigned t = emu_tid();
    slots[t] = v;
    __syncthreads();
    T r = slots[t ^ (unsigned)o];
    __syncthreads();
    return r;
}
inline float __shfl_xor_sync(unsigned, float v, int o) { return emu_shfl_xor(v, o); }
inline double __shfl_xor_sync(unsigned, double v, int o) { return emu_shfl_xor(v, o); }

inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}
inline float __int_as_float(unsigned i) { return __int_as_float((int)i); }

