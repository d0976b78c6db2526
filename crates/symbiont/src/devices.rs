//! `--device`: which commands can run where, checked before a command starts, so a missing GPU,
//! driver or `cuda` feature is one clear error (exit 2) rather than a panic inside cudarc; and
//! the backend a command runs on.

use kernels::device::{probe_cuda, Device};

/// The commands that run a model and so take `--device` (the others read or write files).
const DEVICE_COMMANDS: [&str; 6] = ["train", "compress", "eval", "infer", "bench", "profile"];

/// The commands that run on the device seam (`model::backend`), and so on a GPU.
const SEAM_COMMANDS: [&str; 2] = ["train", "eval"];

/// Ok when `command` can run on `device` in this build on this machine; else what is missing.
pub fn check(device: Device, command: &str) -> Result<(), String> {
    let Device::Cuda { ordinal } = device else {
        return Ok(());
    };
    if !DEVICE_COMMANDS.contains(&command) {
        return Err(format!(
            "`{command}` runs on the CPU only (--device is for {})",
            DEVICE_COMMANDS.join(", ")
        ));
    }
    let gpu = probe_cuda(ordinal).map_err(|e| format!("--device {device}: {e}"))?;
    if SEAM_COMMANDS.contains(&command) {
        return Ok(());
    }
    // The GPU is there, but this command's engine (inference plans, the profiler's engines,
    // the compression flow) does not run on the seam yet: refuse rather than run on the CPU
    // under a GPU's name.
    Err(format!(
        "--device {device}: found {} ({} of {} via {}), but `{command}` has no CUDA backend in \
         this build yet (on a GPU: {}); run it with --device cpu",
        gpu.name,
        gpu.ordinal + 1,
        gpu.count,
        gpu.driver_library,
        SEAM_COMMANDS.join(", ")
    ))
}

/// Runs `job` on the backend of `device` (checked by [`check`] first).
macro_rules! on_device {
    ($device:expr, |$be:ident| $job:expr) => {
        match $device {
            kernels::device::Device::Cpu => {
                let $be = &model::backend::Cpu;
                $job
            }
            #[cfg(feature = "cuda")]
            kernels::device::Device::Cuda { ordinal } => {
                let cuda = model::backend::cuda::Cuda::new(ordinal)
                    .map_err(|e| format!("--device {}: {e}", $device))?;
                let $be = &cuda;
                $job
            }
            #[cfg(not(feature = "cuda"))]
            kernels::device::Device::Cuda { .. } => {
                unreachable!("devices::check refuses CUDA in a build without the feature")
            }
        }
    };
}
pub(crate) use on_device;
