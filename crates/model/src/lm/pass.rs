//! The language model's forward and backward, written once over the device seam
//! ([`Backend`]): embedding → dropout → L LSTM / H-LSTM layers (dropout between) → dropout →
//! decoder GEMM → fused bias + softmax cross-entropy. [`LanguageModel::forward`] and
//! [`LanguageModel::backward`] run them on the CPU over the model's own parameters;
//! [`LanguageModel::forward_on`] / [`LanguageModel::backward_on`] take any backend and a
//! parameter buffer in its memory.

use super::LanguageModel;
use crate::backend::{infallible, Backend, Cpu, DeviceError, Operand, XentTargets};
use crate::dropout::DropoutCtx;
use crate::LmConfig;
use kernels::support::Support;
use kernels::{Real, Trans};

/// The recurrent state carried from one batch to the next: per layer h and c, (B, H) each.
#[derive(Clone, Debug, PartialEq)]
pub struct LmState<F: Real, B: Backend<F> = Cpu> {
    pub batch: usize,
    pub h: Vec<B::Buf>,
    pub c: Vec<B::Buf>,
}

impl<F: Real> LmState<F> {
    pub fn zeros(config: &LmConfig, batch: usize) -> Self {
        infallible(Self::zeros_on(&Cpu, config, batch))
    }

    /// Zeroes every h and c.
    pub fn reset(&mut self) {
        infallible(self.reset_on(&Cpu))
    }
}

impl<F: Real, B: Backend<F>> LmState<F, B> {
    pub fn zeros_on(be: &B, config: &LmConfig, batch: usize) -> Result<Self, DeviceError> {
        let zeros = || -> Result<Vec<B::Buf>, DeviceError> {
            (0..config.layers)
                .map(|l| be.zeros(batch * config.hidden_of(l)))
                .collect()
        };
        Ok(Self {
            batch,
            h: zeros()?,
            c: zeros()?,
        })
    }

    /// Zeroes every h and c.
    pub fn reset_on(&mut self, be: &B) -> Result<(), DeviceError> {
        for buf in self.h.iter_mut().chain(self.c.iter_mut()) {
            let all = Support::full(be.len(buf));
            be.fill_on(buf, &all, F::ZERO)?;
        }
        Ok(())
    }

    /// The state in `be`'s memory (from the host).
    pub fn upload(be: &B, host: &LmState<F>) -> Result<Self, DeviceError> {
        let up = |v: &[Vec<F>]| -> Result<Vec<B::Buf>, DeviceError> {
            v.iter().map(|x| be.upload(x)).collect()
        };
        Ok(Self {
            batch: host.batch,
            h: up(&host.h)?,
            c: up(&host.c)?,
        })
    }

    /// The state on the host.
    pub fn download(&self, be: &B) -> Result<LmState<F>, DeviceError> {
        let down = |v: &[B::Buf]| -> Result<Vec<Vec<F>>, DeviceError> {
            v.iter()
                .map(|x| {
                    let mut out = vec![F::ZERO; be.len(x)];
                    be.download(x, &mut out).map(|()| out)
                })
                .collect()
        };
        Ok(LmState {
            batch: self.batch,
            h: down(&self.h)?,
            c: down(&self.c)?,
        })
    }
}

/// The forward tape of one layer, by cell kind.
enum LayerTape<F: Real, B: Backend<F>> {
    Lstm(B::LstmTape),
    Hlstm(B::HlstmTape),
}

/// Buffers for one (T, B): activations, tapes and activation gradients, reused across batches.
pub struct LmWorkspace<F: Real, B: Backend<F> = Cpu> {
    pub t: usize,
    pub b: usize,
    emb: B::Buf,
    /// Input of layer l after dropout (l = 0..L), and the decoder input (l = L): (T, B, width).
    xs: Vec<B::Buf>,
    /// Dropout masks of the same shapes.
    masks: Vec<B::Buf>,
    tapes: Vec<LayerTape<F, B>>,
    /// Dropout masks of the H-LSTM gates' hidden layers: (T, B, 4M) per layer.
    gate_masks: Vec<B::Buf>,
    /// Logits, then their gradient after a training forward: (T, B, V).
    pub logits: B::Buf,
    /// Cross-entropy per token: (T, B), on the host.
    pub row_loss: Vec<f64>,
    /// The logits' gradient transposed, (V, T, B), for the decoder's weight gradient; made by
    /// the first training forward (evaluation never needs it).
    logits_t: Option<B::Buf>,
    /// Decoder bias gradient of the last training forward: (V).
    dbias: B::Buf,
    dcur: B::Buf,
    dprev: B::Buf,
    /// The last forward's tokens and targets, in the device's memory.
    tokens: B::Ids,
    targets: B::Ids,
    /// Whether the last forward applied dropout (backward must then apply the masks).
    dropout_active: bool,
}

