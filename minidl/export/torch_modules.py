"""PyTorch export: the built-in layers as ``torch.nn`` modules. Imports torch: only ``to_torch`` imports this."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..layers import (MSE, AvgPool2D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Identity, Layer,
                      LeakyReLU, MaxPool2D, Parallel, ReLU, Residual, Sigmoid, SigmoidBCE, Softmax, SoftmaxCE, Tanh,
                      Upsample2D)
from ..layers.augmentation import RandomFlip, RandomRotation, _RandomWindow
from ..layers.conv import resolve_padding
from ..model import Sequential
from .registry import TORCH_EXPORTERS

__all__ = ["TorchContext", "TorchResidual", "TorchParallel"]

_builtin = lambda cls: TORCH_EXPORTERS.register(cls, builtin=True)  # noqa: E731


class TorchContext:
    """What a PyTorch exporter gets besides its layer: ``torch``, ``nn``, the dtype, and ``convert``."""

    torch = torch
    nn = nn

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """A copy of ``array`` as a tensor of the model's dtype."""
        return torch.tensor(np.asarray(array), dtype=self.dtype)

    def load(self, module: nn.Module, **arrays: np.ndarray | None) -> nn.Module:
        """Copy ``arrays`` into ``module``'s parameters/buffers of the same names (shapes must match)."""
        with torch.no_grad():
            for name, array in arrays.items():
                if array is not None:
                    target = getattr(module, name)
                    value = self.tensor(array)
                    if target.shape != value.shape:  # an exporter bug, never a user's: say which
                        raise ValueError(f"to_torch: {type(module).__name__}.{name} has shape {tuple(target.shape)}, "
                                         f"got {tuple(value.shape)}")
                    target.copy_(value)
        return module

    def convert(self, layer: Layer | Sequential) -> nn.Module:
        """``layer`` as an ``nn.Module`` with its registered exporter."""
        return TORCH_EXPORTERS.lookup(layer)(layer, self)


class TorchResidual(nn.Module):
    """``layers(x) + shortcut(x)`` (the identity when ``shortcut`` is None): minidl's ``Residual``."""

    def __init__(self, layers: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = layers
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + (x if self.shortcut is None else self.shortcut(x))


class TorchParallel(nn.Module):
    """Every branch on ``x``, outputs concatenated on dim 1 or summed: minidl's ``Parallel``."""

    def __init__(self, branches: list[nn.Module], merge: str = "concat") -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches]
        return torch.stack(outputs).sum(dim=0) if self.merge == "add" else torch.cat(outputs, dim=1)

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}"


class TorchCentreWindow(nn.Module):
    """The centre ``(wh, ww)`` window of the image zero-padded by ``(ph, pw)``: RandomCrop/RandomShift at inference."""

    def __init__(self, padding: tuple[int, int], start: tuple[int, int], size: tuple[int, int]) -> None:
        super().__init__()
        self.padding, self.start, self.size = padding, start, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (ph, pw), (top, left), (wh, ww) = self.padding, self.start, self.size
        padded = nn.functional.pad(x, (pw, pw, ph, ph))
        return padded[:, :, top:top + wh, left:left + ww]


def _data(holder: Any) -> np.ndarray | None:
    return None if holder is None else holder.data


@_builtin(Sequential)
def _sequential(model: Sequential, ctx: TorchContext) -> nn.Module:
    loss = [] if model.loss is None else [ctx.convert(model.loss)]  # its inference output, last
    return nn.Sequential(*[ctx.convert(layer) for layer in model.layers], *loss)  # same indices as minidl's


@_builtin(Residual)
def _residual(layer: Residual, ctx: TorchContext) -> nn.Module:
    # the same attribute names as minidl's, so state_dict keys match ("2.layers.0.weight", "2.shortcut.0.weight")
    return TorchResidual(ctx.convert(layer.layers), None if layer.shortcut is None else ctx.convert(layer.shortcut))


@_builtin(Parallel)
def _parallel(layer: Parallel, ctx: TorchContext) -> nn.Module:
    return TorchParallel([ctx.convert(branch) for branch in layer.branches], layer.merge)


