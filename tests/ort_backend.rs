//! The ONNX Runtime backend against tract: the same frames decode to the same
//! P̂ (up to float noise) and the same detections on both, and a missing or
//! wrong runtime library is an error, never a panic.
//!
//! `cargo test --features ort --test ort_backend`; the bundle is
//! `$FCHM_TEST_BUNDLE` or `models/centernet-vfcn`, the library is found as
//! docs/backends.md says (`ORT_DYLIB_PATH`, else the Python onnxruntime wheel).
#![cfg(feature = "ort")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fchm::codec::{DecodedFrame, FeatureDecoder, FeatureEncoder, FrameMeta};
use fchm::model::runtime::{Graph, ParseBackendError, RuntimeError};
use fchm::model::{Backend, Bundle, Detection, Role};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Debian `darknet`'s detection photos (as in tests/common).
fn photo(name: &str) -> PathBuf {
    let p = Path::new("/usr/share/darknet/data").join(name);
    assert!(
        p.exists(),
        "{} missing: apt-get install darknet",
        p.display()
    );
    p
}

/// The bundle under test, or `None` (with the reason printed) to skip.
fn bundle() -> Option<PathBuf> {
    let dir = std::env::var_os("FCHM_TEST_BUNDLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/centernet-vfcn"));
    let missing: Vec<&str> = ["manifest.json", "vfcn_dec.onnx", "task_back.onnx"]
        .into_iter()
        .filter(|f| !dir.join(f).exists())
        .collect();
    if missing.is_empty() {
        Some(dir)
    } else {
        println!(
            "SKIP: bundle {} lacks {missing:?} (set FCHM_TEST_BUNDLE, or run scripts/setup.sh)",
            dir.display()
        );
        None
    }
}

fn ort_cpu() -> Backend {
    "ort".parse().unwrap()
}

/// Frames from a few photos at low, middle and high rate, coded with tract.
fn encoded_frames(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let edge = Bundle::load(dir, Role::Edge).expect("edge bundle loads in tract");
    let enc = FeatureEncoder::new(&edge).unwrap();
    let ivn = &edge.manifest.ivn;
    let gains = [
        ivn.gain_min,
        (ivn.gain_min * ivn.gain_max).sqrt(),
        ivn.gain_max,
    ];
    ["dog.jpg", "person.jpg", "horses.jpg"]
        .iter()
        .zip(gains)
        .enumerate()
        .map(|(i, (name, gain))| {
            let img = image::open(photo(name)).unwrap().to_rgb8();
            let feats = enc.features(&img).unwrap();
            let meta = FrameMeta {
                sequence: i as u64,
                timestamp_us: 1_000 * i as u64,
            };
            let frame = enc.encode(&feats, gain, meta).unwrap();
            (format!("{name} at gain {gain}"), frame.bytes)
        })
        .collect()
}

