"""ONNX export: an :class:`OnnxGraph` builder and the built-in layers' exporters.

Nothing here imports ``onnx``: exporters only record nodes and initializers, and
:meth:`OnnxGraph.to_model` (called by :func:`minidl.export.to_onnx`) turns them into protobuf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import (
    GELU,
    GRU,
    LSTM,
    MSE,
    AvgPool2D,
    BatchNorm2D,
    Bidirectional,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    Loss,
    MaxPool1D,
    MaxPool2D,
    MultiHeadAttention,
    Parallel,
    PositionalEmbedding,
    ReLU,
    Residual,
    Sigmoid,
    SigmoidBCE,
    SimpleRNN,
    Softmax,
    SoftmaxCE,
    Tanh,
    Upsample2D,
    containers,
)
from ..layers.augmentation import RandomFlip, RandomRotation, _RandomWindow
from ..layers.base import Buffer, Parameter
from ..layers.conv import resolve_padding
from ..layers.conv1d import padding_1d
from ..layers.embedding import _sinusoidal_table
from ..model import Sequential
from .masks import mask_rule
from .registry import ONNX_EXPORTERS, built

__all__ = ["OnnxGraph", "MIN_OPSET"]

#: Softmax takes one axis from opset 13 on (before, it flattened the trailing axes); every other operator the
#: exporters use (CumSum, Range, TopK, GatherElements, the RNN ops' ``sequence_lens``) is in opset 13 too.
MIN_OPSET = 13

_builtin = lambda cls: ONNX_EXPORTERS.register(cls, builtin=True)  # noqa: E731


class OnnxGraph:
    """The graph being written: nodes, initializers, unique tensor names.

    Exporters call :meth:`node`, :meth:`initializer` and, for layers they hold, :meth:`layer`.
    Weights keep the model's ``state_dict`` names (``"0.weight"``), so a graph's initializers
    can be read next to the minidl model.

    Args:
        param_names: ``id(parameter or buffer) -> state_dict name``, for the initializers' names.
        dtype: the model's floating dtype (the graph's tensors have it).
        opset: the ONNX opset version the graph targets.

    Example::

        # inside an exporter registered with register_onnx
        y = graph.node("MatMul", [x, graph.initializer(layer.weight)])
    """

    def __init__(self, param_names: dict[int, str], dtype: np.dtype, opset: int) -> None:
        self.dtype = np.dtype(dtype)
        self.opset = opset
        #: The name of the current sequence mask (bool ``(N, T)``, True at valid steps), or None: what an
        #: exporter of a layer that takes a mask reads (``Embedding(mask_zero=True)`` makes it from the ids).
        self.mask: str | None = None
        #: Why the sequence length must stay the model's (``None``: every exporter so far takes any ``T``).
        self.fixed_length: str | None = None
        #: The integer dtype of token ids (the graph's input when the model's ``input_dtype`` is one).
        self.ids_dtype = np.dtype(np.int64)
        #: ``(N,)`` bool: the sequences whose ids are all in range (an ``Embedding`` sets it), or None.
        self.rows_valid: str | None = None
        self.nodes: list[tuple[str, list[str], list[str], str, dict[str, Any]]] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._param_names = param_names
        self._taken: set[str] = set()
        self._scope = ["node"]

    def fresh(self, hint: str) -> str:
        """A tensor or node name not used yet, starting with ``hint``."""
        name, k = hint, 0
        while name in self._taken:
            k += 1
            name = f"{hint}_{k}"
        self._taken.add(name)
        return name

    def node(self, op_type: str, inputs: list[str], *, outputs: int = 1, **attributes: Any) -> Any:
        """Add an ONNX node ``op_type(inputs, **attributes)``; returns its output name (a list if ``outputs > 1``)."""
        base = f"{self._scope[-1]}/{op_type}"
        names = [self.fresh(f"{base}:{i}") for i in range(outputs)]
        self.nodes.append((op_type, list(inputs), names, self.fresh(base), attributes))
        return names[0] if outputs == 1 else names

    def initializer(self, value: Parameter | Buffer | np.ndarray, hint: str = "const") -> str:
        """A constant tensor; a layer's ``Parameter``/``Buffer`` keeps its ``state_dict`` name."""
        array = value.data if isinstance(value, (Parameter, Buffer)) else np.asarray(value)
        name = self.fresh(self._param_names.get(id(value), f"{self._scope[-1]}/{hint}"))
        self.initializers[name] = np.ascontiguousarray(array)
        return name

    def layer(self, layer: Layer | Loss, x: str) -> str:
        """Export ``layer`` with its registered exporter; returns its output tensor's name.

        The mask follows minidl's rules (:func:`~minidl.export.masks.mask_rule`): it passes on, ends
        where the time axis does, and a layer that cannot take one is refused.
        """
        export = ONNX_EXPORTERS.lookup(layer)
        mask = self.mask
        rule = mask_rule(layer, mask is not None, "to_onnx")
        if self.fixed_length is None and not ONNX_EXPORTERS.is_builtin(layer):
            # a user's exporter may read T from the layer's shapes: the graph keeps the model's T
            self.fixed_length = f"{getattr(layer, 'name', type(layer).__name__)} has an exporter of its own"
        self._scope.append(self.fresh(getattr(layer, "name", type(layer).__name__)))
        try:
            y = export(layer, self, x)
        finally:
            self._scope.pop()
        if rule in ("keep", "drop"):  # "make" and "chain": the exporter (or the chain's layers) set it
            self.mask = mask if rule == "keep" else None
        return y

    def to_model(self, input_shape: tuple[int, ...], output: str, output_shape: tuple[int, ...],
                 producer_version: str, input_dtype: np.dtype | None = None, length: bool = False) -> Any:
        """The ``onnx.ModelProto``: input ``"input"`` (of ``input_dtype``, default the model's) and output
        ``"output"``, batch axis ``"N"``; with ``length``, the first per-sample axis is ``"T"`` too (and the
        output's first, ``"T"`` if it keeps the input's length, else ``"T_out"``, when the output is a sequence).
        """
        import onnx
        from onnx import helper, numpy_helper

        elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        in_elem = elem if input_dtype is None else helper.np_dtype_to_tensor_dtype(np.dtype(input_dtype))
        in_dims: list[int | str] = list(input_shape)
        out_dims: list[int | str] = list(output_shape)
        if length:
            if len(output_shape) >= 2:
                out_dims[0] = "T" if output_shape[0] == input_shape[0] else "T_out"
            in_dims[0] = "T"
        nodes = [helper.make_node(op, [("output" if i == output else i) for i in ins],
                                  [("output" if o == output else o) for o in outs], name=name, **attrs)
                 for op, ins, outs, name, attrs in self.nodes]
        graph = helper.make_graph(
            nodes, "minidl",
            [helper.make_tensor_value_info("input", in_elem, ["N", *in_dims])],
            [helper.make_tensor_value_info("output", elem, ["N", *out_dims])],
            initializer=[numpy_helper.from_array(a, name) for name, a in self.initializers.items()],
        )
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="minidl",
                                  producer_version=producer_version)
        # The oldest IR version that carries this opset: what lets older runtimes load the file.
        model.ir_version = helper.find_min_ir_version_for(opsets)
        onnx.checker.check_model(model, full_check=True)
        return model


