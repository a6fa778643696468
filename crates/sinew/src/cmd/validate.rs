//! `sinew validate -f FILE…`: parse and validate config files, report every error.

use std::path::PathBuf;

/// Check config files without running anything.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files to check (multi-document YAML or JSON).
    #[arg(short = 'f', long = "file", required = true)]
    files: Vec<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let mut resources = Vec::new();
    let mut failed = 0usize;
    for file in &args.files {
        match sinew_model::parse_file(file) {
            Ok(mut parsed) => resources.append(&mut parsed),
            Err(errors) => {
                failed += errors.len();
                eprintln!("{errors}");
            }
        }
    }
    if failed == 0 {
        if let Err(errors) = sinew_model::Snapshot::build(resources, 1) {
            failed += errors.len();
            eprintln!("{errors}");
        }
    }
    if failed > 0 {
        return Err(format!("{failed} error(s) found"));
    }
    eprintln!("ok: {} file(s) valid", args.files.len());
    Ok(())
}
