//! Sweeps: every configuration visited in seeded shuffled order over several passes, adaptive
//! extra passes for points whose median is not yet pinned down, a time budget, Ctrl-C, and the
//! final re-measurement of the frontier points.

use crate::analysis::{Curve, CurvePoint, FrontierOptions};
use crate::axis::{group_curves, Axis};
use crate::rng::Rng;
use crate::stats::{summarize, Summary};
use crate::{Engine, EngineInfo, Point, ProfileError};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How a sweep times. The defaults are sized for the method's reference sweep (127 hidden sizes
/// 32..2048, ~0.1 to ~150 ms each) to finish within 5 minutes on a 2-core CPU; see
/// docs/profiler.md for the reasoning.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SweepOptions {
    /// Untimed runs at the start of every visit: at least this many…
    pub warmup_runs: usize,
    /// …and at least this much time (ms, by the engine's own samples).
    pub warmup_ms: f64,
    /// Timed runs per visit: until this much time (ms) is sampled…
    pub visit_ms: f64,
    /// …and at least this many runs.
    pub min_runs: usize,
    /// A hard stop for one visit (tiny configurations would otherwise take thousands of runs).
    pub max_runs_per_visit: usize,
    /// Passes over every configuration.
    pub min_passes: usize,
    /// Most visits a configuration gets; the passes after `min_passes` visit only the points
    /// whose median's confidence interval is wider than `rel_tol`.
    pub max_passes: usize,
    /// Target half-width of the ~95% confidence interval of the median, relative to it.
    pub rel_tol: f64,
    /// Timed milliseconds after which a point gets no more adaptive visits.
    pub point_cap_ms: f64,
    /// Seconds for the whole sweep: adaptive passes stop early enough that the verification
    /// fits. The first `min_passes` passes always run (Ctrl-C stops them). `None`: no limit.
    pub budget_s: Option<f64>,
    /// Seed of the visiting order.
    pub seed: u64,
    /// Re-measure the frontier points at the end (one more visit each).
    pub verify: bool,
    /// A frontier point fails verification when its re-measured median exceeds the sweep's by
    /// more than this fraction (or twice its relative CI, if larger).
    pub verify_tol: f64,
    /// The axis and the frontier definition used for verification.
    #[serde(skip)]
    pub axis: Axis,
    #[serde(skip)]
    pub frontier: FrontierOptions,
    /// Keep every sample in the table.
    #[serde(skip)]
    pub keep_samples: bool,
    /// Draw a progress bar on stderr.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            warmup_runs: 1,
            warmup_ms: 10.0,
            visit_ms: 25.0,
            min_runs: 2,
            max_runs_per_visit: 2000,
            min_passes: 3,
            max_passes: 8,
            rel_tol: 0.01,
            point_cap_ms: 3000.0,
            budget_s: Some(240.0),
            seed: 0,
            verify: true,
            verify_tol: 0.05,
            axis: Axis::Hidden,
            frontier: FrontierOptions::default(),
            keep_samples: false,
            progress: false,
        }
    }
}

impl SweepOptions {
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |flag: &str, v: String, why: &str| Err(ProfileError::spec(flag, &v, why));
        if self.min_passes == 0 {
            return bad("--passes", "0".into(), "at least one pass is needed");
        }
        if self.max_passes < self.min_passes {
            return bad(
                "--max-passes",
                self.max_passes.to_string(),
                "must be at least --passes",
            );
        }
        if self.min_runs == 0 || self.max_runs_per_visit < self.min_runs {
            return bad(
                "--min-runs",
                self.min_runs.to_string(),
                "must be at least 1 (and below the per-visit cap)",
            );
        }
        // The names are the `symbiont profile` flags that set these options.
        for (flag, v) in [
            ("--ci-tolerance", self.rel_tol),
            ("--visit-ms", self.visit_ms),
            ("--point-cap", self.point_cap_ms),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(flag, v.to_string(), "must be a positive number");
            }
        }
        for (flag, v) in [
            ("--warmup-ms", self.warmup_ms),
            ("--verify-tolerance", self.verify_tol),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(flag, v.to_string(), "must be zero or a positive number");
            }
        }
        if let Some(b) = self.budget_s {
            if !(b.is_finite() && b > 0.0) {
                return bad(
                    "--budget",
                    b.to_string(),
                    "must be a positive number of seconds (0 on the CLI: none)",
                );
            }
        }
        Ok(())
    }
}

/// Everything measured for one configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct PointRecord {
    pub point: Point,
    /// Timed samples of all visits (ms).
    pub samples: Vec<f64>,
    /// The median of each visit.
    pub visit_medians: Vec<f64>,
    /// Wall-clock seconds of each visit (prepare, warm-up and timed runs).
    pub visit_secs: Vec<f64>,
    /// Samples of the verification visit.
    pub verify_samples: Vec<f64>,
    /// `Some(true)` verified, `Some(false)` failed verification, `None` not verified.
    pub verified: Option<bool>,
}

