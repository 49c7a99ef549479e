"""Checks for the COCO detector setup (models/train/fchm_train/{tfjs2onnx,detector}.py).

The graphs are converted once per session into a temporary directory from the
pinned npm tarball: $FCHM_HUMAN_TGZ if set, else models/cache/vladmandic-human-
3.3.6.tgz, else fetched with `npm pack` into models/cache/ (skipped if that fails).
Photos: Debian package `darknet` (/usr/share/darknet/data/*.jpg).

Tolerances
* front.onnx + task_back.onnx vs detector_full.onnx: max |diff| <= 1e-5 on every
  detection value, classes identical (observed: 0.0, bit-identical).
* vs the TensorFlow-route references (tests/data/detector_reference/, see the
  README there): classes and peak positions identical, scores <= 1e-4, box
  coordinates <= 1e-2 px, heat-map / box-size checksums <= 1e-5 relative
  (observed with onnxruntime 1.32 on x86-64: 0.0 everywhere).
"""

import hashlib
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "train"))

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("PIL")

from fchm_train import detector as D  # noqa: E402
from fchm_train import tfjs2onnx as T  # noqa: E402

PHOTOS = sorted(Path("/usr/share/darknet/data").glob("*.jpg"))
REF_DIR = ROOT / "tests" / "data" / "detector_reference"
REFS = sorted(REF_DIR.glob("*.json"))

SPLIT_TOL = 1e-5
SCORE_TOL = 1e-4
BOX_TOL_PX = 1e-2
CHECKSUM_RTOL = 1e-5


@pytest.fixture(scope="session")
def tarball():
    env = os.environ.get("FCHM_HUMAN_TGZ")
    if env:
        return Path(env)
    try:
        return D.fetch_tarball(D.DEFAULT_CACHE)
    except D.DetectorSetupError as e:
        pytest.skip(f"detector tarball unavailable: {e}")


@pytest.fixture(scope="session")
def graphs(tarball, tmp_path_factory):
    out = tmp_path_factory.mktemp("detector")
    hashes = D.setup(out, tarball)
    return out, hashes


@pytest.fixture(scope="session")
def results(graphs):
    """photo name -> outputs of the full graph and of front -> task_back."""
    out_dir, _ = graphs
    full = D.ort_session(out_dir / "detector_full.onnx")
    front = D.ort_session(out_dir / "front.onnx")
    back = D.ort_session(out_dir / "task_back.onnx")
    res = {}
    for photo in PHOTOS:
        x = D.load_image_512(photo)
        det, kp, wh = full.run(["detections", "keypoints", "wh"], {"image": x})
        p = front.run(["P"], {"image": x})[0]
        split = back.run(["detections"], {"P": p})[0]
        res[photo.name] = dict(x=x, det=det, kp=kp, wh=wh, p=p, split=split)
    return res


def _need_photos():
    if not PHOTOS:
        pytest.skip("Debian package darknet (its sample photos) is not installed")


# ---------------------------------------------------------------- (a) split
def test_graph_interfaces(graphs):
    import onnx

    out_dir, _ = graphs
    want = {"detector_full.onnx": ({"image": [1, 3, 512, 512]},
                                   {"detections": [1, 100, 6], "keypoints": [1, 80, 128, 128],
                                    "wh": [1, 4, 128, 128]}),
            "front.onnx": ({"image": [1, 3, 512, 512]}, {"P": [1, 24, 128, 128]}),
            "task_back.onnx": ({"P": [1, 24, 128, 128]}, {"detections": [1, 100, 6]})}
    allowed = {"Conv", "Clip", "Relu", "Add", "Mul", "Sub", "Div", "GlobalAveragePool", "ReduceMean",
               "Resize", "Sigmoid", "MaxPool", "TopK", "Gather", "Reshape", "Transpose", "Concat",
               "Cast", "Equal", "Unsqueeze", "Slice", "Floor"}

    def shapes(vis):
        return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in vis}

    for name, (ins, outs) in want.items():
        m = onnx.load(out_dir / name)
        assert m.opset_import[0].version == 17
        assert shapes(m.graph.input) == ins
        assert shapes(m.graph.output) == outs
        assert {n.op_type for n in m.graph.node} <= allowed
        assert all(t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
                   for t in m.graph.initializer)
        # weights are float32; int64 only for shapes, axes, k and the like
        assert all(t.data_type == onnx.TensorProto.FLOAT for t in m.graph.initializer
                   if len(t.dims) == 4)


