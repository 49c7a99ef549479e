//! fchm-server against a real Mosquitto: load split across instances on a
//! shared subscription, detections equal to `fchm decode`, malformed
//! payloads refused and counted while good frames keep flowing, the HTTP
//! API, and `/metrics` checked by `promtool`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::daemon::{Mosquitto, Sub};
use common::server::{get, get_json, post, publish_bytes, scene_frames, Server};
use fchm::core::container::{BundleId, Frame, SubstreamKind};
use fchm::model::LabelledBox;
use fchm::server::store::FrameRecord;

// Each test runs brokers and decoders; one at a time keeps them off each
// other's cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Detections messages until `n` have arrived or `timeout` passes.
fn collect(sub: &Sub, n: usize, timeout: Duration) -> Vec<FrameRecord> {
    let end = Instant::now() + timeout;
    let mut v = Vec::new();
    while v.len() < n {
        let Some(m) = sub.next(end.saturating_duration_since(Instant::now())) else {
            break;
        };
        v.push(serde_json::from_slice(&m.payload).expect("detections JSON"));
    }
    v
}

fn sorted_sequences(records: &[FrameRecord]) -> Vec<u64> {
    let mut v: Vec<u64> = records.iter().map(|r| r.sequence).collect();
    v.sort_unstable();
    v
}

fn by_server(records: &[FrameRecord]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in records {
        *m.entry(r.server.clone()).or_default() += 1;
    }
    m
}

#[test]
fn two_instances_split_the_frames_and_one_survives_the_other() {
    let _g = serial();
    let bundle = common::bundle_dir();
    let broker = Mosquitto::start();
    let mut a = Server::start(broker.port, &bundle, "a", &["--workers", "1"]);
    let b = Server::start(broker.port, &bundle, "b", &["--workers", "1"]);
    let sub = Sub::start(broker.port, "fchm/+/detections", &[]);
    std::thread::sleep(Duration::from_millis(300));

    let frames = scene_frames(&bundle, 1000, 18);
    let (first, second) = frames.split_at(12);
    for (_, f) in first {
        publish_bytes(broker.port, "fchm/cam-s/feat", f);
    }
    let got = collect(&sub, first.len(), Duration::from_secs(180));
    let seqs = sorted_sequences(&got);
    let want: Vec<u64> = first.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs, want,
        "every frame decoded exactly once across the two"
    );
    let split = by_server(&got);
    assert!(
        split.get("a").copied().unwrap_or(0) >= 2 && split.get("b").copied().unwrap_or(0) >= 2,
        "load split between the instances: {split:?}"
    );
    // Nothing more arrives late (no second decode of any frame).
    assert!(collect(&sub, 1, Duration::from_secs(3)).is_empty());
    let decoded = |s: &Server| s.metric("fchm_server_frames_decoded_total{device=\"cam-s\"}");
    assert_eq!(decoded(&a) + decoded(&b), first.len() as f64);

    a.kill9();
    for (_, f) in second {
        publish_bytes(broker.port, "fchm/cam-s/feat", f);
    }
    let got = collect(&sub, second.len(), Duration::from_secs(180));
    let seqs = sorted_sequences(&got);
    let want: Vec<u64> = second.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        want,
        "b serves every frame after a is killed:\n{}",
        b.log()
    );
    assert_eq!(by_server(&got).keys().collect::<Vec<_>>(), vec!["b"]);
}

/// Patch a frame and make it valid again, so only the patched field is wrong.
fn reframed(payload: &[u8], f: impl FnOnce(&mut Frame)) -> Vec<u8> {
    let mut frame = Frame::parse(payload).expect("good frame");
    f(&mut frame);
    frame.encode().expect("still a valid container")
}

