"""Run ONNX models with numbaconv's kernels: ``numbaconv.onnx.load(path_or_bytes)``.

>>> import numbaconv.onnx                                   # doctest: +SKIP
>>> model = numbaconv.onnx.load("resnet18.onnx")            # doctest: +SKIP
>>> logits = model(images)                                  # doctest: +SKIP

The result is an eval-mode :class:`numbaconv.nn.Module` whose ``forward`` takes the
graph's inputs (NumPy arrays, in the graph's order, or by name as keywords) and returns
its output (a tuple for several). Operators follow ONNX's own semantics (``auto_pad``,
``pads`` as (begins..., ends...), ONNX's default strides of 1, ``ceil_mode``,
``count_include_pad``, Resize's coordinate modes); the supported ones are
:data:`OPERATORS`, which covers what torchvision's classification and segmentation
models export to at opsets 13-18 (``torch.onnx.export(..., dynamo=False)``). A model
with any other operator is refused when loaded, with the operator and its node named.

Model files are untrusted input: the model is checked by ``onnx.checker`` first; tensor
data stored outside the file ("external data") is read only from files inside the
model's folder, within their size; nothing is written. Needs the ``onnx`` package
(``pip install numbaconv[onnx]``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy import special

from . import activations, array_pool, config, normalization, pooling
from ._dask_dispatch import is_dask_array
from .functional import conv1d, conv2d, fused_conv2d
from .nn.module import Module
from .transposed import conv_transpose1d, conv_transpose2d


class OnnxError(ValueError):
    """A model numbaconv cannot run: malformed, or using what is not supported."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("numbaconv.onnx needs the onnx package: pip install "
                          "'numbaconv[onnx]' (or pip install onnx)") from None
    return onnx


# --------------------------------------------------------------------------- loading


def load(source) -> "OnnxModel":
    """An eval-mode module running the ONNX model in ``source``: a path (str or
    ``os.PathLike``), the file's bytes, or an ``onnx.ModelProto``."""
    onnx = _onnx()
    base_dir = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        model = onnx.load_model_from_string(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"numbaconv.onnx.load: no model file at {str(path)!r}")
        model = onnx.load_model(str(path), load_external_data=False)
        base_dir = path.resolve().parent
    elif type(source).__name__ == "ModelProto":
        model = source
    else:
        raise TypeError(f"numbaconv.onnx.load: expected a path, bytes or an onnx.ModelProto, "
                        f"got {type(source).__name__}")
    if base_dir is None and any(t.data_location == onnx.TensorProto.EXTERNAL
                                for t in model.graph.initializer):
        raise OnnxError("numbaconv.onnx.load: the model keeps tensor data in external files; "
                        "load the model from its path (not from bytes) so that they can be "
                        "found beside it")
    try:  # from the path, external data is looked for beside the model (our reads check it too)
        onnx.checker.check_model(str(path) if base_dir is not None else model)
    except onnx.checker.ValidationError as error:
        raise OnnxError(f"numbaconv.onnx.load: the model is not valid ONNX: {error}") from None
    return OnnxModel(model, base_dir)


def _tensor_array(tensor, base_dir) -> np.ndarray:
    """An initializer or attribute tensor as a NumPy array, its external data (if any)
    read from inside ``base_dir`` only."""
    onnx = _onnx()
    from onnx import numpy_helper

    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        tensor = _with_external_data(tensor, base_dir)
    return numpy_helper.to_array(tensor)


def _with_external_data(tensor, base_dir):
    onnx = _onnx()
    info = {entry.key: entry.value for entry in tensor.external_data}
    if base_dir is None:
        raise OnnxError(f"tensor {tensor.name!r} keeps its data in an external file; load the "
                        f"model from its path (not from bytes) so that the file can be found")
    location = info.get("location", "")
    target = (base_dir / location).resolve()
    if base_dir not in target.parents or not target.is_file():
        raise OnnxError(f"tensor {tensor.name!r}: external data location {location!r} is not a "
                        f"file inside the model's folder {str(base_dir)!r}")
    offset, size = int(info.get("offset", 0)), target.stat().st_size
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    needed = math.prod(tensor.dims) * itemsize
    length = int(info.get("length", needed))
    if offset < 0 or length != needed or offset + length > size:
        raise OnnxError(f"tensor {tensor.name!r}: external data (offset {offset}, length "
                        f"{length}) does not fit the tensor's {needed} bytes in {location!r} "
                        f"({size} bytes)")
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    with open(target, "rb") as file:
        file.seek(offset)
        copy.raw_data = file.read(length)
    del copy.external_data[:]
    copy.data_location = onnx.TensorProto.DEFAULT
    return copy


def _attributes(node, base_dir) -> dict:
    onnx = _onnx()
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif type(value).__name__ == "TensorProto":
            value = _tensor_array(value, base_dir)
        values[attribute.name] = value
    return values


