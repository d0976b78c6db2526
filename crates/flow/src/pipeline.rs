//! The symbiotic flow, end to end (method.md §5): the baseline sets the accuracy bar; the
//! target's latency table sizes the seed; grow, accuracy-constrained prune steps, unit removal
//! with a snap up to the frontier, and the per-target finish run as stages; the final model is
//! written with its measurements. `RUN/flow.json` is rewritten after every step, and a rerun on
//! the same folder skips finished stages and resumes the interrupted one.

use crate::config::{Baseline, FlowConfig, StageLength, Target};
use crate::measure::{self, TableSpec, Timing};
use crate::record::{FlowRecord, SizingRecord, StageRecord};
use crate::sizing::{layer_width, widest_under_budget, SizingRule};
use crate::stage::{self, StageEnv, StageSpec, StageWork, MASK_TENSOR};
use crate::FlowError;
use model::checkpoint::{OutTensor, TensorData, TensorFile};
use model::{LanguageModel, LmConfig};
use profile::{Axis, FrontierOptions, LatencyModel, LatencyTable, Point};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use train::checkpoint::Checkpoint;
use train::ptb::Corpus;

mod steps;

/// How a flow runs (not part of the experiment).
pub struct FlowOptions<'a> {
    pub run_dir: PathBuf,
    pub interrupted: &'a AtomicBool,
    pub progress: bool,
    /// Timing of the baseline's and the final model's latency.
    pub timing: Timing,
    /// Timing of each stage's batch-1 latency (the Pareto points).
    pub stage_timing: Timing,
}

/// How a call to [`run_flow`] ended.
pub enum FlowOutcome {
    Finished(Box<FlowRecord>),
    /// Ctrl-C: the running stage saved a checkpoint; rerun to continue.
    Interrupted,
}

struct Flow<'a> {
    cfg: &'a FlowConfig,
    corpus: &'a Corpus,
    opts: &'a FlowOptions<'a>,
    record: FlowRecord,
}

/// Runs (or continues) the flow of `cfg` on `corpus` in `opts.run_dir`.
pub fn run_flow(
    cfg: &FlowConfig,
    corpus: &Corpus,
    opts: &FlowOptions<'_>,
) -> Result<FlowOutcome, FlowError> {
    let dir = &opts.run_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| FlowError::Invalid(format!("{}: {e}", dir.display())))?;
    let flow_json = dir.join("flow.json");
    let record = if flow_json.is_file() {
        FlowRecord::load(&flow_json)?
    } else {
        FlowRecord {
            name: cfg.name.clone(),
            target: cfg.target.name().into(),
            config: cfg.origin.clone(),
            symbiont_version: env!("CARGO_PKG_VERSION").into(),
            host: measure::host(),
            status: "running".into(),
            valid_ppl_limit: None,
            baseline: None,
            sizing: None,
            stages: Vec::new(),
            final_model: None,
        }
    };
    let mut flow = Flow {
        cfg,
        corpus,
        opts,
        record,
    };
    flow.record.status = "running".into();
    // Stages are re-read from their folders: a resumed run rebuilds this list.
    flow.record.stages.clear();
    flow.save()?;
    // The table and the widths first: a budget or a width the table cannot serve is refused
    // before any training.
    let table = flow.table()?;
    let widths = flow.seed_widths(&table)?;
    let Some(baseline) = flow.baseline()? else {
        return Ok(FlowOutcome::Interrupted);
    };
    let seed = flow.seed(&widths, baseline.as_ref())?;
    let Some(last) = flow.stages(seed, &table)? else {
        flow.save()?;
        return Ok(FlowOutcome::Interrupted);
    };
    flow.finish(&last)?;
    Ok(FlowOutcome::Finished(Box::new(flow.record)))
}