/// Every box of `a` has a partner in `b`: same class, IoU >= 0.99, score within 1e-3.
fn assert_same_detections(a: &[Detection], b: &[Detection], what: &str) {
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: detection count\ntract {a:?}\nort {b:?}"
    );
    let mut used = vec![false; b.len()];
    for d in a {
        let partner = b.iter().enumerate().position(|(j, e)| {
            !used[j] && e.class == d.class && d.iou(e) >= 0.99 && (d.score - e.score).abs() <= 1e-3
        });
        match partner {
            Some(j) => used[j] = true,
            None => panic!("{what}: tract box {d:?} has no match among ort's {b:?}"),
        }
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn server_decodes_the_same_on_tract_and_ort() {
    let Some(dir) = bundle() else { return };
    let frames = encoded_frames(&dir);
    let tract = Bundle::load(&dir, Role::Server).expect("server bundle loads in tract");
    let ort = Bundle::load_with(&dir, Role::Server, &ort_cpu()).expect("loads in ONNX Runtime");
    for g in [&ort.graphs.vfcn_dec, &ort.graphs.task_back] {
        assert_eq!(g.as_ref().unwrap().backend(), &ort_cpu());
    }
    let dec_t = FeatureDecoder::new(&tract).unwrap();
    let dec_o = FeatureDecoder::new(&ort).unwrap();
    let mut total_boxes = 0;
    for (what, bytes) in &frames {
        let t: DecodedFrame = dec_t.decode(bytes).expect("tract decodes");
        let o: DecodedFrame = dec_o.decode(bytes).expect("ort decodes");
        // The deterministic half is backend-independent by construction.
        assert_eq!(t.z_symbols, o.z_symbols, "{what}: z symbols");
        assert_eq!(t.y_symbols, o.y_symbols, "{what}: y symbols");
        let scale = t.features.iter().fold(1f32, |m, v| m.max(v.abs()));
        let p_diff = max_abs_diff(&t.features, &o.features);
        let raw_diff = max_abs_diff(&t.raw_detections, &o.raw_detections);
        println!(
            "{what}: P̂ max |tract - ort| = {p_diff:.3e} (max |P̂| = {scale:.3}); \
             raw detections max diff {raw_diff:.3e}; {} boxes",
            t.detections.len()
        );
        assert!(
            p_diff <= 1e-4 * scale,
            "{what}: P̂ differs by {p_diff} (max |P̂| {scale})"
        );
        assert_same_detections(&t.detections, &o.detections, what);
        total_boxes += t.detections.len();
    }
    assert!(
        total_boxes > 0,
        "the photos should give some detections to compare"
    );
}

#[test]
fn unknown_backend_names_are_errors() {
    let e = "onnxruntime".parse::<Backend>().unwrap_err();
    assert!(matches!(e, ParseBackendError::Unknown(_)), "{e}");
    assert!(
        e.to_string().contains("tract, ort, ort-cuda, ort-tensorrt"),
        "{e}"
    );
    for name in Backend::NAMES {
        let b: Backend = name.parse().expect(name);
        assert_eq!(b.to_string(), name);
    }
}

/// Run `test` of this binary in a child process with `ORT_DYLIB_PATH=dylib`
/// (the library loads once per process, so a bad path needs a fresh one).
fn child_with_dylib(test: &str, dylib: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ORT_DYLIB_PATH", dylib)
        .env("FCHM_ORT_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {test} failed:\n{text}");
    text
}

#[test]
fn bad_ort_dylib_path_is_an_error_not_a_panic() {
    let Some(dir) = bundle() else { return };
    // A path with no file, and a file that is no shared library.
    for dylib in [
        PathBuf::from("/nonexistent/libonnxruntime.so.1"),
        dir.join("vfcn_dec.onnx"),
    ] {
        let out = child_with_dylib("child_load_with_bad_dylib", &dylib);
        assert!(out.contains("CHILD-OK"), "{out}");
    }
}

#[test]
#[ignore = "run by bad_ort_dylib_path_is_an_error_not_a_panic in a child process"]
fn child_load_with_bad_dylib() {
    assert!(std::env::var_os("FCHM_ORT_CHILD").is_some());
    let dylib = std::env::var("ORT_DYLIB_PATH").unwrap();
    let dir = bundle().unwrap();
    let shape = [1, 32, 128, 128];
    let err = Graph::load_with("vfcn_dec", &dir.join("vfcn_dec.onnx"), &shape, &ort_cpu())
        .expect_err("a bad ORT_DYLIB_PATH cannot load");
    let msg = err.to_string();
    println!("error: {msg}");
    assert!(matches!(err, RuntimeError::Load { .. }), "{msg}");
    assert!(
        msg.contains("ORT_DYLIB_PATH") && msg.contains(&dylib),
        "{msg}"
    );
    // The bundle loader reports it the same way.
    let err = Bundle::load_with(&dir, Role::Server, &ort_cpu()).unwrap_err();
    assert!(err.to_string().contains("ORT_DYLIB_PATH"), "{err}");
    println!("CHILD-OK");
}

#[test]
fn gpu_providers_load_or_fail_cleanly() {
    let Some(dir) = bundle() else { return };
    let path = dir.join("task_back.onnx");
    for name in ["ort-cuda", "ort-tensorrt"] {
        let backend: Backend = name.parse().unwrap();
        match Graph::load_with("task_back", &path, &[1, 24, 128, 128], &backend) {
            Ok(g) => println!("{name}: loaded {:?} (GPU build of ONNX Runtime)", g),
            Err(e) => {
                let msg = e.to_string();
                println!("{name}: {msg}");
                assert!(matches!(e, RuntimeError::Load { .. }), "{msg}");
                assert!(msg.contains("execution provider"), "{msg}");
            }
        }
    }
}

fn graph<'b>(b: &'b Bundle, key: &str) -> &'b Graph {
    match key {
        "vfcn_dec" => b.graphs.vfcn_dec.as_ref().unwrap(),
        _ => b.graphs.task_back.as_ref().unwrap(),
    }
}

