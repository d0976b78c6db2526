//! The DeepSpeech2 forward and backward passes over a padded batch, hand-written layer by layer.
//!
//! Padding follows deepspeech.pytorch's `MaskConv` and packed sequences: after every layer the
//! frames past an utterance's length are set to zero, and gradients are masked at the same
//! points, so an utterance's output does not depend on what it was batched with (BatchNorm's
//! training statistics aside, which see the padded zeros as in PyTorch).

use super::DirParams;
use super::{DeepSpeech, BINS};
use crate::batchnorm::{BatchNorm, BnCache, BnLayout};
use crate::bidirectional::{
    bidirectional_backward, bidirectional_forward, mask_frames, BidirectionalTape, Direction,
    DirectionGrads,
};
use crate::conv::{conv2d_backward, conv2d_forward};
use crate::ctc::ctc_loss;
use crate::features::Spectrogram;
use crate::hardtanh::Hardtanh;
use crate::labels::LABELS;
use kernels::{matmul, Trans};
use model::hlstm::{HlstmGrads, HlstmWeights};
use model::lstm::LstmShape;
use rayon::prelude::*;

/// A padded batch of utterances: spectrograms laid out (N, 1, BINS, T) for the convolutions.
#[derive(Clone, Debug)]
pub struct Batch {
    pub n: usize,
    /// Frames of the longest utterance.
    pub frames: usize,
    pub features: Vec<f32>,
    /// Spectrogram frames of each utterance.
    pub lengths: Vec<usize>,
    /// Label sequences (no blanks); empty for transcription.
    pub targets: Vec<Vec<u32>>,
}

impl Batch {
    /// Pads and transposes the spectrograms ((frames, bins) each) into one batch.
    pub fn new(specs: &[&Spectrogram], targets: Vec<Vec<u32>>) -> Self {
        assert!(!specs.is_empty(), "Batch::new: no utterances");
        assert!(
            specs.iter().all(|s| s.bins == BINS),
            "Batch::new: spectrograms must have {BINS} bins"
        );
        let n = specs.len();
        let t = specs.iter().map(|s| s.frames).max().unwrap_or(0);
        let mut features = vec![0.0; n * BINS * t];
        for (b, s) in specs.iter().enumerate() {
            let img = &mut features[b * BINS * t..(b + 1) * BINS * t];
            for (f, row) in s.values.chunks_exact(BINS).enumerate() {
                for (bin, &v) in row.iter().enumerate() {
                    img[bin * t + f] = v;
                }
            }
        }
        Batch {
            n,
            frames: t,
            features,
            lengths: specs.iter().map(|s| s.frames).collect(),
            targets,
        }
    }
}

/// Everything the forward pass keeps for the backward pass, and the logits.
pub struct Activations {
    pub n: usize,
    /// Output frames (after both convolutions) and each utterance's share of them.
    pub frames: usize,
    pub out_lengths: Vec<usize>,
    /// conv1: width, rows, utterance lengths; its output, BatchNorm cache, pre-activation and
    /// activation (N, C, H1, W1).
    w1: usize,
    h1: usize,
    len1: Vec<usize>,
    bn1: BnCache<f32>,
    pre1: Vec<f32>,
    a1: Vec<f32>,
    h2: usize,
    bn2: BnCache<f32>,
    pre2: Vec<f32>,
    /// Each recurrent layer's input (T, N, I) after its BatchNorm, the cache, output and tape.
    rnn_in: Vec<Vec<f32>>,
    rnn_norm: Vec<BnCache<f32>>,
    /// None when the batch has no output frames.
    tapes: Vec<Option<BidirectionalTape>>,
    fc_norm: BnCache<f32>,
    fc_in: Vec<f32>,
    /// (T, N, 29), garbage at padded frames.
    pub logits: Vec<f32>,
}

impl Activations {
    /// Utterance `b`'s logits as (frames, 29), row-major.
    pub fn utterance_logits(&self, b: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.out_lengths[b] * LABELS);
        for t in 0..self.out_lengths[b] {
            let row = (t * self.n + b) * LABELS;
            out.extend_from_slice(&self.logits[row..row + LABELS]);
        }
        out
    }
}

