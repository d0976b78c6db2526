//! `symbiont profile`, `frontier` and `plot`: the CLI over the `profile` crate.

use clap::Args;
use profile::report::{report, ReportOptions};
use profile::{
    Axis, CommandEngine, Engine, FakeEngine, FrontierOptions, Grid, LatencyTable, OnDuplicate,
    Sizes, SweepOptions, SweepStatus,
};
use std::error::Error;
use std::path::{Path, PathBuf};

use crate::signals;
use std::time::Duration;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Set by Ctrl-C: the sweep stops after the current run and writes what it measured.

#[derive(Args)]
pub struct ProfileArgs {
    /// Engine to time: cpu-dense, cpu-sparse, cpu-speech (a DeepSpeech2-style model's deployment
    /// plan; --seq counts input frames of 10 ms), command (with --command), or
    /// fake:CURVE[:key=value…], a deterministic test engine (CURVE: steps, saw, linear,
    /// quadratic; keys: noise, seed, sleep, and the curve's numbers). May be left out to only
    /// merge or convert tables (--merge).
    #[arg(long)]
    pub engine: Option<String>,
    /// Command template for --engine command, run with `sh -c` once per visit of a
    /// configuration. Placeholders {hidden} {input} {gate_width} {layers} {batch} {seq}
    /// {threads} {dtype} {density} {format} are replaced by the values, which are also in the
    /// environment as SYMBIONT_HIDDEN, SYMBIONT_INPUT, …; SYMBIONT_TARGET_S says how long to
    /// time. The command must print a line {"samples_ms": [..]} or {"median_ms": x}
    /// (docs/profiler.md).
    #[arg(long)]
    pub command: Option<String>,
    /// Start the command once and send it one JSON configuration per line on stdin; it answers
    /// each with one JSON result line (the template then takes no placeholders).
    #[arg(long)]
    pub persistent: bool,
    /// Seconds one command run may take before it is killed.
    #[arg(long, default_value_t = 600.0)]
    pub command_timeout: f64,
    /// Engine version to record, e.g. "torch 2.11" (external commands cannot be asked).
    #[arg(long)]
    pub engine_version: Option<String>,
    /// Device name to record instead of this machine's CPU model (a GPU name, a phone model);
    /// `--device` is where symbiont itself runs.
    #[arg(long)]
    pub device_name: Option<String>,
    /// Name of this target in the table, in legends and merges (default: the engine name).
    #[arg(long)]
    pub label: Option<String>,
    /// Hidden sizes: inclusive ranges A:B:STEP and/or a comma list, e.g. 32:2048:16 (127 sizes)
    /// or 256,512,1024.
    #[arg(long)]
    pub hidden: Option<String>,
    /// Input sizes; "hidden" (the default) makes each equal to its hidden size.
    #[arg(long, default_value = "hidden")]
    pub input: String,
    /// H-LSTM gate widths M (0 = plain LSTM; "hidden" makes M equal to the hidden size).
    #[arg(long, default_value = "0")]
    pub gate_width: String,
    /// Stacked layers (list or range).
    #[arg(long, default_value = "1")]
    pub layers: String,
    /// Batch sizes (list or range).
    #[arg(long, default_value = "1")]
    pub batch: String,
    /// Sequence lengths, time steps per run (list or range).
    #[arg(long, default_value = "35")]
    pub seq: String,
    /// Thread counts to sweep over, e.g. 1,2 (default: the global --threads, else every
    /// logical CPU).
    #[arg(long)]
    pub thread_counts: Option<String>,
    /// Data types, e.g. f32 or f32,bf16 (engine-defined).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Weight densities (fractions of non-zero weights in (0, 1]), e.g. 1,0.5,0.25 or
    /// 0.1:1:0.1.
    #[arg(long, default_value = "1")]
    pub density: String,
    /// Weight formats (engine-defined, e.g. dense, csr, bsr, auto). Default: dense at
    /// density 1, auto below.
    #[arg(long)]
    pub format: Option<String>,
    /// Passes over every configuration, each in a new shuffled order.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// Most visits per configuration: passes after --passes revisit only configurations whose
    /// median is not yet within --ci-tolerance.
    #[arg(long, default_value_t = 8)]
    pub max_passes: usize,
    /// Target half-width of the median's ~95% confidence interval, relative to the median.
    #[arg(long, default_value_t = 0.01)]
    pub ci_tolerance: f64,
    /// Milliseconds of timed runs per visit (default 25; for --engine command, the time the
    /// command is asked to spend, default 200).
    #[arg(long)]
    pub visit_ms: Option<f64>,
    /// Fewest timed runs per visit (in-process engines).
    #[arg(long, default_value_t = 2)]
    pub min_runs: usize,
    /// Untimed warm-up per visit: at least --warmup-runs runs and this many milliseconds.
    #[arg(long, default_value_t = 10.0)]
    pub warmup_ms: f64,
    /// Fewest untimed warm-up runs per visit.
    #[arg(long, default_value_t = 1)]
    pub warmup_runs: usize,
    /// Seconds of timed runs after which a configuration gets no more adaptive visits.
    #[arg(long, default_value_t = 3.0)]
    pub point_cap: f64,
    /// Seconds for the whole sweep: adaptive passes stop early enough for the verification
    /// to fit (the first --passes passes always run). 0: no limit.
    #[arg(long, default_value_t = 240.0)]
    pub budget: f64,
    /// Seed of the shuffled visiting order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not re-measure the frontier points at the end.
    #[arg(long)]
    pub no_verify: bool,
    /// A frontier point fails verification when re-measured more than this fraction slower.
    #[arg(long, default_value_t = 0.05)]
    pub verify_tolerance: f64,
    /// Axis of the frontier that is verified.
    #[arg(long, default_value = "hidden")]
    pub axis: String,
    /// Store every timed sample in the table.
    #[arg(long)]
    pub keep_samples: bool,
    /// Merge these tables (JSON or CSV, e.g. measured on another machine) into the output;
    /// repeatable. Without --engine, only merges.
    #[arg(long)]
    pub merge: Vec<PathBuf>,
    /// When a merge meets the same configuration of the same target twice: error, keep-first
    /// or keep-last.
    #[arg(long, default_value = "error", value_parser = ["error", "keep-first", "keep-last"])]
    pub on_duplicate: String,
    /// Also write the table as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Do not draw the progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Where the latency table (JSON) is written.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct FrontierArgs {
    /// Latency table (JSON, or CSV) written by `symbiont profile` or imported.
    pub table: PathBuf,
    /// Print JSON: {"frontier": [points with "hidden", "median_ms", …], "curves": [...]}.
    #[arg(long)]
    pub json: bool,
    /// The axis of the curves; every other field stays fixed along a curve.
    #[arg(long, default_value = "hidden")]
    pub axis: String,
    /// Relative latency tolerance: a size leaves the frontier when a larger frontier size is
    /// at most this fraction slower.
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Noise margin in standard errors of the two medians (0: compare medians only).
    #[arg(long, default_value_t = 1.0)]
    pub noise_sigmas: f64,
    /// Relative tolerance of plateau segmentation (max/min latency within a plateau).
    #[arg(long, default_value_t = 0.05)]
    pub plateau_tolerance: f64,
    /// Also report the largest size whose median latency is within this many milliseconds.
    #[arg(long)]
    pub budget_ms: Option<f64>,
    /// Also report snap(SIZE): the largest size no slower than SIZE.
    #[arg(long)]
    pub snap: Option<f64>,
    /// Keep points that failed verification.
    #[arg(long)]
    pub include_unverified: bool,
    /// Compare with the frontier of another table (e.g. a repeated sweep): the configurations
    /// on both, on one only, and the agreement (common / union).
    #[arg(long)]
    pub compare: Option<PathBuf>,
}

