//! The status page's history charts, drawn on the server as inline SVG: no script, no external file, and
//! readable in the page that `/` sends as much as in each `/fragment` refresh. No I/O.
//!
//! Four small line charts over the last 15 minutes ([`super::history::WINDOW`]): sessions per backend,
//! calls per second, p99 latency and errors per second. Every `<svg>` carries its figures as data
//! attributes (`data-chart`, `data-points`, `data-last`, `data-max`) for tests and tools.

use std::fmt::Write as _;

use super::history::{Sample, WINDOW};
use super::page::esc;

/// Drawing size (the SVG scales to its box; text stays legible at this size).
const W: f64 = 440.0;
const H: f64 = 120.0;
/// Room for the y labels on the left and the x labels below.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 18.0;
const TOP: f64 = 8.0;
/// Line colours for backends, in configuration order (repeating).
const PALETTE: [&str; 6] = ["#3867d6", "#1f9d55", "#c77700", "#8e44ad", "#16a2b8", "#d63838"];

/// One line: its label, colour and points (`None` is a gap: no value in that interval).
struct Series {
    label: String,
    colour: &'static str,
    points: Vec<(u64, Option<f64>)>,
}

/// The charts' section for `samples` (oldest first), ending at `now_ms` (milliseconds since the epoch).
pub fn section(samples: &[Sample], now_ms: u64) -> String {
    let start = now_ms.saturating_sub(WINDOW.as_millis() as u64);
    let recent: Vec<&Sample> = samples.iter().filter(|s| s.at_ms >= start).collect();
    let mut out = String::from("<section><h2>Last 15 minutes</h2><div class=\"charts\">");
    let line = |label: &str, colour, f: &dyn Fn(&Sample) -> Option<f64>| Series {
        label: label.to_string(),
        colour,
        points: recent.iter().map(|s| (s.at_ms, f(s))).collect(),
    };
    chart(&mut out, "sessions", "sessions per backend", &backend_lines(&recent), start, 0);
    let calls = line("calls/s", PALETTE[0], &|s| Some(s.calls_per_second()));
    chart(&mut out, "calls", "calls per second", &[calls], start, 1);
    let p99 = line("p99 ms", PALETTE[2], &|s| s.p99_ms);
    chart(&mut out, "p99", "p99 latency (ms)", &[p99], start, 1);
    let errors = line("errors/s", PALETTE[5], &|s| Some(s.errors_per_second()));
    chart(&mut out, "errors", "errors per second", &[errors], start, 2);
    out.push_str("</div></section>");
    out
}

/// One line per backend of the newest sample (a backend added by a reload starts where it appears).
fn backend_lines(samples: &[&Sample]) -> Vec<Series> {
    let Some(newest) = samples.last() else { return Vec::new() };
    newest
        .sessions
        .iter()
        .enumerate()
        .map(|(i, (addr, _))| Series {
            label: addr.clone(),
            colour: PALETTE[i % PALETTE.len()],
            points: samples
                .iter()
                .map(|s| (s.at_ms, s.sessions.iter().find(|(a, _)| a == addr).map(|(_, n)| *n as f64)))
                .collect(),
        })
        .collect()
}

/// A chart: frame, y scale from 0 to a round maximum, the lines, a legend. `decimals` for the labels.
fn chart(out: &mut String, id: &str, title: &str, lines: &[Series], start_ms: u64, decimals: usize) {
    let values = lines.iter().flat_map(|l| l.points.iter().filter_map(|p| p.1));
    let max = round_up(values.clone().fold(0.0, f64::max));
    // Empty when the newest interval has no value (no p99 without calls).
    let last = lines.iter().filter_map(|l| l.points.last().and_then(|p| p.1)).reduce(|a, b| a + b);
    let last = last.map(num).unwrap_or_default();
    let points = lines.first().map_or(0, |l| l.points.len());
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{title}</figcaption>\
         <svg data-chart=\"{id}\" data-points=\"{points}\" data-last=\"{last}\" data-max=\"{max}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{title}\">",
        title = esc(title),
    );
    frame(out, max);
    for l in lines {
        polylines(out, l, start_ms, max);
    }
    if points == 0 {
        let _ = write!(out, "<text x=\"{}\" y=\"{}\" class=\"empty\">no samples yet</text>", LEFT + 12.0, H / 2.0);
    }
    out.push_str("</svg>");
    legend(out, lines, decimals);
    out.push_str("</figure>");
}

