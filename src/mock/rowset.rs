//! Result sets of the mock impalad: schemas, and row batches generated on demand and built as V6
//! columnar `TRowSet`s (Apache Thrift's generated types). No I/O.
//!
//! Rows are never materialized: `range(10^8)` is a counter and a `blobs` row is computed from its index.
//! Taking a batch ([`ResultSet::take_batch`]) is cheap and happens under the mock's state lock; encoding
//! it ([`Batch::encode`]) is the costly part and happens outside the lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::sql::Statement;
use super::state::Session;
use crate::hs2::rpc::hs2::*;

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
    fn type_id(self) -> TTypeId {
        match self {
            ColType::Boolean => TTypeId::BOOLEAN_TYPE,
            ColType::Int => TTypeId::INT_TYPE,
            ColType::BigInt => TTypeId::BIGINT_TYPE,
            ColType::String => TTypeId::STRING_TYPE,
        }
    }
}

/// One value of a small in-memory table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Bool(bool),
    Int(i64),
    Str(String),
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
    Table(Arc<Vec<Vec<Cell>>>),
}

impl Rows {
    fn total(&self) -> u64 {
        match self {
            Rows::Range(n) => *n,
            Rows::Blobs { count, .. } => *count,
            Rows::Table(t) => t.len() as u64,
        }
    }

