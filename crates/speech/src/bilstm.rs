//! A bidirectional LSTM layer over a padded batch of utterances of different lengths, the two
//! directions summed (DeepSpeech2's `BatchRNN`), without biases (as in baselines.md).
//!
//! Both directions run the training LSTM of `model::lstm` (one GEMM for the input projection,
//! the few-rows recurrent kernel, the shared gate epilogue). The backward direction reads each
//! utterance reversed over its *own* length, so padding sits at the end for both directions
//! and never reaches a valid frame: the same result as PyTorch's packed sequences. Outputs at
//! padded frames are zero.

use model::lstm::{lstm_backward, lstm_forward, LstmGrads, LstmShape, LstmTape, LstmWeights};

/// The weights of one direction: `w_ih` (4H, I) and `w_hh` (4H, H), gate order i, f, g, o.
#[derive(Clone, Copy)]
pub struct DirectionWeights<'a> {
    pub w_ih: &'a [f32],
    pub w_hh: &'a [f32],
}

/// Gradient accumulators of one direction (added into).
pub struct DirectionGrads<'a> {
    pub dw_ih: &'a mut [f32],
    pub dw_hh: &'a mut [f32],
}

/// What the forward pass keeps for the backward pass.
pub struct BiLstmTape {
    shape: LstmShape,
    forward: LstmTape<f32>,
    backward: LstmTape<f32>,
    /// The input reversed per utterance: (T, N, I).
    x_rev: Vec<f32>,
    /// Zero biases and the discarded bias gradients (the layer has no biases).
    zero_bias: Vec<f32>,
    db_scratch: Vec<f32>,
}

impl BiLstmTape {
    pub fn new(shape: LstmShape) -> Self {
        BiLstmTape {
            shape,
            forward: LstmTape::new(shape),
            backward: LstmTape::new(shape),
            x_rev: vec![0.0; shape.t * shape.b * shape.i],
            zero_bias: vec![0.0; shape.g()],
            db_scratch: vec![0.0; 2 * shape.g()],
        }
    }

    pub fn shape(&self) -> LstmShape {
        self.shape
    }
}

/// `out` (T, N, W) = `x` with each utterance n's first `lengths[n]` frames in reverse order, and
/// zero at its padded frames. Applied twice it restores the valid frames.
pub fn reverse_valid(
    x: &[f32],
    t: usize,
    n: usize,
    width: usize,
    lengths: &[usize],
    out: &mut [f32],
) {
    assert_eq!(lengths.len(), n, "reverse_valid: one length per utterance");
    assert_eq!(x.len(), t * n * width, "reverse_valid: x is not (T, N, W)");
    assert_eq!(out.len(), x.len(), "reverse_valid: output length");
    for (b, &len) in lengths.iter().enumerate() {
        assert!(len <= t, "reverse_valid: length {len} > {t} frames");
        for step in 0..t {
            let dst = &mut out[(step * n + b) * width..(step * n + b + 1) * width];
            if step < len {
                let src = (len - 1 - step) * n + b;
                dst.copy_from_slice(&x[src * width..(src + 1) * width]);
            } else {
                dst.fill(0.0);
            }
        }
    }
}

/// Zeroes the padded frames of a (T, N, W) tensor.
pub fn mask_frames(y: &mut [f32], t: usize, n: usize, width: usize, lengths: &[usize]) {
    assert_eq!(y.len(), t * n * width, "mask_frames: y is not (T, N, W)");
    for (b, &len) in lengths.iter().enumerate() {
        for step in len.min(t)..t {
            y[(step * n + b) * width..(step * n + b + 1) * width].fill(0.0);
        }
    }
}

fn weights<'a>(w: DirectionWeights<'a>, zero_bias: &'a [f32]) -> LstmWeights<'a, f32> {
    LstmWeights {
        w_ih: w.w_ih,
        w_hh: w.w_hh,
        b_ih: zero_bias,
        b_hh: zero_bias,
    }
}

/// y (T, N, H) = forward(x) + backward(x), zero at padded frames; x is (T, N, I).
pub fn bilstm_forward(
    fwd: DirectionWeights<'_>,
    bwd: DirectionWeights<'_>,
    x: &[f32],
    lengths: &[usize],
    tape: &mut BiLstmTape,
    y: &mut [f32],
) {
    let s = tape.shape;
    assert_eq!(
        y.len(),
        s.t * s.b * s.h,
        "bilstm_forward: y is not (T, N, H)"
    );
    let zeros = vec![0.0; s.b * s.h];
    lstm_forward(
        s,
        weights(fwd, &tape.zero_bias),
        x,
        &zeros,
        &zeros,
        &mut tape.forward,
    );
    reverse_valid(x, s.t, s.b, s.i, lengths, &mut tape.x_rev);
    lstm_forward(
        s,
        weights(bwd, &tape.zero_bias),
        &tape.x_rev,
        &zeros,
        &zeros,
        &mut tape.backward,
    );
    reverse_valid(tape.backward.output(s), s.t, s.b, s.h, lengths, y);
    for (o, &f) in y.iter_mut().zip(tape.forward.output(s)) {
        *o += f;
    }
    mask_frames(y, s.t, s.b, s.h, lengths);
}

/// Backward of [`bilstm_forward`] for `dy` (T, N, H): weight gradients are added into `gf` and
/// `gb`; `dx` (T, N, I) is overwritten (zero at padded frames).
#[allow(clippy::too_many_arguments)]
pub fn bilstm_backward(
    fwd: DirectionWeights<'_>,
    bwd: DirectionWeights<'_>,
    x: &[f32],
    lengths: &[usize],
    dy: &[f32],
    tape: &mut BiLstmTape,
    gf: DirectionGrads<'_>,
    gb: DirectionGrads<'_>,
    dx: &mut [f32],
) {
    let s = tape.shape;
    assert_eq!(
        dy.len(),
        s.t * s.b * s.h,
        "bilstm_backward: dy is not (T, N, H)"
    );
    assert_eq!(dx.len(), x.len(), "bilstm_backward: dx length");
    // Padded frames contribute nothing: their outputs were zeroed, so their gradient is too.
    let mut dy_masked = dy.to_vec();
    mask_frames(&mut dy_masked, s.t, s.b, s.h, lengths);
    let g = s.g();
    let (db_ih, db_hh) = tape.db_scratch.split_at_mut(g);
    lstm_backward(
        s,
        weights(fwd, &tape.zero_bias),
        x,
        &dy_masked,
        &mut tape.forward,
        LstmGrads {
            dw_ih: gf.dw_ih,
            dw_hh: gf.dw_hh,
            db_ih,
            db_hh,
        },
        Some(dx),
    );
    let mut dy_rev = vec![0.0; dy.len()];
    reverse_valid(&dy_masked, s.t, s.b, s.h, lengths, &mut dy_rev);
    let mut dx_rev = vec![0.0; x.len()];
    lstm_backward(
        s,
        weights(bwd, &tape.zero_bias),
        &tape.x_rev,
        &dy_rev,
        &mut tape.backward,
        LstmGrads {
            dw_ih: gb.dw_ih,
            dw_hh: gb.dw_hh,
            db_ih,
            db_hh,
        },
        Some(&mut dx_rev),
    );
    let mut dx_back = vec![0.0; x.len()];
    reverse_valid(&dx_rev, s.t, s.b, s.i, lengths, &mut dx_back);
    for (d, &b) in dx.iter_mut().zip(&dx_back) {
        *d += b;
    }
    mask_frames(dx, s.t, s.b, s.i, lengths);
}
