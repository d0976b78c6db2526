//! Flush-to-zero / denormals-are-zero for inference: a guard that sets both bits of the x86
//! MXCSR register on the current thread and restores the old value when dropped.
//!
//! Subnormal inputs or results make SSE/AVX arithmetic take a microcode assist (~100x slower per
//! operation); LSTM states decaying towards zero produce them. Inference does not need them, so
//! plans run with FTZ/DAZ set. Training does not use this (it keeps IEEE semantics for the
//! gradient checks). MXCSR is per thread: each worker that runs a kernel sets it.

/// Restores the previous floating-point mode on drop.
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushDenormals {
    /// Sets FTZ and DAZ on this thread (a no-op on other architectures).
    #[allow(clippy::new_without_default)]
    pub fn new() -> FlushDenormals {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            write_mxcsr(saved | FTZ_DAZ);
            FlushDenormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushDenormals {}
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        write_mxcsr(self.saved);
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit control register to the given, valid address.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v as *mut u32, options(nostack)) };
    v
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(v: u32) {
    // SAFETY: ldmxcsr loads a value read from MXCSR with only the FTZ/DAZ bits changed, which
    // are valid on every x86-64 CPU with SSE2 (all of them).
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &v as *const u32, options(nostack, readonly))
    };
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn subnormals_flush_inside_the_guard_only() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        assert!((tiny * half) > 0.0, "IEEE mode keeps the subnormal");
        {
            let _g = FlushDenormals::new();
            assert_eq!(std::hint::black_box(tiny) * std::hint::black_box(half), 0.0);
        }
        assert!((tiny * half) > 0.0, "mode restored after the guard");
    }
}
