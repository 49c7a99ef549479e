//! fchm-server: transport → codec → model on the receiving side.
//!
//! Frames arrive through a shared MQTT subscription (so instances scale
//! through the broker), are decoded on worker threads ([`decode`]), and end
//! as detections published back to MQTT and kept in a bounded [`store`] that
//! the HTTP API and the dashboard read ([`http`]). DESIGN §7;
//! docs/server.md describes topics, API and guarantees.

pub mod consumer;
pub mod decode;
pub mod http;
pub mod human;
pub mod metrics;
pub mod store;
pub mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Broker;
use crate::model::detect::COCO_CLASSES;
use crate::model::runtime::Backend;
use crate::transport::mqtt::{SessionConfig, TlsFiles};
use consumer::Consumer;
use decode::Decoders;
use metrics::Metrics;
use store::{Limits, Store};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "fchm-server",
    version,
    about = "fchm decode server: MQTT features → detections, HTTP API, dashboard, metrics"
)]
pub struct Args {
    /// The broker: `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (then --ca).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// A model bundle directory; repeat to decode frames of several bundles.
    #[arg(long = "bundle", required = true)]
    pub bundles: Vec<PathBuf>,
    /// Shared-subscription group: instances in one group split the frames.
    #[arg(long, default_value = "fchm-server")]
    pub group: String,
    /// Topic prefix of the fleet (`<prefix>/<device>/feat`).
    #[arg(long, default_value = "fchm")]
    pub prefix: String,
    /// This instance's name (MQTT client id suffix, `server` in detections).
    #[arg(long)]
    pub instance_id: Option<String>,
    /// HTTP listen address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Inference engine for `vfcn_dec` and `task_back`: `tract` (CPU, built
    /// in), or with the `ort` cargo feature `ort`, `ort-cuda`, `ort-tensorrt`
    /// (ONNX Runtime, loaded at run time; docs/backends.md).
    #[arg(long, default_value = "tract")]
    pub backend: Backend,
    /// Decode threads (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Largest MQTT packet accepted, bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_packet_bytes: usize,
    /// CA certificate (PEM) for `mqtts://`.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// File with `USER:PASSWORD` for the broker.
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// Frames kept per device for the API.
    #[arg(long, default_value_t = 256)]
    pub history: usize,
    /// `error`, `warn`, `info`, `debug`.
    #[arg(long, default_value = "info")]
    pub log_level: log::LevelFilter,
    /// Human-layer bundle (HVCN): keep aux frames and render human views
    /// (`GET /api/devices/{id}/frames/{seq}.jpg?mode=fast|diffusion`).
    #[arg(long)]
    pub human_bundle: Option<PathBuf>,
    /// Ask a device for the aux layer of frames whose detections contain one
    /// of these classes (COCO names, comma-separated); needs --human-bundle.
    #[arg(long, value_delimiter = ',')]
    pub aux_on: Vec<String>,
    /// Lowest detection score that triggers --aux-on.
    #[arg(long, default_value_t = 0.4)]
    pub aux_min_score: f32,
    /// Seconds between two --aux-on requests to one device.
    #[arg(long, default_value_t = 10.0)]
    pub aux_interval_s: f64,
}

impl Args {
    /// The arguments with every default, for embedding (the demo, benches, tests).
    pub fn with(broker: &str, bundles: Vec<PathBuf>) -> Self {
        let mut a = Args::parse_from(["fchm-server", "--bundle", "x"]);
        a.broker = broker.to_owned();
        a.bundles = bundles;
        a
    }

    fn session(&self, instance: &str) -> Result<SessionConfig> {
        let broker: Broker = self
            .broker
            .parse()
            .with_context(|| format!("--broker {:?}", self.broker))?;
        let Broker::Remote { host, port, tls } = broker else {
            bail!("--broker embedded: the server connects to a broker; `fchm demo` runs one in-process")
        };
        let tls = match (tls, &self.ca) {
            (true, Some(ca)) => Some(TlsFiles {
                ca: ca.clone(),
                client: None,
            }),
            (true, None) => bail!("--broker mqtts://…: --ca FILE is required"),
            (false, _) => None,
        };
        let credentials = match &self.credentials_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("--credentials-file {}", p.display()))?;
                let (u, pw) = text.trim_end().split_once(':').with_context(|| {
                    format!("--credentials-file {}: expected USER:PASSWORD", p.display())
                })?;
                Some((u.to_owned(), pw.to_owned()))
            }
            None => None,
        };
        Ok(SessionConfig {
            host,
            port,
            client_id: format!("fchm-server-{instance}"),
            keep_alive: Duration::from_secs(30),
            max_packet_bytes: self.max_packet_bytes,
            credentials,
            tls,
            max_in_flight: 64,
        })
    }
}

