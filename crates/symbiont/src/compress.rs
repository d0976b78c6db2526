//! `symbiont compress`: the symbiotic flow for one target, from a flow config (or a run folder to
//! continue). Argument handling and printing around `flow::pipeline::run_flow`.

use crate::commands::set_threads;
use crate::signals::{self, INTERRUPTED};
use flow::config::FlowConfig;
use flow::measure::Timing;
use flow::pipeline::{run_flow, FlowOptions, FlowOutcome};
use flow::record::{FlowRecord, ModelRecord};
use std::error::Error;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[derive(clap::Args)]
pub struct CompressArgs {
    /// Flow config (TOML), e.g. configs/demo-symbiotic.toml. Optional with --resume (the run's
    /// own flow.toml is used; when both are given they must be the same flow).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run folder (default: runs/<config name>). Holds flow.json, table.json, stages/ and final/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder where it stopped (finished stages are not run again).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Folder with ptb.{train,valid,test}.txt (default: as for train).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print flow.json on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// Do not draw progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

const FLOW_TOML: &str = "flow.toml";

/// The run folder and its config: a new run, or the one in `--resume`.
fn setup(args: &CompressArgs) -> Result<(FlowConfig, PathBuf)> {
    // The name travels inside the run's own copy (`RUN/flow.toml` would otherwise name it "flow").
    let named = |mut c: FlowConfig| {
        c.file.flow.name = Some(c.name.clone());
        c
    };
    let given = args
        .config
        .as_deref()
        .map(FlowConfig::from_file)
        .transpose()?
        .map(named);
    let run_dir = match (&args.resume, &args.out, &given) {
        (Some(r), Some(o), _) if r != o => {
            return Err("--resume DIR continues DIR: drop --out or give the same folder".into())
        }
        (Some(r), _, _) => r.clone(),
        (None, Some(o), _) => o.clone(),
        (None, None, Some(c)) => PathBuf::from("runs").join(&c.name),
        (None, None, None) => {
            return Err("give --config FILE (or --resume DIR to continue a run)".into())
        }
    };
    let stored_path = run_dir.join(FLOW_TOML);
    let stored = if stored_path.is_file() {
        let mut c = FlowConfig::from_file(&stored_path)?;
        if c.file.flow.name.is_none() {
            // A run folder written before names were stored: the folder's name.
            if let Some(n) = run_dir.file_name().and_then(|n| n.to_str()) {
                c.name = n.to_string();
            }
        }
        Some(named(c))
    } else {
        None
    };
    let cfg = match (given, stored) {
        (Some(g), Some(s)) => {
            if toml::to_string(&g.file)? != toml::to_string(&s.file)? {
                return Err(format!(
                    "{} holds a run of another flow config ({}); continue it with --resume {} alone, or pick another --out",
                    run_dir.display(),
                    stored_path.display(),
                    run_dir.display()
                )
                .into());
            }
            g
        }
        (Some(_), None) if args.resume.is_some() => {
            return Err(format!(
                "--resume {}: no {FLOW_TOML} there (not a compress run); start it with --out",
                run_dir.display()
            )
            .into());
        }
        (Some(g), None) => g,
        (None, Some(s)) => s,
        (None, None) => {
            return Err(format!(
                "--resume {}: no {FLOW_TOML} there (not a compress run)",
                run_dir.display()
            )
            .into())
        }
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    model::checkpoint::write_atomic(&stored_path, toml::to_string(&cfg.file)?.as_bytes())?;
    Ok((cfg, run_dir))
}

pub fn compress(args: CompressArgs, threads: Option<usize>) -> Result<u8> {
    let (cfg, run_dir) = setup(&args)?;
    set_threads(threads, cfg.train.run.threads)?;
    let data_dir = cfg.train.resolve_data_dir(args.data_dir.as_deref());
    let corpus = train::ptb::load_ptb(&data_dir, cfg.train.data.verify_checksums)?;
    signals::install(
        "saving the stage's checkpoint after this step",
        "without saving",
    )?;
    eprintln!(
        "flow {} for {} in {} ({} threads)",
        cfg.name,
        cfg.target.name(),
        run_dir.display(),
        rayon::current_num_threads()
    );
    let opts = FlowOptions {
        run_dir: run_dir.clone(),
        interrupted: &INTERRUPTED,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        timing: Timing::default(),
        stage_timing: Timing {
            warmup: 2,
            min_reps: 10,
            min_secs: 0.3,
        },
    };
    match run_flow(&cfg, &corpus, &opts)? {
        FlowOutcome::Interrupted => {
            eprintln!(
                "interrupted; continue with: symbiont compress --resume {}",
                run_dir.display()
            );
            Ok(signals::exit_code())
        }
        FlowOutcome::Finished(record) => {
            print_summary(&record, &run_dir);
            if args.json {
                println!("{}", serde_json::to_string(&*record)?);
            }
            Ok(0)
        }
    }
}

fn ppl(v: Option<f64>) -> String {
    v.map_or("—".into(), |p| format!("{p:.2}"))
}

fn line(m: &ModelRecord) -> String {
    let lat = m
        .latency
        .first()
        .map_or("—".into(), |l| format!("{:.3} ms", l.median_ms));
    format!(
        "hidden {:?}, {} non-zero of {} params ({} / {} without embedding+softmax), valid {}, test {}, batch-1 latency {lat}",
        m.hidden,
        m.params.nonzero,
        m.params.total,
        m.params.nonzero_core,
        m.params.total_core,
        ppl(m.valid_ppl),
        ppl(m.test_ppl),
    )
}

fn print_summary(r: &FlowRecord, run_dir: &Path) {
    if let Some(b) = &r.baseline {
        eprintln!("baseline: {}", line(b));
    }
    for s in &r.stages {
        eprintln!(
            "{:<16} {} {}",
            s.name,
            if s.accepted { " " } else { "x" },
            line(&s.model)
        );
    }
    if let (Some(f), Some(b)) = (&r.final_model, &r.baseline) {
        eprintln!("final:    {}", line(f));
        let ratio = |a: usize, b: usize| a as f64 / b.max(1) as f64;
        let lat = |m: &ModelRecord| m.latency.first().map(|l| l.median_ms);
        eprintln!(
            "vs baseline: {:.1}x fewer non-zero params ({:.1}x without embedding+softmax), {} lower batch-1 latency",
            ratio(b.params.nonzero, f.params.nonzero),
            ratio(b.params.nonzero_core, f.params.nonzero_core),
            match (lat(b), lat(f)) {
                (Some(x), Some(y)) => format!("{:.2}x", x / y),
                _ => "—".into(),
            }
        );
    }
    eprintln!(
        "final model: {}; report: symbiont report {} --out {}/report",
        run_dir.join("final/model.safetensors").display(),
        run_dir.display(),
        run_dir.display()
    );
}
