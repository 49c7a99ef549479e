//! rANS throughput on 1M symbols from CompressAI-style Gaussian tables.
//!
//! The workload is also written to `$FCHM_RANS_BENCH_DIR` (default: the system
//! temp dir's `fchm-rans-bench/`) so that `tests/python/bench_rans_compressai.py`
//! can time CompressAI on exactly the same tables, indexes and symbols and
//! check that it produces the same bytes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::path::PathBuf;

use common::{gaussian_tables, Rng};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fchm_codec::rans::{RansDecoder, RansEncoder};

const SYMBOLS: usize = 1_000_000;
/// Table indexes 0..=40 are scales 0.11..~15: where the latents of a trained
/// hyperprior model sit (the widest tables, up to scale 256, are rare in
/// practice and would only flatter us against CompressAI's linear CDF search).
const MAX_INDEX: u64 = 40;

fn bench_dir() -> PathBuf {
    std::env::var_os("FCHM_RANS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("fchm-rans-bench"))
}

fn write_i32s(path: PathBuf, v: &[i32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn rans(c: &mut Criterion) {
    let raw = gaussian_tables();
    let tables = raw.build();
    let mut rng = Rng::new(2024);
    let indexes: Vec<i32> = (0..SYMBOLS)
        .map(|_| rng.below(MAX_INDEX + 1) as i32)
        .collect();
    let symbols: Vec<i32> = indexes
        .iter()
        .map(|&i| raw.sample(&mut rng, i as usize))
        .collect();

    let mut enc = RansEncoder::new();
    enc.encode_with_indexes(&symbols, &indexes, &tables)
        .unwrap();
    let bytes = enc.flush();

    let dir = bench_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let tables_json = serde_json::json!({
        "cdfs": raw.cdfs, "cdf_lengths": raw.cdf_lengths, "offsets": raw.offsets,
    });
    std::fs::write(dir.join("tables.json"), tables_json.to_string()).unwrap();
    write_i32s(dir.join("indexes.i32"), &indexes);
    write_i32s(dir.join("symbols.i32"), &symbols);
    std::fs::write(dir.join("fchm.bin"), &bytes).unwrap();
    eprintln!(
        "workload in {}: {SYMBOLS} symbols, {} bytes ({:.3} bits/symbol)",
        dir.display(),
        bytes.len(),
        bytes.len() as f64 * 8.0 / SYMBOLS as f64
    );

    let mut g = c.benchmark_group("rans_1M_gaussian");
    g.throughput(Throughput::Elements(SYMBOLS as u64));
    g.sample_size(20);
    g.bench_function("encode", |b| {
        let mut enc = RansEncoder::new();
        b.iter(|| {
            enc.encode_with_indexes(black_box(&symbols), black_box(&indexes), &tables)
                .unwrap();
            enc.flush()
        })
    });
    g.bench_function("decode", |b| {
        let mut out = Vec::with_capacity(SYMBOLS);
        b.iter(|| {
            out.clear();
            let mut dec = RansDecoder::new(black_box(&bytes)).unwrap();
            dec.decode_with_indexes_into(black_box(&indexes), &tables, &mut out)
                .unwrap();
            dec.finish().unwrap();
            out.len()
        })
    });
    g.finish();

    let mut out = Vec::new();
    let mut dec = RansDecoder::new(&bytes).unwrap();
    dec.decode_with_indexes_into(&indexes, &tables, &mut out)
        .unwrap();
    assert!(out == symbols, "benchmark stream does not round-trip");
}

criterion_group!(benches, rans);
criterion_main!(benches);
