// symbiont's CUDA kernels (crates/model/src/backend/cuda): compiled once per `Cuda` with NVRTC,
// with --fmad=false so that element-wise arithmetic rounds as the CPU's (no fused multiply-adds)
// and IEEE division and square root (NVRTC's defaults).
//
// Conventions: every pointer is a device pointer already offset by the host; element counts,
// strides and offsets are `long long`; element-wise kernels use grid-stride loops, so any grid
// covers any n. The math of each kernel names the CPU function it mirrors.

// -infinity without math.h (NVRTC compiles without the host headers).
#define NEG_INF __int_as_float(0xff800000)

#define GRID_STRIDE(i, n)                                                            \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);   \
         i += (long long)blockDim.x * gridDim.x)

// ---- counter-based RNG (kernels::rng::CounterRng) ----

// SplitMix64's finalizer, as `rng::mix`.
__device__ __forceinline__ unsigned long long rng_mix(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// `CounterRng::uniform`: `key` is the generator's mixed seed.
__device__ __forceinline__ float rng_uniform(unsigned long long key, unsigned long long stream,
                                             unsigned long long index) {
    unsigned long long bits = rng_mix(key ^ rng_mix(stream ^ rng_mix(index)));
    return (float)(bits >> 40) * (1.0f / 16777216.0f);
}

// ---- activations (kernels::Real for f32: the same formulas over expf) ----

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float tanh_f(float x) { return 1.0f - 2.0f / (expf(2.0f * x) + 1.0f); }

// ---- block reductions (blockDim.x a multiple of 32, at most 1024) ----

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The block's sum (every thread gets it); `scratch` holds 32 values.
__device__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}
__device__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : NEG_INF;
    return warp_max(v);
}
__device__ double block_sum_d(double v, double* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;
    return warp_sum_d(v);
}

// ---- memory ----

extern "C" __global__ void fill(float* x, long long n, float v) {
    GRID_STRIDE(i, n) x[i] = v;
}

// x[r.start..r.end] = v for the ranges (start, end) pairs in `ranges`; blockIdx.y is the range.
extern "C" __global__ void fill_ranges(float* x, const long long* ranges, float v) {
    long long start = ranges[2 * blockIdx.y], end = ranges[2 * blockIdx.y + 1];
    for (long long i = start + (long long)blockIdx.x * blockDim.x + threadIdx.x; i < end;
         i += (long long)blockDim.x * gridDim.x)
        x[i] = v;
}

// Every row of x (rows, width) = row.
extern "C" __global__ void fill_rows(float* x, const float* row, long long rows, long long width) {
    GRID_STRIDE(i, rows * width) x[i] = row[i % width];
}

