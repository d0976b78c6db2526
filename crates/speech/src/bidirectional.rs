//! A bidirectional recurrent layer over a padded batch of utterances of different lengths, the
//! two directions summed (DeepSpeech2's `BatchRNN`), with LSTM cells (no biases, as in
//! baselines.md) or H-LSTM cells (gates are one-hidden-layer MLPs, method.md §3).
//!
//! Both directions run the training layers of `model` (`lstm.rs`, `hlstm.rs`: one GEMM for the
//! input projection, the per-step recurrent products, the shared gate epilogue). The backward
//! direction reads each utterance reversed over its *own* length, so padding sits at the end for
//! both directions and never reaches a valid frame: the same result as PyTorch's packed
//! sequences. Outputs at padded frames are zero.

use model::hlstm::{
    hlstm_backward, hlstm_forward, HlstmGrads, HlstmShape, HlstmTape, HlstmWeights,
};
use model::lstm::{lstm_backward, lstm_forward, LstmGrads, LstmShape, LstmTape, LstmWeights};

/// The weights of one direction.
#[derive(Clone, Copy)]
pub enum Direction<'a> {
    /// `w_ih` (4H, I) and `w_hh` (4H, H), gate order i, f, g, o.
    Lstm { w_ih: &'a [f32], w_hh: &'a [f32] },
    /// The H-LSTM's five tensors (`model::hlstm`).
    Hlstm(HlstmWeights<'a, f32>),
}

/// Gradient accumulators of one direction (added into), matching [`Direction`].
pub enum DirectionGrads<'a> {
    Lstm {
        dw_ih: &'a mut [f32],
        dw_hh: &'a mut [f32],
    },
    Hlstm(HlstmGrads<'a, f32>),
}

enum Tape {
    Lstm(LstmTape<f32>),
    Hlstm(HlstmTape<f32>),
}

impl Tape {
    fn new(shape: LstmShape, gate_hidden: usize) -> Result<Self, String> {
        Ok(if gate_hidden == 0 {
            Tape::Lstm(LstmTape::new(shape))
        } else {
            Tape::Hlstm(HlstmTape::new(hshape(shape, gate_hidden)).map_err(|e| e.to_string())?)
        })
    }

    fn output(&self, s: LstmShape) -> &[f32] {
        match self {
            Tape::Lstm(t) => t.output(s),
            Tape::Hlstm(t) => t.output(),
        }
    }
}

fn hshape(s: LstmShape, m: usize) -> HlstmShape {
    HlstmShape {
        t: s.t,
        b: s.b,
        i: s.i,
        h: s.h,
        m,
    }
}

/// What the forward pass keeps for the backward pass.
pub struct BidirectionalTape {
    shape: LstmShape,
    gate_hidden: usize,
    forward: Tape,
    backward: Tape,
    /// The input reversed per utterance: (T, N, I).
    x_rev: Vec<f32>,
    /// Zero LSTM biases and the discarded LSTM bias gradients (the LSTM layer has no biases).
    zero_bias: Vec<f32>,
    db_scratch: Vec<f32>,
}

