//! The soak's report: every figure the verdict rests on, as markdown (for docs/reliability.md) and the
//! samples as CSV. Builds the verdict from the pieces; no I/O.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::cluster::AuditFigures;
use super::faults::{Fault, Planned, Window};
use super::load::{Ctx, Kind, Mix, KINDS};
use super::sample::{Sample, SERIES};
use super::verdict::{growth, Growth};
use super::Settings;

/// What the checks after the load found.
#[derive(Clone, Debug, Default)]
pub struct Finals {
    pub problems: Vec<String>,
    pub sessions_at_end: usize,
    pub pinned_at_end: usize,
    /// Sessions the proxy said it left for the server to expire (no idle upstream connection to close
    /// them on).
    pub left_to_server: usize,
    /// Sessions still open on the mocks that the running instance never knew (opened before its start).
    pub orphans_of_earlier_instance: usize,
}

/// One client kind's figures.
#[derive(Clone, Debug)]
pub struct KindFigures {
    pub kind: Kind,
    pub ok: u64,
    pub healed: u64,
    pub retried: u64,
    pub failures: u64,
    pub outside_faults: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub minutes: f64,
    pub faults: Vec<Planned>,
    pub kinds: Vec<KindFigures>,
    pub audit: AuditFigures,
    pub growth: Vec<(&'static str, &'static str, Growth)>,
    pub window: (f64, f64),
    pub samples: Vec<Sample>,
    pub finals: Finals,
    pub proxy_starts: u32,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

/// What was run: the settings, the client mix, the faults carried out with their windows.
pub struct Run<'a> {
    pub settings: &'a Settings,
    pub mix: &'a Mix,
    pub windows: &'a [Window],
    pub faults: &'a [Planned],
    pub proxy_starts: u32,
}

