//! The JSON the Python reference peers (tests/python/refcodec_peer.py,
//! aux_peer.py) read and write: a frame's two substreams as hex with their
//! shapes, the gain and the normalisation; symbols as integer arrays.

use std::ffi::OsStr;

use fchm::core::container::{BundleId, Frame, FrameHeader, Layer, Shape, Substream, SubstreamKind};
use serde_json::{json, Value};

use super::{python, run_ok};

pub fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub fn wide(v: &[i32]) -> Vec<i64> {
    v.iter().map(|&s| s as i64).collect()
}

/// The (z, y) substream kinds of a layer.
fn kinds(layer: Layer) -> [(SubstreamKind, &'static str); 2] {
    match layer {
        Layer::Machine => [(SubstreamKind::Z, "z"), (SubstreamKind::Y, "y")],
        Layer::Aux => [(SubstreamKind::AuxZ, "z"), (SubstreamKind::AuxY, "y")],
    }
}

/// What a peer decodes: `gain`, `fmin`, `fmax`, `{z,y}_shape`, `{z,y}_hex`.
pub fn peer_doc(frame: &Frame) -> Value {
    let h = &frame.header;
    let mut doc = json!({"gain": h.gain, "fmin": h.feature_min, "fmax": h.feature_max});
    for (kind, name) in kinds(h.layer) {
        let s = frame.substream(kind).unwrap();
        doc[format!("{name}_shape")] = json!(s.shape.to_array());
        doc[format!("{name}_hex")] = json!(hex::encode(&s.data));
    }
    doc
}

/// A 768x576 frame of `layer` around the substreams a peer encoded (the
/// same fields as [`peer_doc`]; `fmin`/`fmax` default to 0/1, as an aux
/// frame's are informational).
pub fn peer_frame(j: &Value, layer: Layer, bundle_id: BundleId) -> Frame {
    let f = |k: &str, default: f64| j.get(k).map_or(default, |v| v.as_f64().unwrap()) as f32;
    let substreams = kinds(layer)
        .into_iter()
        .map(|(kind, name)| {
            let s = ints(&j[format!("{name}_shape")]);
            Substream {
                kind,
                shape: Shape::new(s[0] as u16, s[1] as u16, s[2] as u16),
                data: hex::decode(j[format!("{name}_hex")].as_str().unwrap()).unwrap(),
            }
        })
        .collect();
    Frame {
        header: FrameHeader {
            layer,
            bundle_id,
            sequence: 7,
            timestamp_us: 1,
            gain: f("gain", f64::NAN),
            feature_min: f("fmin", 0.0),
            feature_max: f("fmax", 1.0),
            source_width: 768,
            source_height: 576,
        },
        substreams,
    }
}

/// Run a peer, `python3 tests/python/SCRIPT ARGS.. [IN.json] OUT.json`, and
/// read OUT.json; IN.json (`input`) is written first when given.
pub fn run_peer(script: &str, args: &[&dyn AsRef<OsStr>], input: Option<&Value>) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (tmp.path().join("in.json"), tmp.path().join("out.json"));
    let mut c = python(script);
    c.args(args);
    if let Some(doc) = input {
        std::fs::write(&inp, doc.to_string()).unwrap();
        c.arg(&inp);
    }
    c.arg(&out);
    run_ok(c);
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}
