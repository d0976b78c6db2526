//! The CUDA backend: [`Backend<f32>`] on one NVIDIA GPU through cudarc (driver, cuBLAS and NVRTC
//! loaded at run time, so a build needs no CUDA toolkit).
//!
//! Buffers are `CudaSlice<f32>` / `CudaSlice<u32>` on one stream; every operation is queued on
//! it in order, so no operation needs an event (event tracking is off). GEMMs are cuBLAS SGEMMs
//! (row-major through the operand swap, TF32 off unless [`Cuda::set_tf32`] asks for it); the
//! element-wise passes, the gate epilogues, dropout, the fused softmax cross-entropy, the
//! reductions and the optimizer updates are the NVRTC kernels of `kernels.cu`, compiled once by
//! [`Cuda::new`] without fused multiply-adds so that their arithmetic rounds as the CPU's. The
//! LSTM and H-LSTM layers (`lstm.rs`, `hlstm.rs`) follow the CPU algorithm step for step.
//!
//! Kernels receive raw device pointers (the host offsets them): a layer reads and writes parts of
//! one tape buffer in the same launch, which borrowed cudarc views cannot express. Every
//! operation checks that the ranges it touches lie inside its buffers before anything is queued,
//! and returns a [`DeviceError`] naming the operation otherwise.

mod hlstm;
mod lstm;

pub use hlstm::CudaHlstmTape;
pub use lstm::CudaLstmTape;

use super::{Backend, DeviceError, HlstmAt, LstmAt, Operand, Update, XentTargets};
use crate::dropout::DropoutCtx;
use crate::hlstm::HlstmShape;
use crate::lstm::LstmShape;
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use kernels::rng::CounterRng;
use kernels::support::Support;
use kernels::Trans;
use std::ops::Range;
use std::sync::Arc;

/// The kernels' source (CUDA C++), compiled at run time by NVRTC.
pub const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// The environment variable naming a PTX file of the kernels to load instead of compiling them.
pub const PTX_VAR: &str = "SYMBIONT_CUDA_PTX";

/// Threads per block of the element-wise kernels and of the per-row softmax.
const THREADS: u32 = 256;
/// Blocks of the f64 sum of squares (its partials are added on the host, in order).
const SUM_BLOCKS: u32 = 512;

/// One compiled kernel with its name and parameter signature (see [`KERNEL_SIGNATURES`]).
struct Kernel {
    f: CudaFunction,
    name: &'static str,
    sig: &'static str,
}

macro_rules! kernel_set {
    ($($name:ident: $sig:literal),* $(,)?) => {
        /// Every kernel of `kernels.cu`, loaded from the compiled module.
        struct Kernels {
            $($name: Kernel,)*
        }

        /// The kernels `kernels.cu` must define, with their parameters in order: `P` a pointer,
        /// `L` a `long long`, `U` an `unsigned long long`, `F` a `float`, `I` an `int`. Every
        /// launch is checked against it (a mismatch is an error, not a corrupted launch), and the
        /// tests check it against the source and against the PTX NVRTC makes of it.
        pub const KERNEL_SIGNATURES: &[(&str, &str)] = &[$((stringify!($name), $sig)),*];

        impl Kernels {
            fn load(module: &Arc<cudarc::driver::CudaModule>) -> Result<Self, DeviceError> {
                Ok(Self {
                    $($name: Kernel {
                        f: module.load_function(stringify!($name)).map_err(|e| {
                            DeviceError(format!(
                                "cuda: loading kernel {}: {e}",
                                stringify!($name)
                            ))
                        })?,
                        name: stringify!($name),
                        sig: $sig,
                    },)*
                })
            }
        }
    };
}

kernel_set!(
    fill: "PLF",
    fill_ranges: "PPF",
    fill_rows: "PPLL",
    add2: "PPPL",
    add_into: "PPL",
    multiply: "PPL",
    embedding_fwd: "PPLLP",
    embedding_bwd: "PPLLP",
    dropout_fwd: "UUFFPPPL",
    gates_fwd: "PPPPPPLLLL",
    gates_bwd: "PPPPPPPLLLL",
    relu_fwd: "PPPLLL",
    relu_bwd: "PPPLL",
    col_sums: "PLLPI",
    sum_squares: "PLP",
    xent_rows: "PLPPFIP",
    transpose: "PPLL",
    sgd: "PPLFFF",
    momentum: "PPPLFFFF",
    adam: "PPPPLFFFIFFFFF",
);

/// Compiles [`KERNEL_SOURCE`] to PTX with the options [`Cuda::new`] uses. Needs NVRTC only (no
/// GPU, no driver), so the source can be checked on any machine that has the library; returns
/// an error (never panics) when NVRTC cannot be loaded.
pub fn compile_kernels() -> Result<Ptx, DeviceError> {
    if let Some(missing) = missing_library("nvrtc") {
        return Err(DeviceError(missing));
    }
    let opts = CompileOptions {
        fmad: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        ..Default::default()
    };
    std::panic::catch_unwind(|| compile_ptx_with_opts(KERNEL_SOURCE, opts))
        .map_err(|_| DeviceError("cuda: NVRTC panicked while compiling the kernels".into()))?
        .map_err(|e| DeviceError(format!("cuda: NVRTC could not compile kernels.cu: {e}")))
}