class OnnxModel(Module):
    """An ONNX graph run with numbaconv's kernels (see :func:`load`).

    Attributes
    ----------
    input_names, output_names : list of str
    initializers : dict of str to numpy.ndarray
        The graph's constant tensors (weights), by their ONNX names.
    opset : int
        The default-domain opset the model was exported for.
    """

    def __init__(self, model, base_dir=None):
        super().__init__()
        graph = model.graph
        self.opset = next((entry.version for entry in model.opset_import
                           if entry.domain in ("", "ai.onnx")), 0)
        self.initializers = {t.name: _tensor_array(t, base_dir) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in self.initializers]
        self.output_names = [o.name for o in graph.output]
        self._nodes = []
        for index, node in enumerate(graph.node):
            name = node.name or f"#{index}"
            if node.domain not in ("", "ai.onnx"):
                raise OnnxError(f"node {name!r}: operator {node.domain}.{node.op_type} is not "
                                f"supported (only the default ONNX domain)")
            if node.op_type not in OPERATORS:
                raise OnnxError(f"node {name!r}: operator {node.op_type!r} is not supported; "
                                f"supported: {', '.join(sorted(OPERATORS))}")
            self._nodes.append((name, node.op_type, list(node.input), list(node.output),
                                _attributes(node, base_dir)))
        self._fold_constants()
        self._fold_batch_norms()
        self._batch_norms_as_channel_affine()
        self._fuse_silu()
        self._fuse_activations()
        self._in_place = self._in_place_steps()
        self.eval()

    # ------------------------------------------------------------------ load-time passes

    def _fold_constants(self) -> None:
        """Evaluate once, at load time, every node whose inputs are all constants (the
        Constant nodes, the Identity nodes some exporters put on weights, shape arithmetic
        on constants): their outputs join the initializers."""
        kept = []
        for node in self._nodes:
            name, op, input_names, output_names, attributes = node
            if op != "Dropout" and all(not i or i in self.initializers for i in input_names):
                args = [self.initializers[i] if i else None for i in input_names]
                for output, value in zip(output_names, OPERATORS[op](self, args, attributes,
                                                                     len(output_names))):
                    if output:
                        self.initializers[output] = value
            else:
                kept.append(node)
        self._nodes = kept

    def _consumers(self) -> dict:
        """Tensor name -> how many node inputs and graph outputs read it."""
        counts = {}
        for _, _, input_names, _, _ in self._nodes:
            for i in input_names:
                counts[i] = counts.get(i, 0) + 1
        for o in self.output_names:
            counts[o] = counts.get(o, 0) + 1
        return counts

    def _fold_batch_norms(self) -> None:
        """A BatchNormalization (inference) right after a Conv that nothing else reads
        becomes part of the Conv: its weights scaled per output channel, its bias
        shifted, one pass over memory less (torch's eval-mode export does this itself;
        other exporters and training-mode exports keep the two apart)."""
        consumers = self._consumers()
        producer = {out: k for k, node in enumerate(self._nodes) for out in node[3]}
        drop = set()
        for k, (name, op, input_names, output_names, attributes) in enumerate(self._nodes):
            if op != "BatchNormalization" or attributes.get("training_mode", 0):
                continue
            source = producer.get(input_names[0])
            if source is None or consumers.get(input_names[0]) != 1 or len(output_names) != 1:
                continue
            c_name, c_op, c_inputs, c_outputs, c_attributes = self._nodes[source]
            constants = c_inputs[1:] + input_names[1:5]
            if c_op != "Conv" or not all(i in self.initializers for i in constants if i):
                continue
            scale, shift, mean, var = (self.initializers[i].astype(np.float64)
                                       for i in input_names[1:5])
            weight = self.initializers[c_inputs[1]]
            bias = (self.initializers[c_inputs[2]].astype(np.float64)
                    if len(c_inputs) > 2 and c_inputs[2] else np.zeros(weight.shape[0]))
            factor = scale / np.sqrt(var + float(attributes.get("epsilon", 1e-5)))
            folded_w = f"{c_inputs[1]}::folded:{name}"
            folded_b = f"{folded_w}:bias"
            self.initializers[folded_w] = (weight.astype(np.float64) * factor.reshape(
                (-1,) + (1,) * (weight.ndim - 1))).astype(weight.dtype)
            self.initializers[folded_b] = ((bias - mean) * factor + shift).astype(weight.dtype)
            self._nodes[source] = (c_name, c_op, [c_inputs[0], folded_w, folded_b],
                                   output_names, c_attributes)
            drop.add(k)
        self._nodes = [node for k, node in enumerate(self._nodes) if k not in drop]

    def _batch_norms_as_channel_affine(self) -> None:
        """A BatchNormalization (inference) left after _fold_batch_norms (one that follows
        a Concat, as in DenseNet's BatchNorm, ReLU, Conv) becomes x * scale + shift with
        scale and shift computed here, once (as ``numbaconv.batch_norm`` computes them on
        every call); a Relu that alone reads its result runs in the same pass."""
        consumers = self._consumers()
        readers = {}
        for k, (_, op, input_names, _, _) in enumerate(self._nodes):
            for i in input_names:
                readers.setdefault(i, []).append(k)
        drop = set()
        for k, (name, op, input_names, output_names, attributes) in enumerate(self._nodes):
            if op != "BatchNormalization" or attributes.get("training_mode", 0) or \
                    len(output_names) != 1 or len(input_names) != 5 or \
                    not all(i in self.initializers for i in input_names[1:]):
                continue
            scale, bias, mean, var = (self.initializers[i].astype(np.float64)
                                      for i in input_names[1:])
            if not (scale.ndim == bias.ndim == mean.ndim == var.ndim == 1):
                continue
            per_channel = normalization.batch_norm_scale_and_shift(
                mean, var, scale, bias, float(attributes.get("epsilon", 1e-5)))
            names = [f"{input_names[1]}::{part}:{name}" for part in ("scale", "shift")]
            self.initializers.update(zip(names, per_channel))
            outputs, relu = output_names, False
            (reader, *_) = readers.get(output_names[0], [None])
            if reader is not None and consumers.get(output_names[0]) == 1 and \
                    self._nodes[reader][1] == "Relu":
                outputs, relu = self._nodes[reader][3], True
                drop.add(reader)
            self._nodes[k] = (name, CHANNEL_AFFINE, [input_names[0], *names], outputs,
                              {"relu": relu})
        self._nodes = [node for k, node in enumerate(self._nodes) if k not in drop]

    def _fuse_silu(self) -> None:
        """x * Sigmoid(x) (how torch exports SiLU, EfficientNet's activation), where nothing
        else reads the Sigmoid, becomes one SiLU step: one pass over memory, not two."""
        consumers = self._consumers()
        sigmoid_of = {node[3][0]: node[2][0] for node in self._nodes
                      if node[1] == "Sigmoid" and consumers.get(node[3][0]) == 1}
        fused = set()
        for k, (name, op, input_names, output_names, attributes) in enumerate(self._nodes):
            if op != "Mul" or len(input_names) != 2:
                continue
            a, b = input_names
            x = a if sigmoid_of.get(b) == a else (b if sigmoid_of.get(a) == b else None)
            if x is None:
                continue
            fused.add(b if x == a else a)
            self._nodes[k] = (name, SILU, [x], output_names, {})
        self._nodes = [node for node in self._nodes
                       if not (node[1] == "Sigmoid" and node[3][0] in fused)]

    def _fuse_activations(self) -> None:
        """A 2-D Conv whose result only a Relu, a Clip with constant bounds, a HardSwish or
        a SiLU reads computes the activation as it writes its output
        (``numbaconv.fused_conv2d``): one pass over memory less. The Conv node takes the
        activation's outputs and an ``activation`` entry among its attributes."""
        consumers = self._consumers()
        producer = {out: k for k, node in enumerate(self._nodes) for out in node[3]}
        drop = set()
        for k, (name, op, input_names, output_names, attributes) in enumerate(self._nodes):
            source = producer.get(input_names[0]) if input_names else None
            if source is None or consumers.get(input_names[0]) != 1 or source in drop:
                continue
            c_name, c_op, c_inputs, c_outputs, c_attributes = self._nodes[source]
            weight = self.initializers.get(c_inputs[1]) if c_op == "Conv" else None
            if weight is None or weight.ndim != 4 or "activation" in c_attributes:
                continue
            activation = self._fusable_activation(op, input_names, attributes)
            if activation is None:
                continue
            self._nodes[source] = (c_name, c_op, c_inputs, output_names,
                                   dict(c_attributes, activation=activation))
            drop.add(k)
        self._nodes = [node for k, node in enumerate(self._nodes) if k not in drop]

    def _fusable_activation(self, op, input_names, attributes):
        """The ``fused_conv2d`` activation a node computes, or None."""
        if op in ("Relu", "HardSwish"):
            return op.lower()
        if op == SILU:
            return "silu"
        if op == "Clip":
            bounds = [attributes.get("min"), attributes.get("max")]
            for i, bound in ((1, 0), (2, 1)):
                if len(input_names) > i and input_names[i]:
                    if input_names[i] not in self.initializers:
                        return None  # bounds computed at run time
                    bounds[bound] = float(np.asarray(self.initializers[input_names[i]]))
            return ("clamp", bounds[0], bounds[1])
        return None

    def _in_place_steps(self) -> set:
        """Indices of the element-wise nodes (Relu, Clip, Add, ...) whose first input is a
        fresh result no one else reads: they overwrite it instead of allocating another
        array (a residual block's Add and ReLU reuse the convolution's output)."""
        consumers = self._consumers()
        # Only results known to be new arrays: Reshape, Identity and friends return views
        # of (or the very) arrays that other nodes may read.
        fresh = {out for node in self._nodes if node[1] in _FRESH_RESULTS for out in node[3]}
        return {k for k, (_, op, input_names, _, _) in enumerate(self._nodes)
                if op in _IN_PLACE and input_names and input_names[0] in fresh
                and consumers.get(input_names[0]) == 1}

    def forward(self, *inputs, **named):
        if len(inputs) == 1 and not named and is_dask_array(inputs[0]):
            from .dask_arrays import per_batch  # each chunk of images in one task

            return per_batch(self, inputs[0])
        if len(inputs) > len(self.input_names):
            raise TypeError(f"the model takes {len(self.input_names)} inputs "
                            f"({', '.join(self.input_names)}), got {len(inputs)}")
        values = dict(self.initializers)
        values.update(zip(self.input_names, inputs))
        for key, value in named.items():
            if key not in self.input_names:
                raise TypeError(f"unknown input {key!r}; the model's inputs: "
                                f"{', '.join(self.input_names)}")
            values[key] = value
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise TypeError(f"missing model input(s): {', '.join(missing)}")
        for name in self.input_names:
            values[name] = np.asarray(values[name])
        with config.single_threaded_blas():  # MatMul, Gemm: no spinning BLAS threads
            self._run_nodes(values)
        outputs = tuple(values[o] for o in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def _run_nodes(self, values) -> None:
        for k, (name, op, input_names, output_names, attributes) in enumerate(self._nodes):
            args = [values[i] if i else None for i in input_names]
            try:
                results = (_IN_PLACE[op](args, attributes) if k in self._in_place else None) \
                    or _STEPS[op](self, args, attributes, len(output_names))
            except (ValueError, TypeError, IndexError) as error:
                raise type(error)(f"node {name!r} ({op}): {error}") from error
            for output, result in zip(output_names, results):
                if output:
                    values[output] = result

    def extra_repr(self) -> str:
        ops = sorted({op for _, op, _, _, _ in self._nodes})
        fused = sum("activation" in attributes for _, _, _, _, attributes in self._nodes)
        return (f"inputs={self.input_names}, outputs={self.output_names}, opset={self.opset}, "
                f"{len(self._nodes)} nodes ({fused} convolutions with their activation "
                f"fused): {', '.join(ops)}")


# --------------------------------------------------------------------------- geometry


def _window(attributes, x_shape, kernel, default_stride=1):
    """(strides, dilations, (begin, end) pads per spatial axis) of a Conv/pool node,
    ``auto_pad`` resolved as ONNX defines it."""
    dims = len(kernel)
    strides = list(attributes.get("strides", [default_stride] * dims))
    dilations = list(attributes.get("dilations", [1] * dims))
    pads = list(attributes.get("pads", [0] * (2 * dims)))
    auto_pad = attributes.get("auto_pad", "NOTSET")
    spatial = x_shape[2:]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * dims)
        for i in range(dims):
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                        - spatial[i])
            small, large = total // 2, total - total // 2
            pads[i], pads[i + dims] = (small, large) if auto_pad == "SAME_UPPER" else (large,
                                                                                      small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * dims)
    elif auto_pad != "NOTSET":
        raise ValueError(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got "
                         f"{auto_pad!r}")
    return strides, dilations, [(pads[i], pads[i + dims]) for i in range(dims)]