impl<F: Real> LanguageModel<F> {
    /// Allocates the CPU buffers for sequences of `t` steps and batch `b`.
    pub fn workspace(&self, t: usize, b: usize) -> LmWorkspace<F> {
        infallible(self.workspace_on(&Cpu, t, b))
    }

    /// Forward over `tokens` (T, B) predicting `targets` (T, B), starting from `state` and
    /// leaving the final state in it. Returns the summed cross-entropy over the T*B tokens
    /// (per-token values in `ws.row_loss`).
    ///
    /// With `grad_scale = Some(s)`, `ws.logits` ends up holding the gradient of
    /// `s * sum(cross-entropy)` w.r.t. the logits, ready for [`LanguageModel::backward`].
    /// `dropout` is applied only when given and the config's probability is > 0.
    pub fn forward(
        &self,
        ws: &mut LmWorkspace<F>,
        tokens: &[u32],
        targets: &[u32],
        state: &mut LmState<F>,
        dropout: Option<DropoutCtx>,
        grad_scale: Option<F>,
    ) -> f64 {
        let args = (
            tokens,
            targets,
            dropout,
            grad_scale.map(|g| g.to_f64() as f32),
        );
        infallible(self.forward_on(&Cpu, &self.params, ws, args, state))
    }

    /// Back-propagates the gradient left in `ws.logits` by a training forward; accumulates
    /// into `grads` (same layout as the parameters).
    pub fn backward(&self, ws: &mut LmWorkspace<F>, grads: &mut Vec<F>) {
        infallible(self.backward_on(&Cpu, &self.params, ws, grads))
    }
}

/// A forward's batch: tokens, targets, dropout and the gradient scale (`Some` for training).
pub type Batch<'a> = (&'a [u32], &'a [u32], Option<DropoutCtx>, Option<f32>);

impl<F: Real> LanguageModel<F> {
    /// [`Self::workspace`] in `be`'s memory.
    pub fn workspace_on<B: Backend<F>>(
        &self,
        be: &B,
        t: usize,
        b: usize,
    ) -> Result<LmWorkspace<F, B>, DeviceError> {
        let c = &self.config;
        let (e, v, w) = (c.embedding_width(), c.vocab, c.max_width());
        let tb = t * b;
        // Input widths of layers 0..L, then the top layer's output (the decoder input).
        let widths: Vec<usize> = (0..=c.layers)
            .map(|l| {
                if l < c.layers {
                    c.input_of(l)
                } else {
                    c.top_hidden()
                }
            })
            .collect();
        let per_width = |k: usize| -> Result<Vec<B::Buf>, DeviceError> {
            widths.iter().map(|w| be.zeros(tb * w * k)).collect()
        };
        let dropout_on = c.dropout > 0.0;
        let tapes = (0..c.layers)
            .map(|l| {
                Ok(if c.gate_hidden > 0 {
                    LayerTape::Hlstm(be.hlstm_tape(self.hlstm_shape(l, t, b))?)
                } else {
                    LayerTape::Lstm(be.lstm_tape(self.layer_shape(l, t, b))?)
                })
            })
            .collect::<Result<_, DeviceError>>()?;
        let gate_width = if c.gate_dropout > 0.0 {
            c.gate_hidden
        } else {
            0
        };
        Ok(LmWorkspace {
            t,
            b,
            emb: be.zeros(tb * e)?,
            xs: per_width(1)?,
            // No dropout, no masks.
            masks: per_width(dropout_on as usize)?,
            tapes,
            gate_masks: (0..c.layers)
                .map(|_| be.zeros(tb * 4 * gate_width))
                .collect::<Result<_, _>>()?,
            logits: be.zeros(tb * v)?,
            row_loss: vec![0.0; tb],
            logits_t: None,
            dbias: be.zeros(v)?,
            dcur: be.zeros(tb * w)?,
            dprev: be.zeros(tb * w)?,
            tokens: be.upload_ids(&vec![0; tb])?,
            targets: be.upload_ids(&vec![0; tb])?,
            dropout_active: false,
        })
    }

