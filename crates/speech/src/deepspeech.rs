//! The DeepSpeech2 acoustic model (baselines.md, AN4): two Conv2d + BatchNorm + Hardtanh(0, 20)
//! layers over the spectrogram, bidirectional LSTM layers with the directions summed and a
//! sequence-wise BatchNorm on the input of every layer but the first, then BatchNorm + Linear to
//! the 29 labels. Parameters live in one flat buffer with deepspeech.pytorch's `state_dict` names
//! (so one optimizer loop and one checkpoint format serve it); the BatchNorm running statistics
//! are buffers beside it. The passes are in `deepspeech/pass.rs`.

mod compact;
mod deploy;
mod pass;
mod units;

pub use deploy::SpeechPlan;
pub use pass::{ctc_batch, Activations, Batch, Mode};
pub use units::DeepSpeechUnits;

use crate::batchnorm::BatchNorm;
use crate::conv::Conv2dSpec;
use crate::labels::LABELS;
use kernels::rng::CounterRng;
use model::layout::ParamLayout;
use serde::{Deserialize, Serialize};

/// Spectrogram bins at 16 kHz (20 ms window).
pub const BINS: usize = 161;

/// The model's shape: what a checkpoint must agree on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepSpeechConfig {
    /// Hidden width of every recurrent layer (both directions; they are summed).
    pub hidden: usize,
    /// Bidirectional recurrent layers.
    pub layers: usize,
    /// Output channels of both convolutions (32 in DeepSpeech2).
    #[serde(default = "default_channels")]
    pub conv_channels: usize,
    /// 0: LSTM cells; M > 0: H-LSTM cells whose gates are MLPs with a hidden layer of width M.
    #[serde(default)]
    pub gate_hidden: usize,
}

fn default_channels() -> usize {
    32
}

impl DeepSpeechConfig {
    pub fn conv1(&self) -> Conv2dSpec {
        Conv2dSpec {
            out_c: self.conv_channels,
            ..Conv2dSpec::deepspeech_conv1()
        }
    }

    pub fn conv2(&self) -> Conv2dSpec {
        Conv2dSpec {
            in_c: self.conv_channels,
            out_c: self.conv_channels,
            ..Conv2dSpec::deepspeech_conv2()
        }
    }

    /// Frequency rows after both convolutions (21 for 161 bins).
    pub fn conv_rows(&self) -> usize {
        let h1 = self.conv1().out_h(BINS).expect("161 bins cover conv1");
        self.conv2().out_h(h1).expect("conv1 rows cover conv2")
    }

    /// Features per frame entering the first recurrent layer (32 x 21 = 672).
    pub fn rnn_input(&self) -> usize {
        self.conv_channels * self.conv_rows()
    }

    /// Output frames for `frames` spectrogram frames (0 if too short for the kernels).
    pub fn output_frames(&self, frames: usize) -> usize {
        self.conv1()
            .out_w(frames)
            .and_then(|w1| self.conv2().out_w(w1))
            .unwrap_or(0)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.hidden == 0 || self.layers == 0 || self.conv_channels == 0 {
            return Err(format!(
                "model: hidden ({}), layers ({}) and conv_channels ({}) must be positive",
                self.hidden, self.layers, self.conv_channels
            ));
        }
        Ok(())
    }
}

/// Indices into the layout of one BatchNorm's affine parameters.
#[derive(Clone, Copy, Debug)]
struct BnParams {
    weight: usize,
    bias: usize,
}

/// Indices of one direction's tensors, by role.
#[derive(Clone, Copy, Debug)]
struct DirParams {
    /// The matrix reading the layer input: `weight_ih` (4H, I) or the H-LSTM's `weight_ih1`
    /// (4M, I).
    input: usize,
    /// The matrix reading h_{t-1}: `weight_hh` (4H, H) or `weight_hh1` (4M, H).
    recurrent: usize,
    /// H-LSTM only: `bias1` (4M), `weight2` (4, H, M), `bias2` (4H).
    second: Option<[usize; 3]>,
}

