//! The status page at `/`: history charts of the last 15 minutes ([`super::charts`]), backends with their
//! state and load, and the sessions on each impalad.
//!
//! One renderer, on the server: `/` is the page with the data already in it (readable with JavaScript
//! off, and by `curl`), and `/fragment` is the same `<main>` alone, which a few lines of inline script
//! fetch every two seconds. No framework, no CDN, no external file: the machine may have no internet.
//! Everything a peer or a user controls (statements, user names) is HTML-escaped here.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::api::{self, BackendJson, SessionFilter, SessionJson};
use super::history::History;
use super::{authorized, charts, Authorized};
use crate::proxy::Proxy;

/// Sessions listed per backend; the API has them all.
pub const SESSIONS_PER_BACKEND: usize = 100;
/// How often the page refreshes itself.
const REFRESH_MS: u32 = 2000;

pub async fn index(headers: HeaderMap, State(proxy): State<Proxy>, Extension(history): Extension<History>) -> Response {
    let body = if authorized(&proxy, &headers) { main_html(&proxy, &history) } else { LOGIN.to_string() };
    html(page(&proxy, &body))
}

pub async fn fragment(_: Authorized, State(proxy): State<Proxy>, Extension(history): Extension<History>) -> Response {
    html(main_html(&proxy, &history))
}

