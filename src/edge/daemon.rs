//! Wiring of the running daemon: one capture thread, two encoder threads
//! (model work stays off the async runtime), and the uplink task.
//!
//! ```text
//! capture ──DropOldest──▶ analysis (front) ──1──▶ coder (rate planner, ring) ──mpsc──▶ uplink ──▶ MQTT
//!                                                        ▲                  feat + aux   │
//!                                                        └─── controller ◀── PUBACKs ────┘
//! ```
//!
//! The analysis thread runs the detector front, which does not depend on
//! the gain; the coder plans the frame's rate when it gets there and runs the
//! rest. With two cores or more the two overlap, one frame apart.
//!
//! The encoder also keeps the ring of recent frames and codes the aux layer
//! when asked (`set/aux`, [`super::aux`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use image::RgbImage;
use tokio::sync::{mpsc, watch};

use super::aux::{self as aux, AuxChoice, AuxControl, AuxShared, AuxWhy, DeviceControl, RingEntry};
use super::control::{Limits, RateControl, Settings};
use super::queue::DropOldest;
use super::stats::{EdgeCounters, StatsBuilder};
use crate::capture::{self, CaptureOptions, Reopening, Source, SourceSpec};
use crate::clock::unix_us;
use crate::codec::{EncodeError, FeatureEncoder, Features, FrameMeta};
use crate::config::{Broker, Config, RateMode};
use crate::core::container::Layer;
use crate::human::{AuxEncoder, HumanBundle, HumanManifest};
use crate::model::bundle::{Bundle, Role};
use crate::rate::{Controller, ControllerConfig, Planner, PlannerConfig, RateModel};
use crate::telemetry::notify::Notifier;
use crate::transport::mqtt::{SessionConfig, TlsFiles};
use crate::transport::spool::{Spool, SpoolConfig, SyncPolicy};
use crate::transport::{broker, OutFrame, Topics, Uplink, UplinkConfig};

/// Prefix of the line `fchmd` prints on stdout at exit: its final counters as JSON.
pub const FINAL_PREFIX: &str = "fchmd-final-accounting ";

/// The final accounting in `fchmd`'s stdout, if it printed one.
pub fn parse_final_accounting(stdout: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(FINAL_PREFIX))
        .filter_map(|j| serde_json::from_str(j).ok())
        .next_back()
}

/// The bundle input size the rate table's bits per pixel refer to.
fn pixels_per_frame(bundle: &Bundle) -> f64 {
    (bundle.manifest.input.width as f64) * (bundle.manifest.input.height as f64)
}

struct Captured {
    sequence: u64,
    capture_us: u64,
    image: RgbImage,
}

/// Where the session connects, starting the embedded broker if configured.
fn session(cfg: &Config) -> Result<SessionConfig> {
    let m = &cfg.mqtt;
    let (host, port, tls) = match &m.broker {
        Broker::Embedded => {
            let b = broker::start(
                cfg.embedded_broker.listen,
                cfg.embedded_broker.max_payload_bytes,
            )?;
            log::info!("embedded MQTT broker listening on {}", b.addr);
            let host = if b.addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                b.addr.ip().to_string()
            };
            (host, b.addr.port(), false)
        }
        Broker::Remote { host, port, tls } => (host.clone(), *port, *tls),
    };
    let tls = if tls {
        let ca = m
            .ca_file
            .clone()
            .context("config: mqtt.ca_file: expected a CA file for an mqtts:// broker")?;
        let client = match (&m.client_cert_file, &m.client_key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        };
        Some(TlsFiles { ca, client })
    } else {
        None
    };
    let credentials = match (&m.username, &m.password_file) {
        (Some(u), Some(p)) => {
            let pass = std::fs::read_to_string(p)
                .with_context(|| format!("mqtt.password_file {}", p.display()))?;
            Some((u.clone(), pass.trim_end_matches(['\n', '\r']).to_string()))
        }
        (Some(u), None) => Some((u.clone(), String::new())),
        _ => None,
    };
    Ok(SessionConfig {
        host,
        port,
        client_id: cfg.mqtt_client_id(),
        keep_alive: Duration::from_secs(m.keep_alive_s.into()),
        max_packet_bytes: m.max_packet_bytes,
        credentials,
        tls,
        max_in_flight: m.max_in_flight,
    })
}