    /// [`Self::forward`] on `be` with the parameters `params` (this model's layout, in `be`'s
    /// memory; `self.params` is not read).
    pub fn forward_on<B: Backend<F>>(
        &self,
        be: &B,
        params: &B::Buf,
        ws: &mut LmWorkspace<F, B>,
        (tokens, targets, dropout, grad_scale): Batch<'_>,
        state: &mut LmState<F, B>,
    ) -> Result<f64, DeviceError> {
        let (t, b) = (ws.t, ws.b);
        let tb = t * b;
        assert_eq!(tokens.len(), tb, "forward: tokens are not (T, B)");
        assert_eq!(targets.len(), tb, "forward: targets are not (T, B)");
        assert_eq!(
            state.batch, b,
            "forward: state batch differs from workspace batch"
        );
        let cfg = &self.config;
        let (e, h, v) = (cfg.embedding_width(), cfg.top_hidden(), cfg.vocab);
        let [encoder, decoder_w, decoder_b] = self.io_at();
        let gate_dropout = dropout
            .filter(|_| cfg.gate_dropout > 0.0)
            .map(|d| DropoutCtx {
                p: cfg.gate_dropout,
                ..d
            });
        let dropout = dropout.filter(|_| cfg.dropout > 0.0).map(|d| DropoutCtx {
            p: cfg.dropout,
            ..d
        });
        ws.dropout_active = dropout.is_some();
        ws.tokens = be.upload_ids(tokens)?;
        ws.targets = be.upload_ids(targets)?;

        be.embedding_forward(params, encoder, e, &ws.tokens, &mut ws.emb)?;
        apply_dropout(
            be,
            dropout.as_ref(),
            0,
            &ws.emb,
            0,
            tb * e,
            &mut ws.masks,
            &mut ws.xs,
        )?;
        for l in 0..cfg.layers {
            let width = cfg.hidden_of(l);
            let (out, at) = match &mut ws.tapes[l] {
                LayerTape::Lstm(tape) => {
                    let s = self.layer_shape(l, t, b);
                    let (x, h0, c0) = (&ws.xs[l], &state.h[l], &state.c[l]);
                    be.lstm_forward(s, params, &self.lstm_at(l), x, h0, c0, tape)?;
                    be.lstm_final_state(tape, s, &mut state.h[l], &mut state.c[l])?;
                    be.lstm_output(tape, s)
                }
                LayerTape::Hlstm(tape) => {
                    let s = self.hlstm_shape(l, t, b);
                    // Gate dropout: its own sites (100 + l), only when training with dropout.
                    let mask = match &gate_dropout {
                        Some(ctx) => {
                            be.dropout_mask(ctx, 100 + l as u64, &mut ws.gate_masks[l])?;
                            Some(&ws.gate_masks[l])
                        }
                        None => None,
                    };
                    let (x, h0, c0) = (&ws.xs[l], &state.h[l], &state.c[l]);
                    be.hlstm_forward(s, params, &self.hlstm_at(l), x, mask, h0, c0, tape)?;
                    be.hlstm_final_state(tape, s, &mut state.h[l], &mut state.c[l])?;
                    be.hlstm_output(tape, s)
                }
            };
            let site = (l + 1) as u64;
            apply_dropout(
                be,
                dropout.as_ref(),
                site,
                out,
                at,
                tb * width,
                &mut ws.masks,
                &mut ws.xs,
            )?;
        }
        // Decoder: logits = x W^T, with the bias added inside the fused softmax pass.
        let x = Operand {
            buf: &ws.xs[cfg.layers],
            at: 0,
            trans: Trans::N,
        };
        let w = Operand {
            buf: params,
            at: decoder_w.start,
            trans: Trans::T,
        };
        be.gemm(tb, v, h, F::ONE, x, w, F::ZERO, &mut ws.logits, 0)?;
        let train = match grad_scale {
            Some(scale) => {
                if ws.logits_t.is_none() {
                    ws.logits_t = Some(be.zeros(tb * v)?);
                }
                Some(XentTargets {
                    scale,
                    dbias: &mut ws.dbias,
                    transposed: ws.logits_t.as_mut().expect("made above"),
                })
            }
            None => None,
        };
        be.softmax_xent(
            &mut ws.logits,
            v,
            &ws.targets,
            params,
            decoder_b,
            train,
            &mut ws.row_loss,
        )?;
        // Summed in order so the result is deterministic.
        Ok(ws.row_loss.iter().sum())
    }

