//! Integer hyper-synthesis of the reference bundle (`models/centernet-vfcn`)
//! on one 512×512 frame's hyper-latent: the per-frame cost every encoder and
//! decoder pays before it can code the latent.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::Rng;
use criterion::{criterion_group, criterion_main, Criterion};
use fchm_codec::hyper::HyperSynthesis;

fn hyper(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/centernet-vfcn/hyper_synth.json"
    );
    let net = HyperSynthesis::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The bundle's 512×512 input gives a 32×32 hyper-latent. Symbols of a
    // trained model are small and mostly zero; this mix keeps the zero-skip
    // honest without making every tap free.
    let (h, w) = (32, 32);
    let mut rng = Rng::new(7);
    let z: Vec<i32> = (0..net.in_channels() * h * w)
        .map(|_| {
            if rng.below(3) == 0 {
                rng.range_i32(-6, 6)
            } else {
                0
            }
        })
        .collect();
    let mut g = c.benchmark_group("hyper_synthesis");
    g.sample_size(20);
    g.bench_function("centernet-vfcn 32x32", |b| {
        b.iter(|| net.run(black_box(&z), h, w).unwrap())
    });
    g.finish();
}

criterion_group!(benches, hyper);
criterion_main!(benches);
