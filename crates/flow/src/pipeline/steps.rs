//! The flow's stage sequence after the seed (grow, prune steps, units and snap, the target's
//! finish) and the final model with its measurements. A constrained stage whose validation
//! perplexity breaks the accuracy bar is recorded as not accepted, the flow goes on from the
//! model before it, and the rest of its group (further prune steps) is skipped.

use super::{clone_checkpoint, rel, snap_width, with_mask, Flow};
use crate::config::{StageLength, Target};
use crate::measure;
use crate::record::StageRecord;
use crate::sizing::widest_under_budget;
use crate::stage::{self, mask_density, mask_from, StageSpec, StageWork};
use crate::FlowError;
use profile::LatencyTable;
use std::collections::HashMap;
use train::checkpoint::Checkpoint;

/// A finished stage: its checkpoint and whether it met the accuracy bar (None: interrupted).
type Stepped = Option<(Checkpoint, bool)>;

impl Flow<'_> {
    /// Runs every stage after the seed; the last accepted checkpoint, or `None` if interrupted.
    pub(super) fn stages(
        &mut self,
        seed: Checkpoint,
        table: &LatencyTable,
    ) -> Result<Option<Checkpoint>, FlowError> {
        let f = self.cfg.file.clone();
        let mut n = 0usize;
        let mut name = |what: &str| {
            n += 1;
            format!("{n:02}-{what}")
        };
        let mut current = seed;
        if let Some(g) = &f.grow {
            let spec = StageSpec {
                name: name("grow"),
                kind: "grow".into(),
                work: StageWork::Grow {
                    to: g.to,
                    accumulate: g.accumulate,
                },
                length: g.length.clone(),
                constrained: false,
                initial_density: f.seed.density,
            };
            match self.stage(&spec, &current)? {
                None => return Ok(None),
                Some((ck, _)) => current = ck,
            }
        }
        if let Some(p) = &f.prune {
            let specs: Vec<StageSpec> = p
                .densities
                .iter()
                .map(|&d| prune_spec(name(&format!("prune-{d}")), "prune", d, &p.length))
                .collect();
            match self.group(specs, current)? {
                None => return Ok(None),
                Some(ck) => current = ck,
            }
        }
        if let Some(u) = &f.units {
            let units = StageSpec {
                name: name("units"),
                kind: "units".into(),
                work: StageWork::Units { keep: u.keep },
                length: u.length.clone(),
                constrained: false,
                initial_density: 1.0,
            };
            let snap_name = name("snap");
            let Some((removed, _)) = self.stage(&units, &current)? else {
                return Ok(None);
            };
            let (snapped, regrow_to) = self.snapped(&removed, table)?;
            let snap = StageSpec {
                name: snap_name,
                kind: "snap".into(),
                work: StageWork::Grow {
                    to: regrow_to,
                    accumulate: f.grow.as_ref().map_or(50, |g| g.accumulate),
                },
                length: StageLength {
                    epochs: u.retrain_epochs,
                    steps: u.retrain_steps,
                    ..u.length.clone()
                },
                constrained: true,
                initial_density: 1.0,
            };
            match self.stage(&snap, &snapped)? {
                None => return Ok(None),
                Some((ck, true)) => current = ck,
                Some((_, false)) => self.drop_units_stage(&units.name)?,
            }
        }
        let fin = &f.finish;
        if self.cfg.target == Target::CpuSparse && !fin.densities.is_empty() {
            let specs: Vec<StageSpec> = fin
                .densities
                .iter()
                .map(|&d| prune_spec(name(&format!("finish-{d}")), "finish", d, &fin.length))
                .collect();
            return self.group(specs, current);
        }
        let spec = StageSpec {
            name: name("finish"),
            kind: "finish".into(),
            work: StageWork::Train,
            length: fin.length.clone(),
            constrained: false,
            initial_density: 1.0,
        };
        Ok(self.stage(&spec, &current)?.map(|(ck, _)| ck))
    }

    /// Constrained steps in order until one breaks the bar; the last accepted checkpoint.
    fn group(
        &mut self,
        specs: Vec<StageSpec>,
        mut current: Checkpoint,
    ) -> Result<Option<Checkpoint>, FlowError> {
        for spec in specs {
            match self.stage(&spec, &current)? {
                None => return Ok(None),
                Some((ck, true)) => current = ck,
                Some((_, false)) => break,
            }
        }
        Ok(Some(current))
    }

    /// Runs one stage (or reads its record if it finished before).
    fn stage(&mut self, spec: &StageSpec, input: &Checkpoint) -> Result<Stepped, FlowError> {
        let env = self.env();
        let dir = env.stage_dir(&spec.name);
        if let Some(rec) = stage::load_stage_record(&dir)? {
            let ck = Checkpoint::load(&dir)?;
            let accepted = rec.accepted;
            self.record.stages.push(rec);
            return Ok(Some((ck, accepted)));
        }
        let with_embeddings = env.with_embeddings();
        let density_in = env.density_in(spec, input)?;
        let Some((ck, valid, test)) = env.run(spec, input)? else {
            return Ok(None);
        };
        let limit = self.record.valid_ppl_limit.unwrap_or(f64::INFINITY);
        let accepted = !spec.constrained || valid <= limit;
        let density = mask_density(&ck, with_embeddings)?;
        let eval_b = self.cfg.train.data.eval_batch_size;
        let mut model = stage::model_record(
            &spec.name,
            rel(&dir),
            &ck.model,
            Some(valid),
            Some(test),
            Some(eval_b),
        );
        model.latency = self.latency(&ck.model, &[1], self.opts.stage_timing)?;
        let verdict = match (spec.constrained, accepted) {
            (false, _) => String::new(),
            (true, true) => format!("; valid ppl {valid:.2} ≤ {limit:.2}: kept"),
            (true, false) => format!(
                "; valid ppl {valid:.2} > {limit:.2}: not kept, the flow goes on from the model before"
            ),
        };
        let rec = StageRecord {
            name: spec.name.clone(),
            kind: spec.kind.clone(),
            note: format!("{}{verdict}", describe(&spec.work, density_in, density)),
            accepted,
            density,
            model,
            steps: ck.trainer.step,
            train_seconds: ck.trainer.train_seconds,
        };
        stage::save_stage_record(&dir, &rec)?;
        eprintln!("stage {}: {}", rec.name, rec.note);
        self.record.stages.push(rec);
        self.save()?;
        Ok(Some((ck, accepted)))
    }

    /// The snap after a units stage broke the bar: the units stage's result is not kept either.
    fn drop_units_stage(&mut self, name: &str) -> Result<(), FlowError> {
        let dir = self.env().stage_dir(name);
        if let Some(rec) = self.record.stages.iter_mut().find(|s| s.name == name) {
            if rec.accepted {
                rec.accepted = false;
                rec.note
                    .push_str("; not kept: the snapped model after it broke the accuracy bar");
                stage::save_stage_record(&dir, rec)?;
            }
        }
        self.save()
    }

    /// After unit removal: the silent units compacted away, every layer snapped up by the sizing
    /// rule (new units start with zero outgoing weights: the function is unchanged) and masks
    /// rebuilt from the non-zero pattern. Also returns the density the snap stage grows to: the
    /// compacted model's connections plus the new units' share at the density before, so that
    /// growth gives the new units connections (their outgoing weights start masked).
    fn snapped(
        &mut self,
        removed: &Checkpoint,
        table: &LatencyTable,
    ) -> Result<(Checkpoint, f64), FlowError> {
        let with_embeddings = self.env().with_embeddings();
        let before = mask_density(removed, with_embeddings)?;
        let compacted = crate::compact_units(&removed.model)?;
        let (kept, kept_positions) =
            mask_counts(&mask_from(&compacted.model, with_embeddings, |i| {
                compacted.model.params[i] != 0.0
            }));
        let mut m = compacted.model;
        let base = self.curve_base(table);
        let cap = match self.cfg.file.flow.budget_ms {
            Some(ms) => Some(widest_under_budget(
                table,
                &base,
                ms / m.config.layers as f64,
            )?),
            None => None,
        };
        let recipe = &self.cfg.train;
        let mut snapped = Vec::new();
        for l in 0..m.config.layers {
            let left = m.config.hidden_of(l);
            let w = snap_width(self.cfg.sizing, table, &base, left, cap)?;
            if w > left {
                m = compress::units::add_units(
                    &m,
                    l,
                    w - left,
                    recipe.model.init_scale,
                    recipe.run.seed ^ (0x5a4b + l as u64),
                )?;
            }
            snapped.push(m.config.hidden_of(l));
        }
        if let Some(s) = self.record.sizing.as_mut() {
            s.units_left = compacted.hidden_after.clone();
            s.snapped_widths = snapped.clone();
        }
        self.save()?;
        let mask = mask_from(&m, with_embeddings, |i| m.params[i] != 0.0);
        let mut ck = clone_checkpoint(removed);
        ck.optimizer = train::optim::Optimizer::new(recipe.optim.clone(), m.num_params());
        ck.carried = model::LmState::zeros(&m.config, recipe.data.batch_size);
        ck.model = m;
        eprintln!(
            "units: {:?} left of {:?}, snapped to {snapped:?}",
            compacted.hidden_after, compacted.hidden_before
        );
        let (_, positions) = mask_counts(&mask);
        let new_positions = positions.saturating_sub(kept_positions);
        let target =
            ((kept as f64 + before * new_positions as f64) / positions.max(1) as f64).min(1.0);
        Ok((with_mask(ck, mask.values()), target))
    }

    /// Writes the final model (`final/model.safetensors` and `final/model.onnx`), scores and
    /// times it.
    pub(super) fn finish(&mut self, last: &Checkpoint) -> Result<(), FlowError> {
        let dir = self.opts.run_dir.join("final");
        std::fs::create_dir_all(&dir)
            .map_err(|e| FlowError::Invalid(format!("{}: {e}", dir.display())))?;
        let file = dir.join("model.safetensors");
        let mut meta = HashMap::new();
        meta.insert("symbiont.flow".to_string(), self.cfg.name.clone());
        meta.insert("symbiont.target".to_string(), self.cfg.target.name().into());
        last.model.save(&file, meta)?;
        crate::onnx::export_onnx(&last.model, &dir.join("model.onnx"))?;
        let valid = self
            .record
            .stages
            .iter()
            .rev()
            .find(|s| s.accepted)
            .and_then(|s| s.model.valid_ppl);
        let b = self.cfg.file.flow.test_batch;
        let test =
            crate::evaluate_checked(&last.model, &self.corpus.test, b, self.cfg.train.data.bptt)?;
        let mut rec = stage::model_record(
            "final",
            "final/model.safetensors".into(),
            &last.model,
            valid,
            Some(test.perplexity),
            Some(b),
        );
        // The baseline and the final model timed side by side, in turn, now: both numbers come
        // from the same minutes of this machine.
        let base_model = self.baseline_model()?;
        let f = &self.cfg.file.flow;
        let (mut base_lat, mut final_lat) = (Vec::new(), Vec::new());
        for batch in self.deploy_batches() {
            let pair = measure::measure_side_by_side(
                &[&base_model, &last.model],
                self.cfg.target,
                batch,
                f.latency_seq,
                f.latency_threads,
                self.opts.timing,
            )?;
            base_lat.push(pair[0].clone());
            final_lat.push(pair[1].clone());
        }
        rec.latency = final_lat;
        if let Some(b) = self.record.baseline.as_mut() {
            b.latency = base_lat;
        }
        let json = serde_json::to_string_pretty(&rec).expect("records serialize");
        model::checkpoint::write_atomic(&dir.join("final.json"), json.as_bytes())?;
        self.record.final_model = Some(rec);
        self.record.status = "finished".into();
        self.save()
    }
}

/// Open entries and all entries of the masked tensors.
fn mask_counts(m: &compress::MaskSet) -> (usize, usize) {
    m.selected().fold((0, 0), |(on, all), t| {
        (on + m.active(t), all + m.layout().get(t).len())
    })
}

fn prune_spec(name: String, kind: &str, density: f64, length: &StageLength) -> StageSpec {
    StageSpec {
        name,
        kind: kind.into(),
        work: StageWork::Prune { to: density },
        length: length.clone(),
        constrained: true,
        initial_density: 1.0,
    }
}

/// What a stage did, in words.
fn describe(work: &StageWork, before: f64, after: f64) -> String {
    match work {
        StageWork::Train => format!("trained at density {after:.3}"),
        StageWork::Grow { to, .. } if *to > before => {
            format!("grew connections by gradient, density {before:.3} → {after:.3}")
        }
        StageWork::Prune { to } if *to < before => {
            format!("pruned by magnitude, density {before:.3} → {after:.3}")
        }
        StageWork::Grow { .. } | StageWork::Prune { .. } => {
            format!("nothing to change at density {before:.3}: trained")
        }
        StageWork::Units { keep } => {
            format!("silenced the weakest hidden units (keeping {keep} of each layer)")
        }
    }
}