fn median_ms(graph: &Graph, input: &[f32], runs: usize) -> f64 {
    graph.run(input).unwrap(); // warm-up
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            graph.run(input).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[runs / 2]
}

/// Median run time of the server graphs on this machine, tract vs ONNX Runtime:
/// `cargo test --features ort --test ort_backend -- --ignored --nocapture timing`
/// (`FCHM_ORT_THREADS=N` sets ONNX Runtime's intra-op threads; `FCHM_TIMING_RUNS` the runs).
#[test]
#[ignore = "timing; prints median ms per graph"]
fn timing_server_graphs_tract_vs_ort() {
    let Some(dir) = bundle() else { return };
    let runs: usize = std::env::var("FCHM_TIMING_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let frames = encoded_frames(&dir);
    let tract = Bundle::load(&dir, Role::Server).unwrap();
    let ort = Bundle::load_with(&dir, Role::Server, &ort_cpu()).unwrap();
    let dec = FeatureDecoder::new(&tract).unwrap();
    let (_, bytes) = &frames[1];
    let y_hat = dec.decode_latents(bytes).unwrap().y_hat;
    let features = dec.decode(bytes).unwrap().features;
    let threads = std::env::var("FCHM_ORT_THREADS").unwrap_or_else(|_| "default".into());
    println!(
        "median of {runs} runs, ms (cpus: {}, FCHM_ORT_THREADS={threads}):",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (key, input) in [("vfcn_dec", &y_hat), ("task_back", &features)] {
        let t = median_ms(graph(&tract, key), input, runs);
        let o = median_ms(graph(&ort, key), input, runs);
        println!("{key:>10}: tract {t:8.2}   ort {o:8.2}");
    }
}

/// Multi-input, multi-output graphs: the human layer's on ONNX Runtime match tract.
#[test]
fn human_graphs_with_several_inputs_match_tract() {
    let dir = std::env::var_os("FCHM_TEST_HVCN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/centernet-hvcn"));
    if !dir.join("manifest.json").exists() {
        println!(
            "SKIP: no human-layer bundle at {} (set FCHM_TEST_HVCN)",
            dir.display()
        );
        return;
    }
    let m = fchm::human::HumanManifest::load(&dir).unwrap();
    for key in ["acn_enc", "hvcn_fast", "hvcn_fcn"] {
        let spec = &m.graphs[key];
        let path = dir.join(&spec.file);
        let tract = Graph::load_named(key, &path, &spec.inputs, &Backend::Tract).unwrap();
        let ort = Graph::load_named(key, &path, &spec.inputs, &ort_cpu()).unwrap();
        assert!(spec.inputs.len() >= 2, "{key} has several inputs");
        // Deterministic, non-trivial inputs, given in an order unlike the graph's.
        let data: Vec<(String, Vec<f32>)> = spec
            .inputs
            .iter()
            .rev()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let v = (0..n)
                    .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 2.0)
                    .collect();
                (name.clone(), v)
            })
            .collect();
        let named: Vec<(&str, &[f32])> = data
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let (a, b) = (
            tract.run_named(&named).unwrap(),
            ort.run_named(&named).unwrap(),
        );
        assert_eq!(a.len(), spec.outputs.len(), "{key}: outputs");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.shape, y.shape, "{key}");
            let scale = x.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = x
                .data
                .iter()
                .zip(&y.data)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                diff <= 1e-4 * scale,
                "{key}: tract vs ort differ by {diff} (scale {scale})"
            );
        }
        // A missing input is an error naming it, not a panic.
        let e = tract.run_named(&named[1..]).unwrap_err().to_string();
        assert!(e.contains("not given") || e.contains("inputs given"), "{e}");
    }
}