impl PointRecord {
    fn new(point: Point) -> Self {
        PointRecord {
            point,
            samples: Vec::new(),
            visit_medians: Vec::new(),
            visit_secs: Vec::new(),
            verify_samples: Vec::new(),
            verified: None,
        }
    }

    pub fn summary(&self) -> Option<Summary> {
        (!self.samples.is_empty()).then(|| summarize(&self.samples, &self.visit_medians))
    }

    fn timed_ms(&self) -> f64 {
        self.samples.iter().sum()
    }
}

/// How a sweep ended.
#[derive(Debug)]
pub enum SweepStatus {
    Complete,
    /// Stopped by the stop flag (Ctrl-C); what was measured is kept.
    Interrupted,
    /// An engine failed; what was measured before is kept.
    Failed(ProfileError),
}

#[derive(Debug)]
pub struct SweepOutcome {
    pub engine: EngineInfo,
    pub records: Vec<PointRecord>,
    pub status: SweepStatus,
    pub elapsed_s: f64,
    pub visits: usize,
    pub options: SweepOptions,
}

impl SweepOutcome {
    /// Configurations whose median did not reach the tolerance (capped or out of budget).
    pub fn unsettled(&self) -> usize {
        self.records
            .iter()
            .filter(|r| {
                r.summary()
                    .is_some_and(|s| s.rel_ci() > self.options.rel_tol)
            })
            .count()
    }
}

/// Times every configuration of `points` with `engine`. Never panics on engine errors: they end
/// the sweep with `SweepStatus::Failed`, keeping what was measured. Setting `stop` ends it after
/// the current run with `SweepStatus::Interrupted`.
pub fn sweep(
    engine: &mut dyn Engine,
    points: Vec<Point>,
    opts: &SweepOptions,
    stop: &AtomicBool,
) -> SweepOutcome {
    let info = engine.info();
    let n = points.len();
    let mut s = Sweeper {
        engine,
        self_timed: info.self_timed,
        opts,
        stop,
        start: Instant::now(),
        rng: Rng::new(opts.seed),
        bar: progress_bar(opts.progress, (n * opts.min_passes) as u64),
        records: points.into_iter().map(PointRecord::new).collect(),
        visits: 0,
    };
    let result = s
        .passes()
        .and_then(|_| s.adaptive())
        .and_then(|_| s.verify());
    s.bar.finish_and_clear();
    SweepOutcome {
        engine: info,
        status: match result {
            Ok(()) => SweepStatus::Complete,
            Err(Halt::Stop) => SweepStatus::Interrupted,
            Err(Halt::Fail(e)) => SweepStatus::Failed(e),
        },
        elapsed_s: s.start.elapsed().as_secs_f64(),
        visits: s.visits,
        options: opts.clone(),
        records: s.records,
    }
}

enum Halt {
    Stop,
    Fail(ProfileError),
}

struct Sweeper<'a> {
    engine: &'a mut dyn Engine,
    self_timed: bool,
    opts: &'a SweepOptions,
    stop: &'a AtomicBool,
    start: Instant,
    rng: Rng,
    bar: ProgressBar,
    records: Vec<PointRecord>,
    visits: usize,
}