# -- built-in layers -----------------------------------------------------------------------
def _params(g: OnnxGraph, *values: Parameter | Buffer | None) -> list[str]:
    return [g.initializer(v) for v in values if v is not None]


@_builtin(containers.Sequential)  # the chain; the model (a subclass) adds its loss's inference output
@_builtin(Sequential)
def _sequential(model: containers.Sequential, g: OnnxGraph, x: str) -> str:
    loss = model.loss if isinstance(model, Sequential) else None
    parts: list[Layer | Loss] = [*model.layers, *([loss] if loss is not None else [])]
    for layer in parts:
        x = g.layer(layer, x)  # the loss exports its inference output (SoftmaxCE: the probabilities)
    return x


@_builtin(Residual)
def _residual(layer: Residual, g: OnnxGraph, x: str) -> str:
    shortcut = x if layer.shortcut is None else g.layer(layer.shortcut, x)
    return g.node("Add", [g.layer(layer.layers, x), shortcut])


@_builtin(Parallel)
def _parallel(layer: Parallel, g: OnnxGraph, x: str) -> str:
    outputs = [g.layer(branch, x) for branch in layer.branches]
    if layer.merge == "add":
        return g.node("Sum", outputs)
    return g.node("Concat", outputs, axis=layer._axis)  # minidl's: channels of images, the last axis otherwise


