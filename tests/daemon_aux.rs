//! The aux layer on demand, end to end: fchmd with a human-layer bundle
//! against a real Mosquitto, `set/aux` with `mosquitto_pub`, the frames on
//! `aux` watched with `mosquitto_sub` and decoded with `AuxDecoder`.
//!
//! Needs the smoke machine bundle (`$FCHM_SMOKE_BUNDLE`) and a human-layer
//! bundle built for it (`$FCHM_SMOKE_HVCN`, e.g.
//! `python3 -m fchm_train.hvcn_build --smoke --machine $FCHM_SMOKE_BUNDLE --out target/hvcn-smoke`);
//! without the latter the test is skipped with a message.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{mosquitto_pub, smoke_aux_bundles, stats_of, Daemon, Mosquitto, Msg, Sub};
use fchm::core::container::{FrameRef, Layer};
use fchm::human::{AuxDecoder, HumanBundle};
use fchm::model::bundle::Role;

const DEVICE: &str = "cam-aux";
/// How long an aux request has to show up, and how long we watch for a second one.
const WINDOW: Duration = Duration::from_secs(6);

fn topic(leaf: &str) -> String {
    format!("fchm/{DEVICE}/{leaf}")
}

fn sequence(m: &Msg) -> u64 {
    FrameRef::parse(&m.payload)
        .expect("a valid frame")
        .header
        .sequence
}

/// The next message on `sub` whose payload is `want`, within `timeout`.
fn wait_for(sub: &Sub, want: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while let Some(m) = sub.next(end.saturating_duration_since(Instant::now())) {
        if m.payload == want.as_bytes() {
            return true;
        }
    }
    false
}

/// Stats until one satisfies `ok`, within `timeout`.
fn stats_until(
    stats: &Sub,
    timeout: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        let got = stats_of(&stats.drain(Duration::from_millis(500)));
        if let Some(v) = got.into_iter().rev().find(|v| ok(v)) {
            return Some(v);
        }
    }
    None
}