impl BidirectionalTape {
    /// A tape for `shape` with LSTM cells (`gate_hidden` = 0) or H-LSTM cells of gate width
    /// `gate_hidden`; errors name a zero dimension.
    pub fn new(shape: LstmShape, gate_hidden: usize) -> Result<Self, String> {
        Ok(BidirectionalTape {
            shape,
            gate_hidden,
            forward: Tape::new(shape, gate_hidden)?,
            backward: Tape::new(shape, gate_hidden)?,
            x_rev: vec![0.0; shape.t * shape.b * shape.i],
            zero_bias: vec![0.0; shape.g()],
            db_scratch: vec![0.0; 2 * shape.g()],
        })
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

/// Runs one direction over `x` from a zero state.
fn run_forward(
    s: LstmShape,
    w: Direction<'_>,
    x: &[f32],
    zero_bias: &[f32],
    tape: &mut Tape,
    gate_hidden: usize,
) {
    let zeros = vec![0.0; s.b * s.h];
    match (w, tape) {
        (Direction::Lstm { w_ih, w_hh }, Tape::Lstm(t)) => {
            let w = LstmWeights {
                w_ih,
                w_hh,
                b_ih: zero_bias,
                b_hh: zero_bias,
            };
            lstm_forward(s, w, x, &zeros, &zeros, t);
        }
        (Direction::Hlstm(w), Tape::Hlstm(t)) => {
            hlstm_forward(hshape(s, gate_hidden), w, x, None, &zeros, &zeros, t);
        }
        _ => panic!("bidirectional: weights and tape are of different cells"),
    }
}

/// One direction's backward; `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
fn run_backward(
    s: LstmShape,
    w: Direction<'_>,
    x: &[f32],
    dy: &[f32],
    tape: &mut Tape,
    grads: DirectionGrads<'_>,
    zero_bias: &[f32],
    db_scratch: &mut [f32],
    gate_hidden: usize,
    dx: &mut [f32],
) {
    match (w, tape, grads) {
        (Direction::Lstm { w_ih, w_hh }, Tape::Lstm(t), DirectionGrads::Lstm { dw_ih, dw_hh }) => {
            let w = LstmWeights {
                w_ih,
                w_hh,
                b_ih: zero_bias,
                b_hh: zero_bias,
            };
            let (db_ih, db_hh) = db_scratch.split_at_mut(s.g());
            let g = LstmGrads {
                dw_ih,
                dw_hh,
                db_ih,
                db_hh,
            };
            lstm_backward(s, w, x, dy, t, g, Some(dx));
        }
        (Direction::Hlstm(w), Tape::Hlstm(t), DirectionGrads::Hlstm(g)) => {
            hlstm_backward(hshape(s, gate_hidden), w, x, dy, t, g, Some(dx));
        }
        _ => panic!("bidirectional: weights, tape and gradients are of different cells"),
    }
}

/// y (T, N, H) = forward(x) + backward(x), zero at padded frames; x is (T, N, I).
pub fn bidirectional_forward(
    fwd: Direction<'_>,
    bwd: Direction<'_>,
    x: &[f32],
    lengths: &[usize],
    tape: &mut BidirectionalTape,
    y: &mut [f32],
) {
    let (s, m) = (tape.shape, tape.gate_hidden);
    assert_eq!(
        y.len(),
        s.t * s.b * s.h,
        "bidirectional: y is not (T, N, H)"
    );
    run_forward(s, fwd, x, &tape.zero_bias, &mut tape.forward, m);
    reverse_valid(x, s.t, s.b, s.i, lengths, &mut tape.x_rev);
    run_forward(s, bwd, &tape.x_rev, &tape.zero_bias, &mut tape.backward, m);
    reverse_valid(tape.backward.output(s), s.t, s.b, s.h, lengths, y);
    for (o, &f) in y.iter_mut().zip(tape.forward.output(s)) {
        *o += f;
    }
    mask_frames(y, s.t, s.b, s.h, lengths);
}

/// Backward of [`bidirectional_forward`] for `dy` (T, N, H): weight gradients are added into
/// `gf` and `gb`; `dx` (T, N, I) is overwritten (zero at padded frames).
#[allow(clippy::too_many_arguments)]
pub fn bidirectional_backward(
    fwd: Direction<'_>,
    bwd: Direction<'_>,
    x: &[f32],
    lengths: &[usize],
    dy: &[f32],
    tape: &mut BidirectionalTape,
    gf: DirectionGrads<'_>,
    gb: DirectionGrads<'_>,
    dx: &mut [f32],
) {
    let (s, m) = (tape.shape, tape.gate_hidden);
    assert_eq!(
        dy.len(),
        s.t * s.b * s.h,
        "bidirectional: dy is not (T, N, H)"
    );
    assert_eq!(dx.len(), x.len(), "bidirectional: dx length");
    // Padded frames contribute nothing: their outputs were zeroed, so their gradient is too.
    let mut dy_masked = dy.to_vec();
    mask_frames(&mut dy_masked, s.t, s.b, s.h, lengths);
    let t = tape;
    run_backward(
        s,
        fwd,
        x,
        &dy_masked,
        &mut t.forward,
        gf,
        &t.zero_bias,
        &mut t.db_scratch,
        m,
        dx,
    );
    let mut dy_rev = vec![0.0; dy.len()];
    reverse_valid(&dy_masked, s.t, s.b, s.h, lengths, &mut dy_rev);
    let mut dx_rev = vec![0.0; x.len()];
    run_backward(
        s,
        bwd,
        &t.x_rev,
        &dy_rev,
        &mut t.backward,
        gb,
        &t.zero_bias,
        &mut t.db_scratch,
        m,
        &mut dx_rev,
    );
    let mut dx_back = vec![0.0; x.len()];
    reverse_valid(&dx_rev, s.t, s.b, s.i, lengths, &mut dx_back);
    for (d, &b) in dx.iter_mut().zip(&dx_back) {
        *d += b;
    }
    mask_frames(dx, s.t, s.b, s.i, lengths);
}
