//! `symbiont`: the command-line interface (a thin layer over the library crates).
//!
//! Exit codes: 0 success; 1 a check failed (`gradcheck`); 2 usage or runtime error (bad flags, a
//! `SYMBIONT_ISA` level unknown or missing from this CPU, missing or corrupt data, invalid config,
//! non-finite loss); 130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM after saving a checkpoint (or
//! the table measured so far).

mod commands;
mod compress;
mod devices;
mod export;
mod inference;
mod peak;
mod profiling;
mod report;
mod signals;
mod speech_cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "symbiont",
    version,
    about = "Compact, accurate and fast LSTMs: training engine and tools"
)]
struct Cli {
    /// Worker threads for GEMMs and element-wise kernels (default: the config's [run] threads,
    /// else all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where to run: `cpu`, or `cuda:N` for NVIDIA GPU N (`cuda` = `cuda:0`; needs a build with
    /// `--features cuda`, an NVIDIA driver and that GPU).
    #[arg(long, global = true, default_value = "cpu")]
    device: kernels::device::Device,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a config file (or continue one with --resume): a word language model
    /// on PTB, or a DeepSpeech2 speech model on AN4 (`[model] arch = "deepspeech"`).
    Train(TrainArgs),
    /// The symbiotic flow for one target: latency table, seed sized by the frontier, grow,
    /// accuracy-constrained pruning, unit removal and snap, the target's finish; writes
    /// RUN/final/model.safetensors and RUN/flow.json (resumable with --resume RUN).
    Compress(compress::CompressArgs),
    /// Perplexity of a trained LM checkpoint on a PTB split, or WER / CER of a speech checkpoint
    /// on an AN4 split.
    Eval(EvalArgs),
    /// Transcribe 16 kHz mono WAV files with a trained speech model: one line per file.
    Transcribe(TranscribeArgs),
    /// Run the f64 finite-difference gradient checks of every layer and the whole model.
    /// Exits 1 when any check fails.
    Gradcheck(GradcheckArgs),
    /// Parameter counts of a checkpoint (total, non-zero, without embedding/softmax), per tensor
    /// and per layer.
    Inspect(InspectArgs),
    /// Remove the hidden units a structured (`units`) schedule silenced: writes a smaller dense
    /// checkpoint computing the same function.
    Compact(CompactArgs),
    /// Write a trained word language model as model.safetensors and model.onnx (ONNX opset 17:
    /// int64 `tokens` (seq, batch) to float `logits` (seq, batch, vocab) from a zero state).
    Export(export::ExportArgs),
    /// Logits of a word-language-model safetensors file (PyTorch `state_dict` names) for a token
    /// sequence, from a zero state, batch 1, through the prepared inference plan.
    Infer(inference::InferArgs),
    /// Time LSTM inference with the prepared plans: a model file or a synthetic configuration;
    /// median, p10, p90 latency, GB/s, GFLOP/s and the share of the memory-bandwidth floor.
    Bench(inference::BenchArgs),
    /// Sweep an engine over LSTM sizes and write a latency table (JSON).
    Profile(Box<profiling::ProfileArgs>),
    /// The frontier of a latency table: sizes worth using, plateaus, hysteresis strength.
    Frontier(profiling::FrontierArgs),
    /// Draw latency tables (latency against size, frontier and plateaus marked) as SVG.
    Plot(profiling::PlotArgs),
    /// The report of a `symbiont compress` run: report.md and a self-contained report.html
    /// (models, ratios against the baseline, latency, stages, charts) and the charts as SVG.
    Report(report::ReportArgs),
    /// Measure this machine's GEMM rate at the training shapes and its memory copy bandwidth
    /// (the limits benchmarks report against), and the inference kernels beside the gemm crate
    /// at the same shapes.
    Peak(PeakArgs),
    /// The instruction-set levels: detected, active (after SYMBIONT_ISA), supported, and the
    /// level the gemm crate runs at.
    Isa(IsaArgs),
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Experiment config (TOML), e.g. configs/ptb-small.toml. Optional with --resume (the
    /// checkpoint's own config is used); when both are given the file's config must describe the
    /// same architecture and optimizer, and its schedule and run settings apply from there on.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder with ptb.{train,valid,test}.txt (default: [data] dir of the config, else
    /// ../shared/data/ptb, else data/ptb as written by tools/get-ptb.sh).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run folder for metrics.jsonl and checkpoint/ (default: runs/<config name>, or the run
    /// folder of --resume).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop (saving a checkpoint) once this many optimizer steps have been taken in total,
    /// counting steps before a resume.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Continue from a checkpoint: a run folder or its checkpoint/ folder. Gives the same result
    /// as an uninterrupted run.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// Do not draw the progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A checkpoint: a run folder or its checkpoint/ folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which split to score.
    #[arg(long, value_parser = ["train", "valid", "test"])]
    pub split: String,
    /// Folder with the PTB files (default: as for train).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of parallel streams. 1 (the default) is the published protocol: every token sees
    /// the whole preceding text.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Steps per forward call (does not change the result, only speed and memory).
    #[arg(long, default_value_t = 35)]
    pub bptt: usize,
    /// Score with the prepared inference plan instead of the training forward, with this weight
    /// storage (bf16 rounds the weights: this reports its effect on perplexity).
    #[arg(long)]
    pub dtype: Option<infer::Dtype>,
    /// Score with the prepared inference plan, its matrices in this format (dense, csr, bsr…,
    /// auto).
    #[arg(long)]
    pub format: Option<infer::FormatChoice>,
    /// Speech models: decode with a prefix beam search keeping this many prefixes (default:
    /// greedy decoding).
    #[arg(long)]
    pub beam: Option<usize>,
    /// Print a JSON object: {"perplexity", "loss", "tokens", "split", "batch", "checkpoint"} for
    /// an LM; {"wer", "cer", "wer_mean_utterance", "loss", "utterances", "words", …} for speech.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct TranscribeArgs {
    /// A speech checkpoint folder (from `symbiont train` with a DeepSpeech config).
    #[arg(long)]
    pub model: PathBuf,
    /// Decode with a prefix beam search keeping this many prefixes (default: greedy).
    #[arg(long)]
    pub beam: Option<usize>,
    /// 16 kHz mono 16-bit WAV files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct GradcheckArgs {
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A checkpoint: a run folder, its checkpoint/ folder, or a model .safetensors file.
    pub checkpoint: PathBuf,
    /// Print JSON: {"params_total", "params_nonzero", "params_nonzero_without_embeddings", …}.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct CompactArgs {
    /// A checkpoint: a run folder or its checkpoint/ folder.
    pub checkpoint: PathBuf,
    /// Run folder for the compacted checkpoint (written as OUT/checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct PeakArgs {
    /// Hidden sizes whose training GEMM shapes and inference products are timed.
    #[arg(long, value_delimiter = ',', default_value = "200,650,1500")]
    pub hidden: Vec<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct IsaArgs {
    /// Print JSON: {"detected", "active", "supported": [...], "gemm_isa", "csr_gather"}.
    #[arg(long, conflicts_with = "supported")]
    pub json: bool,
    /// Print only the supported level names, one per line, lowest first (for scripts).
    #[arg(long)]
    pub supported: bool,
}

impl Command {
    /// The subcommand's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Train(_) => "train",
            Command::Compress(_) => "compress",
            Command::Eval(_) => "eval",
            Command::Gradcheck(_) => "gradcheck",
            Command::Inspect(_) => "inspect",
            Command::Compact(_) => "compact",
            Command::Export(_) => "export",
            Command::Infer(_) => "infer",
            Command::Bench(_) => "bench",
            Command::Profile(_) => "profile",
            Command::Frontier(_) => "frontier",
            Command::Plot(_) => "plot",
            Command::Report(_) => "report",
            Command::Peak(_) => "peak",
            Command::Isa(_) => "isa",
            Command::Transcribe(_) => "transcribe",
        }
    }
}