def test_front_plus_back_equals_full(results):
    _need_photos()
    for name, r in results.items():
        assert r["p"].shape == (1, 24, 128, 128)
        diff = float(np.abs(r["det"] - r["split"]).max())
        assert diff <= SPLIT_TOL, f"{name}: front+task_back differs from full by {diff}"
        np.testing.assert_array_equal(r["det"][..., 5], r["split"][..., 5])


# ---------------------------------------------------------- (b) determinism
def test_conversion_is_deterministic(tarball, graphs):
    _, hashes = graphs
    again = {name: D.sha256_bytes(data) for name, data in D.convert_graphs(tarball).items()}
    assert again == hashes


# --------------------------------------------------- (c) TF-route references
@pytest.mark.parametrize("ref_path", REFS, ids=[p.stem for p in REFS])
def test_matches_tf_reference(results, ref_path):
    ref = json.loads(ref_path.read_text())
    photo = Path("/usr/share/darknet/data") / ref["photo"]
    if not photo.exists():
        pytest.skip(f"{photo} missing")
    r = results[ref["photo"]]
    assert hashlib.sha256(r["x"].tobytes()).hexdigest() == ref["input_sha256"], \
        "preprocessing (load_image_512) no longer gives the reference input (Pillow version?)"

    head = np.array(ref["detections_head"])
    got = r["det"][0, :len(head)].astype(np.float64)
    np.testing.assert_array_equal(got[:, 5], head[:, 5])
    np.testing.assert_allclose(got[:, 4], head[:, 4], rtol=0, atol=SCORE_TOL)
    np.testing.assert_allclose(got[:, :4], head[:, :4], rtol=0, atol=BOX_TOL_PX)

    kp = r["kp"][0].transpose(1, 2, 0)                          # -> y, x, class like TF
    assert list(np.unravel_index(int(np.argmax(kp)), kp.shape)) == ref["keypoints"]["argmax_yxc"]
    assert kp.max() == pytest.approx(ref["keypoints"]["max"], abs=SCORE_TOL)
    assert kp.astype(np.float64).sum() == pytest.approx(ref["keypoints"]["sum"], rel=CHECKSUM_RTOL)
    wh = r["wh"].astype(np.float64)
    assert wh.sum() == pytest.approx(ref["wh"]["sum"], rel=CHECKSUM_RTOL)
    assert np.abs(wh).sum() == pytest.approx(ref["wh"]["abs_sum"], rel=CHECKSUM_RTOL)

    final = D.postprocess(r["det"])
    assert [d["label"] for d in final] == [d["label"] for d in ref["postprocessed"]]
    for a, b in zip(final, ref["postprocessed"]):
        assert a["score"] == pytest.approx(b["score"], abs=SCORE_TOL)
        np.testing.assert_allclose(a["box"], b["box"], rtol=0, atol=BOX_TOL_PX)


# ------------------------------------------------------------- (d) sanity
@pytest.mark.parametrize("photo, must_have", [
    ("dog.jpg", [{"dog"}, {"bicycle", "car"}]),
    ("horses.jpg", [{"horse"}]),
    ("person.jpg", [{"person"}]),
    ("eagle.jpg", [{"bird"}]),
    ("giraffe.jpg", [{"giraffe"}]),
])
def test_finds_the_obvious_objects(results, photo, must_have):
    if photo not in results:
        pytest.skip(f"{photo} missing")
    labels = {d["label"] for d in D.postprocess(results[photo]["det"])}
    for options in must_have:
        assert labels & options, f"{photo}: none of {options} in {labels}"


def test_horses_finds_several_horses(results):
    if "horses.jpg" not in results:
        pytest.skip("horses.jpg missing")
    horses = [d for d in D.postprocess(results["horses.jpg"]["det"]) if d["label"] == "horse"]
    assert len(horses) >= 3


# ------------------------------------------------------- unit-level checks
def test_same_padding_is_tf_style():
    assert T._same_pads(512, 3, 2, 1) == (0, 1, 256)     # odd pixel goes at the end
    assert T._same_pads(128, 3, 1, 1) == (1, 1, 128)
    assert T._same_pads(5, 3, 2, 1) == (1, 1, 3)
    assert T._same_pads(128, 5, 2, 1) == (1, 2, 64)
    assert T._same_pads(8, 3, 1, 2) == (2, 2, 8)         # dilation widens the kernel


