//! One training stage of the flow: a training run (the recipe's trainer and the compression
//! hook) that starts from the previous stage's model and masks with its own length, learning
//! rate and compression phases, in its own folder `stages/NN-name/` so that an interrupted stage
//! resumes from its checkpoint and a finished one (`stage.json`) is never run again.

use crate::config::StageLength;
use crate::record::{ModelRecord, StageRecord};
use crate::FlowError;
use compress::MaskSet;
use model::checkpoint::{OutTensor, TensorData, TensorFile};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use train::checkpoint::{Checkpoint, TrainerState};
use train::ptb::Corpus;
use train::trainer::{Outcome, RunOptions};
use train::TrainConfig;

/// The mask tensor the compression hook saves and restores (see `hook.rs`).
pub const MASK_TENSOR: &str = "compress.mask";

/// What a stage does while it trains.
#[derive(Clone, Debug, PartialEq)]
pub enum StageWork {
    /// Train only (masks kept).
    Train,
    /// Gradient growth from the current density to `to`.
    Grow { to: f64, accumulate: usize },
    /// Magnitude pruning to `to`.
    Prune { to: f64 },
    /// Silence the weakest hidden units until `keep` of each layer is left.
    Units { keep: f64 },
}

/// A stage to run.
#[derive(Clone, Debug)]
pub struct StageSpec {
    /// `NN-name`.
    pub name: String,
    /// `grow`, `prune`, `units`, `snap`, `finish`, `baseline`.
    pub kind: String,
    pub work: StageWork,
    pub length: StageLength,
    /// Whether the result must meet the accuracy bar to be kept.
    pub constrained: bool,
    /// Density of the random sparse seed when the input has no masks yet (1 = all open).
    pub initial_density: f64,
}

/// How the flow's stages run: the recipe, the data and where to write.
pub struct StageEnv<'a> {
    pub recipe: &'a TrainConfig,
    pub corpus: &'a Corpus,
    pub run_dir: &'a Path,
    /// `weights` or `weights+embeddings`.
    pub tensors: &'a str,
    pub interrupted: &'a AtomicBool,
    pub progress: bool,
    pub origin: &'a str,
}

