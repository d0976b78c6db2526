//! Removing silenced hidden units: a physically smaller DeepSpeech2 model computing what the
//! masked one computes. A unit is silent when its gate rows are zero in all four gate matrices
//! of its layer (what a `units` phase leaves, see `units.rs`); removing it drops those rows, its
//! recurrent columns, its feature in the next BatchNorm and its column in the next matrices.

use super::{DeepSpeech, DeepSpeechConfig};

impl DeepSpeech {
    /// Units of recurrent layer `l` whose gate rows are all zero (both directions): they output
    /// exactly zero and can be removed.
    pub fn silent_units(&self, l: usize) -> Vec<usize> {
        let r = self.idx.rnns[l];
        let h = self.config.hidden;
        let zero_rows = |t: usize, j: usize| {
            let w = self.tensor(t);
            let width = w.len() / (4 * h);
            (0..4).all(|g| {
                let row = g * h + j;
                w[row * width..(row + 1) * width].iter().all(|&v| v == 0.0)
            })
        };
        let tensors: Vec<usize> = r.dirs.iter().flat_map(|d| d.gate_row_tensors()).collect();
        (0..h)
            .filter(|&j| tensors.iter().all(|&t| zero_rows(t, j)))
            .collect()
    }

    /// The model without its silent units. The model has one width for every recurrent layer,
    /// so every layer must have lost the same number of units (what a `units` phase does);
    /// otherwise this is an error naming the live counts.
    pub fn compact(&self) -> Result<DeepSpeech, String> {
        let (layers, h) = (self.config.layers, self.config.hidden);
        let keep: Vec<Vec<usize>> = (0..layers)
            .map(|l| {
                let silent = self.silent_units(l);
                (0..h).filter(|j| !silent.contains(j)).collect()
            })
            .collect();
        let live: Vec<usize> = keep.iter().map(Vec::len).collect();
        let h2 = live[0];
        if live.iter().any(|&n| n != h2) || h2 == 0 {
            return Err(format!(
                "live units per layer {live:?}: a DeepSpeech model has one width for all layers \
                 (and at least one unit)"
            ));
        }
        let config = DeepSpeechConfig {
            hidden: h2,
            ..self.config.clone()
        };
        let mut out = DeepSpeech::new(config, 0)?;
        let all = |n: usize| (0..n).collect::<Vec<usize>>();
        // The front end is unchanged.
        for t in [
            self.idx.conv1_w,
            self.idx.conv1_b,
            self.idx.conv2_w,
            self.idx.conv2_b,
        ] {
            let src = self.tensor(t).to_vec();
            out.params[out.layout.range(t)].copy_from_slice(&src);
        }
        for k in 0..2 {
            self.copy_norm(&mut out, k, &all(self.config.conv_channels));
        }
        for l in 0..layers {
            let (r, r2) = (self.idx.rnns[l], out.idx.rnns[l]);
            let inputs = if l == 0 {
                all(self.config.rnn_input())
            } else {
                keep[l - 1].clone()
            };
            if let Some(k) = r.norm {
                self.copy_norm(&mut out, k, &inputs);
            }
            let gate_rows: Vec<usize> = (0..4)
                .flat_map(|g| keep[l].iter().map(move |&j| g * h + j))
                .collect();
            for (d, d2) in r.dirs.iter().zip(r2.dirs) {
                // LSTM: the matrices' rows are gate rows; H-LSTM: the first layers keep all 4M
                // rows and the second layer loses the removed units' rows.
                let first_rows = match d.second {
                    None => gate_rows.clone(),
                    Some(_) => all(4 * self.config.gate_hidden),
                };
                self.copy_submatrix(&mut out, d.input, d2.input, &first_rows, &inputs);
                self.copy_submatrix(&mut out, d.recurrent, d2.recurrent, &first_rows, &keep[l]);
                if let (Some([b1, w2, b2]), Some([c1, v2, c2])) = (d.second, d2.second) {
                    let m = self.config.gate_hidden;
                    self.copy_submatrix(&mut out, b1, c1, &all(4 * m), &[0]);
                    self.copy_submatrix(&mut out, w2, v2, &gate_rows, &all(m));
                    self.copy_submatrix(&mut out, b2, c2, &gate_rows, &[0]);
                }
            }
        }
        let last = &keep[layers - 1];
        self.copy_norm(&mut out, self.norms.len() - 1, last);
        let rows = all(crate::labels::LABELS);
        let fc = out.idx.fc;
        self.copy_submatrix(&mut out, self.idx.fc, fc, &rows, last);
        Ok(out)
    }

    /// Copies rows `rows` and columns `cols` of tensor `src`, read as a matrix of rows of its
    /// last dimension (a vector is one column), into `out`'s tensor `dst`.
    fn copy_submatrix(
        &self,
        out: &mut DeepSpeech,
        src: usize,
        dst: usize,
        rows: &[usize],
        cols: &[usize],
    ) {
        let shape = &self.layout.get(src).shape;
        let width = if shape.len() > 1 {
            shape[shape.len() - 1]
        } else {
            1
        };
        let w = self.tensor(src);
        let mut values = Vec::with_capacity(rows.len() * cols.len());
        for &r in rows {
            values.extend(cols.iter().map(|&c| w[r * width + c]));
        }
        out.params[out.layout.range(dst)].copy_from_slice(&values);
    }

    /// Copies BatchNorm `k`'s affine parameters and running statistics at `features` into `out`.
    fn copy_norm(&self, out: &mut DeepSpeech, k: usize, features: &[usize]) {
        let (p, q) = (self.idx.norms[k], out.idx.norms[k]);
        for (src, dst) in [(p.weight, q.weight), (p.bias, q.bias)] {
            let v: Vec<f32> = features.iter().map(|&f| self.tensor(src)[f]).collect();
            out.params[out.layout.range(dst)].copy_from_slice(&v);
        }
        let bn = &self.norms[k];
        out.norms[k].running_mean = features.iter().map(|&f| bn.running_mean[f]).collect();
        out.norms[k].running_var = features.iter().map(|&f| bn.running_var[f]).collect();
    }
}