/// Zeroes the time steps past each utterance's length in an (N, C, H, W) tensor.
fn mask_time(y: &mut [f32], n: usize, rows: usize, w: usize, lengths: &[usize]) {
    for (b, img) in y.chunks_exact_mut(rows * w).take(n).enumerate() {
        let len = lengths[b].min(w);
        for row in img.chunks_exact_mut(w) {
            row[len..].fill(0.0);
        }
    }
}

/// (N, C, H, T) → (T, N, C·H), feature index c·H + h as deepspeech.pytorch's `view`.
pub(super) fn to_frames(x: &[f32], n: usize, ch: usize, t: usize, out: &mut [f32]) {
    for b in 0..n {
        for f in 0..ch {
            let src = &x[(b * ch + f) * t..(b * ch + f + 1) * t];
            for (step, &v) in src.iter().enumerate() {
                out[(step * n + b) * ch + f] = v;
            }
        }
    }
}

/// The inverse of [`to_frames`].
fn from_frames(x: &[f32], n: usize, ch: usize, t: usize, out: &mut [f32]) {
    for b in 0..n {
        for f in 0..ch {
            let dst = &mut out[(b * ch + f) * t..(b * ch + f + 1) * t];
            for (step, d) in dst.iter_mut().enumerate() {
                *d = x[(step * n + b) * ch + f];
            }
        }
    }
}

/// Whether BatchNorm uses batch statistics (and updates the running ones) or the running ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

fn norm_forward(
    bn: &mut BatchNorm<f32>,
    mode: Mode,
    layout: &BnLayout,
    x: &[f32],
    cache: &mut BnCache<f32>,
) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    match mode {
        Mode::Train => bn.forward_train(layout, x, &mut y, cache),
        Mode::Eval => bn.forward_eval(layout, x, &mut y),
    }
    y
}

impl DeepSpeech {
    /// The forward pass over `batch`; in [`Mode::Train`] BatchNorm updates its running
    /// statistics. Utterances too short for the convolutions get zero output frames.
    pub fn forward(&mut self, batch: &Batch, mode: Mode) -> Activations {
        for k in 0..self.norms.len() {
            self.sync_norm(k);
        }
        let (n, t0) = (batch.n, batch.frames);
        let (c1, c2) = (self.config.conv1(), self.config.conv2());
        let (ch, hid) = (self.config.conv_channels, self.config.hidden);
        let act = Hardtanh::deepspeech();
        // conv1 → BatchNorm → Hardtanh, masked after each.
        let (h1, w1) = (c1.out_h(BINS).expect("bins"), c1.out_w(t0).unwrap_or(0));
        let len1: Vec<usize> = batch
            .lengths
            .iter()
            .map(|&l| c1.out_w(l).unwrap_or(0))
            .collect();
        let mut z1 = vec![0.0; n * ch * h1 * w1];
        if w1 > 0 {
            let (w, b) = (self.tensor(self.idx.conv1_w), self.tensor(self.idx.conv1_b));
            conv2d_forward(&c1, &batch.features, n, BINS, t0, w, Some(b), &mut z1);
        }
        mask_time(&mut z1, n, ch * h1, w1, &len1);
        let mut bn1 = BnCache::default();
        let l1 = BnLayout::nchw(n, ch, h1, w1);
        let mut pre1 = norm_forward(&mut self.norms[0], mode, &l1, &z1, &mut bn1);
        mask_time(&mut pre1, n, ch * h1, w1, &len1);
        let mut a1 = vec![0.0; pre1.len()];
        act.forward(&pre1, &mut a1);
        // conv2 → BatchNorm → Hardtanh.
        let h2 = c2.out_h(h1).expect("rows");
        let w2 = c2.out_w(w1).unwrap_or(0);
        let len2: Vec<usize> = len1.iter().map(|&l| c2.out_w(l).unwrap_or(0)).collect();
        let mut z2 = vec![0.0; n * ch * h2 * w2];
        if w2 > 0 {
            let (w, b) = (self.tensor(self.idx.conv2_w), self.tensor(self.idx.conv2_b));
            conv2d_forward(&c2, &a1, n, h1, w1, w, Some(b), &mut z2);
        }
        mask_time(&mut z2, n, ch * h2, w2, &len2);
        let mut bn2 = BnCache::default();
        let l2 = BnLayout::nchw(n, ch, h2, w2);
        let mut pre2 = norm_forward(&mut self.norms[1], mode, &l2, &z2, &mut bn2);
        mask_time(&mut pre2, n, ch * h2, w2, &len2);
        let mut a2 = vec![0.0; pre2.len()];
        act.forward(&pre2, &mut a2);
        // Recurrent layers over (T, N, features).
        let t = w2;
        let mut x = vec![0.0; t * n * ch * h2];
        to_frames(&a2, n, ch * h2, t, &mut x);
        let (mut rnn_in, mut rnn_norm, mut tapes) = (Vec::new(), Vec::new(), Vec::new());
        for r in self.idx.rnns.clone() {
            let width = x.len() / (t * n).max(1);
            let mut cache = BnCache::default();
            let input = match r.norm {
                Some(k) if t > 0 => {
                    let lay = BnLayout::rows(t * n, width);
                    let mut y = norm_forward(&mut self.norms[k], mode, &lay, &x, &mut cache);
                    mask_frames(&mut y, t, n, width, &len2);
                    y
                }
                _ => x,
            };
            let shape = LstmShape {
                t,
                b: n,
                i: width,
                h: hid,
            };
            let mut y = vec![0.0; t * n * hid];
            let tape = (t > 0).then(|| {
                let mut tape = BidirectionalTape::new(shape, self.config.gate_hidden)
                    .expect("a validated model and a batch with frames");
                bidirectional_forward(
                    self.direction(r.dirs[0]),
                    self.direction(r.dirs[1]),
                    &input,
                    &len2,
                    &mut tape,
                    &mut y,
                );
                tape
            });
            x = y;
            rnn_in.push(input);
            rnn_norm.push(cache);
            tapes.push(tape);
        }
        // BatchNorm + Linear to the labels.
        let k = self.norms.len() - 1;
        let mut fc_norm = BnCache::default();
        let mut fc_in = if t > 0 {
            let lay = BnLayout::rows(t * n, hid);
            norm_forward(&mut self.norms[k], mode, &lay, &x, &mut fc_norm)
        } else {
            Vec::new()
        };
        mask_frames(&mut fc_in, t, n, hid, &len2);
        let mut logits = vec![0.0; t * n * LABELS];
        if t > 0 {
            let w = self.tensor(self.idx.fc);
            matmul(
                t * n,
                LABELS,
                hid,
                1.0,
                &fc_in,
                Trans::N,
                w,
                Trans::T,
                0.0,
                &mut logits,
            );
        }
        Activations {
            n,
            frames: t,
            out_lengths: len2,
            w1,
            h1,
            len1,
            bn1,
            pre1,
            a1,
            h2,
            bn2,
            pre2,
            rnn_in,
            rnn_norm,
            tapes,
            fc_norm,
            fc_in,
            logits,
        }
    }

