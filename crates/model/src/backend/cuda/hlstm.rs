//! The H-LSTM layer on the GPU, step for step the algorithm of `crate::hlstm`: the x part of the
//! four first layers for all T steps is one GEMM; per step one recurrent (B, H) x (H, 4M) GEMM,
//! the fused ReLU + gate-dropout kernel, four second-layer (B, M) x (M, H) GEMMs on gate-major
//! planes and the fused gate epilogue; backward per step the epilogue's backward, four dA GEMMs,
//! the ReLU backward kernel and the dh GEMM, then the weight gradients of all steps as single
//! GEMMs and the bias gradients as column sums.

use super::{fits, l, Arg, Cuda};
use crate::backend::{DeviceError, HlstmAt};
use crate::hlstm::HlstmShape;
use cudarc::driver::CudaSlice;
use kernels::Trans;

/// What [`forward`] saves for [`backward`], in the GPU's memory (the fields of
/// `crate::hlstm::HlstmTape`, same layouts).
pub struct CudaHlstmTape {
    shape: HlstmShape,
    /// First-layer pre-activations, then ∂a'/∂pre = mask ⊙ [pre > 0]: (T, B, 4M).
    first: CudaSlice<f32>,
    /// Second-layer inputs a' = mask ⊙ ReLU(pre), gate-major: (4, T, B, M).
    acts: CudaSlice<f32>,
    /// Post-activation gates, gate-major: (4, T, B, H).
    gates: CudaSlice<f32>,
    /// Hidden states with the initial one first: (T+1, B, H).
    pub(super) hs: CudaSlice<f32>,
    /// Cell states with the initial one first: (T+1, B, H).
    pub(super) cs: CudaSlice<f32>,
    /// tanh(c_t): (T, B, H).
    tc: CudaSlice<f32>,
    /// Pre-activation gate gradients, gate-major: (4, T, B, H).
    dgates: CudaSlice<f32>,
    /// Gradient w.r.t. a' of the current step, gate-major: (4, B, M).
    dacts: CudaSlice<f32>,
    /// Gradient w.r.t. the first-layer pre-activations: (T, B, 4M).
    dfirst: CudaSlice<f32>,
    /// Gradients flowing into h_{t-1} and c_{t-1}: (B, H) each.
    dh_next: CudaSlice<f32>,
    dc_next: CudaSlice<f32>,
}

impl CudaHlstmTape {
    /// A tape for `s`; fails (naming the field) when a dimension is zero, as the CPU's.
    pub(super) fn new(cuda: &Cuda, s: HlstmShape) -> Result<Self, DeviceError> {
        s.validate().map_err(|e| DeviceError(e.to_string()))?;
        let (tb, bh, m4) = (s.t * s.b, s.b * s.h, 4 * s.m);
        Ok(Self {
            shape: s,
            first: cuda.alloc(tb * m4)?,
            acts: cuda.alloc(tb * m4)?,
            gates: cuda.alloc(tb * s.g())?,
            hs: cuda.alloc((s.t + 1) * bh)?,
            cs: cuda.alloc((s.t + 1) * bh)?,
            tc: cuda.alloc(tb * s.h)?,
            dgates: cuda.alloc(tb * s.g())?,
            dacts: cuda.alloc(s.b * m4)?,
            dfirst: cuda.alloc(tb * m4)?,
            dh_next: cuda.alloc(bh)?,
            dc_next: cuda.alloc(bh)?,
        })
    }
}

/// Fails unless the tape was made for `s` and the layer's tensors lie inside `buf` (the
/// parameters or their gradients).
fn check(
    tape: &CudaHlstmTape,
    s: HlstmShape,
    buf: &CudaSlice<f32>,
    at: &HlstmAt,
    x: &CudaSlice<f32>,
) -> Result<(), DeviceError> {
    if tape.shape != s {
        return Err(DeviceError(format!(
            "cuda: hlstm: tape made for {:?}, called with {s:?}",
            tape.shape
        )));
    }
    let (m4, len) = (4 * s.m, buf.len());
    fits(len, at.w_ih1.start, m4 * s.i, "hlstm w_ih1")?;
    fits(len, at.w_hh1.start, m4 * s.h, "hlstm w_hh1")?;
    fits(len, at.b1.start, m4, "hlstm b1")?;
    fits(len, at.w2.start, 4 * s.h * s.m, "hlstm w2")?;
    fits(len, at.b2.start, s.g(), "hlstm b2")?;
    fits(x.len(), 0, s.t * s.b * s.i, "hlstm x")
}

