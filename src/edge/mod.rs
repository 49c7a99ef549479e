//! fchmd, the edge daemon: capture → encode (rate-planned) → uplink.

pub mod aux;
mod control;
mod daemon;
pub mod memory;
mod queue;
mod stats;

use std::path::PathBuf;

use clap::Parser;

pub use aux::{AuxCommand, AuxControl, AuxShared, DeviceControl, Ring, RingEntry};
pub use control::{Limits, RateControl, Settings};
pub use daemon::{check, parse_final_accounting, run, FINAL_PREFIX};
pub use queue::DropOldest;
pub use stats::{EdgeCounters, StatsBuilder};

use crate::config::{Config, ConfigError, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "fchmd",
    version,
    about = "fchm edge daemon: camera → learned feature codec → MQTT"
)]
pub struct Args {
    /// Configuration file (TOML); without it every key takes its default.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate FILE and exit: 0 if valid, 78 (EX_CONFIG) with the reason if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,
    /// Override mqtt.broker: `embedded`, `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Override source.spec: `test-scene`, `y4m:-`, `y4m:PATH`, `v4l2:/dev/video0`, `images:DIR`.
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
    /// Override device_id (one MQTT topic level).
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
}

fn load(path: Option<&PathBuf>, args: &Args) -> Result<Config, ConfigError> {
    let mut cfg = match path {
        Some(p) => Config::load(p)?,
        None => Config::from_toml_str("")?,
    };
    cfg.apply_overrides(&Overrides {
        broker: args.broker.clone(),
        source: args.source.clone(),
        device_id: args.device_id.clone(),
    })?;
    Ok(cfg)
}

/// `fchmd`'s entry point; exits 78 on a configuration error.
pub fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        match load(Some(path), &args)
            .map_err(anyhow::Error::from)
            .and_then(|c| check(&c).map(|_| c))
        {
            Ok(_) => {
                println!("{}: OK", path.display());
                return Ok(());
            }
            Err(e) => {
                eprintln!("{e:#}");
                std::process::exit(ConfigError::EXIT_CODE);
            }
        }
    }
    let cfg = match load(args.config.as_ref(), &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(ConfigError::EXIT_CODE);
        }
    };
    crate::telemetry::logging::init(&cfg.log)?;
    memory::configure(cfg.pipeline.lean_memory);
    run(cfg)
}
