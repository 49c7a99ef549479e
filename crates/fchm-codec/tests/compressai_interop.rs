//! Byte-for-byte interoperability with CompressAI's rANS (`compressai.ans`).
//!
//! Random tables and symbols (bypass cases included) are encoded by us and by
//! CompressAI through `tests/python/rans_peer.py`; the streams must be identical
//! and each side must decode the other's. Needs Python 3 with CompressAI
//! (`pip install compressai "numpy<2"`); the interpreter is `python3` unless
//! `FCHM_PYTHON` names another. A missing CompressAI fails the test: silently
//! skipping would let the compatibility claim rot.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{gaussian_tables, random_tables, RawTables, Rng};
use fchm_codec::rans::{self, symbol_range, RansDecoder, RansEncoder};

const INSTALL_HINT: &str = "install it with `pip install compressai \"numpy<2\"` \
     (or point FCHM_PYTHON at an interpreter that has it)";

struct Case {
    name: String,
    tables: RawTables,
    symbols: Vec<i32>,
    indexes: Vec<i32>,
    /// Split into several streaming calls (BufferedRansEncoder / decode_stream).
    chunks: Option<Vec<usize>>,
}

fn python() -> String {
    std::env::var("FCHM_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/rans_peer.py")
}

fn run_peer(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let py = python();
    let mut cmd = Command::new(&py);
    cmd.arg(peer_script());
    for a in args {
        cmd.arg(a);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run `{py}` ({e}). This test needs Python 3 with CompressAI; {INSTALL_HINT}")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Some(3) => panic!("{stderr}(FCHM_PYTHON selects another interpreter)"),
        _ => panic!("rans_peer.py failed ({}): {stderr}", out.status),
    }
}

fn random_case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let ntables = 1 + rng.below(12) as usize;
    let max_slots = [3, 16, 300][rng.below(3) as usize];
    let tables = random_tables(&mut rng, ntables, max_slots);
    let ct = tables.build();
    // At least 4 symbols: CompressAI's encoder overflows its buffer below that.
    let n = 4 + rng.below(3000) as usize;
    let mut symbols = Vec::with_capacity(n);
    let mut indexes = Vec::with_capacity(n);
    for _ in 0..n {
        let i = rng.below(ntables as u64) as usize;
        let offset = tables.offsets[i];
        let max_value = tables.cdf_lengths[i] - 2;
        let (lo, hi) = symbol_range(&ct, i as i32).unwrap();
        let s = match rng.below(100) {
            0..=79 => tables.sample(&mut rng, i),
            80..=89 => rng.range_i32(offset - 3, offset + max_value + 3),
            90..=95 => rng.range_i32(-1_000_000, 1_000_000),
            // The widest values both coders accept: 7 bypass digits.
            _ => {
                if rng.below(2) == 0 {
                    (lo + rng.below(3) as i64) as i32
                } else {
                    (hi - rng.below(3) as i64) as i32
                }
            }
        };
        symbols.push(s);
        indexes.push(i as i32);
    }
    let chunks = (seed % 2 == 1).then(|| {
        let mut left = n;
        let mut v = Vec::new();
        while left > 0 {
            let c = (1 + rng.below(left as u64) as usize).min(left);
            v.push(c);
            left -= c;
        }
        v
    });
    Case {
        name: format!("random-{seed}"),
        tables,
        symbols,
        indexes,
        chunks,
    }
}

fn gaussian_case() -> Case {
    let tables = gaussian_tables();
    let mut rng = Rng::new(0x5ca1e);
    let n = 20_000;
    let mut symbols = Vec::with_capacity(n);
    let mut indexes = Vec::with_capacity(n);
    for _ in 0..n {
        let i = rng.below(tables.cdfs.len() as u64) as usize;
        indexes.push(i as i32);
        symbols.push(tables.sample(&mut rng, i));
    }
    Case {
        name: "gaussian".into(),
        tables,
        symbols,
        indexes,
        chunks: None,
    }
}