/// Bytes of `n` f32 values, as a pointer offset.
fn off(n: usize) -> u64 {
    (n * std::mem::size_of::<f32>()) as u64
}

/// `crate::hlstm::hlstm_forward`; `mask`: the gates' hidden-layer dropout mask (T, B, 4M).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    cu: &Cuda,
    s: HlstmShape,
    params: &CudaSlice<f32>,
    at: &HlstmAt,
    x: &CudaSlice<f32>,
    mask: Option<&CudaSlice<f32>>,
    h0: &CudaSlice<f32>,
    c0: &CudaSlice<f32>,
    tape: &mut CudaHlstmTape,
) -> Result<(), DeviceError> {
    check(tape, s, params, at, x)?;
    let (h, m, m4, bh, bm) = (s.h, s.m, 4 * s.m, s.b * s.h, s.b * s.m);
    let tb = s.t * s.b;
    fits(h0.len(), 0, bh, "hlstm h0")?;
    fits(c0.len(), 0, bh, "hlstm c0")?;
    let mask = match mask {
        Some(mk) => {
            fits(mk.len(), 0, tb * m4, "hlstm gate mask")?;
            cu.ptr(mk, 0)
        }
        None => 0,
    };
    let (first, acts, gates) = (
        cu.ptr(&tape.first, 0),
        cu.ptr(&tape.acts, 0),
        cu.ptr(&tape.gates, 0),
    );
    let (hs, cs, tc) = (
        cu.ptr(&tape.hs, 0),
        cu.ptr(&tape.cs, 0),
        cu.ptr(&tape.tc, 0),
    );
    let w_hh1 = cu.ptr(params, at.w_hh1.start);
    let w2 = cu.ptr(params, at.w2.start);
    cu.copy_ptr(cu.ptr(h0, 0), hs, bh, "hlstm h0")?;
    cu.copy_ptr(cu.ptr(c0, 0), cs, bh, "hlstm c0")?;
    // first = x W1x^T + b1 for every step at once.
    cu.fill_rows_ptr(first, cu.ptr(params, at.b1.start), tb, m4)?;
    cu.gemm_ptr(
        tb,
        m4,
        s.i,
        1.0,
        (cu.ptr(x, 0), Trans::N),
        (cu.ptr(params, at.w_ih1.start), Trans::T),
        1.0,
        first,
    )?;
    // Second-layer biases preloaded in each gate plane.
    for k in 0..4 {
        let b2 = cu.ptr(params, at.b2.start + k * h);
        cu.fill_rows_ptr(gates + off(k * tb * h), b2, tb, h)?;
    }
    for t in 0..s.t {
        let first_t = first + off(t * s.b * m4);
        cu.gemm_ptr(
            s.b,
            m4,
            h,
            1.0,
            (hs + off(t * bh), Trans::N),
            (w_hh1, Trans::T),
            1.0,
            first_t,
        )?;
        let mask_t = if mask == 0 {
            0
        } else {
            mask + off(t * s.b * m4)
        };
        // relu_fwd(float* first, const float* mask, float* acts, long long b, long long m,
        //          long long plane)
        let args = [
            Arg::P(first_t),
            Arg::P(mask_t),
            Arg::P(acts + off(t * bm)),
            l(s.b),
            l(m),
            l(tb * m),
        ];
        cu.launch_n(&cu.k.relu_fwd, s.b * m4, &args, "hlstm relu")?;
        for k in 0..4 {
            cu.gemm_ptr(
                s.b,
                h,
                m,
                1.0,
                (acts + off(k * tb * m + t * bm), Trans::N),
                (w2 + off(k * h * m), Trans::T),
                1.0,
                gates + off(k * tb * h + t * bh),
            )?;
        }
        cu.gates_fwd_ptr(
            gates + off(t * bh),
            0,
            cs + off(t * bh),
            cs + off((t + 1) * bh),
            tc + off(t * bh),
            hs + off((t + 1) * bh),
            (s.b, h),
            (tb * h, h),
        )?;
    }
    Ok(())
}

