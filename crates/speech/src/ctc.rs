//! Connectionist temporal classification (Graves et al. 2006): the loss −log p(target | logits)
//! of one utterance, summed over every alignment by the forward–backward recursions in log space
//! (f64), with its gradient with respect to the logits (the softmax is inside, as in warp-ctc
//! and PyTorch's `ctc_loss` over `log_softmax`); and greedy decoding.

use crate::labels::BLANK;

/// log(e^a + e^b), exact at −∞.
#[inline]
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// Row-wise log-softmax of (T, C) logits, in f64.
pub(crate) fn log_softmax(logits: &[f32], c: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(c) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        let lse = max + sum.ln();
        out.extend(row.iter().map(|&v| v as f64 - lse));
    }
    out
}

/// The CTC loss of `target` (labels without blanks) under `logits` (T, C) with blank
/// [`BLANK`]; with `grad` (T, C), the gradient of the loss w.r.t. the logits is *added* there.
/// An impossible alignment (T shorter than the target with its required blanks between
/// repeats) gives +∞ and no gradient, as PyTorch's `ctc_loss` without `zero_infinity`.
///
/// # Panics
/// If `logits` is not T x C or a target label is blank or ≥ C (programming errors: targets come
/// from `labels::encode`).
pub fn ctc_loss(logits: &[f32], c: usize, target: &[u32], grad: Option<&mut [f32]>) -> f64 {
    assert!(
        c > 0 && logits.len().is_multiple_of(c),
        "ctc_loss: logits are not T x C"
    );
    assert!(
        target.iter().all(|&l| l != BLANK && (l as usize) < c),
        "ctc_loss: target labels must be in 1..C"
    );
    let t_len = logits.len() / c;
    let lp = log_softmax(logits, c);
    // The extended target: blank, l1, blank, l2, …, blank.
    let ext: Vec<usize> = std::iter::once(BLANK as usize)
        .chain(target.iter().flat_map(|&l| [l as usize, BLANK as usize]))
        .collect();
    let s_len = ext.len();
    let ninf = f64::NEG_INFINITY;
    if t_len == 0 {
        return if target.is_empty() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    // May state s be entered from s − 2 (a label differing from the one two back)?
    let skip = |s: usize| s >= 2 && ext[s] != BLANK as usize && ext[s] != ext[s - 2];
    // alpha[t][s]: log probability of the prefixes ending in state s at time t (emission at t
    // included).
    let mut alpha = vec![ninf; t_len * s_len];
    alpha[0] = lp[ext[0]];
    if s_len > 1 {
        alpha[1] = lp[ext[1]];
    }
    for t in 1..t_len {
        for s in 0..s_len {
            let prev = &alpha[(t - 1) * s_len..t * s_len];
            let mut a = prev[s];
            if s >= 1 {
                a = log_add(a, prev[s - 1]);
            }
            if skip(s) {
                a = log_add(a, prev[s - 2]);
            }
            alpha[t * s_len + s] = a + lp[t * c + ext[s]];
        }
    }
    let last = &alpha[(t_len - 1) * s_len..];
    let log_p = if s_len > 1 {
        log_add(last[s_len - 1], last[s_len - 2])
    } else {
        last[0]
    };
    if log_p == ninf {
        return f64::INFINITY;
    }
    if let Some(grad) = grad {
        assert_eq!(grad.len(), logits.len(), "ctc_loss: grad is not T x C");
        // beta[t][s]: log probability of the suffixes after time t from state s at t (emission
        // at t excluded), so alpha + beta is the log probability of the paths through (t, s).
        let mut beta = vec![ninf; t_len * s_len];
        let end = (t_len - 1) * s_len;
        beta[end + s_len - 1] = 0.0;
        if s_len > 1 {
            beta[end + s_len - 2] = 0.0;
        }
        for t in (0..t_len - 1).rev() {
            for s in 0..s_len {
                let next = (t + 1) * s_len;
                let via = |s2: usize| beta[next + s2] + lp[(t + 1) * c + ext[s2]];
                let mut b = via(s);
                if s + 1 < s_len {
                    b = log_add(b, via(s + 1));
                }
                if s + 2 < s_len && skip(s + 2) {
                    b = log_add(b, via(s + 2));
                }
                beta[t * s_len + s] = b;
            }
        }
        let mut occupancy = vec![ninf; c];
        for t in 0..t_len {
            occupancy.fill(ninf);
            for s in 0..s_len {
                let k = ext[s];
                occupancy[k] = log_add(occupancy[k], alpha[t * s_len + s] + beta[t * s_len + s]);
            }
            for k in 0..c {
                let y = lp[t * c + k].exp();
                let post = (occupancy[k] - log_p).exp();
                grad[t * c + k] += (y - post) as f32;
            }
        }
    }
    -log_p
}

/// Greedy decoding: the most likely label of every frame, repeats merged, blanks dropped.
pub fn greedy_decode(logits: &[f32], c: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut prev = None;
    for row in logits.chunks_exact(c) {
        let best = (0..c)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
            .expect("c > 0") as u32;
        if Some(best) != prev && best != BLANK {
            out.push(best);
        }
        prev = Some(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// −log Σ over every frame labelling that collapses to `target` of Π softmax: the definition.
    fn brute_force(logits: &[f32], c: usize, target: &[u32]) -> f64 {
        let t_len = logits.len() / c;
        let lp = log_softmax(logits, c);
        let mut total = 0.0f64;
        for code in 0..c.pow(t_len as u32) {
            let (mut path, mut x) = (Vec::with_capacity(t_len), code);
            for _ in 0..t_len {
                path.push((x % c) as u32);
                x /= c;
            }
            let mut collapsed = Vec::new();
            let mut prev = None;
            for &l in &path {
                if Some(l) != prev && l != BLANK {
                    collapsed.push(l);
                }
                prev = Some(l);
            }
            if collapsed == target {
                total += path
                    .iter()
                    .enumerate()
                    .map(|(t, &l)| lp[t * c + l as usize])
                    .sum::<f64>()
                    .exp();
            }
        }
        -total.ln()
    }

    fn logits(t: usize, c: usize, seed: u64) -> Vec<f32> {
        (0..t * c)
            .map(|i| {
                let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ seed);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn the_loss_sums_every_alignment() {
        for (t, target) in [
            (5, vec![1u32, 2]),
            (5, vec![1, 1]),
            (4, vec![2, 2]),
            (6, vec![1, 2, 1]),
            (3, vec![]),
            (1, vec![3]),
        ] {
            let c = 4;
            let x = logits(t, c, t as u64 * 31 + target.len() as u64);
            let got = ctc_loss(&x, c, &target, None);
            let want = brute_force(&x, c, &target);
            assert!(
                (got - want).abs() < 1e-9 * want.abs().max(1.0),
                "{target:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn impossible_targets_cost_infinity() {
        // Two equal labels need a blank between them: 3 frames, not 2.
        let x = logits(2, 3, 1);
        assert_eq!(ctc_loss(&x, 3, &[1, 1], None), f64::INFINITY);
        assert!(ctc_loss(&logits(3, 3, 1), 3, &[1, 1], None).is_finite());
        assert_eq!(ctc_loss(&[], 3, &[1], None), f64::INFINITY);
        assert_eq!(ctc_loss(&[], 3, &[], None), 0.0);
    }

    #[test]
    fn the_gradient_matches_central_differences() {
        let (t, c) = (6, 5);
        for target in [vec![1u32, 3, 3], vec![2], vec![]] {
            let x = logits(t, c, 7 + target.len() as u64);
            let mut grad = vec![0.0f32; t * c];
            ctc_loss(&x, c, &target, Some(&mut grad));
            let h = 1e-3f32;
            for i in 0..t * c {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += h;
                down[i] -= h;
                let num = (ctc_loss(&up, c, &target, None) - ctc_loss(&down, c, &target, None))
                    / (2.0 * h as f64);
                assert!(
                    (num - grad[i] as f64).abs() < 2e-3,
                    "{target:?} [{i}]: numeric {num} vs analytic {}",
                    grad[i]
                );
            }
            // Each frame's gradient sums to zero (softmax minus a distribution).
            for row in grad.chunks(c) {
                assert!(row.iter().sum::<f32>().abs() < 1e-5);
            }
        }
    }

    #[test]
    fn greedy_decoding_merges_repeats_and_drops_blanks() {
        let c = 4;
        let frames = [1u32, 1, 0, 1, 2, 2, 0, 0, 3];
        let mut x = vec![0.0f32; frames.len() * c];
        for (t, &l) in frames.iter().enumerate() {
            x[t * c + l as usize] = 5.0;
        }
        assert_eq!(greedy_decode(&x, c), vec![1, 1, 2, 3]);
    }
}