fn case_json(c: &Case) -> serde_json::Value {
    let mut v = serde_json::json!({
        "cdfs": c.tables.cdfs,
        "cdf_lengths": c.tables.cdf_lengths,
        "offsets": c.tables.offsets,
        "symbols": c.symbols,
        "indexes": c.indexes,
    });
    if let Some(chunks) = &c.chunks {
        v["chunks"] = serde_json::json!(chunks);
    }
    v
}

fn our_encode(c: &Case) -> Vec<u8> {
    let tables = c.tables.build();
    let mut enc = RansEncoder::new();
    let mut at = 0;
    for size in c.chunks.clone().unwrap_or(vec![c.symbols.len()]) {
        enc.encode_with_indexes(
            &c.symbols[at..at + size],
            &c.indexes[at..at + size],
            &tables,
        )
        .unwrap();
        at += size;
    }
    enc.flush()
}

fn our_decode(c: &Case, data: &[u8]) -> Vec<i32> {
    let tables = c.tables.build();
    let mut dec = RansDecoder::new(data).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    for size in c.chunks.clone().unwrap_or(vec![c.symbols.len()]) {
        out.extend(
            dec.decode_with_indexes(&c.indexes[at..at + size], &tables)
                .unwrap(),
        );
        at += size;
    }
    dec.finish().unwrap();
    out
}

fn check(c: &Case, dir: &Path) {
    let case_path = dir.join(format!("{}.json", c.name));
    std::fs::write(&case_path, serde_json::to_vec(&case_json(c)).unwrap()).unwrap();

    let ours = our_encode(c);
    // Buffering must not change the bytes.
    assert_eq!(
        ours,
        rans::encode(&c.symbols, &c.indexes, &c.tables.build()).unwrap(),
        "{}: chunked and one-shot encodings differ",
        c.name
    );

    let theirs_path = dir.join(format!("{}.compressai.bin", c.name));
    run_peer(&[&"encode", &case_path, &theirs_path]);
    let theirs = std::fs::read(&theirs_path).unwrap();
    if ours != theirs {
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        panic!(
            "{}: encodings differ (ours {} bytes, CompressAI {} bytes, first difference at byte {first:?})",
            c.name,
            ours.len(),
            theirs.len()
        );
    }

    let ours_path = dir.join(format!("{}.fchm.bin", c.name));
    std::fs::write(&ours_path, &ours).unwrap();
    let decoded_path = dir.join(format!("{}.decoded.json", c.name));
    run_peer(&[&"decode", &case_path, &ours_path, &decoded_path]);
    let decoded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&decoded_path).unwrap()).unwrap();
    let decoded: Vec<i32> = serde_json::from_value(decoded["symbols"].clone()).unwrap();
    assert!(
        decoded == c.symbols,
        "{}: CompressAI decoded our stream wrongly",
        c.name
    );

    assert!(
        our_decode(c, &theirs) == c.symbols,
        "{}: we decoded CompressAI's stream wrongly",
        c.name
    );
}

#[test]
fn byte_identical_with_compressai_both_ways() {
    let version = run_peer(&[&"version"]);
    eprintln!("CompressAI {}", version.trim());

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compressai_interop");
    std::fs::create_dir_all(&dir).unwrap();

    let mut cases: Vec<Case> = (1..=12).map(random_case).collect();
    cases.push(gaussian_case());
    let mut bypassed = 0;
    for c in &cases {
        let tables = c.tables.build();
        bypassed += c
            .symbols
            .iter()
            .zip(&c.indexes)
            .filter(|&(&s, &i)| {
                let off = tables.offset(i as usize).unwrap();
                let max = tables.cdf_length(i as usize).unwrap() as i32 - 2;
                s < off || s >= off + max
            })
            .count();
        check(c, &dir);
    }
    // The comparison is only meaningful if the bypass path was exercised.
    assert!(bypassed > 1000, "only {bypassed} bypass-coded symbols");
}
