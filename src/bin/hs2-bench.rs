//! hs2-bench: HS2 load generator and report writer. See `scripts/bench.sh`, which runs it.

use clap::{Parser, Subcommand};
use hs2_proxy::bench::{self, report, Settings};

#[derive(Parser)]
#[command(name = "hs2-bench", about = "HS2 load generator: latency, throughput, memory; and the benchmark report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario against one target and prints one JSON line.
    Run {
        /// Name of the target in the output (direct, haproxy, hs2-proxy).
        #[arg(long)]
        label: String,
        #[command(flatten)]
        settings: Settings,
    },
    /// Writes docs/benchmarks.md from the JSON lines of a run.
    Report {
        #[arg(long)]
        input: std::path::PathBuf,
        #[arg(long)]
        machine: String,
        #[arg(long)]
        command: String,
    },
}

fn main() {
    match Cli::parse().command {
        Command::Report { input, machine, command } => match std::fs::read_to_string(&input) {
            Ok(lines) => print!("{}", report::render(&lines, &machine, &command)),
            Err(e) => {
                eprintln!("hs2-bench: {}: {e}", input.display());
                std::process::exit(2);
            }
        },
        Command::Run { label, settings } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("hs2-bench: cannot start the runtime: {e}");
                    std::process::exit(1);
                }
            };
            let outcome = runtime.block_on(bench::run(&settings));
            println!("{}", outcome.to_json(&settings, &label));
        }
    }
}
