"""ONNX export: an :class:`OnnxGraph` builder and the built-in layers' exporters.

Nothing here imports ``onnx``: exporters only record nodes and initializers, and
:meth:`OnnxGraph.to_model` (called by :func:`minidl.export.to_onnx`) turns them into protobuf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import (MSE, AvgPool2D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Identity, Layer,
                      LeakyReLU, MaxPool2D, Parallel, ReLU, Residual, Sigmoid, SigmoidBCE, Softmax, SoftmaxCE, Tanh,
                      Upsample2D)
from ..layers.augmentation import RandomFlip, RandomRotation, _RandomWindow
from ..layers.base import Buffer, Parameter
from ..layers.conv import resolve_padding
from ..model import Sequential
from .registry import ONNX_EXPORTERS

__all__ = ["OnnxGraph", "MIN_OPSET"]

#: Softmax takes one axis from opset 13 on (before, it flattened the trailing axes).
MIN_OPSET = 13

_builtin = lambda cls: ONNX_EXPORTERS.register(cls, builtin=True)  # noqa: E731


class OnnxGraph:
    """The graph being written: nodes, initializers, unique tensor names.

    Exporters call :meth:`node`, :meth:`initializer` and, for layers they hold, :meth:`layer`.
    Weights keep the model's ``state_dict`` names (``"0.weight"``), so a graph's initializers
    can be read next to the minidl model.
    """

    def __init__(self, param_names: dict[int, str], dtype: np.dtype, opset: int) -> None:
        self.dtype = np.dtype(dtype)
        self.opset = opset
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

    def layer(self, layer: Layer | Sequential, x: str) -> str:
        """Export ``layer`` with its registered exporter; returns its output tensor's name."""
        export = ONNX_EXPORTERS.lookup(layer)
        self._scope.append(self.fresh(getattr(layer, "name", type(layer).__name__)))
        try:
            return export(layer, self, x)
        finally:
            self._scope.pop()

    def to_model(self, input_shape: tuple[int, ...], output: str, output_shape: tuple[int, ...],
                 producer_version: str) -> Any:
        """The ``onnx.ModelProto``: input ``"input"`` and output ``"output"``, batch axis ``"N"``."""
        import onnx
        from onnx import helper, numpy_helper

        elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        nodes = [helper.make_node(op, [("output" if i == output else i) for i in ins],
                                  [("output" if o == output else o) for o in outs], name=name, **attrs)
                 for op, ins, outs, name, attrs in self.nodes]
        graph = helper.make_graph(
            nodes, "minidl",
            [helper.make_tensor_value_info("input", elem, ["N", *input_shape])],
            [helper.make_tensor_value_info("output", elem, ["N", *output_shape])],
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
def _params(g: OnnxGraph, *values: Parameter | None) -> list[str]:
    return [g.initializer(v) for v in values if v is not None]


@_builtin(Sequential)
def _sequential(model: Sequential, g: OnnxGraph, x: str) -> str:
    for layer in (*model.layers, *([model.loss] if model.loss is not None else [])):
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
    return g.node("Concat", outputs, axis=1)  # minidl concatenates along the channel (first non-batch) axis


@_builtin(Conv2D)
def _conv2d(layer: Conv2D, g: OnnxGraph, x: str) -> str:
    # Explicit pads: "same" puts the odd pixel at the bottom/right, as ONNX's SAME_UPPER would,
    # but explicit numbers leave no room for a runtime's reading of auto_pad.
    (top, bottom), (left, right) = resolve_padding(layer.padding, layer.input_shape[1:], layer.kernel_size,
                                                   layer.stride)
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
    return g.node("Flatten", [x], axis=1)


@_builtin(Dense)
def _dense(layer: Dense, g: OnnxGraph, x: str) -> str:
    # Gemm's B is (K, N) without transB: minidl's (in, out) weight as it is
    return g.node("Gemm", [x, *_params(g, layer.weight, layer.bias)])


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
    (ph, pw), (h, w), (wh, ww) = layer.padding, layer.input_shape[1:], layer.output_shape[1:]
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
