//! The hs2-proxy binary: parse flags, load the configuration, start logging, run until SIGTERM/SIGINT,
//! then shut down gracefully.

use clap::Parser;
use hs2_proxy::cli::{Cli, Command, LogFormat, RunArgs};
use hs2_proxy::config::{Config, ConfigError};
use hs2_proxy::server::{self, ProxyHandle, StartError};
use hs2_proxy::{cli_admin, control};

fn main() {
    let cli = Cli::parse();
    let (run, demo) = match &cli.command {
        None => (cli.run, false),
        Some(Command::Demo { run }) => (run.clone(), true),
        Some(command) => match cli_admin::admin_call(command) {
            Some((call, admin)) => std::process::exit(cli_admin::main(call, admin)),
            None => std::process::exit(2),
        },
    };
    let config = match run.file_config().and_then(|f| f.validate()) {
        Ok(c) => c,
        Err(e) => configuration_error(e),
    };
    // No backends and no file: the demo. A file without backends is an error, never a demo: a service
    // started before its operator listed the impalads must say so and stop, not serve a mock cluster.
    let demo = demo || (config.backends.is_empty() && run.config.is_none());
    if !demo && config.backends.is_empty() {
        let path = run.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        configuration_error(ConfigError {
            key: "backends".into(),
            reason: format!(
                "none configured in {path} (list the impalads there, or pass --backend; `hs2-proxy demo` runs mock ones)"
            ),
        });
    }
    init_logging(run.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hs2-proxy: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(serve(run, config, demo)) {
        Ok(()) => {}
        // A setting that proved unusable at start (Kerberos credentials, ...) is a configuration error.
        Err(StartError::Config(e)) => configuration_error(e),
        Err(e) => {
            eprintln!("hs2-proxy: {e}");
            std::process::exit(1);
        }
    }
}

fn configuration_error(e: ConfigError) -> ! {
    eprintln!("hs2-proxy: configuration error: {e}");
    std::process::exit(2);
}

async fn serve(run: RunArgs, config: Config, demo: bool) -> Result<(), StartError> {
    // The demo's mock impalads live as long as the proxy does.
    let (handle, _mocks): (ProxyHandle, Box<dyn std::any::Any>) =
        if demo { start_demo(config).await? } else { (server::start(config).await?, Box::new(())) };
    if !demo {
        tokio::spawn(reload_on_sighup(run, handle.proxy.clone()));
    }
    shutdown_signal().await;
    shut_down(&handle).await;
    Ok(())
}

#[cfg(feature = "testbed")]
async fn start_demo(config: Config) -> Result<(ProxyHandle, Box<dyn std::any::Any>), StartError> {
    let (handle, mocks) = hs2_proxy::demo::start(config).await?;
    println!("{}", hs2_proxy::demo::banner(&handle, &mocks));
    if let Some(admin) = handle.admin_addr {
        println!("Status page: http://{admin}/   (hs2-proxy backends | sessions | drain HOST:PORT ...)");
    }
    Ok((handle, Box::new(mocks)))
}

#[cfg(not(feature = "testbed"))]
async fn start_demo(_: Config) -> Result<(ProxyHandle, Box<dyn std::any::Any>), StartError> {
    configuration_error(ConfigError {
        key: "backends".into(),
        reason: "none configured, and this build has no demo cluster (built without the `testbed` feature)".into(),
    })
}

/// Stops accepting, lets every connection finish the call it is in, and returns once they are all gone
/// or `timeouts.shutdown_grace` has passed. Sessions stay open on the impalads.
async fn shut_down(handle: &ProxyHandle) {
    let open = handle.open_connections();
    let grace = handle.proxy.config().timeouts.shutdown_grace;
    tracing::info!(connections = open, grace = ?grace, "shutting down: no new connections; open ones finish their call");
    match handle.shutdown_gracefully().await {
        0 => tracing::info!("every client connection finished: exiting"),
        left => tracing::warn!(connections = left, "shutdown grace over: exiting with connections still open"),
    }
}

/// SIGHUP re-reads the configuration (file and flags) and applies the backend list: new backends are
/// added, removed ones drained, weights changed. A bad file is logged and changes nothing.
async fn reload_on_sighup(run: RunArgs, proxy: hs2_proxy::proxy::Proxy) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match run.file_config().and_then(|f| f.validate()) {
                Ok(config) => {
                    tracing::info!(backends = config.backends.len(), "SIGHUP: reloading the backend list");
                    control::reload::apply(&proxy, &config);
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: configuration error; nothing changed"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (run, proxy);
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HS2_PROXY_LOG")
        // zookeeper-client logs every reconnect attempt at warn and sessions at info: keep its errors only.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,zookeeper_client=error"));
    // Colours only for a person at a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log that cannot be written (a full disk, a broken pipe to journald) must cost log lines, never
    // service: by default a failed write is reported with `eprintln!`, which panics when stderr is what
    // failed, killing every task that logs (connections mid-call, health checks, the clean-up).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    match format {
        // The default format's text without colours, for less, and escaped (see logfmt).
        LogFormat::Text if !ansi => builder
            .event_format(hs2_proxy::logfmt::PlainLines::default())
            .fmt_fields(hs2_proxy::logfmt::PlainFields)
            .init(),
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
