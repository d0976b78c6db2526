//! Where a command runs: `cpu` or `cuda:N` (the `--device` flag), and the probe that tells why a
//! GPU cannot be used — a build without the `cuda` feature, no NVIDIA driver library, no GPU at
//! that ordinal — before anything calls into cudarc, which panics when it cannot load libcuda.

use std::fmt;
use std::str::FromStr;

/// A device a command can run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// This machine's CPUs (the kernels of `kernels::isa`'s active level).
    #[default]
    Cpu,
    /// NVIDIA GPU number `ordinal` (CUDA's numbering, as `nvidia-smi` lists them).
    Cuda { ordinal: usize },
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Device, String> {
        let bad =
            || format!("unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N` (N = 0, 1, …)");
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda { ordinal: 0 }),
            other => {
                let n = other.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse()
                    .map(|ordinal| Device::Cuda { ordinal })
                    .map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda { ordinal } => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// A GPU the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    pub ordinal: usize,
    /// The driver's name for it (e.g. "NVIDIA H200").
    pub name: String,
    /// GPUs the driver reports.
    pub count: usize,
    /// The driver library that was loaded (e.g. "libcuda.so.1").
    pub driver_library: String,
}

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Finds GPU `ordinal`, or says what is missing: the `cuda` feature, the driver library, or
/// that GPU. Never panics (cudarc's own loading does, so the library is looked for first).
pub fn probe_cuda(ordinal: usize) -> Result<GpuInfo, String> {
    #[cfg(feature = "cuda")]
    {
        cuda::probe(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        Err(
            "this symbiont was built without the `cuda` feature: build it with \
             `cargo build --release --features cuda` (no CUDA toolkit needed; the driver, cuBLAS \
             and NVRTC are loaded at run time)"
                .into(),
        )
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::GpuInfo;

    /// The first of cudarc's candidate names for `lib` that loads.
    fn loadable(lib: &str) -> Option<String> {
        cudarc::get_lib_name_candidates(lib)
            .into_iter()
            .find(|name| {
                // SAFETY: loading a shared library runs its initialisers; the NVIDIA driver library
                // is what cudarc itself loads next, by the same names.
                unsafe { libloading::Library::new(name) }.is_ok()
            })
    }

    pub(super) fn probe(ordinal: usize) -> Result<GpuInfo, String> {
        let Some(driver_library) = loadable("cuda") else {
            let mut names = cudarc::get_lib_name_candidates("cuda");
            names.sort();
            names.dedup();
            return Err(format!(
                "no NVIDIA driver: no library of the {} names cudarc tries (libcuda.so.1, \
                 libcuda.so, …) could be loaded (is the driver installed, and its folder on \
                 LD_LIBRARY_PATH?)",
                names.len()
            ));
        };
        // cudarc panics on failures it does not expect; a panic here is a driver problem to
        // report, not a crash.
        let count = std::panic::catch_unwind(cudarc::driver::CudaContext::device_count)
            .map_err(|_| format!("{driver_library} loaded, but initialising CUDA panicked"))?
            .map_err(|e| format!("{driver_library} loaded, but CUDA does not start: {e}"))?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err(format!(
                "{driver_library} loaded, but the driver reports no GPU"
            ));
        }
        if ordinal >= count {
            return Err(format!(
                "no GPU cuda:{ordinal}: this machine has {count} (cuda:0 … cuda:{})",
                count - 1
            ));
        }
        let name = std::panic::catch_unwind(|| {
            cudarc::driver::CudaContext::new(ordinal).and_then(|ctx| ctx.name())
        })
        .map_err(|_| format!("cuda:{ordinal}: creating a context panicked"))?
        .map_err(|e| format!("cuda:{ordinal}: cannot create a context: {e}"))?;
        Ok(GpuInfo {
            ordinal,
            name,
            count,
            driver_library,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda { ordinal: 0 }));
        assert_eq!("cuda:3".parse::<Device>(), Ok(Device::Cuda { ordinal: 3 }));
        for s in ["cpu", "cuda:0", "cuda:12"] {
            assert_eq!(s.parse::<Device>().unwrap().to_string(), s);
        }
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "CUDA:0", ""] {
            let err = bad.parse::<Device>().unwrap_err();
            assert!(err.contains("cuda:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_probe_names_what_is_missing_instead_of_panicking() {
        // Without the feature: the feature. With it, on a machine without a GPU: the driver or
        // the GPU. On a GPU machine the probe of an absurd ordinal still fails, naming it.
        let err = probe_cuda(999).unwrap_err();
        if CUDA_BUILT {
            assert!(
                err.contains("no NVIDIA driver")
                    || err.contains("cuda:999")
                    || err.contains("no GPU"),
                "{err}"
            );
        } else {
            assert!(err.contains("`cuda` feature"), "{err}");
        }
    }
}
