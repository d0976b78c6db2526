//! Which instruction-set level the hand kernels run at: detected from the CPU, or forced with
//! `SYMBIONT_ISA=portable|avx2|avx512|amx` (a level the CPU lacks is refused, never emulated).
//!
//! Levels are ordered: each includes the ones below it. `portable` runs no hand kernel at all:
//! dense products go through the `gemm` crate (vectorized for the running CPU by its own
//! dispatch) and the rest through plain loops the compiler vectorizes, so no level is a cliff.
//! On aarch64 the hand kernels run at the `neon` level (NEON is part of the base ISA there).
//!
//! The level is read once per process ([`active`]); kernels that take an explicit [`Isa`]
//! (`*_at` functions) let tests run every level the machine has in one process.

use std::fmt;
use std::sync::OnceLock;

/// An instruction-set level of the hand kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No hand kernels: the `gemm` crate and compiler-vectorized loops.
    Portable,
    /// aarch64 Advanced SIMD: 4 f32 lanes.
    Neon,
    /// x86-64 AVX2 + FMA: 8 f32 lanes.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL: 16 f32 lanes, masked loads and stores.
    Avx512,
    /// AVX-512 plus AMX-BF16 tiles for the wide products of bf16 plans.
    Amx,
}

/// Every level, lowest first.
pub const ALL: [Isa; 5] = [Isa::Portable, Isa::Neon, Isa::Avx2, Isa::Avx512, Isa::Amx];

/// The environment variable that forces a level.
pub const ENV: &str = "SYMBIONT_ISA";

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Amx => "amx",
        }
    }

    /// Whether this CPU can run the level (detected once per process).
    pub fn supported(self) -> bool {
        static MASK: OnceLock<u8> = OnceLock::new();
        let mask = *MASK.get_or_init(|| {
            ALL.iter()
                .enumerate()
                .filter(|(_, l)| l.probe())
                .fold(0, |m, (i, _)| m | 1 << i)
        });
        mask & (1 << self as u8) != 0
    }

    fn probe(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::Avx2 => has_avx2(),
            Isa::Avx512 => has_avx512(),
            Isa::Amx => has_avx512() && crate::packed::amx_supported(),
        }
    }

    /// Whether the level has the AVX-512 kernels (AVX-512 and AMX).
    pub fn avx512(self) -> bool {
        self >= Isa::Avx512
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isa {
    type Err = String;

    fn from_str(s: &str) -> Result<Isa, String> {
        ALL.iter()
            .copied()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown ISA level `{s}`: expected one of portable, neon, avx2, avx512, amx"
                )
            })
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The levels this CPU supports, lowest first.
pub fn supported() -> Vec<Isa> {
    ALL.iter().copied().filter(|l| l.supported()).collect()
}

/// The highest level this CPU supports.
pub fn detected() -> Isa {
    *supported().last().unwrap_or(&Isa::Portable)
}

/// The level named by `value` (what `SYMBIONT_ISA` holds), checked against this CPU.
pub fn parse_forced(value: &str) -> Result<Isa, String> {
    let level: Isa = value.parse().map_err(|e| format!("{ENV}: {e}"))?;
    if !level.supported() {
        let have: Vec<&str> = supported().iter().map(|l| l.name()).collect();
        return Err(format!(
            "{ENV}={value}: this CPU does not support the {level} level (it supports {})",
            have.join(", ")
        ));
    }
    Ok(level)
}

/// The level from the environment: `SYMBIONT_ISA` when set (an error if it names an unknown
/// level or one the CPU lacks), else [`detected`]. Front ends call this first and report the
/// error; [`active`] falls back to [`detected`] on one instead.
pub fn from_env() -> Result<Isa, String> {
    match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => parse_forced(&v),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(detected()),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{ENV} is not valid UTF-8")),
    }
}

/// The level every kernel entry point without an explicit level runs at, fixed at the first
/// call: [`from_env`], or [`detected`] when the environment names an unusable level (front ends
/// refuse that case before any kernel runs, through [`from_env`]).
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| from_env().unwrap_or_else(|_| detected()))
}

/// The level the `gemm` crate's own dispatch runs its kernels at (it ignores `SYMBIONT_ISA`):
/// `avx512` where the CPU has AVX-512F and the `gemm-avx512` feature is on, else `avx2` on x86
/// CPUs with FMA, `neon` on aarch64, `portable` otherwise.
pub fn gemm_level() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "gemm-avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else if std::arch::is_x86_feature_detected!("fma") {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        Isa::Neon
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Isa::Portable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_print_and_order() {
        for l in ALL {
            assert_eq!(l.name().parse::<Isa>().unwrap(), l);
            assert_eq!(l.to_string(), l.name());
        }
        assert_eq!(" AVX2 ".parse::<Isa>().unwrap(), Isa::Avx2);
        assert!("sse2".parse::<Isa>().unwrap_err().contains("avx512"));
        assert!(Isa::Portable < Isa::Avx2 && Isa::Avx2 < Isa::Avx512 && Isa::Avx512 < Isa::Amx);
        assert!(Isa::Amx.avx512() && !Isa::Avx2.avx512());
    }

    #[test]
    fn supported_levels_are_consistent() {
        let s = supported();
        assert_eq!(s[0], Isa::Portable);
        assert_eq!(*s.last().unwrap(), detected());
        // A level implies the x86 levels below it.
        if s.contains(&Isa::Avx512) {
            assert!(s.contains(&Isa::Avx2));
        }
        if s.contains(&Isa::Amx) {
            assert!(s.contains(&Isa::Avx512));
        }
        assert_eq!(s.contains(&Isa::Neon), cfg!(target_arch = "aarch64"));
    }

    #[test]
    fn a_level_the_cpu_lacks_is_refused_by_name() {
        // Neon on x86, AVX2 on aarch64: never both supported.
        let missing = if cfg!(target_arch = "aarch64") {
            "avx2"
        } else {
            "neon"
        };
        let err = parse_forced(missing).unwrap_err();
        assert!(err.contains(ENV) && err.contains(missing), "{err}");
        assert!(parse_forced("portable").is_ok());
        assert!(parse_forced("bogus")
            .unwrap_err()
            .contains("unknown ISA level"));
    }
}