/// `None` when one of cudarc's candidate names for `lib` loads, else why not (cudarc panics
/// when it cannot load a library, so it is looked for first).
pub fn missing_library(lib: &str) -> Option<String> {
    let names = cudarc::get_lib_name_candidates(lib);
    let found = names.iter().any(|name| {
        // SAFETY: loading a shared library runs its initialisers; these are the NVIDIA libraries
        // cudarc itself loads next, by the same names.
        unsafe { libloading::Library::new(name) }.is_ok()
    });
    (!found).then(|| {
        format!(
            "cuda: no {lib} library: none of lib{lib}.so, lib{lib}.so.13, lib{lib}.so.12, … \
             could be loaded (install the CUDA runtime libraries, e.g. the nvidia-cuda-{lib} or \
             nvidia-{lib} Python wheels, and put their lib folder on LD_LIBRARY_PATH)"
        )
    })
}

/// The mixed seed of a [`CounterRng`] (its `bits(s, i)` is `mix(key ^ mix(s ^ mix(i)))`),
/// recovered by inverting `mix` once: the GPU draws from the key directly.
pub fn rng_key(rng: &CounterRng) -> u64 {
    unmix(rng.bits(0, 0)) ^ mix(mix(0))
}

/// SplitMix64's finalizer, as `kernels::rng`'s.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The inverse of [`mix`] (each step of it is a bijection of u64).
fn unmix(mut z: u64) -> u64 {
    /// The inverse of `x ^ (x >> s)`.
    fn unshift(y: u64, s: u32) -> u64 {
        let mut x = y;
        for _ in 0..64 / s + 1 {
            x = y ^ (x >> s);
        }
        x
    }
    /// The inverse of an odd `c` modulo 2^64 (Newton's iteration doubles the correct bits).
    fn inverse(c: u64) -> u64 {
        let mut x = c;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
        }
        x
    }
    z = unshift(z, 31);
    z = z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB));
    z = unshift(z, 27);
    z = z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9));
    z = unshift(z, 30);
    z.wrapping_sub(0x9E37_79B9_7F4A_7C15)
}

/// One kernel argument: a device pointer, a count or a value.
#[derive(Clone, Copy, Debug)]
enum Arg {
    /// A device pointer (0 for "none").
    P(u64),
    /// `long long`.
    L(i64),
    /// `int`.
    I(i32),
    /// `unsigned long long`.
    U(u64),
    /// `float`.
    F(f32),
}

impl Arg {
    /// The letter of [`KERNEL_SIGNATURES`] this argument fills.
    fn letter(&self) -> u8 {
        match self {
            Arg::P(_) => b'P',
            Arg::L(_) => b'L',
            Arg::I(_) => b'I',
            Arg::U(_) => b'U',
            Arg::F(_) => b'F',
        }
    }
}

/// `usize` as a kernel's `long long`.
fn l(n: usize) -> Arg {
    Arg::L(n as i64)
}

/// The error of a failed device call, naming the operation.
fn err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> DeviceError + '_ {
    move |e| DeviceError(format!("cuda: {what}: {e}"))
}

/// Fails unless `at..at + n` lies inside a buffer of `len` values.
fn fits(len: usize, at: usize, n: usize, what: &str) -> Result<(), DeviceError> {
    match at.checked_add(n) {
        Some(end) if end <= len => Ok(()),
        _ => Err(DeviceError(format!(
            "cuda: {what}: {at}..{at}+{n} is outside a buffer of {len} values"
        ))),
    }
}

/// One NVIDIA GPU: its context, the stream every operation is queued on, a cuBLAS handle and
/// the compiled kernels.
pub struct Cuda {
    ordinal: usize,
    name: String,
    // Dropped last (fields drop in order): everything below lives in this context.
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    ctx: Arc<CudaContext>,
}

