//! The server's decode step without a broker: several bundles at once, and
//! corrupted-but-well-framed payloads that reach the entropy decoder and the
//! networks, which must end as a refusal or a decode, never a panic.

mod common;

use std::path::PathBuf;

use fchm::core::container::{Frame, SubstreamKind};
use fchm::model::{Bundle, Role};
use fchm::server::decode::{process, Decoders, Outcome};
use fchm::server::store::{Limits, Store};

fn frames(dir: &std::path::Path, first: u64, n: usize) -> Vec<(u64, Vec<u8>)> {
    let b = Bundle::load(dir, Role::Edge).unwrap();
    fchm::bench::server::scene_frames(&b, first, n).unwrap()
}

fn smoke_bundle() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("FCHM_SMOKE_BUNDLE")?);
    dir.join("manifest.json").exists().then_some(dir)
}

#[test]
fn frames_are_routed_to_the_bundle_they_name() {
    let main = common::bundle_dir();
    let Some(smoke) = smoke_bundle() else {
        panic!("FCHM_SMOKE_BUNDLE is not set (.ci/run builds it): this test needs a second bundle");
    };
    let both = Decoders::load(&[main.clone(), smoke.clone()]).unwrap();
    assert_eq!(both.ids().len(), 2);
    let only_main = Decoders::load(std::slice::from_ref(&main)).unwrap();
    let store = Store::new(Limits::default());
    let (_, a) = frames(&main, 1, 1).remove(0);
    let (_, b) = frames(&smoke, 2, 1).remove(0);
    for (name, payload) in [("main", &a), ("smoke", &b)] {
        match process(&both, &store, "t", "cam", payload, 0) {
            Outcome::Decoded { record, .. } => assert_eq!(record.bytes, payload.len()),
            other => panic!("{name} frame not decoded with both bundles loaded: {other:?}"),
        }
    }
    match process(&only_main, &store, "t", "cam2", &b, 0) {
        Outcome::Refused { cause, reason } => {
            assert_eq!(cause, "unknown_bundle");
            assert!(reason.contains(&both.ids()[1]), "{reason}");
        }
        other => panic!("a foreign bundle's frame must be refused: {other:?}"),
    }
    assert!(
        Decoders::load(&[main.clone(), main]).is_err(),
        "the same bundle twice is a configuration error"
    );
}

#[test]
fn corrupted_substreams_with_a_valid_crc_never_panic() {
    let dir = common::bundle_dir();
    let decoders = Decoders::load(std::slice::from_ref(&dir)).unwrap();
    let store = Store::new(Limits::default());
    let (_, good) = frames(&dir, 100, 1).remove(0);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for case in 0..16u64 {
        let mut f = Frame::parse(&good).unwrap();
        f.header.sequence = 1000 + case;
        let kind = if case % 2 == 0 {
            SubstreamKind::Z
        } else {
            SubstreamKind::Y
        };
        let s = f.substreams.iter_mut().find(|s| s.kind == kind).unwrap();
        match case % 4 {
            // A burst of flipped bytes somewhere in the data.
            0 | 1 => {
                let at = rng.usize(..s.data.len());
                for b in s.data.iter_mut().skip(at).take(1 + rng.usize(..8)) {
                    *b ^= rng.u8(1..);
                }
            }
            // Cut short.
            2 => s.data.truncate(rng.usize(..s.data.len())),
            // Replaced by noise of the same length.
            _ => s.data.iter_mut().for_each(|b| *b = rng.u8(..)),
        }
        let payload = f.encode().unwrap();
        let label = match process(&decoders, &store, "t", "fuzz", &payload, 0) {
            Outcome::Decoded { record, .. } => {
                assert_eq!(record.sequence, 1000 + case);
                "decoded".to_owned()
            }
            Outcome::Refused { cause, .. } => cause.to_owned(),
            Outcome::Duplicate { .. } => panic!("fresh sequence reported as duplicate"),
        };
        *outcomes.entry(label).or_default() += 1;
    }
    // Most corruptions are caught by the coder's own checks.
    assert!(
        outcomes.get("bitstream").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    println!("outcomes of 16 corrupted frames: {outcomes:?}");
}
