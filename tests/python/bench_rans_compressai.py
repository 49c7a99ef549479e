#!/usr/bin/env python3
"""Times CompressAI's rANS on the workload written by `cargo bench -p fchm-codec --bench rans`.

    python3 tests/python/bench_rans_compressai.py [DIR] [--criterion TARGET_DIR/criterion]

DIR defaults to $FCHM_RANS_BENCH_DIR or <tmp>/fchm-rans-bench. Checks that
CompressAI's stream equals ours (fchm.bin) and decodes to the same symbols, then
prints symbols/s for encode and decode. With --criterion, also reads the Rust
bench's median times and prints the ratio (medians on both sides: the figures
are meant to be taken on a shared machine, where means chase load spikes).

Timings are of the Python API calls as an application makes them: pybind11
converts the Python lists to std::vector inside each call and that is part of
using CompressAI from Python. To show how much of it is conversion, the encoder
is also timed as BufferedRansEncoder.encode_with_indexes (conversion + queueing)
and flush (the rANS loop alone, pure C++).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rans_peer import load_ans  # noqa: E402


def median_of(fn, repeats):
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def criterion_median(root, bench):
    path = os.path.join(root, "rans_1M_gaussian", bench, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] * 1e-9
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    default_dir = os.environ.get(
        "FCHM_RANS_BENCH_DIR", os.path.join(tempfile.gettempdir(), "fchm-rans-bench")
    )
    ap.add_argument("dir", nargs="?", default=default_dir)
    ap.add_argument("--criterion", help="criterion output dir (e.g. target/criterion)")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()

    ans = load_ans()
    with open(os.path.join(args.dir, "tables.json")) as f:
        t = json.load(f)
    cdfs, lengths, offsets = t["cdfs"], t["cdf_lengths"], t["offsets"]
    indexes = np.fromfile(os.path.join(args.dir, "indexes.i32"), dtype="<i4").tolist()
    symbols = np.fromfile(os.path.join(args.dir, "symbols.i32"), dtype="<i4").tolist()
    with open(os.path.join(args.dir, "fchm.bin"), "rb") as f:
        ours = f.read()
    n = len(symbols)

    enc_s, stream = median_of(
        lambda: ans.RansEncoder().encode_with_indexes(symbols, indexes, cdfs, lengths, offsets),
        args.repeats,
    )
    if stream != ours:
        sys.exit("CompressAI's stream differs from fchm.bin")

    queue_times, flush_times = [], []
    for _ in range(args.repeats):
        enc = ans.BufferedRansEncoder()
        t0 = time.perf_counter()
        enc.encode_with_indexes(symbols, indexes, cdfs, lengths, offsets)
        t1 = time.perf_counter()
        if enc.flush() != ours:
            sys.exit("CompressAI's buffered stream differs from fchm.bin")
        queue_times.append(t1 - t0)
        flush_times.append(time.perf_counter() - t1)
    queue_s, flush_s = statistics.median(queue_times), statistics.median(flush_times)

    dec_s, decoded = median_of(
        lambda: ans.RansDecoder().decode_with_indexes(stream, indexes, cdfs, lengths, offsets),
        args.repeats,
    )
    if decoded != symbols:
        sys.exit("CompressAI decoded different symbols")

    print(f"{n} symbols, {len(stream)} bytes; CompressAI stream identical to fchm's")
    print(f"medians of {args.repeats} runs")
    print(f"compressai encode: {enc_s * 1e3:8.2f} ms  {n / enc_s / 1e6:7.2f} Msym/s")
    print(
        f"  of which conversion + queueing {queue_s * 1e3:.2f} ms,"
        f" rANS flush {flush_s * 1e3:.2f} ms ({n / flush_s / 1e6:.2f} Msym/s)"
    )
    print(f"compressai decode: {dec_s * 1e3:8.2f} ms  {n / dec_s / 1e6:7.2f} Msym/s")
    if args.criterion:
        for name, theirs in (("encode", enc_s), ("decode", dec_s)):
            mine = criterion_median(args.criterion, name)
            if mine is None:
                print(f"fchm {name}: no criterion estimate under {args.criterion}")
                continue
            print(
                f"fchm       {name}: {mine * 1e3:8.2f} ms  {n / mine / 1e6:7.2f} Msym/s"
                f"  ({theirs / mine:.1f}x CompressAI)"
            )


if __name__ == "__main__":
    main()