@_builtin(Conv2D)
def _conv2d(layer: Conv2D, g: OnnxGraph, x: str) -> str:
    # Explicit pads: "same" puts the odd pixel at the bottom/right, as ONNX's SAME_UPPER would,
    # but explicit numbers leave no room for a runtime's reading of auto_pad.
    _, h, w = built(layer.input_shape)
    (top, bottom), (left, right) = resolve_padding(layer.padding, (h, w), layer.kernel_size, layer.stride)
    return g.node("Conv", [x, *_params(g, layer.weight, layer.bias)], kernel_shape=list(layer.kernel_size),
                  strides=list(layer.stride), pads=[top, left, bottom, right])


def _pool_attributes(layer: MaxPool2D | AvgPool2D) -> dict[str, Any]:
    ph, pw = layer.padding
    # floor mode (ceil_mode=0): windows that do not fit at the edge are dropped, as minidl does
    return {"kernel_shape": list(layer.pool_size), "strides": list(layer.stride), "pads": [ph, pw, ph, pw],
            "ceil_mode": 0}


@_builtin(MaxPool2D)
def _maxpool2d(layer: MaxPool2D, g: OnnxGraph, x: str) -> str:
    return g.node("MaxPool", [x], **_pool_attributes(layer))  # ONNX pads MaxPool with -inf, as minidl does


@_builtin(AvgPool2D)
def _avgpool2d(layer: AvgPool2D, g: OnnxGraph, x: str) -> str:
    # minidl's padding counts as zeros and the divisor is always kh·kw
    return g.node("AveragePool", [x], count_include_pad=1, **_pool_attributes(layer))


@_builtin(GlobalAvgPool2D)
def _global_avgpool2d(layer: GlobalAvgPool2D, g: OnnxGraph, x: str) -> str:
    return g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)  # (N, C, 1, 1) -> (N, C)


@_builtin(Upsample2D)
def _upsample2d(layer: Upsample2D, g: OnnxGraph, x: str) -> str:
    # integer scales with "asymmetric" coordinates and floor rounding: output pixel i reads input i // f
    scales = g.initializer(np.array([1, 1, *layer.factor], dtype=np.float32), "scales")
    return g.node("Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor")


@_builtin(Flatten)
def _flatten(layer: Flatten, g: OnnxGraph, x: str) -> str:
    if g.fixed_length is None:
        g.fixed_length = f"{layer.name} flattens the time axis"  # the next layer's weights have T·D rows
    return g.node("Flatten", [x], axis=1)


@_builtin(Dense)
def _dense(layer: Dense, g: OnnxGraph, x: str) -> str:
    # Gemm's B is (K, N) without transB: minidl's (in, out) weight as it is. Gemm takes 2-D inputs only;
    # on sequences (N, T, D), MatMul broadcasts over the leading axes as Dense does.
    if len(built(layer.input_shape)) == 1:
        return g.node("Gemm", [x, *_params(g, layer.weight, layer.bias)])
    y = g.node("MatMul", [x, g.initializer(built(layer.weight))])
    return y if layer.bias is None else g.node("Add", [y, g.initializer(built(layer.bias))])


@_builtin(BatchNorm2D)
def _batchnorm2d(layer: BatchNorm2D, g: OnnxGraph, x: str) -> str:
    # the inference form: the running statistics
    return g.node("BatchNormalization",
                  [x, *_params(g, layer.weight, layer.bias, layer.running_mean, layer.running_var)], epsilon=layer.eps)


@_builtin(Dropout)
def _dropout(layer: Dropout, g: OnnxGraph, x: str) -> str:
    return x  # the identity at inference


@_builtin(RandomFlip)
@_builtin(RandomRotation)
def _augmentation(layer: Layer, g: OnnxGraph, x: str) -> str:
    return x  # the identity at inference


