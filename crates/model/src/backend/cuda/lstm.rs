//! The LSTM layer on the GPU, step for step the algorithm of `crate::lstm`: the input projection
//! of all T steps is one GEMM; per step one recurrent (B, H) x (H, 4H) GEMM and the fused gate
//! epilogue kernel; backward per step the epilogue's backward kernel and the dh GEMM, then the
//! weight gradients of all steps as single GEMMs and the bias gradients as column sums.

use super::{fits, Cuda};
use crate::backend::{DeviceError, LstmAt};
use crate::lstm::LstmShape;
use cudarc::driver::CudaSlice;
use kernels::Trans;

/// What [`forward`] saves for [`backward`], in the GPU's memory (the fields of
/// `crate::lstm::LstmTape` less the CPU's packed weights).
pub struct CudaLstmTape {
    shape: LstmShape,
    /// Post-activation gates [i f g o] per step: (T, B, 4H).
    pub(super) gates: CudaSlice<f32>,
    /// Hidden states with the initial one first: (T+1, B, H).
    pub(super) hs: CudaSlice<f32>,
    /// Cell states with the initial one first: (T+1, B, H).
    pub(super) cs: CudaSlice<f32>,
    /// tanh(c_t): (T, B, H).
    tc: CudaSlice<f32>,
    /// Pre-activation gate gradients: (T, B, 4H).
    dgates: CudaSlice<f32>,
    /// b_ih + b_hh (4H).
    bias: CudaSlice<f32>,
    /// Gradients flowing into h_{t-1} and c_{t-1}: (B, H) each.
    dh_next: CudaSlice<f32>,
    dc_next: CudaSlice<f32>,
}

impl CudaLstmTape {
    pub(super) fn new(cuda: &Cuda, s: LstmShape) -> Result<Self, DeviceError> {
        let (tb, bh, g) = (s.t * s.b, s.b * s.h, s.g());
        Ok(Self {
            shape: s,
            gates: cuda.alloc(tb * g)?,
            hs: cuda.alloc((s.t + 1) * bh)?,
            cs: cuda.alloc((s.t + 1) * bh)?,
            tc: cuda.alloc(tb * s.h)?,
            dgates: cuda.alloc(tb * g)?,
            bias: cuda.alloc(g)?,
            dh_next: cuda.alloc(bh)?,
            dc_next: cuda.alloc(bh)?,
        })
    }
}

/// Fails unless the tape was made for `s` and the layer's tensors lie inside `params`.
fn check(
    tape: &CudaLstmTape,
    s: LstmShape,
    params: &CudaSlice<f32>,
    at: &LstmAt,
    x: &CudaSlice<f32>,
) -> Result<(), DeviceError> {
    if tape.shape != s {
        return Err(DeviceError(format!(
            "cuda: lstm: tape made for {:?}, called with {s:?}",
            tape.shape
        )));
    }
    let (g, len) = (s.g(), params.len());
    fits(len, at.w_ih.start, g * s.i, "lstm w_ih")?;
    fits(len, at.w_hh.start, g * s.h, "lstm w_hh")?;
    fits(len, at.b_ih.start, g, "lstm b_ih")?;
    fits(len, at.b_hh.start, g, "lstm b_hh")?;
    fits(x.len(), 0, s.t * s.b * s.i, "lstm x")
}

/// `crate::lstm::lstm_forward` over x: (T, B, I) from (h0, c0).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    cu: &Cuda,
    s: LstmShape,
    params: &CudaSlice<f32>,
    at: &LstmAt,
    x: &CudaSlice<f32>,
    h0: &CudaSlice<f32>,
    c0: &CudaSlice<f32>,
    tape: &mut CudaLstmTape,
) -> Result<(), DeviceError> {
    check(tape, s, params, at, x)?;
    let (h, g, bh, tb) = (s.h, s.g(), s.b * s.h, s.t * s.b);
    fits(h0.len(), 0, bh, "lstm h0")?;
    fits(c0.len(), 0, bh, "lstm c0")?;
    let f = 4; // bytes per value
    let (hs, cs) = (cu.ptr(&tape.hs, 0), cu.ptr(&tape.cs, 0));
    let (gates, tc, bias) = (
        cu.ptr(&tape.gates, 0),
        cu.ptr(&tape.tc, 0),
        cu.ptr(&tape.bias, 0),
    );
    cu.copy_ptr(cu.ptr(h0, 0), hs, bh, "lstm h0")?;
    cu.copy_ptr(cu.ptr(c0, 0), cs, bh, "lstm c0")?;
    // add2(const float* a, const float* b, float* out, long long n)
    let args = [
        super::Arg::P(cu.ptr(params, at.b_ih.start)),
        super::Arg::P(cu.ptr(params, at.b_hh.start)),
        super::Arg::P(bias),
        super::l(g),
    ];
    cu.launch_n(&cu.k.add2, g, &args, "lstm bias")?;
    // gates = x W_ih^T for all steps; the biases are added in the epilogue.
    let w_ih = cu.ptr(params, at.w_ih.start);
    let w_hh = cu.ptr(params, at.w_hh.start);
    cu.gemm_ptr(
        tb,
        g,
        s.i,
        1.0,
        (cu.ptr(x, 0), Trans::N),
        (w_ih, Trans::T),
        0.0,
        gates,
    )?;
    for t in 0..s.t {
        let gates_t = gates + ((t * s.b * g) * f) as u64;
        let at_bh = |k: usize| ((k * bh) * f) as u64;
        cu.gemm_ptr(
            s.b,
            g,
            h,
            1.0,
            (hs + at_bh(t), Trans::N),
            (w_hh, Trans::T),
            1.0,
            gates_t,
        )?;
        cu.gates_fwd_ptr(
            gates_t,
            bias,
            cs + at_bh(t),
            cs + at_bh(t + 1),
            tc + at_bh(t),
            hs + at_bh(t + 1),
            (s.b, h),
            (h, g),
        )?;
    }
    Ok(())
}

