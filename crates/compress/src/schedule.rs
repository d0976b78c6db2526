//! Compression schedules, read from the `[compress]` section of a training config: *what* to do
//! (grow connections, prune by magnitude), *how much* (a density curve), and *when* (start, end,
//! every; in steps or epochs) are separate keys, validated before training starts.
//!
//! ```toml
//! [compress]
//! tensors = "weights"            # which tensors get masks: "weights" or "weights+embeddings"
//! initial_density = 1.0          # < 1: start from a random sparse seed (NeST)
//!
//! [[compress.phase]]
//! what = "prune"                 # "prune" (magnitude) or "grow" (gradient-based)
//! scope = "per-tensor"           # prune only: "per-tensor" or "global"
//! curve = "cubic"                # "cubic" (Zhu & Gupta), "linear" or "step" (all at `start`)
//! from = 1.0                     # density at `start`
//! to = 0.1                       # density at `end`
//! start = "1 epoch"              # "N steps" or "N epochs" (from the beginning of training)
//! end = "8 epochs"
//! every = "100 steps"
//! # grow only: accumulate = 50 (mini-batches of gradient before each growth), init = "zero" or
//! # init_step = 0.1 (start at −0.1 · mean gradient)
//! ```

use serde::Deserialize;

/// A point or length in training time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    Steps(u64),
    Epochs(u64),
}

impl Time {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split_whitespace();
        let (n, unit) = (parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(format!("`{s}`: expected \"N steps\" or \"N epochs\""));
        }
        let n: u64 = n
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("`{s}`: expected \"N steps\" or \"N epochs\""))?;
        match unit {
            Some("step" | "steps") => Ok(Time::Steps(n)),
            Some("epoch" | "epochs") => Ok(Time::Epochs(n)),
            _ => Err(format!("`{s}`: the unit must be steps or epochs")),
        }
    }

    /// In optimizer steps, given the epoch length.
    pub fn steps(self, batches_per_epoch: usize) -> u64 {
        match self {
            Time::Steps(n) => n,
            // Saturating: an absurd epoch count is then "after the run's last step", an error,
            // instead of wrapping around to a small step.
            Time::Epochs(n) => n.saturating_mul(batches_per_epoch as u64),
        }
    }
}

/// `[compress]` as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressConfig {
    #[serde(default = "default_tensors")]
    pub tensors: String,
    #[serde(default = "one")]
    pub initial_density: f64,
    /// Tile shape every prune and grow phase and the sparse seed act on ("RxC"; default 1x1,
    /// unstructured).
    #[serde(default)]
    pub block: Option<String>,
    #[serde(default)]
    pub phase: Vec<PhaseConfig>,
}

fn default_tensors() -> String {
    "weights".into()
}
fn one() -> f64 {
    1.0
}

/// One `[[compress.phase]]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    pub what: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default = "default_curve")]
    pub curve: String,
    pub from: f64,
    pub to: f64,
    pub start: String,
    pub end: String,
    pub every: String,
    #[serde(default)]
    pub accumulate: Option<usize>,
    #[serde(default)]
    pub init_step: Option<f64>,
}

fn default_curve() -> String {
    "cubic".into()
}

/// What a phase does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    Prune(crate::prune::Scope),
    Grow {
        accumulate: usize,
        init: crate::grow::GrowInit,
    },
    /// Silence whole hidden units by importance (norm of every weight touching them).
    Units,
}

/// How density moves from `from` to `to` between start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    Cubic,
    Linear,
    Step,
}

/// A validated phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub action: Action,
    pub curve: Curve,
    pub from: f64,
    pub to: f64,
    pub start: Time,
    pub end: Time,
    pub every: Time,
}

impl Phase {
    /// Target density at `step` (clamped to the phase's window).
    pub fn density_at(&self, step: u64, batches_per_epoch: usize) -> f64 {
        let (s, e) = (
            self.start.steps(batches_per_epoch),
            self.end.steps(batches_per_epoch),
        );
        if step <= s {
            return if self.curve == Curve::Step && step == s {
                self.to
            } else {
                self.from
            };
        }
        if step >= e || e <= s || self.curve == Curve::Step {
            return self.to;
        }
        let x = (step - s) as f64 / (e - s) as f64;
        match self.curve {
            Curve::Linear => self.from + (self.to - self.from) * x,
            // Zhu & Gupta: fast change first, slow near the end.
            _ => self.to + (self.from - self.to) * (1.0 - x).powi(3),
        }
    }

