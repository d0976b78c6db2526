//! Binary masks for selected tensors of a parameter layout.
//!
//! The mask is stored as f32 multipliers (0 or 1) in the same flat layout as the parameters, so
//! applying it is one vectorized multiply, and an optimizer step followed by `apply` can never
//! revive a pruned weight (momentum included: its buffer is masked the same way).

use model::ParamLayout;

/// Masks over the tensors of a layout; unselected tensors are always fully dense.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskSet {
    layout: ParamLayout,
    /// Per tensor: whether it is masked (pruned/grown) at all.
    selected: Vec<bool>,
    /// 0.0 or 1.0 per parameter (1.0 everywhere in unselected tensors).
    mask: Vec<f32>,
}

impl MaskSet {
    /// All-ones masks on the tensors for which `select(name, shape)` is true.
    pub fn dense(layout: &ParamLayout, select: impl Fn(&str, &[usize]) -> bool) -> Self {
        let selected = layout
            .tensors()
            .iter()
            .map(|t| select(&t.name, &t.shape))
            .collect();
        Self {
            layout: layout.clone(),
            selected,
            mask: vec![1.0; layout.total()],
        }
    }

    /// Weight matrices (rank ≥ 2) only; `with_embeddings` adds the encoder and decoder.
    pub fn weights(layout: &ParamLayout, with_embeddings: bool) -> Self {
        Self::dense(layout, |name, shape| {
            shape.len() >= 2 && (with_embeddings || !is_embedding(name))
        })
    }

    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    pub fn is_selected(&self, tensor: usize) -> bool {
        self.selected[tensor]
    }

    /// Indices of the selected tensors.
    pub fn selected(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.selected.len()).filter(|&i| self.selected[i])
    }

    /// The flat 0/1 mask.
    pub fn values(&self) -> &[f32] {
        &self.mask
    }

    /// Mask of one tensor, mutably (for pruning and growth).
    pub fn tensor_mut(&mut self, tensor: usize) -> &mut [f32] {
        let r = self.layout.range(tensor);
        &mut self.mask[r]
    }

    pub fn tensor(&self, tensor: usize) -> &[f32] {
        &self.mask[self.layout.range(tensor)]
    }

    /// Replaces the mask values (e.g. loaded from a checkpoint); must be 0/1 and layout-sized.
    pub fn set_values(&mut self, values: Vec<f32>) -> Result<(), String> {
        if values.len() != self.mask.len() {
            return Err(format!(
                "mask has {} values, the layout {}",
                values.len(),
                self.mask.len()
            ));
        }
        if let Some(i) = values.iter().position(|&v| v != 0.0 && v != 1.0) {
            return Err(format!("mask value {} at {i} is not 0 or 1", values[i]));
        }
        for (t, spec) in self.layout.tensors().iter().enumerate() {
            if !self.selected[t] && values[spec.range()].contains(&0.0) {
                return Err(format!(
                    "tensor `{}` is not masked but has zeros in its mask",
                    spec.name
                ));
            }
        }
        self.mask = values;
        Ok(())
    }

    /// `x *= mask` for a parameter-, gradient- or optimizer-state-sized buffer.
    pub fn apply(&self, x: &mut [f32]) {
        assert_eq!(
            x.len(),
            self.mask.len(),
            "MaskSet::apply: buffer does not match the layout"
        );
        for (v, &m) in x.iter_mut().zip(&self.mask) {
            *v *= m;
        }
    }

    /// Active (mask = 1) entries of one tensor.
    pub fn active(&self, tensor: usize) -> usize {
        self.tensor(tensor).iter().filter(|&&m| m != 0.0).count()
    }

    /// Fraction of active entries over the selected tensors.
    pub fn density(&self) -> f64 {
        let (mut on, mut all) = (0usize, 0usize);
        for t in self.selected() {
            on += self.active(t);
            all += self.layout.get(t).len();
        }
        if all == 0 {
            1.0
        } else {
            on as f64 / all as f64
        }
    }
}

/// The encoder and decoder of a language model (reported and selectable separately).
pub fn is_embedding(name: &str) -> bool {
    name.starts_with("encoder.") || name.starts_with("decoder.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> ParamLayout {
        let mut l = ParamLayout::new();
        l.push("encoder.weight", &[5, 2]);
        l.push("rnn.weight_ih_l0", &[8, 2]);
        l.push("rnn.bias_ih_l0", &[8]);
        l.push("decoder.weight", &[5, 2]);
        l
    }

    #[test]
    fn selects_weight_matrices_and_applies() {
        let m = MaskSet::weights(&layout(), false);
        assert_eq!(m.selected().collect::<Vec<_>>(), vec![1]);
        let m2 = MaskSet::weights(&layout(), true);
        assert_eq!(m2.selected().collect::<Vec<_>>(), vec![0, 1, 3]);
        let mut m = m;
        m.tensor_mut(1)[3] = 0.0;
        let mut p = vec![2.0f32; layout().total()];
        m.apply(&mut p);
        assert_eq!(p.iter().filter(|&&v| v == 0.0).count(), 1);
        assert_eq!(p[10 + 3], 0.0);
        assert!((m.density() - 15.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn set_values_validates() {
        let mut m = MaskSet::weights(&layout(), false);
        assert!(m.set_values(vec![1.0; 3]).unwrap_err().contains("3 values"));
        let mut v = vec![1.0; layout().total()];
        v[0] = 0.0; // encoder is not selected
        assert!(m
            .set_values(v.clone())
            .unwrap_err()
            .contains("encoder.weight"));
        v[0] = 0.5;
        assert!(m.set_values(v).unwrap_err().contains("not 0 or 1"));
    }
}