impl StageEnv<'_> {
    pub fn with_embeddings(&self) -> bool {
        self.tensors == "weights+embeddings"
    }

    pub fn stage_dir(&self, name: &str) -> PathBuf {
        self.run_dir.join("stages").join(name)
    }

    fn batches_per_epoch(&self) -> usize {
        train::ptb::batches_per_epoch(
            self.corpus.train.len(),
            self.recipe.data.batch_size,
            self.recipe.data.bptt,
        )
    }

    /// The stage's length in optimizer steps and in (started) epochs.
    fn steps_and_epochs(&self, l: &StageLength) -> Result<(u64, usize), FlowError> {
        let bpe = self.batches_per_epoch();
        if bpe == 0 {
            return Err(FlowError::Invalid(format!(
                "{}: the training text is too short for one batch",
                self.corpus.dir.display()
            )));
        }
        Ok(match (l.epochs, l.steps) {
            (Some(e), _) => ((e * bpe) as u64, e),
            (None, Some(s)) => (s, (s as usize).div_ceil(bpe)),
            (None, None) => unreachable!("validated: a stage has epochs or steps"),
        })
    }

    /// The training config of a stage: the recipe's data/optimizer/run settings, the model
    /// section of `model`, the stage's schedule and its compression phases.
    pub fn stage_config(
        &self,
        spec: &StageSpec,
        model: &model::LmConfig,
        density: f64,
    ) -> Result<TrainConfig, FlowError> {
        let (steps, epochs) = self.steps_and_epochs(&spec.length)?;
        let mut c = self.recipe.clone();
        c.model.arch = if model.gate_hidden > 0 {
            "hlstm"
        } else {
            "lstm"
        }
        .into();
        c.model.hidden = model.hidden_of(0);
        c.model.layers = model.layers;
        c.model.embedding = model.embedding_width();
        c.model.gate_hidden = model.gate_hidden;
        if model.gate_hidden == 0 {
            c.model.gate_dropout = 0.0;
        }
        c.schedule.epochs = epochs;
        c.schedule.decay_start = spec.length.decay_start.unwrap_or(0);
        c.schedule.decay = spec.length.decay.unwrap_or(1.0);
        if let Some(lr) = spec.length.lr {
            c.optim.lr = lr;
        }
        c.compress = Some(self.phases(spec, steps, density));
        Ok(c)
    }

    /// `[compress]` of a stage: its one phase laid over the first half of its steps.
    fn phases(&self, spec: &StageSpec, steps: u64, density: f64) -> toml::Table {
        let half = (steps / 2).max(1);
        let every = (half / 10).max(1);
        let mut t = toml::Table::new();
        t.insert("tensors".into(), self.tensors.into());
        t.insert("initial_density".into(), spec.initial_density.into());
        let at = |n: u64| toml::Value::String(format!("{n} steps"));
        let mut phase = toml::Table::new();
        match &spec.work {
            StageWork::Train => {}
            StageWork::Grow { to, accumulate } if *to > density => {
                let start = (*accumulate as u64).max(steps / 8).min(half);
                phase.insert("what".into(), "grow".into());
                phase.insert("curve".into(), "linear".into());
                phase.insert("from".into(), density.into());
                phase.insert("to".into(), (*to).into());
                phase.insert("start".into(), at(start));
                phase.insert("end".into(), at(half.max(start)));
                phase.insert("every".into(), at(((half - start) / 3).max(1)));
                phase.insert("accumulate".into(), (*accumulate as i64).into());
            }
            StageWork::Prune { to } if *to < density => {
                phase.insert("what".into(), "prune".into());
                phase.insert("from".into(), density.into());
                phase.insert("to".into(), (*to).into());
                phase.insert("start".into(), at(1));
                phase.insert("end".into(), at(half));
                phase.insert("every".into(), at(every));
            }
            StageWork::Units { keep } => {
                phase.insert("what".into(), "units".into());
                phase.insert("from".into(), 1.0.into());
                phase.insert("to".into(), (*keep).into());
                phase.insert("start".into(), at(1));
                phase.insert("end".into(), at(half));
                phase.insert("every".into(), at(every));
            }
            StageWork::Grow { .. } | StageWork::Prune { .. } => {}
        }
        if !phase.is_empty() {
            t.insert("phase".into(), toml::Value::Array(vec![phase.into()]));
        }
        t
    }

    /// Runs (or resumes) a stage from `input` (the previous stage's checkpoint with its masks).
    /// Returns `None` when interrupted (the stage's checkpoint is saved), else the trained
    /// checkpoint and the stage's validation and test perplexities (recipe's eval batch).
    pub fn run(
        &self,
        spec: &StageSpec,
        input: &Checkpoint,
    ) -> Result<Option<(Checkpoint, f64, f64)>, FlowError> {
        let dir = self.stage_dir(&spec.name);
        let density = self.density_in(spec, input)?;
        let mut ckpt = match Checkpoint::locate(&dir) {
            Ok(_) => {
                let c = Checkpoint::load(&dir)?;
                eprintln!(
                    "stage {}: resuming at step {} (epoch {})",
                    spec.name,
                    c.trainer.step,
                    c.trainer.epoch + 1
                );
                c
            }
            Err(_) => self.fresh(spec, input, density)?,
        };
        let (steps, _) = self.steps_and_epochs(&spec.length)?;
        let opts = RunOptions {
            out_dir: dir.clone(),
            max_steps: spec.length.steps.map(|_| steps),
            interrupted: self.interrupted,
            progress: self.progress,
        };
        let origin = format!("{} (stage {})", self.origin, spec.name);
        let be = model::backend::Cpu;
        let mut hook = crate::run::training_hook(&ckpt.config, self.corpus, &ckpt, &origin)?;
        let outcome = train::trainer::train(&be, &mut ckpt, self.corpus, &opts, hook.as_mut())?;
        let (valid, test) = match outcome {
            Outcome::Interrupted => return Ok(None),
            Outcome::Finished { valid, test } => (valid.perplexity, test.perplexity),
            Outcome::MaxSteps => {
                let (b, t) = (self.recipe.data.eval_batch_size, self.recipe.data.bptt);
                let v = crate::evaluate_checked(&ckpt.model, &self.corpus.valid, b, t)?;
                let s = crate::evaluate_checked(&ckpt.model, &self.corpus.test, b, t)?;
                (v.perplexity, s.perplexity)
            }
        };
        // The checkpoint on disk holds the hook's final masks (saved after the last step).
        let ckpt = Checkpoint::load(&dir)?;
        Ok(Some((ckpt, valid, test)))
    }

    /// The density a stage starts from: the input's masks, or the random seed's density the
    /// hook draws when the input has none.
    pub fn density_in(&self, spec: &StageSpec, input: &Checkpoint) -> Result<f64, FlowError> {
        if has_mask(input) {
            mask_density(input, self.with_embeddings())
        } else {
            Ok(spec.initial_density)
        }
    }

    /// A stage's starting checkpoint: `input`'s model and masks, a fresh trainer position,
    /// optimizer and carried state, the stage's config.
    fn fresh(
        &self,
        spec: &StageSpec,
        input: &Checkpoint,
        density: f64,
    ) -> Result<Checkpoint, FlowError> {
        let config = self.stage_config(spec, &input.model.config, density)?;
        let n = input.model.num_params();
        let mask = input
            .extra
            .as_ref()
            .filter(|f| f.contains(MASK_TENSOR))
            .map(|f| f.floats(MASK_TENSOR, Some(&[n])))
            .transpose()?;
        let extra = mask.map(|m| {
            let m: Vec<f32> = m.into_iter().map(|v| v as f32).collect();
            TensorFile::from_tensors(
                "extra.safetensors",
                &[OutTensor {
                    name: MASK_TENSOR.into(),
                    shape: vec![n],
                    data: TensorData::F32(&m),
                }],
            )
        });
        Ok(Checkpoint {
            optimizer: train::optim::Optimizer::new(config.optim.clone(), n),
            carried: model::LmState::zeros(&input.model.config, config.data.batch_size),
            model: input.model.clone(),
            vocab: input.vocab.clone(),
            extra,
            trainer: TrainerState::fresh(),
            config,
        })
    }
}

