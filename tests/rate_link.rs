//! Rate control through the link emulator (2 → 0.4 → 4 Mbit/s, 20 ms
//! one-way delay) with a real fchmd and Mosquitto: after each step the sent
//! bitrate settles within 3 s, the link is used at ≥ 80 %, latency stays
//! bounded, and every frame is accounted for.
//! `fchm bench rate` runs the same scenario and prints the figures.

mod common;

use fchm::bench::rate::{self, DaemonSetup, RateSetting, Scenario};

#[test]
fn auto_rate_follows_a_stepping_link() {
    let bundle = common::bundle_dir();
    let broker = common::daemon::Mosquitto::start();
    let work = tempfile::tempdir().unwrap();
    let setup = DaemonSetup {
        fchmd: env!("CARGO_BIN_EXE_fchmd").into(),
        bundle: bundle.clone(),
        workdir: work.path().join("auto"),
        device: "cam-link".into(),
    };
    let sc = Scenario::standard(12.0, RateSetting::Auto);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(rate::run(&setup, &sc, broker.addr())).unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    let log = std::fs::read_to_string(setup.workdir.join("fchmd.log")).unwrap_or_default();
    for s in &r.steps {
        let settle = s.settle_s.unwrap_or(f64::INFINITY);
        // Stats come in 1-s intervals: "within 3 s" is judged at that granularity.
        assert!(
            settle <= 3.0 + 1.0,
            "{} kbit/s: settled after {settle:.1} s\n{log}",
            s.capacity_kbps
        );
        assert!(
            s.utilisation >= 0.8,
            "{} kbit/s: utilisation {:.2}",
            s.capacity_kbps,
            s.utilisation
        );
        let p95 = s.latency_p95_ms.expect("latency measured");
        assert!(
            p95 <= 2.0 * sc.latency_bound_ms as f64,
            "{} kbit/s: p95 latency {p95:.0} ms",
            s.capacity_kbps
        );
    }
    // Nothing lost silently: every captured frame is acked, queued or counted as dropped.
    let acc = r.final_accounting.expect("final accounting");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let (t, d) = (&acc["totals"], &acc["dropped"]);
    assert_eq!(
        n(&t["captured"]),
        n(&t["encoded"]) + n(&d["rate_skip"]) + n(&d["capture_queue"]) + n(&d["encode_error"]),
        "capture accounting: {acc}"
    );
    assert_eq!(
        n(&t["encoded"]) + n(&t["spool_recovered"]),
        n(&t["acked"])
            + n(&acc["spool_depth"])
            + n(&d["congestion"])
            + n(&d["spool_full"])
            + n(&d["spool_error"]),
        "uplink accounting: {acc}"
    );
    assert_eq!(
        r.frames_received,
        n(&t["acked"]),
        "an independent subscriber saw every acked frame"
    );
}