def _spatial_dims(x, op):
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: only 1-D and 2-D spatial inputs ((N, C, L) or (N, C, H, W)) "
                         f"are supported, got shape {x.shape}")
    return x.ndim - 2


# --------------------------------------------------------------------------- operators


def _conv(model, args, attributes, n_out):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    dims = _spatial_dims(x, "Conv")
    kernel = list(attributes.get("kernel_shape", w.shape[2:]))
    strides, dilations, pads = _window(attributes, x.shape, kernel)
    if any(before != after for before, after in pads):  # asymmetric: zero-pad first
        x = _pad_spatial(x, pads)
        pads = [(0, 0)] * dims
    padding = tuple(before for before, _ in pads)
    arguments = dict(stride=tuple(strides), padding=padding, dilation=tuple(dilations),
                     groups=int(attributes.get("group", 1)))
    if "activation" in attributes:  # (a load-time fusion: see OnnxModel._fuse_activations)
        return [fused_conv2d(x, w, b, **arguments, activation=attributes["activation"])]
    return [(conv2d if dims == 2 else conv1d)(x, w, b, **arguments)]


def _pad_spatial(x, pads):
    """Zero-pad the spatial axes of x by (begin, end) per axis (negative crops)."""
    from .padding import pad

    flat = []
    for before, after in reversed(pads):
        flat += [before, after]
    return pad(x, tuple(flat))


