//! The spool under a real `kill -9`.
//!
//! The test binary re-executes itself as a writer child (see `writer_child`).
//! The child pushes numbered records, now and then consumes a few, and
//! reports each completed operation on stdout. Half the rounds use
//! `SyncPolicy::EveryRecord`. The other half use `SyncPolicy::Never`: a process
//! kill (unlike power loss) must not lose completed calls under any policy,
//! and without fsyncs the kill often lands inside a write and tears it. The
//! parent SIGKILLs it at a random moment, reopens the spool and checks it
//! against the reports: every record that the child reported as pushed and
//! not yet dropped is there, the records are whole and numbered in order with
//! no gaps, and at most the one operation in flight at the kill is uncertain.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fchm::transport::spool::{Spool, SpoolConfig, SyncPolicy, RECORD_OVERHEAD};

/// Set in the child's environment to the spool directory it writes to.
const CHILD_DIR_ENV: &str = "FCHM_SPOOL_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "FCHM_SPOOL_CRASH_CHILD_SEED";
/// "every-record" or "never".
const CHILD_SYNC_ENV: &str = "FCHM_SPOOL_CRASH_CHILD_SYNC";
/// Marks the child's report lines among libtest's own output.
const REPORT: &str = "SPOOL-REPORT";

const MIN_LEN: usize = 200;
const MAX_LEN: usize = 3000;
const CONSUME_MAX: usize = 3;
const ROUNDS: usize = 8;

fn config(dir: &Path, sync: SyncPolicy) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        // Room for about 80 records, so rounds that run long also evict.
        max_bytes: 128 << 10,
        // About ten records per segment: plenty of rolls and deletions.
        segment_bytes: 16 << 10,
        sync,
    }
}

fn policy_name(sync: SyncPolicy) -> &'static str {
    match sync {
        SyncPolicy::Never => "never",
        _ => "every-record",
    }
}

/// Record `i`: its number, then filler whose length and bytes depend on `i`.
fn record(i: u64) -> Vec<u8> {
    let len = MIN_LEN + (i.wrapping_mul(7919) % (MAX_LEN - MIN_LEN + 1) as u64) as usize;
    let mut r = i.to_le_bytes().to_vec();
    r.extend((8..len).map(|j| (i as usize * 13 + j) as u8));
    r
}

/// The number of a record, or `None` if any byte differs from what `record` wrote.
fn number_of(r: &[u8]) -> Option<u64> {
    let i = u64::from_le_bytes(r.get(..8)?.try_into().ok()?);
    (record(i) == r).then_some(i)
}

