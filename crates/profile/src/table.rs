//! Latency tables: the versioned JSON format (docs/profiler.md), building one from a sweep,
//! loading with validation, and merging tables.

use crate::provenance::{utc_now, Host};
use crate::sweep::{SweepOutcome, SweepStatus};
use crate::{Point, ProfileError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The `format` field of every table.
pub const FORMAT: &str = "symbiont-latency-table";
/// The table format version this crate writes and reads.
pub const VERSION: u32 = 1;

/// A latency table: measured configurations grouped by target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTable {
    pub format: String,
    pub version: u32,
    /// False when the sweep was interrupted, ran out of budget before its passes, or failed.
    #[serde(default = "yes")]
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_reason: Option<String>,
    pub targets: Vec<Target>,
}

fn yes() -> bool {
    true
}

/// One target: an engine (name, version, details) on one device, measured on one host.
/// Targets are identified by (label, engine name, engine version, device).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A name for legends and merges; defaults to the engine name.
    pub label: String,
    pub engine: EngineRecord,
    /// CPU model or GPU (or phone) name.
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    /// UTC, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbiont_version: Option<String>,
    /// The sweep's timing settings (informational, free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    pub points: Vec<TablePoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineRecord {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// One measured configuration and its statistics. Only the configuration fields without a
/// default and `median_ms` are required, so tables written by other tools import easily.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablePoint {
    pub hidden: usize,
    /// Missing (or 0): the hidden size.
    #[serde(default)]
    pub input: usize,
    #[serde(default)]
    pub gate_width: usize,
    pub layers: usize,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub dtype: String,
    #[serde(default = "one")]
    pub density: f64,
    /// Missing: "dense" at density 1, "auto" below.
    #[serde(default)]
    pub format: String,
    pub median_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p10_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    /// ~95% confidence interval of the median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_low_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_high_ms: Option<f64>,
    /// Robust relative spread of single samples (IQR / 1.349 / median).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<f64>,
    /// Timed samples behind the statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetitions: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visits: Option<usize>,
    /// Whether the median's CI reached the sweep's tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged: Option<bool>,
    /// Verification of frontier points: true passed, false failed (analysis leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_median_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_ms: Option<Vec<f64>>,
}

fn one() -> f64 {
    1.0
}

impl TablePoint {
    /// A point with only a median (other statistics unknown).
    pub fn new(point: &Point, median_ms: f64) -> TablePoint {
        TablePoint {
            hidden: point.hidden,
            input: point.input,
            gate_width: point.gate_width,
            layers: point.layers,
            batch: point.batch,
            seq: point.seq,
            threads: point.threads,
            dtype: point.dtype.clone(),
            density: point.density,
            format: point.format.clone(),
            median_ms,
            p10_ms: None,
            p90_ms: None,
            ci_low_ms: None,
            ci_high_ms: None,
            noise: None,
            repetitions: None,
            visits: None,
            converged: None,
            verified: None,
            verify_median_ms: None,
            samples_ms: None,
        }
    }

    pub fn point(&self) -> Point {
        Point {
            hidden: self.hidden,
            input: self.input,
            gate_width: self.gate_width,
            layers: self.layers,
            batch: self.batch,
            seq: self.seq,
            threads: self.threads,
            dtype: self.dtype.clone(),
            density: self.density,
            format: self.format.clone(),
        }
    }

    fn normalize(&mut self) {
        if self.input == 0 {
            self.input = self.hidden;
        }
        if self.format.is_empty() {
            self.format = if self.density >= 1.0 { "dense" } else { "auto" }.into();
        }
    }
}

impl Target {
    /// The identity used to merge tables.
    pub fn key(&self) -> (&str, &str, &str, &str) {
        (
            &self.label,
            &self.engine.name,
            &self.engine.version,
            &self.device,
        )
    }

    /// The measured point of exactly this configuration.
    pub fn find(&self, point: &Point) -> Option<&TablePoint> {
        self.points.iter().find(|p| p.point() == *point)
    }

