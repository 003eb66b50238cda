//! Command-line interface: flags (which override the config file) and subcommands.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{BackendTransport, ConfigError, FileConfig, Overrides};

#[derive(Debug, Parser)]
#[command(name = "hs2-proxy", version, about = "A session-aware HiveServer2 proxy for Impala")]
pub struct Cli {
    /// Address to accept HS2 clients on (default 127.0.0.1:21050).
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// A backend impalad as host:port; repeat for each. With none, the demo cluster runs.
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
    /// TOML configuration file; flags override its keys.
    #[arg(long, env = "HS2_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run three built-in mock impalads behind the proxy and print how to connect.
    Demo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
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
        });
        Ok(file)
    }
}
