//! Sessions with state, each on its own client connection (as a JDBC pool or impyla keeps them): session
//! `i` runs `USE db_i` and `SET spark.sql.shuffle.partitions=i`, and a check asks it for both.

use std::net::SocketAddr;
use std::time::Duration;

use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::rpc::{self, hs2::TGetCatalogsReq, hs2::TOperationState};
use hs2_proxy::hs2client::{session_handle, ClientError, ColumnExt, Hs2Client, OpHandle};

use super::servers::auth;

pub struct Tracked {
    pub i: usize,
    pub handle: HandleId,
    client: Option<Hs2Client>,
    addr: SocketAddr,
}

pub fn database(i: usize) -> String {
    format!("db_{i}")
}

async fn connect(addr: SocketAddr) -> Result<Hs2Client, String> {
    let mut c = Hs2Client::connect(addr, &auth("app")).await.map_err(|e| e.to_string())?;
    c.set_timeout(Some(Duration::from_secs(60)));
    Ok(c)
}

fn text(e: ClientError) -> String {
    match e {
        ClientError::Status { message, .. } => message.chars().take(200).collect(),
        e => e.to_string(),
    }
}

/// Runs `statement` and returns the first row's string columns. The operation is closed also when the
/// statement failed, as clients do.
pub async fn row(c: &mut Hs2Client, s: &HandleId, statement: &str) -> Result<Vec<String>, String> {
    let op = c.execute(s, statement).await.map_err(text)?;
    let outcome = match c.wait_finished(&op).await.map_err(text) {
        Ok(state) if state == TOperationState::FINISHED_STATE => c.fetch(&op, 10).await.map_err(text),
        Ok(state) => Err(format!("`{statement}` ended in state {state:?}")),
        Err(e) => Err(e),
    };
    c.close_operation(&op).await.map_err(text)?;
    let (cols, _) = outcome?;
    Ok(cols.iter().map(|c| c.as_strs().and_then(|v| v.first().map(|s| s.to_string())).unwrap_or_default()).collect())
}

impl Tracked {
    /// Opens session `i` through `addr` and gives it its state.
    pub async fn open(addr: SocketAddr, i: usize) -> Tracked {
        let mut c = connect(addr).await.unwrap_or_else(|e| panic!("session {i}: connect: {e}"));
        let handle = c.open_session(Some("app"), &[]).await.unwrap_or_else(|e| panic!("session {i}: {e}"));
        for statement in [format!("use {}", database(i)), format!("set spark.sql.shuffle.partitions={i}")] {
            row(&mut c, &handle, &statement).await.unwrap_or_else(|e| panic!("session {i}: {statement}: {e}"));
        }
        Tracked { i, handle, client: Some(c), addr }
    }

    /// Asks the session for its database and setting; `Err` says what went wrong. A connection that broke
    /// is replaced for the next check (the session itself is not).
    pub async fn check(&mut self) -> Result<(), String> {
        let result = self.ask().await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    async fn ask(&mut self) -> Result<(), String> {
        if self.client.is_none() {
            self.client = Some(connect(self.addr).await?);
        }
        let (c, s) = (self.client.as_mut().expect("connected"), &self.handle);
        let db = row(c, s, "select current_database()").await?;
        let setting = row(c, s, "SET spark.sql.shuffle.partitions").await?;
        let want = (vec![database(self.i)], vec!["spark.sql.shuffle.partitions".to_string(), self.i.to_string()]);
        if (&db, &setting) != (&want.0, &want.1) {
            return Err(format!("state lost: database {db:?}, setting {setting:?}"));
        }
        Ok(())
    }
}

/// Checks every session; returns the failures as `(i, why)`.
pub async fn check_all(sessions: &mut [Tracked]) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    for s in sessions.iter_mut() {
        if let Err(e) = s.check().await {
            failed.push((s.i, e));
        }
    }
    failed
}

/// Asks a server directly whether it holds `session`: GetCatalogs checks the handle (GetInfo does not, on
/// Spark). `Ok(false)` only for Spark's "Invalid SessionHandle".
pub async fn holds_session(c: &mut Hs2Client, session: &HandleId) -> Result<bool, String> {
    match c.call_ok::<rpc::GetCatalogs>(&TGetCatalogsReq::new(session_handle(session))).await {
        Ok(resp) => {
            let op = resp.operation_handle.as_ref().and_then(OpHandle::from_thrift).ok_or("no handle")?;
            c.close_operation(&op).await.map_err(|e| e.to_string())?;
            Ok(true)
        }
        Err(ClientError::Status { message, .. }) if message.contains("Invalid SessionHandle") => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `statements` on a new session straight on the server at `addr`.
pub async fn on_server(addr: SocketAddr, statements: &[String]) {
    let mut c = connect(addr).await.unwrap_or_else(|e| panic!("{addr}: {e}"));
    let s = c.open_session(Some("setup"), &[]).await.unwrap_or_else(|e| panic!("{addr}: {e}"));
    for statement in statements {
        row(&mut c, &s, statement).await.unwrap_or_else(|e| panic!("{addr}: {statement}: {e}"));
    }
    c.close_session(&s).await.unwrap_or_else(|e| panic!("{addr}: close: {e}"));
}
