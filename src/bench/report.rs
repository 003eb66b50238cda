//! Turns the JSON lines of a benchmark run into `docs/benchmarks.md`: medians over rounds, ratios
//! against the direct connection and HAProxy measured in the same run, and each target met or not.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One result line: flat `"key": value` pairs.
pub type Row = BTreeMap<String, String>;

/// Parses one flat JSON object (strings and numbers only, as `Outcome::to_json` writes them).
pub fn parse_line(line: &str) -> Option<Row> {
    let inner = line.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut row = Row::new();
    for pair in inner.split(',') {
        let (k, v) = pair.split_once(':')?;
        row.insert(k.trim().trim_matches('"').to_string(), v.trim().trim_matches('"').to_string());
    }
    Some(row)
}

fn num(row: &Row, key: &str) -> Option<f64> {
    row.get(key)?.parse().ok()
}

/// The median of `key` over the rows of one (scenario, clients, target).
fn median(rows: &[&Row], key: &str) -> Option<f64> {
    let mut v: Vec<f64> = rows.iter().filter_map(|r| num(r, key)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

struct Table<'a> {
    rows: Vec<&'a Row>,
}

impl<'a> Table<'a> {
    fn pick(&self, scenario: &str, clients: Option<&str>, target: &str) -> Vec<&'a Row> {
        self.rows
            .iter()
            .copied()
            .filter(|r| r.get("scenario").map(String::as_str) == Some(scenario))
            .filter(|r| clients.is_none_or(|c| r.get("clients").map(String::as_str) == Some(c)))
            .filter(|r| r.get("target").map(String::as_str) == Some(target))
            .collect()
    }

    fn m(&self, scenario: &str, clients: Option<&str>, target: &str, key: &str) -> Option<f64> {
        median(&self.pick(scenario, clients, target), key)
    }

    /// `key` of one (scenario, clients, target) in each round, in run order: every round measures every
    /// target once, so the i-th row is round i.
    fn rounds(&self, scenario: &str, clients: Option<&str>, target: &str, key: &str) -> Vec<Option<f64>> {
        self.pick(scenario, clients, target).iter().map(|r| num(r, key)).collect()
    }
}

/// One comparison between hs2-proxy and a baseline, round by round: what the targets table judges on
/// medians, shown for each round with the verdict it would get there.
struct Spread {
    what: String,
    /// Per round: the figure shown, and whether that round meets the target.
    rounds: Vec<(String, Option<bool>)>,
}

/// Pairs hs2-proxy's and the baseline's figures round by round, rounds that lack either left out.
fn paired(ours: Vec<Option<f64>>, theirs: Vec<Option<f64>>) -> Vec<(f64, f64)> {
    ours.into_iter().zip(theirs).filter_map(|(o, h)| o.zip(h)).collect()
}

/// A lower-is-better comparison round by round, shown as "ours vs theirs": met where ours is at most theirs.
fn at_most_spread(what: String, rounds: Vec<(f64, f64)>) -> Spread {
    Spread {
        what,
        rounds: rounds.iter().map(|&(o, h)| (format!("{} vs {}", fmt(Some(o)), fmt(Some(h))), Some(o <= h))).collect(),
    }
}

/// A higher-is-better comparison round by round, shown as the ratio: met where ours is `at_least` times theirs.
fn ratio_spread(what: String, ours: Vec<Option<f64>>, theirs: Vec<Option<f64>>, at_least: f64) -> Spread {
    Spread {
        what,
        rounds: paired(ours, theirs)
            .iter()
            .map(|&(o, h)| (format!("{:.2}x", o / h), Some(o >= at_least * h)))
            .collect(),
    }
}

