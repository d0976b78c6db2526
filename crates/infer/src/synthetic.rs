//! Random weights for a configuration (benchmarks and profiling): PyTorch's initialisation
//! U(-1/√H, 1/√H), with a chosen fraction of each weight matrix zeroed, either at random
//! positions or in whole blocks (the structure block pruning leaves).

use crate::weights::{CellWeights, LayerWeights, ModelWeights};
use crate::InferError;
use kernels::rng::CounterRng;

/// Where the zeros of a sparse synthetic matrix go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskShape {
    /// Each weight kept independently with probability = density.
    Random,
    /// Whole `rows x cols` blocks kept with probability = density.
    Blocks(usize, usize),
}

impl std::str::FromStr for MaskShape {
    type Err = String;
    /// `random` or `blocks:RxC` (e.g. `blocks:4x4`).
    fn from_str(s: &str) -> Result<MaskShape, String> {
        let bad = || format!("unknown mask `{s}`: expected random or blocks:RxC (e.g. blocks:4x4)");
        if s == "random" {
            return Ok(MaskShape::Random);
        }
        let (r, c) = s
            .strip_prefix("blocks:")
            .and_then(|b| b.split_once('x'))
            .ok_or_else(bad)?;
        let (r, c): (usize, usize) = (r.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?);
        if r == 0 || c == 0 {
            return Err(bad());
        }
        Ok(MaskShape::Blocks(r, c))
    }
}

/// A synthetic stack (and optionally embedding and decoder).
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub layers: usize,
    pub input: usize,
    pub hidden: usize,
    /// H-LSTM gate width M; 0 = LSTM.
    pub gate_width: usize,
    pub bidirectional: bool,
    /// Fraction of each weight matrix kept (1 = dense).
    pub density: f64,
    pub mask: MaskShape,
    /// Vocabulary for an embedding + decoder (0 = the stack only).
    pub vocab: usize,
    pub seed: u64,
}

impl SyntheticSpec {
    pub fn build(&self) -> Result<ModelWeights, InferError> {
        let s = self;
        if s.layers == 0 || s.input == 0 || s.hidden == 0 {
            return Err(InferError::Config(
                "layers, input and hidden must be > 0".into(),
            ));
        }
        if !(s.density > 0.0 && s.density <= 1.0) {
            return Err(InferError::Config(format!(
                "density {} is not in (0, 1]",
                s.density
            )));
        }
        // Before any allocation: every matrix of the stack and the decoder, in u128.
        let (l, i, h, m, v) = (
            s.layers as u128,
            s.input as u128,
            s.hidden as u128,
            s.gate_width as u128,
            s.vocab as u128,
        );
        let per_layer = 4 * h.max(m) * (i.max(h) + h + m + 2) + 4 * h * m;
        let dirs = if s.bidirectional { 2 } else { 1 };
        kernels::memory::check_fits(
            &format!(
                "the synthetic model (layers {}, input {}, hidden {}, gate width {}, vocab {})",
                s.layers, s.input, s.hidden, s.gate_width, s.vocab
            ),
            4 * (l * dirs * per_layer + v * (i + 2 * dirs * h + 1)),
        )
        .map_err(InferError::Config)?;
        let h = s.hidden;
        let bound = 1.0 / (h as f32).sqrt();
        let mut stream = 0u64;
        let rng = CounterRng::new(s.seed);
        let mut matrix = |rows: usize, cols: usize, sparse: bool| -> Vec<f32> {
            stream += 2;
            let mut w: Vec<f32> = (0..(rows * cols) as u64)
                .map(|i| (rng.uniform(stream, i) * 2.0 - 1.0) * bound)
                .collect();
            if sparse && s.density < 1.0 {
                match s.mask {
                    MaskShape::Random => {
                        for (i, v) in w.iter_mut().enumerate() {
                            if rng.uniform_f64(stream + 1, i as u64) >= s.density {
                                *v = 0.0;
                            }
                        }
                    }
                    MaskShape::Blocks(br, bc) => {
                        let nbc = cols.div_ceil(bc);
                        for r in 0..rows {
                            for c in 0..cols {
                                let blk = (r / br * nbc + c / bc) as u64;
                                if rng.uniform_f64(stream + 1, blk) >= s.density {
                                    w[r * cols + c] = 0.0;
                                }
                            }
                        }
                    }
                }
            }
            w
        };
        let mut layers = Vec::new();
        let mut input = s.input;
        for _ in 0..s.layers {
            let dirs = if s.bidirectional { 2 } else { 1 };
            let mut directions = Vec::new();
            for _ in 0..dirs {
                directions.push(if s.gate_width == 0 {
                    CellWeights::Lstm {
                        w_ih: matrix(4 * h, input, true),
                        w_hh: matrix(4 * h, h, true),
                        bias: matrix(4 * h, 1, false),
                    }
                } else {
                    let m = s.gate_width;
                    CellWeights::Hlstm {
                        m,
                        w_ih1: matrix(4 * m, input, true),
                        w_hh1: matrix(4 * m, h, true),
                        b1: matrix(4 * m, 1, false),
                        w2: matrix(4 * h, m, true),
                        b2: matrix(4 * h, 1, false),
                    }
                });
            }
            layers.push(LayerWeights {
                input,
                hidden: h,
                directions,
            });
            input = h * dirs;
        }
        let (embedding, decoder) = if s.vocab > 0 {
            (
                Some((s.vocab, matrix(s.vocab, s.input, false))),
                Some((matrix(s.vocab, input, false), matrix(s.vocab, 1, false))),
            )
        } else {
            (None, None)
        };
        Ok(ModelWeights {
            embedding,
            layers,
            decoder,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn density_of(w: &ModelWeights) -> f64 {
        let (mut nz, mut n) = (0usize, 0usize);
        for l in &w.layers {
            for d in &l.directions {
                if let CellWeights::Lstm { w_ih, w_hh, .. } = d {
                    nz += w_ih.iter().chain(w_hh).filter(|v| **v != 0.0).count();
                    n += w_ih.len() + w_hh.len();
                }
            }
        }
        nz as f64 / n as f64
    }

    #[test]
    fn density_and_block_structure_are_as_asked() {
        let mut spec = SyntheticSpec {
            layers: 2,
            input: 64,
            hidden: 64,
            gate_width: 0,
            bidirectional: false,
            density: 0.1,
            mask: MaskShape::Random,
            vocab: 0,
            seed: 1,
        };
        let d = density_of(&spec.build().unwrap());
        assert!((d - 0.1).abs() < 0.01, "{d}");
        spec.mask = "blocks:4x4".parse().unwrap();
        let w = spec.build().unwrap();
        assert!((density_of(&w) - 0.1).abs() < 0.02);
        // Every aligned 4x4 block is all zero or all non-zero.
        if let CellWeights::Lstm { w_hh, .. } = &w.layers[0].directions[0] {
            for br in 0..64 {
                for bc in 0..16 {
                    let nz = (0..16)
                        .filter(|i| w_hh[(br * 4 + i / 4) * 64 + bc * 4 + i % 4] != 0.0)
                        .count();
                    assert!(nz == 0 || nz == 16);
                }
            }
        }
        assert!(SyntheticSpec {
            density: 0.0,
            ..spec.clone()
        }
        .build()
        .is_err());
        assert!("blocks:0x4".parse::<MaskShape>().is_err());
    }
}
