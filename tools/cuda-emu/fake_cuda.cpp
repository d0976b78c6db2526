// tools/cuda-emu: a host-only stand-in for the NVIDIA driver library (libcuda.so.1), implementing
// the driver calls the symbiont CUDA backend makes through cudarc, with "device" memory in host
// memory and kernel launches running the kernels of kernels.cu compiled for the host (emu.h). It
// lets tests/cuda_parity.rs run the whole backend — cudarc, the host orchestration and the kernels'
// logic — on a machine without a GPU. It does not model the GPU's arithmetic (expf, FMA contraction
// by the device compiler) or its concurrency; a real GPU run is still the final check.
#include "emu.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
std::barrier<>* emu_barrier = nullptr;

#include KERNELS_CU

using Launcher = std::function<void(void**)>;

template <class... A, std::size_t... I>
static void call(void (*k)(A...), void** p, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<A>*>(p[I])...);
}
template <class... A>
static Launcher launcher(void (*k)(A...)) {
    return [k](void** p) { call(k, p, std::index_sequence_for<A...>{}); };
}

static const std::map<std::string, Launcher>& kernels() {
    static const std::map<std::string, Launcher> table = {
#define K(name) {#name, launcher(name)},
        K(fill) K(fill_ranges) K(fill_rows) K(add2) K(add_into) K(multiply) K(embedding_fwd)
        K(embedding_bwd) K(dropout_fwd) K(gates_fwd) K(gates_bwd) K(relu_fwd) K(relu_bwd)
        K(col_sums) K(sum_squares) K(xent_rows) K(transpose) K(sgd) K(momentum) K(adam)
#undef K
    };
    return table;
}

typedef int CUresult;
typedef uint64_t CUdeviceptr;
static int g_dummy_ctx, g_dummy_stream, g_dummy_module, g_dummy_event;
static long g_launches = 0;

static void trace(const char* what) {
    if (std::getenv("CUDA_EMU_TRACE")) std::fprintf(stderr, "cuda-emu: %s\n", what);
}

extern "C" {
CUresult cuInit(unsigned) { return 0; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return 0; }
CUresult cuDeviceGet(int* d, int ordinal) { if (ordinal != 0) return 101; *d = 0; return 0; }
CUresult cuDeviceGetName(char* name, int len, int) {
    std::snprintf(name, len, "cuda-emu (host threads)");
    return 0;
}
CUresult cuDeviceGetAttribute(int* v, int attr, int) {
    // CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115; compute capability 9.0.
    *v = attr == 75 ? 9 : attr == 76 ? 0 : attr == 115 ? 1 : 1024;
    return 0;
}
CUresult cuDeviceTotalMem_v2(size_t* b, int) { *b = (size_t)1 << 34; return 0; }
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = &g_dummy_ctx; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return 0; }
CUresult cuCtxSetCurrent(void*) { return 0; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = &g_dummy_ctx; return 0; }
CUresult cuCtxSynchronize() { return 0; }
CUresult cuStreamCreate(void** s, unsigned) { *s = &g_dummy_stream; return 0; }
CUresult cuStreamDestroy_v2(void*) { return 0; }
CUresult cuStreamSynchronize(void*) { return 0; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return 0; }
CUresult cuEventCreate(void** e, unsigned) { *e = &g_dummy_event; return 0; }
CUresult cuEventRecord(void*, void*) { return 0; }
CUresult cuEventDestroy_v2(void*) { return 0; }
CUresult cuEventSynchronize(void*) { return 0; }
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
    *p = (CUdeviceptr)std::aligned_alloc(256, ((n + 255) / 256) * 256 + 256);
    return *p ? 0 : 2;
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, void*) { return cuMemAlloc_v2(p, n); }
CUresult cuMemFree_v2(CUdeviceptr p) { std::free((void*)p); return 0; }
CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void*) {
    std::memset((void*)p, v, n);
    return 0;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { return cuMemsetD8Async(p, v, n, nullptr); }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* h, size_t n, void*) {
    std::memcpy((void*)d, h, n);
    return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void* h, CUdeviceptr d, size_t n, void*) {
    std::memcpy(h, (void*)d, n);
    return 0;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void*) {
    std::memmove((void*)d, (void*)s, n);
    return 0;
}
CUresult cuModuleLoadData(void** m, const void*) { *m = &g_dummy_module; return 0; }
CUresult cuModuleUnload(void*) { return 0; }
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
    auto it = kernels().find(name);
    if (it == kernels().end()) return 500;  // CUDA_ERROR_NOT_FOUND
    *f = (void*)&it->second;
    return 0;
}
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned, void*, void** params, void**) {
    const Launcher& run = *static_cast<const Launcher*>(f);
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    unsigned threads = bx * by * bz;
    if (threads == 0 || threads > 1024 || threads % 32 != 0) return 1;  // CUDA_ERROR_INVALID_VALUE
    ++g_launches;
    trace("launch");
    std::barrier<> bar((std::ptrdiff_t)threads);
    emu_barrier = &bar;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            threadIdx = {t % bx, (t / bx) % by, t / (bx * by)};
            for (unsigned z = 0; z < gz; ++z)
                for (unsigned y = 0; y < gy; ++y)
                    for (unsigned x = 0; x < gx; ++x) {
                        blockIdx = {x, y, z};
                        run(params);
                        bar.arrive_and_wait();
                    }
        });
    }
    for (auto& th : pool) th.join();
    return 0;
}
CUresult cuGetErrorString(CUresult, const char** s) { *s = "cuda-emu error"; return 0; }
CUresult cuGetErrorName(CUresult, const char** s) { *s = "CUDA_EMU_ERROR"; return 0; }
}
