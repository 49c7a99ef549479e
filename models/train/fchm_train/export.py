"""Export a trained VFCN into a bundle directory and write its manifest.

Schema: docs/bundle.md. Everything the Rust codec reads is written here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .detector import sha256_file
from .vfcn import FEATURE_CHANNELS, DecoderGraph, EncoderGraph, HyperEncoderGraph, Vfcn, scale_table

SCHEMA = "fchm-bundle/1"
OPSET = 17
FEATURE_HW = 128
Y_STRIDE = 1  # y is at the feature resolution, z at a quarter of it
# Graphs the camera runs; the server loads the rest.
EDGE_GRAPHS = ("front", "vfcn_enc", "vfcn_hyper_enc")


def bundle_id(files: dict[str, str]) -> str:
    """First 16 bytes (32 hex digits) of sha256 over the sorted `name sha256` lines."""
    text = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _export(module: torch.nn.Module, shape: tuple, path: Path, in_name: str, out_name: str):
    export_onnx(module, {in_name: shape}, [out_name], path)


def entropy_tables(net: torch.nn.Module) -> dict:
    """The integer CDF tables of a latent coded by `vfcn.code_latent` (docs/bundle.md)."""
    eb = net.entropy_bottleneck
    eb.update(force=True)
    gc = net.gaussian_conditional
    gc.update_scale_table(scale_table(), force=True)

    def tables(m):
        lengths = m._cdf_length.tolist()
        return {
            "cdfs": [row[:n] for row, n in zip(m._quantized_cdf.tolist(), lengths)],
            "cdf_lengths": lengths,
            "offsets": m._offset.tolist(),
        }

    return {
        "precision": 16,
        "z": {"medians": eb._get_medians().flatten().tolist(), **tables(eb)},
        "y": {"scale_table": scale_table().tolist(), **tables(gc)},
    }


def export_onnx(module: torch.nn.Module, inputs: dict, outputs: list, path: Path):
    """Export with named inputs (name -> shape), static shapes, opset 17."""
    module.eval()
    args = tuple(torch.zeros(shape) for shape in inputs.values())
    kwargs = dict(input_names=list(inputs), output_names=outputs, opset_version=OPSET, do_constant_folding=True)
    try:
        torch.onnx.export(module, args, str(path), dynamo=False, **kwargs)
    except TypeError:  # older torch without the `dynamo` switch
        torch.onnx.export(module, args, str(path), **kwargs)


def export_graphs(net: Vfcn, out: Path) -> dict:
    """Write vfcn_enc / vfcn_hyper_enc / vfcn_dec ONNX graphs, entropy tables and the integer hyper-synthesis."""
    cfg = net.cfg
    hw_y, hw_z = FEATURE_HW // Y_STRIDE, FEATURE_HW // (4 * Y_STRIDE)
    with torch.no_grad():
        _export(EncoderGraph(net), (1, FEATURE_CHANNELS, FEATURE_HW, FEATURE_HW), out / "vfcn_enc.onnx", "x", "y")
        _export(HyperEncoderGraph(net), (1, cfg.m, hw_y, hw_y), out / "vfcn_hyper_enc.onnx", "y", "z")
        _export(DecoderGraph(net), (1, cfg.m, hw_y, hw_y), out / "vfcn_dec.onnx", "y_hat", "x_hat")

        entropy = entropy_tables(net)
    (out / "entropy.json").write_text(json.dumps(entropy))
    (out / "hyper_synth.json").write_text(json.dumps(net.h_s.export()))
    return {
        "vfcn_enc": {"file": "vfcn_enc.onnx", "inputs": {"x": [1, FEATURE_CHANNELS, FEATURE_HW, FEATURE_HW]},
                     "outputs": {"y": [1, cfg.m, hw_y, hw_y]}},
        "vfcn_hyper_enc": {"file": "vfcn_hyper_enc.onnx", "inputs": {"y": [1, cfg.m, hw_y, hw_y]},
                           "outputs": {"z": [1, cfg.nz, hw_z, hw_z]}},
        "vfcn_dec": {"file": "vfcn_dec.onnx", "inputs": {"y_hat": [1, cfg.m, hw_y, hw_y]},
                     "outputs": {"x_hat": [1, FEATURE_CHANNELS, FEATURE_HW, FEATURE_HW]}},
    }  # fmt: skip


DETECTOR_GRAPHS = {
    "front": {"file": "front.onnx", "inputs": {"image": [1, 3, 512, 512]},
              "outputs": {"P": [1, FEATURE_CHANNELS, FEATURE_HW, FEATURE_HW]}},
    "task_back": {"file": "task_back.onnx", "inputs": {"P": [1, FEATURE_CHANNELS, FEATURE_HW, FEATURE_HW]},
                  "outputs": {"detections": [1, 100, 6]}},
    "detector_full": {"file": "detector_full.onnx", "inputs": {"image": [1, 3, 512, 512]},
                      "outputs": {"detections": [1, 100, 6]}},
}  # fmt: skip


def write_manifest(out: Path, name: str, version: str, net: Vfcn, graphs: dict, rate_table: list, extra: dict) -> dict:
    graphs = {**DETECTOR_GRAPHS, **graphs}
    for key, g in graphs.items():
        g["role"] = "edge" if key in EDGE_GRAPHS else "server"
    files = {g["file"]: sha256_file(out / g["file"]) for g in graphs.values()}
    for aux in ("entropy.json", "hyper_synth.json"):
        files[aux] = sha256_file(out / aux)
    cfg = net.cfg
    manifest = {
        "schema": SCHEMA,
        "name": name,
        "version": version,
        "bundle_id": bundle_id(files),
        "input": {
            "width": 512, "height": 512, "layout": "NCHW", "colour": "RGB", "range": [0.0, 255.0],
            "resize": "stretch-bilinear",
        },
        "feature": {"name": "P", "shape": [FEATURE_CHANNELS, FEATURE_HW, FEATURE_HW]},
        "latent": {
            "y": [cfg.m, FEATURE_HW // Y_STRIDE, FEATURE_HW // Y_STRIDE],
            "z": [cfg.nz, FEATURE_HW // (4 * Y_STRIDE), FEATURE_HW // (4 * Y_STRIDE)],
        },
        "graphs": graphs,
        "entropy": "entropy.json",
        "hyper_synth": "hyper_synth.json",
        "ivn": {"gain_min": cfg.gain_min, "gain_max": cfg.gain_max, "rate_table": rate_table},
        "files": files,
        **extra,
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
