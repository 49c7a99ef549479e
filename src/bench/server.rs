//! `fchm bench server`: frames per second decoded per server core, and the
//! scaling from one instance to several on one shared subscription.
//!
//! Each run starts `k` `fchm-server` processes (one decode thread each)
//! against the embedded broker, publishes the same pre-encoded frames as
//! fast as the broker takes them, and times the first publish to the last
//! detections message.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

use crate::codec::{FeatureEncoder, FrameMeta};
use crate::model::{Bundle, Role};

/// `n` machine-layer frames of the bundled test scene with sequence numbers
/// `first..first + n`, coded at the middle of the bundle's gain range.
pub fn scene_frames(bundle: &Bundle, first: u64, n: usize) -> Result<Vec<(u64, Vec<u8>)>> {
    let enc = FeatureEncoder::new(bundle)?;
    let ivn = &bundle.manifest.ivn;
    let gain = (ivn.gain_min + ivn.gain_max) / 2.0;
    (0..n)
        .map(|i| {
            let img = crate::capture::scene_frame(i)?;
            let f = enc.features(&img)?;
            let sequence = first + i as u64;
            let meta = FrameMeta {
                sequence,
                timestamp_us: 1_700_000_000_000_000 + sequence,
            };
            Ok((sequence, enc.encode(&f, gain, meta)?.bytes))
        })
        .collect()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScalingRun {
    pub instances: usize,
    pub frames: usize,
    pub seconds: f64,
    pub fps: f64,
    /// `fps` divided by the decode threads in use (one per instance).
    pub fps_per_core: f64,
    /// Frames decoded by each instance.
    pub split: Vec<u64>,
}

struct Instance {
    child: Child,
    http: std::net::SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every run shares: the server binary, its bundle and backend.
#[derive(Debug, Clone)]
pub struct Setup {
    pub exe: PathBuf,
    pub bundle: PathBuf,
    /// `--backend` of the instances (`tract`, `ort`, …).
    pub backend: String,
}

fn start_instance(setup: &Setup, broker: &str, group: &str, id: &str) -> Result<Instance> {
    let exe = &setup.exe;
    let mut child = Command::new(exe)
        .args(["--broker", broker, "--group", group, "--instance-id", id])
        .args(["--backend", &setup.backend])
        .arg("--bundle")
        .arg(&setup.bundle)
        .args([
            "--http",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let out = child.stdout.take().context("stdout")?;
    let line = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix(crate::server::READY_PREFIX)
                .map(str::to_owned)
        })
        .context("fchm-server exited before it was ready")?;
    let http = line
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("address in the ready line")?;
    let inst = Instance { child, http };
    // Ready for frames once subscribed.
    let t = Instant::now();
    while http_status(inst.http, "/healthz") != Some(200) {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("{id} did not subscribe within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(inst)
}

/// A bare GET: enough for a health probe without an HTTP client dependency.
fn http_status(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Decode `frames` with `instances` servers; time to the last detections.
pub async fn run_once(
    setup: &Setup,
    broker: std::net::SocketAddr,
    frames: &[(u64, Vec<u8>)],
    instances: usize,
) -> Result<ScalingRun> {
    let url = format!("mqtt://{broker}");
    let group = format!("bench-{instances}-{}", std::process::id());
    let servers = (0..instances)
        .map(|i| start_instance(setup, &url, &group, &format!("bench-{i}")))
        .collect::<Result<Vec<_>>>()?;

    let mut o = MqttOptions::new(
        format!("bench-server-{group}"),
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_max_packet_size(16 << 20, 16 << 20).set_inflight(1000);
    let (client, mut events) = AsyncClient::new(o, frames.len() + 16);
    let device = format!("bench-{instances}");
    client
        .subscribe(format!("fchm/{device}/detections"), QoS::AtMostOnce)
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<crate::server::store::FrameRecord>();
    let (suback_tx, suback) = tokio::sync::oneshot::channel();
    let poller = tokio::spawn(async move {
        let mut suback_tx = Some(suback_tx);
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Incoming::SubAck(_)) => {
                    if let Some(t) = suback_tx.take() {
                        let _ = t.send(());
                    }
                }
                Event::Incoming(Incoming::Publish(p)) => {
                    if let Ok(r) = serde_json::from_slice(&p.payload) {
                        let _ = tx.send(r);
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), suback)
        .await
        .context("observer not subscribed")??;

    let t0 = Instant::now();
    for (_, f) in frames {
        client
            .publish(
                format!("fchm/{device}/feat"),
                QoS::AtLeastOnce,
                false,
                f.clone(),
            )
            .await?;
    }
    let mut split = vec![0u64; instances];
    let mut got = 0;
    let limit = Duration::from_secs(60 + 10 * frames.len() as u64);
    while got < frames.len() {
        let r = tokio::time::timeout(limit, rx.recv())
            .await
            .context("timed out waiting for detections")?
            .context("observer stopped")?;
        if let Some(i) = r
            .server
            .strip_prefix("bench-")
            .and_then(|i| i.parse::<usize>().ok())
        {
            split[i.min(instances - 1)] += 1;
        }
        got += 1;
    }
    let seconds = t0.elapsed().as_secs_f64();
    poller.abort();
    drop(servers);
    let fps = frames.len() as f64 / seconds;
    Ok(ScalingRun {
        instances,
        frames: frames.len(),
        seconds,
        fps,
        fps_per_core: fps / instances as f64,
        split,
    })
}

/// Runs with 1..=`max_instances` instances on the same frames.
pub fn run(setup: &Setup, frames: usize, max_instances: usize) -> Result<Vec<ScalingRun>> {
    let bundle = Bundle::load(&setup.bundle, Role::Edge)
        .with_context(|| format!("loading {}", setup.bundle.display()))?;
    eprintln!("encoding {frames} test-scene frames…");
    let frames = scene_frames(&bundle, 1, frames)?;
    drop(bundle);
    let broker = crate::transport::broker::start("127.0.0.1:0".parse()?, 16 << 20)?;
    let rt = tokio::runtime::Runtime::new()?;
    let setup = Setup {
        bundle: std::fs::canonicalize(&setup.bundle)?,
        ..setup.clone()
    };
    (1..=max_instances.max(1))
        .map(|k| {
            eprintln!("{k} instance(s)…");
            rt.block_on(run_once(&setup, broker.addr, &frames, k))
        })
        .collect()
}