impl Flow<'_> {
    fn save(&self) -> Result<(), FlowError> {
        let json = serde_json::to_string_pretty(&self.record).expect("records serialize");
        model::checkpoint::write_atomic(&self.opts.run_dir.join("flow.json"), json.as_bytes())?;
        Ok(())
    }

    fn env(&self) -> StageEnv<'_> {
        StageEnv {
            recipe: &self.cfg.train,
            corpus: self.corpus,
            run_dir: &self.opts.run_dir,
            tensors: &self.cfg.file.seed.tensors,
            interrupted: self.opts.interrupted,
            progress: self.opts.progress,
            origin: &self.cfg.origin,
        }
    }

    fn latency(
        &self,
        m: &LanguageModel<f32>,
        batches: &[usize],
        timing: Timing,
    ) -> Result<Vec<crate::record::LatencyRecord>, FlowError> {
        let f = &self.cfg.file.flow;
        batches
            .iter()
            .map(|&b| {
                measure::measure_model(
                    m,
                    self.cfg.target,
                    b,
                    f.latency_seq,
                    f.latency_threads,
                    timing,
                )
            })
            .collect()
    }

    fn deploy_batches(&self) -> Vec<usize> {
        let d = self.cfg.file.flow.deploy_batch;
        if d == 1 {
            vec![1]
        } else {
            vec![1, d]
        }
    }

    /// The baseline: its record (accuracy bar, params, latency) and, when trained, its
    /// checkpoint. `None` when interrupted while training it.
    #[allow(clippy::type_complexity)]
    fn baseline(&mut self) -> Result<Option<Option<Checkpoint>>, FlowError> {
        let recipe = &self.cfg.train;
        let (eval_b, bptt) = (recipe.data.eval_batch_size, recipe.data.bptt);
        let (ckpt, valid, path, source_test) = match &self.cfg.baseline {
            Baseline::Train => {
                let spec = StageSpec {
                    name: "00-baseline".into(),
                    kind: "baseline".into(),
                    work: StageWork::Train,
                    length: StageLength {
                        epochs: self
                            .cfg
                            .file
                            .baseline
                            .steps
                            .is_none()
                            .then_some(recipe.schedule.epochs),
                        steps: self.cfg.file.baseline.steps,
                        lr: None,
                        decay_start: Some(recipe.schedule.decay_start),
                        decay: Some(recipe.schedule.decay),
                    },
                    constrained: false,
                    initial_density: 1.0,
                };
                let env = self.env();
                let dir = env.stage_dir(&spec.name);
                let (ckpt, valid) = match stage::load_stage_record(&dir)? {
                    Some(r) => (Checkpoint::load(&dir)?, r.model.valid_ppl),
                    None => {
                        let fresh = train::trainer::fresh_checkpoint(recipe, self.corpus)?;
                        let Some((ck, v, test)) = env.run(&spec, &fresh)? else {
                            return Ok(None);
                        };
                        let model = stage::model_record(
                            "baseline",
                            rel(&dir),
                            &ck.model,
                            Some(v),
                            Some(test),
                            Some(eval_b),
                        );
                        stage::save_stage_record(
                            &dir,
                            &StageRecord {
                                name: spec.name.clone(),
                                kind: spec.kind.clone(),
                                note: match self.cfg.file.baseline.steps {
                                    Some(n) => format!("the recipe's own model, trained {n} steps"),
                                    None => "the recipe's own model, trained to the end of its \
                                             schedule"
                                        .into(),
                                },
                                accepted: true,
                                density: 1.0,
                                model,
                                steps: ck.trainer.step,
                                train_seconds: ck.trainer.train_seconds,
                            },
                        )?;
                        (ck, Some(v))
                    }
                };
                (Some(ckpt), valid, rel(&dir), None)
            }
            Baseline::Checkpoint(p) => {
                let ck = Checkpoint::load(p)?;
                if ck.vocab != self.corpus.vocab {
                    return Err(FlowError::Invalid(format!(
                        "[baseline] path = {}: its vocabulary differs from the corpus in {}",
                        p.display(),
                        self.corpus.dir.display()
                    )));
                }
                let v = crate::evaluate_checked(&ck.model, &self.corpus.valid, eval_b, bptt)?;
                (Some(ck), Some(v.perplexity), p.display().to_string(), None)
            }
            Baseline::Reported {
                valid_ppl,
                test_ppl,
                source,
            } => (
                None,
                Some(*valid_ppl),
                format!("reported: {source}"),
                Some(*test_ppl),
            ),
        };
        let valid = valid
            .ok_or_else(|| FlowError::Invalid("baseline without a validation perplexity".into()))?;
        // Parameter counts and latency do not depend on the weights of a dense model: a reported
        // baseline is measured as the recipe's architecture, freshly initialised.
        let model = match &ckpt {
            Some(c) => c.model.clone(),
            None => train::trainer::fresh_checkpoint(recipe, self.corpus)?.model,
        };
        let (test, test_batch) = match source_test {
            Some(t) => (t, Some(1)),
            None => {
                let b = self.cfg.file.flow.test_batch;
                let t = crate::evaluate_checked(&model, &self.corpus.test, b, bptt)?;
                (Some(t.perplexity), Some(b))
            }
        };
        if self.record.baseline.is_none() {
            let mut rec =
                stage::model_record("baseline", path, &model, Some(valid), test, test_batch);
            rec.latency = self.latency(&model, &self.deploy_batches(), self.opts.timing)?;
            self.record.baseline = Some(rec);
        }
        self.record.valid_ppl_limit = Some(self.cfg.valid_limit(valid));
        self.save()?;
        Ok(Some(ckpt))
    }

    /// The baseline's model again (for the side-by-side timing at the end): the trained
    /// baseline's checkpoint, or the recipe's architecture freshly initialised for a reported
    /// baseline (a dense model's latency does not depend on its weights).
    fn baseline_model(&self) -> Result<LanguageModel<f32>, FlowError> {
        Ok(match &self.cfg.baseline {
            Baseline::Train => Checkpoint::load(&self.env().stage_dir("00-baseline"))?.model,
            Baseline::Checkpoint(p) => Checkpoint::load(p)?.model,
            Baseline::Reported { .. } => {
                train::trainer::fresh_checkpoint(&self.cfg.train, self.corpus)?.model
            }
        })
    }

    /// The target's latency table: `RUN/table.json` if a previous session wrote it, else the
    /// configured file, else measured now.
    fn table(&mut self) -> Result<LatencyTable, FlowError> {
        let path = self.opts.run_dir.join("table.json");
        let load = |p: &Path| {
            LatencyTable::load(p).map_err(|e| FlowError::Invalid(format!("{}: {e}", p.display())))
        };
        if path.is_file() {
            return load(&path);
        }
        let p = &self.cfg.file.profile;
        let table = match &p.table {
            Some(file) => load(file)?,
            None => {
                let hidden = profile::grid::parse_sizes(
                    "[profile] hidden",
                    p.hidden.as_deref().expect("validated: hidden or table"),
                )
                .map_err(|e| FlowError::Invalid(format!("{}: {e}", self.cfg.origin)))?;
                let f = &self.cfg.file.flow;
                eprintln!(
                    "measuring the {} latency table: {} widths",
                    self.cfg.target.name(),
                    hidden.len()
                );
                measure::measure_table(
                    &TableSpec {
                        target: self.cfg.target,
                        hidden,
                        gate_width: self.cfg.file.seed.gate_hidden,
                        densities: p.densities.clone().unwrap_or_else(|| vec![1.0]),
                        seq: f.latency_seq,
                        threads: f.latency_threads,
                        budget_s: p.budget_s,
                    },
                    self.opts.interrupted,
                )?
            }
        };
        table
            .save(&path)
            .map_err(|e| FlowError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(table)
    }

    /// The point fixing the sizing curve: the seed's gate width, the flow's timing settings and,
    /// for a sparse target, the lowest density where the finish aims: the lowest of
    /// `[profile] densities`, else the lowest the table measured for the seed's gate width.
    fn curve_base(&self, table: &LatencyTable) -> Point {
        let f = &self.cfg.file.flow;
        let gate = self.cfg.file.seed.gate_hidden;
        let density = match self.cfg.target {
            Target::CpuDense => 1.0,
            Target::CpuSparse => match &self.cfg.file.profile.densities {
                Some(d) => d.iter().copied().reduce(f64::min).unwrap_or(1.0),
                None => table
                    .targets
                    .iter()
                    .flat_map(|t| &t.points)
                    .filter(|p| p.gate_width == gate)
                    .map(|p| p.density)
                    .reduce(f64::min)
                    .unwrap_or(1.0),
            },
        };
        measure::curve_point(gate, f.latency_seq, f.latency_threads, density)
    }

    /// The seed's widths from the table under the sizing rule (or the latency budget), recorded
    /// with the curve they came from.
    fn seed_widths(&mut self, table: &LatencyTable) -> Result<Vec<usize>, FlowError> {
        let s = &self.cfg.file.seed;
        let base = self.curve_base(table);
        let curve = table.curve_along(&base, Axis::Hidden);
        let rule = self.cfg.sizing;
        let budget = self.cfg.file.flow.budget_ms;
        let widths: Vec<usize> = match budget {
            // One layer's budget each: the table times one layer.
            Some(ms) => {
                let w = widest_under_budget(table, &base, ms / s.widths.len() as f64)?;
                vec![w; s.widths.len()]
            }
            None => s
                .widths
                .iter()
                .map(|&w| layer_width(rule, table, &base, w))
                .collect::<Result<_, _>>()?,
        };
        if self.record.sizing.is_none() {
            let points: Vec<(usize, f64)> = curve
                .as_ref()
                .map(|c| {
                    c.points()
                        .iter()
                        .map(|p| (p.x.round() as usize, p.median_ms))
                        .collect()
                })
                .unwrap_or_default();
            let frontier = table
                .frontier(&base, Axis::Hidden, &FrontierOptions::default())
                .iter()
                .map(|p| p.hidden)
                .collect();
            self.record.sizing = Some(SizingRecord {
                rule: rule.to_string(),
                curve: base.clone(),
                points,
                frontier,
                seed_wanted: s.widths.clone(),
                seed_widths: widths.clone(),
                units_left: Vec::new(),
                snapped_widths: Vec::new(),
                budget_ms: budget,
            });
            self.save()?;
        }
        Ok(widths)
    }

    /// The seed checkpoint: a fresh model of `widths`, or the trained baseline itself
    /// (`[seed] init = "baseline"`).
    fn seed(
        &mut self,
        widths: &[usize],
        baseline: Option<&Checkpoint>,
    ) -> Result<Checkpoint, FlowError> {
        let s = &self.cfg.file.seed;
        if s.init == "baseline" {
            return baseline.map(clone_checkpoint).ok_or_else(|| {
                FlowError::Invalid("[seed] init = \"baseline\" without a trained baseline".into())
            });
        }
        let recipe = &self.cfg.train;
        let lm = LmConfig {
            vocab: self.corpus.vocab.len(),
            embedding: s.embedding.unwrap_or(widths[0]),
            hidden: widths[0],
            hidden_sizes: if widths.iter().all(|&w| w == widths[0]) {
                Vec::new()
            } else {
                widths.to_vec()
            },
            layers: widths.len(),
            dropout: recipe.model.dropout,
            gate_hidden: s.gate_hidden,
            gate_dropout: if s.gate_hidden > 0 {
                recipe.model.gate_dropout
            } else {
                0.0
            },
        };
        let mut m = LanguageModel::<f32>::new(lm)?;
        m.init_uniform(recipe.model.init_scale, recipe.run.seed);
        let mut ck = train::trainer::fresh_checkpoint(recipe, self.corpus)?;
        ck.optimizer = train::optim::Optimizer::new(recipe.optim.clone(), m.num_params());
        ck.carried = model::LmState::zeros(&m.config, recipe.data.batch_size);
        ck.model = m;
        Ok(ck)
    }
}

