//! Perplexity of a model on a token stream, with the state carried across the whole stream
//! (batch 1 reproduces the published protocol; larger batches are faster and within ~1%).

use crate::ptb::Batched;
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
    let data = Batched::new(tokens, batch);
    let mut state = LmState::zeros(&model.config, batch);
    let mut workspaces: Vec<LmWorkspace<f32>> = Vec::new();
    let (mut sum, mut count) = (0.0f64, 0usize);
    for (start, len) in data.all_batches(bptt) {
        let ws = match workspaces.iter().position(|w| w.t == len) {
            Some(i) => &mut workspaces[i],
            None => {
                workspaces.push(model.workspace(len, batch));
                workspaces.last_mut().expect("just pushed")
            }
        };
        let (x, y) = data.get(start, len);
        sum += model.forward(ws, x, y, &mut state, None, None);
        count += len * batch;
    }
    let loss = if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    };
    EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens: count,
    }
}
