//! Hue's connection-pooling pattern as a list of steps, each on its own short-lived client connection, run
//! against any HS2 endpoint (hs2-proxy, HAProxy, a server). Each step records its outcome instead of
//! panicking, so the same scenario both asserts (through hs2-proxy) and documents (through HAProxy).
//!
//! Hue keeps a pool of Thrift connections and stores session handles in its database: the connection
//! that opened a session goes back to the pool (or is closed), and every later call, even the polls and
//! fetches of one query, takes whichever pooled connection is free. With several Hue hosts, or one Hue in
//! front of several proxy instances, those connections lead to different instances: [`Endpoints`]
//! spreads the scenario's connections over them.

use std::net::SocketAddr;
use std::time::Duration;

use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::rpc;
use hs2_proxy::hs2::rpc::hs2::{TGetResultSetMetadataReq, TGetSchemasReq, TOperationState as op_state};
use hs2_proxy::hs2client::{session_handle, ClientAuth, ClientError, ColumnExt, Hs2Client, OpHandle};

/// Hue opens a new session when an error matches this (desktop/libs/notebook, beeswax): one of these
/// substrings in the text.
pub const HUE_HEALS_ON: &[&str] =
    &["Invalid SessionHandle", "Invalid session", "Client session expired", "Could not connect"];
/// Rows of the scenario's query, fetched in pages of [`PAGE`] rows, each page on a new connection.
const ROWS: i64 = 1000;
const PAGE: i64 = 400;
/// How long the scenario waits after the opening connection closed: long enough for Spark to close the
/// session had its upstream connection closed too.
const AFTER_CLOSE: Duration = Duration::from_millis(500);

pub fn heals_hue(text: &str) -> bool {
    HUE_HEALS_ON.iter().any(|p| text.contains(p))
}

/// What happened in one step: `Ok(detail)`, `Err(error)`, or not run because a step it needs failed.
pub struct Step {
    pub name: &'static str,
    pub outcome: Result<String, String>,
}

/// The detail of steps skipped after a failure.
pub const NOT_RUN: &str = "not run: an earlier step it needs failed";

impl Step {
    pub fn failed(&self) -> bool {
        self.outcome.as_ref().is_err_and(|e| e != NOT_RUN)
    }

    pub fn not_run(&self) -> bool {
        self.outcome.as_ref().is_err_and(|e| e == NOT_RUN)
    }
}

/// How the scenario treats the connection that opened the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    /// Closed right after OpenSession (a pool that recycles connections, or a Hue restart).
    Closed,
    /// Kept open, idle, for the whole scenario (Hue's usual pool).
    KeptOpen,
}

pub async fn connect(addr: SocketAddr, auth: &ClientAuth) -> Result<Hs2Client, String> {
    let mut c = Hs2Client::connect(addr, auth).await.map_err(|e| e.to_string())?;
    c.set_timeout(Some(Duration::from_secs(60)));
    Ok(c)
}

/// Where each of the scenario's connections goes: one endpoint, or Hue's pool spread over several proxy
/// instances. Connection `n` of the scenario goes to endpoint `n % len` in this order of connections:
/// A (open) 0, B (execute) 1, C (poll) 3, D (metadata) 2, E1.. (fetch pages) 4.., F (close the
/// operation) 5, G, H, H' (schemas) 6, 7, 8, I (close the session) 9, J (refused after close) 10. With
/// two instances that is Hue's spread at its worst: open on A, execute and poll on B, fetch starting on
/// A, close on B; with three, every step after the first lands on another instance than the one before.
#[derive(Clone, Debug)]
pub struct Endpoints(Vec<SocketAddr>);

impl Endpoints {
    pub fn one(addr: SocketAddr) -> Endpoints {
        Endpoints(vec![addr])
    }

    pub fn spread(addrs: &[SocketAddr]) -> Endpoints {
        assert!(!addrs.is_empty(), "no endpoint to spread over");
        Endpoints(addrs.to_vec())
    }

    fn at(&self, conn: usize) -> SocketAddr {
        self.0[conn % self.0.len()]
    }
}

/// Connection numbers of the scenario (see [`Endpoints`]).
mod conn {
    pub const OPEN: usize = 0;
    pub const EXECUTE: usize = 1;
    pub const METADATA: usize = 2;
    pub const POLL: usize = 3;
    pub const FIRST_PAGE: usize = 4;
    pub const CLOSE_OPERATION: usize = 5;
    pub const SCHEMAS: usize = 6;
    pub const SCHEMAS_FETCH: usize = 7;
    pub const SCHEMAS_CLOSE: usize = 8;
    pub const CLOSE_SESSION: usize = 9;
    pub const AFTER_CLOSE: usize = 10;
}

