//! The word-level LSTM language model (Zaremba et al. 2014 / PyTorch's word_language_model):
//! embedding → dropout → L stacked LSTM layers with dropout between them → dropout → linear
//! decoder → softmax cross-entropy. Parameter names follow PyTorch's `state_dict`.

mod pass;

use crate::backend::{HlstmAt, LstmAt};
use crate::hlstm::{hlstm_param_specs, HlstmShape};
use crate::lstm::LstmShape;
use crate::{ModelError, ParamLayout};
use kernels::rng::CounterRng;
use kernels::support::Support;
use kernels::Real;
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

pub use pass::{LmState, LmWorkspace};

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

    /// Where LSTM layer `l`'s tensors are in the parameter buffer.
    pub(crate) fn lstm_at(&self, l: usize) -> LstmAt {
        let r = |k: usize| self.layout.range(self.ids.layers[l][k]);
        LstmAt {
            w_ih: r(0),
            w_hh: r(1),
            b_ih: r(2),
            b_hh: r(3),
        }
    }

    /// Where H-LSTM layer `l`'s tensors are in the parameter buffer.
    pub(crate) fn hlstm_at(&self, l: usize) -> HlstmAt {
        let r = |k: usize| self.layout.range(self.ids.layers[l][k]);
        HlstmAt {
            w_ih1: r(0),
            w_hh1: r(1),
            b1: r(2),
            w2: r(3),
            b2: r(4),
        }
    }

    /// Where the encoder, the decoder weight and the decoder bias are.
    pub(crate) fn io_at(&self) -> [std::ops::Range<usize>; 3] {
        [self.ids.encoder, self.ids.decoder_w, self.ids.decoder_b].map(|i| self.layout.range(i))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dropout::DropoutCtx;
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
            model.backward(&mut ws, &mut grads);
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
