//! One loop per soak client kind (see [`Kind`]): what each does in a round, and how it checks the
//! answers (row values, reply sizes, that a stalled client was cut off).
//!
//! Hue and impyla authenticate with SASL PLAIN; the kinds that play tricks on raw sockets speak NOSASL
//! (the proxy serves both on one port), using their session from a second connection as Impala allows.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::cluster::CLIENT_SEQIDS;
use super::load::{hue_heals_on, is_connection_error, Ctx, Kind, CALL_TIMEOUT};
use crate::hs2::handle::HandleId;
use crate::hs2::rpc::hs2::{
    TExecuteStatementReq, TFetchOrientation, TFetchResultsReq, TGetResultSetMetadataReq, TGetSchemasReq,
};
use crate::hs2::rpc::{self, session_handle};
use crate::hs2client::{ClientError, ColumnExt, Hs2Client, OpHandle};
use crate::thrift::scanner::Scanner;
use crate::thrift::Limits;

/// Hue's OpenSession configuration (HS2-NOTES.md: it sends its idle timeout).
const HUE_CONF: &[(&str, &str)] = &[("idle_session_timeout", "900")];
/// Bytes a mid-reply vanisher reads before it goes.
const VANISH_AFTER: usize = 200_000;

/// Runs one client of `kind` until the soak stops.
pub async fn run(ctx: Arc<Ctx>, kind: Kind, index: usize, hue_pool: usize) {
    match kind {
        Kind::Hue => return hue(&ctx, index, hue_pool).await,
        // Its own processes (`super::python`).
        Kind::RealImpyla => return,
        _ => {}
    }
    let think = match kind {
        Kind::Impyla => Duration::from_millis(50),
        Kind::Vanisher => Duration::from_millis(300),
        Kind::SlowReader => Duration::from_millis(500),
        Kind::LargeFetch => Duration::from_secs(2),
        _ => Duration::from_secs(1),
    };
    let stats = ctx.stats(kind);
    let mut round = 0u64;
    while !ctx.stopping() {
        round += 1;
        let result = match kind {
            Kind::Impyla => impyla(&ctx, index, round).await,
            Kind::Vanisher => vanisher(&ctx, round).await,
            Kind::SlowReader => slow_reader(&ctx).await,
            Kind::LargeFetch => large_fetch(&ctx).await,
            _ => stalled(&ctx).await,
        };
        match result {
            Ok(()) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed(e);
                ctx.after_failure().await;
            }
        }
        if !ctx.pause(think).await {
            return;
        }
    }
}

fn text(e: ClientError) -> String {
    e.to_string()
}

/// Runs `select id from range(n)` and checks every row.
async fn range_query(c: &mut Hs2Client, session: &HandleId, n: u64) -> Result<(), ClientError> {
    let op = c.execute(session, &format!("select id from range({n})")).await?;
    c.wait_finished(&op).await?;
    // Hue reads the schema before the rows.
    c.call_ok::<rpc::GetResultSetMetadata>(&TGetResultSetMetadataReq::new(op.thrift())).await?;
    let rows = c.fetch_all_i64(&op).await?;
    if rows.len() as u64 != n || rows.iter().enumerate().any(|(i, v)| *v != i as i64) {
        return Err(ClientError::Unexpected(format!("range({n}) came back with {} wrong rows", rows.len())));
    }
    c.close_operation(&op).await
}

/// Hue's metadata browsing: GetSchemas, then close the operation it opened.
async fn browse(c: &mut Hs2Client, session: &HandleId) -> Result<(), ClientError> {
    let resp = c.call_ok::<rpc::GetSchemas>(&TGetSchemasReq::new(session_handle(session), None, None)).await?;
    let op = resp
        .operation_handle
        .as_ref()
        .and_then(OpHandle::from_thrift)
        .ok_or_else(|| ClientError::Unexpected("GetSchemas returned no operation".into()))?;
    c.fetch(&op, 100).await?;
    c.close_operation(&op).await
}

async fn hue(ctx: &Ctx, index: usize, pool_size: usize) {
    // Two users, each shared by every Hue worker (one Hue database behind several Hue hosts).
    let user = format!("hue{}", index % 2);
    let mut pool: Vec<Option<Hs2Client>> = (0..pool_size.max(1)).map(|_| None).collect();
    let stats = ctx.stats(Kind::Hue);
    let mut round = 0u64;
    while !ctx.stopping() {
        round += 1;
        let slot = (rand::random::<u32>() as usize) % pool.len();
        if round % 25 == 0 {
            // Hue's pool recycles a connection now and then: the same session from a new connection.
            pool[slot] = None;
        }
        match hue_round(ctx, &user, &mut pool[slot], round).await {
            Ok(()) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed(e);
                ctx.after_failure().await;
            }
        }
        if !ctx.pause(Duration::from_millis(20)).await {
            return;
        }
    }
}