    fn direction(&self, d: DirParams) -> Direction<'_> {
        match d.second {
            None => Direction::Lstm {
                w_ih: self.tensor(d.input),
                w_hh: self.tensor(d.recurrent),
            },
            Some([b1, w2, b2]) => Direction::Hlstm(HlstmWeights {
                w_ih1: self.tensor(d.input),
                w_hh1: self.tensor(d.recurrent),
                b1: self.tensor(b1),
                w2: self.tensor(w2),
                b2: self.tensor(b2),
            }),
        }
    }

    /// The tensors of direction `d`, in the order [`direction_grads`] reads them.
    fn direction_ranges(&self, d: DirParams) -> Vec<std::ops::Range<usize>> {
        let mut v = vec![d.input, d.recurrent];
        v.extend(d.second.into_iter().flatten());
        v.into_iter().map(|t| self.layout.range(t)).collect()
    }

    /// Backward of [`DeepSpeech::forward`] (in [`Mode::Train`]) for `dlogits` (T, N, 29), which
    /// must be zero at padded frames: parameter gradients are *added* into `grads`.
    pub fn backward(
        &self,
        batch: &Batch,
        acts: &mut Activations,
        dlogits: &[f32],
        grads: &mut [f32],
    ) {
        assert_eq!(grads.len(), self.params.len(), "backward: gradient length");
        assert_eq!(dlogits.len(), acts.logits.len(), "backward: dlogits length");
        let (n, t) = (acts.n, acts.frames);
        if t == 0 {
            return;
        }
        let hid = self.config.hidden;
        let len2 = acts.out_lengths.clone();
        let l = &self.layout;
        // Linear and its BatchNorm.
        let w_fc = self.tensor(self.idx.fc);
        matmul(
            LABELS,
            hid,
            t * n,
            1.0,
            dlogits,
            Trans::T,
            &acts.fc_in,
            Trans::N,
            1.0,
            &mut grads[l.range(self.idx.fc)],
        );
        let mut d_fc_in = vec![0.0; t * n * hid];
        matmul(
            t * n,
            hid,
            LABELS,
            1.0,
            dlogits,
            Trans::N,
            w_fc,
            Trans::N,
            0.0,
            &mut d_fc_in,
        );
        mask_frames(&mut d_fc_in, t, n, hid, &len2);
        let k = self.norms.len() - 1;
        let mut dy = vec![0.0; t * n * hid];
        self.norm_backward(
            k,
            &BnLayout::rows(t * n, hid),
            &acts.fc_norm,
            &d_fc_in,
            &mut dy,
            grads,
        );
        // Recurrent layers, last first.
        for (li, r) in self.idx.rnns.iter().enumerate().rev() {
            let input = &acts.rnn_in[li];
            let width = input.len() / (t * n);
            let mut dx = vec![0.0; input.len()];
            let mut ranges = self.direction_ranges(r.dirs[0]);
            let per_direction = ranges.len();
            ranges.extend(self.direction_ranges(r.dirs[1]));
            let mut parts = split_ranges(grads, &ranges);
            let gb = direction_grads(parts.split_off(per_direction));
            let gf = direction_grads(parts);
            bidirectional_backward(
                self.direction(r.dirs[0]),
                self.direction(r.dirs[1]),
                input,
                &len2,
                &dy,
                acts.tapes[li].as_mut().expect("frames, so a tape"),
                gf,
                gb,
                &mut dx,
            );
            dy = match r.norm {
                Some(k) => {
                    let mut d = vec![0.0; dx.len()];
                    let lay = BnLayout::rows(t * n, width);
                    self.norm_backward(k, &lay, &acts.rnn_norm[li], &dx, &mut d, grads);
                    mask_frames(&mut d, t, n, width, &len2);
                    d
                }
                None => dx,
            };
        }
        self.conv_backward(batch, acts, &dy, grads);
    }

    /// The convolutional front end's backward from the first recurrent layer's input gradient.
    fn conv_backward(&self, batch: &Batch, acts: &Activations, dframes: &[f32], grads: &mut [f32]) {
        let (n, t) = (acts.n, acts.frames);
        let ch = self.config.conv_channels;
        let (c1, c2) = (self.config.conv1(), self.config.conv2());
        let (h1, w1, h2) = (acts.h1, acts.w1, acts.h2);
        let act = Hardtanh::deepspeech();
        let l = &self.layout;
        let mut da2 = vec![0.0; n * ch * h2 * t];
        from_frames(dframes, n, ch * h2, t, &mut da2);
        let mut dpre2 = vec![0.0; da2.len()];
        act.backward(&acts.pre2, &da2, &mut dpre2);
        mask_time(&mut dpre2, n, ch * h2, t, &acts.out_lengths);
        let mut dz2 = vec![0.0; da2.len()];
        self.norm_backward(
            1,
            &BnLayout::nchw(n, ch, h2, t),
            &acts.bn2,
            &dpre2,
            &mut dz2,
            grads,
        );
        mask_time(&mut dz2, n, ch * h2, t, &acts.out_lengths);
        let mut da1 = vec![0.0; acts.a1.len()];
        {
            let [dw, db] = disjoint_mut(
                grads,
                [l.range(self.idx.conv2_w), l.range(self.idx.conv2_b)],
            );
            let w = self.tensor(self.idx.conv2_w);
            conv2d_backward(
                &c2,
                &acts.a1,
                n,
                h1,
                w1,
                w,
                &dz2,
                Some(&mut da1),
                dw,
                Some(db),
            );
        }
        let mut dpre1 = vec![0.0; da1.len()];
        act.backward(&acts.pre1, &da1, &mut dpre1);
        mask_time(&mut dpre1, n, ch * h1, w1, &acts.len1);
        let mut dz1 = vec![0.0; da1.len()];
        self.norm_backward(
            0,
            &BnLayout::nchw(n, ch, h1, w1),
            &acts.bn1,
            &dpre1,
            &mut dz1,
            grads,
        );
        mask_time(&mut dz1, n, ch * h1, w1, &acts.len1);
        let [dw, db] = disjoint_mut(
            grads,
            [l.range(self.idx.conv1_w), l.range(self.idx.conv1_b)],
        );
        let w = self.tensor(self.idx.conv1_w);
        conv2d_backward(
            &c1,
            &batch.features,
            n,
            BINS,
            batch.frames,
            w,
            &dz1,
            None,
            dw,
            Some(db),
        );
    }

    fn norm_backward(
        &self,
        k: usize,
        layout: &BnLayout,
        cache: &BnCache<f32>,
        dy: &[f32],
        dx: &mut [f32],
        grads: &mut [f32],
    ) {
        let p = self.idx.norms[k];
        let [dw, db] = disjoint_mut(
            grads,
            [self.layout.range(p.weight), self.layout.range(p.bias)],
        );
        self.norms[k].backward(layout, cache, dy, dx, dw, db);
    }
}

