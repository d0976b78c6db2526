//! The lane-width layer the hand kernels are written once over: [`Simd`] names the handful of
//! vector operations they use (broadcast, load, partial load and store, fused multiply-add,
//! horizontal sum, bf16 widening, gather), implemented for AVX-512 (16 f32 lanes), AVX2 + FMA
//! (8) and NEON (4). A kernel is a [`Kernel`] value whose `run::<S>()` is generic; [`run`] calls
//! it inside a function compiled for the chosen level's target features, so every operation
//! inlines to one or two instructions of that level.
//!
//! Why our own layer rather than `pulp`: the kernels need masked partial loads and stores,
//! gathers and bf16 widening, which `pulp`'s portable trait does not offer on every level, and
//! the AVX-512 kernels that existed before this layer had to stay as fast (docs/benchmarks.md,
//! "ISA levels").

use crate::isa::Isa;

/// f32 vector operations of one instruction-set level. Every method is `unsafe`: it must run on
/// a CPU with the level's features (guaranteed by [`run`]) and pointers must be valid for the
/// lanes they name.
pub(crate) trait Simd: Copy {
    /// f32 lanes per vector.
    const LANES: usize;
    /// Accumulator registers a register block may use (the rest hold loads and broadcasts).
    const ACC_REGS: usize;
    type V: Copy;
    /// A vector of column indices for [`Simd::gather`].
    type I: Copy;

    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    /// The first `n` lanes from `p` (`n ≤ LANES`), the rest zero; nothing past `p + n` is read.
    unsafe fn load_part(p: *const f32, n: usize) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Stores the first `n` lanes (`n ≤ LANES`); nothing past `p + n` is touched.
    unsafe fn store_part(p: *mut f32, n: usize, v: Self::V);
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// The sum of the lanes.
    unsafe fn sum(v: Self::V) -> f32;
    /// `LANES` bf16 values widened exactly to f32.
    unsafe fn load_bf16(p: *const u16) -> Self::V;
    /// The first `n` bf16 values widened, the rest zero.
    unsafe fn load_bf16_part(p: *const u16, n: usize) -> Self::V;
    /// Four values from `p` repeated across the vector (lanes 4a..4a+4 = p[0..4]).
    unsafe fn broadcast4(p: *const f32) -> Self::V;
    /// The first `n` (≤ LANES) indices from `p`.
    unsafe fn index_u16(p: *const u16, n: usize) -> Self::I;
    unsafe fn index_u32(p: *const u32, n: usize) -> Self::I;
    /// `base[idx[l]]` for the first `n` lanes, zero beyond.
    unsafe fn gather(base: *const f32, idx: Self::I, n: usize) -> Self::V;
}

/// A weight element type the dense kernels read: f32 as is, bf16 (`u16`) widened.
pub(crate) trait Weight: Copy {
    unsafe fn load<S: Simd>(p: *const Self) -> S::V;
    unsafe fn load_part<S: Simd>(p: *const Self, n: usize) -> S::V;
    /// One value, widened.
    fn to_f32(self) -> f32;
}

impl Weight for f32 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const f32) -> S::V {
        // SAFETY: forwarded.
        unsafe { S::load(p) }
    }
    #[inline(always)]
    unsafe fn load_part<S: Simd>(p: *const f32, n: usize) -> S::V {
        // SAFETY: forwarded.
        unsafe { S::load_part(p, n) }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Weight for u16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u16) -> S::V {
        // SAFETY: forwarded.
        unsafe { S::load_bf16(p) }
    }
    #[inline(always)]
    unsafe fn load_part<S: Simd>(p: *const u16, n: usize) -> S::V {
        // SAFETY: forwarded.
        unsafe { S::load_bf16_part(p, n) }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
}

/// A column index type the sparse kernels read.
pub(crate) trait Index: Copy + Into<u32> {
    unsafe fn load<S: Simd>(p: *const Self, n: usize) -> S::I;
}