def test_unsupported_op_is_named():
    model = T.TfjsModel(nodes=[
        {"name": "x", "op": "Placeholder",
         "attr": {"shape": {"shape": {"dim": [{"size": "1"}, {"size": "4"}]}},
                  "dtype": {"type": "DT_FLOAT"}}},
        {"name": "y", "op": "Softmax", "input": ["x"]}], weights={})
    with pytest.raises(T.ConversionError, match="Softmax"):
        T.Converter(model).convert({"x": "x"}, {"y": "y"})


def test_unsupported_fused_op_is_named(tarball):
    model = D.read_model(tarball)
    node = next(n for n in model.nodes if n["op"] == "_FusedConv2D")
    node["attr"]["fused_ops"] = {"list": {"s": ["Qmlhc0FkZA==", "RWx1"]}}   # BiasAdd, Elu
    with pytest.raises(T.ConversionError, match="Elu"):
        T.Converter(model).convert({D.TF_IMAGE: "image"}, {D.TF_DETECTIONS: "detections"})


def test_cut_must_separate_the_graph(tarball):
    model = D.read_model(tarball)
    # The FPN head taps expanded_conv_3/expand (c2_reverse), upstream of this cut,
    # so detections would still need the image: the converter must refuse.
    with pytest.raises(T.ConversionError, match="separate"):
        T.Converter(model).convert({"tower_0/MobilenetV3/expanded_conv_4/add": "Q"},
                                   {D.TF_DETECTIONS: "detections"})


def test_postprocess_rules():
    rows = np.zeros((100, 6), np.float64)
    rows[0] = [10, 10, 110, 110, 0.9, 0]      # person
    rows[1] = [12, 12, 112, 112, 0.8, 16]     # same place, other class: suppressed (class-agnostic)
    rows[2] = [200, 200, 300, 300, 0.7, 2]    # kept
    rows[3] = [0, 0, 50, 50, 0.2, 1]          # score == 0.2: not > 0.2, dropped
    rows[4] = [400, 400, 500, 500, 0.3, 17]   # kept
    out = D.postprocess(rows[None])
    assert [d["class"] for d in out] == [0, 2, 17]
    assert [d["label"] for d in out] == ["person", "car", "horse"]
    assert len(D.postprocess(rows[None], max_det=2)) == 2
    # IoU exactly at the threshold suppresses (>=), as tf.image.nonMaxSuppression
    rows2 = np.zeros((2, 6), np.float64)
    rows2[0] = [0, 0, 10, 10, 0.9, 0]
    rows2[1] = [0, 0, 10, 4, 0.8, 0]          # IoU = 40/100 = 0.4
    assert len(D.postprocess(rows2, iou=0.4)) == 1
    assert len(D.postprocess(rows2, iou=0.41)) == 2
    scaled = D.postprocess(rows[None], image_size=(1024, 256))[0]["box"]
    assert scaled == [20.0, 5.0, 220.0, 55.0]


def test_manifest_pin_mismatch_fails_and_writes_nothing(tarball, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"front.onnx": "0" * 64}}))
    with pytest.raises(D.DetectorSetupError, match="front.onnx"):
        D.setup(tmp_path, tarball)
    assert not list(tmp_path.glob("*.onnx"))


def test_manifest_pin_match_passes(tarball, graphs, tmp_path):
    _, hashes = graphs
    (tmp_path / "manifest.json").write_text(json.dumps({"files": hashes}))
    assert D.setup(tmp_path, tarball) == hashes


def test_tarball_sha_mismatch_is_refused(tmp_path):
    bad = tmp_path / D.TARBALL_NAME
    with tarfile.open(bad, "w:gz"):
        pass
    with pytest.raises(D.DetectorSetupError, match="sha256"):
        D.read_model(bad)


def test_load_image_512(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (640, 480), (255, 0, 10)).save(path)
    x = D.load_image_512(path)
    assert x.shape == (1, 3, 512, 512) and x.dtype == np.float32
    assert x[0, :, 100, 100].tolist() == [255.0, 0.0, 10.0]      # RGB order, 0..255
