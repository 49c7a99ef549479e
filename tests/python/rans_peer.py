#!/usr/bin/env python3
"""CompressAI side of the rANS interoperability test (crates/fchm-codec/tests/compressai_interop.rs).

    rans_peer.py version
    rans_peer.py encode CASE.json OUT.bin
    rans_peer.py decode CASE.json IN.bin OUT.json

CASE.json: {"cdfs": [[int]], "cdf_lengths": [int], "offsets": [int],
            "symbols": [int], "indexes": [int], "chunks": [int] (optional)}

Without "chunks" the one-shot APIs are used (RansEncoder.encode_with_indexes,
RansDecoder.decode_with_indexes). With "chunks" (sizes summing to the symbol
count) the streaming ones are: one BufferedRansEncoder.encode_with_indexes call
per chunk then flush, or set_stream then one decode_stream call per chunk.
decode writes {"symbols": [int]}.

Exit status 3 means compressai is missing.
"""

import glob
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import sys

INSTALL_HINT = 'pip install compressai "numpy<2"'


def load_ans():
    """Returns compressai.ans.

    `import compressai.ans` first runs compressai/__init__.py, which imports torch
    (seconds per process); the test starts this script many times, so load the
    extension module directly and fall back to the normal import.
    """
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        sys.stderr.write(
            f"compressai is not installed for {sys.executable}; install it with: {INSTALL_HINT}\n"
        )
        sys.exit(3)
    for pkg_dir in spec.submodule_search_locations:
        for path in glob.glob(os.path.join(pkg_dir, "ans.*")):
            if not path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                continue
            loader = importlib.machinery.ExtensionFileLoader("compressai.ans", path)
            mspec = importlib.util.spec_from_file_location("compressai.ans", path, loader=loader)
            module = importlib.util.module_from_spec(mspec)
            loader.exec_module(module)
            return module
    import compressai.ans  # noqa: E402

    return compressai.ans


def check_case(case):
    n = len(case["symbols"])
    chunks = case.get("chunks") or [n]
    if sum(chunks) != n or len(case["indexes"]) != n:
        raise SystemExit("case: chunks, symbols and indexes disagree in length")
    # CompressAI sizes its output buffer as one word per queued symbol, but the
    # final state alone takes two words: flushing fewer than 4 symbols can write
    # before the buffer (heap corruption, or a crash for an empty flush).
    if n < 4:
        raise SystemExit("case: CompressAI's encoder overflows its buffer below 4 symbols")
    return chunks


def tables(case):
    return case["cdfs"], case["cdf_lengths"], case["offsets"]


def encode(ans, case):
    chunks = check_case(case)
    cdfs, lengths, offsets = tables(case)
    if "chunks" not in case:
        return ans.RansEncoder().encode_with_indexes(
            case["symbols"], case["indexes"], cdfs, lengths, offsets
        )
    enc = ans.BufferedRansEncoder()
    at = 0
    for size in chunks:
        enc.encode_with_indexes(
            case["symbols"][at : at + size], case["indexes"][at : at + size], cdfs, lengths, offsets
        )
        at += size
    return enc.flush()


def decode(ans, case, data):
    chunks = check_case(case)
    cdfs, lengths, offsets = tables(case)
    dec = ans.RansDecoder()
    if "chunks" not in case:
        return dec.decode_with_indexes(data, case["indexes"], cdfs, lengths, offsets)
    dec.set_stream(data)
    out = []
    at = 0
    for size in chunks:
        out.extend(dec.decode_stream(case["indexes"][at : at + size], cdfs, lengths, offsets))
        at += size
    return out


def main(argv):
    if len(argv) >= 1 and argv[0] == "version":
        load_ans()
        print(importlib.metadata.version("compressai"))
        return
    if len(argv) == 3 and argv[0] == "encode":
        ans = load_ans()
        with open(argv[1]) as f:
            case = json.load(f)
        with open(argv[2], "wb") as f:
            f.write(encode(ans, case))
        return
    if len(argv) == 4 and argv[0] == "decode":
        ans = load_ans()
        with open(argv[1]) as f:
            case = json.load(f)
        with open(argv[2], "rb") as f:
            data = f.read()
        with open(argv[3], "w") as f:
            json.dump({"symbols": decode(ans, case, data)}, f)
        return
    sys.stderr.write(__doc__)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
