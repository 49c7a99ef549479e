//! `fchm demo`: the whole system in one process — an embedded MQTT broker,
//! the edge daemon on the bundled test scene, and the decode server with
//! its dashboard. Nothing outside the repository is needed.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::{Broker, Config, LogConfig, LogTarget};
use crate::transport::broker;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The daemon's config (source, rate, spool); its broker is replaced by the demo's.
    #[arg(long, default_value = "config/fchmd-demo.toml")]
    pub config: PathBuf,
    /// The model bundle (default: the config's).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Where the embedded broker listens (MQTT clients can watch the demo there).
    #[arg(long, default_value = "127.0.0.1:18830")]
    pub mqtt: SocketAddr,
    /// Where the dashboard listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Decode threads of the server.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let mut cfg =
        Config::load(&a.config).with_context(|| format!("--config {}", a.config.display()))?;
    if let Some(b) = &a.bundle {
        cfg.bundle = b.clone();
    }
    crate::telemetry::logging::init(&LogConfig {
        level: cfg.log.level,
        target: LogTarget::Stderr,
    })?;

    let broker = broker::start(a.mqtt, cfg.embedded_broker.max_payload_bytes.max(4 << 20))
        .context("starting the demo's MQTT broker")?;
    let url = format!("mqtt://{}", broker.addr);
    cfg.mqtt.broker = Broker::Remote {
        host: broker.addr.ip().to_string(),
        port: broker.addr.port(),
        tls: false,
    };
    let device = cfg.device_id.clone();
    let bundle = cfg.bundle.clone();
    // The camera's human layer is the server's too: "Look now" then shows a picture.
    let human = (!cfg.aux.bundle.as_os_str().is_empty()).then(|| cfg.aux.bundle.clone());

    // The daemon keeps its own runtime and stops on SIGINT/SIGTERM itself,
    // flushing its spool, as it does on a camera.
    let daemon = std::thread::Builder::new()
        .name("fchmd".into())
        .spawn(move || crate::edge::run(cfg))
        .context("starting the daemon thread")?;

    let mut server_args = crate::server::Args::with(&url, vec![bundle]);
    server_args.http = a.http;
    server_args.workers = Some(a.workers);
    server_args.instance_id = Some("demo-server".into());
    server_args.human_bundle = human;
    crate::server::runtime()?.block_on(async {
        let server = crate::server::start(&server_args).await?;
        println!("fchm demo: MQTT broker {url}; device {device:?} on the bundled test scene");
        println!("{}{}", crate::server::READY_PREFIX, server.url());
        println!("Ctrl-C stops everything.");
        let daemon_ended = async {
            while !daemon.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        };
        tokio::select! {
            _ = crate::server::terminated() => {}
            _ = daemon_ended => log::error!("the daemon stopped; stopping the demo"),
        }
        server.stop().await;
        anyhow::Ok(())
    })?;
    match daemon.join() {
        Ok(r) => r.context("fchmd"),
        Err(_) => anyhow::bail!("the daemon thread panicked"),
    }
}
