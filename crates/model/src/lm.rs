//! The word-level LSTM language model (Zaremba et al. 2014 / PyTorch's word_language_model):
//! embedding → dropout → L stacked LSTM layers with dropout between them → dropout → linear
//! decoder → softmax cross-entropy. Parameter names follow PyTorch's `state_dict`.

use crate::dropout::{dropout_backward, dropout_forward, dropout_mask, DropoutCtx};
use crate::embedding::{embedding_backward, embedding_forward};
use crate::hlstm::{
    hlstm_backward, hlstm_forward, hlstm_param_specs, HlstmGrads, HlstmShape, HlstmTape,
    HlstmWeights,
};
use crate::lstm::{lstm_backward, lstm_forward, LstmGrads, LstmShape, LstmTape, LstmWeights};
use crate::{ModelError, ParamLayout};
use kernels::rng::CounterRng;
use kernels::softmax::{softmax_xent_biased, XentGrad};
use kernels::support::Support;
use kernels::{matmul, Real, Trans};
use serde::{Deserialize, Serialize};

/// Architecture of a language model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmConfig {
    /// Vocabulary size V (filled from the data when 0).
    #[serde(default)]
    pub vocab: usize,
    /// Embedding width E (0 = same as `hidden`).
    #[serde(default)]
    pub embedding: usize,
    /// LSTM hidden width H (of every layer unless `hidden_sizes` is given).
    pub hidden: usize,
    /// Per-layer hidden widths, for models whose layers were shrunk or grown unit by unit
    /// (empty = every layer is `hidden` wide).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_sizes: Vec<usize>,
    /// Number of stacked LSTM layers L.
    pub layers: usize,
    /// Dropout probability on non-recurrent connections (embedding output, between layers,
    /// before the decoder), as in Zaremba et al.
    #[serde(default)]
    pub dropout: f64,
    /// H-LSTM gate width M: each gate becomes a one-hidden-layer MLP of this width
    /// (0 = the plain LSTM).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gate_hidden: usize,
    /// Dropout on the hidden layer inside the H-LSTM gates.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub gate_dropout: f64,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

impl LmConfig {
    /// A plain stacked LSTM: embedding as wide as `hidden`, no dropout, no H-LSTM gates. Other
    /// fields are set with struct-update syntax.
    pub fn lstm(vocab: usize, hidden: usize, layers: usize) -> Self {
        Self {
            vocab,
            embedding: 0,
            hidden,
            hidden_sizes: Vec::new(),
            layers,
            dropout: 0.0,
            gate_hidden: 0,
            gate_dropout: 0.0,
        }
    }

    /// Hidden width of layer `l`.
    pub fn hidden_of(&self, l: usize) -> usize {
        self.hidden_sizes.get(l).copied().unwrap_or(self.hidden)
    }

    /// Input width of layer `l` (E for the first, the previous layer's H after).
    pub fn input_of(&self, l: usize) -> usize {
        if l == 0 {
            self.embedding_width()
        } else {
            self.hidden_of(l - 1)
        }
    }

    /// Hidden width of the top layer: the decoder's input.
    pub fn top_hidden(&self) -> usize {
        self.hidden_of(self.layers - 1)
    }

    /// Widest activation (E or any H): the size of shared gradient buffers.
    pub fn max_width(&self) -> usize {
        (0..self.layers)
            .map(|l| self.hidden_of(l))
            .fold(self.embedding_width(), usize::max)
    }

