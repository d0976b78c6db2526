//! Perplexity through the prepared inference plan (same streams and state carrying as
//! `train::eval::evaluate`), so the effect of bf16 weights or sparse formats on accuracy can be
//! measured with the kernels a deployment runs; and through the training engine. Nothing to score
//! is an error on both paths rather than a NaN perplexity.

use crate::FlowError;
use infer::{Dtype, FormatChoice, ModelPlan, ModelWeights, PlanOptions, Steps};
use train::eval::EvalResult;

/// Perplexity of `model` over `tokens`, `batch` streams, `bptt` steps per call, through a plan of
/// `dtype` weights in `format`. No tokens to score (a stream shorter than two tokens) is an
/// error, not a NaN perplexity.
pub fn evaluate_with_plan(
    model: &model::LanguageModel<f32>,
    tokens: &[u32],
    batch: usize,
    bptt: usize,
    dtype: Dtype,
    format: FormatChoice,
) -> Result<EvalResult, FlowError> {
    check_scorable(tokens.len(), batch, bptt)?;
    // The plan reads weights by their PyTorch names: the model's state_dict, in memory, goes
    // through the same import path as a foreign model's file.
    let file = model::checkpoint::TensorFile::from_tensors("checkpoint", &model.state_dict());
    let weights = ModelWeights::from_file(&file)?;
    let opts = PlanOptions {
        dtype,
        format,
        threads: rayon::current_num_threads(),
        batch,
        seq: bptt,
        step_threads: None,
        split_batch: false,
    };
    let mut plan = ModelPlan::new(&weights, &opts)?;
    let data = train::ptb::Batched::new(tokens, batch);
    let mut state = plan.stack().zero_state(batch);
    let v = plan.output();
    let (mut sum, mut count) = (0.0f64, 0usize);
    for (start, len) in data.all_batches(bptt) {
        let (x, y) = data.get(start, len);
        let logits = plan.run_tokens(x, len, batch, Some(&mut state), Steps::All)?;
        // The training engine's fused softmax cross-entropy (no gradient): same numerics.
        let mut scratch = logits.to_vec();
        let mut row_loss = vec![0f64; len * batch];
        kernels::softmax::softmax_xent(&mut scratch, v, y, None, &mut row_loss);
        sum += row_loss.iter().sum::<f64>();
        count += len * batch;
    }
    let loss = sum / count.max(1) as f64;
    finite(EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens: count,
    })
}

/// Perplexity through the training engine (`train::eval::evaluate`); nothing to score, or a
/// non-finite loss (weights that overflow), is an error, not a NaN or null perplexity.
pub fn evaluate_checked(
    model: &model::LanguageModel<f32>,
    tokens: &[u32],
    batch: usize,
    bptt: usize,
) -> Result<EvalResult, FlowError> {
    check_scorable(tokens.len(), batch, bptt)?;
    finite(train::eval::evaluate(model, tokens, batch, bptt))
}

/// [`evaluate_checked`] on the backend `be` (the model's parameters are copied there first).
pub fn evaluate_checked_on<B: model::backend::Backend<f32>>(
    be: &B,
    model: &model::LanguageModel<f32>,
    tokens: &[u32],
    batch: usize,
    bptt: usize,
) -> Result<EvalResult, FlowError> {
    check_scorable(tokens.len(), batch, bptt)?;
    let params = be.upload(&model.params).map_err(train::TrainError::from)?;
    let r = train::eval::evaluate_on(be, model, &params, tokens, batch, bptt)
        .map_err(train::TrainError::from)?;
    finite(r)
}

/// Whether `n` tokens in `batch` streams leave something to score with `bptt`-step windows.
fn check_scorable(n: usize, batch: usize, bptt: usize) -> Result<(), FlowError> {
    if batch == 0 || bptt == 0 {
        return Err(FlowError::Invalid(format!(
            "evaluation needs batch ≥ 1 and bptt ≥ 1 (got batch {batch}, bptt {bptt})"
        )));
    }
    if n / batch < 2 {
        return Err(FlowError::Invalid(format!(
            "{n} tokens in {batch} streams leave nothing to score: each stream needs 2 tokens or more"
        )));
    }
    Ok(())
}

/// `r`, or an error when its loss or perplexity is not finite (NaN or infinite weights, or
/// finite ones large enough that the logits or e^loss overflow).
fn finite(r: EvalResult) -> Result<EvalResult, FlowError> {
    if r.loss.is_finite() && r.perplexity.is_finite() {
        Ok(r)
    } else {
        Err(FlowError::Invalid(format!(
            "the loss over {} tokens is {} (perplexity {}): the model holds NaN or infinite \
             weights, or overflows",
            r.tokens, r.loss, r.perplexity
        )))
    }
}