fn html(body: String) -> Response {
    ([(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-store")], body).into_response()
}

fn page(proxy: &Proxy, main: &str) -> String {
    let listen = proxy.config().listen;
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>hs2-proxy {listen}</title><style>{CSS}</style></head>\n<body data-refreshes=\"0\">\
         <header><h1>hs2-proxy</h1><span class=\"muted\">HS2 on {listen} · v{version}</span>\
         <span id=\"live\" class=\"live\">static page: reload to update</span></header>\n\
         <main id=\"main\">{main}</main>\n<script>{SCRIPT}</script></body></html>\n",
        SCRIPT = SCRIPT.replace("REFRESH_MS", &REFRESH_MS.to_string()),
    )
}

/// The page's data: summary, history charts, backends, sessions per backend.
pub fn main_html(proxy: &Proxy, history: &History) -> String {
    let backends = api::all_backends(proxy).backends;
    let sessions = api::filtered_sessions(proxy, &SessionFilter { backend: None, user: None }).sessions;
    let mut out = String::with_capacity(8 * 1024);
    summary(&mut out, proxy, &backends, sessions.len());
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    out.push_str(&charts::section(&history.samples(), now_ms));
    backend_table(&mut out, &backends);
    out.push_str("<section><h2>Sessions per impalad</h2>");
    for b in &backends {
        let mine: Vec<&SessionJson> = sessions.iter().filter(|s| s.backend == b.address).collect();
        session_table(&mut out, b, &mine);
    }
    out.push_str("</section>");
    out
}

fn summary(out: &mut String, proxy: &Proxy, backends: &[BackendJson], sessions: usize) {
    let up = backends.iter().filter(|b| b.eligible).count();
    let operations: u64 = backends.iter().map(|b| b.operations).sum();
    let inflight: u64 = backends.iter().map(|b| b.inflight).sum();
    let cards = [
        ("backends taking sessions", format!("{up} / {}", backends.len())),
        ("sessions", sessions.to_string()),
        ("open operations", operations.to_string()),
        ("calls in flight", inflight.to_string()),
        ("client connections", proxy.metrics().client_connections().to_string()),
        ("uptime", human(proxy.uptime())),
    ];
    out.push_str("<section class=\"cards\">");
    for (label, value) in cards {
        let _ = write!(out, "<div class=\"card\"><b>{}</b><span>{label}</span></div>", esc(&value));
    }
    out.push_str("</section>");
}

fn backend_table(out: &mut String, backends: &[BackendJson]) {
    let most = backends.iter().map(|b| b.sessions).max().unwrap_or(0).max(1);
    out.push_str(
        "<section><h2>Backends</h2><table class=\"backends\"><thead><tr><th>address</th><th>state</th>\
         <th>weight</th><th>sessions</th><th>operations</th><th>in flight</th><th>upstream busy / idle (max)</th>\
         <th>last probe</th></tr></thead><tbody>",
    );
    for b in backends {
        let bar = (b.sessions * 100 / most).min(100);
        let probe = match &b.last_probe {
            Some(p) => format!("{} · {:.1} ms", esc(&p.result), p.latency_ms),
            None => "not yet".into(),
        };
        let impalad = b.impalad_sessions.map(|n| format!(" <span class=\"muted\">(impalad: {n})</span>"));
        let evacuation = b.evacuation.as_ref().map(|e| {
            let verdict = if e.state == "done" { "empty: restart it".to_string() } else { e.state.clone() };
            format!(
                "<div class=\"muted evacuation\">evacuation {}: {} moved, {} waiting, {} left</div>",
                esc(&verdict),
                e.moved,
                e.waiting,
                e.left
            )
        });
        let _ = write!(
            out,
            "<tr data-backend=\"{addr}\" data-state=\"{state}\" data-sessions=\"{sessions}\" \
             data-operations=\"{ops}\"><td class=\"mono\">{addr}</td>\
             <td><span class=\"badge {state}\" title=\"{reason}\">{state}</span>{evacuation}</td><td>{weight}</td>\
             <td><div class=\"bar\"><i style=\"width:{bar}%\"></i></div>{sessions}{impalad}</td><td>{ops}</td>\
             <td>{inflight}</td><td>{busy} / {idle} ({max})</td><td class=\"probe\">{probe}</td></tr>",
            addr = esc(&b.address),
            state = esc(&b.state),
            reason = esc(&format!("observed {}, operator {}: {}", b.observed, b.admin, b.reason)),
            weight = b.weight,
            sessions = b.sessions,
            impalad = impalad.unwrap_or_default(),
            evacuation = evacuation.unwrap_or_default(),
            ops = b.operations,
            inflight = b.inflight,
            busy = b.upstream.busy,
            idle = b.upstream.idle,
            max = b.upstream.max,
        );
    }
    if backends.is_empty() {
        out.push_str("<tr><td colspan=\"8\" class=\"muted\">no backends configured</td></tr>");
    }
    out.push_str("</tbody></table></section>");
}

fn session_table(out: &mut String, b: &BackendJson, sessions: &[&SessionJson]) {
    let _ = write!(
        out,
        "<details open data-impalad=\"{addr}\"><summary><span class=\"mono\">{addr}</span> \
         <span class=\"badge {state}\">{state}</span> <span class=\"count\">{n} session{s}</span></summary>",
        addr = esc(&b.address),
        state = esc(&b.state),
        n = sessions.len(),
        s = if sessions.len() == 1 { "" } else { "s" },
    );
    if sessions.is_empty() {
        out.push_str("<p class=\"muted\">no sessions</p></details>");
        return;
    }
    out.push_str(
        "<table class=\"sessions\"><thead><tr><th>session</th><th>user</th><th>clients</th><th>since (UTC)</th>\
         <th>idle</th><th>operations</th><th>statement</th></tr></thead><tbody>",
    );
    for s in sessions.iter().take(SESSIONS_PER_BACKEND) {
        let statement = match (&s.running_statement, &s.last_statement) {
            (Some(r), _) => format!("<span class=\"running\">running</span> <code>{}</code>", esc(r)),
            (None, Some(l)) => format!("<code class=\"muted\">{}</code>", esc(l)),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr data-session=\"{id}\"><td class=\"mono\">{id}</td><td>{user}</td><td class=\"mono\">{clients}</td>\
             <td title=\"{opened}\">{opened_short}</td><td>{idle}</td><td>{ops}</td><td class=\"stmt\">{statement}</td></tr>",
            id = esc(&s.id),
            user = user_cell(s),
            clients = if s.clients.is_empty() { "<span class=\"muted\">detached</span>".into() } else { esc(&s.clients.join(" ")) },
            opened = esc(&s.opened_at),
            opened_short = esc(s.opened_at.get(11..19).unwrap_or(&s.opened_at)),
            idle = human(Duration::from_secs_f64(s.idle_seconds.max(0.0))),
            ops = s.open_operations,
        );
    }
    out.push_str("</tbody></table>");
    if sessions.len() > SESSIONS_PER_BACKEND {
        let _ = write!(
            out,
            "<p class=\"muted\">and {} more: <code>GET /api/sessions?backend={}</code></p>",
            sessions.len() - SESSIONS_PER_BACKEND,
            esc(&b.address)
        );
    }
    out.push_str("</details>");
}

/// The user, with the delegated user when it differs, and a mark on sessions found by asking.
fn user_cell(s: &SessionJson) -> String {
    let mut cell = match &s.user {
        Some(u) => esc(u),
        None => "<span class=\"muted\">(none)</span>".into(),
    };
    if let Some(e) = s.effective_user.as_ref().filter(|e| Some(*e) != s.user.as_ref()) {
        let _ = write!(cell, " <span class=\"muted\">as</span> {}", esc(e));
    }
    if s.learned == "recovered" {
        cell.push_str(" <span class=\"muted\" title=\"found by asking the backends\">(found)</span>");
    }
    if let Some(rule) = &s.rule {
        let _ = write!(cell, " <span class=\"muted\" title=\"placed by this routing rule\">via {}</span>", esc(rule));
    }
    cell
}

/// `3 s`, `4 min`, `2 h 5 min`, `3 d 4 h`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Shown instead of the data when a token is configured and the request has none.
const LOGIN: &str = "<section class=\"login\"><h2>Admin token required</h2>\
    <p>This proxy's admin API needs a bearer token (<code>admin.token_file</code>). It is kept in this tab only.</p>\
    <form id=\"login\"><input type=\"password\" id=\"token\" placeholder=\"admin token\" autocomplete=\"off\">\
    <button>Show status</button></form></section>";

const CSS: &str = r#"
:root{--bg:#f6f7f9;--fg:#1d2330;--muted:#6b7385;--line:#dde1e8;--card:#fff;--up:#1f9d55;--drain:#c77700;--maint:#3867d6;--down:#d63838}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:16px;align-items:baseline;padding:14px 24px;background:#1d2330;color:#fff}
header h1{margin:0;font-size:20px}header .muted{color:#aab2c5}.live{margin-left:auto;font-size:12px;color:#aab2c5}.live.err{color:#ff8a8a}
main{padding:16px 24px;max-width:1400px}h2{font-size:16px;margin:22px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:22px}.card span{color:var(--muted);font-size:12px}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}th{font-size:12px;color:var(--muted);font-weight:600;background:#fafbfc}
tr:last-child td{border-bottom:0}.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.muted{color:var(--muted)}.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--muted)}
.badge.up{background:var(--up)}.badge.draining,.badge.drain{background:var(--drain)}.badge.maintenance{background:var(--maint)}.badge.down{background:var(--down)}
.bar{display:inline-block;width:70px;height:8px;background:#e8ebf0;border-radius:4px;margin-right:8px;vertical-align:middle}.bar i{display:block;height:100%;background:#5b8def;border-radius:4px}
details{margin:10px 0}summary{cursor:pointer;padding:6px 0;font-weight:600}summary .count{color:var(--muted);font-weight:400}
.stmt code{white-space:pre-wrap;word-break:break-all}.running{color:var(--up);font-weight:600;font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.chart{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.chart figcaption{font-size:12px;color:var(--muted);font-weight:600}.chart svg{display:block;width:100%;height:auto}
.chart .grid{stroke:#e8ebf0;stroke-width:1}.chart .axis{font-size:9px;fill:var(--muted)}.chart .empty{font-size:11px;fill:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px}.legend i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
.probe{font-size:12px;max-width:340px}.login input{padding:6px 8px;width:280px}.login button{padding:6px 12px;margin-left:8px}
"#;

/// Polls `/fragment` and swaps `<main>`; keeps which impalads the reader folded; takes the token from
/// the tab's storage (or `#token=` once, which never reaches the server).
const SCRIPT: &str = r#"
(function () {
  var main = document.getElementById('main'), live = document.getElementById('live');
  var key = 'hs2-proxy-admin-token', token = sessionStorage.getItem(key) || '';
  var m = location.hash.match(/token=([^&]+)/);
  if (m) { token = decodeURIComponent(m[1]); sessionStorage.setItem(key, token); history.replaceState(null, '', location.pathname); }
  var refreshes = 0;
  function say(text, bad) { live.textContent = text; live.className = bad ? 'live err' : 'live'; }
  function bindLogin() {
    var form = document.getElementById('login');
    if (!form) return;
    form.onsubmit = function (e) {
      e.preventDefault();
      token = document.getElementById('token').value.trim();
      sessionStorage.setItem(key, token);
      refresh();
    };
  }
  function refresh() {
    var headers = token ? { 'Authorization': 'Bearer ' + token } : {};
    fetch('./fragment', { headers: headers, cache: 'no-store' }).then(function (r) {
      if (r.status === 401) { say('admin token required', true); if (!document.getElementById('login')) location.reload(); return null; }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.text();
    }).then(function (html) {
      if (html === null) return;
      var folded = {};
      main.querySelectorAll('details[data-impalad]').forEach(function (d) { if (!d.open) folded[d.dataset.impalad] = 1; });
      main.innerHTML = html;
      main.querySelectorAll('details[data-impalad]').forEach(function (d) { if (folded[d.dataset.impalad]) d.open = false; });
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      say('live · updated ' + new Date().toLocaleTimeString(), false);
    }).catch(function (e) { say('proxy unreachable (' + e.message + '), retrying', true); });
  }
  bindLogin();
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human(Duration::from_secs(7)), "7 s");
        assert_eq!(human(Duration::from_secs(600)), "10 min");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 3600)), "2 d 1 h");
    }
}
