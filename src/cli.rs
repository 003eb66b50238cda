//! Command-line interface: flags (which override the config file) and subcommands.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{BackendTransport, ConfigError, FileConfig, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "hs2-proxy",
    version,
    about = "A session-aware HiveServer2 proxy for Impala",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How the proxy runs: flags that override the configuration file's keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Address to accept HS2 clients on (default 127.0.0.1:21050).
    #[arg(long)]
    pub listen: Option<String>,
    /// A backend impalad as host:port; repeat for each. With none (and no --config), the demo cluster runs.
    #[arg(long = "backend", value_name = "HOST:PORT")]
    pub backends: Vec<String>,
    /// How the proxy talks to backends.
    #[arg(long, value_enum)]
    pub backend_transport: Option<BackendTransport>,
    /// User for upstream connections of clients that did not authenticate (default anonymous).
    #[arg(long)]
    pub backend_user: Option<String>,
    /// File whose first line is that user's password.
    #[arg(long)]
    pub backend_password_file: Option<PathBuf>,
    /// Admin HTTP listener (API, status page, /metrics) as ip:port, or "off" (default 127.0.0.1:25100).
    #[arg(long, value_name = "IP:PORT")]
    pub admin_listen: Option<String>,
    /// PEM certificate chain for TLS on every listener (tls.cert_file); needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate (tls.key_file).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// An extra listener, like impalad's HS2-over-HTTP port 28000 (http.listen); serves every transport.
    #[arg(long, value_name = "IP:PORT")]
    pub http_listen: Option<String>,
    /// TOML configuration file; flags override its keys.
    #[arg(long, env = "HS2_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run three built-in mock impalads behind the proxy and print how to connect.
    Demo {
        #[command(flatten)]
        run: RunArgs,
    },
    /// List backends: state, weight, load, upstream connections, last probe (admin API client).
    Backends {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List sessions, optionally of one backend or one user (admin API client).
    Sessions {
        /// Only sessions on this backend (host:port as configured).
        #[arg(long, value_name = "HOST:PORT")]
        backend: Option<String>,
        /// Only sessions of this user.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop sending new sessions to a backend; its sessions keep working.
    Drain {
        #[arg(value_name = "HOST:PORT")]
        backend: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Let a drained (or maintenance) backend take new sessions again.
    Undrain {
        #[arg(value_name = "HOST:PORT")]
        backend: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Move every session of a backend to the others (for a restart): no new sessions there, each session
    /// moves once it has no open operation; at the deadline the rest stays. Progress: `hs2-proxy backends`.
    Evacuate {
        #[arg(value_name = "HOST:PORT")]
        backend: String,
        /// How long to keep moving sessions (e.g. 30s, 10m).
        #[arg(long, default_value = "10m")]
        deadline: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Like drain, shown as maintenance.
    Maintenance {
        #[arg(value_name = "HOST:PORT")]
        backend: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Close a session on its impalad (CloseSession) and forget it.
    CloseSession {
        /// The session id as impalad shows it (hi:lo).
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Where a new session of this user would go now, and why: the routing rule that matches, its
    /// group, the backends in order, or the error it would get (a limit, `fallback = "none"`).
    Explain {
        /// The user (authenticated, or OpenSession's username).
        #[arg(long)]
        user: Option<String>,
        /// The delegated user (`impala.doas.user`); default: the user.
        #[arg(long)]
        effective_user: Option<String>,
        /// The client's IP address, for `address` rules.
        #[arg(long, value_name = "IP")]
        address: Option<String>,
        /// The listener the client would connect to (ip:port), for `listener` rules.
        #[arg(long, value_name = "IP:PORT")]
        listener: Option<String>,
        /// An OpenSession configuration entry (repeat for more), e.g. --conf request_pool=etl.
        #[arg(long = "conf", value_name = "KEY=VALUE")]
        conf: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Cancel an operation (query) on its impalad (CancelOperation).
    CancelOperation {
        /// The operation (query) id, hi:lo.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin subcommands find the proxy's admin API.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The proxy's admin address (default: admin.listen from --config, else 127.0.0.1:25100).
    #[arg(long, value_name = "HOST:PORT", env = "HS2_PROXY_ADMIN")]
    pub admin: Option<String>,
    /// File whose first line is the admin bearer token (default: admin.token_file from --config).
    #[arg(long, value_name = "FILE", env = "HS2_PROXY_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The proxy's configuration file, read for `[admin]` listen and token_file.
    #[arg(long, env = "HS2_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl RunArgs {
    /// The file (if any) with the flags applied, not yet validated.
    pub fn file_config(&self) -> Result<FileConfig, ConfigError> {
        let mut file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        file.apply(Overrides {
            listen: self.listen.clone(),
            backends: self.backends.clone(),
            backend_transport: self.backend_transport,
            backend_user: self.backend_user.clone(),
            backend_password_file: self.backend_password_file.clone(),
            admin_listen: self.admin_listen.clone(),
            tls_cert_file: self.tls_cert.clone(),
            tls_key_file: self.tls_key.clone(),
            http_listen: self.http_listen.clone(),
        });
        Ok(file)
    }
}
