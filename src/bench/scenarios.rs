//! The benchmark scenarios. Each client is a task with its own connection; latencies are merged at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Barrier;

use super::{histogram, procfs, Outcome, Scenario, Settings};
use crate::conn::ThriftConn;
use crate::hs2::handle::HandleId;
use crate::hs2::rpc::hs2::{TGetInfoReq, TGetInfoResp, TGetInfoType};
use crate::hs2::rpc::{self, Reply, Response};
use crate::hs2client::{check_status, fetch_req, session_handle, ClientAuth, ClientError, Hs2Client};
use crate::thrift::framing::Framing;
use crate::thrift::Limits;

/// The cheapest call a server answers from memory.
const SERVER_NAME: TGetInfoType = TGetInfoType::CLI_SERVER_NAME;
/// Row size of the bulk scenario: 1 MiB strings.
const BULK_ROW_BYTES: u64 = 1 << 20;

pub async fn run(s: &Settings) -> Outcome {
    match s.scenario {
        Scenario::Small => with_cpu_per_call(s, timed_clients(s, small_client)).await,
        Scenario::Query => timed_clients(s, query_client).await,
        Scenario::Pooled => pooled(s).await,
        Scenario::Bulk => bulk(s).await,
        Scenario::Idle => idle(s).await,
    }
}

