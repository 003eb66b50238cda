//! What a session's statements did to the session itself, so that the session can be re-opened on another
//! backend with the same state (`migrate`). No I/O.
//!
//! Every statement a session ran successfully is classified, conservatively:
//! - **session state that can be replayed**: `USE db`, `SET k=v` (Impala, Hive, Spark), `UNSET k` and
//!   `UNSET ALL` (Impala), `RESET` (Hive, Spark). They are kept, compacted (the last value of each key
//!   wins, a reset forgets earlier settings), and replayed in order on the new session;
//! - **harmless**: statements known to leave the session as it was: queries, `SHOW`/`DESCRIBE`/`EXPLAIN`,
//!   DML, and DDL on catalog objects (tables, views, databases, persistent functions). Never replayed:
//!   a statement that changes data is never run twice;
//! - **not replayable**: anything else, above all session-scoped objects a new session would lack
//!   (`CREATE TEMPORARY VIEW|FUNCTION|TABLE`, `ADD JAR`, `CACHE TABLE`, `DECLARE`...), and any statement the
//!   proxy cannot classify. Such a session is never moved; the reason is shown.
//!
//! A replayable statement counts only once it is known to have succeeded. Spark and Hive run every
//! statement asynchronously: ExecuteStatement succeeds, and `USE nosuchdb` fails later, in its operation.
//! Such a step waits (pending, under its operation's id) until the operation is seen finished, or is
//! closed without having been seen to fail; one that fails is dropped. A failed step replayed would fail
//! every move of the session.

use crate::thrift::MAX_CAPTURE_BYTES;

/// Settings kept at most per session; a session that sets more is not moved (its log would grow without
/// bound otherwise).
pub const MAX_SETTINGS: usize = 256;

/// What a statement did to its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Harmless,
    Replay(Step),
    NotReplayable(String),
}

/// One replayable change, with the key it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub key: StepKey,
    /// The statement as the client sent it (trimmed): replayed verbatim.
    pub statement: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKey {
    /// `USE db`.
    Database,
    /// `SET k=v` or `UNSET k`: the key, lower-cased.
    Setting(String),
    /// `UNSET ALL`, `RESET`: every earlier setting is gone.
    Reset,
}

/// Classifies one statement (at most [`MAX_CAPTURE_BYTES`] of it: a longer one that would change the
/// session cannot be replayed, since the proxy did not keep all of it).
pub fn classify(statement: &str) -> Effect {
    let text = strip_comments(statement);
    let first = text.split_whitespace().next().unwrap_or("");
    // Most statements are queries: known without copying or lower-casing anything.
    if HARMLESS_FIRST_WORDS.iter().any(|k| first.eq_ignore_ascii_case(k)) {
        return Effect::Harmless;
    }
    let words: Vec<String> = text.split_whitespace().take(4).map(|w| w.to_ascii_lowercase()).collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let truncated = statement.len() >= MAX_CAPTURE_BYTES;
    let replay = |key| {
        if truncated {
            Effect::NotReplayable("a session statement too long for the proxy to keep".into())
        } else {
            Effect::Replay(Step { key, statement: text.trim_end_matches(';').trim().to_string() })
        }
    };
    match w(0) {
        "" => Effect::Harmless,
        "use" => replay(StepKey::Database),
        "set" => match set_key(text) {
            // `SET` / `SET ALL` / `SET k` / `SET -v`: they show settings.
            None => Effect::Harmless,
            Some(key) => replay(StepKey::Setting(key)),
        },
        "unset" if w(1) == "all" => replay(StepKey::Reset),
        "unset" if !w(1).is_empty() => replay(StepKey::Setting(w(1).to_string())),
        "reset" => replay(StepKey::Reset),
        "create" | "drop" | "alter" => catalog_ddl(&words),
        "add" => Effect::NotReplayable(format!("`{} {}` adds a resource to this session only", w(0), w(1))),
        "cache" | "uncache" | "clear" => Effect::NotReplayable("the session's cache state cannot be replayed".into()),
        "declare" => Effect::NotReplayable("session variables cannot be replayed".into()),
        other => Effect::NotReplayable(format!("`{other}` is not a statement the proxy knows to be harmless")),
    }
}