/// Mutable borrows of disjoint `ranges` of `buf`, in the order given.
fn split_ranges<'a>(buf: &'a mut [f32], ranges: &[std::ops::Range<usize>]) -> Vec<&'a mut [f32]> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&k| ranges[k].start);
    let mut out: Vec<Option<&'a mut [f32]>> = (0..ranges.len()).map(|_| None).collect();
    let (mut rest, mut at) = (buf, 0);
    for k in order {
        let r = &ranges[k];
        assert!(r.start >= at, "split_ranges: overlapping ranges");
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (piece, tail) = tail.split_at_mut(r.len());
        out[k] = Some(piece);
        (rest, at) = (tail, r.end);
    }
    out.into_iter().map(|p| p.expect("every range")).collect()
}

/// A direction's gradient accumulators from its tensors' slices (2 for an LSTM, 5 for an H-LSTM,
/// in [`DeepSpeech::direction_ranges`] order).
fn direction_grads(parts: Vec<&mut [f32]>) -> DirectionGrads<'_> {
    let lstm = parts.len() == 2;
    let mut it = parts.into_iter();
    let mut next = || it.next().expect("a gradient slice per tensor");
    let (input, recurrent) = (next(), next());
    if lstm {
        DirectionGrads::Lstm {
            dw_ih: input,
            dw_hh: recurrent,
        }
    } else {
        DirectionGrads::Hlstm(HlstmGrads {
            dw_ih1: input,
            dw_hh1: recurrent,
            db1: next(),
            dw2: next(),
            db2: next(),
        })
    }
}