def _conv_transpose(model, args, attributes, n_out):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    dims = _spatial_dims(x, "ConvTranspose")
    kernel = list(attributes.get("kernel_shape", w.shape[2:]))
    strides = list(attributes.get("strides", [1] * dims))
    dilations = list(attributes.get("dilations", [1] * dims))
    output_padding = list(attributes.get("output_padding", [0] * dims))
    groups = int(attributes.get("group", 1))
    full = [strides[i] * (x.shape[2 + i] - 1) + output_padding[i] + (kernel[i] - 1)
            * dilations[i] + 1 for i in range(dims)]
    if "output_shape" in attributes:
        shape = list(attributes["output_shape"])[-dims:]
        total = [full[i] - shape[i] for i in range(dims)]
        upper = attributes.get("auto_pad", "NOTSET") != "SAME_LOWER"
        pads = [(t // 2, t - t // 2) if upper else (t - t // 2, t // 2) for t in total]
    elif attributes.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        total = [full[i] - x.shape[2 + i] * strides[i] for i in range(dims)]
        upper = attributes["auto_pad"] == "SAME_UPPER"
        pads = [(t // 2, t - t // 2) if upper else (t - t // 2, t // 2) for t in total]
    else:
        flat = list(attributes.get("pads", [0] * (2 * dims)))
        pads = [(flat[i], flat[i + dims]) for i in range(dims)]
    convt = conv_transpose2d if dims == 2 else conv_transpose1d
    if all(before == after for before, after in pads) and all(p < s or p < d for p, s, d in
                                                            zip(output_padding, strides,
                                                                dilations)):
        return [convt(x, w, b, stride=tuple(strides), padding=tuple(p for p, _ in pads),
                      output_padding=tuple(output_padding), groups=groups,
                      dilation=tuple(dilations))]
    # Asymmetric pads: the whole transposed convolution, then the crop ONNX asks for.
    y = convt(x, w, None, stride=tuple(strides), groups=groups, dilation=tuple(dilations))
    y = _pad_spatial(y, [(-before, op - after) for (before, after), op in
                            zip(pads, output_padding)])
    if b is not None:
        y = y + np.asarray(b, y.dtype).reshape((1, -1) + (1,) * dims)
    return [y]


def _batch_norm(model, args, attributes, n_out):
    if attributes.get("training_mode", 0):
        raise ValueError("BatchNormalization in training mode is not supported (numbaconv "
                         "runs ONNX models for inference)")
    x, scale, bias, mean, var = args[:5]
    return [normalization.batch_norm(x, mean, var, scale, bias, training=False,
                                     eps=float(attributes.get("epsilon", 1e-5)))]


def _channel_affine(model, args, attributes, n_out):
    x, scale, shift = args
    if x.dtype.kind != "f" or x.ndim < 2 or x.shape[1] != scale.shape[0]:
        raise ValueError(f"BatchNormalization: expected a float input (N, C, ...) with "
                         f"C = {scale.shape[0]}, got {x.dtype} {x.shape}")
    return [normalization.scale_and_shift_channels(x, scale, shift, attributes["relu"])]


def _pool(kind):
    def run(model, args, attributes, n_out):
        x = args[0]
        dims = _spatial_dims(x, kind)
        kernel = list(attributes["kernel_shape"])
        strides, dilations, pads = _window(attributes, x.shape, kernel)
        ceil_mode = bool(attributes.get("ceil_mode", 0))
        if any(before != after for before, after in pads):
            raise ValueError(f"{kind}: asymmetric pads {pads} are not supported")
        padding = tuple(before for before, _ in pads)
        if kind == "MaxPool":
            if attributes.get("storage_order", 0):
                raise ValueError("MaxPool: storage_order=1 (column-major indices) is not "
                                 "supported")
            function = pooling.max_pool2d if dims == 2 else pooling.max_pool1d
            if n_out < 2:
                return [function(x, kernel, strides, padding, dilations, ceil_mode)]
            y, indices = function(x, kernel, strides, padding, dilations, ceil_mode,
                                  return_indices=True)
            plane = math.prod(x.shape[2:])
            offsets = np.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(
                x.shape[:2] + (1,) * dims) * plane
            return [y, indices + offsets]  # ONNX's indices count over the whole tensor
        if any(d != 1 for d in dilations):
            raise ValueError("AveragePool: dilations are not supported")
        function = pooling.avg_pool2d if dims == 2 else pooling.avg_pool1d
        include = bool(attributes.get("count_include_pad", 0))
        return [function(x, kernel, strides, padding, ceil_mode, include)]

    return run


def _global_pool(reduce):
    def run(model, args, attributes, n_out):
        x = args[0]
        if reduce is np.mean and x.ndim == 4 and x.dtype.kind == "f":
            return [pooling.adaptive_avg_pool2d(x, 1)]  # one parallel pass
        return [reduce(x, axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)]

    return run


def _gemm(model, args, attributes, n_out):
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    alpha, beta = float(attributes.get("alpha", 1.0)), float(attributes.get("beta", 1.0))
    if attributes.get("transA", 0):
        a = a.T
    if attributes.get("transB", 0) and alpha == 1.0 and beta == 1.0 and a.dtype.kind == "f":
        return [activations.linear(a, b, c)]  # the Linear layer's export
    if attributes.get("transB", 0):
        b = b.T
    y = alpha * np.matmul(a, b) if alpha != 1.0 else np.matmul(a, b)
    if c is not None:
        y = y + (beta * c if beta != 1.0 else c)
    return [y.astype(np.result_type(a, b), copy=False)]


def _matmul(model, args, attributes, n_out):
    a, b = args
    if np.ndim(b) == 2 and np.ndim(a) >= 1 and a.dtype.kind == b.dtype.kind == "f":
        return [activations.linear(a, b.T)]  # a Linear layer on (N, ..., C) inputs
    return [np.matmul(a, b)]


def _unary(function):
    return lambda model, args, attributes, n_out: [function(args[0])]


def _binary(function):
    def run(model, args, attributes, n_out):
        a, b = args
        if function in (np.add, np.subtract, np.multiply) and isinstance(a, np.ndarray) and \
                isinstance(b, np.ndarray) and a.dtype == b.dtype and a.dtype.kind == "f":
            # a large result (a squeeze-and-excitation's scaled activations) in pooled memory
            out = array_pool.empty(np.broadcast_shapes(a.shape, b.shape), a.dtype)
            return [function(a, b, out=out)]
        return [function(a, b)]

    return run


_broadcast_multiply = _binary(np.multiply)


def _multiply(model, args, attributes, n_out):
    x, factors = args
    if isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[2:] == (1, 1):
        x, factors = factors, x  # torchvision's SqueezeExcitation: scale * input
    if isinstance(x, np.ndarray) and isinstance(factors, np.ndarray) and x.ndim == 4 and \
            factors.shape == x.shape[:2] + (1, 1) and x.dtype == factors.dtype and \
            x.dtype.kind == "f" and x.size:
        # a squeeze-and-excitation block: each (n, c) plane times its own factor, on the
        # threads (EfficientNet-B0 at batch 8: 12.4 ms in NumPy's one-thread broadcast)
        from .cpu.elementwise import scale_planes

        out = array_pool.empty(x.shape, x.dtype)
        with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
            scale_planes(np.ascontiguousarray(x), factors.reshape(x.shape[:2]), out)
        return [out]
    return _broadcast_multiply(model, args, attributes, n_out)


def _divide(a, b):
    if np.asarray(a).dtype.kind in "iu" and np.asarray(b).dtype.kind in "iu":
        return np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))  # C's truncation
    return np.true_divide(a, b)


def _variadic(function):
    def run(model, args, attributes, n_out):
        result = args[0]
        for arg in args[1:]:
            result = function(result, arg)
        return [result]

    return run


def _clip(model, args, attributes, n_out):
    x = args[0]
    low = args[1] if len(args) > 1 and args[1] is not None else attributes.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else attributes.get("max")
    low = None if low is None else float(np.asarray(low))
    high = None if high is None else float(np.asarray(high))
    if low == 0.0 and high == 6.0 and x.dtype.kind == "f":
        return [activations.relu6(x)]
    if low is not None and high is not None and x.dtype.kind == "f":
        return [activations.hardtanh(x, low, high)]
    return [np.clip(x, low, high)]


def _hard_sigmoid(model, args, attributes, n_out):
    x = args[0]
    alpha, beta = attributes.get("alpha", 0.2), attributes.get("beta", 0.5)
    out = x * x.dtype.type(alpha) + x.dtype.type(beta)
    return [np.clip(out, 0, 1, out=out)]


def _leaky_relu(model, args, attributes, n_out):
    return [activations.leaky_relu(args[0], attributes.get("alpha", 0.01))]


def _softmax(function):
    def run(model, args, attributes, n_out):
        return [function(args[0], dim=int(attributes.get("axis", -1)))]

    return run


def _axis(axis, ndim):
    if not -ndim <= axis < ndim:
        raise IndexError(f"axis {axis} is out of range for a {ndim}-D tensor")
    return axis % ndim


def _concat(model, args, attributes, n_out):
    axis = _axis(int(attributes["axis"]), args[0].ndim)
    if all(isinstance(a, np.ndarray) and a.dtype == args[0].dtype and a.ndim == args[0].ndim
           for a in args):
        shape = list(args[0].shape)
        shape[axis] = sum(a.shape[axis] for a in args)
        # (DenseNet's concatenations grow to megabytes: pooled memory, no fresh pages)
        return [np.concatenate(args, axis=axis, out=array_pool.empty(shape, args[0].dtype))]
    return [np.concatenate(args, axis=axis)]


def _flatten(model, args, attributes, n_out):
    x = args[0]
    axis = int(attributes.get("axis", 1))
    axis = axis % x.ndim if axis < 0 else axis
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))]