impl DirParams {
    /// The tensors with one row per gate pre-activation (4H rows, gate-major): a unit owns row
    /// g·H + j of each. LSTM: both matrices; H-LSTM: the gates' second layer and its bias (the
    /// first layers are shared by all units).
    fn gate_row_tensors(&self) -> Vec<usize> {
        match self.second {
            None => vec![self.input, self.recurrent],
            Some([_, w2, b2]) => vec![w2, b2],
        }
    }
}

/// Indices of one recurrent layer's tensors.
#[derive(Clone, Copy, Debug)]
struct RnnParams {
    /// The sequence-wise BatchNorm on the layer's input (all layers but the first).
    norm: Option<usize>,
    /// Forward and backward direction.
    dirs: [DirParams; 2],
}

/// Where every tensor is.
#[derive(Clone, Debug)]
struct Indices {
    conv1_w: usize,
    conv1_b: usize,
    conv2_w: usize,
    conv2_b: usize,
    /// BatchNorms in order: conv1, conv2, the recurrent layers' (1..L), the output's.
    norms: Vec<BnParams>,
    rnns: Vec<RnnParams>,
    fc: usize,
}

/// The model: configuration, flat parameters and BatchNorm running statistics.
#[derive(Clone, Debug)]
pub struct DeepSpeech {
    pub config: DeepSpeechConfig,
    pub layout: ParamLayout,
    pub params: Vec<f32>,
    /// Running mean/variance per BatchNorm, in [`DeepSpeech::norm_names`] order (their affine
    /// weight and bias are copied in from `params` before each use).
    pub norms: Vec<BatchNorm<f32>>,
    idx: Indices,
}

impl DeepSpeech {
    /// A model with PyTorch's default initialisation: U(−1/√fan_in, 1/√fan_in) for convolutions,
    /// the linear layer and LSTM weights (fan_in = H for the LSTM), BatchNorm weight 1, bias 0.
    pub fn new(config: DeepSpeechConfig, seed: u64) -> Result<Self, String> {
        config.validate()?;
        let (c, h) = (config.conv_channels, config.hidden);
        let (c1, c2) = (config.conv1(), config.conv2());
        let mut layout = ParamLayout::new();
        let mut norms_idx = Vec::new();
        let bn = |layout: &mut ParamLayout, prefix: &str, n: usize| BnParams {
            weight: layout.push(&format!("{prefix}.weight"), &[n]),
            bias: layout.push(&format!("{prefix}.bias"), &[n]),
        };
        let conv1_w = layout.push("conv.seq_module.0.weight", &[c, 1, c1.kh, c1.kw]);
        let conv1_b = layout.push("conv.seq_module.0.bias", &[c]);
        norms_idx.push(bn(&mut layout, "conv.seq_module.1", c));
        let conv2_w = layout.push("conv.seq_module.3.weight", &[c, c, c2.kh, c2.kw]);
        let conv2_b = layout.push("conv.seq_module.3.bias", &[c]);
        norms_idx.push(bn(&mut layout, "conv.seq_module.4", c));
        let mut rnns = Vec::new();
        for l in 0..config.layers {
            let input = if l == 0 { config.rnn_input() } else { h };
            let norm = (l > 0).then(|| {
                norms_idx.push(bn(
                    &mut layout,
                    &format!("rnns.{l}.batch_norm.module"),
                    input,
                ));
                norms_idx.len() - 1
            });
            let p = format!("rnns.{l}.rnn");
            let m = config.gate_hidden;
            let mut dir = |suffix: &str| {
                let mut t = |name: &str, shape: &[usize]| {
                    layout.push(&format!("{p}.{name}_l0{suffix}"), shape)
                };
                if m == 0 {
                    DirParams {
                        input: t("weight_ih", &[4 * h, input]),
                        recurrent: t("weight_hh", &[4 * h, h]),
                        second: None,
                    }
                } else {
                    DirParams {
                        input: t("weight_ih1", &[4 * m, input]),
                        recurrent: t("weight_hh1", &[4 * m, h]),
                        second: Some([
                            t("bias1", &[4 * m]),
                            t("weight2", &[4, h, m]),
                            t("bias2", &[4 * h]),
                        ]),
                    }
                }
            };
            let dirs = [dir(""), dir("_reverse")];
            rnns.push(RnnParams { norm, dirs });
        }
        norms_idx.push(bn(&mut layout, "fc.0.module.0", h));
        let fc = layout.push("fc.0.module.1.weight", &[LABELS, h]);
        let idx = Indices {
            conv1_w,
            conv1_b,
            conv2_w,
            conv2_b,
            norms: norms_idx,
            rnns,
            fc,
        };
        let norms = idx
            .norms
            .iter()
            .map(|p| BatchNorm::new(layout.get(p.weight).len()))
            .collect();
        let mut model = DeepSpeech {
            params: vec![0.0; layout.total()],
            config,
            layout,
            norms,
            idx,
        };
        model.init(seed);
        Ok(model)
    }