fn render_spread(out: &mut String, spreads: &[Spread]) {
    out.push_str("\n## Spread over rounds\n\nEach comparison of the targets table, round by round (the table judges the medians); the last column says in how many rounds the target held.\n\n| comparison | per round | rounds met |\n|---|---|---|\n");
    for s in spreads {
        let shown: Vec<&str> = s.rounds.iter().map(|(v, _)| v.as_str()).collect();
        let met = s.rounds.iter().filter(|(_, ok)| *ok == Some(true)).count();
        let _ = writeln!(out, "| {} | {} | {met} of {} |", s.what, shown.join("; "), s.rounds.len());
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| if x.abs() >= 100.0 { format!("{x:.0}") } else { format!("{x:.2}") })
}

/// "user + kernel" µs per call of a proxy in the small scenario; a dash for the direct connection.
fn cpu_per_call(t: &Table, clients: &str, target: &str) -> String {
    let user = t.m("small", Some(clients), target, "cpu_user_us_per_call");
    let sys = t.m("small", Some(clients), target, "cpu_sys_us_per_call");
    match (user, sys) {
        (Some(u), Some(k)) => format!("{u:.1} + {k:.1}"),
        _ if target == "direct" => "–".into(),
        _ => "n/a".into(),
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// Renders the report. `machine` describes the host; `command` reproduces the run.
pub fn render(lines: &str, machine: &str, command: &str) -> String {
    let parsed: Vec<Row> = lines.lines().filter_map(parse_line).collect();
    let t = Table { rows: parsed.iter().collect() };
    let targets = ["direct", "haproxy", "hs2-proxy"];
    let mut out = String::from("# Benchmarks: hs2-proxy against a direct connection and HAProxy\n\n");
    let _ = writeln!(out, "Reproduce with `{command}`. Machine: {machine}. Every figure is the median over the rounds of one run, in which the targets alternate; ratios compare targets measured in that same run.\n");
    out.push_str("## Small RPC (GetInfo) latency and throughput\n\n");
    out.push_str("The proxy's CPU per call is the target process's user and kernel time over the scenario (`/proc/PID/stat`), divided by its calls.\n\n");
    out.push_str("| clients | target | p50 µs | p99 µs | added p50 µs | added p99 µs | calls/s | proxy CPU µs/call (user + kernel) | errors |\n|---|---|---|---|---|---|---|---|---|\n");
    let mut checks = Vec::new();
    let mut spreads = Vec::new();
    for clients in ["1", "64"] {
        let added_rounds = |target, q| {
            let base = t.rounds("small", Some(clients), "direct", q);
            let v = t.rounds("small", Some(clients), target, q);
            v.into_iter().zip(base).map(|(v, b)| v.zip(b).map(|(v, b)| v - b)).collect::<Vec<_>>()
        };
        spreads.push(at_most_spread(
            format!("added p50 µs, {clients} client(s): hs2-proxy vs HAProxy"),
            paired(added_rounds("hs2-proxy", "p50_us"), added_rounds("haproxy", "p50_us")),
        ));
        let base50 = t.m("small", Some(clients), "direct", "p50_us");
        let base99 = t.m("small", Some(clients), "direct", "p99_us");
        for target in targets {
            let (p50, p99) =
                (t.m("small", Some(clients), target, "p50_us"), t.m("small", Some(clients), target, "p99_us"));
            let added = |v: Option<f64>, b: Option<f64>| v.zip(b).map(|(v, b)| v - b);
            let _ = writeln!(
                out,
                "| {clients} | {target} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(p50),
                fmt(p99),
                fmt(added(p50, base50)),
                fmt(added(p99, base99)),
                fmt(t.m("small", Some(clients), target, "ops_per_sec")),
                cpu_per_call(&t, clients, target),
                fmt(t.m("small", Some(clients), target, "errors"))
            );
        }
        for (q, base) in [("p50_us", base50), ("p99_us", base99)] {
            let ours = t.m("small", Some(clients), "hs2-proxy", q).zip(base).map(|(v, b)| v - b);
            let theirs = t.m("small", Some(clients), "haproxy", q).zip(base).map(|(v, b)| v - b);
            let ok = ours.zip(theirs).map(|(o, h)| o <= h);
            checks.push((
                format!("added {} latency, {clients} client(s): at most HAProxy's", &q[..3]),
                ok,
                format!("{} vs {} µs", fmt(ours), fmt(theirs)),
            ));
        }
    }
    let tp = |target| t.m("small", Some("64"), target, "ops_per_sec");
    checks.push((
        "small-RPC throughput, 64 clients: at least 1.05x HAProxy's".into(),
        tp("hs2-proxy").zip(tp("haproxy")).map(|(o, h)| o >= 1.05 * h),
        format!(
            "{} vs {} calls/s ({}x)",
            fmt(tp("hs2-proxy")),
            fmt(tp("haproxy")),
            fmt(tp("hs2-proxy").zip(tp("haproxy")).map(|(o, h)| o / h))
        ),
    ));

    let small64 = |target| t.rounds("small", Some("64"), target, "ops_per_sec");
    spreads.push(ratio_spread(
        "calls/s, 64 clients: hs2-proxy / HAProxy (target 1.05x)".into(),
        small64("hs2-proxy"),
        small64("haproxy"),
        1.05,
    ));

    out.push_str("\n## Query loop (open, execute, poll, fetch, close), 16 clients\n\n| target | p50 µs | p99 µs | loops/s | errors |\n|---|---|---|---|---|\n");
    for target in targets {
        let m = |k| t.m("query", None, target, k);
        let _ = writeln!(
            out,
            "| {target} | {} | {} | {} | {} |",
            fmt(m("p50_us")),
            fmt(m("p99_us")),
            fmt(m("ops_per_sec")),
            fmt(m("errors"))
        );
    }

    let loop_rounds = |target| t.rounds("query", None, target, "ops_per_sec");
    spreads.push(ratio_spread(
        "query loops/s, 16 clients: hs2-proxy / HAProxy (target 1x)".into(),
        loop_rounds("hs2-proxy"),
        loop_rounds("haproxy"),
        1.0,
    ));
    let loops = |target| t.m("query", None, target, "ops_per_sec");
    checks.push((
        "query loop, 16 clients: at least HAProxy's loops/s".into(),
        loops("hs2-proxy").zip(loops("haproxy")).map(|(o, h)| o >= h),
        format!("{} vs {} loops/s", fmt(loops("hs2-proxy")), fmt(loops("haproxy"))),
    ));

    out.push_str("\n## TLS on the client side: small RPCs (GetInfo)\n\nEach proxy terminates TLS (hs2-proxy: rustls with ring; HAProxy: OpenSSL), one ECDSA P-256 certificate for both, backends in plaintext. Added latency is against the plaintext direct connection of the same run.\n\n| clients | target | p50 µs | p99 µs | added p50 µs | calls/s | proxy CPU µs/call (user + kernel) | errors |\n|---|---|---|---|---|---|---|---|\n");
    for clients in ["1", "64"] {
        let base50 = t.m("small", Some(clients), "direct", "p50_us");
        for target in ["haproxy-tls", "hs2-proxy-tls"] {
            let m = |k| t.m("small", Some(clients), target, k);
            let _ = writeln!(
                out,
                "| {clients} | {target} | {} | {} | {} | {} | {} | {} |",
                fmt(m("p50_us")),
                fmt(m("p99_us")),
                fmt(m("p50_us").zip(base50).map(|(v, b)| v - b)),
                fmt(m("ops_per_sec")),
                cpu_per_call(&t, clients, target),
                fmt(m("errors"))
            );
        }
        spreads.push(at_most_spread(
            format!("TLS p50 µs, {clients} client(s): hs2-proxy vs HAProxy"),
            paired(
                t.rounds("small", Some(clients), "hs2-proxy-tls", "p50_us"),
                t.rounds("small", Some(clients), "haproxy-tls", "p50_us"),
            ),
        ));
        let p50 = |target| t.m("small", Some(clients), target, "p50_us");
        checks.push((
            format!("TLS: p50 latency, {clients} client(s): at most HAProxy's"),
            p50("hs2-proxy-tls").zip(p50("haproxy-tls")).map(|(o, h)| o <= h),
            format!("{} vs {} µs", fmt(p50("hs2-proxy-tls")), fmt(p50("haproxy-tls"))),
        ));
    }
    spreads.push(ratio_spread(
        "TLS calls/s, 64 clients: hs2-proxy / HAProxy (target 1x)".into(),
        small64("hs2-proxy-tls"),
        small64("haproxy-tls"),
        1.0,
    ));
    let tls_tp = |target| t.m("small", Some("64"), target, "ops_per_sec");
    checks.push((
        "TLS: small-RPC throughput, 64 clients: at least HAProxy's".into(),
        tls_tp("hs2-proxy-tls").zip(tls_tp("haproxy-tls")).map(|(o, h)| o >= h),
        format!(
            "{} vs {} calls/s ({}x)",
            fmt(tls_tp("hs2-proxy-tls")),
            fmt(tls_tp("haproxy-tls")),
            fmt(tls_tp("hs2-proxy-tls").zip(tls_tp("haproxy-tls")).map(|(o, h)| o / h))
        ),
    ));

    out.push_str("\n## Bulk FetchResults (1 MiB rows, 16 MiB replies)\n\nPeak RSS is the proxy's (HAProxy's, hs2-proxy's) whole-life peak; a direct connection has no proxy.\n\n| target | MiB/s | ratio to direct | proxy peak RSS MiB | errors |\n|---|---|---|---|---|\n");
    let direct_bulk = t.m("bulk", None, "direct", "mib_per_sec");
    for target in targets {
        let v = t.m("bulk", None, target, "mib_per_sec");
        let _ = writeln!(
            out,
            "| {target} | {} | {} | {} | {} |",
            fmt(v),
            fmt(v.zip(direct_bulk).map(|(a, b)| a / b)),
            if target == "direct" { "–".to_string() } else { fmt(t.m("bulk", None, target, "peak_rss_mib")) },
            fmt(t.m("bulk", None, target, "errors"))
        );
    }
    let bulk_rounds = |target| t.rounds("bulk", None, target, "mib_per_sec");
    spreads.push(ratio_spread(
        "bulk MiB/s: hs2-proxy / direct (target 0.9x)".into(),
        bulk_rounds("hs2-proxy"),
        bulk_rounds("direct"),
        0.9,
    ));
    let ours = t.m("bulk", None, "hs2-proxy", "mib_per_sec");
    let ha = t.m("bulk", None, "haproxy", "mib_per_sec");
    checks.push((
        "bulk fetch: >= 0.9x direct and >= HAProxy".into(),
        ours.zip(direct_bulk).zip(ha).map(|((o, d), h)| o >= 0.9 * d && o >= h),
        format!("{} vs direct {} and HAProxy {} MiB/s", fmt(ours), fmt(direct_bulk), fmt(ha)),
    ));
    let rss = t.m("bulk", None, "hs2-proxy", "peak_rss_mib");
    checks.push((
        "proxy RSS flat in reply size (bulk peak < 64 MiB)".into(),
        rss.map(|r| r < 64.0),
        format!("{} MiB", fmt(rss)),
    ));

    out.push_str("\n## Idle connections and tracked sessions (memory of the target process)\n\n| target | connections | sessions | KiB per connection | KiB per session |\n|---|---|---|---|---|\n");
    for target in ["haproxy", "hs2-proxy"] {
        let m = |k| t.m("idle", None, target, k);
        let _ = writeln!(
            out,
            "| {target} | {} | {} | {} | {} |",
            fmt(m("connections_held")),
            fmt(m("sessions_held")),
            fmt(m("kib_per_connection")),
            fmt(m("kib_per_session"))
        );
    }
    let (kc, ks) =
        (t.m("idle", None, "hs2-proxy", "kib_per_connection"), t.m("idle", None, "hs2-proxy", "kib_per_session"));
    checks.push(("RSS <= 64 KiB per idle connection".into(), kc.map(|v| v <= 64.0), format!("{} KiB", fmt(kc))));
    checks.push(("RSS <= 2 KiB per tracked session".into(), ks.map(|v| v <= 2.0), format!("{} KiB", fmt(ks))));

    out.push_str("\n## Pooled client connections (Hue-like), occasional calls\n\n| target | client connections | max upstream connections per backend | p99 µs | errors |\n|---|---|---|---|---|\n");
    for target in ["haproxy", "hs2-proxy"] {
        let m = |k| t.m("pooled", None, target, k);
        let _ = writeln!(
            out,
            "| {target} | {} | {} | {} | {} |",
            fmt(m("clients")),
            fmt(m("max_upstream_per_backend")),
            fmt(m("p99_us")),
            fmt(m("errors"))
        );
    }
    let up = t.m("pooled", None, "hs2-proxy", "max_upstream_per_backend");
    checks.push((
        "<= 32 upstream connections per backend for 500 pooled clients".into(),
        up.map(|v| v <= 32.0),
        fmt(up),
    ));

    out.push_str("\n## Targets\n\n| target | result | measured |\n|---|---|---|\n");
    for (name, ok, measured) in checks {
        let _ = writeln!(out, "| {name} | {} | {measured} |", verdict(ok));
    }
    render_spread(&mut out, &spreads);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_outcome_writes_and_renders_medians() {
        let lines = [
            r#"{"scenario":"small","target":"direct","clients":1,"p50_us":100,"p99_us":200,"ops_per_sec":900.0}"#,
            r#"{"scenario":"small","target":"haproxy","clients":1,"p50_us":150,"p99_us":300,"ops_per_sec":800.0}"#,
            r#"{"scenario":"small","target":"hs2-proxy","clients":1,"p50_us":140,"p99_us":290,"ops_per_sec":850.0}"#,
            r#"{"scenario":"small","target":"hs2-proxy","clients":1,"p50_us":999,"p99_us":999,"ops_per_sec":1.0}"#,
            r#"{"scenario":"small","target":"hs2-proxy","clients":1,"p50_us":130,"p99_us":280,"ops_per_sec":860.0}"#,
        ]
        .join("\n");
        assert_eq!(parse_line(r#"{"a":"b","n":1.5}"#).and_then(|r| r.get("n").cloned()), Some("1.5".into()));
        let md = render(&lines, "test box", "scripts/bench.sh");
        assert!(md.contains("| 1 | hs2-proxy | 140 | 290 | 40.00 | 90.00 | 850 | n/a |"), "{md}");
        assert!(md.contains("added p50 latency, 1 client(s): at most HAProxy's | met"), "{md}");
        // One baseline round: only the first hs2-proxy round pairs with it, and it met the target.
        assert!(md.contains("| added p50 µs, 1 client(s): hs2-proxy vs HAProxy | 40.00 vs 50.00 | 1 of 1 |"), "{md}");
    }

    #[test]
    fn the_spread_shows_each_round_and_how_many_met() {
        let row = |target: &str, ops: f64| {
            format!(r#"{{"scenario":"small","target":"{target}","clients":64,"ops_per_sec":{ops}}}"#)
        };
        let lines =
            [row("haproxy", 100.0), row("hs2-proxy", 110.0), row("hs2-proxy", 90.0), row("haproxy", 100.0)].join("\n");
        let md = render(&lines, "test box", "scripts/bench.sh");
        assert!(
            md.contains("| calls/s, 64 clients: hs2-proxy / HAProxy (target 1.05x) | 1.10x; 0.90x | 1 of 2 |"),
            "{md}"
        );
    }
}