/// Entry point of the writer child. It does nothing in a normal test run,
/// where the variable is unset.
#[test]
fn writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let seed = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let sync = match std::env::var(CHILD_SYNC_ENV).as_deref() {
        Ok("never") => SyncPolicy::Never,
        _ => SyncPolicy::EveryRecord,
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut spool, _) = Spool::open(config(Path::new(&dir), sync)).unwrap();
    // Straight to the pipe: not through libtest's capture, and flushed per
    // line so the parent sees each report as soon as the call returned.
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let evicted = spool.push(&record(i)).unwrap();
        writeln!(out, "{REPORT} push {i} {}", evicted.records).unwrap();
        out.flush().unwrap();
        if rng.u8(..) < 48 && !spool.is_empty() {
            let n = rng.usize(1..=CONSUME_MAX).min(spool.len() as usize);
            spool.consume(n).unwrap();
            writeln!(out, "{REPORT} consume {n}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// What the child's reports say the queue must hold.
#[derive(Debug, Default)]
struct Reported {
    /// Records dropped from the front (consumed or evicted).
    front: u64,
    /// Highest number pushed.
    last_pushed: Option<u64>,
    operations: usize,
}

impl Reported {
    fn apply(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix(REPORT) else {
            return;
        };
        let words: Vec<u64> = rest
            .split_whitespace()
            .skip(1)
            .map(|w| w.parse().expect("numeric report"))
            .collect();
        match rest.split_whitespace().next() {
            Some("push") => {
                self.last_pushed = Some(words[0]);
                self.front += words[1];
            }
            Some("consume") => self.front += words[0],
            other => panic!("unexpected report {other:?} in {line:?}"),
        }
        self.operations += 1;
    }
}

/// How far one unreported operation may move the front: a consume of up to
/// `CONSUME_MAX` records, or the eviction a push of the largest record makes
/// among the smallest.
fn slack() -> u64 {
    let most_evicted =
        (MAX_LEN as u64 + RECORD_OVERHEAD).div_ceil(MIN_LEN as u64 + RECORD_OVERHEAD);
    most_evicted.max(CONSUME_MAX as u64)
}

fn crash_round(round: usize, seed: u64, sync: SyncPolicy) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let kill_after = rng.usize(1..=400);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "writer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .env(CHILD_SEED_ENV, seed.to_string())
        .env(CHILD_SYNC_ENV, policy_name(sync))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported = Reported::default();
    while reported.operations < kill_after {
        match lines.next() {
            Some(line) => reported.apply(&line.unwrap()),
            None => panic!(
                "round {round} (seed {seed}): writer ended on its own: {:?}",
                child.wait()
            ),
        }
    }
    // Let the child run on a little, so that the kill lands anywhere in a
    // call. Without fsyncs a call takes microseconds.
    let pause = match sync {
        SyncPolicy::Never => rng.u64(0..50),
        _ => rng.u64(0..3000),
    };
    std::thread::sleep(Duration::from_micros(pause));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "round {round}: writer was not killed: {status}"
    );
    // Whatever the child wrote before it died is still in the pipe.
    for line in lines {
        reported.apply(&line.unwrap());
    }

    let (mut spool, recovery) = Spool::open(config(dir.path(), sync)).unwrap();
    let context = format!("round {round} (seed {seed}, {sync:?}), {reported:?}, {recovery:?}");
    eprintln!("{context}");
    assert_eq!(recovery.corrupt_records, 0, "{context}");
    assert_eq!(recovery.records, spool.len(), "{context}");
    let records = spool.peek(usize::MAX).unwrap();
    let numbers: Vec<u64> = records
        .iter()
        .map(|r| number_of(r).unwrap_or_else(|| panic!("damaged record: {context}")))
        .collect();
    let last = reported
        .last_pushed
        .expect("at least one push was reported");
    match (numbers.first(), numbers.last()) {
        (Some(&first), Some(&newest)) => {
            let expected: Vec<u64> = (first..=newest).collect();
            assert_eq!(numbers, expected, "gap or reorder: {context}");
            assert!(
                first >= reported.front && first <= reported.front + slack(),
                "first record {first}: {context}"
            );
            // The push in flight at the kill may have completed unreported.
            assert!(
                newest == last || newest == last + 1,
                "newest record {newest}: {context}"
            );
        }
        // Empty is fine only if the reports (plus one unreported operation)
        // account for every record up to the last push.
        _ => assert!(last < reported.front + slack(), "records lost: {context}"),
    }

    // The repaired spool keeps working, and the repair was complete.
    let evicted = spool.push(&record(last + 2)).unwrap().records as usize;
    drop(spool);
    let (mut spool, again) = Spool::open(config(dir.path(), sync)).unwrap();
    assert_eq!(
        (again.torn_bytes, again.corrupt_records),
        (0, 0),
        "{context}"
    );
    let mut expected = records[evicted..].to_vec();
    expected.push(record(last + 2));
    assert_eq!(spool.peek(usize::MAX).unwrap(), expected, "{context}");
}

#[test]
fn kill_9_loses_nothing_that_was_reported_synced() {
    let base = fastrand::u64(..);
    for round in 0..ROUNDS {
        let seed = base.wrapping_add(round as u64);
        let sync = if round % 2 == 0 {
            SyncPolicy::EveryRecord
        } else {
            SyncPolicy::Never
        };
        crash_round(round, seed, sync);
    }
}