    fn init(&mut self, seed: u64) {
        let rng = CounterRng::new(seed);
        let h = self.config.hidden;
        let (c1, c2) = (self.config.conv1(), self.config.conv2());
        let mut bounds: Vec<(usize, f64)> = vec![
            (self.idx.conv1_w, (c1.kh * c1.kw) as f64),
            (self.idx.conv1_b, (c1.kh * c1.kw) as f64),
            (self.idx.conv2_w, (c2.in_c * c2.kh * c2.kw) as f64),
            (self.idx.conv2_b, (c2.in_c * c2.kh * c2.kw) as f64),
            (self.idx.fc, h as f64),
        ];
        for r in &self.idx.rnns {
            for d in r.dirs {
                match d.second {
                    // nn.LSTM's U(±1/√H).
                    None => bounds.extend([(d.input, h as f64), (d.recurrent, h as f64)]),
                    // The gate MLPs as nn.Linear layers: U(±1/√fan_in) for weights and biases.
                    Some([b1, w2, b2]) => {
                        let fan1 = (self.layout.get(d.input).shape[1] + h) as f64;
                        let m = self.config.gate_hidden as f64;
                        bounds.extend([(d.input, fan1), (d.recurrent, fan1), (b1, fan1)]);
                        bounds.extend([(w2, m), (b2, m)]);
                    }
                }
            }
        }
        for (tensor, fan_in) in bounds {
            let bound = 1.0 / fan_in.sqrt();
            for i in self.layout.range(tensor) {
                let u = rng.uniform_f64(tensor as u64, i as u64);
                self.params[i] = ((2.0 * u - 1.0) * bound) as f32;
            }
        }
        for p in &self.idx.norms {
            self.params[self.layout.range(p.weight)].fill(1.0);
            self.params[self.layout.range(p.bias)].fill(0.0);
        }
    }

    /// The `state_dict` prefix of each BatchNorm, in [`DeepSpeech::norms`] order.
    pub fn norm_names(&self) -> Vec<String> {
        self.idx
            .norms
            .iter()
            .map(|p| {
                let name = &self.layout.get(p.weight).name;
                name.trim_end_matches(".weight").to_string()
            })
            .collect()
    }

    /// Parameters of the recurrent layers only (what the paper's parameter counts compare).
    pub fn rnn_params(&self) -> usize {
        self.layout
            .tensors()
            .iter()
            .filter(|t| t.name.starts_with("rnns.") && t.name.contains(".rnn."))
            .map(|t| t.len())
            .sum()
    }

    fn tensor(&self, index: usize) -> &[f32] {
        &self.params[self.layout.range(index)]
    }

    /// Copies BatchNorm `k`'s affine parameters from the flat buffer into its layer.
    fn sync_norm(&mut self, k: usize) {
        let p = self.idx.norms[k];
        let (w, b) = (self.layout.range(p.weight), self.layout.range(p.bias));
        self.norms[k].weight.copy_from_slice(&self.params[w]);
        self.norms[k].bias.copy_from_slice(&self.params[b]);
    }
}