    /// `label`, else the engine name, and a description of the device.
    pub fn describe(&self) -> String {
        let v = if self.engine.version.is_empty() {
            String::new()
        } else {
            format!(" {}", self.engine.version)
        };
        format!(
            "{} ({}{} on {})",
            self.label, self.engine.name, v, self.device
        )
    }

    /// The target a sweep measured: provenance of this machine and the engine, statistics of
    /// every configuration with at least one sample.
    pub fn from_sweep(outcome: &SweepOutcome, label: Option<String>) -> Target {
        let info = &outcome.engine;
        let host = Host::detect();
        let opts = &outcome.options;
        let points = outcome
            .records
            .iter()
            .filter_map(|r| {
                let s = r.summary()?;
                let mut tp = TablePoint::new(&r.point, s.median);
                tp.p10_ms = Some(s.p10);
                tp.p90_ms = Some(s.p90);
                tp.ci_low_ms = Some(s.ci_low);
                tp.ci_high_ms = Some(s.ci_high);
                tp.noise = Some(s.noise);
                tp.repetitions = Some(s.repetitions);
                tp.visits = Some(s.visits);
                tp.converged = Some(s.rel_ci() <= opts.rel_tol);
                tp.verified = r.verified;
                if !r.verify_samples.is_empty() {
                    let mut v = r.verify_samples.clone();
                    v.sort_by(f64::total_cmp);
                    tp.verify_median_ms = Some(crate::stats::quantile(&v, 0.5));
                }
                if opts.keep_samples {
                    tp.samples_ms = Some(r.samples.clone());
                }
                Some(tp)
            })
            .collect();
        let mut settings = serde_json::to_value(opts).expect("options serialize");
        settings["axis"] = opts.axis.name().into();
        settings["elapsed_s"] = outcome.elapsed_s.into();
        settings["visits"] = outcome.visits.into();
        Target {
            label: label.unwrap_or_else(|| info.name.clone()),
            engine: EngineRecord {
                name: info.name.clone(),
                version: info.version.clone(),
                details: info.details.clone(),
            },
            device: info
                .device
                .clone()
                .unwrap_or_else(|| host.cpu_model.clone()),
            host: Some(host),
            measured_at: Some(utc_now()),
            symbiont_version: Some(env!("CARGO_PKG_VERSION").into()),
            settings: Some(settings),
            points,
        }
    }
}

/// What to do when a merge meets the same configuration of the same target twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDuplicate {
    Error,
    KeepFirst,
    KeepLast,
}

impl LatencyTable {
    pub fn new(targets: Vec<Target>) -> LatencyTable {
        LatencyTable {
            format: FORMAT.into(),
            version: VERSION,
            complete: true,
            incomplete_reason: None,
            targets,
        }
    }

    /// The table of one sweep; incomplete unless the sweep completed.
    pub fn from_sweep(outcome: &SweepOutcome, label: Option<String>) -> LatencyTable {
        let mut t = LatencyTable::new(vec![Target::from_sweep(outcome, label)]);
        match &outcome.status {
            SweepStatus::Complete => {}
            SweepStatus::Interrupted => t.mark_incomplete("interrupted (SIGINT or SIGTERM)".into()),
            SweepStatus::Failed(e) => t.mark_incomplete(format!("engine failed: {e}")),
        }
        t
    }

    pub fn mark_incomplete(&mut self, reason: String) {
        self.complete = false;
        self.incomplete_reason = Some(match self.incomplete_reason.take() {
            Some(r) => format!("{r}; {reason}"),
            None => reason,
        });
    }

    pub fn point_count(&self) -> usize {
        self.targets.iter().map(|t| t.points.len()).sum()
    }

