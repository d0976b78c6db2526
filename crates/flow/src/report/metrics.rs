//! The training metrics of a run's stages (`RUN/stages/NN-name/metrics.jsonl`) as the report
//! needs them: training and validation perplexity against the step, compression events, and how
//! each stage's training ended. Lenient by design: a run still being written may end in half a
//! line, and a stage may have no metrics yet.

use crate::record::{FlowRecord, StageRecord};
use serde_json::Value;
use std::path::Path;

/// One stage's training run, as read from its metrics.
#[derive(Clone, Debug, Default)]
pub struct StageRun {
    /// `NN-name` (the folder under `stages/`).
    pub name: String,
    /// The finished stage's record; `None` while the stage is still running.
    pub record: Option<StageRecord>,
    /// Step the run started from (a stage may continue the step count of the one before).
    pub first_step: u64,
    /// (step, training perplexity of the log window ending there).
    pub train: Vec<(u64, f64)>,
    /// (step, epoch, validation perplexity).
    pub valid: Vec<(u64, u64, f64)>,
    /// (step, what: `prune`, `grow` or `units`).
    pub compress: Vec<(u64, String)>,
    /// (valid, test) perplexity of the `final` line.
    pub final_ppl: Option<(f64, f64)>,
    /// `max_steps` or `interrupted` when the run stopped early.
    pub stopped: Option<String>,
    /// Lines that were not JSON objects (e.g. a half-written last line).
    pub skipped_lines: usize,
    /// Whether a metrics.jsonl was found.
    pub has_metrics: bool,
}

impl StageRun {
    /// The last step seen, or the first step when there is nothing.
    pub fn last_step(&self) -> u64 {
        let t = self.train.iter().map(|p| p.0);
        let v = self.valid.iter().map(|p| p.0);
        let c = self.compress.iter().map(|p| p.0);
        t.chain(v).chain(c).max().unwrap_or(self.first_step)
    }

    /// Status word for tables and charts.
    pub fn status(&self) -> &'static str {
        match &self.record {
            Some(r) if r.accepted => "accepted",
            Some(_) => "not accepted",
            None => "running",
        }
    }
}

/// Reads one metrics.jsonl. A `start` line (a resume) drops points logged after its step, so a
/// resumed run is drawn once.
pub fn parse_metrics(text: &str, run: &mut StageRun) {
    let mut started = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line) else {
            run.skipped_lines += 1;
            continue;
        };
        let f = |k: &str| m.get(k).and_then(Value::as_f64);
        let step = m.get("step").and_then(Value::as_u64).unwrap_or(0);
        match m.get("kind").and_then(Value::as_str).unwrap_or("") {
            "start" => {
                if !started {
                    run.first_step = step;
                    started = true;
                }
                run.train.retain(|p| p.0 <= step);
                run.valid.retain(|p| p.0 <= step);
                run.compress.retain(|p| p.0 <= step);
                run.stopped = None;
            }
            "train" => {
                if let Some(p) = f("ppl").or_else(|| f("loss").map(f64::exp)) {
                    run.train.push((step, p));
                }
            }
            "epoch" => {
                let epoch = m.get("epoch").and_then(Value::as_u64).unwrap_or(0);
                if let Some(p) = f("valid_ppl") {
                    run.valid.push((step, epoch, p));
                }
            }
            "compress" => {
                let what = m.get("what").and_then(Value::as_str).unwrap_or("compress");
                run.compress.push((step, what.to_string()));
            }
            "final" => {
                if let (Some(v), Some(t)) = (f("valid_ppl"), f("test_ppl")) {
                    run.final_ppl = Some((v, t));
                }
            }
            k @ ("max_steps" | "interrupted") => run.stopped = Some(k.to_string()),
            _ => {}
        }
    }
    if !started {
        let steps = run
            .train
            .iter()
            .map(|p| p.0)
            .chain(run.valid.iter().map(|p| p.0));
        run.first_step = steps.min().map_or(0, |s| s.saturating_sub(1));
    }
}

/// Every stage of the run, in folder order: the finished ones of `flow.json`, the trained
/// baseline, and any folder under `stages/` not recorded yet (the stage running now).
pub fn stage_runs(run_dir: &Path, flow: &FlowRecord) -> Vec<StageRun> {
    let mut runs: Vec<StageRun> = flow
        .stages
        .iter()
        .map(|s| StageRun {
            name: s.name.clone(),
            record: Some(s.clone()),
            ..StageRun::default()
        })
        .collect();
    if let Ok(dir) = std::fs::read_dir(run_dir.join("stages")) {
        let mut extra: Vec<String> = dir
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !runs.iter().any(|r| &r.name == n))
            .collect();
        extra.sort();
        // A folder with its own stage.json (the trained baseline, `00-baseline`) is finished;
        // one without is the stage running now.
        let stages = run_dir.join("stages");
        runs.extend(extra.into_iter().map(|name| {
            StageRun {
                record: crate::stage::load_stage_record(&stages.join(&name))
                    .ok()
                    .flatten(),
                name,
                ..StageRun::default()
            }
        }));
    }
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    for run in &mut runs {
        let path = run_dir.join("stages").join(&run.name).join("metrics.jsonl");
        if let Ok(text) = std::fs::read_to_string(&path) {
            run.has_metrics = true;
            parse_metrics(&text, run);
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_and_half_lines() {
        let text = r#"{"kind":"start","step":0,"epoch":1}
{"kind":"train","epoch":1,"step":10,"loss":6.0,"ppl":403.4}
{"kind":"train","epoch":1,"step":20,"loss":5.5,"ppl":244.7}
{"kind":"interrupted","step":20,"epoch":1}
{"kind":"start","step":10,"epoch":1}
{"kind":"train","epoch":1,"step":20,"loss":5.4,"ppl":221.4}
{"kind":"epoch","epoch":1,"step":30,"valid_ppl":200.0}
{"kind":"compress","phase":1,"what":"prune","step":25,"density":0.5}
{"kind":"final","valid_ppl":199.0,"test_ppl":190.0}
{"kind":"train","ep"#;
        let mut run = StageRun::default();
        parse_metrics(text, &mut run);
        assert_eq!(run.first_step, 0);
        assert_eq!(run.train, vec![(10, 403.4), (20, 221.4)]);
        assert_eq!(run.valid, vec![(30, 1, 200.0)]);
        assert_eq!(run.compress, vec![(25, "prune".to_string())]);
        assert_eq!(run.final_ppl, Some((199.0, 190.0)));
        assert_eq!(run.stopped, None);
        assert_eq!(run.skipped_lines, 1);
        assert_eq!(run.last_step(), 30);
    }
}