def _reshape(model, args, attributes, n_out):
    x, shape = args[0], [int(s) for s in np.asarray(args[1]).reshape(-1)]
    if not attributes.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _transpose(model, args, attributes, n_out):
    x = args[0]
    return [np.transpose(x, attributes.get("perm", list(range(x.ndim))[::-1]))]


def _split(model, args, attributes, n_out):
    x = args[0]
    axis = _axis(int(attributes.get("axis", 0)), x.ndim)
    sizes = args[1] if len(args) > 1 and args[1] is not None else attributes.get("split")
    if sizes is None:
        parts = int(attributes.get("num_outputs", n_out))
        step = -(-x.shape[axis] // parts)
        sizes = [min(step, x.shape[axis] - i * step) for i in range(parts)]
    edges = np.cumsum([int(s) for s in np.asarray(sizes).reshape(-1)])[:-1]
    return np.split(x, edges, axis=axis)


def _slice(model, args, attributes, n_out):
    x = args[0]
    starts, ends = np.asarray(args[1]).reshape(-1), np.asarray(args[2]).reshape(-1)
    axes = (np.asarray(args[3]).reshape(-1) if len(args) > 3 and args[3] is not None
            else np.arange(len(starts)))
    steps = (np.asarray(args[4]).reshape(-1) if len(args) > 4 and args[4] is not None
             else np.ones(len(starts), np.int64))
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise ValueError("Slice: steps must not be 0")
        index[_axis(int(axis), x.ndim)] = slice(int(start), int(end), int(step))
    return [x[tuple(index)]]


def _shape(model, args, attributes, n_out):
    shape = np.array(np.asarray(args[0]).shape, dtype=np.int64)
    start, end = attributes.get("start", 0), attributes.get("end", None)
    return [shape[start:end]]


def _gather(model, args, attributes, n_out):
    x, indices = args[0], np.asarray(args[1])
    return [np.take(x, indices.astype(np.int64), axis=_axis(int(attributes.get("axis", 0)),
                                                           max(np.ndim(x), 1)))]


def _axes(args, attributes):
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in np.asarray(args[1]).reshape(-1)]
    return attributes.get("axes")


