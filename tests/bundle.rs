//! The bundle contract: every graph loads optimised in tract, files are pinned
//! by sha256, and a tampered or missing file is refused with its name.

mod common;

use std::fs;
use std::path::Path;

use common::{bundle_dir, photo};
use fchm::codec::FeatureEncoder;
use fchm::model::bundle::BundleError;
use fchm::model::manifest::ManifestError;
use fchm::model::{Bundle, PostProcess, Role};

fn copy_bundle(to: &Path) {
    for e in fs::read_dir(bundle_dir()).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn every_graph_loads_and_front_plus_back_reproduce_the_full_detector() {
    let b = Bundle::load(&bundle_dir(), Role::All).expect("bundle loads");
    let enc = FeatureEncoder::new(&b).unwrap();
    let img = image::open(photo("dog.jpg")).unwrap().to_rgb8();
    let feats = enc.features(&img).unwrap();
    let back = b
        .graphs
        .task_back
        .as_ref()
        .unwrap()
        .run1(&feats.data)
        .unwrap();
    let input = fchm::model::preprocess::to_input(&img, &b.manifest.input);
    let full = b
        .graphs
        .detector_full
        .as_ref()
        .unwrap()
        .run(&input)
        .unwrap();
    let full_dets = full
        .iter()
        .find(|a| a.shape == [1, 100, 6])
        .expect("detections output");
    let max_diff = back
        .data
        .iter()
        .zip(&full_dets.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_diff < 1e-3, "front+back vs full: max diff {max_diff}");
    let dets = PostProcess::default().apply(&back.data);
    let names: Vec<_> = dets.iter().map(|d| d.class_name()).collect();
    assert!(
        names.contains(&"dog") && names.contains(&"bicycle"),
        "dog.jpg: {names:?}"
    );
}

#[test]
fn edge_role_loads_only_edge_graphs() {
    let b = Bundle::load(&bundle_dir(), Role::Edge).unwrap();
    assert!(b.graphs.front.is_some() && b.graphs.vfcn_enc.is_some());
    assert!(b.graphs.vfcn_dec.is_none() && b.graphs.task_back.is_none());
}

#[test]
fn tampered_file_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    copy_bundle(tmp.path());
    let path = tmp.path().join("vfcn_enc.onnx");
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    fs::write(&path, bytes).unwrap();
    let err = Bundle::load(tmp.path(), Role::Edge).unwrap_err();
    match &err {
        BundleError::Manifest(ManifestError::Checksum { file, .. }) => {
            assert_eq!(file, "vfcn_enc.onnx")
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(err.to_string().contains("vfcn_enc.onnx"), "{err}");
}

#[test]
fn missing_file_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    copy_bundle(tmp.path());
    fs::remove_file(tmp.path().join("entropy.json")).unwrap();
    let err = Bundle::load(tmp.path(), Role::Server).unwrap_err();
    assert!(
        matches!(&err, BundleError::Manifest(ManifestError::MissingFile { file, .. }) if file == "entropy.json"),
        "{err}"
    );
}

#[test]
fn edited_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    copy_bundle(tmp.path());
    let path = tmp.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    m["files"]["task_back.onnx"] = serde_json::json!("0".repeat(64));
    fs::write(&path, m.to_string()).unwrap();
    let err = Bundle::load(tmp.path(), Role::Server).unwrap_err();
    assert!(err.to_string().contains("bundle_id"), "{err}");
    m["schema"] = serde_json::json!("fchm-bundle/99");
    fs::write(&path, m.to_string()).unwrap();
    let err = Bundle::load(tmp.path(), Role::Server).unwrap_err();
    assert!(
        matches!(err, BundleError::Manifest(ManifestError::Schema { .. })),
        "{err}"
    );
}