impl Cuda {
    /// GPU `ordinal`: probes the driver first (cudarc panics without it), then the cuBLAS and
    /// NVRTC libraries, creates a context, a stream and a cuBLAS handle (fp32 GEMMs, no TF32)
    /// and compiles the kernels. Every failure is an error naming what is missing.
    ///
    /// With `SYMBIONT_CUDA_PTX=FILE` the kernels are loaded from that PTX (written by
    /// [`compile_kernels`] elsewhere, e.g. by `scripts/gpu-check.sh build`) instead of compiled:
    /// a machine with the driver and cuBLAS but no NVRTC can then run them.
    pub fn new(ordinal: usize) -> Result<Cuda, DeviceError> {
        let info = kernels::device::probe_cuda(ordinal).map_err(DeviceError)?;
        if let Some(missing) = missing_library("cublas") {
            return Err(DeviceError(missing));
        }
        let ptx = match std::env::var_os(PTX_VAR) {
            Some(file) => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    DeviceError(format!(
                        "cuda: reading {PTX_VAR}={}: {e}",
                        file.to_string_lossy()
                    ))
                })?;
                Ptx::from_src(text)
            }
            None => compile_kernels()?,
        };
        std::panic::catch_unwind(|| Self::start(ordinal, info.name, ptx)).map_err(|_| {
            DeviceError(format!(
                "cuda:{ordinal}: starting the device panicked (a CUDA library is missing or broken)"
            ))
        })?
    }

    fn start(ordinal: usize, name: String, ptx: Ptx) -> Result<Cuda, DeviceError> {
        let ctx = CudaContext::new(ordinal).map_err(err("creating a context"))?;
        // SAFETY: every buffer of this backend is used on the one stream created below, in queue
        // order, so the events cudarc would record to order streams are not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(err("creating a stream"))?;
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| DeviceError(format!("cuda: creating a cuBLAS handle: {e}")))?;
        let module = ctx.load_module(ptx).map_err(err("loading the kernels"))?;
        let k = Kernels::load(&module)?;
        let cuda = Cuda {
            ordinal,
            name,
            stream,
            blas,
            k,
            ctx,
        };
        cuda.set_tf32(false)?;
        Ok(cuda)
    }

    /// Lets cuBLAS run fp32 GEMMs on TF32 tensor cores (faster, ~1e-3 relative error) or not
    /// (the default: fp32 results, comparable with the CPU's).
    pub fn set_tf32(&self, on: bool) -> Result<(), DeviceError> {
        let mode = if on {
            blas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: the handle is valid for the lifetime of `self.blas`.
        unsafe { blas_sys::cublasSetMathMode(*self.blas.handle(), mode) }
            .result()
            .map_err(|e| DeviceError(format!("cuda: setting the cuBLAS math mode: {e}")))
    }

    /// Waits until everything queued so far has run (and reports a failure of it).
    pub fn synchronize(&self) -> Result<(), DeviceError> {
        self.stream.synchronize().map_err(err("synchronizing"))
    }

    /// The device address of element `at` of `buf`.
    fn ptr<T>(&self, buf: &CudaSlice<T>, at: usize) -> u64 {
        let (p, _sync) = buf.device_ptr(&self.stream);
        p + (at * std::mem::size_of::<T>()) as u64
    }

    /// Launches `f` over `cfg` with `args`, which must match the kernel's parameters in order
    /// and type (each call site states the kernel it launches).
    fn launch(
        &self,
        k: &Kernel,
        cfg: LaunchConfig,
        args: &[Arg],
        what: &str,
    ) -> Result<(), DeviceError> {
        let sig = k.sig.as_bytes();
        if args.len() != sig.len() || args.iter().zip(sig).any(|(a, &c)| a.letter() != c) {
            let given: String = args.iter().map(|a| a.letter() as char).collect();
            return Err(DeviceError(format!(
                "cuda: {what}: kernel {} takes ({}), was given ({given})",
                k.name, k.sig
            )));
        }
        let mut b = self.stream.launch_builder(&k.f);
        for a in args {
            match a {
                Arg::P(x) | Arg::U(x) => b.arg(x),
                Arg::L(x) => b.arg(x),
                Arg::I(x) => b.arg(x),
                Arg::F(x) => b.arg(x),
            };
        }
        // SAFETY: the arguments match the kernel's parameters in number and type (checked above;
        // the signatures are tested against kernels.cu and its PTX) and every pointer range was
        // checked against its buffer by the caller.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(err(what))
    }

    /// An element-wise launch over `n` values (grid-stride kernels); nothing for n = 0.
    fn launch_n(&self, f: &Kernel, n: usize, args: &[Arg], what: &str) -> Result<(), DeviceError> {
        if n == 0 {
            return Ok(());
        }
        let blocks = n.div_ceil(THREADS as usize).min(1 << 16) as u32;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(f, cfg, args, what)
    }

    /// Row-major `c = alpha op(a) op(b) + beta c` on device pointers (see [`Backend::gemm`]):
    /// cuBLAS is column-major, so it computes cᵀ = op(b)ᵀ op(a)ᵀ.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_ptr(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        (a, ta): (u64, Trans),
        (b, tb): (u64, Trans),
        beta: f32,
        c: u64,
    ) -> Result<(), DeviceError> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        let int = |x: usize| {
            i32::try_from(x).map_err(|_| DeviceError(format!("cuda: gemm dimension {x} > 2^31")))
        };
        let lda = if ta == Trans::N { k } else { m };
        let ldb = if tb == Trans::N { n } else { k };
        let op = |t: Trans| match t {
            Trans::N => blas_sys::cublasOperation_t::CUBLAS_OP_N,
            Trans::T => blas_sys::cublasOperation_t::CUBLAS_OP_T,
        };
        self.ctx.bind_to_thread().map_err(err("gemm"))?;
        // SAFETY: the callers checked that a (m·k), b (k·n) and c (m·n) lie inside live buffers
        // of this context; alpha and beta are host values (cuBLAS's default pointer mode).
        unsafe {
            blas::sgemm(
                *self.blas.handle(),
                op(tb),
                op(ta),
                int(n)?,
                int(m)?,
                int(k)?,
                &alpha,
                b as *const f32,
                int(ldb.max(1))?,
                a as *const f32,
                int(lda.max(1))?,
                &beta,
                c as *mut f32,
                int(n)?,
            )
        }
        .map_err(|e| DeviceError(format!("cuda: sgemm ({m} x {n} x {k}): {e}")))
    }

    /// `dst[at..at + n] = src[..n]` between device pointers.
    fn copy_ptr(&self, src: u64, dst: u64, n: usize, what: &str) -> Result<(), DeviceError> {
        if n == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(err(what))?;
        // SAFETY: the callers checked both ranges against their buffers.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst,
                src,
                n * std::mem::size_of::<f32>(),
                self.stream.cu_stream(),
            )
        }
        .map_err(err(what))
    }

    /// `x[..n] = v` on a device pointer.
    fn fill_ptr(&self, x: u64, n: usize, v: f32) -> Result<(), DeviceError> {
        // fill(float* x, long long n, float v)
        self.launch_n(&self.k.fill, n, &[Arg::P(x), l(n), Arg::F(v)], "fill")
    }

    /// `out[j] (+)= Σ_r x[r, j]` over (rows, cols) at device pointers.
    fn col_sums_ptr(
        &self,
        x: u64,
        rows: usize,
        cols: usize,
        out: u64,
        accumulate: bool,
    ) -> Result<(), DeviceError> {
        // col_sums(const float* x, long long rows, long long cols, float* out, int accumulate)
        let args = [
            Arg::P(x),
            l(rows),
            l(cols),
            Arg::P(out),
            Arg::I(accumulate as i32),
        ];
        self.launch_n(&self.k.col_sums, cols, &args, "column sums")
    }

    /// Every row of (rows, width) at `x` = the `width` values at `row`.
    fn fill_rows_ptr(
        &self,
        x: u64,
        row: u64,
        rows: usize,
        width: usize,
    ) -> Result<(), DeviceError> {
        // fill_rows(float* x, const float* row, long long rows, long long width)
        let args = [Arg::P(x), Arg::P(row), l(rows), l(width)];
        self.launch_n(
            &self.k.fill_rows,
            rows * width,
            &args,
            "broadcasting a bias",
        )
    }

    /// The gate epilogue (cell.rs `gates_forward`) over (b, h) with the gate layout
    /// (`kstride`, `rstride`) of `kernels.cu`.
    #[allow(clippy::too_many_arguments)]
    fn gates_fwd_ptr(
        &self,
        gates: u64,
        bias: u64,
        c_prev: u64,
        c: u64,
        tc: u64,
        h_out: u64,
        (b, h): (usize, usize),
        (kstride, rstride): (usize, usize),
    ) -> Result<(), DeviceError> {
        // gates_fwd(float* gates, const float* bias, const float* c_prev, float* c, float* tc,
        //           float* h_out, long long b, long long h, long long kstride, long long rstride)
        let args = [
            Arg::P(gates),
            Arg::P(bias),
            Arg::P(c_prev),
            Arg::P(c),
            Arg::P(tc),
            Arg::P(h_out),
            l(b),
            l(h),
            l(kstride),
            l(rstride),
        ];
        self.launch_n(&self.k.gates_fwd, b * h, &args, "gate epilogue")
    }

    /// cell.rs `gates_backward` over (b, h) with the gate layout (`kstride`, `rstride`).
    #[allow(clippy::too_many_arguments)]
    fn gates_bwd_ptr(
        &self,
        gates: u64,
        c_prev: u64,
        tc: u64,
        dh_out: u64,
        dh_rec: u64,
        dc: u64,
        dgates: u64,
        (b, h): (usize, usize),
        (kstride, rstride): (usize, usize),
    ) -> Result<(), DeviceError> {
        // gates_bwd(const float* gates, const float* c_prev, const float* tc,
        //           const float* dh_out, const float* dh_rec, float* dc, float* dgates,
        //           long long b, long long h, long long kstride, long long rstride)
        let args = [
            Arg::P(gates),
            Arg::P(c_prev),
            Arg::P(tc),
            Arg::P(dh_out),
            Arg::P(dh_rec),
            Arg::P(dc),
            Arg::P(dgates),
            l(b),
            l(h),
            l(kstride),
            l(rstride),
        ];
        self.launch_n(&self.k.gates_bwd, b * h, &args, "gate epilogue backward")
    }

    /// A zero-filled buffer of `n` values of `T`. An empty one holds one value's allocation
    /// (the driver refuses allocations of 0 bytes) and says it has none.
    fn alloc<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>, DeviceError> {
        let buf = self
            .stream
            .alloc_zeros(n.max(1))
            .map_err(err(&format!("allocating {n} values")))?;
        if n > 0 {
            return Ok(buf);
        }
        let ptr = buf.leak();
        // SAFETY: `ptr` is the live allocation just leaked, of one T (room for the 0 claimed);
        // the new slice owns it and frees it when dropped.
        Ok(unsafe { self.stream.upgrade_device_ptr(ptr, 0) })
    }

    /// Copies a device buffer to the host and waits for it.
    fn to_host<T: cudarc::driver::DeviceRepr>(
        &self,
        buf: &CudaSlice<T>,
        out: &mut [T],
    ) -> Result<(), DeviceError> {
        if out.len() != buf.len() {
            return Err(DeviceError(format!(
                "cuda: download: buffer of {} values into {}",
                buf.len(),
                out.len()
            )));
        }
        if out.is_empty() {
            return Ok(());
        }
        self.stream
            .memcpy_dtoh(buf, out)
            .map_err(err("copying to the host"))?;
        self.synchronize()
    }

    /// A host slice in a new device buffer.
    fn to_device<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        host: &[T],
    ) -> Result<CudaSlice<T>, DeviceError> {
        if host.is_empty() {
            return self.alloc(0);
        }
        self.stream
            .clone_htod(host)
            .map_err(err("copying to the device"))
    }
}

