//! fchmd against a real Mosquitto, watched by `mosquitto_sub`: frames on
//! `feat` decode with `fchm decode`, availability is retained and follows
//! the daemon's life, `set/` commands change state and bitrate, and a 30 s
//! broker outage loses no frame.
//!
//! The tests share two cores with the daemon and the broker, so they take
//! turns.

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::daemon::{mosquitto_pub, stats_of, Daemon, Mosquitto, Sub};
use fchm::core::container::FrameRef;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn frames_arrive_on_feat_decode_and_availability_is_retained() {
    let _turn = serial();
    let bundle = common::bundle_dir();
    let broker = Mosquitto::start();
    let mut daemon = Daemon::start(
        "cam-a",
        &broker.url(),
        &bundle,
        "[source]\nspec = \"test-scene\"\nfps = 2.0\n[rate]\nmode = \"gain\"\ngain = 8.0\n[stats]\ninterval_s = 1.0",
    );
    let feat = Sub::start(broker.port, "fchm/cam-a/feat", &[]);
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while frames.len() < 3 && Instant::now() < deadline {
        if let Some(m) = feat.next(Duration::from_secs(5)) {
            frames.push(m.payload);
        }
    }
    assert_eq!(
        frames.len(),
        3,
        "fewer than 3 frames on feat; daemon log:\n{}",
        daemon.log()
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let mut last_seq = None;
    for (i, bytes) in frames.iter().enumerate() {
        let f = FrameRef::parse(bytes).expect("a valid frame");
        assert_eq!(
            hex::encode(f.header.bundle_id.0),
            manifest["bundle_id"].as_str().unwrap()
        );
        assert!(
            last_seq < Some(f.header.sequence),
            "sequence numbers increase"
        );
        last_seq = Some(f.header.sequence);
        let path = daemon.dir.path().join(format!("frame{i}.fchm"));
        std::fs::write(&path, bytes).unwrap();
        let dets = daemon.dir.path().join(format!("frame{i}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_fchm"))
            .args(["decode", "--bundle"])
            .arg(&bundle)
            .arg("--detections")
            .arg(&dets)
            .arg(&path)
            .output()
            .expect("run fchm decode");
        assert!(
            out.status.success(),
            "fchm decode failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&dets).unwrap()).unwrap();
        assert!(v.is_array() || v.is_object(), "detections JSON: {v}");
    }

    // Retained: a subscriber that arrives late still gets them.
    let avail = Sub::start(broker.port, "fchm/cam-a/available", &["-C", "1"]);
    let m = avail.next(Duration::from_secs(10)).expect("available");
    assert!(m.retained, "available must be retained");
    assert_eq!(m.payload, b"online");
    let model = Sub::start(broker.port, "fchm/cam-a/model", &["-C", "1"]);
    let m = model.next(Duration::from_secs(10)).expect("model");
    assert!(m.retained);
    assert_eq!(
        String::from_utf8_lossy(&m.payload),
        manifest["bundle_id"].as_str().unwrap()
    );

    // kill -9: the broker publishes the last will, retained.
    daemon.kill9();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let avail = Sub::start(broker.port, "fchm/cam-a/available", &["-C", "1"]);
        if let Some(m) = avail.next(Duration::from_secs(5)) {
            assert!(m.retained);
            last = m.payload;
            if last == b"offline" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(String::from_utf8_lossy(&last), "offline");
}

#[test]
fn set_target_kbps_changes_state_and_the_sent_bitrate() {
    let _turn = serial();
    let bundle = common::bundle_dir();
    let broker = Mosquitto::start();
    let mut daemon = Daemon::start(
        "cam-b",
        &broker.url(),
        &bundle,
        "[source]\nspec = \"test-scene\"\nfps = 2.0\n[rate]\nmode = \"kbps\"\ntarget_kbps = 1500.0\nmin_kbps = 50.0\n[stats]\ninterval_s = 1.0",
    );
    let stats = Sub::start(broker.port, "fchm/cam-b/stats", &[]);
    // Wait for frames to flow, then measure.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(180) {
        let s = stats_of(&stats.drain(Duration::from_secs(1)));
        if s.iter().any(|v| v["totals"]["acked"].as_u64() > Some(2)) {
            break;
        }
    }
    let before = stats_of(&stats.drain(Duration::from_secs(8)));
    let state = Sub::start(broker.port, "fchm/cam-b/state/target_kbps", &[]);
    let m = state
        .next(Duration::from_secs(10))
        .expect("retained state/target_kbps");
    assert!(m.retained);
    assert_eq!(String::from_utf8_lossy(&m.payload), "1500");

    mosquitto_pub(broker.port, "fchm/cam-b/set/target_kbps", "300");
    let m = state
        .next(Duration::from_secs(10))
        .expect("state/target_kbps after set");
    assert_eq!(String::from_utf8_lossy(&m.payload), "300");
    stats.drain(Duration::from_secs(3));
    let after = stats_of(&stats.drain(Duration::from_secs(8)));

    let mean = |v: &[serde_json::Value]| {
        let xs: Vec<f64> = v
            .iter()
            .filter_map(|s| s["encoded_kbps"].as_f64())
            .collect();
        xs.iter().sum::<f64>() / xs.len().max(1) as f64
    };
    let (b, a) = (mean(&before), mean(&after));
    println!("encoded kbit/s at target 1500: {b:.0}; at target 300: {a:.0}");
    assert!(
        b > 600.0,
        "at 1500 kbit/s the daemon sent only {b:.0}; log:\n{}",
        daemon.log()
    );
    assert!(
        a < 0.5 * b && a <= 300.0 * 1.3,
        "after set/target_kbps 300: {a:.0} kbit/s (before {b:.0})"
    );

    // A bad command is refused and changes nothing.
    mosquitto_pub(broker.port, "fchm/cam-b/set/target_kbps", "lots");
    assert!(
        state.next(Duration::from_secs(3)).is_none(),
        "a refused command must not change state"
    );
    let acc = daemon.stop();
    println!("final accounting: {acc}");
}

/// Stop the broker for 30 s: every frame captured meanwhile arrives, in order.
#[test]
fn a_broker_outage_loses_no_frame() {
    let _turn = serial();
    let bundle = common::bundle_dir();
    let mut broker = Mosquitto::start();
    // A persistent session (-c, fixed id) so the broker queues for us across its restart.
    let sub_args = ["-c", "-i", "outage-observer"];
    let feat = Sub::start(broker.port, "fchm/cam-c/feat", &sub_args);
    std::thread::sleep(Duration::from_millis(500));
    let mut daemon = Daemon::start(
        "cam-c",
        &broker.url(),
        &bundle,
        "[source]\nspec = \"test-scene\"\nfps = 2.0\n[rate]\nmode = \"gain\"\ngain = 2.0\n[stats]\ninterval_s = 1.0\n[pipeline]\nqueue_frames = 8",
    );
    let mut seqs = Vec::new();
    let t = Instant::now();
    while seqs.len() < 4 && t.elapsed() < Duration::from_secs(180) {
        if let Some(m) = feat.next(Duration::from_secs(5)) {
            seqs.push(FrameRef::parse(&m.payload).expect("frame").header.sequence);
        }
    }
    assert!(
        seqs.len() >= 4,
        "no frames before the outage; log:\n{}",
        daemon.log()
    );
    seqs.extend(
        feat.drain(Duration::from_millis(200))
            .iter()
            .map(|m| FrameRef::parse(&m.payload).unwrap().header.sequence),
    );

    broker.stop();
    // Frames the observer acknowledged after the last drain, while the
    // broker was stopping, are still in its pipe: read them before it goes,
    // or they would look lost (the broker has no reason to send them again).
    seqs.extend(
        feat.drain(Duration::from_secs(1))
            .iter()
            .map(|m| FrameRef::parse(&m.payload).unwrap().header.sequence),
    );
    drop(feat);
    std::thread::sleep(Duration::from_secs(30));
    assert!(
        daemon.running(),
        "fchmd exited during the outage:\n{}",
        daemon.log()
    );
    broker.resume();
    let feat = Sub::start(broker.port, "fchm/cam-c/feat", &sub_args);
    // Drain the backlog (about 60 frames at 2 fps) and a little more.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let got = feat.drain(Duration::from_secs(2));
        seqs.extend(
            got.iter()
                .map(|m| FrameRef::parse(&m.payload).unwrap().header.sequence),
        );
        if daemon.log().contains("spool drained") && got.is_empty() {
            break;
        }
    }
    assert!(
        daemon.running(),
        "fchmd exited after the outage:\n{}",
        daemon.log()
    );
    let acc = daemon.stop();
    seqs.extend(
        feat.drain(Duration::from_secs(2))
            .iter()
            .map(|m| FrameRef::parse(&m.payload).unwrap().header.sequence),
    );
    println!("final accounting: {acc}");

    // At-least-once: drop repeats, then the order must be strictly increasing and gap-free.
    let mut seen = std::collections::BTreeSet::new();
    let firsts: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "frames out of order: {firsts:?}"
    );
    let (lo, hi) = (firsts[0], *firsts.last().unwrap());
    let missing: Vec<u64> = (lo..=hi).filter(|s| !seen.contains(s)).collect();
    let dropped = &acc["dropped"];
    let drops: u64 = [
        "capture_queue",
        "rate_skip",
        "encode_error",
        "congestion",
        "spool_full",
        "spool_error",
    ]
    .iter()
    .map(|k| dropped[k].as_u64().unwrap_or(0))
    .sum();
    assert_eq!(drops, 0, "frames dropped: {dropped}");
    assert!(
        missing.is_empty(),
        "{} frame(s) missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        hi - lo >= 60,
        "the run should span the 30 s outage at 2 fps: {} frames",
        hi - lo + 1
    );
    assert!(acc["reconnects"].as_u64() >= Some(1) || daemon_log_mentions_reconnect(&daemon));
}

fn daemon_log_mentions_reconnect(d: &Daemon) -> bool {
    d.log().contains("connection lost")
}
