//! hs2-bench: HS2 load generator and report writer. See `scripts/bench.sh`, which runs it.

use std::time::Duration;

use clap::{Parser, Subcommand};
use hs2_proxy::bench::{self, report, Scenario, Settings};
use hs2_proxy::config::parse_duration;

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
        /// host:port of the target (impalad, HAProxy or hs2-proxy).
        #[arg(long)]
        target: String,
        /// Name of the target in the output (direct, haproxy, hs2-proxy).
        #[arg(long)]
        label: String,
        #[arg(long, value_enum)]
        scenario: Scenario,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value = "5s", value_parser = duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1 << 30)]
        bulk_bytes: u64,
        #[arg(long, default_value_t = 16 << 20)]
        reply_bytes: u64,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 100_000)]
        sessions: usize,
        /// Process whose memory (idle, bulk) or upstream connections (pooled) are measured.
        #[arg(long)]
        pid: Option<u32>,
        /// Backend ports whose connections from --pid are counted (pooled).
        #[arg(long, value_delimiter = ',')]
        upstream_ports: Vec<u16>,
        /// Time between a pooled client's calls.
        #[arg(long, default_value = "1s", value_parser = duration)]
        think: Duration,
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

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 500ms, 5s)"))
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
        Command::Run {
            target,
            label,
            scenario,
            clients,
            duration,
            bulk_bytes,
            reply_bytes,
            connections,
            sessions,
            pid,
            upstream_ports,
            think,
        } => {
            let settings = Settings {
                target,
                scenario,
                clients,
                duration,
                bulk_bytes,
                reply_bytes,
                connections,
                sessions,
                pid,
                upstream_ports,
                think,
            };
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