    /// Whether the phase acts after optimizer step `step`.
    pub fn fires_at(&self, step: u64, batches_per_epoch: usize) -> bool {
        let (s, e, every) = (
            self.start.steps(batches_per_epoch),
            self.end.steps(batches_per_epoch),
            self.every.steps(batches_per_epoch).max(1),
        );
        step >= s && step <= e && (step - s).is_multiple_of(every)
    }

    /// Whether gradients should be accumulated at `step` for this (grow) phase: the
    /// `accumulate` steps before each firing.
    pub fn accumulates_at(&self, step: u64, batches_per_epoch: usize) -> bool {
        let Action::Grow { accumulate, .. } = self.action else {
            return false;
        };
        // The first firing at or after `step`, in O(1): scanning the window step by step spun
        // for hours with `accumulate = 1000000000000`.
        let (s, e, every) = (
            self.start.steps(batches_per_epoch),
            self.end.steps(batches_per_epoch),
            self.every.steps(batches_per_epoch).max(1),
        );
        let next = if step <= s {
            s
        } else {
            match (step - s).div_ceil(every).checked_mul(every) {
                Some(offset) => s.saturating_add(offset),
                None => return false,
            }
        };
        next <= e && next < step.saturating_add(accumulate as u64)
    }
}

/// A validated schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub with_embeddings: bool,
    pub initial_density: f64,
    pub block: crate::blocks::BlockShape,
    pub phases: Vec<Phase>,
}

impl CompressConfig {
    /// Checks every value; errors name the phase and key.
    pub fn validate(&self) -> Result<Schedule, String> {
        let with_embeddings = match self.tensors.as_str() {
            "weights" => false,
            "weights+embeddings" => true,
            t => {
                return Err(format!(
                    "[compress] tensors = \"{t}\": expected \"weights\" or \"weights+embeddings\""
                ))
            }
        };
        if !(self.initial_density > 0.0 && self.initial_density <= 1.0) {
            return Err(format!(
                "[compress] initial_density must be in (0, 1], got {}",
                self.initial_density
            ));
        }
        let block = match &self.block {
            None => crate::blocks::BlockShape::UNIT,
            Some(b) => {
                crate::blocks::BlockShape::parse(b).map_err(|e| format!("[compress] {e}"))?
            }
        };
        let mut phases = Vec::new();
        for (k, p) in self.phase.iter().enumerate() {
            let at = |key: &str| format!("[[compress.phase]] #{} ({}) {key}", k + 1, p.what);
            for (name, v) in [("from", p.from), ("to", p.to)] {
                if !(v > 0.0 && v <= 1.0) {
                    return Err(format!("{} must be in (0, 1], got {v}", at(name)));
                }
            }
            let action = match p.what.as_str() {
                "prune" => {
                    if p.accumulate.is_some() || p.init_step.is_some() {
                        return Err(format!(
                            "{}: accumulate and init_step are for grow phases",
                            at("")
                        ));
                    }
                    let scope = match p.scope.as_deref().unwrap_or("per-tensor") {
                        "per-tensor" => crate::prune::Scope::PerTensor,
                        "global" => crate::prune::Scope::Global,
                        s => {
                            return Err(format!(
                                "{}: \"{s}\" is not per-tensor or global",
                                at("scope")
                            ))
                        }
                    };
                    if p.to > p.from {
                        return Err(format!(
                            "{}: pruning cannot raise density ({} → {})",
                            at("to"),
                            p.from,
                            p.to
                        ));
                    }
                    Action::Prune(scope)
                }
                "grow" => {
                    if p.scope.is_some() {
                        return Err(format!("{}: scope is for prune phases", at("scope")));
                    }
                    if p.to < p.from {
                        return Err(format!(
                            "{}: growing cannot lower density ({} → {})",
                            at("to"),
                            p.from,
                            p.to
                        ));
                    }
                    let accumulate = p.accumulate.unwrap_or(1);
                    if accumulate == 0 {
                        return Err(format!("{} must be ≥ 1", at("accumulate")));
                    }
                    let init = match p.init_step {
                        None => crate::grow::GrowInit::Zero,
                        Some(s) if s > 0.0 && s.is_finite() => {
                            crate::grow::GrowInit::GradientStep(s as f32)
                        }
                        Some(s) => return Err(format!("{} must be > 0, got {s}", at("init_step"))),
                    };
                    Action::Grow { accumulate, init }
                }
                "units" => {
                    if p.scope.is_some() || p.accumulate.is_some() || p.init_step.is_some() {
                        return Err(format!(
                            "{}: scope, accumulate and init_step do not apply to units",
                            at("")
                        ));
                    }
                    if p.to > p.from {
                        return Err(format!(
                            "{}: unit pruning cannot add units ({} → {})",
                            at("to"),
                            p.from,
                            p.to
                        ));
                    }
                    Action::Units
                }
                w => {
                    return Err(format!(
                        "[[compress.phase]] #{}: what = \"{w}\" is not prune, grow or units",
                        k + 1
                    ))
                }
            };
            let curve = match p.curve.as_str() {
                "cubic" => Curve::Cubic,
                "linear" => Curve::Linear,
                "step" => Curve::Step,
                c => {
                    return Err(format!(
                        "{}: \"{c}\" is not cubic, linear or step",
                        at("curve")
                    ))
                }
            };
            let start = Time::parse(&p.start).map_err(|e| format!("{}: {e}", at("start")))?;
            let end = Time::parse(&p.end).map_err(|e| format!("{}: {e}", at("end")))?;
            let every = Time::parse(&p.every).map_err(|e| format!("{}: {e}", at("every")))?;
            if every.steps(1) == 0 {
                return Err(format!("{} must be > 0", at("every")));
            }
            // Comparable only in the same unit; mixed units are checked once the epoch length
            // is known (`check_against`).
            if let (Time::Steps(a), Time::Steps(b)) | (Time::Epochs(a), Time::Epochs(b)) =
                (start, end)
            {
                if b < a {
                    return Err(format!("{}: end is before start", at("end")));
                }
            }
            phases.push(Phase {
                action,
                curve,
                from: p.from,
                to: p.to,
                start,
                end,
                every,
            });
        }
        Ok(Schedule {
            with_embeddings,
            initial_density: self.initial_density,
            block,
            phases,
        })
    }
}

