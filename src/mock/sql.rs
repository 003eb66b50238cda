//! The mock impalad's tiny SQL dialect. No I/O.
//!
//! Statements are matched case-insensitively after trimming, dropping a trailing `;` and collapsing
//! whitespace. Anything not understood fails the way Impala's analyzer does: with a text that starts with
//! `AnalysisException`, which clients and the proxy treat as a user error.

/// Largest `blobs(_, SIZE)` row: keeps one row well inside every message limit.
pub const MAX_BLOB_BYTES: u64 = 16 << 20;
/// Longest `sleep(MS)`: a day, so that deadlines stay far from `Instant` overflow.
pub const MAX_SLEEP_MS: u64 = 24 * 3600 * 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    /// `select <integer>`: one BIGINT column named as written, one row.
    Literal { value: i64, name: String },
    /// `select id from range(N)`: BIGINT `id`, rows `0..N`.
    Range(u64),
    /// `select payload from blobs(N, SIZE)`: STRING `payload`, row `i` is bytes `(i + k) % 251`.
    Blobs { rows: u64, size: usize },
    /// `select sleep(MS)`: runs for MS milliseconds, then one BOOLEAN row `true`.
    Sleep(u64),
    /// `select crash()`: the first FetchResults writes half a reply and drops the connection.
    Crash,
    /// `select fail()`: the operation ends in ERROR_STATE (a runtime failure, not an analysis one).
    Fail,
    /// `set` / `set all`: the query options.
    ShowOptions,
    /// `set k=v`: a session query option (key upper-cased, as Impala shows it).
    SetOption { key: String, value: String },
    /// `use db`.
    Use(String),
    /// `create`, `drop`, `invalidate`, `refresh`: succeed, no result set.
    Ddl,
    /// `insert`, `upsert`, `update`, `delete`: no result set; CloseImpalaOperation reports `rows` modified
    /// (the tuples after `values`, or N of a `range(N)`; else 0).
    Dml { rows: u64 },
    /// `show databases`.
    ShowDatabases,
    /// `select current_user()` / `effective_user()` (the delegated user if any, as in Impala), or
    /// `select user()` / `session_user()` (the connected user): one STRING column named as written.
    User { effective: bool, name: String },
    /// `select current_database()`: the session's database (`USE` changes it).
    CurrentDatabase,
}

impl Statement {
    pub fn has_result_set(&self) -> bool {
        !matches!(self, Statement::SetOption { .. } | Statement::Use(_) | Statement::Ddl | Statement::Dml { .. })
    }
}

/// Parses one statement; `Err` holds Impala's error text.
pub fn parse(text: &str) -> Result<Statement, String> {
    let text = text.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let words = compact(text);
    let lower = words.to_ascii_lowercase();
    let first = lower.split(' ').next().unwrap_or_default();
    if matches!(first, "create" | "drop" | "invalidate" | "refresh") {
        return Ok(Statement::Ddl);
    }
    if matches!(first, "insert" | "upsert" | "update" | "delete") {
        return Ok(Statement::Dml { rows: dml_rows(&lower) });
    }
    if lower == "set" || lower == "set all" {
        return Ok(Statement::ShowOptions);
    }
    if let Some(rest) = strip_prefix_ci(&words, "set ") {
        if let Some((k, v)) = rest.split_once('=') {
            let value = v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
            return Ok(Statement::SetOption { key: k.trim().to_ascii_uppercase(), value });
        }
    }
    if let Some(db) = strip_prefix_ci(&words, "use ") {
        return Ok(Statement::Use(db.trim_matches('`').to_string()));
    }
    if lower == "show databases" || lower == "show schemas" {
        return Ok(Statement::ShowDatabases);
    }
    select(&words, &lower).ok_or_else(|| unresolved(&lower))
}

fn select(words: &str, lower: &str) -> Option<Statement> {
    let rest = lower.strip_prefix("select ")?;
    if let Ok(value) = rest.parse::<i64>() {
        let name = words.get("select ".len()..).unwrap_or_default().to_string();
        return Some(Statement::Literal { value, name });
    }
    if let Some(args) = call_args(rest, "id from range") {
        let [n] = args[..] else { return None };
        return Some(Statement::Range(n.parse().ok()?));
    }
    if let Some(args) = call_args(rest, "payload from blobs") {
        let [n, size] = args[..] else { return None };
        let size: u64 = size.parse().ok()?;
        if size > MAX_BLOB_BYTES {
            return None;
        }
        return Some(Statement::Blobs { rows: n.parse().ok()?, size: size as usize });
    }
    if let Some(args) = call_args(rest, "sleep") {
        let [ms] = args[..] else { return None };
        let ms: u64 = ms.parse().ok()?;
        return (ms <= MAX_SLEEP_MS).then_some(Statement::Sleep(ms));
    }
    match rest {
        "crash()" => Some(Statement::Crash),
        "fail()" => Some(Statement::Fail),
        "current_user()" | "effective_user()" => Some(Statement::User { effective: true, name: rest.into() }),
        "user()" | "session_user()" => Some(Statement::User { effective: false, name: rest.into() }),
        "current_database()" => Some(Statement::CurrentDatabase),
        _ => None,
    }
}

