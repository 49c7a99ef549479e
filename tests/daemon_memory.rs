//! `pipeline.lean_memory`: fchmd with the reference bundle against a real
//! Mosquitto, once lean and once with glibc's defaults; the lean daemon's
//! peak resident memory (VmHWM) stays within the 100 MB and below the
//! other's. Speed is `fchm bench pipeline`'s business, not this test's.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{Daemon, Mosquitto, Sub};

/// Frames each daemon must have encoded before its peak is read: enough for
/// glibc's arenas to take their steady shape.
const FRAMES: u64 = 12;

/// Run the daemon on the test scene until it has encoded `FRAMES` frames;
/// its peak RSS in MB and its final accounting.
fn run(broker: &Mosquitto, lean: bool) -> (f64, serde_json::Value) {
    let device = format!("cam-mem-{lean}");
    let stats = Sub::start(broker.port, &format!("fchm/{device}/stats"), &[]);
    let mut daemon = Daemon::start(
        &device,
        &broker.url(),
        &common::bundle_dir(),
        &format!(
            "[source]\nspec = \"test-scene\"\nfps = 30.0\n[rate]\nmode = \"gain\"\ngain = 8.0\n\
             [stats]\ninterval_s = 1.0\n[pipeline]\nlean_memory = {lean}\n"
        ),
    );
    let pid = daemon.child.as_ref().expect("running").id();
    let t = Instant::now();
    let mut encoded = 0;
    while encoded < FRAMES && t.elapsed() < Duration::from_secs(300) {
        assert!(daemon.running(), "fchmd exited:\n{}", daemon.log());
        if let Some(m) = stats.next(Duration::from_secs(2)) {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("stats JSON");
            encoded = v["totals"]["encoded"].as_u64().unwrap_or(0);
        }
    }
    let peak = fchm::bench::pipeline::peak_rss_mb(pid).expect("VmHWM in /proc");
    let acc = daemon.stop();
    (peak, acc)
}

#[test]
fn lean_memory_keeps_the_daemon_within_100_mb() {
    let broker = Mosquitto::start();
    let (lean, acc_lean) = run(&broker, true);
    let (fat, acc_fat) = run(&broker, false);
    println!("peak RSS: lean_memory = true {lean:.0} MB, false {fat:.0} MB");
    for acc in [&acc_lean, &acc_fat] {
        assert!(
            acc["totals"]["encoded"].as_u64().unwrap_or(0) >= FRAMES,
            "too few frames encoded: {acc}"
        );
    }
    assert!(lean <= 100.0, "lean_memory = true peaked at {lean:.0} MB");
    assert!(
        lean < 0.8 * fat,
        "lean_memory = true ({lean:.0} MB) saves too little against false ({fat:.0} MB)"
    );
}