// out = a + b (the LSTM's b_ih + b_hh).
extern "C" __global__ void add2(const float* a, const float* b, float* out, long long n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// dst += src (Backend::add_into).
extern "C" __global__ void add_into(float* dst, const float* src, long long n) {
    GRID_STRIDE(i, n) dst[i] += src[i];
}

// d *= m (dropout::dropout_backward, Backend::multiply).
extern "C" __global__ void multiply(float* d, const float* m, long long n) {
    GRID_STRIDE(i, n) d[i] *= m[i];
}

// ---- embedding (embedding.rs) ----

extern "C" __global__ void embedding_fwd(const float* table, const unsigned* tokens, long long n,
                                         long long e, float* out) {
    GRID_STRIDE(i, n * e) {
        long long r = i / e, j = i % e;
        out[i] = table[(long long)tokens[r] * e + j];
    }
}

// Scatter-add: rows of repeated tokens meet, hence atomics (their order is not fixed).
extern "C" __global__ void embedding_bwd(const float* dout, const unsigned* tokens, long long n,
                                         long long e, float* dtable) {
    GRID_STRIDE(i, n * e) {
        long long r = i / e, j = i % e;
        atomicAdd(&dtable[(long long)tokens[r] * e + j], dout[i]);
    }
}

// ---- dropout (dropout.rs) ----

// mask = u < p ? 0 : keep; with x, also out = x * mask.
extern "C" __global__ void dropout_fwd(unsigned long long key, unsigned long long stream, float p,
                                       float keep, const float* x, float* mask, float* out,
                                       long long n) {
    GRID_STRIDE(i, n) {
        float m = rng_uniform(key, stream, (unsigned long long)i) < p ? 0.0f : keep;
        mask[i] = m;
        if (x) out[i] = x[i] * m;
    }
}

// ---- LSTM gate epilogue (cell.rs) ----
// Gate k of batch row b, unit j is at k * kstride + b * rstride + j: the LSTM's [i f g o] rows
// (kstride H, rstride 4H) or the H-LSTM's gate-major planes (kstride T*B*H, rstride H).

extern "C" __global__ void gates_fwd(float* gates, const float* bias, const float* c_prev,
                                     float* c, float* tc, float* h_out, long long b, long long h,
                                     long long kstride, long long rstride) {
    GRID_STRIDE(idx, b * h) {
        long long r = idx / h, j = idx % h;
        float* g = gates + r * rstride + j;
        float pi = g[0], pf = g[kstride], pg = g[2 * kstride], po = g[3 * kstride];
        if (bias) {
            pi += bias[j];
            pf += bias[h + j];
            pg += bias[2 * h + j];
            po += bias[3 * h + j];
        }
        float i = sigmoid_f(pi), f = sigmoid_f(pf), gv = tanh_f(pg), o = sigmoid_f(po);
        float cv = f * c_prev[idx] + i * gv;
        float t = tanh_f(cv);
        g[0] = i;
        g[kstride] = f;
        g[2 * kstride] = gv;
        g[3 * kstride] = o;
        c[idx] = cv;
        tc[idx] = t;
        h_out[idx] = o * t;
    }
}

// `dc` holds dc_t on entry and dc_{t-1} on exit; dgates has the layout of gates.
extern "C" __global__ void gates_bwd(const float* gates, const float* c_prev, const float* tc,
                                     const float* dh_out, const float* dh_rec, float* dc,
                                     float* dgates, long long b, long long h, long long kstride,
                                     long long rstride) {
    GRID_STRIDE(idx, b * h) {
        long long r = idx / h, j = idx % h;
        const float* g = gates + r * rstride + j;
        float* d = dgates + r * rstride + j;
        float i = g[0], f = g[kstride], gv = g[2 * kstride], o = g[3 * kstride], t = tc[idx];
        float dh = dh_out[idx] + dh_rec[idx];
        float dcv = dc[idx] + dh * o * (1.0f - t * t);
        d[3 * kstride] = dh * t * o * (1.0f - o);
        d[0] = dcv * gv * i * (1.0f - i);
        d[kstride] = dcv * c_prev[idx] * f * (1.0f - f);
        d[2 * kstride] = dcv * i * (1.0f - gv * gv);
        dc[idx] = dcv * f;
    }
}

// ---- H-LSTM ReLU + gate dropout (hlstm.rs) ----

// One step: first (B, 4M) [i f g o] rows; acts = mask * ReLU(first) gathered into the four
// gate-major planes (plane stride `plane`, this step's (B, M) block at the pointer); first is
// replaced by mask * [first > 0]. No mask: an all-ones mask.
extern "C" __global__ void relu_fwd(float* first, const float* mask, float* acts, long long b,
                                    long long m, long long plane) {
    GRID_STRIDE(idx, b * 4 * m) {
        long long r = idx / (4 * m), k = (idx / m) % 4, j = idx % m;
        float p = first[idx];
        float on = p > 0.0f ? (mask ? mask[idx] : 1.0f) : 0.0f;
        acts[k * plane + r * m + j] = on * p;
        first[idx] = on;
    }
}

// dfirst[b, k*M + j] = dacts[k, b, j] * on[b, k*M + j] (dacts: (4, B, M)).
extern "C" __global__ void relu_bwd(const float* dacts, const float* on, float* dfirst,
                                    long long b, long long m) {
    GRID_STRIDE(idx, b * 4 * m) {
        long long r = idx / (4 * m), k = (idx / m) % 4, j = idx % m;
        dfirst[idx] = dacts[k * b * m + r * m + j] * on[idx];
    }
}

// ---- reductions ----

// out[j] (+)= sum over rows of x[r, j] (kernels::reduce::add_column_sums), in row order: one
// thread per column, so neighbouring threads read neighbouring values.
extern "C" __global__ void col_sums(const float* x, long long rows, long long cols, float* out,
                                    int accumulate) {
    GRID_STRIDE(j, cols) {
        float s = 0.0f;
        for (long long r = 0; r < rows; ++r) s += x[r * cols + j];
        out[j] = accumulate ? out[j] + s : s;
    }
}

// partial[blockIdx.x] = this block's share of sum x^2 in f64 (the host adds the partials in
// order, so the result does not depend on timing).
extern "C" __global__ void sum_squares(const float* x, long long n, double* partial) {
    __shared__ double scratch[32];
    double s = 0.0;
    GRID_STRIDE(i, n) {
        double v = (double)x[i];
        s += v * v;
    }
    s = block_sum_d(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// ---- fused bias + softmax cross-entropy (kernels::softmax::softmax_xent_biased) ----

// One block per row of logits (N, V): the bias is added in place, loss[r] = log sum exp - the
// target's logit; with `train` the row becomes scale * (softmax - onehot(target)).
extern "C" __global__ void xent_rows(float* logits, long long v, const unsigned* targets,
                                     const float* bias, float scale, int train, double* loss) {
    __shared__ float scratch[32];
    __shared__ float target_logit;
    float* row = logits + (long long)blockIdx.x * v;
    long long t = targets[blockIdx.x];
    float mx = NEG_INF;
    for (long long j = threadIdx.x; j < v; j += blockDim.x) {
        float x = row[j] + bias[j];
        row[j] = x;
        mx = fmaxf(mx, x);
    }
    mx = block_max(mx, scratch);  // ends with a barrier after the writes above
    if (threadIdx.x == 0) target_logit = row[t];
    __syncthreads();
    float s = 0.0f;
    for (long long j = threadIdx.x; j < v; j += blockDim.x) {
        float e = expf(row[j] - mx);
        if (train) row[j] = e;
        s += e;
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) loss[blockIdx.x] = log((double)s) + (double)(mx - target_logit);
    if (train) {
        float k = scale / s;
        for (long long j = threadIdx.x; j < v; j += blockDim.x) row[j] *= k;
        __syncthreads();
        if (threadIdx.x == 0) row[t] -= scale;
    }
}

// out (cols, rows) = in (rows, cols) transposed, through 32 x 32 tiles in shared memory
// (blocks of 32 x 8 threads).
extern "C" __global__ void transpose(const float* in, float* out, long long rows, long long cols) {
    __shared__ float tile[32][33];
    long long c0 = (long long)blockIdx.x * 32, r0 = (long long)blockIdx.y * 32;
    for (int dy = threadIdx.y; dy < 32; dy += 8) {
        long long r = r0 + dy, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[dy][threadIdx.x] = in[r * cols + c];
    }
    __syncthreads();
    for (int dy = threadIdx.y; dy < 32; dy += 8) {
        long long c = c0 + dy, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][dy];
    }
}

// ---- optimizer updates (backend/cpu.rs: sgd, momentum, adam) ----

extern "C" __global__ void sgd(float* p, const float* g, long long n, float lr, float gs,
                               float wd) {
    GRID_STRIDE(i, n) p[i] -= lr * (gs * g[i] + wd * p[i]);
}

extern "C" __global__ void momentum(float* p, const float* g, float* m, long long n, float lr,
                                    float gs, float wd, float mu) {
    GRID_STRIDE(i, n) {
        float gi = gs * g[i] + wd * p[i];
        float mi = mu * m[i] + gi;
        m[i] = mi;
        p[i] -= lr * mi;
    }
}

extern "C" __global__ void adam(float* p, const float* g, float* m, float* v, long long n,
                                float gs, float wd, float lr, int decoupled, float b1, float b2,
                                float eps, float step_size, float inv_sqrt_bc2) {
    GRID_STRIDE(i, n) {
        float pi = p[i];
        float gi = gs * g[i];
        if (!decoupled) gi = gi + wd * pi;
        if (decoupled) pi -= lr * wd * pi;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}