/// A path relative to the current folder's run layout, as recorded (`stages/NN-name`).
fn rel(dir: &Path) -> String {
    let parts: Vec<_> = dir.components().rev().take(2).collect();
    parts
        .iter()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// A deep copy of a checkpoint (models and masks; the trainer position is reset by the stage).
fn clone_checkpoint(c: &Checkpoint) -> Checkpoint {
    Checkpoint {
        config: c.config.clone(),
        vocab: c.vocab.clone(),
        model: c.model.clone(),
        optimizer: train::optim::Optimizer::new(c.config.optim.clone(), c.model.num_params()),
        carried: model::LmState::zeros(&c.model.config, c.config.data.batch_size),
        trainer: c.trainer.clone(),
        extra: None,
    }
}

/// `ckpt` with its masks replaced by `mask` (flat, parameter-sized).
fn with_mask(mut ckpt: Checkpoint, mask: &[f32]) -> Checkpoint {
    ckpt.extra = Some(TensorFile::from_tensors(
        "extra.safetensors",
        &[OutTensor {
            name: MASK_TENSOR.into(),
            shape: vec![mask.len()],
            data: TensorData::F32(mask),
        }],
    ));
    ckpt
}

/// The sizing rule's width for `want` units, capped by the latency budget if any.
fn snap_width(
    rule: SizingRule,
    table: &LatencyTable,
    base: &Point,
    want: usize,
    cap: Option<usize>,
) -> Result<usize, FlowError> {
    let w = layer_width(rule, table, base, want)?;
    Ok(cap.map_or(w, |c| w.min(c).max(want.min(c))))
}
