//! `pipeline diff RUN_A RUN_B`.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use pipeline_engine::repro::diff;
use pipeline_engine::run::store::Store;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// For reading in a terminal
    Text,
    /// Every change as data, for programs
    Json,
    /// A report to paste into a pull request or notebook
    Markdown,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The older run: a run id, a unique prefix or suffix of one (`7c1e`), a run name,
    /// `latest` (the newest run that succeeded) or `latest~N` (the Nth successful run before
    /// it)
    pub old: String,
    /// The newer run, named the same ways
    pub new: String,
    /// List unchanged parameters and metrics too
    #[arg(long)]
    pub all: bool,
    /// How to print the differences: text (for a terminal), json (for programs) or markdown
    /// (to paste into a pull request)
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit with status 1 when any output's digest differs
    #[arg(long)]
    pub fail_on_diff: bool,
}

pub fn diff(store: &Store, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let old = store.runs.resolve(&args.old)?;
    let new = store.runs.resolve(&args.new)?;
    let mut d = diff::diff(&old, &new, args.all);
    diff::name_data_files(&mut d, &old, &new, |key| {
        store
            .cache
            .read_entry(key)
            .ok()
            .flatten()
            .map(|e| e.manifest.external)
    });
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&d)?),
        Format::Text => print!("{}", diff::render(&d, false)),
        Format::Markdown => print!("{}", diff::render(&d, true)),
    }
    if args.fail_on_diff && d.any_output_differs() {
        eprintln!(
            "error: {} output(s) differ between {} and {}",
            d.outputs.len(),
            d.old,
            d.new
        );
        return Ok(crate::exit::difference());
    }
    Ok(ExitCode::SUCCESS)
}
