//! The parameter layout: named tensors at fixed offsets in one flat buffer.
//!
//! Parameters, gradients and optimizer state (and, later, masks) all share one layout, so an
//! optimizer or a gradient-norm is a loop over one slice, and a tensor is found by name.

use std::ops::Range;

/// One named tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// PyTorch `state_dict` name, e.g. `rnn.weight_ih_l0`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Offset of the first element in the flat buffer.
    pub offset: usize,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Ordered list of tensors; the order is the `state_dict` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamLayout {
    tensors: Vec<TensorSpec>,
    total: usize,
}

impl ParamLayout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tensor and returns its index.
    pub fn push(&mut self, name: &str, shape: &[usize]) -> usize {
        let spec = TensorSpec {
            name: name.to_string(),
            shape: shape.to_vec(),
            offset: self.total,
        };
        self.total += spec.len();
        self.tensors.push(spec);
        self.tensors.len() - 1
    }

    /// Total number of scalars.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    pub fn get(&self, index: usize) -> &TensorSpec {
        &self.tensors[index]
    }

    pub fn find(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The range of tensor `index` in the flat buffer.
    pub fn range(&self, index: usize) -> Range<usize> {
        self.tensors[index].range()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_contiguous() {
        let mut l = ParamLayout::new();
        let a = l.push("a", &[3, 4]);
        let b = l.push("b", &[5]);
        assert_eq!(l.range(a), 0..12);
        assert_eq!(l.range(b), 12..17);
        assert_eq!(l.total(), 17);
        assert_eq!(l.find("b").unwrap().shape, vec![5]);
        assert!(l.find("c").is_none());
    }
}