    fn cell(&self, row: u64, col: usize) -> Cell {
        match self {
            Rows::Range(_) => Cell::Int(row as i64),
            // Blobs are not text: see `string_column`.
            Rows::Blobs { .. } => Cell::Str(String::new()),
            Rows::Table(t) => t.get(row as usize).and_then(|r| r.get(col)).cloned().unwrap_or(Cell::Str(String::new())),
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

    pub fn table(columns: &[(&str, ColType)], rows: Vec<Vec<Cell>>) -> ResultSet {
        ResultSet { columns: defs(columns), rows: Rows::Table(Arc::new(rows)), cursor: 0 }
    }

    /// The result set of a statement in `session` (its options and users); `None` when it has none.
    pub fn for_statement(stmt: &Statement, session: &Session) -> Option<ResultSet> {
        let s = |text: &str| Cell::Str(text.to_string());
        let options = &session.options;
        Some(match stmt {
            Statement::Literal { value, name } => {
                ResultSet::table(&[(name, ColType::BigInt)], vec![vec![Cell::Int(*value)]])
            }
            Statement::Range(n) => ResultSet::range("id", *n),
            Statement::Blobs { rows, size } => ResultSet::blobs(*rows, *size),
            Statement::Sleep(ms) => {
                ResultSet::table(&[(&format!("sleep({ms})"), ColType::Boolean)], vec![vec![Cell::Bool(true)]])
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
            Statement::CurrentDatabase => {
                ResultSet::table(&[("current_database()", ColType::String)], vec![vec![s(&session.database)]])
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
    pub fn metadata(method: &str) -> Option<(TOperationType, ResultSet)> {
        use ColType::{Boolean as B, Int as I, String as S};
        let (ty, cols): (TOperationType, &[(&str, ColType)]) = match method {
            "GetTypeInfo" => (
                TOperationType::GET_TYPE_INFO,
                &[("TYPE_NAME", S), ("DATA_TYPE", I), ("PRECISION", I), ("NULLABLE", I), ("CASE_SENSITIVE", B)],
            ),
            "GetCatalogs" => (TOperationType::GET_CATALOGS, &[("TABLE_CAT", S)]),
            "GetSchemas" => (TOperationType::GET_SCHEMAS, &[("TABLE_SCHEM", S), ("TABLE_CATALOG", S)]),
            "GetTables" => (
                TOperationType::GET_TABLES,
                &[("TABLE_CAT", S), ("TABLE_SCHEM", S), ("TABLE_NAME", S), ("TABLE_TYPE", S), ("REMARKS", S)],
            ),
            "GetTableTypes" => (TOperationType::GET_TABLE_TYPES, &[("TABLE_TYPE", S)]),
            "GetColumns" => (
                TOperationType::GET_COLUMNS,
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
                TOperationType::GET_FUNCTIONS,
                &[
                    ("FUNCTION_CAT", S),
                    ("FUNCTION_SCHEM", S),
                    ("FUNCTION_NAME", S),
                    ("REMARKS", S),
                    ("FUNCTION_TYPE", I),
                ],
            ),
            "GetPrimaryKeys" => (
                TOperationType::UNKNOWN,
                &[("TABLE_CAT", S), ("TABLE_SCHEM", S), ("TABLE_NAME", S), ("COLUMN_NAME", S), ("KEY_SEQ", I)],
            ),
            "GetCrossReference" => (
                TOperationType::UNKNOWN,
                &[("PKTABLE_NAME", S), ("PKCOLUMN_NAME", S), ("FKTABLE_NAME", S), ("FKCOLUMN_NAME", S), ("KEY_SEQ", I)],
            ),
            _ => return None,
        };
        // Impala lists its two databases; the other metadata calls answer with no rows here.
        let rows = match method {
            "GetSchemas" => {
                ["_impala_builtins", "default"].map(|db| vec![Cell::Str(db.into()), Cell::Str(String::new())]).into()
            }
            _ => vec![],
        };
        Some((ty, ResultSet::table(cols, rows)))
    }

    /// A `TTableSchema`.
    pub fn schema(&self) -> TTableSchema {
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
    pub fn encode_uniform(&self) -> TRowSet {
        let uniform = Batch { columns: self.columns.clone(), rows: self.rows.clone(), start: 0, end: self.rows() };
        uniform.encode()
    }

    /// The `TRowSet`.
    pub fn encode(&self) -> TRowSet {
        let columns = (0..self.columns.len()).map(|c| self.column(c)).collect();
        rowset(self.start, columns)
    }

    fn column(&self, c: usize) -> TColumn {
        let rows = self.start..self.end;
        // No value is NULL: the bitmap is all zeros.
        let nulls = vec![0; (self.rows() as usize).div_ceil(8)];
        if let Rows::Blobs { size, .. } = self.rows {
            return TColumn::StringVal(TStringColumn::new(rows.map(|r| blob_row(r, size)).collect(), nulls));
        }
        let cells = rows.map(|r| self.rows.cell(r, c));
        match self.columns[c].ty {
            ColType::Boolean => {
                TColumn::BoolVal(TBoolColumn::new(cells.map(|v| v == Cell::Bool(true)).collect(), nulls))
            }
            ColType::Int => TColumn::I32Val(TI32Column::new(cells.map(|v| int(&v) as i32).collect(), nulls)),
            ColType::BigInt => TColumn::I64Val(TI64Column::new(cells.map(|v| int(&v)).collect(), nulls)),
            ColType::String => TColumn::StringVal(TStringColumn::new(cells.map(bytes).collect(), nulls)),
        }
    }
}

fn int(cell: &Cell) -> i64 {
    match cell {
        Cell::Int(v) => *v,
        _ => 0,
    }
}

fn bytes(cell: Cell) -> Vec<u8> {
    match cell {
        Cell::Str(s) => s.into_bytes(),
        _ => Vec::new(),
    }
}

/// A `TRowSet` with one empty STRING column (what a log fetch returns).
pub fn empty_log_rowset() -> TRowSet {
    rowset(0, vec![TColumn::StringVal(TStringColumn::new(vec![], vec![]))])
}

/// A `TRowSet` without columns (an operation that has no result set).
pub fn no_rows_rowset() -> TRowSet {
    rowset(0, vec![])
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

fn rowset(start: u64, columns: Vec<TColumn>) -> TRowSet {
    TRowSet::new(start as i64, vec![], columns, None, None)
}

fn schema_value(columns: &[ColumnDef]) -> TTableSchema {
    let descs = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let entry = TTypeEntry::PrimitiveEntry(TPrimitiveTypeEntry::new(c.ty.type_id(), None));
            // Impala numbers columns from 0 (Hive from 1).
            TColumnDesc::new(c.name.clone(), TTypeDesc::new(vec![entry]), i as i32, None)
        })
        .collect();
    TTableSchema::new(descs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2client::ColumnExt;

    fn columns(batch: &Batch) -> Vec<TColumn> {
        batch.encode().columns.unwrap()
    }

    #[test]
    fn range_batches_are_lazy_and_exact() {
        let mut rs = ResultSet::range("id", 100_000_000);
        let (b, more) = rs.take_batch(3);
        assert!(more);
        assert_eq!(columns(&b)[0].as_i64s(), Some(vec![0, 1, 2]));
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