@_builtin(_RandomWindow)
def _window(layer: _RandomWindow, g: OnnxGraph, x: str) -> str:
    # at inference: the centre window of the zero-padded image
    (ph, pw), (h, w), (wh, ww) = layer.padding, built(layer.input_shape)[1:], built(layer.output_shape)[1:]
    top, left = (h + 2 * ph - wh) // 2, (w + 2 * pw - ww) // 2
    padded = g.node("Pad", [x, g.initializer(np.array([0, 0, ph, pw, 0, 0, ph, pw], dtype=np.int64), "pads")])
    starts = g.initializer(np.array([top, left], dtype=np.int64), "starts")
    ends = g.initializer(np.array([top + wh, left + ww], dtype=np.int64), "ends")
    return g.node("Slice", [padded, starts, ends, g.initializer(np.array([2, 3], dtype=np.int64), "axes")])


@_builtin(Identity)
@_builtin(MSE)  # a regression loss's inference output is its input
def _identity(layer: Identity | MSE, g: OnnxGraph, x: str) -> str:
    return x


def _unary(op_type: str, **attributes: Any):
    return lambda layer, g, x: g.node(op_type, [x], **attributes)


_builtin(ReLU)(_unary("Relu"))
_builtin(Tanh)(_unary("Tanh"))
_builtin(Sigmoid)(_unary("Sigmoid"))
# a loss exports its inference output: what predict_proba returns
_builtin(SoftmaxCE)(_unary("Softmax", axis=-1))
_builtin(SigmoidBCE)(_unary("Sigmoid"))


@_builtin(LeakyReLU)
def _leaky_relu(layer: LeakyReLU, g: OnnxGraph, x: str) -> str:
    return g.node("LeakyRelu", [x], alpha=layer.negative_slope)


@_builtin(Softmax)
def _softmax(layer: Softmax, g: OnnxGraph, x: str) -> str:
    return g.node("Softmax", [x], axis=layer.axis)


# -- sequences (N, T, C) --------------------------------------------------------------------------------------
# ONNX's Conv and MaxPool take (N, C, T), its recurrent ops (T, N, D). Nothing below reads T from the layer's
# shapes: it comes from the tensors (Shape), so a graph exported at one length runs at any other.


def _ints(g: OnnxGraph, values: list[int], hint: str = "ints") -> str:
    return g.initializer(np.array(values, dtype=np.int64), hint)


def _const(g: OnnxGraph, value: Any, hint: str) -> str:
    """A constant of the model's dtype."""
    return g.initializer(np.asarray(value, dtype=g.dtype), hint)


def _unsqueeze(g: OnnxGraph, x: str, axes: list[int]) -> str:
    return g.node("Unsqueeze", [x, _ints(g, axes, "axes")])


def _length(g: OnnxGraph, x: str) -> str:
    """``T``, the length of axis 1 of ``x``, as a 1-element int64 tensor."""
    return g.node("Slice", [g.node("Shape", [x]), _ints(g, [1], "starts"), _ints(g, [2], "ends")])


def _positions(g: OnnxGraph, x: str) -> tuple[str, str]:
    """``(T, arange(T))``: the length of axis 1 of ``x`` as a scalar, and the step indices ``(T,)`` (int64)."""
    t = g.node("Squeeze", [_length(g, x), _ints(g, [0], "axes")])
    return t, g.node("Range", [g.initializer(np.array(0, dtype=np.int64), "zero"), t,
                               g.initializer(np.array(1, dtype=np.int64), "one")])


