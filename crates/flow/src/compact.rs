//! Compaction: hidden units that pruning silenced (every weight in and out zero) are removed,
//! giving a smaller dense model with the same outputs.

use crate::FlowError;
use model::LanguageModel;
use train::checkpoint::Checkpoint;

/// The result of [`compact_units`]: the smaller model and the hidden sizes before and after.
pub struct Compacted {
    pub model: LanguageModel<f32>,
    pub hidden_before: Vec<usize>,
    pub hidden_after: Vec<usize>,
}

/// Removes every silent unit of every layer of `model`. A layer whose units are all silent is
/// refused (the model would lose the layer).
pub fn compact_units(model: &LanguageModel<f32>) -> Result<Compacted, FlowError> {
    let hidden = |m: &LanguageModel<f32>| -> Vec<usize> {
        (0..m.config.layers)
            .map(|l| m.config.hidden_of(l))
            .collect()
    };
    let hidden_before = hidden(model);
    let mut out = model.clone();
    for l in 0..out.config.layers {
        let silent = compress::units::silent_units(&out, l)?;
        let h = out.config.hidden_of(l);
        if silent.is_empty() {
            continue;
        }
        if silent.len() == h {
            return Err(FlowError::Invalid(format!(
                "layer {l}: all {h} units are silent; refusing to remove the whole layer"
            )));
        }
        let keep: Vec<usize> = (0..h).filter(|j| !silent.contains(j)).collect();
        out = compress::units::remove_units(&out, l, &keep)?;
    }
    let hidden_after = hidden(&out);
    Ok(Compacted {
        model: out,
        hidden_before,
        hidden_after,
    })
}

/// `ckpt` with its model compacted: a fresh optimizer state and carried LSTM state of the new
/// shapes, no compression extras and no `[compress]` section (the masks no longer match the
/// tensors). Returns the hidden
/// sizes before and after.
pub fn compact_checkpoint(ckpt: &mut Checkpoint) -> Result<(Vec<usize>, Vec<usize>), FlowError> {
    let Compacted {
        model,
        hidden_before,
        hidden_after,
    } = compact_units(&ckpt.model)?;
    ckpt.optimizer = train::optim::Optimizer::new(ckpt.config.optim.clone(), model.num_params());
    ckpt.carried = model::LmState::zeros(&model.config, ckpt.config.data.batch_size);
    ckpt.model = model;
    ckpt.extra = None;
    // The schedule's masks are gone with the old shapes: the compacted model is a dense model
    // (its zeros stay until trained), and a resume does not expect the masks.
    ckpt.config.compress = None;
    Ok((hidden_before, hidden_after))
}