impl Schedule {
    /// Checks the schedule against the run: every phase must end within it.
    pub fn check_against(&self, batches_per_epoch: usize, total_steps: u64) -> Result<(), String> {
        for (k, p) in self.phases.iter().enumerate() {
            let (s, e) = (
                p.start.steps(batches_per_epoch),
                p.end.steps(batches_per_epoch),
            );
            if e < s {
                return Err(format!(
                    "[[compress.phase]] #{}: end ({e} steps) is before start ({s} steps)",
                    k + 1
                ));
            }
            // A phase that ends after the run would never reach its target density.
            if e > total_steps {
                return Err(format!(
                    "[[compress.phase]] #{}: ends at step {e}, after the run's last step {total_steps}",
                    k + 1
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Schedule, String> {
        let c: CompressConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()
    }

    const AGP: &str = r#"
[[phase]]
what = "prune"
curve = "cubic"
from = 1.0
to = 0.1
start = "1 epoch"
end = "5 epochs"
every = "100 steps"
"#;

    #[test]
    fn agp_phase_parses_and_follows_the_cubic() {
        let s = parse(AGP).unwrap();
        let p = &s.phases[0];
        assert_eq!(p.start, Time::Epochs(1));
        let bpe = 1000;
        assert_eq!(p.density_at(500, bpe), 1.0);
        assert_eq!(p.density_at(5000, bpe), 0.1);
        assert!((p.density_at(3000, bpe) - (0.1 + 0.9 * 0.125)).abs() < 1e-12);
        // Monotone non-increasing density, changing fastest early (Zhu & Gupta).
        let v: Vec<f64> = (1000..=5000)
            .step_by(400)
            .map(|t| p.density_at(t, bpe))
            .collect();
        assert!(v.windows(2).all(|w| w[1] <= w[0]), "{v:?}");
        assert!(v[0] - v[1] > v[9] - v[10]);
        assert!(
            p.fires_at(1000, bpe)
                && p.fires_at(1100, bpe)
                && !p.fires_at(1150, bpe)
                && !p.fires_at(5100, bpe)
        );
        assert!(!p.accumulates_at(1099, bpe));
    }

    #[test]
    fn block_shape_is_parsed_and_checked() {
        assert!(parse(AGP).unwrap().block.is_unit());
        let s = parse(&format!("block = \"4x4\"\n{AGP}")).unwrap();
        assert_eq!(s.block.to_string(), "4x4");
        let e = parse(&format!("block = \"4by4\"\n{AGP}")).unwrap_err();
        assert!(e.contains("[compress] block = \"4by4\""), "{e}");
    }

    #[test]
    fn accumulation_windows_match_a_step_by_step_scan_and_huge_windows_return() {
        let text = |start: &str, end: &str, every: &str, acc: u64| {
            format!(
                "[[phase]]\nwhat = \"grow\"\nfrom = 0.5\nto = 0.6\nstart = \"{start}\"\nend = \"{end}\"\nevery = \"{every}\"\naccumulate = {acc}\n"
            )
        };
        let phase = |start: &str, end: &str, every: &str, acc: u64| {
            let cfg: CompressConfig = toml::from_str(&text(start, end, every, acc)).unwrap();
            cfg.validate().unwrap().phases.remove(0)
        };
        // The definition, step by step: some firing within [step, step + accumulate).
        let scan = |p: &Phase, step: u64, acc: u64| (step..step + acc).any(|s| p.fires_at(s, 7));
        for (start, end, every) in [
            ("0 steps", "50 steps", "1 steps"),
            ("3 steps", "40 steps", "5 steps"),
            ("10 steps", "12 steps", "7 steps"),
            ("1 epochs", "5 epochs", "2 epochs"),
        ] {
            for acc in [1, 2, 4, 5, 6, 13] {
                let p = phase(start, end, every, acc);
                for step in 0..60 {
                    assert_eq!(
                        p.accumulates_at(step, 7),
                        scan(&p, step, acc),
                        "{start}..{end} every {every}, acc {acc}, step {step}"
                    );
                }
            }
        }
        let huge = phase("100 steps", "200 steps", "50 steps", 1_000_000_000_000);
        assert!(huge.accumulates_at(0, 7) && huge.accumulates_at(200, 7));
        assert!(!huge.accumulates_at(201, 7) && !huge.accumulates_at(u64::MAX - 1, 7));
    }

    #[test]
    fn grow_accumulates_before_firing() {
        let s = parse(
            r#"
[[phase]]
what = "grow"
from = 0.5
to = 0.8
start = "200 steps"
end = "400 steps"
every = "100 steps"
accumulate = 10
curve = "linear"
"#,
        )
        .unwrap();
        let p = &s.phases[0];
        assert!(p.accumulates_at(191, 1) && p.accumulates_at(200, 1) && !p.accumulates_at(190, 1));
        assert!((p.density_at(300, 1) - 0.65).abs() < 1e-12);
    }

    #[test]
    fn impossible_schedules_are_named() {
        let bad = |from: &str, to: &str| parse(&AGP.replace(from, to)).unwrap_err();
        assert!(bad("to = 0.1", "to = 1.5").contains("to must be in (0, 1]"));
        assert!(bad("what = \"prune\"", "what = \"shrink\"").contains("shrink"));
        assert!(bad("end = \"5 epochs\"", "end = \"0 epochs\"").contains("end is before start"));
        assert!(bad("every = \"100 steps\"", "every = \"100 minutes\"").contains("steps or epochs"));
        assert!(bad("to = 0.1", "to = 0.1\nspeed = 3").contains("speed"));
        assert!(bad("from = 1.0\nto = 0.1", "from = 0.1\nto = 0.5").contains("cannot raise"));
        let s = parse(AGP).unwrap();
        assert!(s
            .check_against(100, 300)
            .unwrap_err()
            .contains("after the run"));
        assert!(s.check_against(100, 3000).is_ok());
    }
}