#[test]
fn malformed_payloads_are_refused_counted_and_good_frames_keep_flowing() {
    let _g = serial();
    let bundle = common::bundle_dir();
    let broker = Mosquitto::start();
    let server = Server::start(broker.port, &bundle, "m", &["--workers", "1"]);
    let sub = Sub::start(broker.port, "fchm/+/detections", &[]);
    std::thread::sleep(Duration::from_millis(300));

    let frames = scene_frames(&bundle, 1, 5);
    let good = |i: usize| frames[i].1.clone();
    let truncated = good(1)[..good(1).len() / 2].to_vec();
    let mut bad_crc = good(1);
    let last = bad_crc.len() - 10;
    bad_crc[last] ^= 0x40;
    let wrong_bundle = reframed(&good(2), |f| f.header.bundle_id = BundleId([0xAB; 16]));
    // Valid container, but a y grid twice the bundle's size each way.
    let oversize = reframed(&good(3), |f| {
        let y = f
            .substreams
            .iter_mut()
            .find(|s| s.kind == SubstreamKind::Y)
            .unwrap();
        y.shape = fchm::core::container::Shape::new(
            y.shape.channels,
            y.shape.height * 2,
            y.shape.width * 2,
        );
    });
    let random: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();

    let topic = "fchm/cam-m/feat";
    publish_bytes(broker.port, topic, &good(0));
    for bad in [&truncated, &bad_crc, &wrong_bundle, &oversize, &random] {
        publish_bytes(broker.port, topic, bad);
    }
    publish_bytes(broker.port, "fchm/cam-m/feat", &good(4));
    // The same good frame again: a redelivery, skipped, not decoded twice.
    publish_bytes(broker.port, "fchm/cam-m/feat", &good(4));

    let got = collect(&sub, 2, Duration::from_secs(120));
    let seqs: Vec<u64> = got.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, vec![frames[0].0, frames[4].0], "{}", server.log());
    // Outcomes are counted after the detections go out: wait for each.
    let expect = |series: &str, want: f64, what: &str| {
        let t = Instant::now();
        while server.metric(series) != want && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(server.metric(series), want, "{series}: {what}");
    };
    let refused = |cause: &str| format!("fchm_server_frames_refused_total{{cause=\"{cause}\"}}");
    expect(
        &refused("malformed"),
        3.0,
        "truncated, bad CRC, random bytes",
    );
    expect(&refused("unknown_bundle"), 1.0, "the wrong bundle");
    expect(&refused("shape"), 1.0, "oversize dimensions");
    expect(
        "fchm_server_frames_duplicate_total",
        1.0,
        "the repeated frame",
    );
    expect(
        "fchm_server_frames_decoded_total{device=\"cam-m\"}",
        2.0,
        "the good frames",
    );
    let log = server.log();
    assert!(
        log.contains("cam-m") && log.contains("abababab"),
        "the wrong-bundle refusal names the device and the bundle:\n{log}"
    );
    assert!(collect(&sub, 1, Duration::from_secs(2)).is_empty());
}

