//! `symbiont report RUN_DIR --out DIR`: the report of a `symbiont compress` run (report.md, a
//! self-contained report.html, the charts as .svg), written by `flow::report::write_report`.

use serde_json::json;
use std::error::Error;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run folder of `symbiont compress` (holding flow.json and stages/); a run still in
    /// progress is reported as far as it got.
    pub run_dir: PathBuf,
    /// Folder for report.md, report.html and the charts (latency.svg, training.svg, pareto.svg);
    /// created when missing.
    #[arg(long)]
    pub out: PathBuf,
    /// Print JSON: {"markdown", "html", "charts": [...]}.
    #[arg(long)]
    pub json: bool,
}

pub fn report(args: ReportArgs) -> Result<u8, Box<dyn Error>> {
    let paths = flow::report::write_report(&args.run_dir, &args.out)?;
    if args.json {
        println!(
            "{}",
            json!({"markdown": paths.markdown, "html": paths.html, "charts": paths.charts})
        );
    } else {
        println!("{}", paths.markdown.display());
        println!("{}", paths.html.display());
        for c in &paths.charts {
            println!("{}", c.display());
        }
    }
    Ok(0)
}