/// Where clients connect, and how: plain, or TLS (`--tls`) with any certificate accepted (the bench
/// measures the proxies' TLS termination; it does not authenticate them).
#[derive(Clone)]
struct Target {
    addr: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Target {
    fn of(s: &Settings) -> Target {
        let tls = s.tls.then(|| {
            let settings =
                crate::tls::UpstreamTlsSettings { server_name: "localhost", verify: false, ..Default::default() };
            crate::tls::UpstreamTls::new(&settings).map(|t| t.connector)
        });
        let tls = match tls.transpose() {
            Ok(tls) => tls,
            // Constant settings without files: only a broken TLS library fails here.
            Err((key, e)) => panic!("hs2-bench: TLS client: {key}: {e}"),
        };
        Target { addr: s.target.clone(), tls }
    }
}

/// `run` with the CPU time `--pid` used per call over it, user space and kernel apart: what a proxy
/// costs the machine for each call, next to what it adds to latency.
async fn with_cpu_per_call(s: &Settings, run: impl std::future::Future<Output = Outcome>) -> Outcome {
    let before = s.pid.and_then(procfs::cpu_ticks);
    let mut out = run.await;
    let after = s.pid.and_then(procfs::cpu_ticks);
    if let (Some((u0, k0)), Some((u1, k1))) = (before, after) {
        let per_call = |ticks: u64| ticks as f64 / procfs::TICKS_PER_SECOND * 1e6 / out.ops.max(1) as f64;
        out.extra.push(("cpu_user_us_per_call".into(), per_call(u1.saturating_sub(u0))));
        out.extra.push(("cpu_sys_us_per_call".into(), per_call(k1.saturating_sub(k0))));
    }
    out
}

async fn connect(target: &Target) -> Result<Hs2Client, ClientError> {
    let mut c = match &target.tls {
        None => Hs2Client::connect(target.addr.as_str(), &ClientAuth::NoSasl).await?,
        Some(connector) => {
            let tcp = tokio::net::TcpStream::connect(target.addr.as_str()).await.map_err(ClientError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let name = rustls_pki_types::ServerName::try_from("localhost").map_err(|e| {
                ClientError::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
            })?;
            let tls = connector.connect(name, tcp).await.map_err(ClientError::Connect)?;
            let conn = ThriftConn::new(Box::new(tls), Framing::Unframed, crate::hs2client::MAX_FRAME_BYTES);
            Hs2Client::over(conn)
        }
    };
    c.set_timeout(Some(Duration::from_secs(60)));
    Ok(c)
}

/// What one client task measured.
struct ClientResult {
    ops: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// Runs `s.clients` tasks of `body`; every task connects first, then all start the clock together.
async fn timed_clients<F, Fut>(s: &Settings, body: F) -> Outcome
where
    F: Fn(Target, Duration, Arc<Barrier>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ClientResult> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(s.clients + 1));
    let target = Target::of(s);
    let tasks: Vec<_> =
        (0..s.clients).map(|_| tokio::spawn(body(target.clone(), s.duration, barrier.clone()))).collect();
    barrier.wait().await;
    let mut out = collect(tasks).await;
    out.seconds = s.duration.as_secs_f64();
    out
}

fn record(h: &mut Histogram<u64>, since: Instant) {
    let _ = h.record((since.elapsed().as_micros() as u64).max(1));
}

/// Runs `step` until `duration` after the barrier, counting ops and errors.
macro_rules! client_loop {
    ($barrier:expr, $duration:expr, $h:ident, $ops:ident, $errors:ident, $step:block) => {{
        $barrier.wait().await;
        let deadline = Instant::now() + $duration;
        while Instant::now() < deadline {
            let t0 = Instant::now();
            let ok: bool = $step;
            if ok {
                record(&mut $h, t0);
                $ops += 1;
            } else {
                $errors += 1;
            }
        }
    }};
}

fn failed(errors: u64) -> ClientResult {
    ClientResult { ops: 0, errors, latency: histogram() }
}

async fn small_client(target: Target, duration: Duration, barrier: Arc<Barrier>) -> ClientResult {
    let setup = async {
        let mut c = connect(&target).await?;
        let s = c.open_session(None, &[]).await?;
        let info = get_info_call(&s)?;
        Ok::<_, ClientError>((c, s, info))
    };
    let (mut c, session, info) = match setup.await {
        Ok(x) => x,
        Err(_) => {
            barrier.wait().await;
            return failed(1);
        }
    };
    let (mut h, mut ops, mut errors) = (histogram(), 0u64, 0u64);
    client_loop!(barrier, duration, h, ops, errors, { prepared_get_info(&mut c, &info).await.is_ok() });
    let _ = c.close_session(&session).await;
    ClientResult { ops, errors, latency: h }
}

async fn query_client(target: Target, duration: Duration, barrier: Arc<Barrier>) -> ClientResult {
    let Ok(mut c) = connect(&target).await else {
        barrier.wait().await;
        return failed(1);
    };
    let (mut h, mut ops, mut errors) = (histogram(), 0u64, 0u64);
    client_loop!(barrier, duration, h, ops, errors, { one_query(&mut c).await.is_ok() });
    ClientResult { ops, errors, latency: h }
}

async fn one_query(c: &mut Hs2Client) -> Result<(), ClientError> {
    let s = c.open_session(None, &[]).await?;
    let op = c.execute(&s, "select id from range(100)").await?;
    c.wait_finished(&op).await?;
    c.fetch(&op, 1024).await?;
    c.close_operation(&op).await?;
    c.close_session(&s).await
}

/// GetInfo encoded once (Apache Thrift's encoder), so that the loop measures the proxy, not the client.
fn get_info_call(session: &HandleId) -> Result<Vec<u8>, ClientError> {
    let req = TGetInfoReq::new(session_handle(session), SERVER_NAME);
    Ok(rpc::encode_call::<rpc::GetInfo>(1, &req)?)
}

/// Sends a pre-encoded GetInfo; the reply is decoded and its status checked, as any client would.
async fn prepared_get_info(c: &mut Hs2Client, call: &[u8]) -> Result<(), ClientError> {
    let reply = c.call_raw_bytes(call).await?;
    match rpc::decode_reply::<TGetInfoResp>(&reply, "GetInfo", 1, &Limits::REPLY)? {
        Reply::Ok(resp) => check_status(resp.status()),
        Reply::Exception(e) => Err(ClientError::Exception(e.message)),
    }
}

/// Pooled: many connections, occasional calls, upstream connections of `pid` counted while they run.
async fn pooled(s: &Settings) -> Outcome {
    let mut tasks = Vec::new();
    let deadline = Instant::now() + s.duration;
    let target = Target::of(s);
    for i in 0..s.clients {
        let (target, think) = (target.clone(), s.think);
        tasks.push(tokio::spawn(async move {
            let mut r = ClientResult { ops: 0, errors: 0, latency: histogram() };
            let Ok(mut c) = connect(&target).await else { return failed(1) };
            let Ok(session) = c.open_session(None, &[]).await else { return failed(1) };
            let Ok(info) = get_info_call(&session) else { return failed(1) };
            // Spread the calls out like many Hue users would.
            tokio::time::sleep(think.mul_f64((i % 100) as f64 / 100.0)).await;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match prepared_get_info(&mut c, &info).await {
                    Ok(_) => {
                        record(&mut r.latency, t0);
                        r.ops += 1;
                    }
                    Err(_) => r.errors += 1,
                }
                tokio::time::sleep(think).await;
            }
            let _ = c.close_session(&session).await;
            r
        }));
    }
    let mut max_upstream = vec![0usize; s.upstream_ports.len()];
    while Instant::now() < deadline {
        if let Some(pid) = s.pid {
            for (i, port) in s.upstream_ports.iter().enumerate() {
                max_upstream[i] = max_upstream[i].max(procfs::established_to(pid, *port));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = collect(tasks).await;
    out.seconds = s.duration.as_secs_f64();
    if s.pid.is_some() {
        out.extra.push(("max_upstream_per_backend".into(), max_upstream.iter().copied().max().unwrap_or(0) as f64));
    }
    out
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<ClientResult>>) -> Outcome {
    let mut out = Outcome { latency_us: Some(histogram()), ..Outcome::default() };
    for t in tasks {
        match t.await {
            Ok(r) => {
                out.ops += r.ops;
                out.errors += r.errors;
                if let Some(h) = out.latency_us.as_mut() {
                    let _ = h.add(&r.latency);
                }
            }
            Err(_) => out.errors += 1,
        }
    }
    out
}

/// Bulk: one client fetches `bulk_bytes` of 1 MiB rows in replies of `reply_bytes`.
async fn bulk(s: &Settings) -> Outcome {
    let mut out = Outcome::default();
    let rows_per_reply = (s.reply_bytes / BULK_ROW_BYTES).max(1) as i64;
    let rows = (s.bulk_bytes / BULK_ROW_BYTES).max(1) as i64;
    let run = async {
        let mut c = connect(&Target::of(s)).await?;
        let session = c.open_session(None, &[]).await?;
        let op = c.execute(&session, &format!("select payload from blobs({rows}, {BULK_ROW_BYTES})")).await?;
        c.wait_finished(&op).await?;
        // Encoded once (Apache Thrift's encoder), so that the loop measures the proxy, not the client.
        let fetch = rpc::encode_call::<rpc::FetchResults>(1, &fetch_req(&op, rows_per_reply))?;
        let started = Instant::now();
        let mut fetched = 0;
        while fetched < rows {
            out.bytes += c.call_raw_bytes(&fetch).await?.len() as u64;
            out.ops += 1;
            fetched += rows_per_reply;
        }
        out.seconds = started.elapsed().as_secs_f64();
        c.close_operation(&op).await?;
        c.close_session(&session).await
    };
    if run.await.is_err() {
        out.errors += 1;
    }
    if let Some(pid) = s.pid {
        out.extra.push(("peak_rss_mib".into(), procfs::peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0));
    }
    out
}

/// Idle: opens `sessions` sessions, then holds `connections` connections that each made one call;
/// reports `pid`'s memory per session and per connection.
async fn idle(s: &Settings) -> Outcome {
    let mut out = Outcome::default();
    let rss = || s.pid.and_then(procfs::rss_kib).unwrap_or(0) as f64;
    let base = rss();
    let started = Instant::now();
    let target = Target::of(s);
    let sessions = open_many_sessions(&target, s.sessions, &mut out).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_sessions = rss();
    let mut held = Vec::with_capacity(s.connections);
    for i in 0..s.connections {
        let Ok(mut c) = connect(&target).await else {
            out.errors += 1;
            continue;
        };
        if let Some(session) = sessions.get(i % sessions.len().max(1)) {
            if c.get_info(session, SERVER_NAME).await.is_err() {
                out.errors += 1;
            }
        }
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_connections = rss();
    out.seconds = started.elapsed().as_secs_f64();
    out.ops = (sessions.len() + held.len()) as u64;
    let per = |delta: f64, n: usize| if n == 0 { 0.0 } else { delta / n as f64 };
    out.extra.push(("rss_base_kib".into(), base));
    out.extra.push(("kib_per_session".into(), per(with_sessions - base, sessions.len())));
    out.extra.push(("kib_per_connection".into(), per(with_connections - with_sessions, held.len())));
    out.extra.push(("connections_held".into(), held.len() as f64));
    out.extra.push(("sessions_held".into(), sessions.len() as f64));
    out
}

async fn open_many_sessions(target: &Target, n: usize, out: &mut Outcome) -> Vec<HandleId> {
    let workers = 32.min(n.max(1));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let target = target.clone();
        let count = n / workers + usize::from(w < n % workers);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(count);
            let Ok(mut c) = connect(&target).await else { return (got, count as u64) };
            let mut errors = 0;
            for _ in 0..count {
                match c.open_session(None, &[]).await {
                    Ok(s) => got.push(s),
                    Err(_) => errors += 1,
                }
            }
            (got, errors)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        if let Ok((got, errors)) = t.await {
            all.extend(got);
            out.errors += errors;
        }
    }
    all
}