impl Report {
    pub fn build(
        run: &Run<'_>,
        ctx: &Ctx,
        audit: AuditFigures,
        samples: Vec<Sample>,
        finals: Finals,
        problems: Vec<String>,
    ) -> Report {
        let (windows, faults, proxy_starts) = (run.windows, run.faults, run.proxy_starts);
        let total = run.settings.duration.as_secs_f64();
        let window = (total / 3.0, total);
        let growth: Vec<_> = SERIES
            .iter()
            .map(|(name, what, tol)| {
                let points: Vec<(f64, f64)> = samples.iter().filter_map(|x| Some((x.t, x.get(name)?))).collect();
                (*name, *what, growth(&points, window, *tol))
            })
            .collect();
        let kinds: Vec<KindFigures> = KINDS
            .iter()
            .filter(|k| run.mix.clients(**k) > 0)
            .map(|k| {
                let st = ctx.stats(*k);
                let outside = st
                    .kept_failures()
                    .into_iter()
                    .filter(|(t, _)| !windows.iter().any(|w| w.contains(*t)))
                    .map(|(_, why)| why)
                    .collect();
                KindFigures {
                    kind: *k,
                    ok: st.ok.load(Ordering::Relaxed),
                    healed: st.healed.load(Ordering::Relaxed),
                    retried: st.retried.load(Ordering::Relaxed),
                    failures: st.failures.load(Ordering::Relaxed),
                    outside_faults: outside,
                }
            })
            .collect();
        let mut failures = problems;
        if audit.misrouted > 0 {
            failures.push(format!("{} misrouted calls: {:?}", audit.misrouted, audit.examples));
        }
        if audit.unseen > 0 {
            failures
                .push(format!("{} calls with unknown handles were dropped before the audit saw them", audit.unseen));
        }
        for (name, _, g) in &growth {
            if g.grows {
                failures.push(format!("{name} grows: {:.1}/min over the last two thirds ({g:?})", g.slope_per_minute));
            }
        }
        for k in &kinds {
            if k.ok == 0 {
                failures.push(format!("{:?}: no round succeeded", k.kind));
            }
            if let Some(first) = k.outside_faults.first() {
                failures.push(format!(
                    "{:?}: {} failures outside any fault's window, e.g. {first}",
                    k.kind,
                    k.outside_faults.len()
                ));
            }
        }
        if proxy_starts != 2 {
            failures.push(format!("the proxy was started {proxy_starts} times, not twice"));
        }
        failures.extend(finals.problems.iter().cloned());
        Report {
            minutes: total / 60.0,
            faults: faults.to_vec(),
            kinds,
            audit,
            growth,
            window,
            samples,
            finals,
            proxy_starts,
            failures,
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The samples, one row per reading.
    pub fn csv(&self) -> String {
        let mut out = String::from("t_seconds");
        for (name, _, _) in SERIES {
            let _ = write!(out, ",{name}");
        }
        out.push('\n');
        for s in &self.samples {
            let _ = write!(out, "{:.1}", s.t);
            for v in &s.values {
                match v {
                    Some(x) => {
                        let _ = write!(out, ",{x:.1}");
                    }
                    None => out.push(','),
                }
            }
            out.push('\n');
        }
        out
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        let _ = writeln!(o, "Soak of {:.0} minutes: **{verdict}**.\n", self.minutes);
        self.fault_summary(&mut o);
        self.load_table(&mut o);
        let a = &self.audit;
        let _ = writeln!(
            o,
            "Calls naming a handle their mock did not hold: {} in all; {} were the proxy's own lookups at a \
             backend that does not hold the handle (by design), {} named handles no mock held (stale), \
             **{} were misrouted**; {} were dropped unseen.\n",
            a.unknown, a.lookups_elsewhere, a.stale, a.misrouted, a.unseen
        );
        self.growth_table(&mut o);
        let f = &self.finals;
        let _ = writeln!(
            o,
            "At the end: {} sessions in the table after the clean-up, {} pinned connections; {} sessions the \
             proxy left for the impalad to expire; {} sessions of the first proxy instance never used again \
             (unknown to the second).\n",
            f.sessions_at_end, f.pinned_at_end, f.left_to_server, f.orphans_of_earlier_instance
        );
        if self.failures.is_empty() {
            o.push_str("Every check passed.\n");
        } else {
            o.push_str("Failures:\n");
            for why in &self.failures {
                let _ = writeln!(o, "- {why}");
            }
        }
        o
    }

    fn fault_summary(&self, o: &mut String) {
        let count = |f: fn(&Fault) -> bool| self.faults.iter().filter(|p| f(&p.fault)).count();
        let _ = writeln!(
            o,
            "Faults ({} in all, one at a time, 3 s each): {} kills and restarts of a backend, {} drains \
             (admin API), {} impalad shutdowns announced, {} connection drops, {} reloads removing and \
             restoring a backend (SIGHUP), {} proxy restart (SIGTERM, start again).\n",
            self.faults.len(),
            count(|f| matches!(f, Fault::Kill(_))),
            count(|f| matches!(f, Fault::Drain(_))),
            count(|f| matches!(f, Fault::ImpaladShutdown(_))),
            count(|f| matches!(f, Fault::Blip(_))),
            count(|f| matches!(f, Fault::Reload(_))),
            count(|f| matches!(f, Fault::RestartProxy)),
        );
    }

    fn load_table(&self, o: &mut String) {
        o.push_str("| client kind | rounds ok | failures (all during faults unless noted) | Hue healed / retried |\n");
        o.push_str("|---|---:|---:|---:|\n");
        for k in &self.kinds {
            let outside = match k.outside_faults.len() {
                0 => String::new(),
                n => format!(" ({n} outside)"),
            };
            let hue = if k.kind == Kind::Hue { format!("{} / {}", k.healed, k.retried) } else { "-".into() };
            let _ = writeln!(o, "| {:?} | {} | {}{outside} | {hue} |", k.kind, k.ok, k.failures);
        }
        o.push('\n');
    }

    fn growth_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "Recorded every few seconds; judged from {:.0} s to {:.0} s (the last two thirds of the load):\n",
            self.window.0, self.window.1
        );
        o.push_str("| series | samples | median, first third | median, last third | max | slope /min | allowed growth | grows? |\n");
        o.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
        for (name, what, g) in &self.growth {
            let _ = writeln!(
                o,
                "| `{name}`: {what} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {} |",
                g.samples,
                g.first_third_median,
                g.last_third_median,
                g.max,
                g.slope_per_minute,
                g.allowed,
                if g.grows { "**yes**" } else { "no" }
            );
        }
        o.push('\n');
    }
}