@_builtin(_RandomWindow)
def _window(layer: _RandomWindow, ctx: TorchContext) -> nn.Module:
    (ph, pw), (h, w), (wh, ww) = layer.padding, layer.input_shape[1:], layer.output_shape[1:]
    return TorchCentreWindow((ph, pw), ((h + 2 * ph - wh) // 2, (w + 2 * pw - ww) // 2), (wh, ww))


_builtin(RandomFlip)(lambda layer, ctx: nn.Identity())  # augmentations are the identity at inference
_builtin(RandomRotation)(lambda layer, ctx: nn.Identity())


@_builtin(Conv2D)
def _conv2d(layer: Conv2D, ctx: TorchContext) -> nn.Module:
    (top, bottom), (left, right) = resolve_padding(layer.padding, layer.input_shape[1:], layer.kernel_size,
                                                   layer.stride)
    symmetric = top == bottom and left == right
    conv = nn.Conv2d(layer.input_shape[0], layer.filters, layer.kernel_size, stride=layer.stride,
                     padding=(top, left) if symmetric else 0, bias=layer.use_bias, dtype=ctx.dtype)
    ctx.load(conv, weight=_data(layer.weight), bias=_data(layer.bias))
    if symmetric:
        return conv
    # "same" with the odd pixel at the bottom/right: PyTorch pads symmetrically, so pad explicitly first
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)


@_builtin(MaxPool2D)
def _maxpool2d(layer: MaxPool2D, ctx: TorchContext) -> nn.Module:
    return nn.MaxPool2d(layer.pool_size, stride=layer.stride, padding=layer.padding)  # -inf padding, floor mode


@_builtin(AvgPool2D)
def _avgpool2d(layer: AvgPool2D, ctx: TorchContext) -> nn.Module:
    return nn.AvgPool2d(layer.pool_size, stride=layer.stride, padding=layer.padding, count_include_pad=True)


@_builtin(GlobalAvgPool2D)
def _global_avgpool2d(layer: GlobalAvgPool2D, ctx: TorchContext) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


@_builtin(Upsample2D)
def _upsample2d(layer: Upsample2D, ctx: TorchContext) -> nn.Module:
    return nn.Upsample(scale_factor=tuple(float(f) for f in layer.factor), mode="nearest")


@_builtin(Flatten)
def _flatten(layer: Flatten, ctx: TorchContext) -> nn.Module:
    return nn.Flatten()


@_builtin(Dense)
def _dense(layer: Dense, ctx: TorchContext) -> nn.Module:
    linear = nn.Linear(layer.input_shape[0], layer.units, bias=layer.use_bias, dtype=ctx.dtype)
    # minidl's weight is (in, out), nn.Linear's (out, in)
    return ctx.load(linear, weight=layer.weight.data.T, bias=_data(layer.bias))


@_builtin(BatchNorm2D)
def _batchnorm2d(layer: BatchNorm2D, ctx: TorchContext) -> nn.Module:
    # Same update rule (momentum, unbiased running variance). num_batches_tracked stays 0: minidl does
    # not count batches, and PyTorch reads the count only when momentum is None.
    bn = nn.BatchNorm2d(layer.input_shape[0], eps=layer.eps, momentum=layer.momentum, dtype=ctx.dtype)
    return ctx.load(bn, weight=layer.weight.data, bias=layer.bias.data, running_mean=layer.running_mean.data,
                    running_var=layer.running_var.data)


@_builtin(Dropout)
def _dropout(layer: Dropout, ctx: TorchContext) -> nn.Module:
    return nn.Dropout(layer.rate)


@_builtin(LeakyReLU)
def _leaky_relu(layer: LeakyReLU, ctx: TorchContext) -> nn.Module:
    return nn.LeakyReLU(layer.negative_slope)


@_builtin(Softmax)
def _softmax(layer: Softmax, ctx: TorchContext) -> nn.Module:
    return nn.Softmax(dim=layer.axis)  # both count the batch axis as 0


def _simple(module: type[nn.Module], **kwargs: Any):
    return lambda layer, ctx: module(**kwargs)


_builtin(ReLU)(_simple(nn.ReLU))
_builtin(Tanh)(_simple(nn.Tanh))
_builtin(Sigmoid)(_simple(nn.Sigmoid))
_builtin(Identity)(_simple(nn.Identity))
# A loss becomes its inference output. To train on in PyTorch, take module[:-1] (the logits or values) with
# nn.CrossEntropyLoss, nn.BCEWithLogitsLoss or nn.MSELoss.
_builtin(SoftmaxCE)(_simple(nn.Softmax, dim=-1))
_builtin(SigmoidBCE)(_simple(nn.Sigmoid))
_builtin(MSE)(_simple(nn.Identity))
