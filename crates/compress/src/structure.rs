//! The model seam of compression: what masks and structured (`units`) phases need to know about a
//! model, so one compression engine serves every model — the word LM (its implementation is
//! here, over `units.rs`) and the speech model (in the speech crate) — without parsing names.

use crate::mask::is_embedding;
use crate::units::{silence_units_in, unit_importance_in};
use model::{LmConfig, ModelError, ParamLayout};

/// A model's structure as compression sees it, over its flat parameter layout.
pub trait UnitStructure: Send + Sync {
    /// Whether tensor `name` of `shape` takes a connection mask (is pruned and grown);
    /// `with_embeddings` is the schedule's choice for embedding-like tensors.
    fn maskable(&self, name: &str, shape: &[usize], with_embeddings: bool) -> bool;
    /// Layers with hidden units that `units` phases may silence.
    fn unit_layers(&self) -> usize;
    /// Hidden units of layer `l`.
    fn hidden_of(&self, l: usize) -> usize;
    /// Importance of each unit of layer `l` (the least important are silenced first).
    fn unit_importance(
        &self,
        layout: &ParamLayout,
        params: &[f32],
        l: usize,
    ) -> Result<Vec<f64>, ModelError>;
    /// Zeroes, in a parameter-shaped buffer (parameters or a mask multiplier), what makes
    /// `units` of layer `l` contribute: afterwards they output exactly zero and can be removed
    /// without changing the function.
    fn silence_units(
        &self,
        layout: &ParamLayout,
        buf: &mut [f32],
        l: usize,
        units: &[usize],
    ) -> Result<(), ModelError>;
}

impl UnitStructure for LmConfig {
    fn maskable(&self, name: &str, shape: &[usize], with_embeddings: bool) -> bool {
        shape.len() >= 2 && (with_embeddings || !is_embedding(name))
    }

    fn unit_layers(&self) -> usize {
        self.layers
    }

    fn hidden_of(&self, l: usize) -> usize {
        LmConfig::hidden_of(self, l)
    }

    fn unit_importance(
        &self,
        layout: &ParamLayout,
        params: &[f32],
        l: usize,
    ) -> Result<Vec<f64>, ModelError> {
        unit_importance_in(self, layout, params, l)
    }

    fn silence_units(
        &self,
        layout: &ParamLayout,
        buf: &mut [f32],
        l: usize,
        units: &[usize],
    ) -> Result<(), ModelError> {
        silence_units_in(self, layout, buf, l, units)
    }
}
