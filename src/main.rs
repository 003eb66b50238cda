//! The hs2-proxy binary: parse flags, load the configuration, start logging, run.

use clap::Parser;
use hs2_proxy::cli::{Cli, Command, LogFormat};
use hs2_proxy::config::{Config, ConfigError};
use hs2_proxy::{cli_admin, demo, server};

fn main() {
    let cli = Cli::parse();
    if let Some((call, admin)) = cli.command.as_ref().and_then(cli_admin::admin_call) {
        std::process::exit(cli_admin::main(call, admin, cli.config.as_deref()));
    }
    let config = match cli.file_config().and_then(|f| f.validate()).and_then(|c| require_backends(&cli, c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hs2-proxy: configuration error: {e}");
            std::process::exit(2);
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hs2-proxy: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let demo_mode = matches!(cli.command, Some(Command::Demo)) || config.backends.is_empty();
    let result = runtime.block_on(async move {
        let (handle, _mocks) = if demo_mode {
            let (handle, mocks) = demo::start(config).await?;
            println!("{}", demo::banner(&handle, &mocks));
            if let Some(admin) = handle.admin_addr {
                println!("Status page: http://{admin}/   (hs2-proxy backends | sessions | drain HOST:PORT ...)");
            }
            (handle, mocks)
        } else {
            let handle = server::start(config).await?;
            tokio::spawn(reload_on_sighup(cli, handle.proxy.clone()));
            (handle, Vec::new())
        };
        shutdown_signal().await;
        tracing::info!("shutting down");
        handle.shutdown();
        Ok::<(), std::io::Error>(())
    });
    if let Err(e) = result {
        eprintln!("hs2-proxy: {e}");
        std::process::exit(1);
    }
}

/// A configuration file without backends is an error, not a demo: a service started before its operator
/// listed the impalads must say so and stop (the packaged unit does not restart on exit code 2), not serve
/// a mock cluster. Without a file, no backends still means the demo.
fn require_backends(cli: &Cli, config: Config) -> Result<Config, ConfigError> {
    match &cli.config {
        Some(path) if config.backends.is_empty() && cli.command.is_none() => Err(ConfigError {
            key: "backends".into(),
            reason: format!(
                "none configured in {} (list the impalads there, or pass --backend; `hs2-proxy demo` runs mock ones)",
                path.display()
            ),
        }),
        _ => Ok(config),
    }
}

/// SIGHUP re-reads the configuration (file and flags) and applies the backend list: new backends are
/// added, removed ones drained, weights changed. A bad file is logged and changes nothing.
async fn reload_on_sighup(cli: Cli, proxy: std::sync::Arc<hs2_proxy::server::Proxy>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match cli.file_config().and_then(|f| f.validate()) {
                Ok(config) => {
                    tracing::info!(backends = config.backends.len(), "SIGHUP: reloading the backend list");
                    proxy.reload_backends(&config);
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: configuration error; nothing changed"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (cli, proxy);
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HS2_PROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
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