/// The user's latest session, opened on `c` when there is none yet.
async fn hue_session(ctx: &Ctx, user: &str, c: &mut Hs2Client) -> Result<HandleId, ClientError> {
    let stored = ctx.hue_sessions.lock().unwrap_or_else(|e| e.into_inner()).get(user).copied();
    match stored {
        Some(s) => Ok(s),
        None => hue_replace(ctx, user, c, None).await,
    }
}

/// Opens a new session for `user` and stores it, unless another worker already replaced `failed`.
async fn hue_replace(
    ctx: &Ctx,
    user: &str,
    c: &mut Hs2Client,
    failed: Option<HandleId>,
) -> Result<HandleId, ClientError> {
    let fresh = c.open_session(Some(user), HUE_CONF).await?;
    let mut store = ctx.hue_sessions.lock().unwrap_or_else(|e| e.into_inner());
    let current = store.get(user).copied();
    if current.is_some() && current != failed {
        // Another Hue host healed first: use its session (ours is abandoned, and the proxy cleans it up).
        return Ok(current.unwrap_or(fresh));
    }
    store.insert(user.to_string(), fresh);
    Ok(fresh)
}

/// One Hue call with Hue's retries: a new session on "Invalid session", a new connection on a socket
/// error, three attempts in all.
async fn hue_round(ctx: &Ctx, user: &str, conn: &mut Option<Hs2Client>, round: u64) -> Result<(), String> {
    let stats = ctx.stats(Kind::Hue);
    let mut last = String::new();
    for attempt in 0..3 {
        if conn.is_none() {
            match ctx.connect(Some(user)).await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    last = e;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let (e, session) = match hue_call(ctx, user, c, round).await {
            Ok(()) => {
                if attempt > 0 {
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(());
            }
            Err(failure) => failure,
        };
        last = e.to_string();
        if hue_heals_on(&e) {
            match hue_replace(ctx, user, c, session).await {
                Ok(_) => stats.healed.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    last = format!("opening a new session: {e}");
                    if is_connection_error(&e) {
                        *conn = None;
                    }
                    continue;
                }
            };
        } else if is_connection_error(&e) {
            *conn = None;
        } else {
            return Err(last);
        }
    }
    Err(format!("after 3 attempts: {last}"))
}

/// One Hue call on the user's latest session; a failure says which session it used, if any.
async fn hue_call(ctx: &Ctx, user: &str, c: &mut Hs2Client, round: u64) -> Result<(), (ClientError, Option<HandleId>)> {
    let session = hue_session(ctx, user, c).await.map_err(|e| (e, None))?;
    let r = match round % 10 {
        0 => browse(c, &session).await,
        _ => range_query(c, &session, 1 + round % 1500).await,
    };
    r.map_err(|e| (e, Some(session)))
}

/// impyla: a connection and session per cursor, one to three queries, everything closed.
async fn impyla(ctx: &Ctx, index: usize, round: u64) -> Result<(), String> {
    let user = format!("impyla{index}");
    let mut c = ctx.connect(Some(&user)).await?;
    let s = c.open_session(Some(&user), &[]).await.map_err(text)?;
    for k in 0..1 + round % 3 {
        range_query(&mut c, &s, 1 + (round * 7 + k) % 20_000).await.map_err(text)?;
    }
    c.close_session(&s).await.map_err(text)
}

/// A FetchResults call for `rows` rows, encoded (for raw sockets).
fn fetch_call(op: &OpHandle, rows: i64) -> Vec<u8> {
    let req = TFetchResultsReq::new(op.thrift(), TFetchOrientation::FETCH_NEXT, rows, None);
    rpc::encode_call::<rpc::FetchResults>(CLIENT_SEQIDS, &req).unwrap_or_default()
}

/// A session with a finished `select payload from blobs(rows, size)` on a NOSASL connection.
async fn blobs(ctx: &Ctx, user: &str, rows: u64, size: u64) -> Result<(Hs2Client, HandleId, OpHandle), String> {
    let mut c = ctx.connect(None).await?;
    let s = c.open_session(Some(user), &[]).await.map_err(text)?;
    let op = c.execute(&s, &format!("select payload from blobs({rows}, {size})")).await.map_err(text)?;
    c.wait_finished(&op).await.map_err(text)?;
    Ok((c, s, op))
}

async fn raw_connect(ctx: &Ctx) -> Result<TcpStream, String> {
    TcpStream::connect(ctx.proxy).await.map_err(|e| format!("connect: {e}"))
}

/// Opens a session, then vanishes: mid-reply, right after a request, or halfway through one. The
/// session is left behind for the proxy to clean up.
async fn vanisher(ctx: &Ctx, round: u64) -> Result<(), String> {
    let (setup, s, op) = blobs(ctx, "vanisher", 64, 65_536).await?;
    let mut raw = raw_connect(ctx).await?;
    match round % 3 {
        0 => {
            raw.write_all(&fetch_call(&op, 64)).await.map_err(|e| e.to_string())?;
            let mut got = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while got < VANISH_AFTER {
                match tokio::time::timeout(CALL_TIMEOUT, raw.read(&mut buf)).await {
                    Ok(Ok(0)) => return Err(format!("the reply ended after {got} bytes")),
                    Ok(Ok(n)) => got += n,
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err(format!("no reply bytes within {CALL_TIMEOUT:?}")),
                }
            }
        }
        1 => {
            let req = TExecuteStatementReq::new(session_handle(&s), "select sleep(300)".to_string(), None, None, None);
            let call = rpc::encode_call::<rpc::ExecuteStatement>(CLIENT_SEQIDS, &req).map_err(|e| e.to_string())?;
            raw.write_all(&call).await.map_err(|e| e.to_string())?;
        }
        _ => {
            let call = fetch_call(&op, 64);
            raw.write_all(&call[..call.len() / 2]).await.map_err(|e| e.to_string())?;
        }
    }
    drop((raw, setup));
    Ok(())
}

/// Reads a 4 MiB reply in 64 KiB steps with pauses: slow, but never stalled.
async fn slow_reader(ctx: &Ctx) -> Result<(), String> {
    let (mut setup, s, op) = blobs(ctx, "slow", 32, 131_072).await?;
    let mut raw = raw_connect(ctx).await?;
    raw.write_all(&fetch_call(&op, 32)).await.map_err(|e| e.to_string())?;
    let mut scanner = Scanner::new(Limits::REPLY, &[]);
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !scanner.is_done() {
        let n = match tokio::time::timeout(CALL_TIMEOUT, raw.read(&mut buf)).await {
            Ok(Ok(0)) => return Err(format!("cut off after {} bytes", scanner.consumed() + pending.len() as u64)),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no reply bytes within {CALL_TIMEOUT:?}")),
        };
        pending.extend_from_slice(&buf[..n]);
        let used = scanner.feed(&pending).map_err(|e| format!("undecodable reply: {e}"))?;
        pending.drain(..used);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    if scanner.consumed() < 32 * 131_072 {
        return Err(format!("a {} byte reply to a 4 MiB fetch", scanner.consumed()));
    }
    setup.close_operation(&op).await.map_err(text)?;
    setup.close_session(&s).await.map_err(text)
}

/// Fetches 64 rows of 1 MiB, 16 rows per reply, and checks every row's size.
async fn large_fetch(ctx: &Ctx) -> Result<(), String> {
    let mut c = ctx.connect(Some("bulk")).await?;
    let s = c.open_session(Some("bulk"), &[]).await.map_err(text)?;
    let op = c.execute(&s, "select payload from blobs(64, 1048576)").await.map_err(text)?;
    c.wait_finished(&op).await.map_err(text)?;
    let mut rows = 0;
    loop {
        let (columns, more) = c.fetch(&op, 16).await.map_err(text)?;
        let values = columns.first().and_then(|col| col.as_bytes()).unwrap_or_default();
        if values.iter().any(|v| v.len() != 1 << 20) {
            return Err("a row of the wrong size".into());
        }
        rows += values.len();
        if !more {
            break;
        }
    }
    if rows != 64 {
        return Err(format!("{rows} rows of 64"));
    }
    c.close_operation(&op).await.map_err(text)?;
    c.close_session(&s).await.map_err(text)
}

/// Asks for 64 MiB and never reads; the proxy must close the connection after `timeouts.client_write`.
async fn stalled(ctx: &Ctx) -> Result<(), String> {
    let (mut setup, s, op) = blobs(ctx, "stalled", 64, 1_048_576).await?;
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.set_recv_buffer_size(4096).map_err(|e| e.to_string())?;
    let mut raw = socket.connect(ctx.proxy).await.map_err(|e| format!("connect: {e}"))?;
    raw.write_all(&fetch_call(&op, 64)).await.map_err(|e| e.to_string())?;
    if !ctx.pause(ctx.stall_wait).await {
        return Ok(());
    }
    // By now the proxy has given up on this client: what the buffers hold, then the end.
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let ended = tokio::time::timeout(CALL_TIMEOUT, async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n as u64,
            }
        }
    })
    .await;
    if ended.is_err() {
        return Err(format!("the proxy kept a client that read nothing for {:?} open", ctx.stall_wait));
    }
    if got >= 64 << 20 {
        return Err("a stalled client was sent the whole reply".into());
    }
    setup.close_session(&s).await.map_err(text)
}
