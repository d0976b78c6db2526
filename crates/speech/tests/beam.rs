//! CTC prefix beam search against its definitions: with a beam wide enough to keep every prefix
//! it must find exactly the sequence probabilities that brute force over all alignments (and
//! `ctc_loss`) gives; narrower beams may only under-estimate them; and on hand-built frames it
//! must agree with greedy decoding where that is right, beat it where it is not, and tell "aa"
//! from "a" by the blank between.

use speech::beam::{prefix_beam_search, prefix_beam_search_nbest};
use speech::ctc::{ctc_loss, greedy_decode};
use speech::labels::{encode, BLANK, LABELS};
use std::collections::HashMap;

/// SplitMix64: a seeded generator small enough to keep here, so every case is reproducible
/// from its seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn log_softmax(logits: &[f32], c: usize) -> Vec<f64> {
    logits
        .chunks_exact(c)
        .flat_map(|row| {
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| v as f64 - lse)
        })
        .collect()
}

/// Blanks dropped, repeats merged.
fn collapse(path: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut prev = None;
    for &l in path {
        if Some(l) != prev && l != BLANK {
            out.push(l);
        }
        prev = Some(l);
    }
    out
}

/// p(sequence | logits) for every sequence with an alignment, by enumerating all C^T frame
/// labellings: the definition, with no recursion shared with the code under test.
fn brute_force(logits: &[f32], c: usize) -> HashMap<Vec<u32>, f64> {
    let t_len = logits.len() / c;
    let lp = log_softmax(logits, c);
    let mut dist = HashMap::new();
    for code in 0..c.pow(t_len as u32) {
        let (mut path, mut x) = (Vec::with_capacity(t_len), code);
        for _ in 0..t_len {
            path.push((x % c) as u32);
            x /= c;
        }
        let p = path
            .iter()
            .enumerate()
            .map(|(t, &l)| lp[t * c + l as usize])
            .sum::<f64>()
            .exp();
        *dist.entry(collapse(&path)).or_insert(0.0) += p;
    }
    dist
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

/// Logits (T, C) whose frame t has `peak` added to label `frames[t]`, over noise in [-1, 1).
fn peaked(frames: &[u32], c: usize, peak: f32, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..frames.len() * c)
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    for (t, &l) in frames.iter().enumerate() {
        x[t * c + l as usize] += peak;
    }
    x
}

/// Logits whose softmax is exactly (to f32) the given per-frame probabilities.
fn from_probs(frames: &[&[f64]]) -> (Vec<f32>, usize) {
    let c = frames[0].len();
    let x = frames
        .iter()
        .flat_map(|row| row.iter().map(|&p| p.ln() as f32))
        .collect();
    (x, c)
}

#[test]
fn an_exhaustive_beam_scores_every_sequence_exactly() {
    let mut rng = Rng(2014);
    for case in 0..400 {
        let c = 3 + rng.below(2);
        let t_len = 1 + rng.below(5);
        // Noise wide enough that blanks, labels and repeats all win somewhere.
        let x: Vec<f32> = (0..t_len * c).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let want = brute_force(&x, c);
        // More than the number of prefixes of length ≤ 5 over 3 labels (364): nothing is pruned.
        let got = prefix_beam_search_nbest(&x, c, 1000);

        assert_eq!(
            got.len(),
            want.len(),
            "case {case}: every reachable sequence is kept"
        );
        let mut total = 0.0;
        for (i, (seq, lp)) in got.iter().enumerate() {
            let p = want
                .get(seq)
                .unwrap_or_else(|| panic!("case {case}: {seq:?} unreachable"));
            assert!(
                close(*lp, p.ln(), 1e-9),
                "case {case}: {seq:?}: beam {lp} vs brute force {}",
                p.ln()
            );
            let loss = ctc_loss(&x, c, seq, None);
            assert!(
                close(*lp, -loss, 1e-9),
                "case {case}: {seq:?}: beam {lp} vs −ctc_loss {}",
                -loss
            );
            if i > 0 {
                assert!(got[i - 1].1 >= *lp, "case {case}: not sorted at {i}");
            }
            total += lp.exp();
        }
        assert!(
            (total - 1.0).abs() < 1e-9,
            "case {case}: probabilities sum to {total}"
        );

        // The best sequence is the brute-force argmax (either one, if the top two tie to 1e-9).
        let mut ranked: Vec<_> = want.iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(a.1));
        let best = prefix_beam_search(&x, c, 1000);
        let tied = ranked.len() > 1 && close(*ranked[0].1, *ranked[1].1, 1e-9);
        assert!(
            best == *ranked[0].0 || (tied && best == *ranked[1].0),
            "case {case}: beam {best:?} vs brute-force argmax {:?}",
            ranked[0].0
        );
    }
}

#[test]
fn narrow_beams_only_under_estimate() {
    let mut rng = Rng(7);
    for case in 0..200 {
        let c = 5;
        let t_len = 6 + rng.below(7);
        let beam = 1 + rng.below(4);
        let x: Vec<f32> = (0..t_len * c).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let got = prefix_beam_search_nbest(&x, c, beam);
        assert!(
            !got.is_empty() && got.len() <= beam,
            "case {case}: {} kept",
            got.len()
        );
        for (i, (seq, lp)) in got.iter().enumerate() {
            let exact = -ctc_loss(&x, c, seq, None);
            assert!(
                *lp <= exact + 1e-9 * exact.abs(),
                "case {case}: {seq:?} scored {lp} above its probability {exact}"
            );
            assert!(
                got[..i].iter().all(|(s, _)| s != seq),
                "case {case}: {seq:?} twice"
            );
        }
        // Deterministic: the same input gives the same list, scores included.
        assert_eq!(got, prefix_beam_search_nbest(&x, c, beam), "case {case}");
    }
}