#[test]
fn detections_equal_fchm_decode_and_the_api_serves_them() {
    let _g = serial();
    let bundle = common::bundle_dir();
    let broker = Mosquitto::start();
    let server = Server::start(broker.port, &bundle, "api", &["--workers", "1"]);
    let sub = Sub::start(broker.port, "fchm/cam-d/detections", &[]);
    let set_sub = Sub::start(broker.port, "fchm/cam-d/set/#", &[]);
    std::thread::sleep(Duration::from_millis(300));

    // Encode a known scene with the offline tool, decode it with the offline tool.
    let dir = tempfile::tempdir().unwrap();
    let frame = dir.path().join("f.fchm");
    let dets = dir.path().join("d.json");
    let fchm = env!("CARGO_BIN_EXE_fchm");
    let scene = common::repo_root().join("assets/test-scene/frame-010.jpg");
    common::run_ok({
        let mut c = Command::new(fchm);
        c.arg("encode").arg("--bundle").arg(&bundle);
        c.args(["--bpp", "0.3", "--sequence", "77"]).arg(&scene);
        c.arg("-o").arg(&frame);
        c
    });
    common::run_ok({
        let mut c = Command::new(fchm);
        c.arg("decode").arg(&frame).arg("--bundle").arg(&bundle);
        c.arg("--detections").arg(&dets);
        c
    });
    let offline: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dets).unwrap()).unwrap();
    let offline_dets: Vec<LabelledBox> =
        serde_json::from_value(offline["detections"].clone()).unwrap();
    assert!(!offline_dets.is_empty(), "the scene has objects: {offline}");

    // A retained availability so the API knows the device is online.
    common::daemon::mosquitto_pub(broker.port, "fchm/cam-d/available", "online");
    publish_bytes(
        broker.port,
        "fchm/cam-d/feat",
        &std::fs::read(&frame).unwrap(),
    );
    let got = collect(&sub, 1, Duration::from_secs(120));
    assert_eq!(got.len(), 1, "{}", server.log());
    let rec = &got[0];
    assert_eq!(rec.sequence, 77);
    assert_same_detections(&rec.detections, &offline_dets);

    // The API serves the same record, the picture, and relays commands.
    let h = server.http;
    let devices = get_json(h, "/api/devices");
    assert_eq!(devices[0]["id"], "cam-d");
    assert_eq!(devices[0]["online"], true);
    let detail = get_json(h, "/api/devices/cam-d");
    assert_eq!(detail["latest"]["sequence"], 77);
    let since = get_json(h, "/api/devices/cam-d/detections?since=0");
    let api_dets: Vec<LabelledBox> =
        serde_json::from_value(since["frames"][0]["detections"].clone()).unwrap();
    assert_eq!(api_dets, rec.detections);
    let none = get_json(h, "/api/devices/cam-d/detections?since=77");
    assert_eq!(since["frames"].as_array().unwrap().len(), 1);
    assert!(none["frames"].as_array().unwrap().is_empty());
    let (status, headers, jpg) = get(h, "/api/devices/cam-d/latest.jpg");
    assert_eq!(status, 200);
    assert!(headers.contains(&("x-fchm-view".into(), "features".into())));
    let img = image::load_from_memory(&jpg).expect("a JPEG");
    let (w, hgt) = (rec.width as f64, rec.height as f64);
    let aspect = |a: f64, b: f64| a / b;
    assert!((aspect(img.width() as f64, img.height() as f64) - aspect(w, hgt)).abs() < 0.02);
    assert_eq!(get(h, "/api/devices/nobody").0, 404);
    assert_eq!(get(h, "/api/devices/nobody/latest.jpg").0, 404);

    let (status, _, body) = post(
        h,
        "/api/devices/cam-d/set",
        r#"{"key":"target_kbps","value":"350"}"#,
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let m = set_sub
        .next(Duration::from_secs(10))
        .expect("relayed command");
    assert_eq!(
        (m.topic.as_str(), m.payload.as_slice()),
        ("fchm/cam-d/set/target_kbps", &b"350"[..])
    );
    let (status, _, body) = post(
        h,
        "/api/devices/cam-d/set",
        r#"{"key":"bogus","value":"1"}"#,
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("unknown key"));
    assert_eq!(post(h, "/api/devices/cam-d/set", "not json").0, 400);
    assert_eq!(
        post(
            h,
            "/api/devices/nobody/set",
            r#"{"key":"gain","value":"2"}"#
        )
        .0,
        404
    );

    // /metrics is valid Prometheus text (Debian's promtool).
    let (status, headers, metrics) = get(h, "/metrics");
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/plain; version=0.0.4")));
    let text = String::from_utf8(metrics).unwrap();
    assert!(text.contains("fchm_server_frames_decoded_total{device=\"cam-d\"} 1"));
    assert!(text.contains("fchm_server_decode_seconds_count 1"));
    assert!(text.contains("fchm_server_set_relayed_total{key=\"target_kbps\"} 1"));
    promtool_check(&text);
}

/// With tract on both sides the f32 values are bit for bit the same; with
/// ONNX Runtime on the server (`FCHM_SERVER_BACKEND=ort`) float noise
/// remains, so: same classes in the same order, IoU ≥ 0.99, scores within 1e-3.
fn assert_same_detections(server: &[LabelledBox], offline: &[LabelledBox]) {
    let backend = std::env::var("FCHM_SERVER_BACKEND").unwrap_or_else(|_| "tract".into());
    if backend == "tract" {
        assert_eq!(server, offline, "the server's detections are fchm decode's");
        return;
    }
    assert_eq!(server.len(), offline.len(), "{server:?}\n{offline:?}");
    for (a, b) in server.iter().zip(offline) {
        let as_det = |l: &LabelledBox| fchm::model::Detection {
            x1: l.bbox[0],
            y1: l.bbox[1],
            x2: l.bbox[2],
            y2: l.bbox[3],
            score: l.score,
            class: l.class_id,
        };
        assert_eq!(a.class_id, b.class_id);
        assert!((a.score - b.score).abs() < 1e-3, "{a:?} vs {b:?}");
        assert!(as_det(a).iou(&as_det(b)) >= 0.99, "{a:?} vs {b:?}");
    }
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: apt-get install prometheus (.ci/run installs it)");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