def _padded_1d(g: OnnxGraph, x: str, padding: str | int, window: int, stride: int,
               fill: float) -> tuple[str, list[int]]:
    """``x`` (``(N, C, T)``) padded for minidl's ``padding``, and the op's own ``pads``.

    ``"valid"`` and ints do not depend on ``T``: the op's ``pads``. ``"same"`` (``ceil(T / stride)`` outputs,
    the odd step at the end) does, so it is a ``Pad`` computed from the input's length: ONNX Runtime's
    ``auto_pad="SAME_UPPER"`` would do the same, but refuses a dilated convolution.
    """
    if padding != "same":
        left, right = padding_1d(padding, window, window, stride)  # the same for every length
        return x, [left, right]
    t = g.node("Slice", [g.node("Shape", [x]), _ints(g, [2], "starts"), _ints(g, [3], "ends")])
    stride_c = _ints(g, [stride], "stride")
    outputs = g.node("Div", [g.node("Add", [t, _ints(g, [stride - 1], "round_up")]), stride_c])  # ceil(T / s)
    reach = g.node("Add", [g.node("Mul", [g.node("Sub", [outputs, _ints(g, [1], "one")]), stride_c]),
                           _ints(g, [window], "window")])
    total = g.node("Max", [g.node("Sub", [reach, t]), _ints(g, [0], "zero")])
    left = g.node("Div", [total, _ints(g, [2], "two")])
    pads = g.node("Concat", [_ints(g, [0, 0], "zeros"), left, _ints(g, [0, 0], "zeros"),
                             g.node("Sub", [total, left])], axis=0)
    return g.node("Pad", [x, pads, _const(g, fill, "fill")]), [0, 0]


@_builtin(Conv1D)
def _conv1d(layer: Conv1D, g: OnnxGraph, x: str) -> str:
    span = (layer.kernel_size - 1) * layer.dilation + 1
    xt, pads = _padded_1d(g, g.node("Transpose", [x], perm=[0, 2, 1]), layer.padding, span, layer.stride, 0.0)
    y = g.node("Conv", [xt, *_params(g, layer.weight, layer.bias)], kernel_shape=[layer.kernel_size],
               strides=[layer.stride], dilations=[layer.dilation], pads=pads)
    return g.node("Transpose", [y], perm=[0, 2, 1])


@_builtin(MaxPool1D)
def _maxpool1d(layer: MaxPool1D, g: OnnxGraph, x: str) -> str:
    # minidl pads with -inf; so does ONNX's MaxPool for its own pads (they never win)
    xt, pads = _padded_1d(g, g.node("Transpose", [x], perm=[0, 2, 1]), layer.padding, layer.pool_size, layer.stride,
                          -np.inf)
    y = g.node("MaxPool", [xt], kernel_shape=[layer.pool_size], strides=[layer.stride], pads=pads, ceil_mode=0)
    return g.node("Transpose", [y], perm=[0, 2, 1])


def _reduce(g: OnnxGraph, op_type: str, x: str, axis: int, keepdims: int = 0) -> str:
    """``op_type`` (ReduceMean, ReduceMax, ReduceSum) over one axis: an attribute before opset 18 (13 for
    ReduceSum), an input from then on."""
    if g.opset >= (13 if op_type == "ReduceSum" else 18):
        return g.node(op_type, [x, _ints(g, [axis], "axes")], keepdims=keepdims)
    return g.node(op_type, [x], axes=[axis], keepdims=keepdims)


def _valid_counts(g: OnnxGraph, mask: str) -> str:
    """The number of valid steps of each sequence, ``(N,)`` int64."""
    return _reduce(g, "ReduceSum", g.node("Cast", [mask], to=7), 1)  # 7: INT64


def _where_valid(g: OnnxGraph, valid: str, x: str, fill: float) -> str:
    """``x`` where ``valid`` (broadcast over the trailing axis of ``x``), ``fill`` elsewhere."""
    return g.node("Where", [_unsqueeze(g, valid, [-1]), x, _const(g, fill, "fill")])


@_builtin(GlobalAvgPool1D)
def _global_avgpool1d(layer: GlobalAvgPool1D, g: OnnxGraph, x: str) -> str:
    if g.mask is None:
        return _reduce(g, "ReduceMean", x, 1)
    # the mean of the valid steps: padded ones replaced by 0 (not multiplied: they may hold inf), a count of >= 1
    total = _reduce(g, "ReduceSum", _where_valid(g, g.mask, x, 0.0), 1)
    count = g.node("Cast", [g.node("Max", [_valid_counts(g, g.mask), _ints(g, [1], "one")])],
                   to=onnx_type(g.dtype))
    return g.node("Div", [total, _unsqueeze(g, count, [1])])


