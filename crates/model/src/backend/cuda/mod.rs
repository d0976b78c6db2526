//! The CUDA backend: [`Backend<f32>`] on one NVIDIA GPU through cudarc (driver, cuBLAS and NVRTC
//! loaded at run time, so a build needs no CUDA toolkit).
//!
//! Buffers are `CudaSlice<f32>` / `CudaSlice<u32>` on one stream; every operation is queued on
//! it in order, so no operation needs an event (event tracking is off). GEMMs are cuBLAS SGEMMs
//! (row-major through the operand swap, TF32 off unless [`Cuda::set_tf32`] asks for it); the
//! element-wise passes, the gate epilogues, dropout, the fused softmax cross-entropy, the
//! reductions and the optimizer updates are the NVRTC kernels of `kernels.cu`, compiled once by
//! [`Cuda::new`] without fused multiply-adds so that their arithmetic rounds as the CPU's. The
//! LSTM and H-LSTM layers (`lstm.rs`, `hlstm.rs`) follow the CPU algorithm step for step; the
//! other operations of the trait are in `ops.rs`, the dropout generator's key in `rng.rs`.
//!
//! Kernels receive raw device pointers (the host offsets them): a layer reads and writes parts of
//! one tape buffer in the same launch, which borrowed cudarc views cannot express. Every
//! operation checks that the ranges it touches lie inside its buffers before anything is queued,
//! and returns a [`DeviceError`] naming the operation otherwise.

mod hlstm;
mod lstm;
mod ops;
mod rng;

pub use hlstm::CudaHlstmTape;
pub use lstm::CudaLstmTape;
pub use rng::rng_key;

use super::DeviceError;
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use kernels::Trans;
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
#[cfg(test)]
mod tests {
    use super::*;

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
