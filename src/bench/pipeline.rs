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
    /// Median ms per frame of front + vfcn_enc + vfcn_hyper_enc in tract.
    pub bare_ms: f64,
    pub bare_fps: f64,
    /// Frames encoded and acknowledged per second by the running daemon.
    pub daemon_encoded_fps: f64,
    pub daemon_sent_fps: f64,
    pub ratio: f64,
    /// VmHWM of the daemon just before it was stopped.
    pub peak_rss_mb: f64,
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
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
    let bundle = Bundle::load(bundle_dir, Role::Edge)?;
    let g = &bundle.graphs;
    let mut bare_ms = 0.0;
    for (key, graph) in [
        ("front", &g.front),
        ("vfcn_enc", &g.vfcn_enc),
        ("vfcn_hyper_enc", &g.vfcn_hyper_enc),
    ] {
        bare_ms += super::time_graph(bundle.require(graph, key)?, runs)?;
    }
    drop(bundle);

    let broker = crate::transport::broker::start("127.0.0.1:0".parse()?, 16 << 20)?;
    let mut o = MqttOptions::new("bench-pipeline-observer", "127.0.0.1", broker.addr.port());
    o.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut events) = AsyncClient::new(o, 16);
    client
        .subscribe("fchm/bench-pipeline/stats", QoS::AtMostOnce)
        .await?;
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

    std::fs::create_dir_all(work)?;
    let config = work.join("fchmd.toml");
    // The source offers a quarter more frames than bare inference could
    // take, so the encoder never waits, without a capture thread spinning
    // far ahead and taking CPU from it.
    let fps = (1000.0 / bare_ms * 1.25).clamp(1.0, 120.0);
    std::fs::write(
        &config,
        format!(
            "device_id = \"bench-pipeline\"\nbundle = \"{}\"\n[source]\nspec = \"test-scene\"\nfps = {fps:.2}\n\
             [mqtt]\nbroker = \"mqtt://{}\"\n[rate]\nmode = \"gain\"\ngain = 8.0\n\
             [spool]\ndir = \"{}\"\nfsync = false\n[stats]\ninterval_s = 2.0\n[log]\ntarget = \"stderr\"\nlevel = \"warn\"\n",
            bundle_dir.display(),
            broker.addr,
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
    let (enc, sent) = (mean("encoded"), mean("sent"));
    let bare_fps = 1000.0 / bare_ms;
    Ok(PipelineReport {
        bare_ms,
        bare_fps,
        daemon_encoded_fps: enc,
        daemon_sent_fps: sent,
        ratio: enc / bare_fps,
        peak_rss_mb: rss,
    })
}