fn main() -> ExitCode {
    // Writing into a closed pipe (`symbiont frontier t.json | head`) ends the process quietly, as
    // other Unix tools do, instead of a panic inside println!.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // A forced level the CPU lacks (or a misspelt one) is refused before any kernel runs.
    if let Err(e) = kernels::isa::from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = devices::check(cli.device, cli.command.name()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Train(a) => commands::train(a, cli.threads, cli.device),
        Command::Compress(a) => compress::compress(a, cli.threads),
        Command::Eval(a) => commands::eval(a, cli.threads, cli.device),
        Command::Gradcheck(a) => commands::gradcheck(a, cli.threads),
        Command::Peak(a) => peak::peak(a, cli.threads),
        Command::Isa(a) => commands::isa(a),
        Command::Transcribe(a) => speech_cli::transcribe(a, cli.threads, cli.device),
        Command::Inspect(a) => commands::inspect(a),
        Command::Compact(a) => commands::compact(a),
        Command::Export(a) => export::export(a),
        Command::Infer(a) => inference::infer(a, cli.threads),
        Command::Bench(a) => inference::bench(a, cli.threads),
        Command::Profile(a) => profiling::profile(*a, cli.threads),
        Command::Frontier(a) => profiling::frontier(a),
        Command::Plot(a) => profiling::plot(a),
        Command::Report(a) => report::report(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