#[derive(Args)]
pub struct PlotArgs {
    /// Latency tables to overlay.
    #[arg(required = true)]
    pub tables: Vec<PathBuf>,
    /// Output file (.svg; PNG is not supported).
    #[arg(long)]
    pub out: PathBuf,
    /// The x axis.
    #[arg(long, default_value = "hidden")]
    pub axis: String,
    /// Chart title.
    #[arg(long)]
    pub title: Option<String>,
    /// Latency scale: auto (log when latencies span more than 20x), log or linear.
    #[arg(long, default_value = "auto", value_parser = ["auto", "log", "linear"])]
    pub y_scale: String,
    /// Width in pixels.
    #[arg(long, default_value_t = 1000)]
    pub width: u32,
    /// Height in pixels.
    #[arg(long, default_value_t = 600)]
    pub height: u32,
    /// Do not mark the frontier.
    #[arg(long)]
    pub no_frontier: bool,
    /// Do not shade plateaus.
    #[arg(long)]
    pub no_plateaus: bool,
    /// Frontier tolerance (as for `symbiont frontier`).
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Frontier noise margin in standard errors (as for `symbiont frontier`).
    #[arg(long, default_value_t = 1.0)]
    pub noise_sigmas: f64,
    /// Relative tolerance of the shaded plateaus.
    #[arg(long, default_value_t = 0.05)]
    pub plateau_tolerance: f64,
    /// Keep points that failed verification.
    #[arg(long)]
    pub include_unverified: bool,
}

