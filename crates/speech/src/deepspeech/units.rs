//! DeepSpeech2's side of the compression seam ([`compress::UnitStructure`]): which tensors take
//! connection masks (the recurrent and output matrices), and what each hidden unit of a
//! bidirectional layer touches.
//!
//! Unit j of recurrent layer l (width H, the directions summed, so both directions' unit j are
//! one unit) owns row g·H + j (g = i, f, g, o) of the four gate matrices (`weight_ih_l0`,
//! `weight_hh_l0` and their `_reverse`), reads column j of both recurrent matrices, and is read
//! by feature j of the next BatchNorm (the next layer's, or the output's) and column j of the
//! matrices after it. Zero gate rows make the unit output exactly zero (c ≡ 0, h ≡ 0); zeroing
//! the next BatchNorm's weight and bias at j turns that zero into a zero feature downstream (a
//! BatchNorm maps a constant feature to its bias), so silencing changes nothing a removal would
//! not.

use super::{DeepSpeech, Indices};
use compress::UnitStructure;
use model::{ModelError, ParamLayout};
use std::ops::Range;

/// The unit structure of one DeepSpeech model shape.
pub struct DeepSpeechUnits {
    hidden: usize,
    idx: Indices,
    layout: ParamLayout,
}

impl DeepSpeech {
    /// This model's unit structure, for the compression hook.
    pub fn unit_structure(&self) -> DeepSpeechUnits {
        DeepSpeechUnits {
            hidden: self.config.hidden,
            idx: self.idx.clone(),
            layout: self.layout.clone(),
        }
    }
}

/// What unit j of one layer touches, as tensor ranges.
struct Touched {
    gate_rows: Vec<Range<usize>>,
    recurrent: [Range<usize>; 2],
    consumer_norm: [Range<usize>; 2],
    consumers: Vec<Range<usize>>,
}

impl DeepSpeechUnits {
    fn touched(&self, layout: &ParamLayout, l: usize) -> Result<Touched, ModelError> {
        if layout != &self.layout {
            return Err(ModelError::Config(
                "the parameter layout is not this model's".into(),
            ));
        }
        let rnns = &self.idx.rnns;
        let r = rnns.get(l).ok_or_else(|| {
            ModelError::Config(format!(
                "layer {l} does not exist (the model has {})",
                rnns.len()
            ))
        })?;
        let (norm, consumers) = match rnns.get(l + 1) {
            Some(next) => (
                next.norm
                    .expect("every layer but the first has a BatchNorm"),
                next.dirs.iter().map(|d| layout.range(d.input)).collect(),
            ),
            None => (self.idx.norms.len() - 1, vec![layout.range(self.idx.fc)]),
        };
        let bn = self.idx.norms[norm];
        Ok(Touched {
            gate_rows: r
                .dirs
                .iter()
                .flat_map(|d| d.gate_row_tensors())
                .map(|t| layout.range(t))
                .collect(),
            recurrent: r.dirs.map(|d| layout.range(d.recurrent)),
            consumer_norm: [bn.weight, bn.bias].map(|t| layout.range(t)),
            consumers,
        })
    }

    fn check_units(&self, l: usize, units: &[usize]) -> Result<(), ModelError> {
        match units.iter().find(|&&j| j >= self.hidden) {
            Some(bad) => Err(ModelError::Config(format!(
                "unit {bad} of layer {l} does not exist (width {})",
                self.hidden
            ))),
            None => Ok(()),
        }
    }
}

impl UnitStructure for DeepSpeechUnits {
    fn maskable(&self, name: &str, shape: &[usize], _with_embeddings: bool) -> bool {
        shape.len() >= 2 && (name.contains(".rnn.weight") || name.starts_with("fc."))
    }

    fn unit_layers(&self) -> usize {
        self.idx.rnns.len()
    }

    fn hidden_of(&self, _l: usize) -> usize {
        self.hidden
    }

    fn unit_importance(
        &self,
        layout: &ParamLayout,
        params: &[f32],
        l: usize,
    ) -> Result<Vec<f64>, ModelError> {
        let t = self.touched(layout, l)?;
        let h = self.hidden;
        let mut sq = vec![0.0f64; h];
        for r in t.gate_rows {
            let w = &params[r];
            let width = w.len() / (4 * h);
            for (row, chunk) in w.chunks_exact(width).enumerate() {
                sq[row % h] += chunk.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
            }
        }
        for r in t.recurrent.into_iter().chain(t.consumers) {
            for row in params[r].chunks_exact(h) {
                for (j, &v) in row.iter().enumerate() {
                    sq[j] += v as f64 * v as f64;
                }
            }
        }
        Ok(sq.into_iter().map(f64::sqrt).collect())
    }

    fn silence_units(
        &self,
        layout: &ParamLayout,
        buf: &mut [f32],
        l: usize,
        units: &[usize],
    ) -> Result<(), ModelError> {
        let t = self.touched(layout, l)?;
        self.check_units(l, units)?;
        let h = self.hidden;
        for r in t.gate_rows {
            let w = &mut buf[r];
            let width = w.len() / (4 * h);
            for gate in 0..4 {
                for &j in units {
                    let row = gate * h + j;
                    w[row * width..(row + 1) * width].fill(0.0);
                }
            }
        }
        for r in t.consumer_norm {
            let v = &mut buf[r];
            for &j in units {
                v[j] = 0.0;
            }
        }
        Ok(())
    }
}