@_builtin(GlobalMaxPool1D)
def _global_maxpool1d(layer: GlobalMaxPool1D, g: OnnxGraph, x: str) -> str:
    if g.mask is None:
        return _reduce(g, "ReduceMax", x, 1)
    peak = _reduce(g, "ReduceMax", _where_valid(g, g.mask, x, -np.inf), 1)
    any_valid = g.node("Greater", [_valid_counts(g, g.mask), _ints(g, [0], "zero")])
    return _where_valid(g, any_valid, peak, 0.0)  # a sequence without a valid step: zeros, as minidl


def onnx_type(dtype: np.dtype) -> int:
    """The ONNX ``TensorProto`` element type of a NumPy float dtype (1 float32, 11 float64)."""
    return {np.dtype(np.float32): 1, np.dtype(np.float64): 11}[np.dtype(dtype)]


#: Where PyTorch's (and minidl's) gate blocks go in ONNX's order: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h.
_ONNX_GATES = {SimpleRNN: [0], LSTM: [0, 3, 1, 2], GRU: [1, 0, 2]}


def _gather_steps(g: OnnxGraph, x: str, index: str) -> str:
    """``x[n, index[n, t]]`` for ``x`` ``(N, T, F)`` and ``index`` ``(N, T)`` (int64)."""
    return g.node("GatherElements", [x, g.node("Expand", [_unsqueeze(g, index, [2]), g.node("Shape", [x])])], axis=1)


def _recurrent(layer: Layer, g: OnnxGraph, x: str) -> str:
    """A recurrent layer, or a ``Bidirectional`` one, as ONNX's ``RNN``/``LSTM``/``GRU`` (time-major, zero
    initial state).

    With a mask, the valid steps of each sequence are first gathered to its front, in order, and the op runs
    them only (``sequence_lens``, the reverse direction reversing each sequence's valid steps among
    themselves); the outputs go back to the valid steps' places, zeros at padded ones. That is minidl's rule
    (a padded step is skipped, wherever it is) for any mask, not only right-padded ones. A sequence with no
    valid step runs one step, whose results are replaced by minidl's zeros.
    """
    bidirectional = isinstance(layer, Bidirectional)
    inner = layer.forward_layer if bidirectional else layer
    directions = [inner, layer.backward_layer] if bidirectional else [inner]
    u, order = inner.units, _ONNX_GATES[type(inner)]

    def stacked(name: str) -> np.ndarray:
        return np.stack([np.concatenate([getattr(d, name).data[k * u:(k + 1) * u] for k in order])
                         for d in directions])

    weights = [g.initializer(stacked("weight_ih"), "W"), g.initializer(stacked("weight_hh"), "R"),
               g.initializer(np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1), "B")]
    attributes: dict[str, Any] = {"hidden_size": u, "direction": "bidirectional" if bidirectional else "forward"}
    if isinstance(inner, SimpleRNN):
        attributes["activations"] = [inner.activation.capitalize()] * len(directions)
    if isinstance(inner, GRU):
        attributes["linear_before_reset"] = 1  # r multiplies W_hn h + b_hn: PyTorch's GRU
    op_type = "RNN" if isinstance(inner, SimpleRNN) else type(inner).__name__
    mask = g.mask
    if mask is not None:
        t, steps = _positions(g, x)
        # valid steps first, each group in time order: sort the keys t (valid) and T + t (padded), all distinct
        key = g.node("Where", [mask, steps, g.node("Add", [steps, t])])
        front = g.node("TopK", [key, _length(g, x)], outputs=2, axis=1, largest=0, sorted=1)[1]
        x = _gather_steps(g, x, front)
        count = _valid_counts(g, mask)
        lengths = g.node("Cast", [g.node("Max", [count, _ints(g, [1], "one")])], to=6)  # 6: INT32
        weights.append(lengths)
    y, y_h = g.node(op_type, [g.node("Transpose", [x], perm=[1, 0, 2]), *weights], outputs=2, **attributes)[:2]
    if inner.return_sequences:  # Y (T, directions, N, u) -> (N, T, directions, u)
        out, axis = g.node("Transpose", [y], perm=[2, 0, 1, 3]), 2
    else:  # Y_h (directions, N, u) -> (N, directions, u)
        out, axis = g.node("Transpose", [y_h], perm=[1, 0, 2]), 1
    if bidirectional and layer.merge == "sum":
        out = _reduce(g, "ReduceSum", out, axis)
    else:  # directions side by side on the last axis, forward first (0 in a Reshape's shape keeps that axis)
        out = g.node("Reshape", [out, _ints(g, [0] * axis + [-1], "shape")])
    if mask is None:
        return out
    if not inner.return_sequences:
        return _where_valid(g, g.node("Greater", [count, _ints(g, [0], "zero")]), out, 0.0)
    # the k-th valid step's output goes back to that step: index it by the step's rank among the valid ones
    rank = g.node("Sub", [g.node("CumSum", [g.node("Cast", [mask], to=7), g.initializer(np.array(1), "axis")]),
                          _ints(g, [1], "one")])
    back = _gather_steps(g, out, g.node("Max", [rank, _ints(g, [0], "zero")]))
    return _where_valid(g, mask, back, 0.0)


