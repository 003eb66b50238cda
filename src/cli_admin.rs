//! The admin subcommands (`hs2-proxy backends`, `sessions`, `drain`, `undrain`, `maintenance`,
//! `evacuate`, `explain`, `close-session`, `cancel-operation`): thin clients of a running proxy's admin API. Each sends one
//! request with the proxy's HTTP client (`http::client`) and prints a table, or the API's JSON with `--json`.
//!
//! The address and token come from the flags, else from the `[admin]` section of `--config`, else the
//! default `127.0.0.1:25100`. The token is sent, never printed.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::admin::api::{ActionJson, BackendsJson, SessionsJson};
use crate::cli::{AdminArgs, Command};
use crate::config::{FileConfig, DEFAULT_ADMIN_LISTEN};
use crate::http::client::{fetch, Get};
use crate::placement::Explanation;

/// A request gets no more time than this.
const TIMEOUT: Duration = Duration::from_secs(15);
/// A response larger than this is refused (a session list of ~500k sessions).
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Statements are cut to this many characters in tables (`--json` has the API's text).
const STATEMENT_COLUMN: usize = 60;

/// What a subcommand asks the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCall {
    Backends,
    Sessions {
        backend: Option<String>,
        user: Option<String>,
    },
    /// `drain`, `undrain` or `maintenance`.
    SetState {
        backend: String,
        action: &'static str,
    },
    CloseSession(String),
    CancelOperation(String),
    Evacuate {
        backend: String,
        deadline: String,
    },
    /// `GET /api/route` with these query pairs.
    Explain(Vec<(String, String)>),
}

/// The admin call of a subcommand and its flags; `None` for commands that run the proxy.
pub fn admin_call(command: &Command) -> Option<(AdminCall, &AdminArgs)> {
    let state = |backend: &String, action| AdminCall::SetState { backend: backend.clone(), action };
    Some(match command {
        Command::Demo { .. } => return None,
        Command::Backends { admin } => (AdminCall::Backends, admin),
        Command::Sessions { backend, user, admin } => {
            (AdminCall::Sessions { backend: backend.clone(), user: user.clone() }, admin)
        }
        Command::Drain { backend, admin } => (state(backend, "drain"), admin),
        Command::Undrain { backend, admin } => (state(backend, "undrain"), admin),
        Command::Maintenance { backend, admin } => (state(backend, "maintenance"), admin),
        Command::CloseSession { id, admin } => (AdminCall::CloseSession(id.clone()), admin),
        Command::CancelOperation { id, admin } => (AdminCall::CancelOperation(id.clone()), admin),
        Command::Evacuate { backend, deadline, admin } => {
            (AdminCall::Evacuate { backend: backend.clone(), deadline: deadline.clone() }, admin)
        }
        Command::Explain { user, effective_user, address, listener, conf, admin } => {
            let named =
                [("user", user), ("effective_user", effective_user), ("address", address), ("listener", listener)];
            let mut pairs: Vec<(String, String)> =
                named.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone()))).collect();
            pairs.extend(conf.iter().map(|c| ("conf".to_string(), c.clone())));
            (AdminCall::Explain(pairs), admin)
        }
    })
}

/// Runs an admin subcommand; prints its output and returns the exit code (0 ok, 1 failed).
pub fn main(call: AdminCall, args: &AdminArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hs2-proxy: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(&call, args, args.config.as_deref())) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("hs2-proxy: {e}");
            1
        }
    }
}

/// Runs `call` against the admin API; returns what to print.
pub async fn run(call: &AdminCall, args: &AdminArgs, config: Option<&Path>) -> Result<String, String> {
    let target = Target::resolve(args, config)?;
    let (method, path) = request_line(call);
    let body = target.request(method, &path).await?;
    let parse_err = |e: serde_json::Error| format!("unexpected answer from the admin API: {e}");
    if args.json {
        let value: serde_json::Value = serde_json::from_str(&body).map_err(parse_err)?;
        return Ok(format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or(body)));
    }
    match call {
        AdminCall::Backends => Ok(backends_table(&serde_json::from_str(&body).map_err(parse_err)?)),
        AdminCall::Sessions { .. } => Ok(sessions_table(&serde_json::from_str(&body).map_err(parse_err)?)),
        AdminCall::Explain(_) => Ok(explanation(&serde_json::from_str(&body).map_err(parse_err)?)),
        _ => {
            let answer: ActionJson = serde_json::from_str(&body).map_err(parse_err)?;
            Ok(format!("{}\n", answer.message))
        }
    }
}

