//! The scalar trait the engine is generic over: f32 (fast paths) and f64 (gradient checks).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point scalar. f32 uses vectorizable polynomial `exp`/`sigmoid`/`tanh` (a few ulp);
/// f64 uses the standard library so that gradient checks compare against exact calculus.
pub trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + Default
    + PartialOrd
    + Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    /// Name used in error messages and file metadata.
    const NAME: &'static str;
    /// The smallest positive normal value.
    const MIN_POSITIVE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn is_finite(self) -> bool;
    /// Logistic function 1 / (1 + e^-x).
    fn sigmoid(self) -> Self;
    fn tanh(self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f32";
    const MIN_POSITIVE: Self = f32::MIN_POSITIVE;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        crate::activation::exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        // Written as a select (not f32::max) so loops vectorize to vmaxps.
        if self > other {
            self
        } else {
            other
        }
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + crate::activation::exp_f32(-self))
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        crate::activation::tanh_f32(self)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f64";
    const MIN_POSITIVE: Self = f64::MIN_POSITIVE;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + f64::exp(-self))
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}