    /// E, resolving the "same as hidden" default.
    pub fn embedding_width(&self) -> usize {
        if self.embedding == 0 {
            self.hidden
        } else {
            self.embedding
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        if self.vocab == 0 {
            return Err(ModelError::Config("vocab must be > 0".into()));
        }
        if self.vocab > u32::MAX as usize {
            return Err(ModelError::Config("vocab must fit in 32 bits".into()));
        }
        if self.hidden == 0 {
            return Err(ModelError::Config("hidden must be > 0".into()));
        }
        if self.layers == 0 {
            return Err(ModelError::Config("layers must be > 0".into()));
        }
        if !self.hidden_sizes.is_empty()
            && (self.hidden_sizes.len() != self.layers || self.hidden_sizes.contains(&0))
        {
            return Err(ModelError::Config(format!(
                "hidden_sizes must list {} widths > 0, got {:?}",
                self.layers, self.hidden_sizes
            )));
        }
        if !(0.0..1.0).contains(&self.gate_dropout)
            || (self.gate_dropout > 0.0 && self.gate_hidden == 0)
        {
            return Err(ModelError::Config(format!(
                "gate_dropout must be in [0, 1) and needs gate_hidden > 0, got {} with gate_hidden {}",
                self.gate_dropout, self.gate_hidden
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Config(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        // Before any allocation: weights, gradients and optimizer state (3 copies) must fit.
        kernels::memory::check_fits(
            &format!(
                "the model (vocab {}, embedding {}, hidden {:?}, gate width {}) with its gradients",
                self.vocab,
                self.embedding_width(),
                (0..self.layers)
                    .map(|l| self.hidden_of(l))
                    .collect::<Vec<_>>(),
                self.gate_hidden
            ),
            3 * 4 * self.param_bound(),
        )
        .map_err(ModelError::Config)
    }

    /// An upper bound of the parameter count, in u128 so that absurd sizes cannot overflow.
    fn param_bound(&self) -> u128 {
        let (v, e) = (self.vocab as u128, self.embedding_width() as u128);
        let m = self.gate_hidden as u128;
        let mut n = v * e + v * self.top_hidden() as u128 + v;
        for l in 0..self.layers {
            let (i, h) = (self.input_of(l) as u128, self.hidden_of(l) as u128);
            let w = h.max(m);
            n += 4 * w * (i + h + m + 2) + 4 * h * m;
        }
        n
    }
}

/// Indices of the model's tensors in its layout.
#[derive(Clone, Debug)]
pub(crate) struct TensorIds {
    encoder: usize,
    /// Per layer, contiguous in the layout: LSTM weight_ih, weight_hh, bias_ih, bias_hh; or
    /// H-LSTM weight_ih1, weight_hh1, bias1, weight2, bias2.
    layers: Vec<Vec<usize>>,
    decoder_w: usize,
    decoder_b: usize,
}

/// A language model: configuration, layout and the flat parameter buffer.
#[derive(Clone, Debug)]
pub struct LanguageModel<F> {
    pub config: LmConfig,
    pub layout: ParamLayout,
    pub params: Vec<F>,
    ids: TensorIds,
}

/// The recurrent state carried from one batch to the next: per layer h and c, (B, H) each.
#[derive(Clone, Debug, PartialEq)]
pub struct LmState<F> {
    pub batch: usize,
    pub h: Vec<Vec<F>>,
    pub c: Vec<Vec<F>>,
}

impl<F: Real> LmState<F> {
    pub fn zeros(config: &LmConfig, batch: usize) -> Self {
        let z: Vec<Vec<F>> = (0..config.layers)
            .map(|l| vec![F::ZERO; batch * config.hidden_of(l)])
            .collect();
        Self {
            batch,
            h: z.clone(),
            c: z,
        }
    }

    pub fn reset(&mut self) {
        self.h
            .iter_mut()
            .chain(self.c.iter_mut())
            .for_each(|v| v.fill(F::ZERO));
    }
}

/// The forward tape of one layer, by cell kind.
#[derive(Clone, Debug)]
enum LayerTape<F> {
    Lstm(LstmTape<F>),
    Hlstm(HlstmTape<F>),
}

/// Buffers for one (T, B): activations, tapes and activation gradients, reused across batches.
#[derive(Clone, Debug)]
pub struct LmWorkspace<F> {
    pub t: usize,
    pub b: usize,
    emb: Vec<F>,
    /// Input of layer l after dropout (l = 0..L), and the decoder input (l = L): (T, B, width).
    xs: Vec<Vec<F>>,
    /// Dropout masks of the same shapes (empty when dropout is off).
    masks: Vec<Vec<F>>,
    tapes: Vec<LayerTape<F>>,
    /// Dropout masks of the H-LSTM gates' hidden layers: (T, B, 4M) per layer.
    gate_masks: Vec<Vec<F>>,
    /// Logits, then their gradient after a training forward: (T, B, V).
    pub logits: Vec<F>,
    /// Cross-entropy per token: (T, B).
    pub row_loss: Vec<f64>,
    /// The logits' gradient transposed, (V, T, B), written by the fused softmax pass for the
    /// decoder's weight gradient; empty until the first training forward.
    logits_t: Vec<F>,
    /// Decoder bias gradient of the last training forward: (V).
    dbias: Vec<F>,
    dcur: Vec<F>,
    dprev: Vec<F>,
    /// Whether the last forward applied dropout (backward must then apply the masks).
    dropout_active: bool,
}

impl<F: Real> LanguageModel<F> {
    /// A model with all parameters zero; see [`LanguageModel::init_uniform`].
    pub fn new(config: LmConfig) -> Result<Self, ModelError> {
        config.validate()?;
        let (layout, ids) = Self::layout_of(&config);
        let params = vec![F::ZERO; layout.total()];
        Ok(Self {
            config,
            layout,
            params,
            ids,
        })
    }

    /// The tensors of a model of `config` (names, shapes, places), without its parameters:
    /// what a checkpoint must hold, checked before allocating (see `from_file`).
    pub(crate) fn layout_of(config: &LmConfig) -> (ParamLayout, TensorIds) {
        let (v, e) = (config.vocab, config.embedding_width());
        let mut layout = ParamLayout::new();
        let encoder = layout.push("encoder.weight", &[v, e]);
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let (input, h) = (config.input_of(l), config.hidden_of(l));
            if config.gate_hidden > 0 {
                let specs = hlstm_param_specs(l, input, h, config.gate_hidden);
                layers.push(
                    specs
                        .iter()
                        .map(|(n, shape)| layout.push(&format!("rnn.{n}"), shape))
                        .collect(),
                );
            } else {
                layers.push(vec![
                    layout.push(&format!("rnn.weight_ih_l{l}"), &[4 * h, input]),
                    layout.push(&format!("rnn.weight_hh_l{l}"), &[4 * h, h]),
                    layout.push(&format!("rnn.bias_ih_l{l}"), &[4 * h]),
                    layout.push(&format!("rnn.bias_hh_l{l}"), &[4 * h]),
                ]);
            }
        }
        let decoder_w = layout.push("decoder.weight", &[v, config.top_hidden()]);
        let decoder_b = layout.push("decoder.bias", &[v]);
        let ids = TensorIds {
            encoder,
            layers,
            decoder_w,
            decoder_b,
        };
        (layout, ids)
    }

    /// Every parameter ~ U(-scale, scale) (Zaremba's initialisation), from `seed`.
    pub fn init_uniform(&mut self, scale: f64, seed: u64) {
        let rng = CounterRng::new(seed);
        for (i, p) in self.params.iter_mut().enumerate() {
            *p = F::from_f64((rng.uniform_f64(0, i as u64) * 2.0 - 1.0) * scale);
        }
    }

    /// A parameter tensor by its state_dict name.
    pub fn named(&self, name: &str) -> Option<&[F]> {
        self.layout.find(name).map(|t| &self.params[t.range()])
    }

    /// A parameter tensor by its state_dict name, mutably.
    pub fn named_mut(&mut self, name: &str) -> Option<&mut [F]> {
        let r = self.layout.find(name)?.range();
        Some(&mut self.params[r])
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.layout.total()
    }

    /// Where [`Self::backward`] over a batch of `tokens` can write non-zero gradients: every
    /// tensor but the embedding, whose gradient has only the rows of the tokens. The trainer
    /// zeroes, measures and (plain SGD) applies the gradient on this support only.
    pub fn gradient_support(&self, tokens: &[u32]) -> Support {
        let total = self.layout.total();
        let enc = self.layout.range(self.ids.encoder);
        let e = self.config.embedding_width();
        let rows = tokens.iter().map(|&t| {
            let start = enc.start + t as usize * e;
            start..(start + e).min(enc.end)
        });
        Support::from_ranges(
            total,
            [0..enc.start, enc.end..total].into_iter().chain(rows),
        )
    }

    /// Parameters of the embedding and the decoder (reported separately: they dominate).
    pub fn num_embedding_params(&self) -> usize {
        [self.ids.encoder, self.ids.decoder_w, self.ids.decoder_b]
            .iter()
            .map(|&i| self.layout.get(i).len())
            .sum()
    }

    pub fn layer_shape(&self, l: usize, t: usize, b: usize) -> LstmShape {
        LstmShape {
            t,
            b,
            i: self.config.input_of(l),
            h: self.config.hidden_of(l),
        }
    }

    fn tensor(&self, id: usize) -> &[F] {
        &self.params[self.layout.range(id)]
    }

    fn layer_weights(&self, l: usize) -> LstmWeights<'_, F> {
        let ids = &self.ids.layers[l];
        LstmWeights {
            w_ih: self.tensor(ids[0]),
            w_hh: self.tensor(ids[1]),
            b_ih: self.tensor(ids[2]),
            b_hh: self.tensor(ids[3]),
        }
    }

    fn hlstm_weights(&self, l: usize) -> HlstmWeights<'_, F> {
        let ids = &self.ids.layers[l];
        HlstmWeights {
            w_ih1: self.tensor(ids[0]),
            w_hh1: self.tensor(ids[1]),
            b1: self.tensor(ids[2]),
            w2: self.tensor(ids[3]),
            b2: self.tensor(ids[4]),
        }
    }

    /// Shape of H-LSTM layer `l`.
    pub fn hlstm_shape(&self, l: usize, t: usize, b: usize) -> HlstmShape {
        let s = self.layer_shape(l, t, b);
        HlstmShape {
            t,
            b,
            i: s.i,
            h: s.h,
            m: self.config.gate_hidden,
        }
    }

    /// Allocates the buffers for sequences of `t` steps and batch `b`.
    pub fn workspace(&self, t: usize, b: usize) -> LmWorkspace<F> {
        let (e, v, w) = (
            self.config.embedding_width(),
            self.config.vocab,
            self.config.max_width(),
        );
        let tb = t * b;
        // Input widths of layers 0..L, then the top layer's output (the decoder input).
        let layers = self.config.layers;
        let widths: Vec<usize> = (0..=layers)
            .map(|l| {
                if l < layers {
                    self.config.input_of(l)
                } else {
                    self.config.top_hidden()
                }
            })
            .collect();
        LmWorkspace {
            t,
            b,
            emb: vec![F::ZERO; tb * e],
            xs: widths.iter().map(|w| vec![F::ZERO; tb * w]).collect(),
            masks: widths.iter().map(|w| vec![F::ZERO; tb * w]).collect(),
            tapes: (0..self.config.layers)
                .map(|l| {
                    if self.config.gate_hidden > 0 {
                        LayerTape::Hlstm(
                            HlstmTape::new(self.hlstm_shape(l, t, b)).expect("validated config"),
                        )
                    } else {
                        LayerTape::Lstm(LstmTape::new(self.layer_shape(l, t, b)))
                    }
                })
                .collect(),
            gate_masks: (0..self.config.layers)
                .map(|_| vec![F::ZERO; tb * 4 * self.config.gate_hidden])
                .collect(),
            logits: vec![F::ZERO; tb * v],
            row_loss: vec![0.0; tb],
            dbias: vec![F::ZERO; v],
            logits_t: Vec::new(),
            dcur: vec![F::ZERO; tb * w],
            dprev: vec![F::ZERO; tb * w],
            dropout_active: false,
        }
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
        let (t, b) = (ws.t, ws.b);
        let tb = t * b;
        assert_eq!(tokens.len(), tb, "forward: tokens are not (T, B)");
        assert_eq!(targets.len(), tb, "forward: targets are not (T, B)");
        assert_eq!(
            state.batch, b,
            "forward: state batch differs from workspace batch"
        );
        let (e, h, v) = (
            self.config.embedding_width(),
            self.config.top_hidden(),
            self.config.vocab,
        );
        let gate_dropout = dropout.map(|d| DropoutCtx {
            p: self.config.gate_dropout,
            ..d
        });
        let dropout = dropout
            .filter(|_| self.config.dropout > 0.0)
            .map(|d| DropoutCtx {
                p: self.config.dropout,
                ..d
            });
        ws.dropout_active = dropout.is_some();

        embedding_forward(self.tensor(self.ids.encoder), e, tokens, &mut ws.emb);
        apply_dropout(
            dropout.as_ref(),
            0,
            &ws.emb,
            &mut ws.masks[0],
            &mut ws.xs[0],
        );
        for l in 0..self.config.layers {
            let s = self.layer_shape(l, t, b);
            let (h_t, c_t, out) = match &mut ws.tapes[l] {
                LayerTape::Lstm(tape) => {
                    lstm_forward(
                        s,
                        self.layer_weights(l),
                        &ws.xs[l],
                        &state.h[l],
                        &state.c[l],
                        tape,
                    );
                    let (h_t, c_t) = tape.final_state(s);
                    (h_t, c_t, tape.output(s))
                }
                LayerTape::Hlstm(tape) => {
                    // Gate dropout: its own sites (100 + l), only when training with dropout.
                    let mask = match (&gate_dropout, self.config.gate_dropout > 0.0) {
                        (Some(ctx), true) => {
                            dropout_mask(ctx, 100 + l as u64, &mut ws.gate_masks[l]);
                            Some(&ws.gate_masks[l][..])
                        }
                        _ => None,
                    };
                    hlstm_forward(
                        self.hlstm_shape(l, t, b),
                        self.hlstm_weights(l),
                        &ws.xs[l],
                        mask,
                        &state.h[l],
                        &state.c[l],
                        tape,
                    );
                    let (h_t, c_t) = tape.final_state();
                    (h_t, c_t, tape.output())
                }
            };
            state.h[l].copy_from_slice(h_t);
            state.c[l].copy_from_slice(c_t);
            apply_dropout(
                dropout.as_ref(),
                (l + 1) as u64,
                out,
                &mut ws.masks[l + 1],
                &mut ws.xs[l + 1],
            );
        }
        // Decoder: logits = x W^T, with the bias added inside the fused softmax pass.
        matmul(
            tb,
            v,
            h,
            F::ONE,
            &ws.xs[self.config.layers],
            Trans::N,
            self.tensor(self.ids.decoder_w),
            Trans::T,
            F::ZERO,
            &mut ws.logits,
        );
        let bias = Some(self.tensor(self.ids.decoder_b));
        let grad = match grad_scale {
            Some(scale) => {
                ws.dbias.fill(F::ZERO);
                // Allocated on the first training forward only (evaluation never needs it).
                ws.logits_t.resize(tb * v, F::ZERO);
                Some(XentGrad {
                    scale,
                    dbias: Some(&mut ws.dbias[..]),
                    transposed: Some(&mut ws.logits_t[..]),
                })
            }
            None => None,
        };
        softmax_xent_biased(&mut ws.logits, v, targets, bias, grad, &mut ws.row_loss);
        // Summed in order so the result is deterministic.
        ws.row_loss.iter().sum()
    }

    /// Back-propagates the gradient left in `ws.logits` by a training forward; accumulates
    /// into `grads` (same layout as the parameters).
    pub fn backward(&self, ws: &mut LmWorkspace<F>, tokens: &[u32], grads: &mut [F]) {
        assert_eq!(
            grads.len(),
            self.layout.total(),
            "backward: grads do not match the layout"
        );
        let (t, b) = (ws.t, ws.b);
        let tb = t * b;
        let (e, h, v) = (
            self.config.embedding_width(),
            self.config.top_hidden(),
            self.config.vocab,
        );
        let layers = self.config.layers;
        {
            // Decoder: dW += dlogits^T x (from the transposed copy the softmax pass wrote),
            // dx = dlogits W; the bias gradient was summed by the fused softmax pass.
            let (dw, db) = split_pair(grads, &self.layout, self.ids.decoder_w, self.ids.decoder_b);
            matmul(
                v,
                h,
                tb,
                F::ONE,
                &ws.logits_t,
                Trans::N,
                &ws.xs[layers],
                Trans::N,
                F::ONE,
                dw,
            );
            db.iter_mut().zip(&ws.dbias).for_each(|(d, &g)| *d += g);
            matmul(
                tb,
                h,
                v,
                F::ONE,
                &ws.logits,
                Trans::N,
                self.tensor(self.ids.decoder_w),
                Trans::N,
                F::ZERO,
                &mut ws.dcur[..tb * h],
            );
        }
        for l in (0..layers).rev() {
            let s = self.layer_shape(l, t, b);
            let h = s.h;
            if ws.dropout_active {
                dropout_backward(&ws.masks[l + 1], &mut ws.dcur[..tb * h]);
            }
            let ids = &self.ids.layers[l];
            let span = self.layout.get(ids[0]).offset
                ..self.layout.range(*ids.last().expect("layer tensors")).end;
            // The layer's tensors are contiguous: split the span into them, in order.
            let mut parts: Vec<&mut [F]> = Vec::with_capacity(ids.len());
            let mut rest = &mut grads[span];
            for &id in ids {
                let (head, tail) =
                    std::mem::take(&mut rest).split_at_mut(self.layout.get(id).len());
                parts.push(head);
                rest = tail;
            }
            let dx = Some(&mut ws.dprev[..tb * s.i]);
            let dh = &ws.dcur[..tb * h];
            match (&mut ws.tapes[l], parts.as_mut_slice()) {
                (LayerTape::Lstm(tape), [dw_ih, dw_hh, db_ih, db_hh]) => lstm_backward(
                    s,
                    self.layer_weights(l),
                    &ws.xs[l],
                    dh,
                    tape,
                    LstmGrads {
                        dw_ih,
                        dw_hh,
                        db_ih,
                        db_hh,
                    },
                    dx,
                ),
                (LayerTape::Hlstm(tape), [dw_ih1, dw_hh1, db1, dw2, db2]) => hlstm_backward(
                    self.hlstm_shape(l, t, b),
                    self.hlstm_weights(l),
                    &ws.xs[l],
                    dh,
                    tape,
                    HlstmGrads {
                        dw_ih1,
                        dw_hh1,
                        db1,
                        dw2,
                        db2,
                    },
                    dx,
                ),
                _ => unreachable!("layer tensors match the layer kind"),
            }
            std::mem::swap(&mut ws.dcur, &mut ws.dprev);
        }
        if ws.dropout_active {
            dropout_backward(&ws.masks[0], &mut ws.dcur[..tb * e]);
        }
        let de = &mut grads[self.layout.range(self.ids.encoder)];
        embedding_backward(&ws.dcur[..tb * e], e, tokens, de);
    }
}

fn apply_dropout<F: Real>(
    ctx: Option<&DropoutCtx>,
    site: u64,
    x: &[F],
    mask: &mut [F],
    out: &mut [F],
) {
    match ctx {
        Some(ctx) => dropout_forward(ctx, site, x, mask, out),
        None => out.copy_from_slice(x),
    }
}

/// Two disjoint tensors of a flat buffer, mutably (the first must come first in the layout).
fn split_pair<'a, F>(
    buf: &'a mut [F],
    layout: &ParamLayout,
    first: usize,
    second: usize,
) -> (&'a mut [F], &'a mut [F]) {
    let (r1, r2) = (layout.range(first), layout.range(second));
    assert!(r1.end <= r2.start, "split_pair: tensors out of order");
    let (lo, hi) = buf.split_at_mut(r2.start);
    (&mut lo[r1], &mut hi[..r2.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernels::rng::CounterRng;

    #[test]
    fn backward_writes_nothing_outside_the_gradient_support() {
        for config in [
            LmConfig::lstm(11, 5, 2),
            LmConfig {
                dropout: 0.3,
                ..LmConfig::lstm(11, 5, 1)
            },
            // (No input dropout here: with 3 embedding dims a token seen once can lose all of
            // them, and its row then rightly gets no gradient.)
            LmConfig {
                embedding: 3,
                gate_hidden: 3,
                gate_dropout: 0.25,
                ..LmConfig::lstm(11, 4, 2)
            },
        ] {
            let mut model = LanguageModel::<f32>::new(config.clone()).expect("valid config");
            model.init_uniform(0.5, 3);
            let (t, b) = (3, 2);
            let tokens = [1u32, 4, 4, 9, 1, 0];
            let targets = [4u32, 4, 9, 1, 0, 2];
            let mut ws = model.workspace(t, b);
            let mut state = LmState::zeros(&config, b);
            let ctx = DropoutCtx {
                rng: CounterRng::new(5),
                p: config.dropout,
                step: 1,
            };
            model.forward(&mut ws, &tokens, &targets, &mut state, Some(ctx), Some(1.0));
            let mut grads = vec![0.0f32; model.num_params()];
            model.backward(&mut ws, &tokens, &mut grads);
            let support = model.gradient_support(&tokens);
            let enc = model.layout.range(model.ids.encoder);
            let e = config.embedding_width();
            // Everything but the 7 embedding rows of tokens 2, 3, 5, 6, 7, 8, 10.
            assert_eq!(support.count(), model.num_params() - 7 * e);
            let inside = |i: usize| support.ranges().iter().any(|r| r.contains(&i));
            for (i, &g) in grads.iter().enumerate() {
                if !inside(i) {
                    assert_eq!(g, 0.0, "gradient {i} outside the support");
                    assert!(enc.contains(&i));
                }
            }
            // The rows of the batch's tokens do get gradient.
            for &tok in &tokens {
                let row = &grads[enc.start + tok as usize * e..][..e];
                assert!(row.iter().any(|&g| g != 0.0), "row {tok}");
            }
        }
    }
}
