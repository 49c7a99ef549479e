//! `fchm bench rate` and the link-emulator tests: run a real `fchmd` through
//! the link emulator on a bandwidth schedule and measure how its rate
//! control follows the link.
//!
//! Figures, per schedule step of capacity C:
//! - settle: seconds from the step until the daemon's encoded bitrate (its
//!   1-s `stats` intervals, placed by the daemon's clock, not by when they
//!   got through the link) stays within [`BAND`] × C for the rest of the step;
//! - utilisation: bytes through the bottleneck after settling, over C;
//! - latency: the worst per-interval p95 of capture-to-PUBACK after settling;
//! - accounting: the daemon's final totals on exit, so a frame lost without
//!   a counter shows as a mismatch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

use super::link::{self, LinkConfig, Step};

/// The band around capacity that counts as "settled".
pub const BAND: (f64, f64) = (0.5, 1.1);

#[derive(Debug, Clone)]
pub enum RateSetting {
    Auto,
    FixedKbps(f64),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub steps: Vec<Step>,
    pub delay: Duration,
    pub buffer_bytes: usize,
    pub fps: f64,
    pub rate: RateSetting,
    pub min_kbps: f64,
    pub max_kbps: f64,
    pub latency_bound_ms: u64,
}

impl Scenario {
    /// The issue's schedule: 2 Mbit/s → 400 kbit/s → 4 Mbit/s.
    pub fn standard(step_secs: f64, rate: RateSetting) -> Self {
        Self {
            steps: [2000.0, 400.0, 4000.0]
                .into_iter()
                .map(|kbps| Step {
                    kbps,
                    secs: step_secs,
                })
                .collect(),
            delay: Duration::from_millis(20),
            buffer_bytes: 64 * 1024,
            fps: 3.0,
            rate,
            min_kbps: 100.0,
            max_kbps: 8000.0,
            latency_bound_ms: 500,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub capacity_kbps: f64,
    pub settle_s: Option<f64>,
    pub encoded_kbps: f64,
    pub delivered_kbps: f64,
    pub utilisation: f64,
    pub latency_p95_ms: Option<f64>,
    /// The same over the step's last [`TAIL`] seconds, settled or not.
    pub tail_encoded_kbps: f64,
    pub tail_utilisation: f64,
}

/// The window at the end of each step that `tail_*` figures cover.
pub const TAIL: f64 = 5.0;

/// One `stats` interval, for plots and for seeing how the controller moved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub capacity_kbps: f64,
    pub encoded_kbps: f64,
    pub target_kbps: f64,
    pub gain: f64,
    pub rtt_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub bytes_in_flight: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub steps: Vec<StepReport>,
    pub timeline: Vec<TimelinePoint>,
    /// Distinct frame sequence numbers seen on `feat` by an independent subscriber.
    pub frames_received: u64,
    /// The daemon's last `stats` totals and drops.
    pub last_stats: serde_json::Value,
    /// The daemon's final accounting line (printed on exit).
    pub final_accounting: Option<serde_json::Value>,
    /// Wall-clock time (µs since the Unix epoch) of the schedule's start,
    /// `t_s = 0`: lines of a debug log carry the same clock.
    pub start_unix_us: u64,
    /// Bytes through the bottleneck per 100 ms ([`link::BIN`]) from `t_s = 0`.
    pub delivered_bytes: Vec<u64>,
}

#[derive(Debug, Clone)]
struct Sample {
    /// When the interval ended, from the schedule's start: by the daemon's
    /// own `ts_us`. The stats cross the emulated link behind the frames, so
    /// on arrival they are late by the queue: seconds, just after the 5x
    /// drop. The daemon runs on this host, so its wall clock is this one's;
    /// a clock step during a run would shift the samples against the
    /// link's schedule, which runs on `Instant`.
    at: Duration,
    stats: serde_json::Value,
}

/// Everything needed to start the daemon.
#[derive(Debug, Clone)]
pub struct DaemonSetup {
    pub fchmd: PathBuf,
    pub bundle: PathBuf,
    pub workdir: PathBuf,
    pub device: String,
    /// The daemon's `log.level`; "debug" logs a line per coded and per acked
    /// frame (the trace behind `fchm bench rate --trace`).
    pub log_level: &'static str,
}

fn write_config(setup: &DaemonSetup, sc: &Scenario, broker: SocketAddr) -> Result<PathBuf> {
    let (mode, target) = match sc.rate {
        RateSetting::Auto => ("auto", sc.steps.first().map_or(1000.0, |s| s.kbps) / 2.0),
        RateSetting::FixedKbps(k) => ("kbps", k),
    };
    let text = format!(
        r#"device_id = "{device}"
bundle = "{bundle}"
[source]
spec = "test-scene"
fps = {fps}
[mqtt]
broker = "mqtt://{broker}"
keep_alive_s = 5
reconnect_min_ms = 200
reconnect_max_ms = 2000
[rate]
mode = "{mode}"
target_kbps = {target}
min_kbps = {min}
max_kbps = {max}
latency_bound_ms = {lat}
[spool]
dir = "{spool}"
fsync = false
[stats]
interval_s = 1.0
[log]
target = "stderr"
level = "{level}"
"#,
        device = setup.device,
        bundle = setup.bundle.display(),
        fps = sc.fps,
        min = sc.min_kbps,
        max = sc.max_kbps,
        lat = sc.latency_bound_ms,
        spool = setup.workdir.join("spool").display(),
        level = setup.log_level,
    );
    let path = setup.workdir.join("fchmd.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Start `fchmd` with `config`; stdout is piped (final accounting), stderr logged to a file.
pub fn spawn_daemon(fchmd: &Path, config: &Path, log: &Path) -> Result<Child> {
    let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    Command::new(fchmd)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", fchmd.display()))
}

/// SIGTERM, wait, and return the final accounting line it printed.
pub fn stop_daemon(child: Child) -> Result<Option<serde_json::Value>> {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = child.wait_with_output().context("waiting for fchmd")?;
    Ok(crate::edge::parse_final_accounting(
        &String::from_utf8_lossy(&out.stdout),
    ))
}

fn percent_band(x: f64, c: f64) -> bool {
    x >= BAND.0 * c && x <= BAND.1 * c
}

/// Run `sc` against the broker at `broker` (embedded or Mosquitto).
pub async fn run(setup: &DaemonSetup, sc: &Scenario, broker: SocketAddr) -> Result<RunReport> {
    std::fs::create_dir_all(&setup.workdir)?;
    let link = link::spawn(
        "127.0.0.1:0".parse().expect("literal"),
        broker,
        LinkConfig {
            // Warm-up at the first rate until the daemon is up; the schedule
            // clock restarts then.
            steps: sc.steps.clone(),
            delay: sc.delay,
            buffer_bytes: sc.buffer_bytes,
        },
    )
    .await?;

    // An independent observer, connected to the broker directly.
    let mut o = MqttOptions::new(
        format!("bench-observer-{}", std::process::id()),
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_max_packet_size(16 << 20, 16 << 20)
        .set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(o, 64);
    let prefix = format!("fchm/{}", setup.device);
    client
        .subscribe(format!("{prefix}/stats"), QoS::AtMostOnce)
        .await?;
    client
        .subscribe(format!("{prefix}/feat"), QoS::AtLeastOnce)
        .await?;
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let seqs: Arc<Mutex<std::collections::BTreeSet<u64>>> = Arc::default();
    // The schedule's start, µs since the Unix epoch.
    let clock: Arc<Mutex<Option<u64>>> = Arc::default();
    {
        let (samples, seqs, clock) = (samples.clone(), seqs.clone(), clock.clone());
        let stats_topic = format!("{prefix}/stats");
        tokio::spawn(async move {
            while let Ok(ev) = events.poll().await {
                if let Event::Incoming(Incoming::Publish(p)) = ev {
                    if p.topic == stats_topic {
                        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                            continue;
                        };
                        let Some(start_unix_us) = *clock.lock().expect("clock") else {
                            continue;
                        };
                        let Some(ts) = v["ts_us"].as_u64() else {
                            eprintln!("stats without ts_us ignored: the daemon is too old");
                            continue;
                        };
                        let at = Duration::from_micros(ts.saturating_sub(start_unix_us));
                        samples
                            .lock()
                            .expect("samples")
                            .push(Sample { at, stats: v });
                    } else if let Ok(f) = fchm_codec::container::FrameRef::parse(&p.payload) {
                        seqs.lock().expect("seqs").insert(f.header.sequence);
                    }
                }
            }
        });
    }

    let config = write_config(setup, sc, link.addr)?;
    let child = spawn_daemon(&setup.fchmd, &config, &setup.workdir.join("fchmd.log"))?;
    // Wait for the first acknowledged frame: models loaded, session up.
    let t0 = Instant::now();
    loop {
        if !seqs.lock().expect("seqs").is_empty() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = stop_daemon(child);
            bail!(
                "fchmd sent no frame within 120 s (log: {})",
                setup.workdir.join("fchmd.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = Instant::now();
    let start_unix_us = crate::clock::unix_us();
    link.restart_clock(start);
    *clock.lock().expect("clock") = Some(start_unix_us);
    let total: f64 = sc.steps.iter().map(|s| s.secs).sum();
    tokio::time::sleep(Duration::from_secs_f64(total)).await;

    let final_accounting = tokio::task::spawn_blocking(move || stop_daemon(child)).await??;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut samples = samples.lock().expect("samples").clone();
    samples.sort_by_key(|s| s.at);
    let frames_received = seqs.lock().expect("seqs").len() as u64;
    let last_stats = samples.last().map(|s| s.stats.clone()).unwrap_or_default();

    let mut steps = Vec::new();
    let mut t_begin = 0.0;
    for s in &sc.steps {
        let t_end = t_begin + s.secs;
        // Intervals that ended inside this step (the first one may straddle it).
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|x| x.at.as_secs_f64() > t_begin + 1.0 && x.at.as_secs_f64() <= t_end)
            .collect();
        let enc = |x: &Sample| x.stats["encoded_kbps"].as_f64().unwrap_or(0.0);
        // At a few frames per second a 1-s stats interval holds 2, 3 or 4
        // frames, depending on how the stats clock and the capture clock
        // fall: a ±33 % swing of the plain per-interval bitrate that says
        // nothing about the controller. The band test reads the rate per
        // planned frame instead (skipped frames count as zero bits): the
        // interval's encoded bits over the frames the planner coded or
        // skipped in it, times the capture rate.
        let per_frame = |i: usize| {
            let x = inside[i];
            let interval = x.stats["interval_s"].as_f64().unwrap_or(1.0);
            let skips = |y: &Sample| y.stats["dropped"]["rate_skip"].as_f64().unwrap_or(0.0);
            let skipped = match i.checked_sub(1).map(|j| inside[j]) {
                Some(prev) => skips(x) - skips(prev),
                None => 0.0,
            };
            let planned = x.stats["fps"]["encoded"].as_f64().unwrap_or(0.0) * interval + skipped;
            if planned > 0.0 {
                enc(x) * interval / planned * sc.fps
            } else {
                0.0
            }
        };
        // Settled from the start of the first interval after which every interval is in band.
        let first_settled = (0..inside.len())
            .rposition(|i| !percent_band(per_frame(i), s.kbps))
            .map_or(0, |i| i + 1);
        let settle_at = inside.get(first_settled).map(|x| {
            let interval = x.stats["interval_s"].as_f64().unwrap_or(1.0);
            (x.at.as_secs_f64() - interval).max(t_begin)
        });
        let from = settle_at.unwrap_or(t_begin);
        let settled: Vec<&&Sample> = inside
            .iter()
            .filter(|x| x.at.as_secs_f64() > from + 0.5)
            .collect();
        let encoded_kbps = if settled.is_empty() {
            0.0
        } else {
            settled.iter().map(|x| enc(x)).sum::<f64>() / settled.len() as f64
        };
        let delivered_kbps = link.meter.kbps(
            Duration::from_secs_f64(from),
            Duration::from_secs_f64(t_end),
        );
        let latency_p95_ms = settled
            .iter()
            .filter_map(|x| x.stats["latency_ms"]["p95"].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let tail: Vec<&&Sample> = inside
            .iter()
            .filter(|x| x.at.as_secs_f64() > t_end - TAIL)
            .collect();
        let tail_encoded_kbps = tail.iter().map(|x| enc(x)).sum::<f64>() / tail.len().max(1) as f64;
        let tail_delivered = link.meter.kbps(
            Duration::from_secs_f64(t_end - TAIL),
            Duration::from_secs_f64(t_end),
        );
        steps.push(StepReport {
            tail_encoded_kbps,
            tail_utilisation: tail_delivered / s.kbps,
            capacity_kbps: s.kbps,
            settle_s: settle_at.map(|t| t - t_begin),
            encoded_kbps,
            delivered_kbps,
            utilisation: delivered_kbps / s.kbps,
            latency_p95_ms,
        });
        t_begin = t_end;
    }
    let timeline = samples
        .iter()
        .map(|x| TimelinePoint {
            t_s: x.at.as_secs_f64(),
            capacity_kbps: link.config.kbps_at(x.at),
            encoded_kbps: x.stats["encoded_kbps"].as_f64().unwrap_or(0.0),
            target_kbps: x.stats["target_kbps"].as_f64().unwrap_or(0.0),
            gain: x.stats["gain"].as_f64().unwrap_or(0.0),
            rtt_ms: x.stats["rtt_ms"].as_f64(),
            latency_p95_ms: x.stats["latency_ms"]["p95"].as_f64(),
            bytes_in_flight: x.stats["bytes_in_flight"].as_u64().unwrap_or(0),
        })
        .collect();
    Ok(RunReport {
        steps,
        timeline,
        frames_received,
        last_stats,
        final_accounting,
        start_unix_us,
        delivered_bytes: link.meter.bins(),
    })
}