def _unsqueeze(model, args, attributes, n_out):
    x = np.asarray(args[0])
    axes = _axes(args, attributes)
    rank = x.ndim + len(axes)
    for axis in sorted(_axis(a, rank) for a in axes):
        x = np.expand_dims(x, axis)
    return [x]


def _squeeze(model, args, attributes, n_out):
    x = np.asarray(args[0])
    axes = _axes(args, attributes)
    return [np.squeeze(x) if axes is None else np.squeeze(x, tuple(_axis(a, x.ndim)
                                                                   for a in axes))]


def _constant(model, args, attributes, n_out):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attributes:
            value = attributes[key]
            dtype = np.float32 if key.startswith("value_float") else (
                np.int64 if key.startswith("value_int") else None)
            return [np.array(value, dtype=dtype)]
    raise ValueError(f"Constant: unsupported attribute(s) {sorted(attributes)}")


def _check_size(op: str, shape, dtype) -> list:
    """``shape`` as ints, refused (before anything is allocated) when negative or when the
    array would exceed numbaconv's memory limit: a model file is untrusted, and a
    ConstantOfShape or Expand to 10**12 values is one line of it."""
    shape = [int(s) for s in shape]
    if any(s < 0 for s in shape):
        raise ValueError(f"{op}: negative dimension in shape {shape}")
    needed = math.prod(shape) * np.dtype(dtype).itemsize
    if needed > config.memory_limit():
        raise config.memory_error(f"{op} to shape {shape}", needed)
    return shape


