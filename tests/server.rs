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

/// Both layers of one photo: (machine payload, aux payload).
fn both_layers(
    bundle: &std::path::Path,
    human: &std::path::Path,
    img: &image::RgbImage,
    seq: u64,
) -> (Vec<u8>, Vec<u8>) {
    use fchm::codec::{FeatureEncoder, FrameMeta};
    use fchm::model::{Bundle, Role};
    let b = Bundle::load(bundle, Role::Edge).unwrap();
    let h = fchm::human::HumanBundle::load(human, Role::Edge).unwrap();
    let enc = FeatureEncoder::new(&b).unwrap();
    let aux = fchm::human::AuxEncoder::new(&h).unwrap();
    let feats = enc.features(img).unwrap();
    let meta = FrameMeta {
        sequence: seq,
        timestamp_us: 1,
    };
    let machine = enc.encode(&feats, 8.0, meta).unwrap().bytes;
    let ya = aux.analyse(img, &feats).unwrap();
    let a = aux
        .encode(&ya, &feats, h.manifest.aux.gain_min * 4.0, meta)
        .unwrap()
        .bytes;
    (machine, a)
}

#[test]
fn human_views_render_on_request_and_a_rule_asks_for_them() {
    let _g = serial();
    let bundle = common::bundle_dir();
    let human = common::human_dir();
    let broker = Mosquitto::start();
    let hb = human.to_str().unwrap();
    let server = Server::start(
        broker.port,
        &bundle,
        "human",
        &[
            "--workers",
            "1",
            "--human-bundle",
            hb,
            "--aux-on",
            "person",
            "--aux-interval-s",
            "0",
        ],
    );
    let dets = Sub::start(broker.port, "fchm/cam-h/detections", &[]);
    let asks = Sub::start(broker.port, "fchm/cam-h/set/aux", &[]);
    std::thread::sleep(Duration::from_millis(300));

    let photo = image::open(common::photo("person.jpg")).unwrap().to_rgb8();
    let (machine, aux) = both_layers(&bundle, &human, &photo, 5);
    publish_bytes(broker.port, "fchm/cam-h/feat", &machine);
    let got = collect(&dets, 1, Duration::from_secs(120));
    assert_eq!(got.len(), 1, "{}", server.log());
    assert!(
        got[0].detections.iter().any(|d| d.class == "person"),
        "{:?}",
        got[0].detections
    );

    // The rule asked the camera for this frame's aux layer.
    let ask = asks
        .next(Duration::from_secs(10))
        .expect("a set/aux request from the rule");
    assert_eq!(String::from_utf8_lossy(&ask.payload), "frame:5");
    assert_eq!(
        server.metric("fchm_server_aux_requests_total{reason=\"rule\"}"),
        1.0
    );

    let h = server.http;
    let (status, _, body) = get(h, "/api/devices/cam-h/frames/5.jpg?mode=fast");
    assert_eq!(status, 404, "no aux yet");
    assert!(
        String::from_utf8_lossy(&body).contains("no aux frame 5"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // An aux frame from the wrong layer is refused and counted; the right one is kept.
    publish_bytes(broker.port, "fchm/cam-h/aux", &machine);
    publish_bytes(broker.port, "fchm/cam-h/aux", &aux);
    let t = Instant::now();
    while server.metric("fchm_server_aux_frames_total{outcome=\"kept\"}") < 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "aux frame never kept:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.metric("fchm_server_aux_frames_total{outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(
        get_json(h, "/api/devices/cam-h")["aux_sequences"],
        serde_json::json!([5])
    );

    // The fast view: the camera's size, and a picture of the photo, not a grey field.
    let (status, headers, body) = get(h, "/api/devices/cam-h/frames/5.jpg?mode=fast");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "x-fchm-view" && v == "fast"));
    let fast = image::load_from_memory(&body).unwrap().to_rgb8();
    assert_eq!(fast.dimensions(), photo.dimensions());
    let mean = image::RgbImage::from_pixel(photo.width(), photo.height(), {
        let n = photo.pixels().len() as u64;
        let s = photo.pixels().fold([0u64; 3], |a, p| {
            [a[0] + p[0] as u64, a[1] + p[1] as u64, a[2] + p[2] as u64]
        });
        image::Rgb(s.map(|v| (v / n) as u8))
    });
    let (p_fast, p_flat) = (
        fchm::eval::quality::psnr(&photo, &fast),
        fchm::eval::quality::psnr(&photo, &mean),
    );
    assert!(
        p_fast > p_flat + 5.0,
        "fast view PSNR {p_fast:.2} dB vs {p_flat:.2} dB for a flat picture"
    );

    // The diffusion view: same size, seeded, not the fast picture.
    let (status, headers, body) = get(
        h,
        "/api/devices/cam-h/frames/5.jpg?mode=diffusion&steps=2&seed=3",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "x-fchm-view" && v == "diffusion"));
    let diff = image::load_from_memory(&body).unwrap().to_rgb8();
    assert_eq!(diff.dimensions(), photo.dimensions());
    assert_ne!(diff.as_raw(), fast.as_raw());
    assert_eq!(
        server.metric("fchm_server_human_views_total{mode=\"diffusion\"}"),
        1.0
    );

    // Bad requests say what is wrong.
    for (path, code) in [
        ("/api/devices/cam-h/frames/5.jpg?mode=slow", 400),
        (
            "/api/devices/cam-h/frames/5.jpg?mode=diffusion&steps=0",
            400,
        ),
        ("/api/devices/cam-h/frames/6.jpg", 404),
        ("/api/devices/cam-h/frames/five.jpg", 404),
        ("/api/devices/nobody/frames/5.jpg", 404),
    ] {
        let (status, _, body) = get(h, path);
        assert_eq!(status, code, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("error"), "{path}");
    }
    promtool_check(&String::from_utf8_lossy(&get(h, "/metrics").2));
}