/// The CPU engines (symbiont's dense and sparse inference plans).
fn cpu_engine(kind: &str) -> std::result::Result<Box<dyn Engine>, String> {
    flow::engines::cpu_engine(kind)
}

pub fn profile(args: ProfileArgs, threads: Option<usize>) -> Result<u8> {
    let on_duplicate = match args.on_duplicate.as_str() {
        "keep-first" => OnDuplicate::KeepFirst,
        "keep-last" => OnDuplicate::KeepLast,
        _ => OnDuplicate::Error,
    };
    // Read the tables to merge first: a typo there should not cost a sweep.
    let merges = args
        .merge
        .iter()
        .map(|p| LatencyTable::load(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut code = 0;
    let mut failure = None;
    let mut table = match &args.engine {
        Some(name) => {
            let (t, c, f) = run_sweep(&args, name, threads)?;
            code = c;
            failure = f;
            t
        }
        None if !merges.is_empty() => LatencyTable::new(Vec::new()),
        None => return Err("profile needs --engine (or --merge to only merge tables)".into()),
    };
    for m in merges {
        table.merge(m, on_duplicate)?;
    }
    table.save(&args.out)?;
    if let Some(csv) = &args.csv {
        table.save_csv(csv)?;
    }
    let state = if table.complete {
        "complete"
    } else {
        "INCOMPLETE"
    };
    eprintln!(
        "wrote {} ({} configurations, {} targets, {state})",
        args.out.display(),
        table.point_count(),
        table.targets.len()
    );
    match failure {
        Some(e) => Err(format!(
            "{e} (the configurations measured before are in {})",
            args.out.display()
        )
        .into()),
        None => Ok(code),
    }
}

/// Runs the sweep; returns the table, the exit code (128 + the signal after SIGINT or SIGTERM)
/// and an engine failure.
fn run_sweep(
    args: &ProfileArgs,
    name: &str,
    threads: Option<usize>,
) -> Result<(LatencyTable, u8, Option<String>)> {
    let hidden = args
        .hidden
        .as_deref()
        .ok_or("profile needs --hidden (e.g. --hidden 32:2048:16)")?;
    let grid = grid(args, hidden, threads)?;
    let points = grid.points()?;
    let is_command = name == "command";
    let opts = SweepOptions {
        warmup_runs: args.warmup_runs,
        warmup_ms: args.warmup_ms,
        visit_ms: args
            .visit_ms
            .unwrap_or(if is_command { 200.0 } else { 25.0 }),
        min_runs: args.min_runs,
        min_passes: args.passes,
        max_passes: args.max_passes,
        rel_tol: args.ci_tolerance,
        point_cap_ms: args.point_cap * 1e3,
        budget_s: (args.budget > 0.0).then_some(args.budget),
        seed: args.seed,
        verify: !args.no_verify,
        verify_tol: args.verify_tolerance,
        axis: Axis::parse(&args.axis)?,
        keep_samples: args.keep_samples,
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..SweepOptions::default()
    };
    opts.validate()?;
    if args.budget < 0.0 || !args.budget.is_finite() {
        return Err(format!(
            "invalid --budget `{}`: seconds, 0 for no limit",
            args.budget
        )
        .into());
    }
    let mut engine = make_engine(args, name, opts.visit_ms)?;
    signals::install(
        "stopping after this run and writing what was measured",
        "without writing the table",
    )?;
    eprintln!(
        "profiling {} configurations with {name}: {} passes (up to {}), CI target ±{}%, budget {}",
        points.len(),
        opts.min_passes,
        opts.max_passes,
        opts.rel_tol * 100.0,
        opts.budget_s.map_or("none".into(), |b| format!("{b} s"))
    );
    let outcome = profile::sweep(engine.as_mut(), points, &opts, &signals::INTERRUPTED);
    let verified = outcome
        .records
        .iter()
        .filter(|r| r.verified.is_some())
        .count();
    let failed = outcome
        .records
        .iter()
        .filter(|r| r.verified == Some(false))
        .count();
    eprintln!(
        "{} visits in {:.1} s; {} configurations above the CI target; {verified} frontier points re-measured, {failed} failed",
        outcome.visits,
        outcome.elapsed_s,
        outcome.unsettled()
    );
    let mut table = LatencyTable::from_sweep(&outcome, args.label.clone());
    if matches!(name, "cpu-dense" | "cpu-sparse" | speech::engine::NAME) {
        // symbiont's own kernels ran: record the levels they and the gemm crate ran at.
        for host in table.targets.iter_mut().filter_map(|t| t.host.as_mut()) {
            host.isa = Some(kernels::isa::active().name().into());
            host.gemm_isa = Some(kernels::isa::gemm_level().name().into());
        }
    }
    Ok(match outcome.status {
        SweepStatus::Complete => (table, 0, None),
        SweepStatus::Interrupted => (table, signals::exit_code(), None),
        SweepStatus::Failed(e) => (table, 2, Some(e.to_string())),
    })
}

fn grid(args: &ProfileArgs, hidden: &str, threads: Option<usize>) -> Result<Grid> {
    use profile::grid::{parse_reals, parse_sizes};
    let thread_counts = match (&args.thread_counts, threads) {
        (Some(_), Some(_)) => {
            return Err("give either --threads or --thread-counts, not both".into())
        }
        (Some(t), None) => parse_sizes("--thread-counts", t)?,
        (None, Some(n)) => vec![n],
        (None, None) => vec![std::thread::available_parallelism().map_or(1, |n| n.get())],
    };
    let words = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect()
    };
    Ok(Grid {
        hidden: parse_sizes("--hidden", hidden)?,
        input: Sizes::parse("--input", &args.input)?,
        gate_width: Sizes::parse("--gate-width", &args.gate_width)?,
        layers: parse_sizes("--layers", &args.layers)?,
        batch: parse_sizes("--batch", &args.batch)?,
        seq: parse_sizes("--seq", &args.seq)?,
        threads: thread_counts,
        dtype: words(&args.dtype),
        density: parse_reals("--density", &args.density)?,
        format: args.format.as_deref().map(words),
    })
}

fn make_engine(args: &ProfileArgs, name: &str, visit_ms: f64) -> Result<Box<dyn Engine>> {
    if args.command.is_some() && name != "command" {
        return Err("--command needs --engine command".into());
    }
    if args.persistent && name != "command" {
        return Err("--persistent needs --engine command".into());
    }
    Ok(match name {
        "cpu-dense" | "cpu-sparse" => cpu_engine(name)?,
        speech::engine::NAME => Box::new(speech::engine::SpeechEngine::default()),
        "command" => {
            let template = args
                .command
                .as_deref()
                .ok_or("--engine command needs --command TEMPLATE")?;
            if !(args.command_timeout.is_finite() && args.command_timeout > 0.0) {
                return Err(format!(
                    "invalid --command-timeout `{}`: a positive number of seconds",
                    args.command_timeout
                )
                .into());
            }
            Box::new(
                CommandEngine::new(template)?
                    .persistent(args.persistent)?
                    .timeout(Duration::from_secs_f64(args.command_timeout))
                    .target_ms(visit_ms)
                    .provenance(args.engine_version.clone(), args.device_name.clone()),
            )
        }
        _ => match name.strip_prefix("fake:") {
            Some(spec) => Box::new(FakeEngine::parse(spec)?),
            None => {
                return Err(format!(
                "unknown engine `{name}` (cpu-dense, cpu-sparse, cpu-speech, command, fake:CURVE)"
            )
                .into())
            }
        },
    })
}

fn frontier_options(tolerance: f64, noise_sigmas: f64) -> Result<FrontierOptions> {
    for (flag, v) in [("--tolerance", tolerance), ("--noise-sigmas", noise_sigmas)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("invalid {flag} `{v}`: a non-negative number").into());
        }
    }
    Ok(FrontierOptions {
        rel_tol: tolerance,
        noise_sigmas,
    })
}

