//! The Rust codec against the Python reference codec (CompressAI's rANS coder,
//! the numpy integer hyper-synthesis, onnxruntime), on the real bundle files.

mod common;

use common::peer::{floats, ints, peer_doc, peer_frame, run_peer, wide};
use common::{bundle_dir, photo};
use fchm::codec::{FeatureDecoder, FeatureEncoder, FrameMeta};
use fchm::core::container::{Frame, Layer};
use fchm::model::{Bundle, Role};
use serde_json::Value;

/// Same boxes, classes and scores, up to float noise from two inference engines.
fn assert_same_detections(rust: &[fchm::model::Detection], py: &Value, what: &str) {
    let py = py.as_array().unwrap();
    assert_eq!(rust.len(), py.len(), "{what}: detection count");
    for (r, p) in rust.iter().zip(py) {
        assert_eq!(
            r.class as i64,
            p["class"].as_i64().unwrap(),
            "{what}: class"
        );
        assert!(
            (r.score as f64 - p["score"].as_f64().unwrap()).abs() < 1e-3,
            "{what}: score {r:?} vs {p}"
        );
        let b = floats(&p["box"]);
        for (x, y) in [r.x1, r.y1, r.x2, r.y2].iter().zip(&b) {
            assert!((*x as f64 - y).abs() < 0.5, "{what}: box {r:?} vs {b:?}");
        }
    }
}

fn load() -> (std::path::PathBuf, Bundle) {
    let dir = bundle_dir();
    let b = Bundle::load(&dir, Role::All).expect("bundle loads with every graph optimised");
    (dir, b)
}

#[test]
fn python_encoded_stream_decodes_identically_in_rust() {
    let (dir, bundle) = load();
    let gain = bundle.manifest.ivn.gain_min * 4.0;
    let j = run_peer(
        "refcodec_peer.py",
        &[&"encode", &dir, &photo("dog.jpg"), &gain.to_string()],
        None,
    );
    let frame = peer_frame(&j, Layer::Machine, bundle.manifest.id());
    let dec = FeatureDecoder::new(&bundle).unwrap();
    let out = dec
        .decode(&frame.encode().unwrap())
        .expect("Python stream decodes in Rust");
    assert_eq!(wide(&out.z_symbols), ints(&j["z_sym"]), "z symbols");
    assert_eq!(
        wide(&out.y_symbols),
        ints(&j["y_sym"]),
        "y symbols (tables chosen by the integer network)"
    );
    // P̂: same ŷ, different inference engines (tract vs onnxruntime).
    let py_p = floats(&j["p_hat"]);
    for (i, p) in py_p.iter().enumerate() {
        let r = out.features[i * 97] as f64;
        assert!(
            (r - p).abs() < 1e-3 * (1.0 + p.abs()),
            "P̂[{}]: rust {r} python {p}",
            i * 97
        );
    }
    // Detections are reported in source pixels (768x576 here); the peer's are in 512-pixel input.
    let input: Vec<_> = out
        .detections
        .iter()
        .map(|d| d.scaled(512.0 / 768.0, 512.0 / 576.0))
        .collect();
    assert_same_detections(&input, &j["detections"], "python-encoded frame");
}

#[test]
fn rust_encoded_stream_decodes_identically_in_python() {
    let (dir, bundle) = load();
    let img = image::open(photo("person.jpg")).unwrap().to_rgb8();
    let enc = FeatureEncoder::new(&bundle).unwrap();
    let feats = enc.features(&img).unwrap();
    let gain = bundle.manifest.ivn.gain_min * 8.0;
    let frame = enc
        .encode(
            &feats,
            gain,
            FrameMeta {
                sequence: 1,
                timestamp_us: 2,
            },
        )
        .unwrap();
    let doc = peer_doc(&Frame::parse(&frame.bytes).unwrap());
    let j = run_peer("refcodec_peer.py", &[&"decode", &dir], Some(&doc));
    assert_eq!(
        ints(&j["z_sym"]),
        wide(&frame.z_symbols),
        "python decodes the z symbols rust coded"
    );
    assert_eq!(
        ints(&j["y_sym"]),
        wide(&frame.y_symbols),
        "python decodes the y symbols rust coded"
    );

    // The integer hyper-synthesis agrees element for element with numpy's.
    let hyper = bundle
        .hyper
        .run(
            &frame.z_symbols,
            bundle.manifest.latent.z[1],
            bundle.manifest.latent.z[2],
        )
        .unwrap();
    let idx: Vec<i64> = hyper.index.iter().map(|&v| v as i64).collect();
    let mean: Vec<i64> = hyper.mean_fixed.iter().map(|&v| v as i64).collect();
    assert_eq!(ints(&j["index"]), idx, "table indices");
    assert_eq!(ints(&j["mean_fixed"]), mean, "means");

    let dec = FeatureDecoder::new(&bundle).unwrap();
    let ours = dec.decode(&frame.bytes).unwrap();
    let (sx, sy) = (512.0 / img.width() as f32, 512.0 / img.height() as f32);
    let input: Vec<_> = ours.detections.iter().map(|d| d.scaled(sx, sy)).collect();
    assert_same_detections(&input, &j["detections"], "rust-encoded frame");
}
