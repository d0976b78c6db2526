//! Model weights as PyTorch names them, imported from and exported to safetensors.
//!
//! Two layouts are read: a bare `nn.LSTM` stack (`weight_ih_l{k}`, `weight_hh_l{k}`,
//! `bias_ih_l{k}`, `bias_hh_l{k}`, and `…_reverse` for bidirectional layers) and PyTorch's
//! word-language-model (`encoder.weight`, `rnn.*`, `decoder.weight`, `decoder.bias`). symbiont's
//! H-LSTM layers use `weight_ih1_l{k}`, `weight_hh1_l{k}`, `bias1_l{k}`, `weight2_l{k}`,
//! `bias2_l{k}` in the same places. Sizes are inferred from the shapes; every inconsistency is an
//! error naming the tensor.

use crate::InferError;
use model::checkpoint::{write_tensors, OutTensor, TensorData, TensorFile};
use std::collections::HashMap;
use std::path::Path;

/// One direction of one layer, in PyTorch's layouts (gate order i, f, g, o, gate-major rows).
#[derive(Clone, Debug)]
pub enum CellWeights {
    Lstm {
        /// (4H, I)
        w_ih: Vec<f32>,
        /// (4H, H)
        w_hh: Vec<f32>,
        /// (4H): `bias_ih + bias_hh` (only the sum matters).
        bias: Vec<f32>,
    },
    Hlstm {
        /// Gate width M.
        m: usize,
        /// (4M, I)
        w_ih1: Vec<f32>,
        /// (4M, H)
        w_hh1: Vec<f32>,
        /// (4M)
        b1: Vec<f32>,
        /// (4, H, M)
        w2: Vec<f32>,
        /// (4H)
        b2: Vec<f32>,
    },
}

/// A layer: its input and hidden width and one cell per direction (1 or 2).
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub input: usize,
    pub hidden: usize,
    pub directions: Vec<CellWeights>,
}

impl LayerWeights {
    /// Width of the layer's output (hidden times directions).
    pub fn output(&self) -> usize {
        self.hidden * self.directions.len()
    }
}

/// Embedding, stack and decoder; the embedding and decoder are optional.
#[derive(Clone, Debug)]
pub struct ModelWeights {
    /// (V, E)
    pub embedding: Option<(usize, Vec<f32>)>,
    pub layers: Vec<LayerWeights>,
    /// (V, H) and (V)
    pub decoder: Option<(Vec<f32>, Vec<f32>)>,
}

impl ModelWeights {
    pub fn vocab(&self) -> Option<usize> {
        self.embedding.as_ref().map(|(v, _)| *v)
    }

    /// Input width of the first layer.
    pub fn input(&self) -> usize {
        self.layers[0].input
    }

    /// Output width of the last layer.
    pub fn output(&self) -> usize {
        self.layers.last().map_or(0, |l| l.output())
    }

    /// Reads a safetensors file (F32, F64, F16 or BF16 tensors).
    pub fn load(path: &Path) -> Result<ModelWeights, InferError> {
        let file = TensorFile::read(path)?;
        ModelWeights::from_file(&file)
    }

    pub fn from_file(file: &TensorFile) -> Result<ModelWeights, InferError> {
        ModelWeights::from_file_prefixed(file, "")
    }

