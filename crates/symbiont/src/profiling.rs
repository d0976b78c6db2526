//! `symbiont profile`, `frontier` and `plot`: the CLI over the `profile` crate.

use clap::Args;
use std::error::Error;
use std::path::PathBuf;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[derive(Args)]
pub struct ProfileArgs {
    /// Engine to time: cpu-dense, cpu-sparse or command.
    #[arg(long)]
    pub engine: String,
    /// Where the latency table is written.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct FrontierArgs {
    /// Latency table (JSON) written by `symbiont profile`.
    pub table: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PlotArgs {
    /// Latency tables to overlay.
    #[arg(required = true)]
    pub tables: Vec<PathBuf>,
    /// Output file (.svg).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn profile(_args: ProfileArgs, _threads: Option<usize>) -> Result<u8> {
    Err("profile: being built (issue 4)".into())
}

pub fn frontier(_args: FrontierArgs) -> Result<u8> {
    Err("frontier: being built (issue 4)".into())
}

pub fn plot(_args: PlotArgs) -> Result<u8> {
    Err("plot: being built (issue 4)".into())
}