fn open_source(spec: &SourceSpec, opts: &CaptureOptions) -> Result<Box<dyn Source>> {
    Ok(match spec {
        // A camera can stall or be unplugged: keep reopening it.
        SourceSpec::V4l2(_) => Box::new(
            Reopening::open(spec.clone(), opts.clone())
                .with_context(|| format!("source {spec}"))?,
        ),
        _ => capture::open(spec, opts).with_context(|| format!("source {spec}"))?,
    })
}

/// Capture thread: paces the source to `fps` and never waits for the encoder.
fn spawn_capture(
    mut source: Box<dyn Source>,
    live: bool,
    fps: f64,
    sequence_base: u64,
    queue: Arc<DropOldest<Captured>>,
    counters: Arc<EdgeCounters>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("capture".into()).spawn(move || {
        let period = Duration::from_secs_f64(1.0 / fps);
        let mut due = Instant::now();
        let mut n = 0u64;
        while !stop.load(Relaxed) {
            if !live {
                // Files and the test scene would run as fast as we read them.
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            let image = match source.next_frame() {
                Ok(Some(img)) => img,
                Ok(None) => {
                    log::info!("source {} ended", source.describe());
                    break;
                }
                Err(e) => {
                    counters.capture_errors.fetch_add(1, Relaxed);
                    log::error!("capture: {e}");
                    break;
                }
            };
            let now = Instant::now();
            // A live camera runs at its own rate: keep only the frames that fall due.
            if live && now < due {
                continue;
            }
            due = (due + period).max(now - period);
            let frame = Captured {
                sequence: sequence_base + n,
                capture_us: unix_us(),
                image,
            };
            match queue.push(frame) {
                Ok(dropped) => {
                    n += 1;
                    counters.captured.fetch_add(1, Relaxed);
                    if let Some(old) = dropped {
                        counters.dropped_queue.fetch_add(1, Relaxed);
                        log::debug!(sequence = old.sequence; "encoder behind: dropped the oldest captured frame");
                    }
                }
                // Stopping: the frame was never counted as captured.
                Err(_) => break,
            }
        }
        queue.close();
    })
}

struct EncoderCtx {
    bundle: Bundle,
    /// The human-layer bundle, when the aux layer is configured.
    human: Option<HumanBundle>,
    aux: Arc<AuxShared>,
    fps: f64,
    queue: Arc<DropOldest<Captured>>,
    planner: Arc<Mutex<Planner>>,
    controller: Arc<Mutex<Controller>>,
    settings: Arc<Mutex<Settings>>,
    counters: Arc<EdgeCounters>,
    out: mpsc::Sender<OutFrame>,
}

/// The uplink is gone: the encoder stops.
struct Gone;

/// Closes the capture queue when dropped, on unwinding too.
struct CloseOnDrop<'a>(&'a DropOldest<Captured>);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A captured frame and its features (the gain-independent analysis), on
/// its way from the analysis thread to the coder.
struct Analysed {
    frame: RingEntry,
    features: Result<Features, EncodeError>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EncoderCtx {
    /// The target bitrate the planner and the aux budget work from, kbit/s.
    fn target_kbps(&self, now: Instant) -> f64 {
        let auto_target = self
            .controller
            .lock()
            .map(|mut c| c.update(now))
            .unwrap_or(0.0);
        let s = *lock(&self.settings);
        match s.mode {
            RateMode::Auto => auto_target,
            RateMode::Kbps => s.target_kbps,
            RateMode::Gain => auto_target,
        }
    }

    fn send(&self, out: OutFrame) -> Result<(), Gone> {
        self.out.blocking_send(out).map_err(|_| {
            log::warn!("uplink gone; encoder stopping");
            Gone
        })
    }

    /// Plan, code and send one machine frame; its features if it was sent.
    fn machine(
        &self,
        encoder: &FeatureEncoder<'_>,
        frame: &RingEntry,
        features: Result<Features, EncodeError>,
        target: f64,
        now: Instant,
    ) -> Result<Option<Features>, Gone> {
        // A frame the front failed on is an encode error whatever the
        // planner would have said; it reserves no budget.
        let features = match features {
            Ok(f) => f,
            Err(e) => {
                self.counters.encode_errors.fetch_add(1, Relaxed);
                log::error!(sequence = frame.sequence; "analysis failed: {e}");
                return Ok(None);
            }
        };
        let decision = {
            let mut p = lock(&self.planner);
            // While aux goes with every frame, the machine layer plans for its share.
            p.set_aux_streaming(self.aux.streaming());
            p.decide(target, now)
        };
        let gain = match decision {
            crate::rate::Decision::Encode { gain, .. } => gain,
            crate::rate::Decision::Skip { reason } => {
                self.counters.skipped_rate.fetch_add(1, Relaxed);
                log::debug!(sequence = frame.sequence; "frame skipped: {reason}");
                return Ok(None);
            }
        };
        let meta = FrameMeta {
            sequence: frame.sequence,
            timestamp_us: frame.capture_us,
        };
        let encoded = match encoder.encode(&features, gain, meta) {
            Ok(e) => e,
            Err(e) => {
                self.counters.encode_errors.fetch_add(1, Relaxed);
                log::error!(sequence = frame.sequence; "encode failed: {e}");
                return Ok(None);
            }
        };
        let bits = encoded.bytes.len() as f64 * 8.0;
        // The prediction is read before `observe` updates it, and only when
        // it is logged.
        let predicted = {
            let mut p = lock(&self.planner);
            let predicted = log::log_enabled!(log::Level::Debug).then(|| p.model().bits_at(gain));
            p.observe(gain, bits);
            predicted
        };
        if let Some(predicted) = predicted {
            // One line a frame: with the uplink's "acked" lines, the trace that
            // shows where a link's capacity goes (target → gain → bits → ack).
            log::debug!(
                sequence = frame.sequence, capture_us = frame.capture_us, target_kbps = target, gain = gain, predicted_bits = predicted, bits = bits;
                "frame coded: gain {gain:.3}, {bits:.0} bits ({predicted:.0} predicted), target {target:.0} kbit/s"
            );
        }
        self.counters.encoded.fetch_add(1, Relaxed);
        self.counters
            .encoded_bytes
            .fetch_add(encoded.bytes.len() as u64, Relaxed);
        self.send(OutFrame {
            layer: Layer::Machine,
            sequence: frame.sequence,
            capture_us: frame.capture_us,
            bytes: encoded.bytes,
        })?;
        Ok(Some(features))
    }

    /// Code and send the aux frame of `frame` within its budget, or count why not.
    fn aux_frame(
        &self,
        encoder: &AuxEncoder<'_>,
        manifest: &HumanManifest,
        frame: &RingEntry,
        features: &Features,
        why: AuxWhy,
        target: f64,
    ) -> Result<(), Gone> {
        let c = &self.aux.counters;
        c.requested.fetch_add(1, Relaxed);
        let debt = lock(&self.planner).aux_debt();
        let budget = aux::budget_bits(why, self.aux.share, target, self.fps, debt);
        let gain = match aux::choose_gain(manifest, budget) {
            AuxChoice::Encode { gain, .. } => gain,
            AuxChoice::Skip { min_bits } => {
                c.skipped_budget.fetch_add(1, Relaxed);
                log::info!(
                    sequence = frame.sequence;
                    "aux frame skipped: {budget:.0} bits of budget, the lowest aux gain needs {min_bits:.0}"
                );
                return Ok(());
            }
        };
        let meta = FrameMeta {
            sequence: frame.sequence,
            timestamp_us: frame.capture_us,
        };
        let coded = encoder
            .analyse(&frame.image, features)
            .and_then(|ya| encoder.encode(&ya, features, gain, meta));
        let encoded = match coded {
            Ok(e) => e,
            Err(e) => {
                c.encode_errors.fetch_add(1, Relaxed);
                log::error!(sequence = frame.sequence; "aux encode failed: {e}");
                return Ok(());
            }
        };
        let bytes = encoded.bytes.len();
        lock(&self.planner).charge(bytes as f64 * 8.0);
        c.encoded.fetch_add(1, Relaxed);
        c.encoded_bytes.fetch_add(bytes as u64, Relaxed);
        log::debug!(sequence = frame.sequence; "aux frame: gain {gain}, {bytes} bytes");
        self.send(OutFrame {
            layer: Layer::Aux,
            sequence: frame.sequence,
            capture_us: frame.capture_us,
            bytes: encoded.bytes,
        })
    }

    /// Two stages on two threads, so a camera with more than one core codes
    /// one frame while the detector front analyses the next: `analysis` runs
    /// the gain-independent front, this thread plans the rate and codes.
    fn run(&self) {
        let encoder = match FeatureEncoder::new(&self.bundle) {
            Ok(e) => e,
            Err(e) => {
                log::error!("encoder: {e}");
                return;
            }
        };
        let aux_encoder = self.human.as_ref().and_then(|h| match AuxEncoder::new(h) {
            Ok(a) => Some((a, &h.manifest)),
            Err(e) => {
                log::error!("aux encoder: {e}");
                None
            }
        });
        // A rendezvous: the analysis thread holds at most one analysed
        // frame until the coder takes it. When the coder is behind, frames
        // pile up (and the oldest are dropped, counted) in the capture
        // queue, not in between.
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        std::thread::scope(|s| {
            let analysis = std::thread::Builder::new()
                .name("analysis".into())
                .spawn_scoped(s, || self.analyse(&encoder, tx));
            if let Err(e) = analysis {
                log::error!("cannot start the analysis thread: {e}");
                return;
            }
            // However the coder stops (the uplink is gone, the source
            // ended, or a panic), release the analysis thread from its wait
            // for frames, or the scope would wait for the next capture.
            let _close = CloseOnDrop(&self.queue);
            self.code(&encoder, aux_encoder.as_ref(), rx);
        });
    }

    /// The first stage: each captured frame's features, in capture order.
    fn analyse(&self, encoder: &FeatureEncoder<'_>, out: SyncSender<Analysed>) {
        while let Some(captured) = self.queue.pop() {
            let frame = RingEntry {
                sequence: captured.sequence,
                capture_us: captured.capture_us,
                // Moved, not copied: the ring shares it.
                image: Arc::new(captured.image),
            };
            let features = encoder.features(&frame.image);
            if out.send(Analysed { frame, features }).is_err() {
                break;
            }
        }
    }

    /// The second stage: each analysed frame, its aux frame if wanted, then
    /// pending `frame:` requests.
    fn code(
        &self,
        encoder: &FeatureEncoder<'_>,
        aux_encoder: Option<&(AuxEncoder<'_>, &HumanManifest)>,
        analysed: Receiver<Analysed>,
    ) {
        for Analysed { frame, features } in analysed {
            let now = Instant::now();
            let target = self.target_kbps(now);
            let Ok(features) = self.machine(encoder, &frame, features, target, now) else {
                break;
            };
            let Some((aux_enc, manifest)) = aux_encoder else {
                continue;
            };
            if let Some(features) = features {
                if let Some(why) = self.aux.encoded(&frame) {
                    if self
                        .aux_frame(aux_enc, manifest, &frame, &features, why, target)
                        .is_err()
                    {
                        break;
                    }
                }
            }
            drop(frame);
            while let Some(old) = self.aux.next_frame_request() {
                let features = match encoder.features(&old.image) {
                    Ok(f) => f,
                    Err(e) => {
                        self.aux.counters.requested.fetch_add(1, Relaxed);
                        self.aux.counters.encode_errors.fetch_add(1, Relaxed);
                        log::error!(sequence = old.sequence; "aux: features failed: {e}");
                        continue;
                    }
                };
                if self
                    .aux_frame(aux_enc, manifest, &old, &features, AuxWhy::Request, target)
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Encoder thread (the coder, which starts the analysis thread): plans each
/// frame's rate, runs the models, hands frames to the uplink.
fn spawn_encoder(ctx: EncoderCtx) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("encoder".into())
        .spawn(move || ctx.run())
}

/// Run the daemon until SIGTERM/SIGINT or the end of a finite source.
pub fn run(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("fchmd-io")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: Config) -> Result<()> {
    let notifier = Notifier::from_env();
    let bundle = Bundle::load(&cfg.bundle, Role::Edge)
        .with_context(|| format!("loading model bundle {}", cfg.bundle.display()))?;
    let ivn = bundle.manifest.ivn.clone();
    let model_id = bundle.manifest.bundle_id.clone();
    log::info!(
        "bundle {} ({}) loaded for the edge",
        bundle.manifest.name,
        model_id
    );

    let spec: SourceSpec = cfg
        .source
        .spec
        .parse()
        .with_context(|| format!("source.spec {:?}", cfg.source.spec))?;
    let opts = CaptureOptions {
        looped: cfg.source.looped,
        width: cfg.source.width,
        height: cfg.source.height,
    };
    let source = open_source(&spec, &opts)?;
    log::info!("source: {}", source.describe());
    let live = matches!(spec, SourceSpec::V4l2(_));
    let fps = f64::from(cfg.source.fps);

    let settings = Settings {
        mode: cfg.rate.mode,
        target_kbps: cfg.rate.target_kbps,
        gain: cfg.rate.gain.clamp(ivn.gain_min, ivn.gain_max),
    };
    let model = RateModel::from_table(
        &ivn.rate_table,
        ivn.gain_min,
        ivn.gain_max,
        pixels_per_frame(&bundle),
    )?;
    let planner = Arc::new(Mutex::new(Planner::new(
        PlannerConfig {
            fps,
            gain_min: ivn.gain_min,
            gain_max: ivn.gain_max,
            hysteresis: crate::rate::HYSTERESIS,
        },
        model,
        settings.planner_mode(),
    )));
    let latency_bound = Duration::from_millis(cfg.rate.latency_bound_ms);
    let controller = Arc::new(Mutex::new(Controller::new(ControllerConfig {
        min_kbps: cfg.rate.min_kbps,
        max_kbps: cfg.rate.max_kbps,
        start_kbps: cfg
            .rate
            .target_kbps
            .clamp(cfg.rate.min_kbps, cfg.rate.max_kbps),
        latency_bound,
    })));
    let settings = Arc::new(Mutex::new(settings));
    let counters = Arc::new(EdgeCounters::default());

    let human = match cfg.aux.bundle() {
        Some(dir) => Some(load_human(dir, &bundle)?),
        None => None,
    };
    let aux = Arc::new(AuxShared::new(
        human.is_some(),
        cfg.aux.ring_frames,
        cfg.aux.budget_share,
        cfg.aux.mode,
    ));
    if human.is_some() {
        lock(&planner).set_aux_share(cfg.aux.budget_share);
    }

    let (spool, recovery) = Spool::open(SpoolConfig {
        dir: cfg.spool.dir.clone(),
        max_bytes: cfg.spool.max_bytes,
        segment_bytes: cfg.spool.segment_bytes,
        sync: if cfg.spool.fsync {
            SyncPolicy::EveryRecord
        } else {
            SyncPolicy::Never
        },
    })
    .with_context(|| format!("opening the spool in {}", cfg.spool.dir.display()))?;
    if recovery.records > 0 || recovery.torn_bytes > 0 {
        log::info!(
            "spool: {} frame(s) ({} bytes) waiting from before; {} torn byte(s) discarded",
            recovery.records,
            recovery.bytes,
            recovery.torn_bytes
        );
    }

    let topics = Topics::new(&cfg.mqtt.topic_prefix, &cfg.device_id);
    let uplink_cfg = UplinkConfig {
        topics,
        session: session(&cfg)?,
        model_id,
        max_in_flight: usize::from(cfg.mqtt.max_in_flight),
        live_queue: (fps * 2.0).ceil().max(2.0) as usize,
        reconnect_min: Duration::from_millis(cfg.mqtt.reconnect_min_ms),
        reconnect_max: Duration::from_millis(cfg.mqtt.reconnect_max_ms),
        stats_interval: Duration::from_secs_f64(cfg.stats.interval_s),
        latency_bound,
        shutdown_grace: Duration::from_secs(2),
    };
    let control = DeviceControl {
        rate: RateControl {
            settings: settings.clone(),
            planner: planner.clone(),
            limits: Limits {
                min_kbps: cfg.rate.min_kbps,
                max_kbps: cfg.rate.max_kbps,
                gain_min: ivn.gain_min,
                gain_max: ivn.gain_max,
            },
        },
        aux: AuxControl {
            shared: aux.clone(),
        },
    };
    let new_stats = || {
        StatsBuilder::new(
            cfg.device_id.clone(),
            counters.clone(),
            planner.clone(),
            controller.clone(),
            settings.clone(),
            aux.clone(),
        )
    };
    let mut stats = new_stats();
    let final_stats = new_stats();
    let uplink = Uplink::new(
        uplink_cfg,
        spool,
        Box::new(control),
        controller.clone(),
        Box::new(move |r| {
            let v = stats.build(r);
            log::debug!("stats {v}");
            serde_json::to_vec(&v).unwrap_or_default()
        }),
    );

    let (out_tx, out_rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = watch::channel(false);
    let uplink_task = tokio::spawn(uplink.run(out_rx, stop_rx));

    let queue = Arc::new(DropOldest::new(cfg.pipeline.queue_frames));
    let stop = Arc::new(AtomicBool::new(false));
    let sequence_base = unix_us() / 1000 * 1000;
    let capture = spawn_capture(
        source,
        live,
        fps,
        sequence_base,
        queue.clone(),
        counters.clone(),
        stop.clone(),
    )?;
    let encoder = spawn_encoder(EncoderCtx {
        bundle,
        human,
        aux,
        fps,
        queue: queue.clone(),
        planner,
        controller,
        settings,
        counters,
        out: out_tx,
    })?;

    notifier.ready();
    notifier.status("running");
    log::info!("fchmd running (device {})", cfg.device_id);
    let watchdog_every = notifier.watchdog_interval();
    let mut last_ping = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut uplink_task = uplink_task;
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
        if uplink_task.is_finished() {
            break "uplink ended";
        }
        if encoder.is_finished() {
            // The source ended (or the encoder failed); the uplink drains
            // what is left once the encoder's sender is gone.
            break "pipeline ended";
        }
        // Ping only from here, and only while the pipeline is alive: a
        // wedged daemon must be restarted by systemd, not kept "healthy".
        if let Some(every) = watchdog_every {
            if last_ping.elapsed() >= every {
                notifier.watchdog();
                last_ping = Instant::now();
            }
        }
    };
    log::info!("stopping ({reason})");
    notifier.stopping();
    stop.store(true, Relaxed);
    queue.close();
    // The encoder finishes its current frame; dropping its sender lets the
    // uplink send or spool everything before it returns.
    // The capture thread may sit in a blocking read (a pipe, a camera);
    // it holds nothing that needs flushing, so it is not waited for.
    drop(capture);
    let _ = tokio::task::spawn_blocking(move || encoder.join()).await;
    let report = match tokio::time::timeout(Duration::from_secs(10), &mut uplink_task).await {
        Ok(r) => r,
        Err(_) => {
            let _ = stop_tx.send(true);
            uplink_task.await
        }
    }
    .context("uplink task")?;
    // Every frame is accounted for: a person (or a test) can check the totals.
    let accounting = final_stats.accounting(&report);
    log::info!("final accounting {accounting}");
    println!("{FINAL_PREFIX}{accounting}");
    log::info!("fchmd stopped");
    Ok(())
}

/// The human-layer bundle for the camera; refused unless it was trained on `machine`.
fn load_human(dir: &Path, machine: &Bundle) -> Result<HumanBundle> {
    let human = HumanBundle::load(dir, Role::Edge).with_context(|| {
        format!(
            "loading the human-layer bundle {} (aux.bundle)",
            dir.display()
        )
    })?;
    check_pairing(&human.manifest, &machine.manifest, dir)?;
    AuxEncoder::new(&human).with_context(|| format!("aux.bundle {}", dir.display()))?;
    log::info!(
        "human-layer bundle {} ({}) loaded for the aux layer",
        human.manifest.name,
        human.manifest.bundle_id
    );
    Ok(human)
}

fn check_pairing(
    human: &HumanManifest,
    machine: &crate::model::manifest::Manifest,
    dir: &Path,
) -> Result<()> {
    if human.machine_id() != machine.id() {
        anyhow::bail!(
            "aux.bundle {}: trained on machine bundle {}, but bundle is {} ({})",
            dir.display(),
            human.machine_bundle_id,
            machine.bundle_id,
            machine.name
        );
    }
    Ok(())
}

/// Check `path` without starting anything (`fchmd --check-config`).
pub fn check(cfg: &Config) -> Result<()> {
    let _: SourceSpec = cfg
        .source
        .spec
        .parse()
        .with_context(|| format!("source.spec {:?}", cfg.source.spec))?;
    let machine = crate::model::manifest::Manifest::load(Path::new(&cfg.bundle))
        .with_context(|| format!("bundle {}", cfg.bundle.display()))?;
    if let Some(dir) = cfg.aux.bundle() {
        let human =
            HumanManifest::load(dir).with_context(|| format!("aux.bundle {}", dir.display()))?;
        check_pairing(&human, &machine, dir)?;
    }
    Ok(())
}