impl Backend<f32> for Cuda {
    type Buf = CudaSlice<f32>;
    type Ids = CudaSlice<u32>;
    type LstmTape = CudaLstmTape;
    type HlstmTape = CudaHlstmTape;

    fn describe(&self) -> String {
        format!("cuda:{} ({})", self.ordinal, self.name)
    }

    fn zeros(&self, n: usize) -> Result<CudaSlice<f32>, DeviceError> {
        self.alloc(n)
    }
    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>, DeviceError> {
        self.to_device(host)
    }
    fn release(&self, buf: CudaSlice<f32>) -> Result<Vec<f32>, DeviceError> {
        let mut out = vec![0.0; buf.len()];
        self.to_host(&buf, &mut out)?;
        Ok(out)
    }
    fn download(&self, buf: &CudaSlice<f32>, out: &mut [f32]) -> Result<(), DeviceError> {
        self.to_host(buf, out)
    }
    fn len(&self, buf: &CudaSlice<f32>) -> usize {
        buf.len()
    }
    fn upload_ids(&self, ids: &[u32]) -> Result<CudaSlice<u32>, DeviceError> {
        self.to_device(ids)
    }
    fn copy(
        &self,
        src: &CudaSlice<f32>,
        src_at: usize,
        dst: &mut CudaSlice<f32>,
        dst_at: usize,
        n: usize,
    ) -> Result<(), DeviceError> {
        fits(src.len(), src_at, n, "copy (source)")?;
        fits(dst.len(), dst_at, n, "copy (destination)")?;
        self.copy_ptr(self.ptr(src, src_at), self.ptr(dst, dst_at), n, "copy")
    }
    fn fill_on(
        &self,
        buf: &mut CudaSlice<f32>,
        support: &Support,
        v: f32,
    ) -> Result<(), DeviceError> {
        if support.buffer_len() != buf.len() {
            return Err(DeviceError(format!(
                "cuda: fill: support of {} values for a buffer of {}",
                support.buffer_len(),
                buf.len()
            )));
        }
        let ranges = support.ranges();
        if let [only] = ranges {
            return self.fill_ptr(self.ptr(buf, only.start), only.len(), v);
        }
        // Many ranges: one launch, blockIdx.y picking the range (at most 65,535 per launch).
        for chunk in ranges.chunks(65_535) {
            let pairs: Vec<i64> = chunk
                .iter()
                .flat_map(|r| [r.start as i64, r.end as i64])
                .collect();
            let longest = chunk.iter().map(|r| r.len()).max().unwrap_or(0);
            let dev = self.to_device(&pairs)?;
            let cfg = LaunchConfig {
                grid_dim: (
                    longest.div_ceil(THREADS as usize).clamp(1, 1024) as u32,
                    chunk.len() as u32,
                    1,
                ),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // fill_ranges(float* x, const long long* ranges, float v)
            let args = [
                Arg::P(self.ptr(buf, 0)),
                Arg::P(self.ptr(&dev, 0)),
                Arg::F(v),
            ];
            self.launch(&self.k.fill_ranges, cfg, &args, "fill on a support")?;
        }
        Ok(())
    }

    fn embedding_forward(
        &self,
        params: &CudaSlice<f32>,
        table: Range<usize>,
        e: usize,
        tokens: &CudaSlice<u32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = tokens.len();
        fits(params.len(), table.start, table.len(), "embedding table")?;
        fits(out.len(), 0, n * e, "embedding output")?;
        // Token ids are checked against the vocabulary when data is loaded (as on the CPU,
        // where an id past the table is a panic); the table's range bounds every read.
        // embedding_fwd(const float* table, const unsigned* tokens, long long n, long long e,
        //               float* out)
        let args = [
            Arg::P(self.ptr(params, table.start)),
            Arg::P(self.ptr(tokens, 0)),
            l(n),
            l(e),
            Arg::P(self.ptr(out, 0)),
        ];
        self.launch_n(&self.k.embedding_fwd, n * e, &args, "embedding forward")
    }
    fn embedding_backward(
        &self,
        dout: &CudaSlice<f32>,
        e: usize,
        tokens: &CudaSlice<u32>,
        grads: &mut CudaSlice<f32>,
        table: Range<usize>,
    ) -> Result<(), DeviceError> {
        let n = tokens.len();
        fits(dout.len(), 0, n * e, "embedding gradient")?;
        fits(
            grads.len(),
            table.start,
            table.len(),
            "embedding table gradient",
        )?;
        // embedding_bwd(const float* dout, const unsigned* tokens, long long n, long long e,
        //               float* dtable)
        let args = [
            Arg::P(self.ptr(dout, 0)),
            Arg::P(self.ptr(tokens, 0)),
            l(n),
            l(e),
            Arg::P(self.ptr(grads, table.start)),
        ];
        self.launch_n(&self.k.embedding_bwd, n * e, &args, "embedding backward")
    }
    fn dropout_forward(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        x: &CudaSlice<f32>,
        x_at: usize,
        mask: &mut CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = out.len();
        fits(x.len(), x_at, n, "dropout input")?;
        fits(mask.len(), 0, n, "dropout mask")?;
        let (x, m, o) = (self.ptr(x, x_at), self.ptr(mask, 0), self.ptr(out, 0));
        self.dropout(ctx, site, x, m, o, n)
    }
    fn dropout_mask(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        mask: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = mask.len();
        self.dropout(ctx, site, 0, self.ptr(mask, 0), 0, n)
    }
    fn multiply(
        &self,
        d: &mut CudaSlice<f32>,
        mask: &CudaSlice<f32>,
        n: usize,
    ) -> Result<(), DeviceError> {
        fits(d.len(), 0, n, "multiply")?;
        fits(mask.len(), 0, n, "multiply (mask)")?;
        // multiply(float* d, const float* m, long long n)
        let args = [Arg::P(self.ptr(d, 0)), Arg::P(self.ptr(mask, 0)), l(n)];
        self.launch_n(&self.k.multiply, n, &args, "multiply")
    }
    fn add_into(
        &self,
        dst: &mut CudaSlice<f32>,
        range: Range<usize>,
        src: &CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = range.len();
        fits(dst.len(), range.start, n, "add_into")?;
        fits(src.len(), 0, n, "add_into (source)")?;
        // add_into(float* dst, const float* src, long long n)
        let args = [
            Arg::P(self.ptr(dst, range.start)),
            Arg::P(self.ptr(src, 0)),
            l(n),
        ];
        self.launch_n(&self.k.add_into, n, &args, "add_into")
    }

    fn lstm_tape(&self, s: LstmShape) -> Result<CudaLstmTape, DeviceError> {
        CudaLstmTape::new(self, s)
    }
    fn lstm_forward(
        &self,
        s: LstmShape,
        params: &CudaSlice<f32>,
        at: &LstmAt,
        x: &CudaSlice<f32>,
        h0: &CudaSlice<f32>,
        c0: &CudaSlice<f32>,
        tape: &mut CudaLstmTape,
    ) -> Result<(), DeviceError> {
        lstm::forward(self, s, params, at, x, h0, c0, tape)
    }
    fn lstm_output<'a>(&self, tape: &'a CudaLstmTape, s: LstmShape) -> (&'a CudaSlice<f32>, usize) {
        (&tape.hs, s.b * s.h)
    }
    fn lstm_final_state(
        &self,
        tape: &CudaLstmTape,
        s: LstmShape,
        h: &mut CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let bh = s.b * s.h;
        self.copy(&tape.hs, s.t * bh, h, 0, bh)?;
        self.copy(&tape.cs, s.t * bh, c, 0, bh)
    }
    fn lstm_backward(
        &self,
        s: LstmShape,
        params: &CudaSlice<f32>,
        at: &LstmAt,
        x: &CudaSlice<f32>,
        dh: &CudaSlice<f32>,
        tape: &mut CudaLstmTape,
        grads: &mut CudaSlice<f32>,
        dx: Option<&mut CudaSlice<f32>>,
    ) -> Result<(), DeviceError> {
        lstm::backward(self, s, params, at, x, dh, tape, grads, dx)
    }

