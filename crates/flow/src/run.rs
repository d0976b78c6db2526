//! Run setup: reconciling a config file with a checkpoint to resume, and the training hook a
//! config asks for.

use crate::{CompressHook, FlowError};
use model::backend::Backend;
use train::checkpoint::Checkpoint;
use train::ptb::Corpus;
use train::trainer::{NoHook, TrainHook};
use train::TrainConfig;

/// A config given with `--resume` must describe the same model and optimizer state as the
/// checkpoint's.
pub fn check_compatible(new: &TrainConfig, old: &TrainConfig) -> Result<(), FlowError> {
    let same_model = new.model.hidden == old.model.hidden
        && new.model.layers == old.model.layers
        && new.model.embedding == old.model.embedding
        && new.model.arch == old.model.arch
        && new.model.gate_hidden == old.model.gate_hidden;
    if !same_model {
        return Err(FlowError::Invalid("--config describes another architecture than the checkpoint's ([model] hidden/layers/embedding/arch differ)".into()));
    }
    if new.optim.kind != old.optim.kind || (new.optim.momentum > 0.0) != (old.optim.momentum > 0.0)
    {
        return Err(FlowError::Invalid("--config uses another optimizer than the checkpoint's ([optim] kind or momentum on/off differ)".into()));
    }
    if new.data.batch_size != old.data.batch_size {
        return Err(FlowError::Invalid(
            "--config has another [data] batch_size than the checkpoint's carried state".into(),
        ));
    }
    Ok(())
}

/// The hook of a run: the compression hook when the config has a `[compress]` section (its
/// schedule laid over the run's batches), else none. `origin` names the config in messages.
pub fn training_hook<B: Backend<f32> + 'static>(
    config: &TrainConfig,
    corpus: &Corpus,
    ckpt: &Checkpoint,
    origin: &str,
) -> Result<Box<dyn TrainHook<B>>, FlowError> {
    let Some(table) = &config.compress else {
        return Ok(Box::new(NoHook));
    };
    let bpe =
        train::ptb::batches_per_epoch(corpus.train.len(), config.data.batch_size, config.data.bptt);
    let total = (bpe * config.schedule.epochs) as u64;
    Ok(Box::new(CompressHook::<B>::new(
        table,
        origin,
        Box::new(ckpt.model.config.clone()),
        &ckpt.model.layout,
        config.run.seed,
        bpe,
        total,
    )?))
}
