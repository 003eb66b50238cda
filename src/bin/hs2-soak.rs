//! `hs2-soak`: the soak with faults (see `hs2_proxy::soak`). Runs the given hs2-proxy binary in front of
//! three mock impalads for `--minutes`, writes the report (markdown) and the samples (CSV) into
//! `--out`, prints the report, and exits non-zero when any check failed.
//!
//! ```text
//! hs2-soak --proxy target/release/hs2-proxy [--minutes 30] [--out target/soak] [--python .venv/bin/python]
//! ```
//! With `--python` (the project's .venv, made by scripts/setup-python.sh), real impyla clients join the load.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hs2_proxy::soak::{self, Settings};

#[derive(Parser, Debug)]
#[command(name = "hs2-soak", about = "A soak with faults for hs2-proxy")]
struct Args {
    /// The hs2-proxy binary to run.
    #[arg(long)]
    proxy: PathBuf,
    /// How long the load runs.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Directory for the proxy's config and logs, the report and the samples.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
    /// A Python with impyla (scripts/setup-python.sh: .venv/bin/python): real impyla clients join the load.
    #[arg(long)]
    python: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Its mocks run in this process: a log that cannot be written must not kill their tasks (main.rs).
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false).init();
    let args = Args::parse();
    let mut settings = Settings::for_minutes(args.minutes, args.proxy, args.out.clone());
    settings.python = args.python;
    let report = match soak::run(&settings).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hs2-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let md = report.markdown();
    println!("{md}");
    for (name, text) in [("report.md", md), ("samples.csv", report.csv())] {
        if let Err(e) = std::fs::write(args.out.join(name), text) {
            eprintln!("hs2-soak: writing {name}: {e}");
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