    fn hlstm_tape(&self, s: HlstmShape) -> Result<CudaHlstmTape, DeviceError> {
        CudaHlstmTape::new(self, s)
    }
    fn hlstm_forward(
        &self,
        s: HlstmShape,
        params: &CudaSlice<f32>,
        at: &HlstmAt,
        x: &CudaSlice<f32>,
        mask: Option<&CudaSlice<f32>>,
        h0: &CudaSlice<f32>,
        c0: &CudaSlice<f32>,
        tape: &mut CudaHlstmTape,
    ) -> Result<(), DeviceError> {
        hlstm::forward(self, s, params, at, x, mask, h0, c0, tape)
    }
    fn hlstm_output<'a>(
        &self,
        tape: &'a CudaHlstmTape,
        s: HlstmShape,
    ) -> (&'a CudaSlice<f32>, usize) {
        (&tape.hs, s.b * s.h)
    }
    fn hlstm_final_state(
        &self,
        tape: &CudaHlstmTape,
        s: HlstmShape,
        h: &mut CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let bh = s.b * s.h;
        self.copy(&tape.hs, s.t * bh, h, 0, bh)?;
        self.copy(&tape.cs, s.t * bh, c, 0, bh)
    }
    fn hlstm_backward(
        &self,
        s: HlstmShape,
        params: &CudaSlice<f32>,
        at: &HlstmAt,
        x: &CudaSlice<f32>,
        dh: &CudaSlice<f32>,
        tape: &mut CudaHlstmTape,
        grads: &mut CudaSlice<f32>,
        dx: Option<&mut CudaSlice<f32>>,
    ) -> Result<(), DeviceError> {
        hlstm::backward(self, s, params, at, x, dh, tape, grads, dx)
    }

    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Operand<'_, CudaSlice<f32>>,
        b: Operand<'_, CudaSlice<f32>>,
        beta: f32,
        c: &mut CudaSlice<f32>,
        c_at: usize,
    ) -> Result<(), DeviceError> {
        fits(a.buf.len(), a.at, m * k, "gemm operand a")?;
        fits(b.buf.len(), b.at, k * n, "gemm operand b")?;
        fits(c.len(), c_at, m * n, "gemm output")?;
        self.gemm_ptr(
            m,
            n,
            k,
            alpha,
            (self.ptr(a.buf, a.at), a.trans),
            (self.ptr(b.buf, b.at), b.trans),
            beta,
            self.ptr(c, c_at),
        )
    }

    fn softmax_xent(
        &self,
        logits: &mut CudaSlice<f32>,
        v: usize,
        targets: &CudaSlice<u32>,
        params: &CudaSlice<f32>,
        bias: Range<usize>,
        train: Option<XentTargets<'_, CudaSlice<f32>>>,
        row_loss: &mut [f64],
    ) -> Result<(), DeviceError> {
        let n = targets.len();
        fits(logits.len(), 0, n * v, "softmax logits")?;
        if bias.len() != v || row_loss.len() != n {
            return Err(DeviceError(format!(
                "cuda: softmax: bias of {} values and {} row losses for ({n}, {v}) logits",
                bias.len(),
                row_loss.len()
            )));
        }
        fits(params.len(), bias.start, v, "softmax bias")?;
        if n == 0 {
            return Ok(());
        }
        if v == 0 || v > u32::MAX as usize || n > i32::MAX as usize {
            return Err(DeviceError(format!(
                "cuda: softmax: cannot run ({n}, {v}) logits"
            )));
        }
        let loss = self.alloc::<f64>(n)?;
        let scale = train.as_ref().map_or(0.0, |t| t.scale);
        // xent_rows(float* logits, long long v, const unsigned* targets, const float* bias,
        //           float scale, int train, double* loss)
        let args = [
            Arg::P(self.ptr(logits, 0)),
            l(v),
            Arg::P(self.ptr(targets, 0)),
            Arg::P(self.ptr(params, bias.start)),
            Arg::F(scale),
            Arg::I(train.is_some() as i32),
            Arg::P(self.ptr(&loss, 0)),
        ];
        let rows = LaunchConfig {
            grid_dim: (n as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&self.k.xent_rows, rows, &args, "softmax cross-entropy")?;
        if let Some(t) = train {
            if t.dbias.len() != v {
                return Err(DeviceError(format!(
                    "cuda: softmax: bias gradient of {} values for V = {v}",
                    t.dbias.len()
                )));
            }
            if t.transposed.len() != n * v {
                *t.transposed = self.alloc(n * v)?;
            }
            // The bias gradient is the column sums of the gradient (written, as the CPU's).
            let g = self.ptr(logits, 0);
            self.col_sums_ptr(g, n, v, self.ptr(t.dbias, 0), false)?;
            let tiles = LaunchConfig {
                grid_dim: (v.div_ceil(32) as u32, n.div_ceil(32) as u32, 1),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            if n.div_ceil(32) > 65_535 {
                return Err(DeviceError(format!("cuda: softmax: {n} rows to transpose")));
            }
            // transpose(const float* in, float* out, long long rows, long long cols)
            let args = [Arg::P(g), Arg::P(self.ptr(t.transposed, 0)), l(n), l(v)];
            self.launch(&self.k.transpose, tiles, &args, "transposing the gradient")?;
        }
        self.to_host(&loss, row_loss)
    }

    fn sum_squares_on(&self, x: &CudaSlice<f32>, support: &Support) -> Result<f64, DeviceError> {
        if support.buffer_len() != x.len() {
            return Err(DeviceError(format!(
                "cuda: sum of squares: support of {} values for a buffer of {}",
                support.buffer_len(),
                x.len()
            )));
        }
        // The values outside the support are zero (the trait's contract), so the dense sum is
        // the sum over the support.
        let n = x.len();
        if n == 0 {
            return Ok(0.0);
        }
        let blocks = (n.div_ceil(THREADS as usize) as u32).min(SUM_BLOCKS);
        let partial = self.alloc::<f64>(blocks as usize)?;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // sum_squares(const float* x, long long n, double* partial)
        let args = [Arg::P(self.ptr(x, 0)), l(n), Arg::P(self.ptr(&partial, 0))];
        self.launch(&self.k.sum_squares, cfg, &args, "sum of squares")?;
        let mut host = vec![0.0f64; blocks as usize];
        self.to_host(&partial, &mut host)?;
        Ok(host.iter().sum())
    }

    fn update(
        &self,
        params: &mut CudaSlice<f32>,
        grads: &CudaSlice<f32>,
        state: [Option<&mut CudaSlice<f32>>; 2],
        update: Update,
        _support: &Support,
    ) -> Result<(), DeviceError> {
        // Dense over the whole buffer: where the gradient is zero outside the support, plain
        // SGD without decay leaves those parameters as they are, as the CPU's sparse pass does.
        let n = params.len();
        if grads.len() != n {
            return Err(DeviceError(format!(
                "cuda: update: {n} parameters and {} gradients",
                grads.len()
            )));
        }
        for s in state.iter().flatten() {
            if s.len() != n {
                return Err(DeviceError(format!(
                    "cuda: update: optimizer state of {} values for {n} parameters",
                    s.len()
                )));
            }
        }
        let (p, g) = (Arg::P(self.ptr(params, 0)), Arg::P(self.ptr(grads, 0)));
        match (update, state) {
            (Update::Sgd { lr, gs, wd }, _) => {
                // sgd(float* p, const float* g, long long n, float lr, float gs, float wd)
                let args = [p, g, l(n), Arg::F(lr), Arg::F(gs), Arg::F(wd)];
                self.launch_n(&self.k.sgd, n, &args, "sgd update")
            }
            (Update::Momentum { lr, gs, wd, mu }, [Some(m), _]) => {
                // momentum(float* p, const float* g, float* m, long long n, float lr, float gs,
                //          float wd, float mu)
                let args = [
                    p,
                    g,
                    Arg::P(self.ptr(m, 0)),
                    l(n),
                    Arg::F(lr),
                    Arg::F(gs),
                    Arg::F(wd),
                    Arg::F(mu),
                ];
                self.launch_n(&self.k.momentum, n, &args, "momentum update")
            }
            (
                Update::Adam {
                    gs,
                    wd,
                    lr,
                    decoupled,
                    b1,
                    b2,
                    eps,
                    step_size,
                    inv_sqrt_bc2,
                },
                [Some(m), Some(v)],
            ) => {
                // adam(float* p, const float* g, float* m, float* v, long long n, float gs,
                //      float wd, float lr, int decoupled, float b1, float b2, float eps,
                //      float step_size, float inv_sqrt_bc2)
                let args = [
                    p,
                    g,
                    Arg::P(self.ptr(m, 0)),
                    Arg::P(self.ptr(v, 0)),
                    l(n),
                    Arg::F(gs),
                    Arg::F(wd),
                    Arg::F(lr),
                    Arg::I(decoupled as i32),
                    Arg::F(b1),
                    Arg::F(b2),
                    Arg::F(eps),
                    Arg::F(step_size),
                    Arg::F(inv_sqrt_bc2),
                ];
                self.launch_n(&self.k.adam, n, &args, "adam update")
            }
            (u, _) => Err(DeviceError(format!(
                "update {u:?} was given the wrong optimizer state buffers"
            ))),
        }
    }
}

impl Cuda {
    /// Dropout at `site` over n values: the mask at `mask`, and `out = x * mask` unless x = 0.
    fn dropout(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        x: u64,
        mask: u64,
        out: u64,
        n: usize,
    ) -> Result<(), DeviceError> {
        // The same constants as dropout.rs: keep = 1/(1-p) rounded from f64, p compared in f32.
        let keep = (1.0 / (1.0 - ctx.p)) as f32;
        // dropout_fwd(unsigned long long key, unsigned long long stream, float p, float keep,
        //             const float* x, float* mask, float* out, long long n)
        let args = [
            Arg::U(rng_key(&ctx.rng)),
            Arg::U(ctx.stream(site)),
            Arg::F(ctx.p as f32),
            Arg::F(keep),
            Arg::P(x),
            Arg::P(mask),
            Arg::P(out),
            l(n),
        ];
        self.launch_n(&self.k.dropout_fwd, n, &args, "dropout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_key_reproduces_every_draw() {
        for seed in [0u64, 1, 42, u64::MAX, 0x1234_5678_9abc_def0] {
            let rng = CounterRng::new(seed);
            let key = rng_key(&rng);
            for (s, i) in [(0u64, 0u64), (3, 7), (1 << 40, 12345), (u64::MAX, u64::MAX)] {
                assert_eq!(mix(key ^ mix(s ^ mix(i))), rng.bits(s, i), "seed {seed}");
            }
        }
    }

    #[test]
    fn unmix_inverts_mix() {
        for z in [0u64, 1, 2, 0xdead_beef, u64::MAX, 1 << 63] {
            assert_eq!(unmix(mix(z)), z);
            assert_eq!(mix(unmix(z)), z);
        }
    }

    /// The parameters of kernel `name` in kernels.cu, as [`KERNEL_SIGNATURES`] letters.
    fn source_signature(name: &str) -> String {
        let decl = format!("__global__ void {name}(");
        let at = KERNEL_SOURCE
            .find(&decl)
            .unwrap_or_else(|| panic!("kernels.cu lacks {name}"));
        let params = &KERNEL_SOURCE[at + decl.len()..];
        let params = &params[..params.find(')').expect("a closing parenthesis")];
        params
            .split(',')
            .map(|p| {
                let ty = p.split_whitespace().collect::<Vec<_>>();
                let ty = ty[..ty.len() - 1].join(" ");
                match ty.as_str() {
                    t if t.ends_with('*') || p.contains('*') => 'P',
                    "long long" => 'L',
                    "unsigned long long" => 'U',
                    "float" => 'F',
                    "int" => 'I',
                    other => panic!("{name}: parameter type `{other}` has no letter"),
                }
            })
            .collect()
    }

    #[test]
    fn every_signature_matches_the_source() {
        let kernels = KERNEL_SOURCE.matches("__global__ void").count();
        assert_eq!(
            kernels,
            KERNEL_SIGNATURES.len(),
            "kernels.cu defines other kernels"
        );
        for (name, sig) in KERNEL_SIGNATURES {
            assert_eq!(&source_signature(name), sig, "signature of {name}");
        }
    }
}
