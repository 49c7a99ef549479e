//! Bit-exactness across CPUs: frames encoded by the aarch64 build (under
//! qemu user emulation) decode on x86 to exactly the latents the ARM encoder
//! coded, and both CPUs decode the same detections from the same payload.
//!
//! Needs `FCHM_AARCH64_FCHM`, the path of `fchm` built by
//! `cross/build-aarch64.sh` (`.ci/run` builds it and sets the variable).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{bundle_dir, human_dir, photo, run_ok};
use fchm::codec::FeatureDecoder;
use fchm::model::{Bundle, Role};
use serde_json::Value;

fn arm_fchm() -> Command {
    let bin = std::env::var_os("FCHM_AARCH64_FCHM").map(PathBuf::from).unwrap_or_else(|| {
        panic!("FCHM_AARCH64_FCHM is not set: build with cross/build-aarch64.sh and point it at the printed binary")
    });
    let mut c = Command::new("qemu-aarch64-static");
    c.arg("-L").arg("/usr/aarch64-linux-gnu").arg(bin);
    c
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect()
}

#[test]
fn aarch64_frames_decode_bit_exactly_on_x86() {
    let dir = bundle_dir();
    let bundle = Bundle::load(&dir, Role::Server).unwrap();
    let dec = FeatureDecoder::new(&bundle).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let gain = bundle.manifest.ivn.gain_min * 4.0;
    for (i, name) in ["dog.jpg", "person.jpg"].iter().enumerate() {
        let frame = tmp.path().join(format!("{i}.fchm"));
        let sym = tmp.path().join(format!("{i}.json"));
        let mut c = arm_fchm();
        c.args([
            "encode",
            "--gain",
            &gain.to_string(),
            "--sequence",
            &i.to_string(),
            "--bundle",
        ])
        .arg(&dir)
        .arg(photo(name))
        .arg("-o")
        .arg(&frame)
        .arg("--symbols")
        .arg(&sym);
        run_ok(c);
        let arm: Value = serde_json::from_str(&std::fs::read_to_string(&sym).unwrap()).unwrap();
        let payload = std::fs::read(&frame).unwrap();
        let x86 = dec.decode(&payload).expect("ARM frame decodes on x86");
        assert_eq!(x86.header.sequence, i as u64);
        assert_eq!(
            x86.z_symbols,
            ints(&arm["z"]),
            "{name}: z latents differ across CPUs"
        );
        assert_eq!(
            x86.y_symbols,
            ints(&arm["y"]),
            "{name}: y latents differ across CPUs"
        );

        if i == 0 {
            // Decode the same payload on ARM: the float tail may differ in the last bits only.
            let dets = tmp.path().join("arm-dets.json");
            let mut c = arm_fchm();
            c.arg("decode")
                .arg(&frame)
                .arg("--bundle")
                .arg(&dir)
                .arg("--detections")
                .arg(&dets);
            run_ok(c);
            let arm: Value =
                serde_json::from_str(&std::fs::read_to_string(&dets).unwrap()).unwrap();
            let arm = arm["detections"].as_array().unwrap();
            assert_eq!(
                arm.len(),
                x86.detections.len(),
                "detection count ARM vs x86"
            );
            for (a, x) in arm.iter().zip(&x86.detections) {
                assert_eq!(a["class_id"].as_u64().unwrap(), x.class as u64);
                assert!((a["score"].as_f64().unwrap() - x.score as f64).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn aarch64_aux_frames_decode_bit_exactly_on_x86() {
    let dir = bundle_dir();
    let hdir = human_dir();
    let human = fchm::human::HumanBundle::load(&hdir, Role::Server).unwrap();
    let dec = fchm::human::AuxDecoder::new(&human);
    let tmp = tempfile::tempdir().unwrap();
    let aux_gain = human.manifest.aux.gain_min * 2.0;
    let (frame, aux, sym) = (
        tmp.path().join("m.fchm"),
        tmp.path().join("a.fchm"),
        tmp.path().join("a.json"),
    );
    let mut c = arm_fchm();
    c.args(["encode", "--gain", "4", "--sequence", "7", "--bundle"])
        .arg(&dir)
        .arg(photo("person.jpg"))
        .arg("-o")
        .arg(&frame)
        .arg("--human-bundle")
        .arg(&hdir)
        .args(["--aux-gain", &aux_gain.to_string(), "--aux-output"])
        .arg(&aux)
        .arg("--aux-symbols")
        .arg(&sym);
    run_ok(c);
    let arm: Value = serde_json::from_str(&std::fs::read_to_string(&sym).unwrap()).unwrap();
    let x86 = dec
        .decode(&std::fs::read(&aux).unwrap())
        .expect("ARM aux frame decodes on x86");
    assert_eq!(
        x86.header.sequence, 7,
        "the aux frame names its machine frame"
    );
    assert_eq!(
        x86.z_symbols,
        ints(&arm["z"]),
        "aux z latents differ across CPUs"
    );
    assert_eq!(
        x86.y_symbols,
        ints(&arm["y"]),
        "aux y latents differ across CPUs"
    );
    assert!(
        x86.y_symbols.iter().any(|&s| s != 0),
        "an all-zero latent proves nothing"
    );
}
