//! The flow config (`symbiont compress --config FILE`): which target, which training recipe,
//! which baseline sets the accuracy bar, how the latency table is obtained, the seed
//! architecture and each stage's length. Every value is checked before any training starts;
//! errors name the file and the `[section] key`.
//!
//! ```toml
//! [flow]
//! target = "cpu-sparse"          # cpu-dense | cpu-sparse
//! train = "ptb-small.toml"       # training recipe ([data], [optim], [run]), relative to this file
//! sizing = "frontier"            # frontier | as-is | multiple:N (the ablations)
//! tolerance = 0.0                # allowed relative validation-perplexity loss against the baseline
//! # budget_ms = 2.0              # latency-budget mode: widest seed layer within this many ms
//!
//! [baseline]
//! from = "reported"              # train (the recipe's own model, trained as stage 00) |
//! valid_ppl = 117.18             # checkpoint (path = RUN) | reported (valid_ppl, test_ppl)
//! test_ppl = 113.29
//!
//! [profile]
//! hidden = "32:512:32"           # widths to measure (or table = "FILE.json" to reuse one)
//! densities = [1.0, 0.25, 0.1]   # cpu-sparse: the density axis of the table
//!
//! [seed]
//! arch = "hlstm"                 # hlstm | lstm
//! widths = [200]                 # wanted width per layer (sized by the rule); len = layers
//! gate_hidden = 200              # H-LSTM gate width
//! density = 0.5                  # random sparse seed (1 = dense)
//!
//! [grow]                         # optional: gradient growth back to `to`
//! epochs = 2
//! to = 1.0
//!
//! [prune]                        # optional: magnitude pruning steps while accuracy holds
//! densities = [0.5, 0.3, 0.2]
//! epochs = 1                     # per step
//!
//! [units]                        # optional: remove weak hidden units, then snap up the widths
//! keep = 0.75
//! epochs = 1
//! retrain_epochs = 1
//!
//! [finish]
//! epochs = 2
//! densities = [0.1, 0.05]        # cpu-sparse: further pruning steps while accuracy holds
//! ```
//! Every training stage also takes `lr`, `decay_start`, `decay` (the recipe's optimizer
//! learning rate and the Zaremba step decay, counted in the stage's own epochs; default: the
//! recipe's lr, no decay) and `steps` (end the stage after this many optimizer steps instead of
//! whole epochs: demo runs).

use crate::sizing::SizingRule;
use crate::FlowError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use train::TrainConfig;

/// The whole file, as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    pub flow: FlowSection,
    pub baseline: BaselineSection,
    #[serde(default)]
    pub profile: ProfileSection,
    pub seed: SeedSection,
    #[serde(default)]
    pub grow: Option<GrowSection>,
    #[serde(default)]
    pub prune: Option<PruneSection>,
    #[serde(default)]
    pub units: Option<UnitsSection>,
    pub finish: FinishSection,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSection {
    #[serde(default)]
    pub name: Option<String>,
    pub target: String,
    pub train: PathBuf,
    #[serde(default = "frontier")]
    pub sizing: String,
    #[serde(default)]
    pub tolerance: f64,
    #[serde(default)]
    pub budget_ms: Option<f64>,
    /// Streams of the second latency measurement (the deployment batch).
    #[serde(default = "ten")]
    pub deploy_batch: usize,
    /// Tokens per timed run.
    #[serde(default = "thirty_five")]
    pub latency_seq: usize,
    /// Threads of the timed runs (latency table and final measurements).
    #[serde(default = "one")]
    pub latency_threads: usize,
    /// Test perplexity streams (1 = the published protocol).
    #[serde(default = "one")]
    pub test_batch: usize,
}

