//! `mock-impalad`: runs one mock impalad (see `hs2_proxy::mock`) until Ctrl-C.
//!
//! ```text
//! mock-impalad --listen 127.0.0.1:21050 [--name X] [--sasl] [--user U:PW ...] [--delay-ms N] [--frame-bytes N]
//!              [--keytab FILE [--principal impala/HOST]] [--authorized-proxy-user-config 'hs2proxy=*;hue=alice']
//!              [--web-listen 127.0.0.1:25000] [--http-listen 127.0.0.1:28000 [--trusted-auth-header NAME]]
//! ```
//! With `--keytab` clients authenticate with Kerberos (SASL GSSAPI); KRB5_CONFIG tells the realm.

use std::time::Duration;

use clap::Parser;
use hs2_proxy::kerberos::delegation::ProxyUsers;
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};

#[derive(Parser, Debug)]
#[command(name = "mock-impalad", version, about = "A mock impalad speaking HS2 with Impala's session semantics")]
struct Args {
    /// Address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:21050")]
    listen: String,
    /// Host name reported in http_addr and the web server address.
    #[arg(long, default_value = "mock-impalad")]
    name: String,
    /// Require SASL PLAIN (any user and password unless --user is given).
    #[arg(long)]
    sasl: bool,
    /// An accepted USER:PASSWORD pair (repeatable; needs --sasl).
    #[arg(long = "user", value_name = "USER:PASSWORD", requires = "sasl")]
    users: Vec<String>,
    /// Wait this long before handling every request.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// SASL: split replies into frames of at most this many bytes (Impala writes 131072).
    #[arg(long)]
    frame_bytes: Option<usize>,
    /// Rows per FetchResults when a request asks for none.
    #[arg(long, default_value_t = 1024)]
    fetch_default_rows: i64,
    /// Benchmark mode: large result batches are encoded once and reused (see `MockConfig::fast`).
    #[arg(long)]
    fast: bool,
    /// Require Kerberos (SASL GSSAPI), accepting with this keytab's keys.
    #[arg(long, conflicts_with = "sasl")]
    keytab: Option<std::path::PathBuf>,
    /// With --keytab: accept only tickets for this principal (default: any principal in the keytab).
    #[arg(long, requires = "keytab")]
    principal: Option<String>,
    /// Who may delegate with impala.doas.user, in impalad's syntax: `hs2proxy=*;hue=alice,bob`.
    #[arg(long, default_value = "")]
    authorized_proxy_user_config: String,
    /// Also serve a web port like impalad's (`/jsonmetrics`, `/sessions?json`) on this address.
    #[arg(long)]
    web_listen: Option<String>,
    /// Also serve HS2 over HTTP like impalad's hs2-http port (28000) on this address.
    #[arg(long)]
    http_listen: Option<String>,
    /// impalad's --trusted_auth_header on the HTTP port (honoured with --sasl or --keytab, as in impalad).
    #[arg(long, requires = "http_listen")]
    trusted_auth_header: Option<String>,
}

fn auth(args: &Args) -> Result<MockAuth, String> {
    if let Some(keytab) = &args.keytab {
        return Ok(MockAuth::Gssapi { keytab: keytab.clone(), principal: args.principal.clone() });
    }
    if !args.sasl {
        return Ok(MockAuth::NoSasl);
    }
    if args.users.is_empty() {
        return Ok(MockAuth::Plain { users: None });
    }
    let users = args
        .users
        .iter()
        .map(|u| u.split_once(':').map(|(n, p)| (n.to_string(), p.to_string())))
        .collect::<Option<Vec<_>>>()
        .ok_or("--user takes USER:PASSWORD")?;
    Ok(MockAuth::Plain { users: Some(users) })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Logs go to stderr, without colour codes unless a person is watching: scripts grep them.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log that cannot be written must not kill the tasks that log (see the proxy's main.rs).
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    builder.log_internal_errors(false).init();
    let args = Args::parse();
    let cfg = MockConfig {
        name: args.name.clone(),
        auth: auth(&args)?,
        delay: Duration::from_millis(args.delay_ms),
        write_frame_bytes: args.frame_bytes,
        fetch_default_rows: args.fetch_default_rows,
        fast: args.fast,
        authorized_proxy_users: ProxyUsers::parse_impala_flag(&args.authorized_proxy_user_config)
            .map_err(|e| format!("--authorized-proxy-user-config: {e}"))?,
    };
    let mock = MockImpalad::start(&args.listen, cfg).await?;
    if let Some(web) = &args.web_listen {
        mock.start_web(web).await?;
    }
    if let Some(http) = &args.http_listen {
        mock.start_http(http, args.trusted_auth_header.as_deref()).await?;
    }
    tokio::signal::ctrl_c().await?;
    mock.stop().await;
    Ok(())
}