impl Index for u16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u16, n: usize) -> S::I {
        // SAFETY: forwarded.
        unsafe { S::index_u16(p, n) }
    }
}

impl Index for u32 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u32, n: usize) -> S::I {
        // SAFETY: forwarded.
        unsafe { S::index_u32(p, n) }
    }
}

/// A kernel written once over the lane width.
pub(crate) trait Kernel {
    type Out;
    /// The kernel at level `S`. Implementations are `#[inline(always)]` so that they compile
    /// inside [`run`]'s target-feature functions.
    ///
    /// # Safety
    /// The CPU has `S`'s features; the kernel's own contract holds.
    unsafe fn run<S: Simd>(self) -> Self::Out;
}

/// Runs `k` at level `isa`, or hands it back when the level has no hand kernels (`portable`)
/// so the caller can take its fallback.
///
/// # Safety
/// The kernel's own contract. `isa` must be supported by this CPU (as [`crate::isa::active`]
/// is); this is asserted.
#[inline(always)]
pub(crate) unsafe fn run<K: Kernel>(isa: Isa, k: K) -> Result<K::Out, K> {
    assert!(isa.supported(), "ISA level {isa} is not supported here");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level is supported (asserted); forwarded contract.
        Isa::Avx512 | Isa::Amx => Ok(unsafe { x86::run_avx512(k) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => Ok(unsafe { x86::run_avx2(k) }),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of the aarch64 base ISA; forwarded contract.
        Isa::Neon => Ok(unsafe { k.run::<arm::Neon>() }),
        _ => Err(k),
    }
}

/// `n` ones in the low lanes of a bit mask.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn low_bits(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{low_bits, Kernel, Simd};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub(super) unsafe fn run_avx512<K: Kernel>(k: K) -> K::Out {
        // SAFETY: the features are enabled here; forwarded contract.
        unsafe { k.run::<Avx512>() }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2<K: Kernel>(k: K) -> K::Out {
        // SAFETY: as above.
        unsafe { k.run::<Avx2>() }
    }

    /// AVX-512 F/BW/VL: 16 lanes, 32 registers.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    #[inline(always)]
    fn mask16(n: usize) -> __mmask16 {
        low_bits(n) as __mmask16
    }

    // SAFETY (every method): the caller runs on a CPU with AVX-512 F/BW/VL and keeps the named
    // lanes in bounds; masked-off lanes are neither read nor written.
    impl Simd for Avx512 {
        const LANES: usize = 16;
        const ACC_REGS: usize = 24;
        type V = __m512;
        type I = __m512i;

        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_part(p: *const f32, n: usize) -> __m512 {
            unsafe { _mm512_maskz_loadu_ps(mask16(n), p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_part(p: *mut f32, n: usize, v: __m512) {
            unsafe { _mm512_mask_storeu_ps(p, mask16(n), v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> __m512 {
            unsafe {
                let h = _mm256_loadu_si256(p as *const __m256i);
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            }
        }
        #[inline(always)]
        unsafe fn load_bf16_part(p: *const u16, n: usize) -> __m512 {
            unsafe {
                let h = _mm256_maskz_loadu_epi16(mask16(n), p as *const i16);
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            }
        }
        #[inline(always)]
        unsafe fn broadcast4(p: *const f32) -> __m512 {
            unsafe { _mm512_broadcast_f32x4(_mm_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn index_u16(p: *const u16, n: usize) -> __m512i {
            unsafe { _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask16(n), p as *const i16)) }
        }
        #[inline(always)]
        unsafe fn index_u32(p: *const u32, n: usize) -> __m512i {
            unsafe { _mm512_maskz_loadu_epi32(mask16(n), p as *const i32) }
        }
        #[inline(always)]
        unsafe fn gather(base: *const f32, idx: __m512i, n: usize) -> __m512 {
            unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask16(n), idx, base) }
        }
    }

    /// AVX2 + FMA: 8 lanes, 16 registers.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    /// Lane mask for `maskload`/`maskstore`: lanes below `n` all ones.
    #[inline(always)]
    unsafe fn mask8(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n.min(8) as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// Up to 8 values of `T` from `p` into a zeroed array (AVX2 has no 16-bit masked load).
    #[inline(always)]
    unsafe fn copy_part<T: Copy + Default>(p: *const T, n: usize) -> [T; 8] {
        let mut buf = [T::default(); 8];
        // SAFETY: the caller keeps p..p + n in bounds; n ≤ 8.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n.min(8)) };
        buf
    }

    // SAFETY (every method): the caller runs on a CPU with AVX2 + FMA and keeps the named lanes in
    // bounds; masked-off lanes are neither read nor written (maskload does not fault on them).
    impl Simd for Avx2 {
        const LANES: usize = 8;
        const ACC_REGS: usize = 12;
        type V = __m256;
        type I = __m256i;

        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_part(p: *const f32, n: usize) -> __m256 {
            unsafe { _mm256_maskload_ps(p, mask8(n)) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_part(p: *mut f32, n: usize, v: __m256) {
            unsafe { _mm256_maskstore_ps(p, mask8(n), v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> __m256 {
            unsafe {
                let h = _mm_loadu_si128(p as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
        #[inline(always)]
        unsafe fn load_bf16_part(p: *const u16, n: usize) -> __m256 {
            unsafe {
                let buf = copy_part(p, n);
                Self::load_bf16(buf.as_ptr())
            }
        }
        #[inline(always)]
        unsafe fn broadcast4(p: *const f32) -> __m256 {
            // An unaligned 16-byte load, then both halves (a `&__m128` for `_mm256_broadcast_ps`
            // would claim an alignment x does not have).
            unsafe {
                let q = _mm_loadu_ps(p);
                _mm256_set_m128(q, q)
            }
        }
        #[inline(always)]
        unsafe fn index_u16(p: *const u16, n: usize) -> __m256i {
            unsafe {
                let h = if n >= 8 {
                    _mm_loadu_si128(p as *const __m128i)
                } else {
                    let buf = copy_part(p, n);
                    _mm_loadu_si128(buf.as_ptr() as *const __m128i)
                };
                _mm256_cvtepu16_epi32(h)
            }
        }
        #[inline(always)]
        unsafe fn index_u32(p: *const u32, n: usize) -> __m256i {
            unsafe { _mm256_maskload_epi32(p as *const i32, mask8(n)) }
        }
        #[inline(always)]
        unsafe fn gather(base: *const f32, idx: __m256i, n: usize) -> __m256 {
            unsafe {
                let m = _mm256_castsi256_ps(mask8(n));
                _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), base, idx, m)
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::Simd;
    use std::arch::aarch64::*;

    /// NEON: 4 lanes, 32 registers.
    #[derive(Clone, Copy)]
    pub(crate) struct Neon;

    #[inline(always)]
    unsafe fn copy_part<T: Copy + Default>(p: *const T, n: usize) -> [T; 4] {
        let mut buf = [T::default(); 4];
        // SAFETY: the caller keeps p..p + n in bounds; n ≤ 4.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n.min(4)) };
        buf
    }

    // SAFETY (every method): NEON is always present on aarch64; the caller keeps the named lanes
    // in bounds, and partial accesses go through a stack copy.
    impl Simd for Neon {
        const LANES: usize = 4;
        const ACC_REGS: usize = 24;
        type V = float32x4_t;
        type I = [u32; 4];

        #[inline(always)]
        unsafe fn zero() -> float32x4_t {
            unsafe { vdupq_n_f32(0.0) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> float32x4_t {
            unsafe { vdupq_n_f32(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> float32x4_t {
            unsafe { vld1q_f32(p) }
        }
        #[inline(always)]
        unsafe fn load_part(p: *const f32, n: usize) -> float32x4_t {
            unsafe { vld1q_f32(copy_part(p, n).as_ptr()) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: float32x4_t) {
            unsafe { vst1q_f32(p, v) }
        }
        #[inline(always)]
        unsafe fn store_part(p: *mut f32, n: usize, v: float32x4_t) {
            let mut buf = [0f32; 4];
            unsafe {
                vst1q_f32(buf.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n.min(4));
            }
        }
        #[inline(always)]
        unsafe fn fma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
            unsafe { vfmaq_f32(c, a, b) }
        }
        #[inline(always)]
        unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vaddq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            unsafe { vmulq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn sum(v: float32x4_t) -> f32 {
            unsafe { vaddvq_f32(v) }
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> float32x4_t {
            unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p))) }
        }
        #[inline(always)]
        unsafe fn load_bf16_part(p: *const u16, n: usize) -> float32x4_t {
            unsafe { Self::load_bf16(copy_part(p, n).as_ptr()) }
        }
        #[inline(always)]
        unsafe fn broadcast4(p: *const f32) -> float32x4_t {
            unsafe { vld1q_f32(p) }
        }
        #[inline(always)]
        unsafe fn index_u16(p: *const u16, n: usize) -> [u32; 4] {
            let b = unsafe { copy_part(p, n) };
            b.map(u32::from)
        }
        #[inline(always)]
        unsafe fn index_u32(p: *const u32, n: usize) -> [u32; 4] {
            unsafe { copy_part(p, n) }
        }
        #[inline(always)]
        unsafe fn gather(base: *const f32, idx: [u32; 4], n: usize) -> float32x4_t {
            let mut buf = [0f32; 4];
            for (l, v) in buf.iter_mut().enumerate().take(n) {
                // SAFETY: the caller keeps the first n indices in bounds of `base`.
                *v = unsafe { *base.add(idx[l] as usize) };
            }
            unsafe { vld1q_f32(buf.as_ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa;

    /// Every operation of one level against plain arithmetic, at every partial width: the
    /// first mismatch, named, or `Ok`.
    struct Probe;

    /// The lanes of `v`, stored through the level itself.
    unsafe fn lanes<S: Simd>(v: S::V) -> Vec<f32> {
        let mut out = vec![0f32; S::LANES];
        // SAFETY: `out` holds LANES values.
        unsafe { S::store(out.as_mut_ptr(), v) };
        out
    }

    impl Kernel for Probe {
        type Out = Result<(), String>;

        unsafe fn run<S: Simd>(self) -> Result<(), String> {
            let l = S::LANES;
            let src: Vec<f32> = (0..l).map(|i| i as f32 * 1.5 - 3.0).collect();
            let check = |what: &str, got: &[f32], want: &[f32]| -> Result<(), String> {
                if got.len() != want.len()
                    || got
                        .iter()
                        .zip(want)
                        .any(|(g, w)| g.to_bits() != w.to_bits())
                {
                    return Err(format!("{what}: {got:?} vs {want:?}"));
                }
                Ok(())
            };
            // SAFETY (whole body): every pointer covers the lanes it names; partial accesses
            // are given buffers exactly `n` long, so a read or write past them would be caught
            // by the sentinels or by the allocator's bounds in a debug run.
            unsafe {
                check("load", &lanes::<S>(S::load(src.as_ptr())), &src)?;
                for n in 0..=l {
                    let part = src[..n].to_vec();
                    let mut want: Vec<f32> = part.clone();
                    want.resize(l, 0.0);
                    check(
                        &format!("load_part({n})"),
                        &lanes::<S>(S::load_part(part.as_ptr(), n)),
                        &want,
                    )?;
                    let mut dst = vec![f32::NAN; n + 1];
                    S::store_part(dst.as_mut_ptr(), n, S::load(src.as_ptr()));
                    check(&format!("store_part({n})"), &dst[..n], &src[..n])?;
                    if !dst[n].is_nan() {
                        return Err(format!("store_part({n}) wrote past its lanes"));
                    }
                    let b16: Vec<u16> = part
                        .iter()
                        .map(|&v| crate::packed::f32_to_bf16(v))
                        .collect();
                    let wide: Vec<f32> = b16
                        .iter()
                        .map(|&v| crate::packed::bf16_to_f32(v))
                        .chain(std::iter::repeat(0.0))
                        .take(l)
                        .collect();
                    check(
                        &format!("load_bf16_part({n})"),
                        &lanes::<S>(S::load_bf16_part(b16.as_ptr(), n)),
                        &wide,
                    )?;
                    // Gather from a table through u16 and u32 indices, in reverse order.
                    let table: Vec<f32> = (0..3 * l).map(|i| i as f32 + 0.25).collect();
                    let i16: Vec<u16> = (0..n).map(|i| (3 * l - 1 - 2 * i) as u16).collect();
                    let i32: Vec<u32> = i16.iter().map(|&i| i as u32).collect();
                    let mut want: Vec<f32> = i16.iter().map(|&i| table[i as usize]).collect();
                    want.resize(l, 0.0);
                    let g16 = S::gather(table.as_ptr(), S::index_u16(i16.as_ptr(), n), n);
                    check(&format!("gather u16 ({n})"), &lanes::<S>(g16), &want)?;
                    let g32 = S::gather(table.as_ptr(), S::index_u32(i32.as_ptr(), n), n);
                    check(&format!("gather u32 ({n})"), &lanes::<S>(g32), &want)?;
                }
                let wide: Vec<f32> = src
                    .iter()
                    .map(|&v| crate::packed::bf16_to_f32(crate::packed::f32_to_bf16(v)))
                    .collect();
                let b16: Vec<u16> = src.iter().map(|&v| crate::packed::f32_to_bf16(v)).collect();
                check("load_bf16", &lanes::<S>(S::load_bf16(b16.as_ptr())), &wide)?;
                let four = [1.0f32, -2.0, 3.5, 4.25];
                let want: Vec<f32> = (0..l).map(|i| four[i % 4]).collect();
                check(
                    "broadcast4",
                    &lanes::<S>(S::broadcast4(four.as_ptr())),
                    &want,
                )?;
                let (a, b) = (S::load(src.as_ptr()), S::splat(2.0));
                let fma: Vec<f32> = src.iter().map(|&x| x.mul_add(2.0, 2.0)).collect();
                check("fma", &lanes::<S>(S::fma(a, b, b)), &fma)?;
                let add: Vec<f32> = src.iter().map(|&x| x + 2.0).collect();
                check("add", &lanes::<S>(S::add(a, b)), &add)?;
                let mul: Vec<f32> = src.iter().map(|&x| x * 2.0).collect();
                check("mul", &lanes::<S>(S::mul(a, b)), &mul)?;
                check("zero", &lanes::<S>(S::zero()), &vec![0.0; l])?;
                let sum: f32 = src.iter().sum();
                let got = S::sum(a);
                // A NaN sum fails too (the check refuses non-finite values).
                if crate::check::max_abs_diff(&[got], &[sum]) > 1e-5 * (1.0 + sum.abs() as f64) {
                    return Err(format!("sum: {got} vs {sum}"));
                }
            }
            Ok(())
        }
    }

    #[test]
    fn every_operation_of_every_level_matches_plain_arithmetic() {
        let mut ran = 0;
        for level in isa::supported() {
            // SAFETY: the level is supported; the probe only touches its own buffers.
            match unsafe { run(level, Probe) } {
                Ok(result) => {
                    ran += 1;
                    if let Err(e) = result {
                        panic!("{level}: {e}");
                    }
                }
                Err(Probe) => assert_eq!(level, Isa::Portable, "{level} has no SIMD layer"),
            }
        }
        // Every x86-64 CPU this builds for has AVX2, every aarch64 CPU NEON.
        assert!(ran >= 1, "no SIMD level ran");
    }
}
