// tools/cuda-emu: a host-only stand-in for cuBLAS (libcublas.so) with the calls the symbiont CUDA
// backend makes: a handle, its stream and math mode, and a straightforward column-major SGEMM
// (f32 accumulation in k order) over host memory, as fake_cuda.cpp's "device" memory is.
#include <cstdint>

extern "C" {
typedef int cublasStatus_t;
static int g_handle;
cublasStatus_t cublasCreate_v2(void** h) { *h = &g_handle; return 0; }
cublasStatus_t cublasDestroy_v2(void*) { return 0; }
cublasStatus_t cublasSetStream_v2(void*, void*) { return 0; }
cublasStatus_t cublasSetMathMode(void*, int) { return 0; }
cublasStatus_t cublasGetMathMode(void*, int* m) { *m = 0; return 0; }
cublasStatus_t cublasSgemm_v2(void*, int ta, int tb, int m, int n, int k, const float* alpha,
                              const float* a, int lda, const float* b, int ldb, const float* beta,
                              float* c, int ldc) {
    // Column-major: C (m x n) = alpha op(A) op(B) + beta C; op 0 = N, 1 = T.
    if (m < 0 || n < 0 || k < 0) return 7;
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            float s = 0.0f;
            for (int p = 0; p < k; ++p) {
                float x = ta == 0 ? a[i + (int64_t)p * lda] : a[p + (int64_t)i * lda];
                float y = tb == 0 ? b[p + (int64_t)j * ldb] : b[j + (int64_t)p * ldb];
                s += x * y;
            }
            float* out = &c[i + (int64_t)j * ldc];
            *out = *beta == 0.0f ? *alpha * s : *alpha * s + *beta * *out;
        }
    return 0;
}
}
