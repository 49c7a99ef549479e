//! `fchm bench pipeline`: the daemon's end-to-end throughput (capture →
//! encode → publish, against the embedded broker) next to bare inference of
//! the same graphs, and its peak resident memory.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

use super::rate::{spawn_daemon, stop_daemon};
use crate::model::bundle::{Bundle, Role};

#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineReport {
    /// Median ms per frame of front + vfcn_enc + vfcn_hyper_enc in tract,
    /// timed before the daemon runs and again after.
    pub bare_ms_before: f64,
    pub bare_ms_after: f64,
    /// The faster of the two, which every ratio divides by: on a shared
    /// machine a slow spell during one timing would otherwise flatter the
    /// daemon.
    pub bare_ms: f64,
    pub bare_fps: f64,
    /// The daemon with `pipeline.lean_memory` on (the default), then off.
    pub runs: Vec<DaemonRun>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonRun {
    pub lean_memory: bool,
    /// Frames encoded and acknowledged per second by the running daemon.
    pub encoded_fps: f64,
    pub sent_fps: f64,
    /// VmHWM of the daemon just before it was stopped.
    pub peak_rss_mb: f64,
}

/// The source's frame rate over bare inference's. The daemon overlaps the
/// front of one frame with the coding of the previous one, so on two cores
/// or more it can beat one-thread bare inference: the source must not be
/// what limits it. Frames it cannot take are dropped (and counted) at the
/// capture queue. It multiplies the first bare timing, the only one there
/// is when the daemon starts.
const OFFERED: f64 = 2.0;

/// The peak resident memory (VmHWM) of process `pid` so far, in MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn run(
    fchmd: &Path,
    bundle_dir: &Path,
    work: &Path,
    seconds: f64,
    runs: usize,
) -> Result<PipelineReport> {
    let bare_ms_before = time_bare(bundle_dir, runs)?;

    let broker = crate::transport::broker::start("127.0.0.1:0".parse()?, 16 << 20)?;
    let mut o = MqttOptions::new("bench-pipeline-observer", "127.0.0.1", broker.addr.port());
    o.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut events) = AsyncClient::new(o, 16);
    client.subscribe("fchm/+/stats", QoS::AtMostOnce).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            if let Event::Incoming(Incoming::Publish(p)) = ev {
                if let Ok(v) = serde_json::from_slice(&p.payload) {
                    let _ = tx.send(v);
                }
            }
        }
    });

    let mut daemons = Vec::new();
    for lean_memory in [true, false] {
        let (encoded_fps, sent_fps, peak_rss_mb) = run_daemon(
            fchmd,
            bundle_dir,
            &work.join(format!("lean-{lean_memory}")),
            broker.addr,
            1000.0 / bare_ms_before * OFFERED,
            lean_memory,
            seconds,
            &mut rx,
        )
        .await?;
        daemons.push(DaemonRun {
            lean_memory,
            encoded_fps,
            sent_fps,
            peak_rss_mb,
        });
    }
    let bare_ms_after = time_bare(bundle_dir, runs)?;
    let bare_ms = bare_ms_before.min(bare_ms_after);
    Ok(PipelineReport {
        bare_ms_before,
        bare_ms_after,
        bare_ms,
        bare_fps: 1000.0 / bare_ms,
        runs: daemons,
    })
}

/// Median ms per frame of the edge graphs in tract, one after the other on
/// this thread.
fn time_bare(bundle_dir: &Path, runs: usize) -> Result<f64> {
    let bundle = Bundle::load(bundle_dir, Role::Edge)?;
    let g = &bundle.graphs;
    let mut ms = 0.0;
    for (key, graph) in [
        ("front", &g.front),
        ("vfcn_enc", &g.vfcn_enc),
        ("vfcn_hyper_enc", &g.vfcn_hyper_enc),
    ] {
        ms += super::time_graph(bundle.require(graph, key)?, runs)?;
    }
    Ok(ms)
}

/// Run the daemon on the test scene at `fps` against `broker`; its mean
/// encoded and sent frames per second over `seconds`, and its peak RSS in MB.
#[allow(clippy::too_many_arguments)]
async fn run_daemon(
    fchmd: &Path,
    bundle_dir: &Path,
    work: &Path,
    broker: std::net::SocketAddr,
    fps: f64,
    lean_memory: bool,
    seconds: f64,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> Result<(f64, f64, f64)> {
    std::fs::create_dir_all(work)?;
    let config = work.join("fchmd.toml");
    let fps = fps.clamp(1.0, 120.0);
    // Each run its own device: stats the previous daemon sent while it
    // stopped may still be on their way.
    let device = format!("bench-pipeline-lean-{lean_memory}");
    std::fs::write(
        &config,
        format!(
            "device_id = \"{device}\"\nbundle = \"{}\"\n[source]\nspec = \"test-scene\"\nfps = {fps:.2}\n\
             [mqtt]\nbroker = \"mqtt://{}\"\n[rate]\nmode = \"gain\"\ngain = 8.0\n\
             [spool]\ndir = \"{}\"\nfsync = false\n[stats]\ninterval_s = 2.0\n[log]\ntarget = \"stderr\"\nlevel = \"warn\"\n\
             [pipeline]\nlean_memory = {lean_memory}\n",
            bundle_dir.display(),
            broker,
            work.join("spool").display()
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let child = spawn_daemon(fchmd, &config, &work.join("fchmd.log"))?;
    let pid = child.id();
    // Skip intervals until frames flow (models load, session comes up), then measure.
    let mut samples = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds + 120.0);
    let mut flowing = 0;
    while tokio::time::Instant::now() < deadline && samples.len() < (seconds / 2.0).ceil() as usize
    {
        let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await else {
            continue;
        };
        if v["device"] != device.as_str() {
            continue;
        }
        if v["fps"]["encoded"].as_f64().unwrap_or(0.0) > 0.0 {
            flowing += 1;
            // The first flowing interval includes start-up.
            if flowing > 1 {
                samples.push(v);
            }
        }
    }
    let rss = peak_rss_mb(pid).unwrap_or(f64::NAN);
    let _ = tokio::task::spawn_blocking(move || stop_daemon(child)).await?;
    anyhow::ensure!(
        !samples.is_empty(),
        "the daemon encoded nothing (log: {})",
        work.join("fchmd.log").display()
    );
    let mean = |k: &str| {
        samples
            .iter()
            .filter_map(|v| v["fps"][k].as_f64())
            .sum::<f64>()
            / samples.len() as f64
    };
    Ok((mean("encoded"), mean("sent"), rss))
}
