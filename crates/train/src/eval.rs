//! Perplexity of a model on a token stream, with the state carried across the whole stream
//! (batch 1 reproduces the published protocol; larger batches are faster and within ~1%).

use crate::ptb::Batched;
use model::backend::{infallible, Backend, Cpu, DeviceError};
use model::{LanguageModel, LmState, LmWorkspace};

/// Result of an evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean cross-entropy per token (nats).
    pub loss: f64,
    pub perplexity: f64,
    /// Tokens scored.
    pub tokens: usize,
}

/// Scores every token of `tokens` that has a successor, cut into `batch` streams.
pub fn evaluate(
    model: &LanguageModel<f32>,
    tokens: &[u32],
    batch: usize,
    bptt: usize,
) -> EvalResult {
    infallible(evaluate_on(&Cpu, model, &model.params, tokens, batch, bptt))
}

/// [`evaluate`] on `be` with the parameters `params` (the model's layout, in `be`'s memory;
/// `model.params` is not read).
pub fn evaluate_on<B: Backend<f32>>(
    be: &B,
    model: &LanguageModel<f32>,
    params: &B::Buf,
    tokens: &[u32],
    batch: usize,
    bptt: usize,
) -> Result<EvalResult, DeviceError> {
    let data = Batched::new(tokens, batch);
    let mut state = LmState::zeros_on(be, &model.config, batch)?;
    let mut workspaces: Vec<LmWorkspace<f32, B>> = Vec::new();
    let (mut sum, mut count) = (0.0f64, 0usize);
    for (start, len) in data.all_batches(bptt) {
        let ws = match workspaces.iter().position(|w| w.t == len) {
            Some(i) => &mut workspaces[i],
            None => {
                workspaces.push(model.workspace_on(be, len, batch)?);
                workspaces.last_mut().expect("just pushed")
            }
        };
        let (x, y) = data.get(start, len);
        sum += model.forward_on(be, params, ws, (x, y, None, None), &mut state)?;
        count += len * batch;
    }
    let loss = if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    };
    Ok(EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens: count,
    })
}