    /// Reads the tensors whose names start with `outer` (e.g. `model.` of a wrapped
    /// `state_dict`), as if the prefix were absent.
    pub fn from_file_prefixed(file: &TensorFile, outer: &str) -> Result<ModelWeights, InferError> {
        let full = |n: &str| format!("{outer}{n}");
        let has = |n: &str| file.contains(&full(n));
        let err = |reason: String| InferError::Layout {
            file: file.path().to_string(),
            reason,
        };
        let prefix = if has("rnn.weight_ih_l0") || has("rnn.weight_ih1_l0") {
            "rnn."
        } else if has("weight_ih_l0") || has("weight_ih1_l0") {
            ""
        } else {
            return Err(err(
                "no LSTM layer found: expected `weight_ih_l0` (nn.LSTM) or `rnn.weight_ih_l0` \
                 (word language model) or their H-LSTM forms `weight_ih1_l0`"
                    .into(),
            ));
        };
        let f32s = |name: &str, shape: Option<&[usize]>| -> Result<Vec<f32>, InferError> {
            Ok(file
                .floats(&full(name), shape)?
                .into_iter()
                .map(|v| v as f32)
                .collect())
        };
        // Sizes (widths, the vocabulary) are read from these shapes. A zero dimension holds no
        // data whatever the others claim, so a size taken from it would not be backed by the
        // file (a decoder [2^40, 0] without a bias asked for 2^40 zero biases: an abort).
        let dims = |name: &str| -> Result<Vec<usize>, InferError> {
            let s = file.shape(&full(name))?.to_vec();
            if s.contains(&0) {
                return Err(err(format!(
                    "tensor `{}` has shape {s:?}: every dimension must be at least 1",
                    full(name)
                )));
            }
            Ok(s)
        };
        let mut layers = Vec::new();
        let mut input = None;
        for l in 0.. {
            let lstm = format!("{prefix}weight_ih_l{l}");
            let hlstm = format!("{prefix}weight_ih1_l{l}");
            if !has(&lstm) && !has(&hlstm) {
                break;
            }
            let mut directions = Vec::new();
            let mut layer_dims = None;
            for suffix in ["", "_reverse"] {
                let n = |base: &str| format!("{prefix}{base}_l{l}{suffix}");
                let cell = if has(&n("weight_ih")) {
                    let s = dims(&n("weight_ih"))?;
                    if s.len() != 2 || s[0] % 4 != 0 || s[0] == 0 {
                        return Err(err(format!(
                            "tensor `{}` has shape {s:?}, expected [4H, I]",
                            n("weight_ih")
                        )));
                    }
                    let (h, i) = (s[0] / 4, s[1]);
                    layer_dims = Some((i, h));
                    let b_ih = f32s(&n("bias_ih"), Some(&[4 * h]))?;
                    let b_hh = if has(&n("bias_hh")) {
                        f32s(&n("bias_hh"), Some(&[4 * h]))?
                    } else {
                        vec![0.0; 4 * h]
                    };
                    CellWeights::Lstm {
                        w_ih: f32s(&n("weight_ih"), Some(&[4 * h, i]))?,
                        w_hh: f32s(&n("weight_hh"), Some(&[4 * h, h]))?,
                        bias: b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect(),
                    }
                } else if has(&n("weight_ih1")) {
                    let s = dims(&n("weight2"))?;
                    if s.len() != 3 || s[0] != 4 {
                        return Err(err(format!(
                            "tensor `{}` has shape {s:?}, expected [4, H, M]",
                            n("weight2")
                        )));
                    }
                    let (h, m) = (s[1], s[2]);
                    let si = dims(&n("weight_ih1"))?;
                    if si.len() != 2 {
                        return Err(err(format!(
                            "tensor `{}` has shape {si:?}, expected [4M, I]",
                            n("weight_ih1")
                        )));
                    }
                    let i = si[1];
                    layer_dims = Some((i, h));
                    CellWeights::Hlstm {
                        m,
                        w_ih1: f32s(&n("weight_ih1"), Some(&[4 * m, i]))?,
                        w_hh1: f32s(&n("weight_hh1"), Some(&[4 * m, h]))?,
                        b1: f32s(&n("bias1"), Some(&[4 * m]))?,
                        w2: f32s(&n("weight2"), Some(&[4, h, m]))?,
                        b2: f32s(&n("bias2"), Some(&[4 * h]))?,
                    }
                } else if suffix.is_empty() {
                    unreachable!("layer {l} was found above")
                } else {
                    continue;
                };
                directions.push(cell);
            }
            let (i, h) = layer_dims.expect("at least the forward direction");
            if let Some(want) = input {
                if i != want {
                    return Err(err(format!(
                        "layer {l} reads {i} inputs but layer {} writes {want} (tensor `{prefix}weight_ih_l{l}`)",
                        l - 1
                    )));
                }
            }
            // Both directions must agree on the sizes.
            if directions.len() == 2 {
                let hs: Vec<usize> = directions.iter().map(cell_hidden).collect();
                if hs[0] != hs[1] {
                    return Err(err(format!(
                        "layer {l}: the reverse direction has hidden {} but the forward {}",
                        hs[1], hs[0]
                    )));
                }
            }
            let layer = LayerWeights {
                input: i,
                hidden: h,
                directions,
            };
            input = Some(layer.output());
            layers.push(layer);
        }
        let embedding = if has("encoder.weight") {
            let s = dims("encoder.weight")?;
            if s.len() != 2 || s[1] != layers[0].input {
                return Err(err(format!(
                    "tensor `encoder.weight` has shape {s:?}, expected [V, {}] (the first layer's input)",
                    layers[0].input
                )));
            }
            Some((s[0], f32s("encoder.weight", None)?))
        } else {
            None
        };
        let top = layers.last().expect("one layer at least").output();
        let decoder = if has("decoder.weight") {
            let s = dims("decoder.weight")?;
            if s.len() != 2 || s[1] != top {
                return Err(err(format!(
                    "tensor `decoder.weight` has shape {s:?}, expected [V, {top}]"
                )));
            }
            let v = s[0];
            // Required, as `eval` and `--resume` require it: a file missing it is more often a
            // damaged checkpoint than a bias-free decoder, and zeros would hide that.
            if !has("decoder.bias") {
                return Err(err(format!(
                    "tensor `decoder.weight` has no `decoder.bias` ([{v}]); for a decoder built \
                     with bias=False, save zeros under that name"
                )));
            }
            let b = f32s("decoder.bias", Some(&[v]))?;
            Some((f32s("decoder.weight", None)?, b))
        } else {
            None
        };
        Ok(ModelWeights {
            embedding,
            layers,
            decoder,
        })
    }