/// Mutable borrows of disjoint ranges of one buffer.
fn disjoint_mut<const K: usize>(
    buf: &mut [f32],
    ranges: [std::ops::Range<usize>; K],
) -> [&mut [f32]; K] {
    buf.get_disjoint_mut(ranges)
        .expect("parameter tensors do not overlap")
}

/// CTC over a batch: the summed loss of the utterances with a possible alignment, how many had
/// none (skipped, as PyTorch's `zero_infinity`), and in `dlogits` (T, N, 29; overwritten) the
/// gradient of `scale` x the summed loss.
pub fn ctc_batch(
    acts: &Activations,
    targets: &[Vec<u32>],
    scale: f32,
    dlogits: &mut [f32],
) -> (f64, usize) {
    assert_eq!(targets.len(), acts.n, "ctc_batch: one target per utterance");
    assert_eq!(
        dlogits.len(),
        acts.logits.len(),
        "ctc_batch: dlogits length"
    );
    let per: Vec<(f64, Vec<f32>)> = (0..acts.n)
        .into_par_iter()
        .map(|b| {
            let logits = acts.utterance_logits(b);
            let mut grad = vec![0.0; logits.len()];
            let loss = ctc_loss(&logits, LABELS, &targets[b], Some(&mut grad));
            (loss, grad)
        })
        .collect();
    dlogits.fill(0.0);
    let (mut total, mut impossible) = (0.0, 0);
    for (b, (loss, grad)) in per.into_iter().enumerate() {
        if !loss.is_finite() {
            impossible += 1;
            continue;
        }
        total += loss;
        for (step, row) in grad.chunks_exact(LABELS).enumerate() {
            let dst = (step * acts.n + b) * LABELS;
            for (d, &g) in dlogits[dst..dst + LABELS].iter_mut().zip(row) {
                *d = g * scale;
            }
        }
    }
    (total, impossible)
}
