//! The device seam: everything a model needs from the hardware it trains and evaluates on, as
//! coarse layer-level operations over buffers that live in that device's memory.
//!
//! The language model's forward and backward (`lm.rs`), the optimizers and the compression hook
//! are written once over [`Backend`]; [`Cpu`] is the engine's own kernels (the layer functions of
//! `lstm.rs`, `hlstm.rs`, `dropout.rs`, `embedding.rs` and `kernels`), with `Vec<F>` buffers so
//! that CPU code keeps working on plain vectors. A GPU backend implements the same operations
//! with its own buffers and tapes (`backend/cuda` behind the `cuda` feature). Data returns to the
//! host only where the caller asks ([`Backend::download`] / [`Backend::release`]): at pruning and
//! growth events, for checkpoints and for the loss of each batch.
//!
//! Conventions: parameters and their gradients are one flat buffer each in a model's
//! [`crate::ParamLayout`], so operations on weights take the buffer and the tensor's range;
//! activations are (rows, width) row-major; every operation either succeeds or returns a
//! [`DeviceError`] naming what failed (the CPU never fails).

mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

pub use cpu::Cpu;

use crate::dropout::DropoutCtx;
use crate::hlstm::HlstmShape;
use crate::lstm::LstmShape;
use kernels::support::Support;
use kernels::{Real, Trans};
use std::ops::Range;

/// A device operation that failed: what was asked and what the device said.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DeviceError(pub String);

/// Ranges of one LSTM layer's tensors in the parameter (and gradient) buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LstmAt {
    pub w_ih: Range<usize>,
    pub w_hh: Range<usize>,
    pub b_ih: Range<usize>,
    pub b_hh: Range<usize>,
}

/// Ranges of one H-LSTM layer's tensors in the parameter (and gradient) buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlstmAt {
    pub w_ih1: Range<usize>,
    pub w_hh1: Range<usize>,
    pub b1: Range<usize>,
    pub w2: Range<usize>,
    pub b2: Range<usize>,
}

/// One operand of [`Backend::gemm`]: a row-major matrix stored from `at` in `buf`.
pub struct Operand<'a, B> {
    pub buf: &'a B,
    pub at: usize,
    pub trans: Trans,
}

/// What the softmax cross-entropy writes for training (see [`Backend::softmax_xent`]).
pub struct XentTargets<'a, B> {
    /// The gradient computed is that of `scale * Σ row loss`; it replaces the logits.
    pub scale: f32,
    /// The decoder bias gradient (column sums of the logits' gradient) is added here: (V).
    pub dbias: &'a mut B,
    /// The logits' gradient transposed, (V, N), for the decoder's weight gradient.
    pub transposed: &'a mut B,
}

/// One optimizer update over a whole parameter buffer (the optimizers of `train::optim`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// `p -= lr (gs g + wd p)`.
    Sgd { lr: f32, gs: f32, wd: f32 },
    /// `m = mu m + gs g + wd p; p -= lr m`.
    Momentum { lr: f32, gs: f32, wd: f32, mu: f32 },
    /// Adam (L2 decay in the gradient) or AdamW (`decoupled`: decay applied to p directly),
    /// with the bias corrections folded into `step_size` and `inv_sqrt_bc2`.
    Adam {
        gs: f32,
        wd: f32,
        lr: f32,
        decoupled: bool,
        b1: f32,
        b2: f32,
        eps: f32,
        step_size: f32,
        inv_sqrt_bc2: f32,
    },
}

/// A device the model runs on, for values of type `F` (a GPU backend may implement `f32` only).
pub trait Backend<F: Real>: Sync {
    /// A vector of `F` in the device's memory.
    type Buf: Send;
    /// Token ids in the device's memory.
    type Ids: Send;
    /// What an LSTM layer's forward saves for its backward, with its scratch space.
    type LstmTape: Send;
    /// The same for an H-LSTM layer.
    type HlstmTape: Send;

    /// The device in words (for logs and errors), e.g. "cpu" or "cuda:0 (NVIDIA H200)".
    fn describe(&self) -> String;