/// A started server; dropping it does not stop it, [`Running::stop`] does.
pub struct Running {
    pub http_addr: SocketAddr,
    pub instance: String,
    pub metrics: Metrics,
    pub store: Arc<Store>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// The dashboard's address, as printed on start.
    pub fn url(&self) -> String {
        format!("http://{}/", self.http_addr)
    }

    /// Stop taking frames, finish the ones being decoded, close HTTP and MQTT.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

/// Load the bundles, connect, listen; returns once HTTP is listening.
pub async fn start(args: &Args) -> Result<Running> {
    if args.group.is_empty() || args.group.contains(['/', '+', '#']) {
        bail!("--group {:?}: expected one topic level", args.group);
    }
    let instance = args
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let session = args.session(&instance)?;
    let backend = args.backend.clone();
    let dirs = args.bundles.clone();
    let human_dir = args.human_bundle.clone();
    if !args.aux_on.is_empty() && human_dir.is_none() {
        bail!("--aux-on needs --human-bundle: without it aux frames could not be shown");
    }
    if let Some(c) = args
        .aux_on
        .iter()
        .find(|c| !COCO_CLASSES.contains(&c.as_str()))
    {
        bail!("--aux-on {c:?}: not a COCO class name (e.g. person, car, dog)");
    }
    if !(args.aux_interval_s.is_finite() && args.aux_interval_s >= 0.0) {
        bail!(
            "--aux-interval-s {}: expected seconds >= 0",
            args.aux_interval_s
        );
    }
    let decoders = tokio::task::spawn_blocking(move || {
        let d = Decoders::load_with(&dirs, &backend)?;
        match &human_dir {
            Some(dir) => d.with_human(dir, &backend),
            None => Ok(d),
        }
    })
    .await
    .context("bundle loader")??;
    let decoders = Arc::new(decoders);
    let bundle_ids = decoders.ids();
    log::info!(
        "decoding bundles {} with {}",
        bundle_ids.join(", "),
        args.backend
    );

    let metrics = Metrics::new();
    let store = Arc::new(Store::new(Limits {
        frames: args.history.max(1),
        ..Limits::default()
    }));
    let mut options = session
        .options_with_will(None)
        .context("mqtt session options")?;
    // Acknowledge a frame only once its outcome is known (consumer.rs).
    options.set_manual_acks(true);
    let (client, eventloop) = AsyncClient::new(options, 256);
    let consumer = Arc::new(Consumer {
        prefix: args.prefix.clone(),
        group: args.group.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        client: client.clone(),
        epoch: AtomicU64::new(0),
        decoders: decoders.human().is_some().then(|| decoders.clone()),
        aux_rule: (!args.aux_on.is_empty()).then(|| {
            human::AuxRule::new(
                args.aux_on.clone(),
                args.aux_min_score,
                Duration::from_secs_f64(args.aux_interval_s),
            )
        }),
    });

    let n_workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (jobs_tx, jobs_rx) = mpsc::channel(n_workers * 2);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let workers = decode::spawn_workers(
        n_workers,
        decoders.clone(),
        store.clone(),
        instance.clone(),
        jobs_rx,
        done_tx,
    )
    .context("starting decode threads")?;

    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("--http {}: cannot listen", args.http))?;
    let http_addr = listener.local_addr()?;
    let app = http::router(Arc::new(http::AppState {
        prefix: args.prefix.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        client,
        bundles: bundle_ids,
        instance: instance.clone(),
        decoders,
    }));

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (outcomes_done_tx, outcomes_done) = watch::channel(false);
    let mut http_stop = shutdown_rx.clone();
    let tasks = vec![
        tokio::spawn(
            consumer
                .clone()
                .run_events(eventloop, jobs_tx, shutdown_rx, outcomes_done),
        ),
        tokio::spawn(consumer.run_outcomes(done_rx, outcomes_done_tx)),
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            });
            if let Err(e) = serve.await {
                log::error!("http: {e}");
            }
        }),
    ];
    Ok(Running {
        http_addr,
        instance,
        metrics,
        store,
        shutdown,
        tasks,
        workers,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "server".into())
}

/// The line printed once the dashboard is reachable; tests and scripts wait for it.
pub const READY_PREFIX: &str = "fchm-server: dashboard ";

/// Wait for SIGINT or SIGTERM.
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The server's async runtime: two threads are plenty for I/O, since
/// decoding runs on its own threads.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("fchm-server-io")
        .build()
        .context("starting the async runtime")
}

/// `fchm-server`'s entry point.
pub fn main() -> Result<()> {
    let args = Args::parse();
    crate::telemetry::logging::init(&crate::config::LogConfig {
        level: args.log_level,
        target: crate::config::LogTarget::Stderr,
    })?;
    runtime()?.block_on(async {
        let running = start(&args).await?;
        println!("{READY_PREFIX}{}", running.url());
        terminated().await;
        log::info!("stopping");
        running.stop().await;
        Ok(())
    })
}
