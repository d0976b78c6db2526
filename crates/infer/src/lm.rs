//! A prepared word-level language model: embedding lookup, the stack, and the decoder, for a
//! whole sequence or step by step.

use crate::matrix::{GateMatrix, Tuning};
use crate::parallel::{unit_align, SharedMut};
use crate::plan::{PlanOptions, StackPlan, StackState};
use crate::weights::ModelWeights;
use crate::InferError;

/// Which steps' logits to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steps {
    Last,
    All,
}

/// Embedding + stack + decoder, or any part of it that the weights hold.
pub struct ModelPlan {
    /// (V, E) when the model has an embedding.
    embedding: Option<(usize, Vec<f32>)>,
    stack: StackPlan,
    /// The decoder as one "gate block" (V, H) — the gate split is not used, only the packing.
    decoder: Option<(GateMatrix, Vec<f32>)>,
    x: Vec<f32>,
    logits: Vec<f32>,
    threads: usize,
}

impl ModelPlan {
    pub fn new(w: &ModelWeights, opts: &PlanOptions) -> Result<ModelPlan, InferError> {
        let stack = StackPlan::new(&w.layers, opts)?;
        let decoder = match &w.decoder {
            None => None,
            Some((dw, db)) => {
                let v = db.len();
                let h = stack.output();
                // Padding V to a multiple of 4 lets the decoder reuse the four-block packing.
                let rows = v.div_ceil(4);
                let mut padded = dw.clone();
                padded.resize(4 * rows * h, 0.0);
                // Tuned for the widest call, the logits of every step of a sequence (T·B rows):
                // the panel layout then; `Steps::Last` calls still work, at the panel's batch-1 rate.
                let tuning = Tuning::for_plan(opts, opts.batch * opts.seq);
                Some((GateMatrix::pack(&padded, rows, h, &tuning)?, db.clone()))
            }
        };
        Ok(ModelPlan {
            embedding: w.embedding.clone(),
            stack,
            decoder,
            x: Vec::new(),
            logits: Vec::new(),
            threads: opts.threads,
        })
    }

    pub fn stack(&self) -> &StackPlan {
        &self.stack
    }

    pub fn vocab(&self) -> Option<usize> {
        self.embedding.as_ref().map(|(v, _)| *v)
    }

    pub fn has_decoder(&self) -> bool {
        self.decoder.is_some()
    }

    /// Width of one output row: the vocabulary with a decoder, else the stack's output.
    pub fn output(&self) -> usize {
        self.decoder
            .as_ref()
            .map_or(self.stack.output(), |(_, b)| b.len())
    }

    /// Weight bytes one step reads (embedding rows excluded: one row per token).
    pub fn weight_bytes(&self) -> usize {
        self.stack.weight_bytes() + self.decoder.as_ref().map_or(0, |(m, _)| m.bytes())
    }

    /// Bytes of weights a run over `t` steps reads (the decoder once).
    pub fn bytes_per_run(&self, t: usize) -> usize {
        self.stack.bytes_per_run(t) + self.decoder.as_ref().map_or(0, |(m, _)| m.bytes())
    }

    /// The decoder's format, if there is one.
    pub fn decoder_format(&self) -> Option<String> {
        self.decoder.as_ref().map(|(m, _)| m.formats())
    }

    /// Multiply-adds of one step of one batch row.
    pub fn macs_per_step(&self) -> usize {
        self.stack.macs_per_step() + self.decoder.as_ref().map_or(0, |(m, _)| m.nnz())
    }

    /// Looks up token ids (T, B) in the embedding.
    fn embed(&mut self, tokens: &[u32]) -> Result<(), InferError> {
        let (v, e) = self.embedding.as_ref().ok_or_else(|| {
            InferError::Input(
                "this model has no embedding (`encoder.weight`): give input vectors, not tokens"
                    .into(),
            )
        })?;
        let width = e.len() / v;
        self.x.clear();
        for &tok in tokens {
            let t = tok as usize;
            if t >= *v {
                return Err(InferError::Input(format!(
                    "token id {tok} is outside the vocabulary of {v} words"
                )));
            }
            self.x.extend_from_slice(&e[t * width..(t + 1) * width]);
        }
        Ok(())
    }

    /// Logits (or the stack's output when there is no decoder) for tokens (T, B).
    pub fn run_tokens(
        &mut self,
        tokens: &[u32],
        t: usize,
        b: usize,
        state: Option<&mut StackState>,
        steps: Steps,
    ) -> Result<&[f32], InferError> {
        if tokens.len() != t * b {
            return Err(InferError::Input(format!(
                "{} tokens given for T x B = {t} x {b}",
                tokens.len()
            )));
        }
        self.embed(tokens)?;
        let x = std::mem::take(&mut self.x);
        let r = self.run_inner(&x, t, b, state, steps);
        self.x = x;
        r?;
        Ok(&self.logits)
    }

    /// Like [`ModelPlan::run_tokens`] from input vectors (T, B, I) (models without embedding).
    pub fn run(
        &mut self,
        x: &[f32],
        t: usize,
        b: usize,
        state: Option<&mut StackState>,
        steps: Steps,
    ) -> Result<&[f32], InferError> {
        self.run_inner(x, t, b, state, steps)?;
        Ok(&self.logits)
    }

    fn run_inner(
        &mut self,
        x: &[f32],
        t: usize,
        b: usize,
        state: Option<&mut StackState>,
        steps: Steps,
    ) -> Result<(), InferError> {
        let h = self.stack.output();
        let team = self.stack.team();
        let top = self.stack.run(x, t, b, state)?;
        let rows_from = match steps {
            Steps::All => 0,
            Steps::Last => (t - 1) * b,
        };
        let top = &top[rows_from * h..];
        let nb = top.len() / h;
        match &self.decoder {
            None => {
                self.logits.clear();
                self.logits.extend_from_slice(top);
            }
            Some((m, bias)) => {
                let v = bias.len();
                let padded = 4 * m.rows;
                // Every value is overwritten below (bias or 0, then the product): no clearing.
                self.logits.resize(nb * padded, 0.0);
                let pieces = m.balanced_pieces(self.threads, unit_align(m.row_align()));
                let lp = SharedMut(self.logits.as_mut_ptr());
                team.run(pieces.len(), &|p, _| {
                    // SAFETY: part p writes the columns of its pieces of each block only; the
                    // buffer holds nb rows of `padded`.
                    unsafe { m.set_pieces(bias, top, h, nb, lp.get(), padded, &pieces[p]) };
                });
                if padded != v {
                    // Drop the padding rows: compact (nb, padded) to (nb, v) in place.
                    for r in 1..nb {
                        self.logits.copy_within(r * padded..r * padded + v, r * v);
                    }
                    self.logits.truncate(nb * v);
                }
            }
        }
        Ok(())
    }
}