for _cls in (SimpleRNN, LSTM, GRU, Bidirectional):
    _builtin(_cls)(_recurrent)


# -- tokens and attention ---------------------------------------------------------------------------------------
@_builtin(Embedding)
def _embedding(layer: Embedding, g: OnnxGraph, x: str) -> str:
    # ONNX's Gather reads a negative id from the end, and a runtime may not check the range: a sequence with an
    # id outside [0, vocab_size) gives NaN (to_onnx applies g.rows_valid to the output; minidl raises a
    # ValueError, a graph cannot raise).
    ids = g.initializer(np.array([0, layer.vocab_size], dtype=g.ids_dtype), "id_range")
    low, high = (g.node("Gather", [ids, g.initializer(np.array(i), "index")], axis=0) for i in (0, 1))
    in_range = g.node("And", [g.node("GreaterOrEqual", [x, low]), g.node("Less", [x, high])])
    y = g.node("Gather", [g.initializer(built(layer.weight)), g.node("Where", [in_range, x, low])], axis=0)
    row_valid = g.node("Cast", [_reduce(g, "ReduceMin", g.node("Cast", [in_range], to=7), 1)], to=9)  # (N,) bool
    g.rows_valid = row_valid if g.rows_valid is None else g.node("And", [g.rows_valid, row_valid])
    if layer.mask_zero:  # minidl's mask: x != 0, with an incoming one
        valid = g.node("Not", [g.node("Equal", [x, low])])
        g.mask = valid if g.mask is None else g.node("And", [g.mask, valid])
    return y


@_builtin(GELU)
def _gelu(layer: GELU, g: OnnxGraph, x: str) -> str:
    if layer.approximate == "tanh":  # ½x(1 + tanh(√(2/π)(x + 0.044715 x³)))
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [cube, _const(g, 0.044715, "cubic")])])
        cdf = g.node("Tanh", [g.node("Mul", [inner, _const(g, np.sqrt(2 / np.pi), "sqrt_2_over_pi")])])
    else:  # ½x(1 + erf(x/√2))
        cdf = g.node("Erf", [g.node("Mul", [x, _const(g, 1 / np.sqrt(2), "inv_sqrt2")])])
    half_x = g.node("Mul", [x, _const(g, 0.5, "half")])
    return g.node("Mul", [half_x, g.node("Add", [cdf, _const(g, 1.0, "one")])])


@_builtin(LayerNorm)
def _layernorm(layer: LayerNorm, g: OnnxGraph, x: str) -> str:
    # Written out (LayerNormalization is opset 17): the mean and variance of the last axis, as minidl computes them.
    axis = len(built(layer.input_shape))
    centred = g.node("Sub", [x, _reduce(g, "ReduceMean", x, axis, keepdims=1)])
    var = _reduce(g, "ReduceMean", g.node("Mul", [centred, centred]), axis, keepdims=1)
    std = g.node("Sqrt", [g.node("Add", [var, _const(g, layer.eps, "eps")])])
    scaled = g.node("Mul", [g.node("Div", [centred, std]), g.initializer(built(layer.weight))])
    return g.node("Add", [scaled, g.initializer(built(layer.bias))])


