//! The deployment form of a DeepSpeech model: every BatchNorm folded (in eval mode, with its
//! running statistics) into the layer it feeds or follows, and the recurrent layers prepared as
//! `infer` stack plans, so a pruned model runs on the same dense, CSR or BSR kernels (bf16 or
//! f32, threads measured) that the latency tables time. It computes what
//! [`DeepSpeech::forward`] in [`Mode::Eval`](super::Mode) does, for utterances of one length
//! (a single utterance is the transcription case; padding would leak into the reverse
//! direction, which the training pass masks per utterance).

use super::pass::{to_frames, Batch};
use super::{BnParams, DeepSpeech, DeepSpeechConfig, DirParams, BINS};
use crate::conv::{conv2d_forward, Conv2dSpec};
use crate::features::Spectrogram;
use crate::hardtanh::Hardtanh;
use crate::labels::LABELS;
use infer::{CellWeights, InferError, LayerWeights, MatrixInfo, PlanOptions, StackPlan};
use kernels::{matmul, Trans};
use std::time::Instant;

/// A convolution with its BatchNorm folded in, followed by Hardtanh.
struct FoldedConv {
    spec: Conv2dSpec,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// The prepared model.
pub struct SpeechPlan {
    config: DeepSpeechConfig,
    conv1: FoldedConv,
    conv2: FoldedConv,
    /// One bidirectional layer each (directions concatenated by the plan, summed here).
    layers: Vec<StackPlan>,
    /// (29, H) and (29): the output BatchNorm folded into the linear layer.
    fc_weight: Vec<f32>,
    fc_bias: Vec<f32>,
    /// Seconds the last run spent in the front end, the recurrent layers and the output layer.
    stage_seconds: [f64; 3],
}

impl DeepSpeech {
    /// BatchNorm `k` in eval mode as y = scale ⊙ x + shift, its affine parameters read from the
    /// flat buffer (the layer's copies are synced only by a forward pass).
    fn norm_affine(&self, k: usize) -> (Vec<f64>, Vec<f64>) {
        let BnParams { weight, bias } = self.idx.norms[k];
        let (w, b) = (self.tensor(weight), self.tensor(bias));
        (0..w.len())
            .map(|c| self.norms[k].eval_affine(c, w[c], b[c]))
            .unzip()
    }

    /// conv `w`, `b` followed by BatchNorm `k`: weights scaled per output channel.
    fn fold_conv(&self, spec: Conv2dSpec, w: usize, b: usize, k: usize) -> FoldedConv {
        let (scale, shift) = self.norm_affine(k);
        let per_out = spec.in_c * spec.kh * spec.kw;
        let weight = self
            .tensor(w)
            .chunks_exact(per_out)
            .zip(&scale)
            .flat_map(|(row, &s)| row.iter().map(move |&v| (v as f64 * s) as f32))
            .collect();
        let bias = self
            .tensor(b)
            .iter()
            .zip(scale.iter().zip(&shift))
            .map(|(&v, (&s, &t))| (v as f64 * s + t) as f32)
            .collect();
        FoldedConv { spec, weight, bias }
    }

    /// A (rows, cols) matrix reading a BatchNorm's output, folded: columns scaled, and the
    /// shift carried through as a bias (rows) added to `bias`.
    fn fold_input(&self, matrix: &[f32], cols: usize, norm: Option<usize>) -> (Vec<f32>, Vec<f64>) {
        let rows = matrix.len() / cols;
        let Some(k) = norm else {
            return (matrix.to_vec(), vec![0.0; rows]);
        };
        let (scale, shift) = self.norm_affine(k);
        let mut folded = Vec::with_capacity(matrix.len());
        let mut bias = Vec::with_capacity(rows);
        for row in matrix.chunks_exact(cols) {
            let mut acc = 0.0;
            for ((&v, &s), &t) in row.iter().zip(&scale).zip(&shift) {
                folded.push((v as f64 * s) as f32);
                acc += v as f64 * t;
            }
            bias.push(acc);
        }
        (folded, bias)
    }

    /// One direction as `infer` cell weights, its input BatchNorm folded in.
    fn cell_weights(&self, d: DirParams, input: usize, norm: Option<usize>) -> CellWeights {
        let (w_in, shift_bias) = self.fold_input(self.tensor(d.input), input, norm);
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        match d.second {
            None => CellWeights::Lstm {
                w_ih: w_in,
                w_hh: self.tensor(d.recurrent).to_vec(),
                bias: to_f32(shift_bias),
            },
            Some([b1, w2, b2]) => CellWeights::Hlstm {
                m: self.config.gate_hidden,
                w_ih1: w_in,
                w_hh1: self.tensor(d.recurrent).to_vec(),
                b1: to_f32(
                    self.tensor(b1)
                        .iter()
                        .zip(shift_bias)
                        .map(|(&b, s)| b as f64 + s)
                        .collect(),
                ),
                w2: self.tensor(w2).to_vec(),
                b2: self.tensor(b2).to_vec(),
            },
        }
    }

