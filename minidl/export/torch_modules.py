"""PyTorch export: the built-in layers as ``torch.nn`` modules. Imports torch: only ``to_torch`` imports this."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

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
from ..layers.conv import resolve_padding
from ..layers.conv1d import padding_1d
from ..layers.embedding import _sinusoidal_table
from ..model import Sequential
from .masks import mask_rule
from .registry import TORCH_EXPORTERS, built

__all__ = ["TorchContext", "TorchSequential", "run_masked", "TorchEmbedding", "TorchResidual",
           "TorchParallel", "TorchPositionalEmbedding", "TorchSelfAttention",
           "TorchConv1d", "TorchMaxPool1d", "TorchGlobalPool1d", "TorchRNN", "TorchLSTM", "TorchGRU"]

_builtin = lambda cls: TORCH_EXPORTERS.register(cls, builtin=True)  # noqa: E731


class TorchContext:
    """What a PyTorch exporter gets besides its layer: ``torch``, ``nn``, the dtype, and ``convert``."""

    torch = torch
    nn = nn

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
        #: Whether a sequence mask can reach the layer being converted (one after ``Embedding(mask_zero=True)``).
        self.masked = False

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

    def convert(self, layer: Layer | Loss) -> nn.Module:
        """``layer`` as an ``nn.Module`` with its registered exporter.

        The mask follows minidl's rules (:func:`~minidl.export.masks.mask_rule`); a module that ends it
        (or makes it) is marked so for :class:`TorchSequential`, and one that must take it has to say so.
        """
        export = TORCH_EXPORTERS.lookup(layer)
        masked = self.masked
        rule = mask_rule(layer, masked, "to_torch")
        module = export(layer, self)
        if (masked and getattr(layer, "supports_masking", False) and not getattr(module, "supports_masking", False)
                and not TORCH_EXPORTERS.is_builtin(layer)):
            raise ValueError(f"to_torch: {layer.name} takes the sequence mask, and the module its exporter made "
                             f"({type(module).__name__}) does not: give it supports_masking = True and a "
                             "forward(x, mask=None)")
        if rule == "make" and not callable(getattr(module, "compute_mask", None)):
            raise ValueError(f"to_torch: {layer.name} makes the sequence mask, and the module its exporter made "
                             f"({type(module).__name__}) has no compute_mask(ids, mask) to make it with")
        if rule in ("drop", "make"):
            module.minidl_mask = rule
        if rule in ("keep", "drop"):  # "make" and "chain": the mask is there after it, or as its layers left it
            self.masked = masked and rule == "keep"
        else:
            self.masked = self.masked or rule == "make"
        return module


def run_masked(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
    """``module(x)`` (``module(x, mask)`` if it takes a mask) and the mask after it: minidl's container rule.

    A module marked ``minidl_mask = "drop"`` ends the mask (the time axis is gone), ``"make"`` makes it
    (``module.compute_mask(x, mask)``: an ``Embedding(mask_zero=True)``); any other passes it on.
    """
    if isinstance(module, TorchSequential):
        return module.forward_masked(x, mask)
    y = module(x, mask) if mask is not None and getattr(module, "supports_masking", False) else module(x)
    after = getattr(module, "minidl_mask", "keep")
    if after == "drop":
        mask = None
    elif after == "make":
        mask = module.compute_mask(x, mask)  # type: ignore[operator]  # TorchContext.convert checked it has one
    return y, mask


class TorchSequential(nn.Sequential):
    """``nn.Sequential`` that carries minidl's sequence mask (bool ``(N, T)``, True at valid steps) along.

    Modules run in order; one with ``supports_masking = True`` is called as ``module(x, mask)`` when there
    is a mask, others as ``module(x)``; the mask after each follows :func:`run_masked`. Without a mask it is
    an ordinary ``nn.Sequential`` (same indices, same ``state_dict`` keys, slicing).
    """

    supports_masking = True

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_masked(x, mask)[0]

    def forward_masked(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """The output and the mask after the last module."""
        for module in self:
            x, mask = run_masked(module, x, mask)
        return x, mask


class TorchResidual(nn.Module):
    """``layers(x) + shortcut(x)`` (the identity when ``shortcut`` is None): minidl's ``Residual``; a mask
    goes to both paths."""

    supports_masking = True

    def __init__(self, layers: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = layers
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = run_masked(self.layers, x, mask)[0]
        return out + (x if self.shortcut is None else run_masked(self.shortcut, x, mask)[0])


class TorchParallel(nn.Module):
    """Every branch on ``x`` (and its mask), outputs concatenated on ``dim`` or summed: minidl's ``Parallel``
    (``dim`` 1 for images and vectors, the last for sequences)."""

    supports_masking = True

    def __init__(self, branches: list[nn.Module], merge: str = "concat", dim: int = 1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge = merge
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        outputs = [run_masked(branch, x, mask)[0] for branch in self.branches]
        return torch.stack(outputs).sum(dim=0) if self.merge == "add" else torch.cat(outputs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}, dim={self.dim}"


class TorchCentreWindow(nn.Module):
    """The centre ``(wh, ww)`` window of the image zero-padded by ``(ph, pw)``: RandomCrop/RandomShift at inference."""

    def __init__(self, padding: tuple[int, int], start: tuple[int, int], size: tuple[int, int]) -> None:
        super().__init__()
        self.padding, self.start, self.size = padding, start, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (ph, pw), (top, left), (wh, ww) = self.padding, self.start, self.size
        padded = nn.functional.pad(x, (pw, pw, ph, ph))
        return padded[:, :, top:top + wh, left:left + ww]


class TorchEmbedding(nn.Embedding):
    """``nn.Embedding`` that makes minidl's mask ``ids != 0`` when ``mask_zero``: minidl's ``Embedding``."""

    def __init__(self, *args: Any, mask_zero: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_zero = mask_zero

    def compute_mask(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        """``ids != 0`` (and ``mask``) with ``mask_zero``; else ``mask``."""
        if not self.mask_zero:
            return mask
        valid = ids != 0
        return valid if mask is None else valid & mask

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_zero={self.mask_zero}"


class TorchPositionalEmbedding(nn.Module):
    """``x + table[:T]`` on ``(N, T, D)``: minidl's ``PositionalEmbedding`` (a parameter ``weight`` when learned,
    a buffer ``table`` of ``max_length`` rows when sinusoidal)."""

    table: torch.Tensor  # registered as a buffer when not learned

    def __init__(self, table: torch.Tensor, learned: bool) -> None:
        super().__init__()
        if learned:
            self.weight = nn.Parameter(table)
        else:
            self.register_buffer("table", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = self.weight if hasattr(self, "weight") else self.table
        return x + table[: x.shape[1]]


class TorchSelfAttention(nn.Module):
    """``attention(x, x, x)`` with minidl's causal and key-padding masks: ``MultiHeadAttention`` as
    ``nn.MultiheadAttention``.

    With a mask, a query with no key left (every key padded, or before it when causal) gets minidl's output
    there, ``out_proj.bias`` (PyTorch's softmax over no key would give NaN).
    """

    supports_masking = True

    def __init__(self, attention: nn.MultiheadAttention, causal: bool) -> None:
        super().__init__()
        self.attention = attention
        self.causal = causal

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        t = x.shape[1]
        allowed = torch.ones(t, t, dtype=torch.bool, device=x.device).tril() if self.causal else None
        if mask is None:
            return self.attention(x, x, x, attn_mask=None if allowed is None else ~allowed, need_weights=False)[0]
        allowed = mask[:, None, :] if allowed is None else mask[:, None, :] & allowed  # (N, T_query or 1, T)
        allowed = allowed.expand(x.shape[0], t, t)
        some_key = allowed.any(dim=-1, keepdim=True)  # (N, T, 1)
        # a query with no key attends to every key here (no NaN anywhere), and gets minidl's output below
        blocked = ~(allowed | ~some_key)
        out = self.attention(x, x, x, attn_mask=blocked.repeat_interleave(self.attention.num_heads, dim=0),
                             need_weights=False)[0]
        bias = self.attention.out_proj.bias
        return torch.where(some_key, out, torch.zeros((), dtype=x.dtype) if bias is None else bias)

    def extra_repr(self) -> str:
        return f"causal={self.causal}"


class TorchConv1d(nn.Conv1d):
    """``nn.Conv1d`` on channels-last sequences ``(N, T, C)``, padded ``(left, right)`` first: minidl's ``Conv1D``.

    Its parameters are ``nn.Conv1d``'s ``weight`` and ``bias``, the same names and layout as minidl's.
    ``padding`` is minidl's (``"same"`` pads for the length of each input).
    """

    def __init__(self, *args: Any, padding_1d: str | int = "valid", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.padding_1d = padding_1d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        span = (self.kernel_size[0] - 1) * self.dilation[0] + 1
        pads = padding_1d(self.padding_1d, x.shape[1], span, self.stride[0])
        return super().forward(nn.functional.pad(x.transpose(1, 2), pads)).transpose(1, 2)


class TorchMaxPool1d(nn.Module):
    """Max pooling of channels-last sequences ``(N, T, C)``, padded with ``-inf`` as ``padding`` says: ``MaxPool1D``."""

    def __init__(self, pool_size: int, stride: int, padding: str | int) -> None:
        super().__init__()
        self.pool_size, self.stride, self.padding = pool_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = padding_1d(self.padding, x.shape[1], self.pool_size, self.stride)
        padded = nn.functional.pad(x.transpose(1, 2), pads, value=-float("inf"))
        return nn.functional.max_pool1d(padded, self.pool_size, self.stride).transpose(1, 2)


class TorchGlobalPool1d(nn.Module):
    """Mean or max over the time axis of ``(N, T, C)``, of the valid steps only with a mask (a sequence
    without one gives zeros): ``GlobalAvgPool1D``/``GlobalMaxPool1D``."""

    supports_masking = True

    def __init__(self, reduce: str) -> None:
        super().__init__()
        self.reduce = reduce

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return x.mean(dim=1) if self.reduce == "mean" else x.amax(dim=1)
        valid = mask[..., None]
        if self.reduce == "mean":
            return torch.where(valid, x, 0).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
        peak = torch.where(valid, x, -float("inf")).amax(dim=1)
        return torch.where(mask.any(dim=1, keepdim=True), peak, 0)


class _Recurrent(nn.RNNBase):
    """``forward`` of minidl's recurrent layers on top of PyTorch's: every step's output
    (``return_sequences``) or the last state, both directions concatenated or summed (``merge``).

    With a mask, minidl skips padded steps wherever they are: each sequence's valid steps are gathered to
    its front, in order, and run packed (``pack_padded_sequence``); the outputs go back to those steps,
    zeros at padded ones, and a sequence with no valid step gives zeros.
    """

    supports_masking = True
    return_sequences: bool
    merge: str | None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return self._merged(*super().forward(x))
        n, t = mask.shape
        steps = torch.arange(t, device=x.device)
        front = torch.argsort(torch.where(mask, steps, steps + t), dim=1)  # valid steps first, in order
        count = mask.sum(dim=1)
        packed = nn.utils.rnn.pack_padded_sequence(torch.gather(x, 1, front[..., None].expand_as(x)),
                                                   count.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = super().forward(packed)
        out = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)[0]
        y = self._merged(out, h_n)
        if not self.return_sequences:
            return torch.where(count[:, None] > 0, y, 0)
        rank = (mask.cumsum(dim=1) - 1).clamp(min=0)  # the k-th valid step's output goes back to that step
        return torch.where(mask[..., None], torch.gather(y, 1, rank[..., None].expand(n, t, y.shape[-1])), 0)

    def _merged(self, out: torch.Tensor, h_n: Any) -> torch.Tensor:
        if self.return_sequences:
            return out[..., :self.hidden_size] + out[..., self.hidden_size:] if self.merge == "sum" else out
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM: (h_n, c_n); h_n is (directions, N, units)
        return h_n[0] + h_n[1] if self.merge == "sum" else torch.cat(list(h_n), dim=-1)


# PyTorch's stubs type forward as returning (output, h_n); minidl's layers return one tensor.
class TorchRNN(_Recurrent, nn.RNN):  # type: ignore[misc]
    """``nn.RNN(batch_first=True)`` returning minidl's ``SimpleRNN`` output."""


# PyTorch's stubs type forward as returning (output, h_n); minidl's layers return one tensor.
class TorchLSTM(_Recurrent, nn.LSTM):  # type: ignore[misc]
    """``nn.LSTM(batch_first=True)`` returning minidl's ``LSTM`` output."""


# PyTorch's stubs type forward as returning (output, h_n); minidl's layers return one tensor.
class TorchGRU(_Recurrent, nn.GRU):  # type: ignore[misc]
    """``nn.GRU(batch_first=True)`` returning minidl's ``GRU`` output."""


def _data(holder: Any) -> np.ndarray | None:
    return None if holder is None else holder.data


@_builtin(containers.Sequential)  # the chain; the model (a subclass) adds its loss's inference output
@_builtin(Sequential)
def _sequential(model: containers.Sequential, ctx: TorchContext) -> nn.Module:
    modules = [ctx.convert(layer) for layer in model.layers]
    if isinstance(model, Sequential) and model.loss is not None:
        modules.append(ctx.convert(model.loss))  # its inference output, last
    return TorchSequential(*modules)  # same indices as minidl's


@_builtin(Residual)
def _residual(layer: Residual, ctx: TorchContext) -> nn.Module:
    # the same attribute names as minidl's, so state_dict keys match ("2.layers.0.weight", "2.shortcut.0.weight")
    return TorchResidual(ctx.convert(layer.layers), None if layer.shortcut is None else ctx.convert(layer.shortcut))


@_builtin(Parallel)
def _parallel(layer: Parallel, ctx: TorchContext) -> nn.Module:
    return TorchParallel([ctx.convert(branch) for branch in layer.branches], layer.merge, layer._axis)


@_builtin(_RandomWindow)
def _window(layer: _RandomWindow, ctx: TorchContext) -> nn.Module:
    (ph, pw), (h, w), (wh, ww) = layer.padding, built(layer.input_shape)[1:], built(layer.output_shape)[1:]
    return TorchCentreWindow((ph, pw), ((h + 2 * ph - wh) // 2, (w + 2 * pw - ww) // 2), (wh, ww))


_builtin(RandomFlip)(lambda layer, ctx: nn.Identity())  # augmentations are the identity at inference
_builtin(RandomRotation)(lambda layer, ctx: nn.Identity())


@_builtin(Conv2D)
def _conv2d(layer: Conv2D, ctx: TorchContext) -> nn.Module:
    shape = built(layer.input_shape)
    (top, bottom), (left, right) = resolve_padding(layer.padding, (shape[1], shape[2]), layer.kernel_size, layer.stride)
    symmetric = top == bottom and left == right
    conv = nn.Conv2d(shape[0], layer.filters, layer.kernel_size, stride=layer.stride,
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
    linear = nn.Linear(built(layer.input_shape)[-1], layer.units, bias=layer.use_bias, dtype=ctx.dtype)
    # minidl's weight is (in, out), nn.Linear's (out, in)
    return ctx.load(linear, weight=built(layer.weight).data.T, bias=_data(layer.bias))


@_builtin(BatchNorm2D)
def _batchnorm2d(layer: BatchNorm2D, ctx: TorchContext) -> nn.Module:
    # Same update rule (momentum, unbiased running variance). num_batches_tracked stays 0: minidl does
    # not count batches, and PyTorch reads the count only when momentum is None.
    bn = nn.BatchNorm2d(built(layer.input_shape)[0], eps=layer.eps, momentum=layer.momentum, dtype=ctx.dtype)
    return ctx.load(bn, weight=built(layer.weight).data, bias=built(layer.bias).data,
                    running_mean=built(layer.running_mean).data, running_var=built(layer.running_var).data)


@_builtin(LayerNorm)
def _layernorm(layer: LayerNorm, ctx: TorchContext) -> nn.Module:
    norm = nn.LayerNorm(built(layer.input_shape)[-1], eps=layer.eps, dtype=ctx.dtype)
    return ctx.load(norm, weight=built(layer.weight).data, bias=built(layer.bias).data)


@_builtin(Embedding)
def _embedding(layer: Embedding, ctx: TorchContext) -> nn.Module:
    embedding = TorchEmbedding(layer.vocab_size, layer.dim, mask_zero=layer.mask_zero, dtype=ctx.dtype)
    return ctx.load(embedding, weight=built(layer.weight).data)


@_builtin(PositionalEmbedding)
def _positional_embedding(layer: PositionalEmbedding, ctx: TorchContext) -> nn.Module:
    # every row up to max_length, so that any length runs (the sinusoidal table's first T rows are the layer's)
    d = built(layer.input_shape)[1]
    table = _sinusoidal_table(layer.max_length, d) if layer.weight is None else layer.weight.data
    return TorchPositionalEmbedding(ctx.tensor(table), layer.weight is not None)


@_builtin(MultiHeadAttention)
def _multi_head_attention(layer: MultiHeadAttention, ctx: TorchContext) -> nn.Module:
    d = built(layer.input_shape)[-1]
    if layer.key_dim is not None and layer.key_dim * layer.num_heads != d:
        raise ValueError(f"to_torch: {layer.name} has key_dim={layer.key_dim} with num_heads={layer.num_heads} and "
                         f"D={d}; nn.MultiheadAttention needs key_dim * num_heads == D")
    attention = nn.MultiheadAttention(d, layer.num_heads, dropout=layer.dropout, bias=layer.use_bias,
                                      batch_first=True, dtype=ctx.dtype)
    # minidl's (in, out) projections are the transposes of PyTorch's (out, in)
    ctx.load(attention, in_proj_weight=built(layer.in_proj_weight).data.T,
             in_proj_bias=_data(layer.in_proj_bias))
    ctx.load(attention.out_proj, weight=built(layer.out_proj_weight).data.T, bias=_data(layer.out_proj_bias))
    return TorchSelfAttention(attention, layer.causal)


@_builtin(GELU)
def _gelu(layer: GELU, ctx: TorchContext) -> nn.Module:
    return nn.GELU(approximate=layer.approximate)


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


@_builtin(Conv1D)
def _conv1d(layer: Conv1D, ctx: TorchContext) -> nn.Module:
    conv = TorchConv1d(built(layer.input_shape)[1], layer.filters, layer.kernel_size, stride=layer.stride,
                       dilation=layer.dilation, bias=layer.use_bias, dtype=ctx.dtype, padding_1d=layer.padding)
    return ctx.load(conv, weight=built(layer.weight).data, bias=_data(layer.bias))


@_builtin(MaxPool1D)
def _maxpool1d(layer: MaxPool1D, ctx: TorchContext) -> nn.Module:
    return TorchMaxPool1d(layer.pool_size, layer.stride, layer.padding)


_builtin(GlobalAvgPool1D)(_simple(TorchGlobalPool1d, reduce="mean"))
_builtin(GlobalMaxPool1D)(_simple(TorchGlobalPool1d, reduce="amax"))


def _recurrent(layer: Layer, ctx: TorchContext) -> nn.Module:
    """PyTorch's module for a recurrent layer or a ``Bidirectional`` one: ``weight_ih_l0`` is minidl's ``weight_ih``
    (and ``weight_ih_l0_reverse`` the backward layer's), and so on."""
    bidirectional = isinstance(layer, Bidirectional)
    inner = layer.forward_layer if bidirectional else layer
    cls = {SimpleRNN: TorchRNN, LSTM: TorchLSTM, GRU: TorchGRU}[type(inner)]
    kwargs = {"nonlinearity": inner.activation} if isinstance(inner, SimpleRNN) else {}
    module = cls(built(inner.input_shape)[1], inner.units, batch_first=True, bidirectional=bidirectional,
                 dtype=ctx.dtype, **kwargs)
    module.return_sequences, module.merge = inner.return_sequences, layer.merge if bidirectional else None
    directions = {"": inner, "_reverse": layer.backward_layer} if bidirectional else {"": inner}
    for suffix, source in directions.items():
        ctx.load(module, **{f"{name}_l0{suffix}": getattr(source, name).data
                            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return module


for _cls in (SimpleRNN, LSTM, GRU, Bidirectional):
    _builtin(_cls)(_recurrent)