@_builtin(PositionalEmbedding)
def _positional_embedding(layer: PositionalEmbedding, g: OnnxGraph, x: str) -> str:
    # the first T rows of the (max_length, D) table: the saved weight, or the sinusoidal table (whose first
    # T rows are the layer's own: each row depends on its position only)
    d = built(layer.input_shape)[1]
    table = _sinusoidal_table(layer.max_length, d).astype(g.dtype) if layer.weight is None else built(layer.weight)
    rows = g.node("Slice", [g.initializer(table, "positions"), _ints(g, [0], "starts"), _length(g, x),
                            _ints(g, [0], "axes")])
    return g.node("Add", [x, rows])


@_builtin(MultiHeadAttention)
def _multi_head_attention(layer: MultiHeadAttention, g: OnnxGraph, x: str) -> str:
    h, dk = layer.num_heads, layer._head_dim
    qkv = g.node("MatMul", [x, g.initializer(built(layer.in_proj_weight))])
    if layer.in_proj_bias is not None:
        qkv = g.node("Add", [qkv, g.initializer(layer.in_proj_bias)])
    # (N, T, 3·H·dk) -> (3, N, H, T, dk): the packed column layout of in_proj_weight. Each of q, k, v keeps a
    # leading axis of 1 (Gather by a 1-element index), which MatMul and Softmax broadcast over.
    heads = g.node("Transpose", [g.node("Reshape", [qkv, _ints(g, [0, 0, 3, h, dk], "shape")])], perm=[2, 0, 3, 1, 4])
    q, k, v = [g.node("Gather", [heads, _ints(g, [i], "index")], axis=0) for i in range(3)]
    scores = g.node("MatMul", [g.node("Mul", [q, _const(g, 1 / np.sqrt(dk), "scale")]),
                               g.node("Transpose", [k], perm=[0, 1, 2, 4, 3])])
    allowed = None  # where a query may look, broadcast to scores' (1, N, H, T, T)
    if layer.causal:  # key j <= query i
        _, steps = _positions(g, x)
        allowed = g.node("LessOrEqual", [_unsqueeze(g, steps, [0]), _unsqueeze(g, steps, [1])])
    some_key = None
    if g.mask is not None:  # never a padded key
        keys = _unsqueeze(g, g.mask, [1])  # (N, 1, T)
        allowed = keys if allowed is None else g.node("And", [keys, allowed])  # (N, T, T)
        # A query with no key left (minidl: all-zero weights, output b_out) would be a softmax of -inf only:
        # it attends to every key here, and its output is replaced by minidl's below.
        some_key = _reduce(g, "ReduceMax", g.node("Cast", [allowed], to=7), 2)  # (N, T), 1 or 0
        some_key = g.node("Cast", [some_key], to=9)  # 9: BOOL
        allowed = g.node("Or", [allowed, g.node("Not", [_unsqueeze(g, some_key, [2])])])
        allowed = _unsqueeze(g, allowed, [0, 2])
    elif allowed is not None:
        allowed = _unsqueeze(g, allowed, [0, 1, 2])
    if allowed is not None:  # -inf where not allowed: exp gives those keys exactly zero weight
        scores = g.node("Where", [allowed, scores, _const(g, -np.inf, "minus_inf")])
    weighted = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])  # (1, N, H, T, dk)
    merged = g.node("Reshape", [g.node("Transpose", [weighted], perm=[0, 1, 3, 2, 4]), _ints(g, [0, 0, 0, h * dk])])
    concat = g.node("Squeeze", [merged, _ints(g, [0], "axes")])
    out = g.node("MatMul", [concat, g.initializer(built(layer.out_proj_weight))])
    if layer.out_proj_bias is not None:
        out = g.node("Add", [out, g.initializer(layer.out_proj_bias)])
    if some_key is None:
        return out
    no_key = _const(g, 0.0, "zero") if layer.out_proj_bias is None else g.initializer(layer.out_proj_bias)
    return g.node("Where", [_unsqueeze(g, some_key, [2]), out, no_key])
