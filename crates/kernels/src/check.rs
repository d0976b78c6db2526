//! Error measures for tests that compare a result with its source (a reference kernel, a
//! fixture, the uncompacted model). They refuse what would make a comparison vacuous: slices of
//! different lengths, empty slices, and NaN or infinite values on either side (`f64::max` in a fold skips
//! NaN, so a plain max of differences passes on a NaN output).

use crate::Real;

/// Largest `|got[i] - want[i]|`.
///
/// # Panics
/// If the lengths differ, the slices are empty, or any value is NaN or infinite (naming the
/// index and side).
pub fn max_abs_diff<F: Real>(got: &[F], want: &[F]) -> f64 {
    assert_eq!(
        got.len(),
        want.len(),
        "compared slices differ in length: got {} values, want {}",
        got.len(),
        want.len()
    );
    assert!(
        !want.is_empty(),
        "compared slices are empty: nothing was checked"
    );
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        assert!(g.is_finite(), "got[{i}] = {g} is not finite (want {w})");
        assert!(w.is_finite(), "want[{i}] = {w} is not finite (got {g})");
        worst = worst.max((g - w).abs());
    }
    worst
}

/// [`max_abs_diff`] over the scale of `want`: its largest magnitude, but at least `floor` (so
/// an all-zero reference does not divide by zero).
///
/// # Panics
/// As [`max_abs_diff`].
pub fn max_rel_diff<F: Real>(got: &[F], want: &[F], floor: f64) -> f64 {
    let d = max_abs_diff(got, want);
    let scale = want.iter().fold(floor, |m, w| m.max(w.to_f64().abs()));
    d / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_refuses_vacuous_comparisons() {
        assert_eq!(max_abs_diff(&[1.0f32, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(max_rel_diff(&[1.0f64, 4.0], &[1.0, 2.0], 1e-3), 1.0);
        assert_eq!(max_rel_diff(&[0.001f64], &[0.0], 1e-3), 1.0);
        let nan = std::panic::catch_unwind(|| max_abs_diff(&[f32::NAN, 1.0], &[0.0, 1.0]));
        assert!(nan.is_err(), "NaN output must fail");
        let inf = std::panic::catch_unwind(|| max_abs_diff(&[0.0f64], &[f64::INFINITY]));
        assert!(inf.is_err(), "an infinite reference must fail");
        let len = std::panic::catch_unwind(|| max_abs_diff(&[0.0f32], &[0.0, 0.0]));
        assert!(len.is_err(), "a length mismatch must fail");
        let empty = std::panic::catch_unwind(|| max_abs_diff::<f32>(&[], &[]));
        assert!(empty.is_err(), "an empty comparison must fail");
    }
}