fn has_mask(ckpt: &Checkpoint) -> bool {
    ckpt.extra.as_ref().is_some_and(|f| f.contains(MASK_TENSOR))
}

/// Non-zero share of the masked tensors of `ckpt` (its saved mask; 1 when it has none).
pub fn mask_density(ckpt: &Checkpoint, with_embeddings: bool) -> Result<f64, FlowError> {
    let n = ckpt.model.num_params();
    match ckpt.extra.as_ref().filter(|f| f.contains(MASK_TENSOR)) {
        None => Ok(1.0),
        Some(f) => {
            let m = f.floats(MASK_TENSOR, Some(&[n]))?;
            Ok(mask_from(&ckpt.model, with_embeddings, |i| m[i] != 0.0).density())
        }
    }
}

/// Masks over `model`'s weights (and embeddings when `with_embeddings`): inside the masked
/// tensors open where `keep(i)` (a flat parameter index), elsewhere open.
pub fn mask_from(
    model: &model::LanguageModel<f32>,
    with_embeddings: bool,
    keep: impl Fn(usize) -> bool,
) -> MaskSet {
    let mut masks = MaskSet::weights(&model.layout, with_embeddings);
    let mut values = masks.values().to_vec();
    for t in masks.selected().collect::<Vec<_>>() {
        for i in model.layout.range(t) {
            values[i] = if keep(i) { 1.0 } else { 0.0 };
        }
    }
    masks
        .set_values(values)
        .expect("same layout, values 0 or 1");
    masks
}

/// The record of a stage's model.
pub fn model_record(
    label: &str,
    path: String,
    m: &model::LanguageModel<f32>,
    valid: Option<f64>,
    test: Option<f64>,
    test_batch: Option<usize>,
) -> ModelRecord {
    let c = &m.config;
    ModelRecord {
        label: label.into(),
        path,
        arch: if c.gate_hidden > 0 { "hlstm" } else { "lstm" }.into(),
        layers: c.layers,
        hidden: (0..c.layers).map(|l| c.hidden_of(l)).collect(),
        gate_hidden: c.gate_hidden,
        params: (&crate::count_params(m)).into(),
        valid_ppl: valid,
        test_ppl: test,
        test_batch,
        latency: Vec::new(),
    }
}

/// Writes `stage.json` (the stage is done).
pub fn save_stage_record(dir: &Path, rec: &StageRecord) -> Result<(), FlowError> {
    let json = serde_json::to_string_pretty(rec).expect("records serialize");
    model::checkpoint::write_atomic(&dir.join("stage.json"), json.as_bytes())?;
    Ok(())
}

/// The record of a finished stage, if `dir` has one.
pub fn load_stage_record(dir: &Path) -> Result<Option<StageRecord>, FlowError> {
    let p = dir.join("stage.json");
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p)
        .map_err(|e| FlowError::Invalid(format!("{}: {e}", p.display())))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| FlowError::Invalid(format!("{}: {e}", p.display())))
}