pub fn frontier(args: FrontierArgs) -> Result<u8> {
    let table = LatencyTable::load(&args.table)?;
    let opts = ReportOptions {
        axis: Axis::parse(&args.axis)?,
        frontier: frontier_options(args.tolerance, args.noise_sigmas)?,
        plateau_tol: non_negative("--plateau-tolerance", args.plateau_tolerance)?,
        include_unverified: args.include_unverified,
        budget_ms: args.budget_ms,
        snap: args.snap,
    };
    let r = report(&table, &opts);
    if r.curves.is_empty() {
        return Err(format!("{}: no measured points", args.table.display()).into());
    }
    let comparison = match &args.compare {
        Some(p) => Some(profile::report::compare(
            &r,
            &report(&LatencyTable::load(p)?, &opts),
        )),
        None => None,
    };
    if args.json {
        let mut v = serde_json::to_value(&r)?;
        if let Some(c) = &comparison {
            v["comparison"] = serde_json::to_value(c)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", r.to_text());
        if let Some(c) = &comparison {
            let list = |v: &[serde_json::Value]| {
                v.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "compared with {}: {} frontier points in common, agreement {:.1}% (common / union); only here: [{}]; only there: [{}]",
                args.compare.as_ref().map_or(String::new(), |p| p.display().to_string()),
                c.common,
                c.agreement * 100.0,
                list(&c.only_first),
                list(&c.only_second)
            );
        }
    }
    Ok(0)
}

fn non_negative(flag: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("invalid {flag} `{v}`: a non-negative number").into())
    }
}

pub fn plot(args: PlotArgs) -> Result<u8> {
    let axis = Axis::parse(&args.axis)?;
    let mut tables = Vec::new();
    for p in &args.tables {
        tables.push((table_name(p), LatencyTable::load(p)?));
    }
    let series = profile::plot::series_from_tables(&tables, axis, args.include_unverified);
    let frontier = frontier_options(args.tolerance, args.noise_sigmas)?;
    let opts = profile::plot::PlotOptions {
        axis,
        title: args.title.clone(),
        width: args.width.clamp(200, 10_000),
        height: args.height.clamp(150, 10_000),
        log_y: match args.y_scale.as_str() {
            "log" => Some(true),
            "linear" => Some(false),
            _ => None,
        },
        frontier: (!args.no_frontier).then_some(frontier),
        plateau_tol: (!args.no_plateaus)
            .then_some(non_negative("--plateau-tolerance", args.plateau_tolerance)?),
    };
    profile::plot::write_svg(&args.out, &series, &opts)?;
    eprintln!("wrote {} ({} curves)", args.out.display(), series.len());
    Ok(0)
}

fn table_name(p: &Path) -> String {
    p.file_stem().map_or_else(
        || p.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}
