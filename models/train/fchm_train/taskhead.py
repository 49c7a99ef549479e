"""The detector's back end, from P to its heat-map and box-size maps, as a
differentiable torch module: what the VFCN's task term (train.py) measures
distortion with, instead of treating every feature value alike.

It is interpreted node by node from the bundle's `task_back.onnx`, cut before
the peak picking (TopK and the gathers have no useful gradient). That part of
the graph has ten op types; any other is an error that names it. The three
upsamplings are TF's legacy ResizeBilinear (x2, `asymmetric`), which
`torch.nn.functional.interpolate` has no mode for, so it is written out here;
being a scale rather than fixed sizes, the module runs on crops of P too.
tests/python/test_taskhead.py checks it against onnxruntime on the full graph.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

# The head's outputs before their activations (sigmoid for the heat-map, a
# constant scale for the sizes), named as the converter names them.
HEATMAP_LOGITS = "tower_0/CenternetHead/centernet_cls_output/BiasAdd"
SIZE_LOGITS = "tower_0/CenternetHead/centernet_wh_output/BiasAdd"
# Box sizes enter the task distortion at this weight, relative to the heat-map
# term summed over classes: their logits are in pixels (errors of ~1 are
# harmless) where heat-map errors of 0.1 move a detection across the score cut.
SIZE_WEIGHT = 0.01


def upsample2_asymmetric(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear with TF's legacy coordinates: out[2k] = in[k],
    out[2k+1] = (in[k] + in[k+1]) / 2, the last row/column repeated."""
    for dim in (2, 3):
        n = x.shape[dim]
        nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
        shape = list(x.shape)
        shape[dim] *= 2
        x = torch.stack([x, (x + nxt) * 0.5], dim + 1).reshape(shape)
    return x


class TaskHead(nn.Module):
    """P [N, 24, H, W] (raw, not normalised) -> (heat-map logits [N, 80, H, W],
    size logits [N, 4, H, W]). Weights are frozen buffers."""

    def __init__(self, task_back: Path):
        super().__init__()
        full = onnx.shape_inference.infer_shapes(onnx.load(str(task_back)))
        model = onnx.utils.Extractor(full).extract_model(["P"], [HEATMAP_LOGITS, SIZE_LOGITS])
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in full.graph.value_info}
        shapes["P"] = [d.dim_value for d in full.graph.input[0].type.tensor_type.shape.dim]
        names = {}
        for i, init in enumerate(model.graph.initializer):
            names[init.name] = f"w{i}"
            self.register_buffer(f"w{i}", torch.from_numpy(numpy_helper.to_array(init).copy()), persistent=False)
        self._consts = names
        self._nodes = []
        for node in model.graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type not in _OPS:
                raise ValueError(f"{task_back}: op {node.op_type} (node {node.name}) is not supported by TaskHead")
            if node.op_type == "Resize":
                _check_upsample2(task_back, model, node, attrs, shapes)
            self._nodes.append((node.op_type, list(node.input), node.output[0], attrs))

    def _value(self, env: dict, name: str):
        return env[name] if name in env else getattr(self, self._consts[name])

    def forward(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        env = {"P": p}
        for op, inputs, out, attrs in self._nodes:
            env[out] = _OPS[op](self, env, inputs, attrs)
        return env[HEATMAP_LOGITS], env[SIZE_LOGITS]


def _check_upsample2(path: Path, model, node, attrs: dict, shapes: dict) -> None:
    """The Resize op is interpreted as upsample2_asymmetric: refuse any other."""
    if attrs.get("mode") != b"linear" or attrs.get("coordinate_transformation_mode") != b"asymmetric":
        raise ValueError(f"{path}: Resize {node.name} is not linear/asymmetric")
    sizes = next(i for i in model.graph.initializer if i.name == node.input[3])
    sizes = [int(v) for v in numpy_helper.to_array(sizes)]
    src = shapes.get(node.input[0], [])
    if len(src) != 4 or sizes != src[:2] + [2 * src[2], 2 * src[3]]:
        raise ValueError(f"{path}: Resize {node.name} from {src} to {sizes} is not a x2 upsampling")


def _conv(head, env, inputs, a):
    x, w = head._value(env, inputs[0]), head._value(env, inputs[1])
    b = head._value(env, inputs[2]) if len(inputs) > 2 and inputs[2] else None
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[0] != pads[2] or pads[1] != pads[3]:
        x, pads = F.pad(x, (pads[1], pads[3], pads[0], pads[2])), [0, 0, 0, 0]
    stride, dilation = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
    return F.conv2d(x, w, b, stride, (pads[0], pads[1]), dilation, a.get("group", 1))


def _binary(fn):
    return lambda head, env, inputs, a: fn(head._value(env, inputs[0]), head._value(env, inputs[1]))


_OPS = {
    "Conv": _conv,
    "Add": _binary(torch.add),
    "Mul": _binary(torch.mul),
    "Clip": lambda head, env, i, a: torch.clamp(
        head._value(env, i[0]), float(head._value(env, i[1])), float(head._value(env, i[2]))
    ),
    "Relu": lambda head, env, i, a: F.relu(head._value(env, i[0])),
    "Sigmoid": lambda head, env, i, a: torch.sigmoid(head._value(env, i[0])),
    "GlobalAveragePool": lambda head, env, i, a: head._value(env, i[0]).mean((2, 3), keepdim=True),
    "Concat": lambda head, env, i, a: torch.cat([head._value(env, n) for n in i], a["axis"]),
    "Resize": lambda head, env, i, a: upsample2_asymmetric(head._value(env, i[0])),
}


def task_distortion(head: TaskHead, p: torch.Tensor, p_hat: torch.Tensor) -> torch.Tensor:
    """How far the detector's reading of P̂ is from its reading of P: the
    squared heat-map error summed over classes (sigmoid, so confident
    background costs nothing to perturb) plus SIZE_WEIGHT times the box-size
    error where the heat-map peaks. Per position, averaged over the batch."""
    with torch.no_grad():
        cls, size = head(p)
        heat = torch.sigmoid(cls)
        where = heat.amax(1, keepdim=True)
    cls_hat, size_hat = head(p_hat)
    d_heat = ((torch.sigmoid(cls_hat) - heat) ** 2).sum(1).mean()
    d_size = (where * (size_hat - size) ** 2).mean()
    return d_heat + SIZE_WEIGHT * d_size