def _constant_of_shape(model, args, attributes, n_out):
    value = attributes.get("value", np.zeros(1, np.float32))
    shape = _check_size("ConstantOfShape", np.asarray(args[0]).reshape(-1), value.dtype)
    return [np.full(shape, value.reshape(-1)[0], dtype=value.dtype)]


def _cast(model, args, attributes, n_out):
    onnx = _onnx()
    return [np.asarray(args[0]).astype(onnx.helper.tensor_dtype_to_np_dtype(attributes["to"]))]


def _reduce(function):
    def run(model, args, attributes, n_out):
        x = args[0]
        axes = _axes(args, attributes)
        keep = bool(attributes.get("keepdims", 1))
        if not axes:
            if attributes.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.ndim))
        axes = tuple(_axis(a, x.ndim) for a in axes)
        return [np.asarray(function(x, axis=axes, keepdims=keep)).astype(x.dtype, copy=False)]

    return run


def _pad(model, args, attributes, n_out):
    x = args[0]
    amounts = [int(p) for p in np.asarray(args[1]).reshape(-1)]
    value = args[2] if len(args) > 2 and args[2] is not None else 0
    axes = ([_axis(int(a), x.ndim) for a in np.asarray(args[3]).reshape(-1)]
            if len(args) > 3 and args[3] is not None else list(range(x.ndim)))
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (amounts[i], amounts[i + len(axes)])
    mode = attributes.get("mode", "constant")
    numpy_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge",
                  "wrap": "wrap"}.get(mode)
    if numpy_mode is None:
        raise ValueError(f"Pad: mode must be constant, reflect, edge or wrap, got {mode!r}")
    grow = [(max(a, 0), max(b, 0)) for a, b in widths]
    _check_size("Pad", [n + a + b for n, (a, b) in zip(x.shape, grow)], x.dtype)
    kwargs = {"constant_values": np.asarray(value).item()} if mode == "constant" else {}
    y = np.pad(x, grow, mode=numpy_mode, **kwargs)
    crop = tuple(slice(-min(a, 0), y.shape[i] + min(b, 0)) for i, (a, b) in enumerate(widths))
    return [y[crop]]


def _resize(model, args, attributes, n_out):
    x = args[0]
    scales = args[2] if len(args) > 2 and args[2] is not None and args[2].size else None
    sizes = args[3] if len(args) > 3 and args[3] is not None and args[3].size else None
    if attributes.get("antialias", 0) or attributes.get("axes") is not None:
        raise ValueError("Resize: antialias and axes are not supported")
    mode = attributes.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise ValueError(f"Resize: mode {mode!r} is not supported (nearest, linear)")
    transform = attributes.get("coordinate_transformation_mode", "half_pixel")
    if sizes is not None:
        out_sizes = [int(s) for s in sizes]
        factors = [o / i if i else 1.0 for o, i in zip(out_sizes, x.shape)]
    elif scales is not None:
        factors = [float(s) for s in scales]
        out_sizes = [int(math.floor(i * f)) for i, f in zip(x.shape, factors)]
    else:
        raise ValueError("Resize: one of scales or sizes is required")
    if len(out_sizes) != x.ndim or out_sizes[:2] != list(x.shape[:2]):
        raise ValueError(f"Resize: only the spatial axes can be resized, got sizes "
                         f"{out_sizes} for input {x.shape}")
    _check_size("Resize", out_sizes, x.dtype)
    nearest_mode = attributes.get("nearest_mode", "round_prefer_floor")
    out = x
    t = x.dtype.type if x.dtype.kind == "f" else np.float32
    for axis in range(2, x.ndim):
        n_in, n_out, scale = x.shape[axis], out_sizes[axis], t(factors[axis])
        position = np.arange(n_out).astype(t)
        if transform == "align_corners":
            source = position * (t(n_in - 1) / t(n_out - 1)) if n_out > 1 else position * 0
        elif transform == "asymmetric":
            source = position / scale
        elif transform == "half_pixel":
            source = (position + t(0.5)) / scale - t(0.5)
        elif transform == "pytorch_half_pixel":
            source = (position + t(0.5)) / scale - t(0.5) if n_out > 1 else position * 0
        else:
            raise ValueError(f"Resize: coordinate_transformation_mode {transform!r} is not "
                             f"supported")
        if mode == "nearest":
            rounded = {"round_prefer_floor": lambda s: np.ceil(s - t(0.5)),
                       "round_prefer_ceil": lambda s: np.floor(s + t(0.5)),
                       "floor": np.floor, "ceil": np.ceil}.get(nearest_mode)
            if rounded is None:
                raise ValueError(f"Resize: nearest_mode {nearest_mode!r} is not supported")
            index = np.clip(rounded(source).astype(np.int64), 0, n_in - 1)
            out = np.take(out, index, axis=axis)
            continue
        source = np.clip(source, 0, n_in - 1)
        low = np.floor(source).astype(np.int64)
        high = np.minimum(low + 1, n_in - 1)
        weight = (source - low).astype(out.dtype)
        shape = [1] * x.ndim
        shape[axis] = n_out
        weight = weight.reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - weight) + np.take(out, high, axis=axis) * weight
    return [np.ascontiguousarray(out, dtype=x.dtype)]