#[test]
fn beam_one_is_greedy_on_peaked_frames() {
    let mut rng = Rng(11);
    for case in 0..200 {
        let c = if case % 2 == 0 { 4 } else { LABELS };
        let t_len = 1 + rng.below(30);
        // Few distinct labels, so repeats with and without blanks between are common.
        let frames: Vec<u32> = (0..t_len).map(|_| rng.below(3) as u32).collect();
        let x = peaked(&frames, c, 10.0, &mut rng);
        let greedy = greedy_decode(&x, c);
        assert_eq!(
            greedy,
            collapse(&frames),
            "case {case}: the peaks set greedy's answer"
        );
        assert_eq!(prefix_beam_search(&x, c, 1), greedy, "case {case}: beam 1");
        assert_eq!(prefix_beam_search(&x, c, 8), greedy, "case {case}: beam 8");
    }
}

#[test]
fn beam_search_beats_greedy_when_a_label_has_more_alignments() {
    // Two frames, p(blank) = 0.6, p(a) = 0.4 each: the single best path is blank-blank (0.36),
    // so greedy says "", but "a" has three paths: aa + a_ + _a = 0.16 + 0.24 + 0.24 = 0.64.
    let (x, c) = from_probs(&[&[0.6, 0.4], &[0.6, 0.4]]);
    assert_eq!(greedy_decode(&x, c), Vec::<u32>::new());
    // One prefix per frame keeps "" after frame 1 (0.6 > 0.4) and so cannot find "a".
    assert_eq!(prefix_beam_search(&x, c, 1), Vec::<u32>::new());
    let nbest = prefix_beam_search_nbest(&x, c, 2);
    assert_eq!(nbest[0].0, vec![1]);
    assert!(close(nbest[0].1, 0.64f64.ln(), 1e-6), "{}", nbest[0].1);
    assert_eq!(nbest[1].0, Vec::<u32>::new());
    assert!(close(nbest[1].1, 0.36f64.ln(), 1e-6), "{}", nbest[1].1);

    // The same on real labels: "A" from frames that never make A the most likely label.
    let a = encode("A").unwrap()[0] as usize;
    let mut x = vec![-10.0f32; 3 * LABELS];
    for t in 0..3 {
        x[t * LABELS] = 0.4f64.ln() as f32;
        x[t * LABELS + a] = 0.35f64.ln() as f32;
    }
    assert!(greedy_decode(&x, LABELS).is_empty());
    assert_eq!(prefix_beam_search(&x, LABELS, 4), vec![a as u32]);
}

#[test]
fn repeats_count_twice_only_across_a_blank() {
    // Frames: a, (blank q | a 1 − q), a. Alignment a_a reads "aa"; aaa reads "a". Which wins
    // depends only on whether the middle frame is more likely blank.
    let e = 1e-4;
    for (q, want) in [(0.7, vec![1u32, 1]), (0.3, vec![1])] {
        let (x, c) = from_probs(&[&[e, 1.0 - e], &[q, 1.0 - q], &[e, 1.0 - e]]);
        let nbest = prefix_beam_search_nbest(&x, c, 4);
        assert_eq!(nbest[0].0, want, "q = {q}");
        for (seq, lp) in &nbest {
            let exact = -ctc_loss(&x, c, seq, None);
            assert!(close(*lp, exact, 1e-9), "q = {q}, {seq:?}: {lp} vs {exact}");
        }
        // Both readings are on the list, with the probabilities that decide between them.
        let score = |s: &[u32]| nbest.iter().find(|(seq, _)| seq == s).map(|p| p.1.exp());
        let (aa, a) = (score(&[1, 1]).unwrap(), score(&[1]).unwrap());
        assert!(
            close(aa, q * (1.0 - e) * (1.0 - e), 1e-5),
            "q = {q}: p(aa) = {aa}"
        );
        assert!(
            a > 1.0 - q - 1e-3 && a < 1.0 - q + 1e-3,
            "q = {q}: p(a) = {a}"
        );
    }
    // With no blank possible in between, "aa" has no alignment at all.
    let (x, c) = from_probs(&[&[e, 1.0 - e], &[e, 1.0 - e]]);
    let nbest = prefix_beam_search_nbest(&x, c, 8);
    assert!(nbest.iter().all(|(s, _)| s.len() <= 1), "{nbest:?}");
}

#[test]
fn an4_sized_inputs_decode_like_greedy_when_peaked() {
    // T = 150, C = 29, beam 64: the shape the AN4 model produces; a clear path must come through.
    let mut rng = Rng(4);
    let frames: Vec<u32> = (0..150)
        .map(|_| {
            if rng.below(2) == 0 {
                BLANK
            } else {
                rng.below(LABELS) as u32
            }
        })
        .collect();
    let x = peaked(&frames, LABELS, 8.0, &mut rng);
    let start = std::time::Instant::now();
    let nbest = prefix_beam_search_nbest(&x, LABELS, 64);
    eprintln!("T = 150, C = 29, beam 64: {:?}", start.elapsed());
    assert_eq!(nbest.len(), 64);
    assert_eq!(nbest[0].0, collapse(&frames));
    for (seq, lp) in nbest.iter().take(8) {
        let exact = -ctc_loss(&x, LABELS, seq, None);
        assert!(*lp <= exact + 1e-9 * exact.abs(), "{lp} above {exact}");
    }
}

#[test]
fn no_frames_decode_to_nothing() {
    assert_eq!(prefix_beam_search_nbest(&[], 4, 3), vec![(Vec::new(), 0.0)]);
}

#[test]
#[should_panic(expected = "beam must be at least 1")]
fn a_zero_beam_is_rejected() {
    prefix_beam_search(&[0.0; 8], 4, 0);
}
