//! `--device`: which commands can run where, checked before a command starts, so a missing GPU,
//! driver or `cuda` feature is one clear error (exit 2) rather than a panic inside cudarc.

use kernels::device::{probe_cuda, Device};

/// The commands that run a model and so take `--device` (the others read or write files).
const DEVICE_COMMANDS: [&str; 6] = ["train", "compress", "eval", "infer", "bench", "profile"];

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
    // The GPU is there, but the engine reaches it only through the device seam, which does not
    // exist yet (issue 15): refuse rather than run on the CPU under a GPU's name.
    Err(format!(
        "--device {device}: found {} ({} of {} via {}), but `{command}` has no CUDA backend in \
         this build yet; run it with --device cpu",
        gpu.name,
        gpu.ordinal + 1,
        gpu.count,
        gpu.driver_library
    ))
}