def _layer_norm(model, args, attributes, n_out):
    x = args[0]
    axis = _axis(int(attributes.get("axis", -1)), x.ndim)
    scale = args[1]
    bias = args[2] if len(args) > 2 else None
    shape = x.shape[axis:]
    return [normalization.layer_norm(x, shape, np.broadcast_to(scale, shape),
                                     None if bias is None else np.broadcast_to(bias, shape),
                                     float(attributes.get("epsilon", 1e-5)))]


def _dropout(model, args, attributes, n_out):
    x = args[0]
    return [x, np.ones(x.shape, bool)][:n_out]  # inference: the identity


def _where(model, args, attributes, n_out):
    return [np.where(args[0], args[1], args[2])]


def _expand(model, args, attributes, n_out):
    x = np.asarray(args[0])
    shape = np.broadcast_shapes(x.shape, tuple(int(s) for s in np.asarray(args[1]).reshape(-1)))
    _check_size("Expand", shape, x.dtype)
    return [np.array(np.broadcast_to(x, shape))]


def _range(model, args, attributes, n_out):
    start, limit, delta = (np.asarray(a).item() for a in args[:3])
    if delta == 0:
        raise ValueError("Range: delta must not be 0")
    dtype = np.asarray(args[0]).dtype
    _check_size("Range", [max(0, math.ceil((limit - start) / delta))], dtype)
    return [np.arange(start, limit, delta, dtype=dtype)]


def _identity(model, args, attributes, n_out):
    return [args[0]]


def _relu_in_place(args, attributes):
    x = args[0]
    return [np.maximum(x, 0, out=x)] if x.dtype.kind == "f" else None


def _clip_in_place(args, attributes):
    x = args[0]
    low = args[1] if len(args) > 1 and args[1] is not None else attributes.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else attributes.get("max")
    if x.dtype.kind != "f" or low is None or high is None:
        return None
    return [np.clip(x, float(np.asarray(low)), float(np.asarray(high)), out=x)]


def _add_in_place(args, attributes):
    x, y = args
    if x.dtype.kind != "f" or np.result_type(x, y) != x.dtype or \
            np.broadcast_shapes(x.shape, np.shape(y)) != x.shape:
        return None
    return [np.add(x, y, out=x)]


#: Element-wise operators that can overwrite their first input (see
#: ``OnnxModel._in_place_steps``): name -> function(inputs, attributes) -> outputs, or
#: None where this call cannot (another dtype or shape: the operator then runs as usual).
_IN_PLACE = {"Relu": _relu_in_place, "Clip": _clip_in_place, "Add": _add_in_place}
#: Steps the load-time passes make of several nodes (not ONNX operators: a file naming one
#: is refused like any unknown operator).
SILU = "SiLU (fused Sigmoid, Mul)"
CHANNEL_AFFINE = "BatchNormalization (scale and shift per channel, computed at load)"
#: Operators whose results are always arrays of their own (never views of an input).
_FRESH_RESULTS = {"Conv", "ConvTranspose", "BatchNormalization", "MaxPool", "AveragePool",
                  "GlobalAveragePool", "Gemm", "MatMul", "Relu", "Clip", "Add", "Sub", "Mul",
                  "Div", "Concat", "Resize", "HardSwish", "HardSigmoid", "Sigmoid",
                  "LayerNormalization", SILU, CHANNEL_AFFINE}


#: ONNX operator -> function(model, inputs, attributes, number of outputs) -> outputs.
OPERATORS = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "BatchNormalization": _batch_norm,
    "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"),
    "GlobalAveragePool": _global_pool(np.mean), "GlobalMaxPool": _global_pool(np.max),
    "Gemm": _gemm, "MatMul": _matmul,
    "Relu": _unary(activations.relu), "Sigmoid": _unary(activations.sigmoid),
    "Tanh": _unary(activations.tanh), "LeakyRelu": _leaky_relu, "Clip": _clip,
    "HardSigmoid": _hard_sigmoid, "HardSwish": _unary(activations.hardswish),
    "Softmax": _softmax(activations.softmax), "LogSoftmax": _softmax(activations.log_softmax),
    "Erf": _unary(special.erf), "Sqrt": _unary(np.sqrt), "Exp": _unary(np.exp),
    "Log": _unary(np.log), "Neg": _unary(np.negative), "Abs": _unary(np.abs),
    "Reciprocal": _unary(np.reciprocal), "Floor": _unary(np.floor), "Ceil": _unary(np.ceil),
    "Not": _unary(np.logical_not),
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _multiply,
    "Div": _binary(_divide), "Pow": _binary(np.power), "Equal": _binary(np.equal),
    "Less": _binary(np.less), "Greater": _binary(np.greater),
    "Max": _variadic(np.maximum), "Min": _variadic(np.minimum), "Sum": _variadic(np.add),
    "Concat": _concat, "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose,
    "Split": _split, "Slice": _slice, "Shape": _shape, "Gather": _gather,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Constant": _constant,
    "ConstantOfShape": _constant_of_shape, "Cast": _cast, "Expand": _expand, "Where": _where,
    "Range": _range, "ReduceMean": _reduce(np.mean), "ReduceMax": _reduce(np.max),
    "ReduceSum": _reduce(np.sum), "Pad": _pad, "Resize": _resize,
    "LayerNormalization": _layer_norm, "Dropout": _dropout, "Identity": _identity,
}
_STEPS = dict(OPERATORS, **{SILU: _unary(activations.silu),  # what _run_nodes runs
                             CHANNEL_AFFINE: _channel_affine})
