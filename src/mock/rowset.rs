//! Result sets of the mock impalad: schemas, and row batches generated on demand and encoded as V6
//! columnar `TRowSet`s. No I/O.
//!
//! Rows are never materialized: `range(10^8)` is a counter and a `blobs` row is computed from its index.
//! Taking a batch ([`ResultSet::take_batch`]) is cheap and happens under the mock's state lock; encoding
//! it ([`Batch::encode`]) is the costly part and happens outside the lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::sql::Statement;
use super::state::Session;
use crate::hs2client::wire::{column_arm, op_type, type_id};
use crate::thrift::value::{Struct, Value};
use crate::thrift::TType;

/// Most rows in one batch, whatever the client asks: bounds the memory of one reply.
pub const MAX_BATCH_ROWS: u64 = 1 << 20;
/// Most payload bytes in one `blobs` batch, for the same reason.
pub const MAX_BATCH_BYTES: u64 = 256 << 20;
/// Rows `select crash()` would return, were its first fetch to complete.
pub const CRASH_ROWS: u64 = 1000;

/// Query options listed by `set`: name, default, level (a sample of Impala 4's, with their levels). impala-shell
/// accepts `set k=v` only for a name listed here, and sets CLIENT_IDENTIFIER itself when it is listed.
const DEFAULT_OPTIONS: &[(&str, &str, &str)] = &[
    ("ABORT_ON_ERROR", "false", "REGULAR"),
    ("APPX_COUNT_DISTINCT", "false", "ADVANCED"),
    ("BATCH_SIZE", "0", "DEVELOPMENT"),
    ("BUFFER_POOL_LIMIT", "", "ADVANCED"),
    ("CLIENT_IDENTIFIER", "", "ADVANCED"),
    ("COMPRESSION_CODEC", "", "REGULAR"),
    ("DEFAULT_FILE_FORMAT", "TEXT", "REGULAR"),
    ("DISABLE_CODEGEN", "false", "REGULAR"),
    ("EXEC_TIME_LIMIT_S", "0", "REGULAR"),
    ("EXPLAIN_LEVEL", "STANDARD", "REGULAR"),
    ("IDLE_SESSION_TIMEOUT", "0", "REGULAR"),
    ("MAX_ERRORS", "100", "ADVANCED"),
    ("MEM_LIMIT", "0", "REGULAR"),
    ("MT_DOP", "", "ADVANCED"),
    ("NUM_NODES", "0", "DEVELOPMENT"),
    ("QUERY_TIMEOUT_S", "0", "REGULAR"),
    ("REQUEST_POOL", "", "REGULAR"),
    ("SCHEDULE_RANDOM_REPLICA", "false", "DEPRECATED"),
    ("SYNC_DDL", "false", "REGULAR"),
    ("DISABLE_CACHED_READS", "false", "REMOVED"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    Boolean,
    Int,
    BigInt,
    String,
}

impl ColType {
    fn type_id(self) -> i32 {
        match self {
            ColType::Boolean => type_id::BOOLEAN_TYPE,
            ColType::Int => type_id::INT_TYPE,
            ColType::BigInt => type_id::BIGINT_TYPE,
            ColType::String => type_id::STRING_TYPE,
        }
    }

    fn wire(self) -> TType {
        match self {
            ColType::Boolean => TType::Bool,
            ColType::Int => TType::I32,
            ColType::BigInt => TType::I64,
            ColType::String => TType::String,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColType,
}

#[derive(Clone, Debug)]
enum Rows {
    /// BIGINT rows `0..n`.
    Range(u64),
    /// `count` rows of `size` bytes; see [`blob_row`].
    Blobs { count: u64, size: usize },
    /// A small table held in memory (options, databases), row-major; shared with batches being encoded.
    Table(Arc<Vec<Vec<Value>>>),
}

impl Rows {
    fn total(&self) -> u64 {
        match self {
            Rows::Range(n) => *n,
            Rows::Blobs { count, .. } => *count,
            Rows::Table(t) => t.len() as u64,
        }
    }

    fn cell(&self, row: u64, col: usize) -> Value {
        match self {
            Rows::Range(_) => Value::I64(row as i64),
            Rows::Blobs { size, .. } => Value::Bytes(blob_row(row, *size)),
            Rows::Table(t) => t.get(row as usize).and_then(|r| r.get(col)).cloned().unwrap_or(Value::Bytes(vec![])),
        }
    }
}

/// One operation's result set and its fetch cursor.
#[derive(Debug)]
pub struct ResultSet {
    columns: Arc<Vec<ColumnDef>>,
    rows: Rows,
    cursor: u64,
}

/// Rows `start..end` of a result set, ready to encode without the state lock.
#[derive(Debug)]
pub struct Batch {
    columns: Arc<Vec<ColumnDef>>,
    rows: Rows,
    start: u64,
    end: u64,
}

fn defs(columns: &[(&str, ColType)]) -> Arc<Vec<ColumnDef>> {
    Arc::new(columns.iter().map(|(n, t)| ColumnDef { name: n.to_string(), ty: *t }).collect())
}

impl ResultSet {
    /// A BIGINT column `name` holding `0..n`.
    pub fn range(name: &str, n: u64) -> ResultSet {
        ResultSet { columns: defs(&[(name, ColType::BigInt)]), rows: Rows::Range(n), cursor: 0 }
    }

    pub fn blobs(count: u64, size: usize) -> ResultSet {
        let columns = defs(&[("payload", ColType::String)]);
        ResultSet { columns, rows: Rows::Blobs { count, size }, cursor: 0 }
    }

    pub fn table(columns: &[(&str, ColType)], rows: Vec<Vec<Value>>) -> ResultSet {
        ResultSet { columns: defs(columns), rows: Rows::Table(Arc::new(rows)), cursor: 0 }
    }

    /// The result set of a statement in `session` (its options and users); `None` when it has none.
    pub fn for_statement(stmt: &Statement, session: &Session) -> Option<ResultSet> {
        let s = Value::string;
        let options = &session.options;
        Some(match stmt {
            Statement::Literal { value, name } => {
                ResultSet::table(&[(name, ColType::BigInt)], vec![vec![Value::I64(*value)]])
            }
            Statement::Range(n) => ResultSet::range("id", *n),
            Statement::Blobs { rows, size } => ResultSet::blobs(*rows, *size),
            Statement::Sleep(ms) => {
                ResultSet::table(&[(&format!("sleep({ms})"), ColType::Boolean)], vec![vec![Value::Bool(true)]])
            }
            Statement::Crash => ResultSet::range("crash()", CRASH_ROWS),
            Statement::Fail => ResultSet::table(&[("fail()", ColType::Boolean)], vec![]),
            Statement::ShowOptions => {
                let cols = [("option", ColType::String), ("value", ColType::String), ("level", ColType::String)];
                ResultSet::table(
                    &cols,
                    option_rows(options).into_iter().map(|r| r.iter().map(|c| s(c)).collect()).collect(),
                )
            }
            Statement::User { effective, name } => {
                let user = if *effective { session.effective_user() } else { &session.user };
                ResultSet::table(&[(name, ColType::String)], vec![vec![s(user)]])
            }
            Statement::ShowDatabases => ResultSet::table(
                &[("name", ColType::String), ("comment", ColType::String)],
                vec![
                    vec![s("_impala_builtins"), s("System database for Impala builtin functions")],
                    vec![s("default"), s("Default Hive database")],
                ],
            ),
            Statement::SetOption { .. } | Statement::Use(_) | Statement::Ddl | Statement::Dml { .. } => return None,
        })
    }

    /// The operation type and result set of a metadata call, with the JDBC column names.
    pub fn metadata(method: &str) -> Option<(i32, ResultSet)> {
        use ColType::{Boolean as B, Int as I, String as S};
        let (ty, cols): (i32, &[(&str, ColType)]) = match method {
            "GetTypeInfo" => (
                op_type::GET_TYPE_INFO,
                &[("TYPE_NAME", S), ("DATA_TYPE", I), ("PRECISION", I), ("NULLABLE", I), ("CASE_SENSITIVE", B)],
            ),
            "GetCatalogs" => (op_type::GET_CATALOGS, &[("TABLE_CAT", S)]),
            "GetSchemas" => (op_type::GET_SCHEMAS, &[("TABLE_SCHEM", S), ("TABLE_CATALOG", S)]),
            "GetTables" => (
                op_type::GET_TABLES,
                &[("TABLE_CAT", S), ("TABLE_SCHEM", S), ("TABLE_NAME", S), ("TABLE_TYPE", S), ("REMARKS", S)],
            ),
            "GetTableTypes" => (op_type::GET_TABLE_TYPES, &[("TABLE_TYPE", S)]),
            "GetColumns" => (
                op_type::GET_COLUMNS,
                &[
                    ("TABLE_CAT", S),
                    ("TABLE_SCHEM", S),
                    ("TABLE_NAME", S),
                    ("COLUMN_NAME", S),
                    ("DATA_TYPE", I),
                    ("TYPE_NAME", S),
                    ("ORDINAL_POSITION", I),
                ],
            ),
            "GetFunctions" => (
                op_type::GET_FUNCTIONS,
                &[
                    ("FUNCTION_CAT", S),
                    ("FUNCTION_SCHEM", S),
                    ("FUNCTION_NAME", S),
                    ("REMARKS", S),
                    ("FUNCTION_TYPE", I),
                ],
            ),
            "GetPrimaryKeys" => (
                op_type::UNKNOWN,
                &[("TABLE_CAT", S), ("TABLE_SCHEM", S), ("TABLE_NAME", S), ("COLUMN_NAME", S), ("KEY_SEQ", I)],
            ),
            "GetCrossReference" => (
                op_type::UNKNOWN,
                &[("PKTABLE_NAME", S), ("PKCOLUMN_NAME", S), ("FKTABLE_NAME", S), ("FKCOLUMN_NAME", S), ("KEY_SEQ", I)],
            ),
            _ => return None,
        };
        // Impala lists its two databases; the other metadata calls answer with no rows here.
        let rows = match method {
            "GetSchemas" => ["_impala_builtins", "default"].map(|db| vec![Value::string(db), Value::string("")]).into(),
            _ => vec![],
        };
        Some((ty, ResultSet::table(cols, rows)))
    }

    /// A `TTableSchema`.
    pub fn schema(&self) -> Value {
        schema_value(&self.columns)
    }

    /// Starts over (FETCH_FIRST).
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Takes the next batch of at most `max_rows` rows; the bool is `hasMoreRows`.
    pub fn take_batch(&mut self, max_rows: u64) -> (Batch, bool) {
        let bytes_per_row = match self.rows {
            Rows::Blobs { size, .. } => (size as u64).max(1),
            _ => 1,
        };
        let cap = (MAX_BATCH_BYTES / bytes_per_row).clamp(1, MAX_BATCH_ROWS);
        let total = self.rows.total();
        let start = self.cursor.min(total);
        let end = start.saturating_add(max_rows.min(cap)).min(total);
        self.cursor = end;
        let batch = Batch { columns: self.columns.clone(), rows: self.rows.clone(), start, end };
        (batch, end < total)
    }
}

impl Batch {
    pub fn rows(&self) -> u64 {
        self.end - self.start
    }

    /// The row size of a `blobs` batch.
    pub fn blob_size(&self) -> Option<usize> {
        match self.rows {
            Rows::Blobs { size, .. } => Some(size),
            _ => None,
        }
    }

    /// Fast mode's `TRowSet`: the rows of the first batch, offset 0, so that equal shapes encode equally.
    pub fn encode_uniform(&self) -> Value {
        let uniform = Batch { columns: self.columns.clone(), rows: self.rows.clone(), start: 0, end: self.rows() };
        uniform.encode()
    }

    /// The `TRowSet`.
    pub fn encode(&self) -> Value {
        let columns = (0..self.columns.len())
            .map(|c| {
                let values = (self.start..self.end).map(|r| self.rows.cell(r, c)).collect();
                column_value(self.columns[c].ty, values, self.rows() as usize)
            })
            .collect();
        rowset_value(self.start, columns)
    }
}

/// A `TRowSet` with one empty STRING column (what a log fetch returns).
pub fn empty_log_rowset() -> Value {
    rowset_value(0, vec![column_value(ColType::String, vec![], 0)])
}

/// A `TRowSet` without columns (an operation that has no result set).
pub fn no_rows_rowset() -> Value {
    rowset_value(0, vec![])
}

/// Row `row` of `blobs(_, size)`: bytes `(row + k) % 251` for `k` in `0..size`.
pub fn blob_row(row: u64, size: usize) -> Vec<u8> {
    const PERIOD: usize = 251;
    let cycle: [u8; PERIOD] = std::array::from_fn(|i| i as u8);
    let mut out = Vec::with_capacity(size);
    let mut k = (row % PERIOD as u64) as usize;
    while out.len() < size {
        let n = (PERIOD - k).min(size - out.len());
        out.extend_from_slice(&cycle[k..k + n]);
        k = 0;
    }
    out
}

/// The `set` listing: defaults with the session's overrides, then overrides Impala would not list.
fn option_rows(overrides: &BTreeMap<String, String>) -> Vec<[String; 3]> {
    let mut rows: Vec<[String; 3]> = DEFAULT_OPTIONS
        .iter()
        .map(|(k, v, level)| {
            let value = overrides.get(*k).map(String::as_str).unwrap_or(v);
            [k.to_string(), value.to_string(), level.to_string()]
        })
        .collect();
    for (k, v) in overrides.iter().filter(|(k, _)| !DEFAULT_OPTIONS.iter().any(|(d, _, _)| d == k)) {
        rows.push([k.clone(), v.clone(), "REGULAR".to_string()]);
    }
    rows
}

fn rowset_value(start: u64, columns: Vec<Value>) -> Value {
    Struct::new()
        .with(1, Value::I64(start as i64))
        .with(2, Value::List(TType::Struct, vec![]))
        .with(3, Value::List(TType::Struct, columns))
        .into_value()
}

/// A `TColumn` union; no value is NULL, so the bitmap is all zeros.
fn column_value(ty: ColType, values: Vec<Value>, rows: usize) -> Value {
    let typed = Struct::new().with(1, Value::List(ty.wire(), values)).with(2, Value::Bytes(vec![0; rows.div_ceil(8)]));
    Struct::new().with(column_arm(ty.wire()), typed.into_value()).into_value()
}

fn schema_value(columns: &[ColumnDef]) -> Value {
    let descs = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let primitive = Struct::new().with(1, Value::I32(c.ty.type_id()));
            let entry = Struct::new().with(1, primitive.into_value());
            let type_desc = Struct::new().with(1, Value::List(TType::Struct, vec![entry.into_value()]));
            // Impala numbers columns from 0 (Hive from 1).
            Struct::new()
                .with(1, Value::string(&c.name))
                .with(2, type_desc.into_value())
                .with(3, Value::I32(i as i32))
                .into_value()
        })
        .collect();
    Struct::new().with(1, Value::List(TType::Struct, descs)).into_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2client::wire::read_columns;

    fn columns(batch: &Batch) -> Vec<crate::hs2client::Column> {
        let Value::Struct(rowset) = batch.encode() else { panic!("not a struct") };
        read_columns(rowset).unwrap()
    }

    #[test]
    fn range_batches_are_lazy_and_exact() {
        let mut rs = ResultSet::range("id", 100_000_000);
        let (b, more) = rs.take_batch(3);
        assert!(more);
        assert_eq!(columns(&b)[0].values, vec![Value::I64(0), Value::I64(1), Value::I64(2)]);
        let (b, _) = rs.take_batch(u64::MAX);
        assert_eq!((b.start, b.rows()), (3, MAX_BATCH_ROWS));
        let mut small = ResultSet::range("id", 5);
        let (b, more) = small.take_batch(10);
        assert_eq!((b.rows(), more), (5, false));
        assert_eq!(small.take_batch(10).0.rows(), 0);
    }

    #[test]
    fn blob_rows_follow_the_pattern_and_batches_are_bounded() {
        assert_eq!(blob_row(250, 4), vec![250, 0, 1, 2]);
        let row = blob_row(7, 1000);
        assert!(row.iter().enumerate().all(|(k, b)| *b as usize == (7 + k) % 251));
        let mut rs = ResultSet::blobs(1000, 16 << 20);
        assert_eq!(rs.take_batch(1000).0.rows(), MAX_BATCH_BYTES / (16 << 20));
    }

    #[test]
    fn options_show_session_overrides() {
        let overrides = BTreeMap::from([("MEM_LIMIT".to_string(), "2g".to_string()), ("X".into(), "1".into())]);
        let rows = option_rows(&overrides);
        assert!(rows.iter().any(|r| r[0] == "MEM_LIMIT" && r[1] == "2g"));
        assert_eq!(rows.last().map(|r| r[0].as_str()), Some("X"));
    }
}
