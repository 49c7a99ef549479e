"""The detector head as a torch module (fchm_train.taskhead) and the VFCN's task term.

Uses $FCHM_TEST_BUNDLE (the committed bundle with its detector graphs); `.ci/run` sets it.
"""

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fchm_train.detector import load_image_512
from fchm_train.refcodec import run, session
from fchm_train.taskhead import HEATMAP_LOGITS, SIZE_LOGITS, TaskHead, task_distortion
from fchm_train.train import TrainConfig, train
from fchm_train.vfcn import VfcnConfig


@pytest.fixture(scope="module")
def bundle() -> Path:
    path = os.environ.get("FCHM_TEST_BUNDLE")
    assert path, "FCHM_TEST_BUNDLE is not set: see .ci/run for how the bundles are made"
    return Path(path)


@pytest.fixture(scope="module")
def p(bundle) -> np.ndarray:
    return run(session(bundle / "front.onnx"), load_image_512("/usr/share/darknet/data/horses.jpg"))


def test_head_matches_onnxruntime_on_the_real_graph(bundle, p):
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(bundle / "task_back.onnx")))
    cut = onnx.utils.Extractor(graph).extract_model(["P"], [HEATMAP_LOGITS, SIZE_LOGITS])
    want = ort.InferenceSession(cut.SerializeToString()).run(None, {"P": p})
    with torch.no_grad():
        got = TaskHead(bundle / "task_back.onnx")(torch.from_numpy(p))
    for w, g, name in zip(want, got, ("heat-map", "sizes")):
        assert g.shape == w.shape, name
        # float32 through ~100 layers; the logits reach |x| ~ 20
        np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=1e-3, err_msg=name)
    # and the heat-map carries detections (horses), so the comparison is not of zeros
    assert torch.sigmoid(got[0]).max() > 0.5


def test_head_runs_on_crops(bundle, p):
    with torch.no_grad():
        heat, sizes = TaskHead(bundle / "task_back.onnx")(torch.from_numpy(p[:, :, 16:80, 32:96]))
    assert heat.shape == (1, 80, 64, 64) and sizes.shape == (1, 4, 64, 64)


def test_an_unsupported_op_is_refused_by_name(bundle, tmp_path):
    model = onnx.load(str(bundle / "task_back.onnx"))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Elu"
    bad = tmp_path / "task_back.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ValueError, match=f"op Elu \\(node {relu.name}\\)"):
        TaskHead(bad)


def test_task_distortion_is_zero_for_the_same_features_and_has_gradients(bundle, p):
    head = TaskHead(bundle / "task_back.onnx")
    x = torch.from_numpy(p[:, :, :64, :64])
    assert task_distortion(head, x, x.clone()).item() == 0.0
    rng = torch.Generator().manual_seed(0)
    small = x + 0.05 * torch.randn(x.shape, generator=rng)
    large = (x + 0.5 * torch.randn(x.shape, generator=rng)).requires_grad_()
    d_large = task_distortion(head, x, large)
    assert 0 < task_distortion(head, x, small).item() < d_large.item()
    d_large.backward()
    assert large.grad.abs().sum() > 0


def test_training_with_the_task_term(bundle, p):
    feats = np.repeat(p.astype(np.float16), 2, axis=0)
    cfg = TrainConfig(steps=2, batch=2, crop=32, log_every=1, task_beta=100.0)
    logs = []
    tiny = VfcnConfig(n=8, m=24, nz=4, nh=8, nd=8)
    net = train(feats, tiny, cfg, log=logs.append, task_back=bundle / "task_back.onnx")
    assert not net.training and len(logs) == 2
    task = [float(line.split(" task ")[1].split()[0]) for line in logs]
    assert all(t > 0 for t in task), logs
    with pytest.raises(ValueError, match="task_back"):
        train(feats, tiny, cfg)
