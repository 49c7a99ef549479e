"""The exported bundles in Python: the reference round trip and the export's own invariants.

Uses $FCHM_TEST_BUNDLE (the committed bundle) and $FCHM_SMOKE_BUNDLE (a fresh
smoke build); `.ci/run` sets both.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fchm_train.detector import load_image_512, postprocess
from fchm_train.export import bundle_id
from fchm_train.intnet import HyperSynthesis, IntNet
from fchm_train.refcodec import RefCodec, run, session


@pytest.fixture(scope="module", params=["FCHM_TEST_BUNDLE", "FCHM_SMOKE_BUNDLE"])
def bundle(request) -> Path:
    """The committed bundle (after the detector setup) and a freshly built smoke bundle."""
    path = os.environ.get(request.param)
    assert path, f"{request.param} is not set: see .ci/run for how the bundles are made"
    return Path(path)


def test_round_trip_through_entropy_tables_reproduces_features_and_detections(bundle):
    codec = RefCodec(bundle)
    p = run(session(bundle / "front.onnx"), load_image_512("/usr/share/darknet/data/dog.jpg"))
    gain = codec.manifest["ivn"]["gain_min"] * 8
    enc, sent = codec.encode(p, gain)
    assert enc.nbytes > 0
    p_hat, got = codec.decode(enc)
    # the decoder recovers exactly the symbols and (integer) tables the encoder used
    for k in ("z_sym", "y_sym", "idx", "mean"):
        np.testing.assert_array_equal(got[k], sent[k], err_msg=k)
    # and P̂ equals decoding the same symbols without any entropy coding
    y_hat = (sent["y_sym"].astype(np.float32) + sent["mean"]).astype(np.float32)
    direct = run(codec.dec, y_hat[None])
    span = np.float32(np.float32(enc.fmax) - np.float32(enc.fmin))
    direct = (direct / np.float32(gain) + np.float32(0.5)) * span + np.float32(enc.fmin)
    np.testing.assert_array_equal(p_hat, direct)
    back = session(bundle / "task_back.onnx")
    assert postprocess(run(back, p_hat)[0]) == postprocess(run(back, direct)[0])


def test_more_gain_costs_more_bits(bundle):
    codec = RefCodec(bundle)
    p = run(session(bundle / "front.onnx"), load_image_512("/usr/share/darknet/data/horses.jpg"))
    ivn = codec.manifest["ivn"]
    low, _ = codec.encode(p, ivn["gain_min"])
    high, _ = codec.encode(p, ivn["gain_max"])
    assert high.nbytes > 2 * low.nbytes


def test_manifest_pins_every_file(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    for g in m["graphs"].values():
        assert g["file"] in m["files"]
    assert bundle_id(m["files"]) == m["bundle_id"]
    from fchm_train.export import sha256_file

    for name, digest in m["files"].items():
        assert sha256_file(bundle / name) == digest, name


def test_integer_network_matches_its_training_forward():
    torch.manual_seed(0)
    hs = HyperSynthesis(cz=4, hidden=8, m=3, levels=64)
    for p in hs.parameters():
        torch.nn.init.normal_(p, std=0.3)
    z = torch.randint(-6, 7, (1, 4, 4, 4)).float()
    with torch.no_grad():
        mean, idx = hs(z)
    m2, i2 = IntNet(hs.export()).run(z[0].numpy().astype(np.int64))
    # float32 accumulation in torch can differ from exact int64 by one rounding step
    assert np.abs(mean[0].numpy() - m2).max() <= 1 / 256 + 1e-6
    assert (idx[0].numpy() != i2).mean() < 0.01