    // ---- memory ----
    fn zeros(&self, n: usize) -> Result<Self::Buf, DeviceError>;
    fn upload(&self, host: &[F]) -> Result<Self::Buf, DeviceError>;
    /// Takes ownership of host values: the CPU keeps the vector itself (no copy).
    fn adopt(&self, host: Vec<F>) -> Result<Self::Buf, DeviceError> {
        self.upload(&host)
    }
    /// The buffer's values on the host: the CPU hands its vector back (no copy).
    fn release(&self, buf: Self::Buf) -> Result<Vec<F>, DeviceError>;
    /// Copies the whole buffer into `out` (same length).
    fn download(&self, buf: &Self::Buf, out: &mut [F]) -> Result<(), DeviceError>;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn upload_ids(&self, ids: &[u32]) -> Result<Self::Ids, DeviceError>;
    /// `dst[dst_at..dst_at + n] = src[src_at..src_at + n]`.
    fn copy(
        &self,
        src: &Self::Buf,
        src_at: usize,
        dst: &mut Self::Buf,
        dst_at: usize,
        n: usize,
    ) -> Result<(), DeviceError>;
    /// Sets the values of `buf` inside `support` to `v` (a dense device may set them all where
    /// `v` is what the rest holds already, as for gradients that are zero outside it).
    fn fill_on(&self, buf: &mut Self::Buf, support: &Support, v: F) -> Result<(), DeviceError>;