fn frontier() -> String {
    "frontier".into()
}
fn ten() -> usize {
    10
}
fn thirty_five() -> usize {
    35
}
fn one() -> usize {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSection {
    pub from: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub valid_ppl: Option<f64>,
    #[serde(default)]
    pub test_ppl: Option<f64>,
    /// Where `reported` numbers come from (a doc section, a commit): copied into the report.
    #[serde(default)]
    pub source: Option<String>,
    /// `train` only: stop the baseline after this many steps instead of the recipe's epochs
    /// (demo runs).
    #[serde(default)]
    pub steps: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSection {
    #[serde(default)]
    pub table: Option<PathBuf>,
    #[serde(default)]
    pub hidden: Option<String>,
    #[serde(default)]
    pub densities: Option<Vec<f64>>,
    /// Seconds the measurement may take at most (0 = no limit).
    #[serde(default)]
    pub budget_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSection {
    pub arch: String,
    pub widths: Vec<usize>,
    #[serde(default)]
    pub gate_hidden: usize,
    #[serde(default = "one_f")]
    pub density: f64,
    /// `weights` or `weights+embeddings` (which tensors the masks cover).
    #[serde(default = "weights_and_embeddings")]
    pub tensors: String,
    /// Embedding width (default: the first layer's width).
    #[serde(default)]
    pub embedding: Option<usize>,
    /// `random` (a fresh model of these widths) or `baseline` (the trained baseline itself:
    /// the plain-pruning ablation; `arch`, `widths` and `gate_hidden` must then describe it).
    #[serde(default = "random")]
    pub init: String,
}

fn random() -> String {
    "random".into()
}

fn one_f() -> f64 {
    1.0
}
fn weights_and_embeddings() -> String {
    "weights+embeddings".into()
}

/// Length and learning rate of one training stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageLength {
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub steps: Option<u64>,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub decay_start: Option<usize>,
    #[serde(default)]
    pub decay: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrowSection {
    pub to: f64,
    #[serde(default = "fifty")]
    pub accumulate: usize,
    #[serde(flatten)]
    pub length: StageLength,
}

fn fifty() -> usize {
    50
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSection {
    pub densities: Vec<f64>,
    #[serde(flatten)]
    pub length: StageLength,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitsSection {
    pub keep: f64,
    #[serde(default)]
    pub retrain_epochs: Option<usize>,
    #[serde(default)]
    pub retrain_steps: Option<u64>,
    #[serde(flatten)]
    pub length: StageLength,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishSection {
    #[serde(default)]
    pub densities: Vec<f64>,
    #[serde(flatten)]
    pub length: StageLength,
}

/// The target a flow builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    CpuDense,
    CpuSparse,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::CpuDense => "cpu-dense",
            Target::CpuSparse => "cpu-sparse",
        }
    }
}

/// Where the accuracy bar comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Baseline {
    /// Train the recipe's own model first (stage 00).
    Train,
    /// An existing run or checkpoint folder.
    Checkpoint(PathBuf),
    /// Numbers measured elsewhere; the recipe's architecture is measured for latency.
    Reported {
        valid_ppl: f64,
        test_ppl: Option<f64>,
        source: String,
    },
}

/// A validated flow config.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    pub name: String,
    /// The file it came from (messages, the report).
    pub origin: String,
    pub file: FlowFile,
    pub target: Target,
    pub sizing: SizingRule,
    pub baseline: Baseline,
    /// The training recipe ([data], [optim], [run]; its [model] is the baseline's).
    pub train: TrainConfig,
}

fn invalid(origin: &str, msg: String) -> FlowError {
    FlowError::Invalid(format!("{origin}: {msg}"))
}

impl FlowConfig {
    /// Reads and validates `path`; relative paths inside are resolved against its folder.
    pub fn from_file(path: &Path) -> Result<FlowConfig, FlowError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FlowError::Invalid(format!("{}: cannot read: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("flow");
        Self::from_toml(&text, &path.display().to_string(), base, stem)
    }

    /// Parses and validates `text`; `base` resolves relative paths, `stem` is the default name.
    pub fn from_toml(
        text: &str,
        origin: &str,
        base: &Path,
        stem: &str,
    ) -> Result<FlowConfig, FlowError> {
        let mut file: FlowFile =
            toml::from_str(text).map_err(|e| invalid(origin, e.to_string()))?;
        // Absolute, so that the copy a run keeps (`RUN/flow.toml`) reads back the same files.
        let resolve = |p: &Path| {
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            std::path::absolute(&p).unwrap_or(p)
        };
        file.flow.train = resolve(&file.flow.train);
        if let Some(t) = &file.profile.table {
            file.profile.table = Some(resolve(t));
        }
        if let Some(p) = &file.baseline.path {
            file.baseline.path = Some(resolve(p));
        }
        let train = TrainConfig::from_file(&file.flow.train)
            .map_err(|e| invalid(origin, format!("[flow] train: {e}")))?;
        let target = match file.flow.target.as_str() {
            "cpu-dense" => Target::CpuDense,
            "cpu-sparse" => Target::CpuSparse,
            t => {
                return Err(invalid(
                    origin,
                    format!("[flow] target = \"{t}\": expected \"cpu-dense\" or \"cpu-sparse\""),
                ))
            }
        };
        let sizing: SizingRule = file
            .flow
            .sizing
            .parse()
            .map_err(|e| invalid(origin, format!("[flow] sizing: {e}")))?;
        let baseline = baseline(&file.baseline, origin, &resolve)?;
        let cfg = FlowConfig {
            name: file.flow.name.clone().unwrap_or_else(|| stem.to_string()),
            origin: origin.to_string(),
            target,
            sizing,
            baseline,
            train,
            file,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), FlowError> {
        let err = |m: String| invalid(&self.origin, m);
        let f = &self.file;
        if !(f.flow.tolerance.is_finite() && f.flow.tolerance >= 0.0) {
            return Err(err(format!(
                "[flow] tolerance must be ≥ 0, got {}",
                f.flow.tolerance
            )));
        }
        if let Some(b) = f.flow.budget_ms {
            if !(b.is_finite() && b > 0.0) {
                return Err(err(format!("[flow] budget_ms must be > 0, got {b}")));
            }
        }
        for (key, v) in [
            ("deploy_batch", f.flow.deploy_batch),
            ("latency_seq", f.flow.latency_seq),
            ("latency_threads", f.flow.latency_threads),
            ("test_batch", f.flow.test_batch),
        ] {
            if v == 0 {
                return Err(err(format!("[flow] {key} must be ≥ 1")));
            }
        }
        self.validate_seed()?;
        self.validate_profile()?;
        if let Some(g) = &f.grow {
            check_density(&self.origin, "[grow] to", g.to)?;
            if g.to < f.seed.density {
                return Err(err(format!(
                    "[grow] to = {} is below [seed] density = {}: growth cannot lower density",
                    g.to, f.seed.density
                )));
            }
            if g.accumulate == 0 {
                return Err(err("[grow] accumulate must be ≥ 1".into()));
            }
            check_length(&self.origin, "[grow]", &g.length)?;
        }
        if let Some(p) = &f.prune {
            check_densities(
                &self.origin,
                "[prune] densities",
                &p.densities,
                Steps::Decreasing,
            )?;
            check_length(&self.origin, "[prune]", &p.length)?;
        }
        if let Some(u) = &f.units {
            if !(u.keep > 0.0 && u.keep < 1.0) {
                return Err(err(format!(
                    "[units] keep must be in (0, 1), got {}",
                    u.keep
                )));
            }
            check_length(&self.origin, "[units]", &u.length)?;
            let retrain = StageLength {
                epochs: u.retrain_epochs,
                steps: u.retrain_steps,
                ..u.length.clone()
            };
            check_length(
                &self.origin,
                "[units] (retrain_epochs / retrain_steps)",
                &retrain,
            )?;
        }
        check_densities(
            &self.origin,
            "[finish] densities",
            &f.finish.densities,
            Steps::OptionalDecreasing,
        )?;
        if self.target == Target::CpuDense && !f.finish.densities.is_empty() {
            return Err(err(
                "[finish] densities is for cpu-sparse (a dense target gains no time from zeros)"
                    .into(),
            ));
        }
        check_length(&self.origin, "[finish]", &f.finish.length)?;
        Ok(())
    }

    fn validate_seed(&self) -> Result<(), FlowError> {
        let err = |m: String| invalid(&self.origin, m);
        let s = &self.file.seed;
        match s.arch.as_str() {
            "lstm" if s.gate_hidden != 0 => {
                return Err(err("[seed] gate_hidden needs arch = \"hlstm\"".into()))
            }
            "hlstm" if s.gate_hidden == 0 => {
                return Err(err("[seed] arch = \"hlstm\" needs gate_hidden ≥ 1".into()))
            }
            "lstm" | "hlstm" => {}
            a => {
                return Err(err(format!(
                    "[seed] arch = \"{a}\": expected \"lstm\" or \"hlstm\""
                )))
            }
        }
        if s.widths.is_empty() || s.widths.contains(&0) {
            return Err(err(
                "[seed] widths needs one width ≥ 1 per layer, e.g. [200]".into(),
            ));
        }
        check_density(&self.origin, "[seed] density", s.density)?;
        if s.embedding == Some(0) {
            return Err(err("[seed] embedding must be ≥ 1".into()));
        }
        match s.init.as_str() {
            "random" => {
                if self.file.grow.is_none() {
                    return Err(err(
                        "[seed] init = \"random\" needs a [grow] stage to train the seed".into(),
                    ));
                }
            }
            "baseline" => {
                if matches!(self.baseline, Baseline::Reported { .. }) {
                    return Err(err(
                        "[seed] init = \"baseline\" needs a trained baseline ([baseline] from = \"train\" or \"checkpoint\")".into(),
                    ));
                }
            }
            i => {
                return Err(err(format!(
                    "[seed] init = \"{i}\": expected \"random\" or \"baseline\""
                )))
            }
        }
        if s.tensors != "weights" && s.tensors != "weights+embeddings" {
            return Err(err(format!(
                "[seed] tensors = \"{}\": expected \"weights\" or \"weights+embeddings\"",
                s.tensors
            )));
        }
        Ok(())
    }

    fn validate_profile(&self) -> Result<(), FlowError> {
        let err = |m: String| invalid(&self.origin, m);
        let p = &self.file.profile;
        match (&p.table, &p.hidden) {
            (Some(t), _) if !t.is_file() => {
                return Err(err(format!(
                    "[profile] table = {}: no such file",
                    t.display()
                )))
            }
            (None, None) => {
                return Err(err(
                    "[profile] needs hidden = \"FROM:TO:STEP\" (widths to measure) or table = FILE"
                        .into(),
                ))
            }
            (None, Some(h)) => {
                profile::grid::parse_sizes("[profile] hidden", h)
                    .map_err(|e| err(e.to_string()))?;
            }
            _ => {}
        }
        if let Some(d) = &p.densities {
            check_densities(&self.origin, "[profile] densities", d, Steps::AnyOrder)?;
            if self.target == Target::CpuDense && d.iter().any(|&x| x < 1.0) {
                return Err(err(
                    "[profile] densities below 1 need target = \"cpu-sparse\"".into(),
                ));
            }
        }
        if !(p.budget_s.is_finite() && p.budget_s >= 0.0) {
            return Err(err(format!(
                "[profile] budget_s must be ≥ 0, got {}",
                p.budget_s
            )));
        }
        Ok(())
    }

    /// The accuracy bar once the baseline's validation perplexity is known.
    pub fn valid_limit(&self, baseline_valid: f64) -> f64 {
        baseline_valid * (1.0 + self.file.flow.tolerance)
    }
}

fn baseline(
    b: &BaselineSection,
    origin: &str,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Baseline, FlowError> {
    let unused = |keys: &[(&str, bool)]| -> Result<(), FlowError> {
        match keys.iter().find(|(_, set)| *set) {
            Some((k, _)) => Err(invalid(
                origin,
                format!("[baseline] {k} does not apply to from = \"{}\"", b.from),
            )),
            None => Ok(()),
        }
    };
    match b.from.as_str() {
        "train" if b.steps == Some(0) => {
            Err(invalid(origin, "[baseline] steps must be ≥ 1".into()))
        }
        "train" => {
            unused(&[
                ("path", b.path.is_some()),
                ("valid_ppl", b.valid_ppl.is_some()),
                ("test_ppl", b.test_ppl.is_some()),
            ])?;
            Ok(Baseline::Train)
        }
        "checkpoint" | "reported" if b.steps.is_some() => Err(invalid(
            origin,
            format!("[baseline] steps does not apply to from = \"{}\"", b.from),
        )),
        "checkpoint" => {
            unused(&[
                ("valid_ppl", b.valid_ppl.is_some()),
                ("test_ppl", b.test_ppl.is_some()),
            ])?;
            let p = b.path.as_deref().ok_or_else(|| {
                invalid(origin, "[baseline] from = \"checkpoint\" needs path".into())
            })?;
            let p = resolve(p);
            train::checkpoint::Checkpoint::locate(&p)
                .map_err(|e| invalid(origin, format!("[baseline] path: {e}")))?;
            Ok(Baseline::Checkpoint(p))
        }
        "reported" => {
            unused(&[("path", b.path.is_some())])?;
            let valid_ppl = b.valid_ppl.ok_or_else(|| {
                invalid(
                    origin,
                    "[baseline] from = \"reported\" needs valid_ppl".into(),
                )
            })?;
            for (k, v) in [("valid_ppl", Some(valid_ppl)), ("test_ppl", b.test_ppl)] {
                if let Some(v) = v {
                    if !(v.is_finite() && v >= 1.0) {
                        return Err(invalid(
                            origin,
                            format!("[baseline] {k} must be a perplexity ≥ 1, got {v}"),
                        ));
                    }
                }
            }
            Ok(Baseline::Reported {
                valid_ppl,
                test_ppl: b.test_ppl,
                source: b.source.clone().unwrap_or_default(),
            })
        }
        f => Err(invalid(
            origin,
            format!(
                "[baseline] from = \"{f}\": expected \"train\", \"checkpoint\" or \"reported\""
            ),
        )),
    }
}

fn check_density(origin: &str, key: &str, d: f64) -> Result<(), FlowError> {
    if d > 0.0 && d <= 1.0 {
        Ok(())
    } else {
        Err(invalid(origin, format!("{key} must be in (0, 1], got {d}")))
    }
}

/// Whether a density list is a sequence of pruning steps (required, each lower) or a grid.
#[derive(Clone, Copy, PartialEq)]
enum Steps {
    Decreasing,
    OptionalDecreasing,
    AnyOrder,
}

fn check_densities(origin: &str, key: &str, ds: &[f64], kind: Steps) -> Result<(), FlowError> {
    let required = kind == Steps::Decreasing;
    if required && ds.is_empty() {
        return Err(invalid(origin, format!("{key} needs at least one density")));
    }
    for &d in ds {
        check_density(origin, key, d)?;
    }
    if kind != Steps::AnyOrder && ds.windows(2).any(|w| w[1] >= w[0]) {
        return Err(invalid(
            origin,
            format!("{key} must decrease (each step prunes further), got {ds:?}"),
        ));
    }
    Ok(())
}

fn check_length(origin: &str, section: &str, l: &StageLength) -> Result<(), FlowError> {
    let err = |m: String| invalid(origin, format!("{section} {m}"));
    match (l.epochs, l.steps) {
        (Some(_), Some(_)) => return Err(err("epochs and steps: give one".into())),
        (None, None) => return Err(err("epochs (or steps) is missing".into())),
        (Some(0), _) | (_, Some(0)) => return Err(err("epochs/steps must be ≥ 1".into())),
        _ => {}
    }
    if let Some(lr) = l.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(err(format!("lr must be > 0, got {lr}")));
        }
    }
    if let Some(d) = l.decay {
        if !(d > 0.0 && d <= 1.0) {
            return Err(err(format!("decay must be in (0, 1], got {d}")));
        }
    }
    Ok(())
}