/// Rows a DML statement modifies: its `values` tuples, or the N of a `range(N)` it selects from.
fn dml_rows(lower: &str) -> u64 {
    if let Some((_, values)) = lower.split_once(" values") {
        // Only top-level parentheses open a tuple: `(1, f(2))` is one row.
        let mut depth = 0u32;
        let mut tuples = 0;
        for c in values.chars() {
            match c {
                '(' if depth == 0 => {
                    tuples += 1;
                    depth = 1;
                }
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        return tuples;
    }
    let Some((_, after)) = lower.split_once("range(") else { return 0 };
    after.split(')').next().and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// The arguments of `name(a, b)` when `text` is exactly that call.
fn call_args<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let inner = text.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(str::trim).collect())
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Collapses whitespace runs to one space and drops spaces next to `(`, `,`, `)` and `=`.
fn compact(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let tight = |c: char| matches!(c, '(' | ')' | ',' | '=');
    let chars: Vec<char> = joined.chars().collect();
    let mut out = String::with_capacity(joined.len());
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied().is_some_and(tight);
        let after = chars.get(i + 1).copied().is_some_and(tight);
        // Spaces next to punctuation carry no meaning: `range ( 10 )` becomes `range(10)`.
        if c == ' ' && (before || after) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Impala's analyzer error for a table it cannot find.
fn unresolved(lower: &str) -> String {
    let table = lower.split(" from ").nth(1).and_then(|t| t.split(' ').next()).unwrap_or(lower);
    format!("AnalysisException: Could not resolve table reference: '{table}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialect() {
        let lit = |v: i64, n: &str| Ok(Statement::Literal { value: v, name: n.into() });
        assert_eq!(parse("  SELECT 42 ; "), lit(42, "42"));
        assert_eq!(parse("select -7"), lit(-7, "-7"));
        assert_eq!(parse("Select  id  FROM range( 25000 );"), Ok(Statement::Range(25000)));
        assert_eq!(parse("select payload from blobs(3, 10)"), Ok(Statement::Blobs { rows: 3, size: 10 }));
        assert_eq!(parse("select sleep(50)"), Ok(Statement::Sleep(50)));
        assert_eq!(parse("select crash()"), Ok(Statement::Crash));
        assert_eq!(parse("set"), Ok(Statement::ShowOptions));
        assert_eq!(parse("SET ALL;"), Ok(Statement::ShowOptions));
        let set = Statement::SetOption { key: "MEM_LIMIT".into(), value: "2g".into() };
        assert_eq!(parse("set mem_limit = '2g'"), Ok(set));
        assert_eq!(parse("use Sales"), Ok(Statement::Use("Sales".into())));
        assert_eq!(parse("INSERT into t values (1)"), Ok(Statement::Dml { rows: 1 }));
        assert_eq!(parse("insert into t values (1, f(2)), (3, 4);"), Ok(Statement::Dml { rows: 2 }));
        assert_eq!(parse("insert into t select id from range(7)"), Ok(Statement::Dml { rows: 7 }));
        assert_eq!(parse("delete from t where x = 1"), Ok(Statement::Dml { rows: 0 }));
        assert_eq!(parse("invalidate metadata"), Ok(Statement::Ddl));
        assert_eq!(parse("show databases"), Ok(Statement::ShowDatabases));
        assert_eq!(
            parse("SELECT current_user()"),
            Ok(Statement::User { effective: true, name: "current_user()".into() })
        );
        assert_eq!(parse("select user ( )"), Ok(Statement::User { effective: false, name: "user()".into() }));
        assert!(!Statement::Ddl.has_result_set() && Statement::Crash.has_result_set());
        assert!(!Statement::Dml { rows: 1 }.has_result_set());
    }

    #[test]
    fn everything_else_is_an_analysis_exception() {
        for bad in ["select * from t1", "select id from range(x)", "select payload from blobs(1, 99999999999)", ""] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with("AnalysisException"), "{bad}: {err}");
        }
        assert_eq!(
            parse("select a from T1 where x").unwrap_err(),
            "AnalysisException: Could not resolve table reference: 't1'"
        );
    }
}