    // ---- layers ----
    /// `out[n, :] = params[table.start + tokens[n] * e ..][..e]`.
    fn embedding_forward(
        &self,
        params: &Self::Buf,
        table: Range<usize>,
        e: usize,
        tokens: &Self::Ids,
        out: &mut Self::Buf,
    ) -> Result<(), DeviceError>;
    /// `grads[table.start + tokens[n] * e ..][..e] += dout[n, :]` for the first `n·e` of dout.
    fn embedding_backward(
        &self,
        dout: &Self::Buf,
        e: usize,
        tokens: &Self::Ids,
        grads: &mut Self::Buf,
        table: Range<usize>,
    ) -> Result<(), DeviceError>;
    /// Inverted dropout at `site` of `x[x_at..]` (as many values as `out` holds;
    /// `dropout::dropout_forward`): writes the mask and `out`, drawing the same masks as the CPU
    /// for the same (seed, step, site, index).
    fn dropout_forward(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        x: &Self::Buf,
        x_at: usize,
        mask: &mut Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<(), DeviceError>;
    /// Only the mask (`dropout::dropout_mask`).
    fn dropout_mask(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        mask: &mut Self::Buf,
    ) -> Result<(), DeviceError>;
    /// `d[..n] *= mask[..n]`: dropout's backward, and masks on weights, gradients and optimizer
    /// state (n = the whole buffer).
    fn multiply(&self, d: &mut Self::Buf, mask: &Self::Buf, n: usize) -> Result<(), DeviceError>;
    /// `dst[range] += src[..range.len()]`.
    fn add_into(
        &self,
        dst: &mut Self::Buf,
        range: Range<usize>,
        src: &Self::Buf,
    ) -> Result<(), DeviceError>;

    fn lstm_tape(&self, s: LstmShape) -> Result<Self::LstmTape, DeviceError>;
    /// The layer over x: (T, B, I) from (h0, c0), saving what backward needs in `tape`
    /// (`lstm::lstm_forward`).
    #[allow(clippy::too_many_arguments)]
    fn lstm_forward(
        &self,
        s: LstmShape,
        params: &Self::Buf,
        at: &LstmAt,
        x: &Self::Buf,
        h0: &Self::Buf,
        c0: &Self::Buf,
        tape: &mut Self::LstmTape,
    ) -> Result<(), DeviceError>;
    /// The last forward's output h_1..h_T, (T, B, H): the buffer and where it starts.
    fn lstm_output<'a>(&self, tape: &'a Self::LstmTape, s: LstmShape) -> (&'a Self::Buf, usize);
    /// Copies the last forward's final (h_T, c_T) into `h` and `c`.
    fn lstm_final_state(
        &self,
        tape: &Self::LstmTape,
        s: LstmShape,
        h: &mut Self::Buf,
        c: &mut Self::Buf,
    ) -> Result<(), DeviceError>;
    /// Back-propagates `dh`: (T, B, H) (its first T·B·H values) through the last forward,
    /// accumulating into the layer's ranges of `grads` and writing dx (T, B, I) when given
    /// (`lstm::lstm_backward`).
    #[allow(clippy::too_many_arguments)]
    fn lstm_backward(
        &self,
        s: LstmShape,
        params: &Self::Buf,
        at: &LstmAt,
        x: &Self::Buf,
        dh: &Self::Buf,
        tape: &mut Self::LstmTape,
        grads: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
    ) -> Result<(), DeviceError>;

    fn hlstm_tape(&self, s: HlstmShape) -> Result<Self::HlstmTape, DeviceError>;
    /// `hlstm::hlstm_forward`; `mask` is the gates' hidden-layer dropout mask (T, B, 4M).
    #[allow(clippy::too_many_arguments)]
    fn hlstm_forward(
        &self,
        s: HlstmShape,
        params: &Self::Buf,
        at: &HlstmAt,
        x: &Self::Buf,
        mask: Option<&Self::Buf>,
        h0: &Self::Buf,
        c0: &Self::Buf,
        tape: &mut Self::HlstmTape,
    ) -> Result<(), DeviceError>;
    fn hlstm_output<'a>(&self, tape: &'a Self::HlstmTape, s: HlstmShape) -> (&'a Self::Buf, usize);
    fn hlstm_final_state(
        &self,
        tape: &Self::HlstmTape,
        s: HlstmShape,
        h: &mut Self::Buf,
        c: &mut Self::Buf,
    ) -> Result<(), DeviceError>;
    /// `hlstm::hlstm_backward`.
    #[allow(clippy::too_many_arguments)]
    fn hlstm_backward(
        &self,
        s: HlstmShape,
        params: &Self::Buf,
        at: &HlstmAt,
        x: &Self::Buf,
        dh: &Self::Buf,
        tape: &mut Self::HlstmTape,
        grads: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
    ) -> Result<(), DeviceError>;

    /// `c[c_at..][..m·n] = alpha · op(a) · op(b) + beta · c` with op(a) (m, k) and op(b) (k, n),
    /// all row-major (`kernels::matmul`).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: F,
        a: Operand<'_, Self::Buf>,
        b: Operand<'_, Self::Buf>,
        beta: F,
        c: &mut Self::Buf,
        c_at: usize,
    ) -> Result<(), DeviceError>;
    /// Adds `params[bias]` to every row of `logits` (N, V), then the cross-entropy against
    /// `targets` into `row_loss` (N, on the host). With `train`, the logits are replaced by the
    /// gradient and its column sums and transpose written
    /// (`kernels::softmax::softmax_xent_biased`).
    #[allow(clippy::too_many_arguments)]
    fn softmax_xent(
        &self,
        logits: &mut Self::Buf,
        v: usize,
        targets: &Self::Ids,
        params: &Self::Buf,
        bias: Range<usize>,
        train: Option<XentTargets<'_, Self::Buf>>,
        row_loss: &mut [f64],
    ) -> Result<(), DeviceError>;

    // ---- optimizer ----
    /// Σ x² over `support` (the values outside it are zero), accumulated in f64.
    fn sum_squares_on(&self, x: &Self::Buf, support: &Support) -> Result<f64, DeviceError>;
    /// One optimizer update. `support`: where the gradient may be non-zero; an update that
    /// leaves a parameter unchanged for a zero gradient (plain SGD, no decay) may visit only it.
    fn update(
        &self,
        params: &mut Self::Buf,
        grads: &Self::Buf,
        state: [Option<&mut Self::Buf>; 2],
        update: Update,
        support: &Support,
    ) -> Result<(), DeviceError>;
}

/// The value of an operation that cannot fail (the CPU's).
pub fn infallible<T>(r: Result<T, DeviceError>) -> T {
    r.unwrap_or_else(|e| unreachable!("the CPU backend does not fail: {e}"))
}
