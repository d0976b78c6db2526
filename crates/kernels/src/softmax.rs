//! Fused, numerically stable softmax + cross-entropy over rows of logits, forward and backward in
//! one pass over the (N, V) matrix, parallel over rows.

use crate::Real;
use rayon::prelude::*;

/// Rows per rayon task: enough work (~100k exp) to amortize scheduling.
const ROWS_PER_TASK: usize = 16;

/// For each row `r` of `logits` (N rows of V): `row_loss[r] = logsumexp(row) - row[target[r]]`.
///
/// With `grad_scale = Some(s)` the row is overwritten by `s * (softmax(row) - onehot(target))`,
/// the gradient of `s * row_loss[r]` with respect to the logits; with `None` it is left
/// unchanged. Targets must be `< V` (checked by the caller when data is loaded).
pub fn softmax_xent<F: Real>(
    logits: &mut [F],
    v: usize,
    targets: &[u32],
    grad_scale: Option<F>,
    row_loss: &mut [f64],
) {
    let n = targets.len();
    assert_eq!(logits.len(), n * v, "softmax_xent: logits are not N x V");
    assert_eq!(row_loss.len(), n, "softmax_xent: row_loss is not N long");
    logits
        .par_chunks_mut(v * ROWS_PER_TASK)
        .zip(row_loss.par_chunks_mut(ROWS_PER_TASK))
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .for_each(|((rows, losses), tgts)| {
            for ((row, loss), &t) in rows.chunks_exact_mut(v).zip(losses).zip(tgts) {
                *loss = row_xent(row, t as usize, grad_scale);
            }
        });
}

#[inline]
fn row_xent<F: Real>(row: &mut [F], target: usize, grad_scale: Option<F>) -> f64 {
    let mut max = row[0];
    for &x in row.iter() {
        max = max.max(x);
    }
    let target_logit = row[target];
    let sum = match grad_scale {
        Some(_) => {
            let mut sum = F::ZERO;
            for x in row.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            sum
        }
        None => {
            let mut sum = F::ZERO;
            for &x in row.iter() {
                sum += (x - max).exp();
            }
            sum
        }
    };
    if let Some(scale) = grad_scale {
        let k = scale / sum;
        for x in row.iter_mut() {
            *x *= k;
        }
        row[target] -= scale;
    }
    sum.to_f64().ln() + (max - target_logit).to_f64()
}

/// Straightforward two-pass reference in f64; the test oracle.
pub fn softmax_xent_reference<F: Real>(
    logits: &mut [F],
    v: usize,
    targets: &[u32],
    grad_scale: Option<F>,
    row_loss: &mut [f64],
) {
    for (r, &t) in targets.iter().enumerate() {
        let row = &mut logits[r * v..(r + 1) * v];
        let max = row
            .iter()
            .map(|x| x.to_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|x| (x.to_f64() - max).exp()).sum();
        row_loss[r] = sum.ln() + max - row[t as usize].to_f64();
        if let Some(s) = grad_scale {
            let s = s.to_f64();
            for (j, x) in row.iter_mut().enumerate() {
                let p = (x.to_f64() - max).exp() / sum;
                let onehot = if j == t as usize { 1.0 } else { 0.0 };
                *x = F::from_f64(s * (p - onehot));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::CounterRng;

    #[test]
    fn fused_matches_reference_including_huge_logits() {
        let (n, v) = (37, 1003);
        let rng = CounterRng::new(9);
        let mut logits: Vec<f32> = (0..n * v)
            .map(|i| rng.uniform(0, i as u64) * 20.0 - 10.0)
            .collect();
        logits[5] = 80.0; // would overflow a naive exp
        logits[v + 3] = -90.0;
        let targets: Vec<u32> = (0..n)
            .map(|i| (rng.bits(1, i as u64) % v as u64) as u32)
            .collect();
        let mut fast = logits.clone();
        let mut slow = logits.clone();
        let (mut lf, mut ls) = (vec![0.0; n], vec![0.0; n]);
        softmax_xent(&mut fast, v, &targets, Some(0.5), &mut lf);
        softmax_xent_reference(&mut slow, v, &targets, Some(0.5), &mut ls);
        for (a, b) in lf.iter().zip(&ls) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // Loss-only mode leaves the logits alone and gives the same losses.
        let mut untouched = logits.clone();
        let mut l2 = vec![0.0; n];
        softmax_xent(&mut untouched, v, &targets, None, &mut l2);
        assert_eq!(untouched, logits);
        assert_eq!(l2, lf);
    }
}