    /// [`Self::backward`] on `be`: back-propagates the gradient a training
    /// [`Self::forward_on`] left in `ws`, accumulating into `grads` (the parameter layout).
    pub fn backward_on<B: Backend<F>>(
        &self,
        be: &B,
        params: &B::Buf,
        ws: &mut LmWorkspace<F, B>,
        grads: &mut B::Buf,
    ) -> Result<(), DeviceError> {
        assert_eq!(
            be.len(grads),
            self.layout.total(),
            "backward: grads do not match the layout"
        );
        let (t, b) = (ws.t, ws.b);
        let tb = t * b;
        let cfg = &self.config;
        let (e, h, v) = (cfg.embedding_width(), cfg.top_hidden(), cfg.vocab);
        let layers = cfg.layers;
        let [encoder, decoder_w, decoder_b] = self.io_at();
        let logits_t = ws
            .logits_t
            .as_ref()
            .expect("backward needs a training forward (grad_scale given) first");
        // Decoder: dW += dlogits^T x (from the transposed copy the softmax pass wrote),
        // dx = dlogits W; the bias gradient was summed by the fused softmax pass.
        let op = |buf, at, trans| Operand { buf, at, trans };
        be.gemm(
            v,
            h,
            tb,
            F::ONE,
            op(logits_t, 0, Trans::N),
            op(&ws.xs[layers], 0, Trans::N),
            F::ONE,
            grads,
            decoder_w.start,
        )?;
        be.add_into(grads, decoder_b, &ws.dbias)?;
        be.gemm(
            tb,
            h,
            v,
            F::ONE,
            op(&ws.logits, 0, Trans::N),
            op(params, decoder_w.start, Trans::N),
            F::ZERO,
            &mut ws.dcur,
            0,
        )?;
        for l in (0..layers).rev() {
            if ws.dropout_active {
                be.multiply(&mut ws.dcur, &ws.masks[l + 1], tb * cfg.hidden_of(l))?;
            }
            let (x, dh, dx) = (&ws.xs[l], &ws.dcur, Some(&mut ws.dprev));
            match &mut ws.tapes[l] {
                LayerTape::Lstm(tape) => {
                    let s = self.layer_shape(l, t, b);
                    be.lstm_backward(s, params, &self.lstm_at(l), x, dh, tape, grads, dx)?;
                }
                LayerTape::Hlstm(tape) => {
                    let s = self.hlstm_shape(l, t, b);
                    be.hlstm_backward(s, params, &self.hlstm_at(l), x, dh, tape, grads, dx)?;
                }
            }
            std::mem::swap(&mut ws.dcur, &mut ws.dprev);
        }
        if ws.dropout_active {
            be.multiply(&mut ws.dcur, &ws.masks[0], tb * e)?;
        }
        be.embedding_backward(&ws.dcur, e, &ws.tokens, grads, encoder)
    }
}

/// `xs[site] = dropout(x[at..][..n])` with its mask in `masks[site]`, or a plain copy.
#[allow(clippy::too_many_arguments)]
fn apply_dropout<F: Real, B: Backend<F>>(
    be: &B,
    ctx: Option<&DropoutCtx>,
    site: u64,
    x: &B::Buf,
    at: usize,
    n: usize,
    masks: &mut [B::Buf],
    xs: &mut [B::Buf],
) -> Result<(), DeviceError> {
    let k = site as usize;
    debug_assert_eq!(be.len(&xs[k]), n, "apply_dropout: output width");
    match ctx {
        Some(ctx) => be.dropout_forward(ctx, site, x, at, &mut masks[k], &mut xs[k]),
        None => be.copy(x, at, &mut xs[k], 0, n),
    }
}
