//! Parameter counts of a language model: all, non-zero, and the same without the embedding and
//! softmax (the counts the paper's compression ratios use), per tensor and per layer.

use model::LanguageModel;

/// One tensor's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorCount {
    pub name: String,
    pub shape: Vec<usize>,
    pub params: usize,
    pub nonzero: usize,
}

/// A model's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    pub total: usize,
    pub nonzero: usize,
    /// Without the embedding and the softmax (decoder) tensors.
    pub total_core: usize,
    pub nonzero_core: usize,
    /// Per LSTM layer (tensors named `…_l{layer}`): (params, non-zero).
    pub layers: Vec<(usize, usize)>,
    pub tensors: Vec<TensorCount>,
}

impl Counts {
    /// Non-zero share of all parameters.
    pub fn density(&self) -> f64 {
        self.nonzero as f64 / self.total.max(1) as f64
    }
}

/// Counts every tensor of `model`.
pub fn count_params(model: &LanguageModel<f32>) -> Counts {
    let mut c = Counts {
        total: 0,
        nonzero: 0,
        total_core: 0,
        nonzero_core: 0,
        layers: vec![(0, 0); model.config.layers],
        tensors: Vec::new(),
    };
    for spec in model.layout.tensors() {
        let values = &model.params[spec.range()];
        let nz = values.iter().filter(|&&v| v != 0.0).count();
        c.total += values.len();
        c.nonzero += nz;
        if !compress::mask::is_embedding(&spec.name) {
            c.total_core += values.len();
            c.nonzero_core += nz;
        }
        let layer = spec
            .name
            .rsplit("_l")
            .next()
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(l) = layer.filter(|&l| l < c.layers.len()) {
            c.layers[l].0 += values.len();
            c.layers[l].1 += nz;
        }
        c.tensors.push(TensorCount {
            name: spec.name.clone(),
            shape: spec.shape.clone(),
            params: values.len(),
            nonzero: nz,
        });
    }
    c
}
