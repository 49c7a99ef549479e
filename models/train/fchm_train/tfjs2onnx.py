"""A small TF.js graph-model -> ONNX converter, written for one model.

Scope: exactly the ops used by the CenterNet/MobileNetV3 detector shipped in the
npm package ``@vladmandic/human`` (``models/centernet.json``).  Anything else
raises :class:`ConversionError` naming the op, so a different graph fails
loudly instead of converting wrongly.  It needs only numpy and ``onnx``: no
TensorFlow on a user's machine.

How it works
------------
* :func:`load_tfjs` reads the graph JSON and decodes the weights manifest
  (float16-quantised weights -> float32, int32 constants as they are).
* :class:`Converter` walks the TF graph in topological order and keeps, for every
  TF tensor, a record (:class:`Tensor`) of its ONNX name, its *logical* TF shape
  (NHWC for images), its dtype, and whether the ONNX value is stored NCHW.
  Convolution-like ops produce NCHW; element-wise ops keep whatever layout their
  inputs have; ops whose meaning depends on the memory order (Reshape, TopK,
  Gather, StridedSlice, ...) get a Transpose back to NHWC first.  In this graph
  that happens exactly twice, in the detection head (heatmap -> flat TopK, and
  the box-size map -> gather), so the backbone and the FPN run NCHW end to end.
* Shapes are static and computed while converting; SAME padding becomes explicit
  (possibly asymmetric) pads, so the ONNX graph never relies on auto_pad.
* A sub-graph is selected by naming its inputs and outputs: the converter then
  keeps only the ONNX nodes the outputs need and checks that nothing reaches a
  placeholder that is not an input (i.e. that the cut really separates the graph).
* Output is deterministic: no timestamps, nodes and initialisers in a fixed
  order, so converting twice gives byte-identical files.

Operator set: opset 17, restricted to ops that tract-onnx 0.23 runs: Conv, Clip,
Relu, Sigmoid, Add, Sub, Mul, Div, Floor, GlobalAveragePool, ReduceMean, Resize,
MaxPool, TopK, Gather, Reshape, Transpose, Concat, Cast, Equal, Unsqueeze, Slice.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR version 8 is the one that goes with opset 17; older readers accept it.
IR_VERSION = 8

# TF dtype names -> numpy dtype used on the ONNX side.  TF int32 activations are
# carried as int64 because ONNX TopK returns int64 indices and every ONNX
# shape/index input is int64 anyway.
_TF_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int64, "DT_BOOL": np.bool_}
_ONNX_TYPES = {np.dtype(np.float32): TensorProto.FLOAT,
               np.dtype(np.int64): TensorProto.INT64,
               np.dtype(np.bool_): TensorProto.BOOL}

# NHWC axis -> NCHW axis, for ops that take an axis argument on a 4-D tensor.
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}

# Integer FloorDiv/FloorMod are computed as floor(float(a) / float(b)); that is
# exact while |a| and |b| stay below 2**24 (float32's integer range).
_EXACT_INT_IN_F32 = 2 ** 24


class ConversionError(Exception):
    """The graph uses something this converter does not handle."""


# --------------------------------------------------------------------------
# Reading the TF.js model
# --------------------------------------------------------------------------

@dataclass
class TfjsModel:
    nodes: list[dict]                 # graph nodes as in the JSON
    weights: dict[str, np.ndarray]    # constant name -> value (float32 / int32)


def decode_weights(manifest: list[dict], read: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """Decode a TF.js ``weightsManifest``.

    Each group's shard files are concatenated; weights follow each other in
    manifest order.  ``read(path)`` returns a shard's bytes.  Only the encodings
    this model uses are accepted: float32 stored as float16, plain float32, int32.
    """
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        buf = b"".join(read(p) for p in group["paths"])
        pos = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape, dtype=np.int64))
            quant = w.get("quantization")
            if quant is not None:
                if quant.get("dtype") != "float16" or w["dtype"] != "float32":
                    raise ConversionError(f"weight {w['name']}: unsupported quantisation {quant}")
                raw = np.frombuffer(buf, dtype="<f2", count=count, offset=pos)
                pos += 2 * count
                value = raw.astype(np.float32)
            elif w["dtype"] in ("float32", "int32"):
                raw = np.frombuffer(buf, dtype="<f4" if w["dtype"] == "float32" else "<i4",
                                    count=count, offset=pos)
                pos += 4 * count
                value = raw.astype(np.float32 if w["dtype"] == "float32" else np.int32)
            else:
                raise ConversionError(f"weight {w['name']}: unsupported dtype {w['dtype']}")
            out[w["name"]] = value.reshape(shape)
        if pos != len(buf):
            raise ConversionError(f"weights manifest covers {pos} bytes but the shards hold {len(buf)}")
    return out


def load_tfjs(graph_json: bytes, read: Callable[[str], bytes]) -> TfjsModel:
    """Parse ``model.json`` bytes; ``read(path)`` gives the weight shard files."""
    doc = json.loads(graph_json)
    if doc.get("format") != "graph-model":
        raise ConversionError(f"not a TF.js graph model (format={doc.get('format')!r})")
    weights = decode_weights(doc["weightsManifest"], read)
    return TfjsModel(nodes=doc["modelTopology"]["node"], weights=weights)


# --------------------------------------------------------------------------
# TF attribute helpers (TF.js JSON encodes strings in base64, ints as strings)
# --------------------------------------------------------------------------

def _attr(node: dict, key: str):
    return node.get("attr", {}).get(key)


def attr_str(node: dict, key: str, default: str | None = None) -> str | None:
    a = _attr(node, key)
    return default if a is None else base64.b64decode(a["s"]).decode()


def attr_strs(node: dict, key: str) -> list[str]:
    a = _attr(node, key)
    return [] if a is None else [base64.b64decode(s).decode() for s in a["list"].get("s", [])]


def attr_ints(node: dict, key: str, default: list[int] | None = None) -> list[int] | None:
    a = _attr(node, key)
    return default if a is None else [int(i) for i in a["list"].get("i", [])]


def attr_int(node: dict, key: str, default: int = 0) -> int:
    a = _attr(node, key)
    return default if a is None else int(a.get("i", default))


def attr_bool(node: dict, key: str, default: bool = False) -> bool:
    a = _attr(node, key)
    return default if a is None else bool(a.get("b", default))


def attr_type(node: dict, key: str) -> str | None:
    a = _attr(node, key)
    return None if a is None else a.get("type")


# --------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------

@dataclass
class Tensor:
    """What the converter knows about one TF tensor."""
    name: str | None                 # ONNX tensor name (None: a constant not yet materialised)
    shape: tuple[int, ...]           # logical TF shape (NHWC for 4-D images)
    dtype: np.dtype                  # ONNX-side dtype
    nchw: bool = False               # 4-D value stored as NCHW in ONNX
    value: np.ndarray | None = None  # constant value, in TF layout
    bound: int | None = None         # integers: a static bound on |value|, when known
    fed: bool = True                 # False: depends on a placeholder that is not an input


@dataclass
class Converted:
    """Result of one conversion before it is wrapped into a ModelProto."""
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: dict[str, onnx.TensorProto] = field(default_factory=dict)


def _tensor_ref(ref: str) -> tuple[str, int]:
    """'node' -> ('node', 0); 'node:1' -> ('node', 1)."""
    if ":" in ref:
        node, idx = ref.rsplit(":", 1)
        return node, int(idx)
    return ref, 0


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int, int]:
    """TF SAME padding for one spatial axis: (pad_begin, pad_end, out_size).

    TF puts the odd pixel at the end, so stride-2 convs on even inputs get
    (0, 1): ONNX needs that spelled out as explicit, asymmetric pads.
    """
    eff_k = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff_k - size, 0)
    return total // 2, total - total // 2, out


def _valid_out(size: int, k: int, s: int, d: int) -> int:
    eff_k = (k - 1) * d + 1
    return (size - eff_k) // s + 1


class Converter:
    """Convert one TF.js graph model; call :meth:`convert` once per sub-graph."""

    def __init__(self, model: TfjsModel):
        self.model = model
        self.by_name = {n["name"]: n for n in model.nodes}
        self.order = self._topological_order()

    # ---------------------------------------------------------------- graph walk
    def _topological_order(self) -> list[dict]:
        """Nodes in a dependency order; deterministic (follows JSON order)."""
        order, state = [], {}
        for root in self.model.nodes:
            stack = [(root["name"], False)]
            while stack:
                name, done = stack.pop()
                if done:
                    state[name] = 2
                    order.append(self.by_name[name])
                    continue
                if state.get(name):
                    continue
                state[name] = 1
                stack.append((name, True))
                for ref in reversed(self.by_name[name].get("input", [])):
                    if ref.startswith("^"):      # control dependency: no data
                        continue
                    dep, _ = _tensor_ref(ref)
                    if dep not in self.by_name:
                        raise ConversionError(f"node {name} reads unknown tensor {ref}")
                    if state.get(dep) == 1:
                        raise ConversionError(f"cycle through {dep}")
                    if not state.get(dep):
                        stack.append((dep, False))
        return order

    def convert(self, inputs: Mapping[str, str], outputs: Mapping[str, str],
                doc: str = "") -> onnx.ModelProto:
        """Convert the sub-graph from ``inputs`` to ``outputs``.

        ``inputs``/``outputs`` map TF tensor names to ONNX names.  4-D inputs and
        outputs are NCHW; everything else keeps its TF shape.  An input may be any
        tensor (a cut in the middle of the graph), not only a placeholder.
        """
        self.out = Converted()
        self.tensors: dict[str, Tensor] = {}
        self.used_names: set[str] = set()
        self.nhwc_cache: dict[str, Tensor] = {}
        graph_inputs = []

        for node in self.order:
            name, op = node["name"], node["op"]
            ins = [self.tensors[self._key(r)] for r in node.get("input", []) if not r.startswith("^")]
            if op == "Placeholder" and name not in inputs:
                shape = tuple(int(d["size"]) for d in _attr(node, "shape")["shape"]["dim"])
                outs = [Tensor(f"<unfed {name}>", shape, np.dtype(np.float32), fed=False)]
            else:
                handler = getattr(self, "op_" + op, None)
                if handler is None:
                    raise ConversionError(f"unsupported TF op {op} (node {name})")
                if any(not t.fed for t in ins):
                    # Upstream of a cut (or the cut itself): shapes only, no nodes.
                    outs = self._unfed(node, ins, handler)
                else:
                    outs = handler(node, ins)
            for i, t in enumerate(outs):
                self.tensors[f"{name}:{i}"] = t
            if name in inputs:
                t = outs[0]
                rec = Tensor(inputs[name], t.shape, t.dtype, nchw=len(t.shape) == 4)
                self.tensors[f"{name}:0"] = rec
                graph_inputs.append(self._value_info(rec))

        if len(graph_inputs) != len(inputs):
            missing = set(inputs) - {n["name"] for n in self.order}
            raise ConversionError(f"inputs not in the graph: {sorted(missing)}")

        graph_outputs = []
        renames: dict[str, str] = {}
        for tf_name, onnx_name in outputs.items():
            t = self.tensors.get(self._key(tf_name))
            if t is None:
                raise ConversionError(f"output {tf_name} not in the graph")
            if not t.fed:
                raise ConversionError(f"output {tf_name} depends on a placeholder that is not an input: "
                                      "the requested inputs do not separate the graph")
            src = self._onnx(t)
            producer_known = any(src in n.output for n in self.out.nodes)
            if producer_known and src not in renames and src not in {i.name for i in graph_inputs}:
                renames[src] = onnx_name          # rename in place: no extra node
            else:
                self._emit("Identity", [src], onnx_name)
            graph_outputs.append(self._value_info(Tensor(onnx_name, t.shape, t.dtype, t.nchw)))

        nodes = self._rename(self.out.nodes, renames)
        nodes, inits = self._prune(nodes, [o.name for o in graph_outputs], [i.name for i in graph_inputs])
        graph = helper.make_graph(nodes, "centernet", graph_inputs, graph_outputs, initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="fchm_train.tfjs2onnx", doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model

    def _unfed(self, node, ins, handler) -> list[Tensor]:
        """Run a handler only for its shapes; mark the outputs as unusable."""
        saved = len(self.out.nodes)
        outs = handler(node, ins)
        del self.out.nodes[saved:]
        for t in outs:
            t.fed = False
            t.name = f"<unfed {node['name']}>"
        return outs

    @staticmethod
    def _key(ref: str) -> str:
        node, idx = _tensor_ref(ref)
        return f"{node}:{idx}"

    @staticmethod
    def _rename(nodes, renames):
        if not renames:
            return nodes
        for n in nodes:
            for i, x in enumerate(n.input):
                if x in renames:
                    n.input[i] = renames[x]
            for i, x in enumerate(n.output):
                if x in renames:
                    n.output[i] = renames[x]
                    n.name = renames[x] if i == 0 else n.name
        return nodes

    def _prune(self, nodes, outputs, inputs):
        """Keep the nodes and initialisers the outputs need; check the cut."""
        needed = set(outputs)
        kept = []
        for n in reversed(nodes):
            if any(o in needed for o in n.output):
                kept.append(n)
                needed.update(x for x in n.input if x)
        kept.reverse()
        produced = set(inputs) | {o for n in kept for o in n.output}
        inits = [t for name, t in self.out.inits.items() if name in needed]
        produced |= {t.name for t in inits}
        missing = sorted(needed - produced)
        if missing:
            raise ConversionError(f"sub-graph needs tensors that are not inputs: {missing[:3]}")
        return kept, inits

    # ------------------------------------------------------------ emit helpers
    def _unique(self, name: str) -> str:
        if name in self.used_names:
            raise ConversionError(f"duplicate ONNX tensor name {name}")
        self.used_names.add(name)
        return name

    def _emit(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> list[str]:
        outs = [self._unique(name if i == 0 else f"{name}:{i}") for i in range(n_out)]
        self.out.nodes.append(helper.make_node(op, inputs, outs, name=outs[0], **attrs))
        return outs

    def _const(self, name: str, value: np.ndarray) -> str:
        """An initialiser (float32 or int64); identical re-use shares it."""
        value = np.asarray(value)
        value = value.astype(np.float32 if value.dtype.kind == "f" else np.int64)
        old = self.out.inits.get(name)
        if old is not None:
            if not np.array_equal(numpy_helper.to_array(old), value):
                raise ConversionError(f"two different constants named {name}")
            return name
        self.out.inits[name] = numpy_helper.from_array(value, name)
        self.used_names.add(name)
        return name

    def _onnx(self, t: Tensor) -> str:
        """ONNX name of a tensor; constants become initialisers on first use."""
        if t.name is None:
            raise ConversionError("internal: constant without a name")
        if t.value is not None and t.name not in self.out.inits:
            self._const(t.name, t.value)
        return t.name

    def _value_info(self, t: Tensor):
        shape = self._onnx_shape(t)
        return helper.make_tensor_value_info(t.name, _ONNX_TYPES[np.dtype(t.dtype)], shape)

    @staticmethod
    def _onnx_shape(t: Tensor) -> list[int]:
        if t.nchw:
            n, h, w, c = t.shape
            return [n, c, h, w]
        return list(t.shape)

    def _nhwc(self, t: Tensor) -> Tensor:
        """The same tensor in TF memory order (one Transpose, cached)."""
        if not t.nchw:
            return t
        if t.name not in self.nhwc_cache:
            (out,) = self._emit("Transpose", [t.name], t.name + "/to_nhwc", perm=[0, 2, 3, 1])
            self.nhwc_cache[t.name] = Tensor(out, t.shape, t.dtype, False, bound=t.bound)
        return self.nhwc_cache[t.name]

    def _nchw(self, t: Tensor) -> str:
        """ONNX name of a 4-D image tensor in NCHW order."""
        if len(t.shape) != 4:
            raise ConversionError(f"{t.name}: expected a 4-D tensor, got shape {t.shape}")
        if t.nchw:
            return t.name
        if t.value is not None:
            return self._const(t.name + "/nchw", t.value.transpose(0, 3, 1, 2))
        (out,) = self._emit("Transpose", [t.name], t.name + "/to_nchw", perm=[0, 3, 1, 2])
        return out

    def _const_value(self, node: dict, t: Tensor, what: str) -> np.ndarray:
        if t.value is None:
            raise ConversionError(f"{node['op']} {node['name']}: {what} must be a constant")
        return t.value

    @staticmethod
    def _check_nhwc(node: dict):
        fmt = attr_str(node, "data_format", "NHWC")
        if fmt != "NHWC":
            raise ConversionError(f"{node['op']} {node['name']}: data_format {fmt} not supported")

    # ---------------------------------------------------------------- TF ops
    def op_Const(self, node, ins):
        value = self.model.weights.get(node["name"])
        if value is None:
            raise ConversionError(f"Const {node['name']} has no value in the weights manifest")
        dtype = np.dtype(np.float32) if value.dtype.kind == "f" else np.dtype(np.int64)
        bound = int(np.abs(value).max()) if dtype.kind == "i" and value.size else None
        return [Tensor(node["name"], tuple(value.shape), dtype, value=value, bound=bound)]

    def op_Placeholder(self, node, ins):
        shape = tuple(int(d["size"]) for d in _attr(node, "shape")["shape"]["dim"])
        if any(d < 0 for d in shape):
            raise ConversionError(f"Placeholder {node['name']}: dynamic shape {shape}")
        dtype = _TF_DTYPES[attr_type(node, "dtype")]
        return [Tensor(node["name"], shape, np.dtype(dtype))]

    def op_Identity(self, node, ins):
        return [ins[0]]

    # ---- convolutions
    def _conv(self, node, x: Tensor, w: Tensor, bias: Tensor | None, depthwise: bool) -> Tensor:
        self._check_nhwc(node)
        name = node["name"]
        strides = attr_ints(node, "strides", [1, 1, 1, 1])
        dil = attr_ints(node, "dilations", [1, 1, 1, 1])
        if strides[0] != 1 or strides[3] != 1 or dil[0] != 1 or dil[3] != 1:
            raise ConversionError(f"{node['op']} {name}: stride/dilation on batch or channel axis")
        wv = self._const_value(node, w, "the filter")
        kh, kw, cin, cout = wv.shape
        n, h, wd, c = x.shape
        if c != cin:
            raise ConversionError(f"{name}: input has {c} channels, filter expects {cin}")
        if depthwise:
            # TF [kh, kw, C, multiplier] -> ONNX [C*multiplier, 1, kh, kw], group=C;
            # output channel c*multiplier + m, the same order TF uses.
            kernel = wv.reshape(kh, kw, cin * cout).transpose(2, 0, 1)[:, None]
            group, cout = cin, cin * cout
        else:
            kernel = wv.transpose(3, 2, 0, 1)       # HWIO -> OIHW
            group = 1
        pads, out_hw = self._pads(node, (h, wd), (kh, kw), strides[1:3], dil[1:3])
        inputs = [self._nchw(x), self._const(w.name + ("/dw_oihw" if depthwise else "/oihw"), kernel)]
        if bias is not None:
            inputs.append(self._const(bias.name, self._const_value(node, bias, "the bias")))
        attrs = dict(kernel_shape=[kh, kw], strides=strides[1:3], dilations=dil[1:3], pads=pads)
        if group != 1:
            attrs["group"] = group
        fused = attr_strs(node, "fused_ops") if bias is not None else []
        act = fused[1:]
        (out,) = self._emit("Conv", inputs, name + "/conv" if act else name, **attrs)
        t = Tensor(out, (n, *out_hw, cout), np.dtype(np.float32), nchw=True)
        return self._activation(node, t, act)

    def _pads(self, node, hw, khw, strides, dil) -> tuple[list[int], tuple[int, int]]:
        """ONNX pads [top, left, bottom, right] and the output size, TF rules."""
        padding = attr_str(node, "padding")
        if padding == "SAME":
            (top, bottom, oh), (left, right, ow) = (
                _same_pads(hw[i], khw[i], strides[i], dil[i]) for i in range(2))
            return [top, left, bottom, right], (oh, ow)
        if padding == "VALID":
            return [0, 0, 0, 0], tuple(_valid_out(hw[i], khw[i], strides[i], dil[i]) for i in range(2))
        raise ConversionError(f"{node['op']} {node['name']}: padding {padding} not supported")

    def _fused_args(self, node, ins) -> Tensor:
        fused = attr_strs(node, "fused_ops")
        if not fused or fused[0] != "BiasAdd" or attr_int(node, "num_args", 1) != 1 or len(ins) != 3:
            raise ConversionError(f"{node['op']} {node['name']}: fused_ops {fused} not supported "
                                  "(only BiasAdd, optionally followed by Relu or Relu6)")
        return ins[2]

    def _activation(self, node, t: Tensor, act: list[str]) -> Tensor:
        if not act:
            return t
        if len(act) != 1 or act[0] not in ("Relu", "Relu6"):
            raise ConversionError(f"{node['op']} {node['name']}: fused activation {act} not supported")
        return self._relu(t, node["name"], six=act[0] == "Relu6")

    def _relu(self, t: Tensor, name: str, six: bool) -> Tensor:
        if six:   # Relu6 == Clip(0, 6); Clip takes its bounds as scalar inputs since opset 11
            zero = self._const("const/zero_f32", np.array(0, np.float32))
            six_ = self._const("const/six_f32", np.array(6, np.float32))
            (out,) = self._emit("Clip", [t.name, zero, six_], name)
        else:
            (out,) = self._emit("Relu", [t.name], name)
        return Tensor(out, t.shape, t.dtype, t.nchw)

    def op__FusedConv2D(self, node, ins):
        return [self._conv(node, ins[0], ins[1], self._fused_args(node, ins), depthwise=False)]

    def op_FusedDepthwiseConv2dNative(self, node, ins):
        return [self._conv(node, ins[0], ins[1], self._fused_args(node, ins), depthwise=True)]

    def op_Conv2D(self, node, ins):
        return [self._conv(node, ins[0], ins[1], None, depthwise=False)]

    def op_DepthwiseConv2dNative(self, node, ins):
        return [self._conv(node, ins[0], ins[1], None, depthwise=True)]

    def op_MaxPool(self, node, ins):
        self._check_nhwc(node)
        (x,) = ins
        k, s = attr_ints(node, "ksize"), attr_ints(node, "strides")
        if k[0] != 1 or k[3] != 1 or s[0] != 1 or s[3] != 1:
            raise ConversionError(f"MaxPool {node['name']}: pooling over batch or channels")
        # ONNX MaxPool ignores padded cells, as TF's SAME max-pool does.
        pads, out_hw = self._pads(node, x.shape[1:3], k[1:3], s[1:3], (1, 1))
        (out,) = self._emit("MaxPool", [self._nchw(x)], node["name"],
                            kernel_shape=k[1:3], strides=s[1:3], pads=pads)
        return [Tensor(out, (x.shape[0], *out_hw, x.shape[3]), x.dtype, nchw=True)]

    # ---- element-wise
    def op_Relu(self, node, ins):
        return [self._relu(ins[0], node["name"], six=False)]

    def op_Relu6(self, node, ins):
        return [self._relu(ins[0], node["name"], six=True)]

    def op_Sigmoid(self, node, ins):
        (x,) = ins
        (out,) = self._emit("Sigmoid", [self._onnx(x)], node["name"])
        return [Tensor(out, x.shape, x.dtype, x.nchw)]

    def _binary(self, node, onnx_op: str, a: Tensor, b: Tensor, dtype=None, name=None) -> Tensor:
        """Broadcasting element-wise op that keeps NCHW when it can."""
        name = name or node["name"]
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        operands, nchw = [a, b], False
        if len(shape) == 4 and any(t.nchw for t in operands):
            # Stay NCHW if every operand is NCHW, a scalar, or a constant we can permute.
            if all(t.nchw or t.value is not None or int(np.prod(t.shape)) == 1 for t in operands):
                nchw = True
        names = []
        for t in operands:
            if nchw and not t.nchw and int(np.prod(t.shape)) != 1:
                v = t.value.reshape((1,) * (4 - t.value.ndim) + t.value.shape)
                names.append(self._const(t.name + "/nchw", v.transpose(0, 3, 1, 2)))
            elif nchw or not t.nchw:
                names.append(self._onnx(t))
            else:
                names.append(self._nhwc(t).name)
        (out,) = self._emit(onnx_op, names, name)
        return Tensor(out, shape, np.dtype(dtype or a.dtype), nchw)

    def op_Add(self, node, ins):
        t = self._binary(node, "Add", *ins)
        t.bound = None if None in (ins[0].bound, ins[1].bound) else ins[0].bound + ins[1].bound
        return [t]

    def op_Sub(self, node, ins):
        t = self._binary(node, "Sub", *ins)
        t.bound = None if None in (ins[0].bound, ins[1].bound) else ins[0].bound + ins[1].bound
        return [t]

    def op_Mul(self, node, ins):
        t = self._binary(node, "Mul", *ins)
        t.bound = None if None in (ins[0].bound, ins[1].bound) else ins[0].bound * ins[1].bound
        return [t]

    def op_Equal(self, node, ins):
        return [self._binary(node, "Equal", *ins, dtype=np.bool_)]

    def op_Cast(self, node, ins):
        (x,) = ins
        dst = _TF_DTYPES.get(attr_type(node, "DstT"))
        if dst is None:
            raise ConversionError(f"Cast {node['name']}: to {attr_type(node, 'DstT')} not supported")
        (out,) = self._emit("Cast", [self._onnx(x)], node["name"], to=_ONNX_TYPES[np.dtype(dst)])
        bound = x.bound if np.dtype(dst).kind == "i" else None
        return [Tensor(out, x.shape, np.dtype(dst), x.nchw, bound=bound)]

    def _int_floordiv(self, node, a: Tensor, b: Tensor, name: str) -> Tensor:
        """TF FloorDiv on integers: floor(a / b), rounding towards -inf.

        ONNX integer Div truncates towards zero, which differs for negative
        operands, so compute floor(float(a) / float(b)) instead: exact while
        |a|, |b| < 2**24, which the static bounds must prove.
        """
        for t in (a, b):
            if t.bound is None or t.bound >= _EXACT_INT_IN_F32:
                raise ConversionError(f"{node['op']} {node['name']}: cannot prove |operand| < 2**24 "
                                      "(needed for an exact float floor division)")
        fa, fb = (self._float(t, f"{name}/{tag}") for t, tag in ((a, "a_f32"), (b, "b_f32")))
        (q,) = self._emit("Div", [fa, fb], name + "/div_f32")
        (q,) = self._emit("Floor", [q], name + "/floor")
        (q,) = self._emit("Cast", [q], name, to=TensorProto.INT64)
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        return Tensor(q, shape, np.dtype(np.int64), bound=a.bound)

    def _float(self, t: Tensor, name: str) -> str:
        if t.value is not None:
            return self._const(name, t.value.astype(np.float32))
        (out,) = self._emit("Cast", [self._onnx(self._nhwc(t))], name, to=TensorProto.FLOAT)
        return out

    def op_FloorDiv(self, node, ins):
        a, b = (self._nhwc(t) for t in ins)
        if a.dtype.kind != "i" or b.dtype.kind != "i":
            raise ConversionError(f"FloorDiv {node['name']}: only integer FloorDiv is supported")
        return [self._int_floordiv(node, a, b, node["name"])]

    def op_FloorMod(self, node, ins):
        # TF FloorMod: a - floor(a / b) * b (result has the sign of b).
        a, b = (self._nhwc(t) for t in ins)
        if a.dtype.kind != "i" or b.dtype.kind != "i":
            raise ConversionError(f"FloorMod {node['name']}: only integer FloorMod is supported")
        name = node["name"]
        q = self._int_floordiv(node, a, b, name + "/floordiv")
        (qb,) = self._emit("Mul", [q.name, self._onnx(b)], name + "/q_times_b")
        (out,) = self._emit("Sub", [self._onnx(a), qb], name)
        return [Tensor(out, q.shape, q.dtype, bound=b.bound)]

    # ---- reductions, resizing, concatenation
    def op_Mean(self, node, ins):
        x, axes_t = ins
        axes = sorted(int(a) % len(x.shape) for a in np.ravel(self._const_value(node, axes_t, "the axes")))
        keep = attr_bool(node, "keep_dims")
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        if x.nchw and keep and axes == [1, 2]:
            # Spatial mean with keep_dims on an NCHW value is exactly GlobalAveragePool.
            (out,) = self._emit("GlobalAveragePool", [x.name], node["name"])
            return [Tensor(out, shape, x.dtype, nchw=True)]
        if x.nchw and keep:
            onnx_axes = sorted(_NHWC_TO_NCHW_AXIS[a] for a in axes)
            (out,) = self._emit("ReduceMean", [x.name], node["name"], axes=onnx_axes, keepdims=1)
            return [Tensor(out, shape, x.dtype, nchw=True)]
        (out,) = self._emit("ReduceMean", [self._nhwc(x).name], node["name"], axes=axes,
                            keepdims=int(keep))
        return [Tensor(out, shape, x.dtype)]

    def op_ResizeBilinear(self, node, ins):
        x, size_t = ins
        oh, ow = (int(v) for v in self._const_value(node, size_t, "the size"))
        align, half = attr_bool(node, "align_corners"), attr_bool(node, "half_pixel_centers")
        # TF's coordinate conventions, spelled the ONNX way:
        #   align_corners        x_in = x_out * (in - 1) / (out - 1)     -> "align_corners"
        #   half_pixel_centers   x_in = (x_out + 0.5) * in / out - 0.5   -> "half_pixel"
        #   neither (legacy TF1) x_in = x_out * in / out                  -> "asymmetric"
        if align and half:
            raise ConversionError(f"ResizeBilinear {node['name']}: align_corners with half_pixel_centers")
        mode = "align_corners" if align else "half_pixel" if half else "asymmetric"
        n, _, _, c = x.shape
        sizes = self._const(node["name"] + "/sizes", np.array([n, c, oh, ow], np.int64))
        # Empty names: no roi, no scales; the output size is given as `sizes`.
        (out,) = self._emit("Resize", [self._nchw(x), "", "", sizes], node["name"],
                            mode="linear", coordinate_transformation_mode=mode)
        return [Tensor(out, (n, oh, ow, c), x.dtype, nchw=True)]

    def op_ConcatV2(self, node, ins):
        *parts, axis_t = ins
        rank = len(parts[0].shape)
        axis = int(self._const_value(node, axis_t, "the axis")) % rank
        shape = list(parts[0].shape)
        shape[axis] = sum(t.shape[axis] for t in parts)
        if rank == 4 and all(t.nchw for t in parts):
            (out,) = self._emit("Concat", [t.name for t in parts], node["name"],
                                axis=_NHWC_TO_NCHW_AXIS[axis])
            return [Tensor(out, tuple(shape), parts[0].dtype, nchw=True)]
        names = [self._onnx(self._nhwc(t)) for t in parts]
        (out,) = self._emit("Concat", names, node["name"], axis=axis)
        return [Tensor(out, tuple(shape), parts[0].dtype)]

    # ---- the detection head: shape-dependent ops, done in TF (NHWC) order
    def op_Reshape(self, node, ins):
        x, shape_t = ins
        x = self._nhwc(x)         # a reshape flattens in memory order: must be TF's order
        target = [int(d) for d in self._const_value(node, shape_t, "the shape")]
        size = int(np.prod(x.shape))
        if target.count(-1) > 1:
            raise ConversionError(f"Reshape {node['name']}: more than one -1")
        known = int(np.prod([d for d in target if d != -1]))
        target = [size // known if d == -1 else d for d in target]
        if int(np.prod(target)) != size:
            raise ConversionError(f"Reshape {node['name']}: {x.shape} -> {target}")
        shape = self._const(node["name"] + "/shape_static", np.array(target, np.int64))
        (out,) = self._emit("Reshape", [self._onnx(x), shape], node["name"])
        return [Tensor(out, tuple(target), x.dtype, bound=x.bound)]

    def op_ExpandDims(self, node, ins):
        x, dim_t = ins
        x = self._nhwc(x)
        dim = int(np.ravel(self._const_value(node, dim_t, "the axis"))[0])
        dim = dim % (len(x.shape) + 1)
        axes = self._const(node["name"] + "/axes", np.array([dim], np.int64))
        (out,) = self._emit("Unsqueeze", [self._onnx(x), axes], node["name"])
        shape = x.shape[:dim] + (1,) + x.shape[dim:]
        return [Tensor(out, shape, x.dtype, bound=x.bound)]

    def op_TopKV2(self, node, ins):
        x, k_t = ins
        x = self._nhwc(x)
        k = int(self._const_value(node, k_t, "k"))
        # ONNX TopK is always sorted (largest first; ties: lower index first, as TF).
        kname = self._const(node["name"] + "/k", np.array([k], np.int64))
        vals, idx = self._emit("TopK", [self._onnx(x), kname], node["name"], n_out=2, axis=-1)
        shape = x.shape[:-1] + (k,)
        return [Tensor(vals, shape, x.dtype),
                Tensor(idx, shape, np.dtype(np.int64), bound=x.shape[-1] - 1)]

    def op_GatherV2(self, node, ins):
        params, idx, axis_t = (self._nhwc(t) for t in ins)
        if attr_int(node, "batch_dims", 0) != 0:
            raise ConversionError(f"GatherV2 {node['name']}: batch_dims not supported")
        axis = int(self._const_value(node, axis_t, "the axis")) % len(params.shape)
        (out,) = self._emit("Gather", [self._onnx(params), self._onnx(idx)], node["name"], axis=axis)
        shape = params.shape[:axis] + idx.shape + params.shape[axis + 1:]
        return [Tensor(out, shape, params.dtype, bound=params.bound)]

    def op_StridedSlice(self, node, ins):
        x, b_t, e_t, s_t = ins
        x = self._nhwc(x)
        for m in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask"):
            if attr_int(node, m):
                raise ConversionError(f"StridedSlice {node['name']}: {m} not supported")
        begin, end, step = (np.ravel(self._const_value(node, t, "begin/end/strides")).tolist()
                            for t in (b_t, e_t, s_t))
        bmask, emask = attr_int(node, "begin_mask"), attr_int(node, "end_mask")
        starts, ends, axes, steps, shape = [], [], [], [], list(x.shape)
        for i in range(len(begin)):
            if step[i] <= 0:
                raise ConversionError(f"StridedSlice {node['name']}: non-positive stride")
            lo = 0 if bmask >> i & 1 else begin[i]
            hi = x.shape[i] if emask >> i & 1 else end[i]
            r = range(*slice(lo, hi, step[i]).indices(x.shape[i]))
            if (r.start, r.stop, r.step) == (0, x.shape[i], 1):
                continue                           # the whole axis: nothing to slice
            starts.append(r.start), ends.append(r.start + len(r) * r.step)
            axes.append(i), steps.append(r.step)
            shape[i] = len(r)
        name = node["name"]
        if not axes:
            return [x]
        args = [self._onnx(x)] + [self._const(f"{name}/{k}", np.array(v, np.int64)) for k, v in
                                  (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))]
        (out,) = self._emit("Slice", args, name)
        return [Tensor(out, tuple(shape), x.dtype, bound=x.bound)]


def convert_subgraph(model: TfjsModel, inputs: Mapping[str, str], outputs: Mapping[str, str],
                     doc: str = "") -> bytes:
    """Convert and serialise one sub-graph (deterministic bytes)."""
    proto = Converter(model).convert(inputs, outputs, doc=doc)
    return proto.SerializeToString(deterministic=True)