/// Axes, the grid lines at half and full scale, and the time labels.
fn frame(out: &mut String, max: f64) {
    let (bottom, right) = (H - BOTTOM, W - 4.0);
    for (frac, label) in [(0.0, 0.0), (0.5, max / 2.0), (1.0, max)] {
        let y = bottom - frac * (bottom - TOP);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{x}\" y=\"{ty:.1}\" class=\"axis\" text-anchor=\"end\">{label}</text>",
            x = LEFT - 4.0,
            ty = y + 3.5,
            label = num(label),
        );
    }
    for (frac, label) in [(0.0, "-15 min"), (1.0 / 3.0, "-10 min"), (2.0 / 3.0, "-5 min"), (1.0, "now")] {
        let x = LEFT + frac * (right - LEFT);
        let anchor = if frac == 1.0 {
            "end"
        } else if frac == 0.0 {
            "start"
        } else {
            "middle"
        };
        let _ =
            write!(out, "<text x=\"{x:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"{anchor}\">{label}</text>", H - 4.0);
    }
}

/// The line through a series' points, broken where a value is missing; a lone point is a dot.
fn polylines(out: &mut String, series: &Series, start_ms: u64, max: f64) {
    let (bottom, right) = (H - BOTTOM, W - 4.0);
    let span = WINDOW.as_millis() as f64;
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (at, value) in &series.points {
        match value {
            Some(v) => {
                let x = LEFT + (at.saturating_sub(start_ms) as f64 / span).min(1.0) * (right - LEFT);
                let y = bottom - (v / max).clamp(0.0, 1.0) * (bottom - TOP);
                if let Some(run) = runs.last_mut() {
                    run.push((x, y));
                }
            }
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|r| !r.is_empty()) {
        if let [(x, y)] = run.as_slice() {
            let _ = write!(out, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{}\"/>", series.colour);
            continue;
        }
        let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\"/>",
            pts.join(" "),
            series.colour
        );
    }
}

/// Each line's colour, label and latest value.
fn legend(out: &mut String, lines: &[Series], decimals: usize) {
    out.push_str("<div class=\"legend\">");
    for l in lines {
        let last = l.points.last().and_then(|p| p.1).map_or("–".to_string(), |v| format!("{v:.decimals$}"));
        let _ = write!(out, "<span><i style=\"background:{}\"></i>{} <b>{last}</b></span>", l.colour, esc(&l.label));
    }
    out.push_str("</div>");
}

/// A figure for a label: whole numbers without decimals, others with at most two.
fn num(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').to_string()
    }
}

/// The scale's top: the next 1, 2 or 5 times a power of ten at or above `v` (1 for an empty chart).
fn round_up(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|top| *top >= v).unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, calls: u64, p99: Option<f64>, sessions: &[(&str, u64)]) -> Sample {
        Sample {
            at_ms,
            seconds: 10.0,
            calls,
            errors: calls / 10,
            p99_ms: p99,
            sessions: sessions.iter().map(|(a, n)| (a.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn charts_carry_their_figures_and_skip_old_samples() {
        let now = 10_000_000;
        let samples = [
            sample(now - 20 * 60_000, 999, Some(1.0), &[("a:1", 9)]),
            sample(now - 60_000, 100, Some(4.0), &[("a:1", 1), ("<b>:2", 2)]),
            sample(now - 50_000, 300, None, &[("a:1", 3), ("<b>:2", 4)]),
        ];
        let html = section(&samples, now);
        assert!(html.contains("data-chart=\"sessions\" data-points=\"2\" data-last=\"7\" data-max=\"5\""), "{html}");
        assert!(html.contains("data-chart=\"calls\" data-points=\"2\" data-last=\"30\" data-max=\"50\""), "{html}");
        assert!(
            html.contains("data-chart=\"p99\" data-points=\"2\" data-last=\"\" data-max=\"5\""),
            "no p99 without calls"
        );
        assert!(html.contains(">2.5</text>") && html.contains(">25</text>"), "axis labels: {html}");
        assert!(html.contains("data-chart=\"errors\" data-points=\"2\" data-last=\"3\""), "{html}");
        assert!(html.contains("&lt;b&gt;:2") && !html.contains("<b>:2"), "addresses are escaped");
        assert_eq!(html.matches("<svg").count(), 4);
    }

    #[test]
    fn an_empty_history_says_so() {
        let html = section(&[], 5_000_000);
        assert_eq!(html.matches("no samples yet").count(), 4);
    }

    #[test]
    fn scales_round_to_one_two_five() {
        assert_eq!([0.0, 0.3, 1.0, 1.5, 7.0, 20.0, 2001.0].map(round_up), [1.0, 0.5, 1.0, 2.0, 10.0, 20.0, 5000.0]);
    }
}