/// The method and path (with query) of a call.
pub fn request_line(call: &AdminCall) -> (&'static str, String) {
    match call {
        AdminCall::Backends => ("GET", "/api/backends".into()),
        AdminCall::Sessions { backend, user } => {
            let mut query = Vec::new();
            if let Some(b) = backend {
                query.push(format!("backend={}", encode(b)));
            }
            if let Some(u) = user {
                query.push(format!("user={}", encode(u)));
            }
            let q = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
            ("GET", format!("/api/sessions{q}"))
        }
        AdminCall::SetState { backend, action } => ("POST", format!("/api/backends/{}/{action}", encode(backend))),
        AdminCall::CloseSession(id) => ("POST", format!("/api/sessions/{}/close", encode(id))),
        AdminCall::CancelOperation(id) => ("POST", format!("/api/operations/{}/cancel", encode(id))),
        AdminCall::Evacuate { backend, deadline } => {
            ("POST", format!("/api/backends/{}/evacuate?deadline={}", encode(backend), encode(deadline)))
        }
        AdminCall::Explain(pairs) => {
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
            ("GET", format!("/api/route?{}", query.join("&")))
        }
    }
}

/// `explain`'s answer in words.
fn explanation(e: &Explanation) -> String {
    let mut out = format!(
        "{}
",
        e.reason
    );
    if let Some(rule) = &e.rule {
        let _ = writeln!(out, "rule: {rule}  group: {}  fallback: {}", e.group.as_deref().unwrap_or("-"), e.fallback);
    }
    match &e.refused {
        Some(text) => {
            let _ = writeln!(out, "refused: {text}");
        }
        None => {
            let _ = writeln!(out, "would open on: {}", e.backends.first().map_or("-", String::as_str));
            let _ = writeln!(
                out,
                "then, if unreachable: {}",
                if e.backends.len() > 1 { e.backends[1..].join(", ") } else { "-".into() }
            );
        }
    }
    out
}

/// Percent-encodes a path segment or query value (all but unreserved characters and `:`).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Where the admin API is, and the token to show it.
struct Target {
    addr: String,
    token: Option<String>,
}

impl Target {
    fn resolve(args: &AdminArgs, config: Option<&Path>) -> Result<Target, String> {
        let file = match config {
            Some(path) => Some(FileConfig::load(path).map_err(|e| format!("configuration error: {e}"))?.admin),
            None => None,
        };
        let listen = args.admin.clone().or_else(|| file.as_ref().and_then(|a| a.listen.clone()));
        let listen = listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        if listen == "off" {
            return Err("the admin listener is turned off in the configuration (admin.listen = \"off\")".into());
        }
        let token_file = args.admin_token_file.clone().or_else(|| file.and_then(|a| a.token_file));
        let token = match token_file {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| format!("admin token file {}: {e}", p.display()))?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
        };
        Ok(Target { addr: connectable(&listen), token })
    }

    /// One request; the body of a 2xx answer, else the API's error text.
    async fn request(&self, method: &str, path: &str) -> Result<String, String> {
        let (status, body) = http(&self.addr, method, path, self.token.as_deref()).await?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let text = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        Err(format!("admin API: {status}: {text}"))
    }
}

/// One request without a body to `addr` (the proxy's one HTTP client); returns the status and the body.
pub async fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| format!("bad method {method:?}"))?;
    let get = Get { authority: addr, method, path, bearer: token, timeout: TIMEOUT, max_body: MAX_RESPONSE_BYTES };
    let response = fetch(&get).await.map_err(|e| format!("cannot reach the admin API at {e}"))?;
    Ok((response.status.as_u16(), String::from_utf8_lossy(&response.body).into_owned()))
}

/// A listen address turned into one to connect to: the unspecified address means this machine.
fn connectable(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        return format!("127.0.0.1:{port}");
    }
    if let Some(port) = listen.strip_prefix("[::]:") {
        return format!("[::1]:{port}");
    }
    listen.to_string()
}