/// `crate::lstm::lstm_backward`: back-propagates dh: (T, B, H) through the last forward,
/// accumulating into the layer's ranges of `grads`, writing dx: (T, B, I) when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    cu: &Cuda,
    s: LstmShape,
    params: &CudaSlice<f32>,
    at: &LstmAt,
    x: &CudaSlice<f32>,
    dh: &CudaSlice<f32>,
    tape: &mut CudaLstmTape,
    grads: &mut CudaSlice<f32>,
    dx: Option<&mut CudaSlice<f32>>,
) -> Result<(), DeviceError> {
    check(tape, s, params, at, x)?;
    let (h, g, bh, tb) = (s.h, s.g(), s.b * s.h, s.t * s.b);
    fits(dh.len(), 0, tb * h, "lstm dh")?;
    check_grads(grads, at, s)?;
    let f = 4u64; // bytes per value
    let at_bh = |k: usize| (k * bh) as u64 * f;
    let (gates, dgates) = (cu.ptr(&tape.gates, 0), cu.ptr(&tape.dgates, 0));
    let (cs, tc, hs) = (
        cu.ptr(&tape.cs, 0),
        cu.ptr(&tape.tc, 0),
        cu.ptr(&tape.hs, 0),
    );
    let (dh_next, dc_next) = (cu.ptr(&tape.dh_next, 0), cu.ptr(&tape.dc_next, 0));
    let dh = cu.ptr(dh, 0);
    let w_hh = cu.ptr(params, at.w_hh.start);
    cu.fill_ptr(dh_next, bh, 0.0)?;
    cu.fill_ptr(dc_next, bh, 0.0)?;
    for t in (0..s.t).rev() {
        let step = (t * s.b * g) as u64 * f;
        cu.gates_bwd_ptr(
            gates + step,
            cs + at_bh(t),
            tc + at_bh(t),
            dh + at_bh(t),
            dh_next,
            dc_next,
            dgates + step,
            (s.b, h),
            (h, g),
        )?;
        if t > 0 {
            // dh_{t-1} = dgates_t W_hh
            cu.gemm_ptr(
                s.b,
                h,
                g,
                1.0,
                (dgates + step, Trans::N),
                (w_hh, Trans::N),
                0.0,
                dh_next,
            )?;
        }
    }
    // Weight gradients of all steps at once.
    let x = cu.ptr(x, 0);
    cu.gemm_ptr(
        g,
        h,
        tb,
        1.0,
        (dgates, Trans::T),
        (hs, Trans::N),
        1.0,
        cu.ptr(grads, at.w_hh.start),
    )?;
    cu.gemm_ptr(
        g,
        s.i,
        tb,
        1.0,
        (dgates, Trans::T),
        (x, Trans::N),
        1.0,
        cu.ptr(grads, at.w_ih.start),
    )?;
    cu.col_sums_ptr(dgates, tb, g, cu.ptr(grads, at.b_ih.start), true)?;
    cu.col_sums_ptr(dgates, tb, g, cu.ptr(grads, at.b_hh.start), true)?;
    if let Some(dx) = dx {
        fits(dx.len(), 0, tb * s.i, "lstm dx")?;
        cu.gemm_ptr(
            tb,
            s.i,
            g,
            1.0,
            (dgates, Trans::N),
            (cu.ptr(params, at.w_ih.start), Trans::N),
            0.0,
            cu.ptr(dx, 0),
        )?;
    }
    Ok(())
}

/// Fails unless the layer's gradient ranges lie inside `grads`.
fn check_grads(grads: &CudaSlice<f32>, at: &LstmAt, s: LstmShape) -> Result<(), DeviceError> {
    let (g, len) = (s.g(), grads.len());
    fits(len, at.w_ih.start, g * s.i, "lstm dw_ih")?;
    fits(len, at.w_hh.start, g * s.h, "lstm dw_hh")?;
    fits(len, at.b_ih.start, g, "lstm db_ih")?;
    fits(len, at.b_hh.start, g, "lstm db_hh")
}