/// Runs the scenario; steps after a failed one that they depend on are recorded as not run.
pub async fn scenario(addr: SocketAddr, auth: &ClientAuth, user: &str, opener: Opener) -> Vec<Step> {
    scenario_on(&Endpoints::one(addr), auth, user, opener).await
}

/// The scenario with its connections spread over `to`.
pub async fn scenario_on(to: &Endpoints, auth: &ClientAuth, user: &str, opener: Opener) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rec = |name: &'static str, outcome: Result<String, String>| {
        let ok = outcome.is_ok();
        steps.push(Step { name, outcome });
        ok
    };
    // 1. OpenSession on connection A.
    let mut a = match connect(to.at(conn::OPEN), auth).await {
        Ok(a) => a,
        Err(e) => {
            rec("OpenSession on connection A", Err(e));
            return steps;
        }
    };
    let session = match a.open_session(Some(user), &[]).await {
        Ok(s) => s,
        Err(e) => {
            rec("OpenSession on connection A", Err(e.to_string()));
            return steps;
        }
    };
    let _keep = match opener {
        Opener::Closed => {
            drop(a);
            tokio::time::sleep(AFTER_CLOSE).await;
            rec("OpenSession on connection A, then A closes", Ok(String::new()));
            None
        }
        Opener::KeptOpen => {
            rec("OpenSession on connection A (A stays open, idle)", Ok(String::new()));
            Some(a)
        }
    };
    let op = match on_new(to.at(conn::EXECUTE), auth, |c| Box::pin(async move { c.execute(&session, &query()).await }))
        .await
    {
        Ok(op) => {
            rec("ExecuteStatement on connection B", Ok(String::new()));
            Some(op)
        }
        Err(e) => {
            rec("ExecuteStatement on connection B", Err(e));
            None
        }
    };
    match op {
        Some(op) => query_steps(to, auth, &op, &mut rec).await,
        None => {
            for name in QUERY_STEPS {
                rec(name, Err(NOT_RUN.into()));
            }
        }
    }
    metadata_step(to, auth, &session, &mut rec).await;
    let closed =
        on_new(to.at(conn::CLOSE_SESSION), auth, |c| Box::pin(async move { c.close_session(&session).await })).await;
    let closed_ok = closed.is_ok();
    rec("CloseSession on connection I", closed.map(|_| String::new()));
    if closed_ok {
        let after =
            on_new(to.at(conn::AFTER_CLOSE), auth, |c| Box::pin(async move { c.execute(&session, "select 1").await }))
                .await;
        let outcome = match after {
            Err(text) if heals_hue(&text) => Ok(text),
            Err(text) => Err(format!("refused, but with a text Hue does not heal from: {text}")),
            Ok(_) => Err("the closed session still ran a statement".into()),
        };
        rec(REFUSED_AFTER_CLOSE, outcome);
    } else {
        rec(REFUSED_AFTER_CLOSE, Err(NOT_RUN.into()));
    }
    steps
}

const REFUSED_AFTER_CLOSE: &str = "the closed session is refused with a Hue-healing text (connection J)";

/// The steps of [`query_steps`], in order.
const QUERY_STEPS: [&str; 4] = [
    "GetOperationStatus polled on connection C until FINISHED",
    "GetResultSetMetadata on connection D",
    "FetchResults in pages, one new connection per page (E1, E2, ...)",
    "CloseOperation on connection F",
];

fn query() -> String {
    format!("select id from range({ROWS})")
}