fn backends_table(b: &BackendsJson) -> String {
    let header =
        ["ADDRESS", "STATE", "WEIGHT", "SESSIONS", "OPS", "INFLIGHT", "BUSY", "IDLE", "PROBE", "LATENCY", "EVACUATION"];
    let rows = b.backends.iter().map(|b| {
        let (probe, latency) = match &b.last_probe {
            Some(p) => (cut(&p.result, 40), format!("{:.1}ms", p.latency_ms)),
            None => ("-".into(), "-".into()),
        };
        vec![
            b.address.clone(),
            b.state.clone(),
            b.weight.to_string(),
            b.sessions.to_string(),
            b.operations.to_string(),
            b.inflight.to_string(),
            b.upstream.busy.to_string(),
            b.upstream.idle.to_string(),
            probe,
            latency,
            b.evacuation.as_ref().map_or("-".into(), |e| {
                format!("{}: {} moved, {} waiting, {} left", e.state, e.moved, e.waiting, e.left)
            }),
        ]
    });
    table(&header, rows.collect())
}

fn sessions_table(s: &SessionsJson) -> String {
    let header = ["ID", "BACKEND", "USER", "AS", "CLIENTS", "SINCE", "IDLE", "OPS", "STATEMENT"];
    let rows = s.sessions.iter().map(|s| {
        let statement = match (&s.running_statement, &s.last_statement) {
            (Some(r), _) => format!("[running] {}", cut(r, STATEMENT_COLUMN)),
            (None, Some(l)) => cut(l, STATEMENT_COLUMN),
            _ => "-".into(),
        };
        vec![
            s.id.clone(),
            s.backend.clone(),
            s.user.clone().unwrap_or_else(|| "-".into()),
            // The delegated user, when it is not the user.
            s.effective_user.clone().filter(|e| Some(e) != s.user.as_ref()).unwrap_or_else(|| "-".into()),
            if s.clients.is_empty() { "-".into() } else { s.clients.join(",") },
            s.opened_at.clone(),
            format!("{:.0}s", s.idle_seconds),
            s.open_operations.to_string(),
            statement,
        ]
    });
    let mut out = table(&header, rows.collect());
    let _ = writeln!(out, "{} session{}", s.sessions.len(), if s.sessions.len() == 1 { "" } else { "s" });
    out
}

/// One line, at most `n` characters.
fn cut(text: &str, n: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= n {
        return flat;
    }
    let mut s: String = flat.chars().take(n.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    use crate::cli::Cli;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_map_to_api_requests() {
        let call = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let (call, admin) = admin_call(cli.command.as_ref().unwrap()).unwrap();
            (request_line(&call), admin.clone())
        };
        let ((m, p), admin) = call(&["hs2-proxy", "sessions", "--backend", "h:1", "--user", "a b", "--json"]);
        assert_eq!((m, p.as_str()), ("GET", "/api/sessions?backend=h:1&user=a%20b"));
        assert!(admin.json);
        let ((m, p), _) = call(&["hs2-proxy", "drain", "[::1]:21050", "--admin", "127.0.0.1:9"]);
        assert_eq!((m, p.as_str()), ("POST", "/api/backends/%5B::1%5D:21050/drain"));
        assert_eq!(call(&["hs2-proxy", "close-session", "ab:cd"]).0 .1, "/api/sessions/ab:cd/close");
        assert_eq!(call(&["hs2-proxy", "cancel-operation", "ab:cd"]).0 .1, "/api/operations/ab:cd/cancel");
        assert_eq!(call(&["hs2-proxy", "undrain", "h:1"]).0 .1, "/api/backends/h:1/undrain");
        assert_eq!(call(&["hs2-proxy", "maintenance", "h:1"]).0 .1, "/api/backends/h:1/maintenance");
        let cli = Cli::try_parse_from(["hs2-proxy", "demo"]).unwrap();
        assert!(admin_call(cli.command.as_ref().unwrap()).is_none());
    }

    #[test]
    fn listen_addresses_become_connectable() {
        assert_eq!(connectable("0.0.0.0:25100"), "127.0.0.1:25100");
        assert_eq!(connectable("[::]:1"), "[::1]:1");
    }

    #[test]
    fn tables_align_and_cut() {
        let t = table(&["A", "BB"], vec![vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        assert_eq!(cut("select\n  1", 20), "select 1");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