    /// Writes the weights under the names they were read with: the word-language-model names
    /// when there is an embedding or decoder, else the bare `nn.LSTM` names. LSTM biases are
    /// written as `bias_ih` = the summed bias and `bias_hh` = 0 (the same function).
    pub fn save(&self, path: &Path) -> Result<(), InferError> {
        let lm = self.embedding.is_some() || self.decoder.is_some();
        let prefix = if lm { "rnn." } else { "" };
        let mut out: Vec<OutTensor<'_>> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, data: &'_ [f32]| {
            out.push(OutTensor {
                name,
                shape,
                data: TensorData::F32Owned(data.to_vec()),
            })
        };
        if let Some((v, e)) = &self.embedding {
            push("encoder.weight".into(), vec![*v, e.len() / v], e);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let (i, h) = (layer.input, layer.hidden);
            for (d, cell) in layer.directions.iter().enumerate() {
                let s = if d == 0 { "" } else { "_reverse" };
                match cell {
                    CellWeights::Lstm { w_ih, w_hh, bias } => {
                        push(format!("{prefix}weight_ih_l{l}{s}"), vec![4 * h, i], w_ih);
                        push(format!("{prefix}weight_hh_l{l}{s}"), vec![4 * h, h], w_hh);
                        push(format!("{prefix}bias_ih_l{l}{s}"), vec![4 * h], bias);
                        push(
                            format!("{prefix}bias_hh_l{l}{s}"),
                            vec![4 * h],
                            &vec![0.0; 4 * h],
                        );
                    }
                    CellWeights::Hlstm {
                        m,
                        w_ih1,
                        w_hh1,
                        b1,
                        w2,
                        b2,
                    } => {
                        push(format!("{prefix}weight_ih1_l{l}{s}"), vec![4 * m, i], w_ih1);
                        push(format!("{prefix}weight_hh1_l{l}{s}"), vec![4 * m, h], w_hh1);
                        push(format!("{prefix}bias1_l{l}{s}"), vec![4 * m], b1);
                        push(format!("{prefix}weight2_l{l}{s}"), vec![4, h, *m], w2);
                        push(format!("{prefix}bias2_l{l}{s}"), vec![4 * h], b2);
                    }
                }
            }
        }
        if let Some((w, b)) = &self.decoder {
            push("decoder.weight".into(), vec![b.len(), w.len() / b.len()], w);
            push("decoder.bias".into(), vec![b.len()], b);
        }
        write_tensors(path, &out, HashMap::new())?;
        Ok(())
    }
}

fn cell_hidden(c: &CellWeights) -> usize {
    match c {
        CellWeights::Lstm { bias, .. } => bias.len() / 4,
        CellWeights::Hlstm { b2, .. } => b2.len() / 4,
    }
}