impl Sweeper<'_> {
    fn passes(&mut self) -> Result<(), Halt> {
        for pass in 0..self.opts.min_passes {
            self.bar
                .set_message(format!("pass {}/{}", pass + 1, self.opts.min_passes));
            let mut order: Vec<usize> = (0..self.records.len()).collect();
            self.rng.shuffle(&mut order);
            for i in order {
                self.sample(i)?;
            }
        }
        Ok(())
    }

    fn adaptive(&mut self) -> Result<(), Halt> {
        for pass in self.opts.min_passes..self.opts.max_passes {
            let mut need: Vec<usize> = (0..self.records.len())
                .filter(|&i| self.needs_more(i))
                .collect();
            if need.is_empty() {
                return Ok(());
            }
            self.rng.shuffle(&mut need);
            self.bar.inc_length(need.len() as u64);
            self.bar
                .set_message(format!("pass {} ({} unsettled)", pass + 1, need.len()));
            let reserve = self.verify_estimate_s();
            for i in need {
                if self
                    .opts
                    .budget_s
                    .is_some_and(|b| self.start.elapsed().as_secs_f64() + reserve > b)
                {
                    self.bar.set_length(self.bar.position());
                    return Ok(());
                }
                self.sample(i)?;
            }
        }
        Ok(())
    }

    fn needs_more(&self, i: usize) -> bool {
        let r = &self.records[i];
        r.visit_medians.len() < self.opts.max_passes
            && r.timed_ms() < self.opts.point_cap_ms
            && r.summary().is_some_and(|s| s.rel_ci() > self.opts.rel_tol)
    }

    /// Seconds one more visit of every current frontier point is expected to take.
    fn verify_estimate_s(&self) -> f64 {
        if !self.opts.verify {
            return 0.0;
        }
        self.frontier()
            .into_iter()
            .map(|i| {
                let v = &self.records[i].visit_secs;
                v.iter().sum::<f64>() / v.len().max(1) as f64
            })
            .sum()
    }

    fn verify(&mut self) -> Result<(), Halt> {
        if !self.opts.verify {
            return Ok(());
        }
        // A point that fails drops out, which can put others on the frontier: check those too.
        for _round in 0..3 {
            let mut todo: Vec<usize> = self
                .frontier()
                .into_iter()
                .filter(|&i| self.records[i].verified.is_none())
                .collect();
            if todo.is_empty() {
                break;
            }
            self.rng.shuffle(&mut todo);
            self.bar.inc_length(todo.len() as u64);
            self.bar
                .set_message(format!("verifying {} frontier points", todo.len()));
            for i in todo {
                // One slow visit can be a neighbour's burst of work: a point fails only when a
                // second re-measurement is slow too.
                let ok = self.check(i)? || {
                    self.bar.inc_length(1);
                    self.check(i)?
                };
                self.records[i].verified = Some(ok);
            }
        }
        Ok(())
    }

    /// One verification visit: whether its median stays within the tolerance of the sweep's.
    fn check(&mut self, i: usize) -> Result<bool, Halt> {
        let samples = self.visit(i)?;
        let r = &mut self.records[i];
        let s = r.summary().expect("frontier points have samples");
        let allowed = self.opts.verify_tol.max(2.0 * s.rel_ci());
        let ok = median(&samples) <= s.median * (1.0 + allowed);
        r.verify_samples.extend(samples);
        Ok(ok)
    }

    /// Record indices on the frontier of their curve (points that failed verification, or have
    /// no samples yet, left out).
    fn frontier(&self) -> Vec<usize> {
        let live: Vec<usize> = (0..self.records.len())
            .filter(|&i| {
                !self.records[i].samples.is_empty() && self.records[i].verified != Some(false)
            })
            .collect();
        let points: Vec<Point> = live
            .iter()
            .map(|&i| self.records[i].point.clone())
            .collect();
        let mut out = Vec::new();
        for curve in group_curves(&points, self.opts.axis) {
            let cps: Vec<CurvePoint> = curve
                .iter()
                .map(|&k| {
                    let s = self.records[live[k]]
                        .summary()
                        .expect("live points have samples");
                    CurvePoint::from_ci(
                        self.opts.axis.get(&points[k]),
                        s.median,
                        s.ci_low,
                        s.ci_high,
                    )
                })
                .collect();
            let c = Curve::new(cps).expect("grouped points have distinct axis values");
            out.extend(
                c.frontier(&self.opts.frontier)
                    .into_iter()
                    .map(|j| live[curve[j]]),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Visits point `i` and returns its samples (never empty).
    fn visit(&mut self, i: usize) -> Result<Vec<f64>, Halt> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(Halt::Stop);
        }
        let point = self.records[i].point.clone();
        let samples = match self.measure(&point) {
            Ok(s) => s,
            // A command killed by the same Ctrl-C reports an error: it is the interruption.
            Err(_) if self.stop.load(Ordering::SeqCst) => return Err(Halt::Stop),
            Err(e) => return Err(Halt::Fail(e)),
        };
        self.visits += 1;
        self.bar.inc(1);
        if samples.is_empty() {
            return Err(Halt::Stop);
        }
        Ok(samples)
    }

    /// A visit whose samples join the point's statistics.
    fn sample(&mut self, i: usize) -> Result<(), Halt> {
        let t0 = Instant::now();
        let samples = self.visit(i)?;
        let r = &mut self.records[i];
        r.visit_medians.push(median(&samples));
        r.visit_secs.push(t0.elapsed().as_secs_f64());
        r.samples.extend(samples);
        Ok(())
    }

    /// One visit: prepare, warm up, timed runs. Returns the timed samples (possibly fewer than
    /// planned, or none, when the stop flag was set meanwhile).
    fn measure(&mut self, point: &Point) -> Result<Vec<f64>, ProfileError> {
        let mut prepared = self.engine.prepare(point)?;
        let o = self.opts;
        let mut run = |stop: &AtomicBool| -> Result<Option<Vec<f64>>, ProfileError> {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let s = prepared.run()?;
            if s.is_empty() || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(ProfileError::Engine(format!(
                    "the engine returned unusable latency samples {s:?} for {}",
                    point.describe()
                )));
            }
            Ok(Some(s))
        };
        if !self.self_timed {
            let (mut n, mut spent) = (0, 0.0);
            while n < o.max_runs_per_visit && (n < o.warmup_runs || spent < o.warmup_ms) {
                let Some(s) = run(self.stop)? else {
                    return Ok(Vec::new());
                };
                spent += s.iter().sum::<f64>();
                n += 1;
            }
        }
        let mut samples = Vec::new();
        let (mut n, mut spent) = (0, 0.0);
        while let Some(s) = run(self.stop)? {
            spent += s.iter().sum::<f64>();
            samples.extend(s);
            n += 1;
            let enough = spent >= o.visit_ms && n >= o.min_runs;
            if self.self_timed || enough || n >= o.max_runs_per_visit {
                break;
            }
        }
        Ok(samples)
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    crate::stats::quantile(&sorted, 0.5)
}

fn progress_bar(enabled: bool, len: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} visits {elapsed_precise} ETA {eta_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