/// Poll, metadata, paged fetch and close of one operation, each on new connections.
async fn query_steps(
    to: &Endpoints,
    auth: &ClientAuth,
    op: &OpHandle,
    rec: &mut impl FnMut(&'static str, Result<String, String>) -> bool,
) {
    let op = *op;
    let polled = on_new(to.at(conn::POLL), auth, |c| Box::pin(async move { c.wait_finished(&op).await })).await;
    let finished = matches!(polled, Ok(op_state::FINISHED_STATE));
    rec(QUERY_STEPS[0], polled.map(|s| format!("state {}", s.0)));
    if !finished {
        for name in &QUERY_STEPS[1..] {
            rec(name, Err(NOT_RUN.into()));
        }
        return;
    }
    let meta = on_new(to.at(conn::METADATA), auth, |c| {
        Box::pin(
            async move { c.call_ok::<rpc::GetResultSetMetadata>(&TGetResultSetMetadataReq::new(op.thrift())).await },
        )
    })
    .await;
    rec(QUERY_STEPS[1], meta.map(|_| String::new()));
    let mut rows = Vec::new();
    let mut fetched = Ok(());
    for page in 0..(ROWS / PAGE + 2) as usize {
        let at = to.at(conn::FIRST_PAGE + page);
        match on_new(at, auth, |c| Box::pin(async move { fetch_page(c, &op, PAGE).await })).await {
            Ok(page) if page.is_empty() => break,
            Ok(page) => rows.extend(page),
            Err(e) => {
                fetched = Err(e);
                break;
            }
        }
    }
    let expected: Vec<i64> = (0..ROWS).collect();
    let outcome = fetched.and_then(|_| {
        if rows == expected {
            Ok(format!("{} rows", rows.len()))
        } else {
            Err(format!("{} rows, not 0..{ROWS}", rows.len()))
        }
    });
    rec(QUERY_STEPS[2], outcome);
    let closed =
        on_new(to.at(conn::CLOSE_OPERATION), auth, |c| Box::pin(async move { c.close_operation(&op).await })).await;
    rec(QUERY_STEPS[3], closed.map(|_| String::new()));
}

/// Hue's assist panel: a metadata call, its rows fetched and closed on other connections.
async fn metadata_step(
    to: &Endpoints,
    auth: &ClientAuth,
    session: &HandleId,
    rec: &mut impl FnMut(&'static str, Result<String, String>) -> bool,
) {
    let s = *session;
    let schemas = on_new(to.at(conn::SCHEMAS), auth, |c| {
        Box::pin(async move {
            let resp = c.call_ok::<rpc::GetSchemas>(&TGetSchemasReq::new(session_handle(&s), None, None)).await?;
            let handle = resp.operation_handle.as_ref().and_then(OpHandle::from_thrift);
            handle.ok_or(ClientError::Unexpected("no handle".into()))
        })
    })
    .await;
    let op = match schemas {
        Ok(op) => op,
        Err(e) => {
            rec("GetSchemas on G, fetched on H, closed on H'", Err(e));
            return;
        }
    };
    let listed = on_new(to.at(conn::SCHEMAS_FETCH), auth, |c| {
        Box::pin(async move {
            let (cols, _) = c.fetch(&op, 100).await?;
            let names: Vec<String> = cols
                .first()
                .and_then(|c| c.as_strs())
                .map(|names| names.into_iter().map(str::to_string).collect())
                .unwrap_or_default();
            Ok(names)
        })
    })
    .await;
    let closed =
        on_new(to.at(conn::SCHEMAS_CLOSE), auth, |c| Box::pin(async move { c.close_operation(&op).await })).await;
    let outcome = match (listed, closed) {
        (Ok(names), Ok(())) if names.iter().any(|n| n == "default") => Ok(format!("schemas {names:?}")),
        (Ok(names), Ok(())) => Err(format!("schema list lacks 'default': {names:?}")),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    rec("GetSchemas on G, fetched on H, closed on H'", outcome);
}

/// One page of a single BIGINT column; Spark always says `hasMoreRows = false`, so an empty page ends.
pub async fn fetch_page(c: &mut Hs2Client, op: &OpHandle, max: i64) -> Result<Vec<i64>, ClientError> {
    let (cols, _) = c.fetch(op, max).await?;
    let Some(col) = cols.into_iter().next() else { return Ok(Vec::new()) };
    col.as_i64s().ok_or_else(|| ClientError::Unexpected("not a BIGINT".into()))
}

/// Every row of a single BIGINT column.
pub async fn fetch_all(c: &mut Hs2Client, op: &OpHandle) -> Result<Vec<i64>, ClientError> {
    let mut out = Vec::new();
    loop {
        let page = fetch_page(c, op, 10_240).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

type CallFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ClientError>> + Send + 'a>>;

/// Runs `f` on a fresh connection that is closed afterwards; errors become text.
pub async fn on_new<T>(
    addr: SocketAddr,
    auth: &ClientAuth,
    f: impl for<'c> FnOnce(&'c mut Hs2Client) -> CallFuture<'c, T>,
) -> Result<T, String> {
    let mut c = connect(addr, auth).await?;
    f(&mut c).await.map_err(|e| match e {
        ClientError::Status { message, .. } => message,
        e => e.to_string(),
    })
}

/// A table of steps, one line each.
pub fn table(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| match &s.outcome {
            Ok(d) if d.is_empty() => format!("    ok    {}", s.name),
            Ok(d) => format!("    ok    {} ({})", s.name, short(d)),
            Err(_) if s.not_run() => format!("    -     {} ({NOT_RUN})", s.name),
            Err(e) => format!("    FAIL  {}: {}", s.name, short(e)),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn short(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() > 110 {
        one_line.chars().take(110).collect::<String>() + "..."
    } else {
        one_line
    }
}