#[test]
fn aux_frames_come_once_per_request_and_decode() {
    let Some((machine, human)) = smoke_aux_bundles() else {
        eprintln!(
            "skipped: FCHM_SMOKE_HVCN is not set (a human-layer bundle built for $FCHM_SMOKE_BUNDLE)"
        );
        return;
    };
    let t0 = Instant::now();
    let broker = Mosquitto::start();
    let feat = Sub::start(broker.port, &topic("feat"), &[]);
    let aux = Sub::start(broker.port, &topic("aux"), &[]);
    let state = Sub::start(broker.port, &topic("state/aux"), &[]);
    let stats = Sub::start(broker.port, &topic("stats"), &[]);
    let mut daemon = Daemon::start(
        DEVICE,
        &broker.url(),
        &machine,
        &format!(
            "[source]\nspec = \"test-scene\"\nfps = 2.0\n\
             [rate]\nmode = \"kbps\"\ntarget_kbps = 1000.0\n\
             [stats]\ninterval_s = 1.0\n\
             [aux]\nbundle = \"{}\"\nring_frames = 8\nbudget_share = 0.5",
            human.display()
        ),
    );

    // Machine frames flow, and the retained state says aux is off.
    let mut feat_seqs = Vec::new();
    while feat_seqs.len() < 2 && t0.elapsed() < Duration::from_secs(60) {
        if let Some(m) = feat.next(Duration::from_secs(2)) {
            feat_seqs.push(sequence(&m));
        }
    }
    assert!(
        feat_seqs.len() >= 2,
        "no machine frames; log:\n{}",
        daemon.log()
    );
    assert!(
        wait_for(&state, "off", Duration::from_secs(5)),
        "no retained state/aux = off"
    );
    assert!(
        aux.next(Duration::ZERO).is_none(),
        "aux frames before any request"
    );

    // `once`: exactly one aux frame, for a machine frame.
    mosquitto_pub(broker.port, &topic("set/aux"), "once");
    assert!(
        wait_for(&state, "once", Duration::from_secs(5)),
        "set/aux once was not confirmed; log:\n{}",
        daemon.log()
    );
    let got = aux.drain(WINDOW);
    feat_seqs.extend(feat.drain(Duration::from_millis(100)).iter().map(sequence));
    assert_eq!(
        got.len(),
        1,
        "`once` must give exactly one aux frame; log:\n{}",
        daemon.log()
    );
    let server = HumanBundle::load(&human, Role::Server).expect("human bundle for the server");
    let decoder = AuxDecoder::new(&server);
    let once = &got[0];
    let frame = FrameRef::parse(&once.payload).expect("an aux frame");
    assert_eq!(frame.header.layer, Layer::Aux);
    assert_eq!(frame.header.bundle_id, server.manifest.id());
    let once_seq = frame.header.sequence;
    assert!(
        feat_seqs.contains(&once_seq),
        "aux frame {once_seq} enhances no machine frame seen on feat: {feat_seqs:?}"
    );
    let latent = decoder
        .decode(&once.payload)
        .expect("the aux frame decodes");
    assert_eq!(latent.header.sequence, once_seq);
    assert!(latent.ya_hat.iter().all(|v| v.is_finite()));

    // `frame:<seq>` of an earlier machine frame: one aux frame with that sequence.
    let earlier = *feat_seqs
        .iter()
        .rev()
        .find(|&&s| s != once_seq)
        .expect("another machine frame");
    let cmd = format!("frame:{earlier}");
    mosquitto_pub(broker.port, &topic("set/aux"), &cmd);
    assert!(
        wait_for(&state, &cmd, Duration::from_secs(5)),
        "set/aux {cmd} was not confirmed; log:\n{}",
        daemon.log()
    );
    let got = aux.drain(WINDOW);
    let seqs: Vec<u64> = got.iter().map(sequence).collect();
    assert_eq!(
        seqs,
        [earlier],
        "{cmd} must give one aux frame; log:\n{}",
        daemon.log()
    );
    let latent = decoder.decode(&got[0].payload).expect("decodes");
    assert_eq!(latent.header.sequence, earlier);
    let machine_frame = FrameRef::parse(&got[0].payload).unwrap();
    assert!(machine_frame.header.timestamp_us > 0);

    // `frame:1` is not in the ring: refused, state unchanged, counted.
    let refused_before = stats_until(&stats, Duration::from_secs(5), |_| true).expect("stats")
        ["refused_commands"]
        .as_u64()
        .unwrap();
    mosquitto_pub(broker.port, &topic("set/aux"), "frame:1");
    let counted = stats_until(&stats, Duration::from_secs(8), |v| {
        v["refused_commands"].as_u64() > Some(refused_before)
    });
    assert!(
        counted.is_some(),
        "frame:1 was not counted as refused; log:\n{}",
        daemon.log()
    );
    assert!(
        state.next(Duration::from_millis(500)).is_none(),
        "a refused command must not change state/aux"
    );
    assert!(
        aux.next(Duration::ZERO).is_none(),
        "no aux frame for frame:1"
    );
    assert!(
        daemon.log().contains("not in the ring"),
        "the refusal names the ring; log:\n{}",
        daemon.log()
    );

    // `on`: an aux frame with every machine frame, each within its share; then `off`.
    mosquitto_pub(broker.port, &topic("set/aux"), "on");
    assert!(
        wait_for(&state, "on", Duration::from_secs(5)),
        "set/aux on was not confirmed"
    );
    let on = stats_until(&stats, Duration::from_secs(5), |v| v["aux"]["mode"] == "on");
    assert!(on.is_some(), "stats do not show aux.mode = on");
    let streamed: Vec<u64> = aux
        .drain(Duration::from_secs(4))
        .iter()
        .map(sequence)
        .collect();
    mosquitto_pub(broker.port, &topic("set/aux"), "off");
    assert!(
        wait_for(&state, "off", Duration::from_secs(5)),
        "set/aux off was not confirmed"
    );
    feat_seqs.extend(feat.drain(Duration::from_millis(500)).iter().map(sequence));
    assert!(
        streamed.len() >= 2,
        "`on` gave {} aux frame(s) in 4 s; log:\n{}",
        streamed.len(),
        daemon.log()
    );
    assert!(
        streamed.windows(2).all(|w| w[0] < w[1]),
        "one aux frame per machine frame, in order: {streamed:?}"
    );
    assert!(
        streamed.iter().all(|s| feat_seqs.contains(s)),
        "{streamed:?} not all on feat"
    );
    let late = aux.drain(Duration::from_secs(1)).len() as u64;

    // The final accounting: every aux frame acknowledged, apart from the machine totals.
    let acc = daemon.stop();
    let late = late + aux.drain(Duration::from_millis(500)).len() as u64;
    println!("final accounting: {acc}");
    let a = &acc["aux"];
    assert_eq!(a["mode"], "off");
    let sent = 2 + streamed.len() as u64 + late;
    for (k, v) in [("requested", sent), ("encoded", sent), ("acked", sent)] {
        assert_eq!(a[k].as_u64(), Some(v), "aux.{k}: {a}");
    }
    for k in [
        "skipped_budget",
        "dropped_offline",
        "dropped_congestion",
        "encode_errors",
    ] {
        assert_eq!(a[k].as_u64(), Some(0), "aux.{k}: {a}");
    }
    assert!(a["encoded_bytes"].as_u64() > Some(0));
    let (t, d) = (&acc["totals"], &acc["dropped"]);
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    assert_eq!(
        n(&t["captured"]),
        n(&t["encoded"]) + n(&d["rate_skip"]) + n(&d["capture_queue"]) + n(&d["encode_error"]),
        "{acc}"
    );
    assert_eq!(
        n(&t["encoded"]) + n(&t["spool_recovered"]),
        n(&t["acked"])
            + n(&acc["spool_depth"])
            + n(&d["congestion"])
            + n(&d["spool_full"])
            + n(&d["spool_error"]),
        "{acc}"
    );
    println!("took {:.1} s", t0.elapsed().as_secs_f64());
}

/// A human-layer bundle pairs with the machine bundle it was trained on only.
#[test]
fn a_human_bundle_of_another_machine_bundle_is_refused() {
    let Some((machine, human)) = smoke_aux_bundles() else {
        eprintln!("skipped: FCHM_SMOKE_HVCN is not set");
        return;
    };
    let other = common::bundle_dir();
    let dir = tempfile::tempdir().unwrap();
    let check = |bundle: &std::path::Path| {
        let conf = dir.path().join("fchmd.toml");
        std::fs::write(
            &conf,
            format!(
                "bundle = \"{}\"\n[source]\nspec = \"test-scene\"\n[aux]\nbundle = \"{}\"\nmode = \"on\"\n",
                bundle.display(),
                human.display()
            ),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_fchmd"))
            .arg("--check-config")
            .arg(&conf)
            .output()
            .expect("run fchmd")
    };
    let ok = check(&machine);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let id = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(d.join("manifest.json")).unwrap(),
        )
        .unwrap()["bundle_id"]
            .clone()
    };
    if id(&other) == id(&machine) {
        eprintln!(
            "skipped: FCHM_TEST_BUNDLE is the smoke bundle; no other machine bundle to pair with"
        );
        return;
    }
    let bad = check(&other);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(78), "{err}");
    assert!(
        err.contains("aux.bundle") && err.contains("trained on machine bundle"),
        "{err}"
    );
}
