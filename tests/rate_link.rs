//! Rate control through the link emulator (2 → 0.4 → 4 Mbit/s, 20 ms
//! one-way delay) with a real fchmd and Mosquitto: after each step the sent
//! bitrate settles into the capacity band, the link is well used, latency
//! stays bounded, and every frame is accounted for.
//!
//! The settle bound leaves room for a loaded 2-core machine around the
//! issue's goal (within 3 s; README, "Rate control"), which the controller
//! meets in unloaded runs; utilisation must reach the goal's 80 %. A fixed rate
//! fails them (at 1.5 Mbit/s it sends 3.5× the 0.4 Mbit/s step and uses
//! 4 Mbit/s at 40 %).
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
        log_level: "info",
    };
    let sc = Scenario::standard(15.0, RateSetting::Auto);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(rate::run(&setup, &sc, broker.addr())).unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    let log = std::fs::read_to_string(setup.workdir.join("fchmd.log")).unwrap_or_default();
    for s in &r.steps {
        // Settling time and utilisation vary run to run on a shared machine
        // (printed above). This test, debug build, printed 0.6 / 1.6 / 2.6,
        // 0.6 / 2.6 / 1.6 and 0.5 / 3.5 / 2.5 s here, at 88-97 %
        // utilisation; four runs of `fchm bench rate` (README), where the
        // issue's 3 s goal is reported, printed 0.6-0.7 / 1.6-1.7 /
        // 2.6-2.7 s. The settle bound is twice that goal, room for a loaded
        // CI machine; before the link rate was read from idle crossings, the
        // start's overshoot alone took 5.9 s. A fixed rate never settles
        // after the 5x drop or the 10x rise.
        let c = s.capacity_kbps;
        let settle = s.settle_s.unwrap_or(f64::INFINITY);
        assert!(
            settle <= 6.0,
            "{c} kbit/s: settled after {settle:.1} s\n{log}"
        );
        assert!(
            s.utilisation >= 0.8,
            "{c} kbit/s: utilisation {:.2} after settling",
            s.utilisation
        );
        assert!(
            (0.5 * c..=1.2 * c).contains(&s.tail_encoded_kbps),
            "{c} kbit/s: encoded {:.0} kbit/s at the end of the step\n{log}",
            s.tail_encoded_kbps
        );
        assert!(
            s.tail_utilisation >= 0.6,
            "{c} kbit/s: utilisation {:.2} at the end of the step",
            s.tail_utilisation
        );
        let p95 = s.latency_p95_ms.expect("latency measured");
        assert!(
            p95 <= 5000.0,
            "{c} kbit/s: p95 capture-to-PUBACK latency {p95:.0} ms"
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