    /// The recurrent layers in `infer`'s form, one bidirectional layer each.
    pub fn recurrent_weights(&self) -> Vec<LayerWeights> {
        let h = self.config.hidden;
        self.idx
            .rnns
            .iter()
            .enumerate()
            .map(|(l, r)| {
                let input = if l == 0 { self.config.rnn_input() } else { h };
                LayerWeights {
                    input,
                    hidden: h,
                    directions: r
                        .dirs
                        .iter()
                        .map(|&d| self.cell_weights(d, input, r.norm))
                        .collect(),
                }
            })
            .collect()
    }
}

impl SpeechPlan {
    /// Folds and packs `model`; `opts` choose formats, precision and threads of the recurrent
    /// layers (tuned at `opts.batch` utterances of `opts.seq` output frames).
    pub fn new(model: &DeepSpeech, opts: &PlanOptions) -> Result<SpeechPlan, InferError> {
        let idx = &model.idx;
        let conv1 = model.fold_conv(model.config.conv1(), idx.conv1_w, idx.conv1_b, 0);
        let conv2 = model.fold_conv(model.config.conv2(), idx.conv2_w, idx.conv2_b, 1);
        let mut layers = model
            .recurrent_weights()
            .iter()
            .map(|l| StackPlan::new(std::slice::from_ref(l), opts))
            .collect::<Result<Vec<_>, _>>()?;
        // One set of worker threads for all layers: a team per layer would leave the idle
        // teams spinning against the running one (docs/speech.md, "Deployment plan").
        let (first, rest) = layers.split_at_mut(1);
        for plan in rest {
            plan.share_team(&first[0])?;
        }
        let h = model.config.hidden;
        let (fc_weight, fc_bias) =
            model.fold_input(model.tensor(idx.fc), h, Some(idx.norms.len() - 1));
        Ok(SpeechPlan {
            config: model.config.clone(),
            conv1,
            conv2,
            layers,
            fc_weight,
            fc_bias: fc_bias.into_iter().map(|v| v as f32).collect(),
            stage_seconds: [0.0; 3],
        })
    }

    pub fn config(&self) -> &DeepSpeechConfig {
        &self.config
    }

    /// Every recurrent matrix: its layer, format, non-zeros and bytes.
    pub fn matrices(&self) -> Vec<MatrixInfo> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(l, p)| {
                p.matrices().into_iter().map(move |mut m| {
                    m.name = format!("rnns.{l}.{}", m.name);
                    m
                })
            })
            .collect()
    }

    /// Seconds the last [`SpeechPlan::run`] spent in the convolutional front end, the recurrent
    /// layers and the output layer: where a deployment's time goes.
    pub fn stage_seconds(&self) -> [f64; 3] {
        self.stage_seconds
    }

    /// Threads per recurrent step, per layer and direction.
    pub fn step_threads(&self) -> Vec<usize> {
        self.layers.iter().flat_map(|p| p.step_threads()).collect()
    }

    /// The logits (T, N, 29) of `specs`, which must share one length; `T` is
    /// [`DeepSpeechConfig::output_frames`] of it.
    pub fn run(&mut self, specs: &[&Spectrogram]) -> Result<Vec<f32>, InferError> {
        let n = specs.len();
        let Some(first) = specs.first() else {
            return Err(InferError::Input("no utterance to run".into()));
        };
        let t0 = first.frames;
        if let Some(s) = specs.iter().find(|s| s.frames != t0 || s.bins != BINS) {
            return Err(InferError::Input(format!(
                "utterances of {} frames x {} bins among {t0} x {BINS}: the plan runs \
                 utterances of one length (run them one at a time)",
                s.frames, s.bins
            )));
        }
        let t = self.config.output_frames(t0);
        if t == 0 {
            return Err(InferError::Input(format!(
                "{t0} frames are too few for the model's convolutions"
            )));
        }
        let start = Instant::now();
        let image = Batch::new(specs, vec![Vec::new(); n]).features;
        let (a1, h1, w1) = conv_layer(&self.conv1, &image, n, BINS, t0);
        let (a2, h2, w2) = conv_layer(&self.conv2, &a1, n, h1, w1);
        debug_assert_eq!(w2, t);
        let width = self.config.conv_channels * h2;
        let mut x = vec![0.0; t * n * width];
        to_frames(&a2, n, width, t, &mut x);
        let front = Instant::now();
        let h = self.config.hidden;
        for plan in &mut self.layers {
            let y = plan.run(&x, t, n, None)?;
            // Directions concatenated per row: [forward | backward] → their sum.
            x = y
                .chunks_exact(2 * h)
                .flat_map(|row| row[..h].iter().zip(&row[h..]).map(|(a, b)| a + b))
                .collect();
        }
        // The front end of the next run is rayon's: the team's workers must not spin through it.
        if let Some(plan) = self.layers.first() {
            plan.rest();
        }
        let recurrent = Instant::now();
        let mut logits: Vec<f32> = (0..t * n)
            .flat_map(|_| self.fc_bias.iter().copied())
            .collect();
        matmul(
            t * n,
            LABELS,
            h,
            1.0,
            &x,
            Trans::N,
            &self.fc_weight,
            Trans::T,
            1.0,
            &mut logits,
        );
        let end = Instant::now();
        self.stage_seconds = [
            (front - start).as_secs_f64(),
            (recurrent - front).as_secs_f64(),
            (end - recurrent).as_secs_f64(),
        ];
        Ok(logits)
    }
}

/// A folded convolution and Hardtanh over (N, C, H, W): the output and its H and W.
fn conv_layer(c: &FoldedConv, x: &[f32], n: usize, h: usize, w: usize) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = (
        c.spec.out_h(h).expect("the plan checked the input rows"),
        c.spec.out_w(w).expect("the plan checked the input length"),
    );
    let mut z = vec![0.0; n * c.spec.out_c * oh * ow];
    conv2d_forward(&c.spec, x, n, h, w, &c.weight, Some(&c.bias), &mut z);
    let mut a = vec![0.0; z.len()];
    Hardtanh::deepspeech().forward(&z, &mut a);
    (a, oh, ow)
}