/// `crate::hlstm::hlstm_backward`: back-propagates dh: (T, B, H) through the last forward,
/// accumulating into the layer's ranges of `grads`, writing dx: (T, B, I) when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    cu: &Cuda,
    s: HlstmShape,
    params: &CudaSlice<f32>,
    at: &HlstmAt,
    x: &CudaSlice<f32>,
    dh: &CudaSlice<f32>,
    tape: &mut CudaHlstmTape,
    grads: &mut CudaSlice<f32>,
    dx: Option<&mut CudaSlice<f32>>,
) -> Result<(), DeviceError> {
    check(tape, s, params, at, x)?;
    check(tape, s, grads, at, x)?;
    let (h, m, m4, bh, bm) = (s.h, s.m, 4 * s.m, s.b * s.h, s.b * s.m);
    let tb = s.t * s.b;
    fits(dh.len(), 0, tb * h, "hlstm dh")?;
    let (first, acts, gates) = (
        cu.ptr(&tape.first, 0),
        cu.ptr(&tape.acts, 0),
        cu.ptr(&tape.gates, 0),
    );
    let (hs, cs, tc) = (
        cu.ptr(&tape.hs, 0),
        cu.ptr(&tape.cs, 0),
        cu.ptr(&tape.tc, 0),
    );
    let (dgates, dacts, dfirst) = (
        cu.ptr(&tape.dgates, 0),
        cu.ptr(&tape.dacts, 0),
        cu.ptr(&tape.dfirst, 0),
    );
    let (dh_next, dc_next) = (cu.ptr(&tape.dh_next, 0), cu.ptr(&tape.dc_next, 0));
    let dh = cu.ptr(dh, 0);
    let w_hh1 = cu.ptr(params, at.w_hh1.start);
    let w2 = cu.ptr(params, at.w2.start);
    cu.fill_ptr(dh_next, bh, 0.0)?;
    cu.fill_ptr(dc_next, bh, 0.0)?;
    for t in (0..s.t).rev() {
        cu.gates_bwd_ptr(
            gates + off(t * bh),
            cs + off(t * bh),
            tc + off(t * bh),
            dh + off(t * bh),
            dh_next,
            dc_next,
            dgates + off(t * bh),
            (s.b, h),
            (tb * h, h),
        )?;
        // Through the grouped second layer: dA'_k = dG_k W2_k, (B, H) x (H, M) per gate.
        for k in 0..4 {
            cu.gemm_ptr(
                s.b,
                m,
                h,
                1.0,
                (dgates + off(k * tb * h + t * bh), Trans::N),
                (w2 + off(k * h * m), Trans::N),
                0.0,
                dacts + off(k * bm),
            )?;
        }
        // Through dropout and ReLU, scattered back to the [i f g o] rows of the first layer.
        let rows = off(t * s.b * m4);
        // relu_bwd(const float* dacts, const float* on, float* dfirst, long long b, long long m)
        let args = [
            Arg::P(dacts),
            Arg::P(first + rows),
            Arg::P(dfirst + rows),
            l(s.b),
            l(m),
        ];
        cu.launch_n(&cu.k.relu_bwd, s.b * m4, &args, "hlstm relu backward")?;
        if t > 0 {
            // dh_{t-1} = dfirst_t W1h
            cu.gemm_ptr(
                s.b,
                h,
                m4,
                1.0,
                (dfirst + rows, Trans::N),
                (w_hh1, Trans::N),
                0.0,
                dh_next,
            )?;
        }
    }
    // Weight gradients of all steps at once: per gate dW2_k += dG_k^T A'_k over T·B rows ...
    for k in 0..4 {
        let dg = dgates + off(k * tb * h);
        cu.gemm_ptr(
            h,
            m,
            tb,
            1.0,
            (dg, Trans::T),
            (acts + off(k * tb * m), Trans::N),
            1.0,
            cu.ptr(grads, at.w2.start + k * h * m),
        )?;
        cu.col_sums_ptr(dg, tb, h, cu.ptr(grads, at.b2.start + k * h), true)?;
    }
    // ... and the first layers' dW1h += dF^T H_prev, dW1x += dF^T X.
    let x = cu.ptr(x, 0);
    cu.gemm_ptr(
        m4,
        h,
        tb,
        1.0,
        (dfirst, Trans::T),
        (hs, Trans::N),
        1.0,
        cu.ptr(grads, at.w_hh1.start),
    )?;
    cu.gemm_ptr(
        m4,
        s.i,
        tb,
        1.0,
        (dfirst, Trans::T),
        (x, Trans::N),
        1.0,
        cu.ptr(grads, at.w_ih1.start),
    )?;
    cu.col_sums_ptr(dfirst, tb, m4, cu.ptr(grads, at.b1.start), true)?;
    if let Some(dx) = dx {
        fits(dx.len(), 0, tb * s.i, "hlstm dx")?;
        cu.gemm_ptr(
            tb,
            s.i,
            m4,
            1.0,
            (dfirst, Trans::N),
            (cu.ptr(params, at.w_ih1.start), Trans::N),
            0.0,
            cu.ptr(dx, 0),
        )?;
    }
    Ok(())
}