/// First words of statements that read or change data and the catalog, never the session.
const HARMLESS_FIRST_WORDS: &[&str] = &[
    "select",
    "with",
    "values",
    "show",
    "describe",
    "desc",
    "explain",
    "table",
    "insert",
    "upsert",
    "update",
    "delete",
    "merge",
    "truncate",
    "load",
    "compute",
    "invalidate",
    "refresh",
    "analyze",
    "msck",
    "grant",
    "revoke",
    "comment",
];

/// `CREATE`/`DROP`/`ALTER` on catalog objects is harmless; on session-scoped (temporary) objects it is not.
fn catalog_ddl(words: &[String]) -> Effect {
    let temporary = words.iter().any(|w| w == "temporary" || w == "temp");
    if temporary {
        return Effect::NotReplayable("a temporary object lives in this session only".into());
    }
    Effect::Harmless
}

/// The key of `SET k=v`, lower-cased; `None` for the forms that only show settings.
fn set_key(text: &str) -> Option<String> {
    let rest = text.trim_start()[3..].trim_start();
    let (key, _) = rest.split_once('=')?;
    let key = key.trim().trim_matches('`').to_ascii_lowercase();
    (!key.is_empty() && !key.contains(char::is_whitespace)).then_some(key)
}

/// Drops leading `-- ...` lines and `/* ... */` blocks (clients put them before statements).
fn strip_comments(statement: &str) -> &str {
    let mut rest = statement.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            return rest;
        }
    }
}

/// An operation's id (its guid), under which a step waits for its outcome.
pub type OpId = [u8; 16];

/// A session's replayable state: the compacted steps in order, or why it cannot be moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateLog {
    steps: Vec<Step>,
    /// Steps whose operation has not finished yet (in the order they were run).
    pending: Vec<(OpId, Step)>,
    /// Set once for good: a session that did something not replayable stays where it is.
    blocked: Option<String>,
}

impl StateLog {
    /// Records a statement the session ran and that has succeeded.
    pub fn record(&mut self, statement: &str) {
        if let Some(step) = self.classify(statement) {
            self.push(step);
        }
    }

    /// Records a statement whose operation `op` runs now: a replayable step counts once [`StateLog::settle`]
    /// says it succeeded. A statement that is not replayable blocks the session at once (even if it fails
    /// later: conservative).
    pub fn record_pending(&mut self, op: OpId, statement: &str) {
        let Some(step) = self.classify(statement) else { return };
        self.pending.push((op, step));
        if self.pending.len() > MAX_SETTINGS {
            self.blocked = Some(format!("more than {MAX_SETTINGS} session statements running"));
        }
    }

    /// The outcome of operation `op`: its step (if any) counts when it `succeeded`, else it is dropped.
    pub fn settle(&mut self, op: &OpId, succeeded: bool) {
        let Some(at) = self.pending.iter().position(|(o, _)| o == op) else { return };
        let (_, step) = self.pending.remove(at);
        if succeeded && self.blocked.is_none() {
            self.push(step);
        }
    }

    /// Forgets steps whose outcome will never be known (their operations died with their backend).
    pub fn drop_pending(&mut self) {
        self.pending.clear();
    }

    /// The step of a replayable statement; `None` for harmless ones, and once blocked.
    fn classify(&mut self, statement: &str) -> Option<Step> {
        if self.blocked.is_some() {
            return None;
        }
        match classify(statement) {
            Effect::Harmless => None,
            Effect::NotReplayable(why) => {
                self.blocked = Some(why);
                None
            }
            Effect::Replay(step) => Some(step),
        }
    }

    fn push(&mut self, step: Step) {
        match &step.key {
            StepKey::Reset => self.steps.retain(|s| s.key == StepKey::Database),
            key => self.steps.retain(|s| &s.key != key),
        }
        self.steps.push(step);
        if self.steps.len() > MAX_SETTINGS {
            self.blocked = Some(format!("more than {MAX_SETTINGS} settings"));
        }
    }

    /// Why the session cannot be moved, if it cannot.
    pub fn blocked(&self) -> Option<&str> {
        self.blocked.as_deref()
    }

