//! hs2-bench: an HS2 load generator. N concurrent clients run one scenario against one target (an
//! impalad, HAProxy in front of impalads, or hs2-proxy) and report latency percentiles, throughput and
//! errors as one JSON line. `scripts/bench.sh` runs every scenario against every target in alternation
//! and writes `docs/benchmarks.md`.

pub mod procfs;
pub mod report;
mod scenarios;

use std::time::Duration;

use hdrhistogram::Histogram;

pub use scenarios::run;

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Each client opens a session, then calls GetInfo (one small RPC) in a loop.
    Small,
    /// Each client loops: OpenSession, ExecuteStatement, poll, FetchResults, CloseOperation, CloseSession.
    Query,
    /// One client fetches `--bulk-bytes` in FetchResults replies of `--reply-bytes` each.
    Bulk,
    /// Holds `--connections` idle client connections and `--sessions` sessions; measures `--pid`'s memory.
    Idle,
    /// `--clients` pooled connections (Hue-like) make occasional calls; counts `--pid`'s upstream connections.
    Pooled,
}

/// Settings of one run; also `hs2-bench run`'s flags.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// host:port of the target (impalad, HAProxy or hs2-proxy).
    #[arg(long)]
    pub target: String,
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    #[arg(long, default_value = "5s", value_parser = duration_arg)]
    pub duration: Duration,
    #[arg(long, default_value_t = 1 << 30)]
    pub bulk_bytes: u64,
    #[arg(long, default_value_t = 16 << 20)]
    pub reply_bytes: u64,
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    #[arg(long, default_value_t = 100_000)]
    pub sessions: usize,
    /// The process whose memory (idle, bulk) or upstream connections (pooled) are measured.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Backend ports whose connections from --pid are counted (pooled).
    #[arg(long, value_delimiter = ',')]
    pub upstream_ports: Vec<u16>,
    /// Connect with TLS (any certificate accepted): the TLS-termination scenario.
    #[arg(long)]
    pub tls: bool,
    /// Time between a pooled client's calls.
    #[arg(long, default_value = "1s", value_parser = duration_arg)]
    pub think: Duration,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 500ms, 5s)"))
}

/// The result of one run.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latency_us: Option<Histogram<u64>>,
    pub bytes: u64,
    /// Scenario-specific figures (name, value).
    pub extra: Vec<(String, f64)>,
}

impl Outcome {
    /// One JSON object on one line.
    pub fn to_json(&self, s: &Settings, label: &str) -> String {
        let mut fields = vec![
            format!("\"scenario\":\"{:?}\"", s.scenario).to_lowercase(),
            format!("\"target\":\"{}\"", label.replace('"', "")),
            format!("\"clients\":{}", s.clients),
            format!("\"ops\":{}", self.ops),
            format!("\"errors\":{}", self.errors),
            format!("\"seconds\":{:.3}", self.seconds),
            format!("\"ops_per_sec\":{:.1}", self.ops as f64 / self.seconds.max(1e-9)),
        ];
        if let Some(h) = &self.latency_us {
            for (name, q) in [("p50_us", 0.50), ("p99_us", 0.99), ("p999_us", 0.999)] {
                fields.push(format!("\"{name}\":{}", h.value_at_quantile(q)));
            }
        }
        if self.bytes > 0 {
            fields.push(format!("\"mib_per_sec\":{:.1}", self.bytes as f64 / 1048576.0 / self.seconds.max(1e-9)));
        }
        for (k, v) in &self.extra {
            fields.push(format!("\"{k}\":{v:.1}"));
        }
        format!("{{{}}}", fields.join(","))
    }
}

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}