    /// Reads a table: JSON, or CSV when the file name ends in `.csv`. Validates it; errors name
    /// the file and the field.
    pub fn load(path: &Path) -> Result<LatencyTable, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::io(path, e))?;
        let file = path.display().to_string();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            crate::csv::from_csv(&text, &file)
        } else {
            LatencyTable::from_json(&text, &file)
        }
    }

    /// Parses and validates JSON text; `file` names it in errors.
    pub fn from_json(text: &str, file: &str) -> Result<LatencyTable, ProfileError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            ProfileError::table(
                file,
                format!("line {} column {}", e.line(), e.column()),
                format!("not JSON: {e}"),
            )
        })?;
        match value.get("format") {
            Some(serde_json::Value::String(f)) if f == FORMAT => {}
            Some(other) => {
                return Err(ProfileError::table(
                    file,
                    "format",
                    format!("{other} is not \"{FORMAT}\""),
                ))
            }
            None => {
                return Err(ProfileError::table(
                    file,
                    "format",
                    format!("missing: not a latency table (expected \"format\": \"{FORMAT}\")"),
                ))
            }
        }
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) if v > u64::from(VERSION) => {
                return Err(ProfileError::table(
                    file,
                    "version",
                    format!("{v} is newer than this symbiont reads ({VERSION})"),
                ))
            }
            _ => {
                return Err(ProfileError::table(
                    file,
                    "version",
                    format!("missing or not {VERSION}"),
                ))
            }
        }
        let mut table: LatencyTable = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ProfileError::table(file, path, e.into_inner().to_string())
        })?;
        for t in &mut table.targets {
            t.points.iter_mut().for_each(TablePoint::normalize);
        }
        table.validate(file)?;
        Ok(table)
    }

    /// Writes pretty JSON (through a temporary file, so a crash never leaves half a table).
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let text = serde_json::to_string_pretty(self).expect("tables serialize") + "\n";
        write_atomic(path, &text)
    }

    pub fn save_csv(&self, path: &Path) -> Result<(), ProfileError> {
        write_atomic(path, &crate::csv::to_csv(self))
    }

    /// Checks what serde cannot: positive sizes, densities in (0, 1], positive finite
    /// latencies, ordered statistics, unique targets and configurations.
    pub fn validate(&self, file: &str) -> Result<(), ProfileError> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(ProfileError::table(
                file,
                "format",
                format!("expected {FORMAT} version {VERSION}"),
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            let at = |f: &str| format!("targets[{i}].{f}");
            for (name, v) in [
                ("label", &t.label),
                ("engine.name", &t.engine.name),
                ("device", &t.device),
            ] {
                if v.trim().is_empty() {
                    return Err(ProfileError::table(file, at(name), "is empty"));
                }
            }
            if let Some(k) = self.targets[..i].iter().position(|o| o.key() == t.key()) {
                return Err(ProfileError::table(
                    file,
                    at("label"),
                    format!("same label, engine and device as targets[{k}]"),
                ));
            }
            // Configurations seen, by a hashable key: comparing each point with all earlier
            // ones took minutes at 100 000 points (docs/benchmarks.md, "Frontier and plot").
            let mut seen: std::collections::HashMap<PointKey, usize> =
                std::collections::HashMap::with_capacity(t.points.len());
            for (j, p) in t.points.iter().enumerate() {
                check_point(p).map_err(|(f, why)| {
                    ProfileError::table(file, at(&format!("points[{j}].{f}")), why)
                })?;
                let cfg = p.point();
                if let Some(k) = seen.insert(PointKey::of(&cfg), j) {
                    return Err(ProfileError::table(
                        file,
                        at(&format!("points[{j}]")),
                        format!("same configuration as points[{k}] ({})", cfg.describe()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Adds `other`'s targets: a target with the same (label, engine, version, device) gets the
    /// other's points; others are kept apart. Two same-named targets whose engine details or
    /// hosts differ are ambiguous and refused.
    pub fn merge(
        &mut self,
        other: LatencyTable,
        on_duplicate: OnDuplicate,
    ) -> Result<(), ProfileError> {
        if !other.complete {
            self.mark_incomplete(
                other
                    .incomplete_reason
                    .unwrap_or_else(|| "a merged table is incomplete".into()),
            );
        }
        for t in other.targets {
            let Some(s) = self.targets.iter_mut().find(|s| s.key() == t.key()) else {
                self.targets.push(t);
                continue;
            };
            let same_host = match (&s.host, &t.host) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if s.engine.details != t.engine.details || !same_host {
                let what = if same_host { "engine details" } else { "hosts" };
                return Err(ProfileError::Merge(format!(
                    "two targets are called {} but their {what} differ; give one another label",
                    t.describe()
                )));
            }
            for p in t.points {
                match s.points.iter().position(|q| q.point() == p.point()) {
                    None => s.points.push(p),
                    Some(j) => match on_duplicate {
                        OnDuplicate::Error => {
                            return Err(ProfileError::Merge(format!(
                                "{} measured {} in both tables (choose which to keep)",
                                s.describe(),
                                p.point().describe()
                            )))
                        }
                        OnDuplicate::KeepFirst => {}
                        OnDuplicate::KeepLast => s.points[j] = p,
                    },
                }
            }
        }
        Ok(())
    }
}

fn check_point(p: &TablePoint) -> Result<(), (&'static str, String)> {
    for (f, v) in [
        ("hidden", p.hidden),
        ("input", p.input),
        ("layers", p.layers),
        ("batch", p.batch),
        ("seq", p.seq),
        ("threads", p.threads),
    ] {
        if v == 0 {
            return Err((f, "must be positive".into()));
        }
    }
    if p.dtype.trim().is_empty() {
        return Err(("dtype", "is empty".into()));
    }
    if !(p.density > 0.0 && p.density <= 1.0) {
        return Err(("density", format!("{} is not in (0, 1]", p.density)));
    }
    if !(p.median_ms.is_finite() && p.median_ms > 0.0) {
        return Err((
            "median_ms",
            format!("{} is not a positive number of milliseconds", p.median_ms),
        ));
    }
    let m = p.median_ms;
    let slack = 1e-9 * m;
    let below = [("p10_ms", p.p10_ms), ("ci_low_ms", p.ci_low_ms)];
    let above = [("p90_ms", p.p90_ms), ("ci_high_ms", p.ci_high_ms)];
    for (f, v) in below
        .into_iter()
        .chain(above)
        .chain([("verify_median_ms", p.verify_median_ms)])
    {
        if let Some(v) = v {
            if !(v.is_finite() && v >= 0.0) {
                return Err((f, format!("{v} is not a non-negative number")));
            }
        }
    }
    for (f, v) in below {
        if v.is_some_and(|v| v > m + slack) {
            return Err((
                f,
                format!("{} exceeds median_ms {m}", v.unwrap_or_default()),
            ));
        }
    }
    for (f, v) in above {
        if v.is_some_and(|v| v < m - slack) {
            return Err((
                f,
                format!("{} is below median_ms {m}", v.unwrap_or_default()),
            ));
        }
    }
    if p.noise.is_some_and(|n| !(n.is_finite() && n >= 0.0)) {
        return Err(("noise", "must be a non-negative number".into()));
    }
    if p.repetitions == Some(0) {
        return Err(("repetitions", "must be positive".into()));
    }
    if let Some(s) = &p.samples_ms {
        if let Some(v) = s.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err((
                "samples_ms",
                format!("{v} is not a positive number of milliseconds"),
            ));
        }
    }
    Ok(())
}

/// A [`Point`] as a hash key, equal exactly when the points are (`==`; density compared as a
/// number, so 0.0 and -0.0 agree; validated points hold no NaN).
#[derive(PartialEq, Eq, Hash)]
struct PointKey {
    sizes: [usize; 7],
    dtype: String,
    density_bits: u64,
    format: String,
}

impl PointKey {
    fn of(p: &Point) -> PointKey {
        PointKey {
            sizes: [
                p.hidden,
                p.input,
                p.gate_width,
                p.layers,
                p.batch,
                p.seq,
                p.threads,
            ],
            dtype: p.dtype.clone(),
            density_bits: if p.density == 0.0 {
                0
            } else {
                p.density.to_bits()
            },
            format: p.format.clone(),
        }
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ProfileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ProfileError::io(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| ProfileError::io(&tmp, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| ProfileError::io(&tmp, e))?;
        // Synced before the rename, and the folder after it: a crash soon after leaves the old
        // table or the whole new one, never an empty file under the table's name.
        f.sync_all().map_err(|e| ProfileError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| ProfileError::io(path, e))?;
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ProfileError::io(dir, e))?;
    }
    Ok(())
}