    /// The statements to replay, in order.
    pub fn statements(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.statement.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_classified_conservatively() {
        assert_eq!(classify("select 1"), Effect::Harmless);
        assert_eq!(classify("  -- Hue\n/* x */ SELECT * FROM t"), Effect::Harmless);
        assert_eq!(classify("insert into t values (1)"), Effect::Harmless);
        assert_eq!(classify("create table t (a int)"), Effect::Harmless);
        assert_eq!(classify("set"), Effect::Harmless);
        assert_eq!(classify("SET ALL"), Effect::Harmless);
        assert_eq!(classify("set -v"), Effect::Harmless);
        assert_eq!(classify("With x AS (select 1) SELECT * FROM x"), Effect::Harmless);
        assert!(matches!(classify("selected 1"), Effect::NotReplayable(_)), "a first word is matched whole");
        let step = |key, s: &str| Effect::Replay(Step { key, statement: s.into() });
        assert_eq!(classify("USE db_1;"), step(StepKey::Database, "USE db_1"));
        assert_eq!(classify("set MEM_LIMIT=2g"), step(StepKey::Setting("mem_limit".into()), "set MEM_LIMIT=2g"));
        assert_eq!(
            classify("SET spark.sql.shuffle.partitions = 7"),
            step(StepKey::Setting("spark.sql.shuffle.partitions".into()), "SET spark.sql.shuffle.partitions = 7")
        );
        assert_eq!(classify("unset mem_limit"), step(StepKey::Setting("mem_limit".into()), "unset mem_limit"));
        assert_eq!(classify("UNSET ALL"), step(StepKey::Reset, "UNSET ALL"));
        for no in [
            "create temporary view v as select 1",
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            "create temporary function f as 'x'",
            "add jar /tmp/x.jar",
            "cache table t",
            "frobnicate the session",
            "sel 1",
        ] {
            assert!(matches!(classify(no), Effect::NotReplayable(_)), "{no}");
        }
        let long_set = format!("set k='{}'", "v".repeat(MAX_CAPTURE_BYTES));
        assert!(matches!(classify(&long_set), Effect::NotReplayable(_)), "a truncated SET cannot be replayed");
    }

    #[test]
    fn the_log_compacts_and_blocks_for_good() {
        let mut log = StateLog::default();
        for s in ["use a", "set x=1", "set y=2", "select 1", "set X=3", "use b", "insert into t select 1"] {
            log.record(s);
        }
        assert_eq!(log.statements().collect::<Vec<_>>(), ["set y=2", "set X=3", "use b"]);
        log.record("unset all");
        assert_eq!(log.statements().collect::<Vec<_>>(), ["use b", "unset all"]);
        log.record("create temporary view v as select 1");
        assert!(log.blocked().unwrap().contains("temporary"));
        log.record("set z=1");
        assert_eq!(log.statements().count(), 2, "nothing more is recorded once blocked");
        let mut many = StateLog::default();
        (0..=MAX_SETTINGS).for_each(|i| many.record(&format!("set k{i}=1")));
        assert!(many.blocked().is_some());
    }

    /// Spark fails `USE nosuchdb` in its operation, after ExecuteStatement succeeded: only steps whose
    /// operations succeeded are replayed, and a failed `SET` does not undo the value before it.
    #[test]
    fn only_steps_that_succeeded_count() {
        let mut log = StateLog::default();
        log.record_pending([1; 16], "use db_1");
        log.record_pending([2; 16], "set k=1");
        assert_eq!(log.statements().count(), 0, "nothing counts while it runs");
        log.settle(&[1; 16], true);
        log.settle(&[2; 16], true);
        log.record_pending([3; 16], "use no_such_db");
        log.settle(&[3; 16], false);
        log.record_pending([4; 16], "set k=not_a_number");
        log.settle(&[4; 16], false);
        log.record_pending([5; 16], "select 1");
        log.settle(&[5; 16], true);
        log.settle(&[9; 16], true);
        assert_eq!(log.statements().collect::<Vec<_>>(), ["use db_1", "set k=1"]);
        log.record_pending([6; 16], "set j=2");
        log.drop_pending();
        log.settle(&[6; 16], true);
        assert_eq!(log.statements().count(), 2, "an outcome never seen does not count");
        log.record_pending([7; 16], "create temporary view v as select 1");
        assert!(log.blocked().is_some(), "blocked at once, whatever the outcome");
    }
}
