"""Embeddings for sequences: ``Embedding`` (token ids to vectors) and ``PositionalEmbedding`` (where each step is)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Parameter, Shape, as_int, check_bool

__all__ = ["Embedding", "PositionalEmbedding"]


class Embedding(Layer):
    r"""A learned vector for each token id: ``y[n, t] = weight[x[n, t]]``.

    The input holds integer token ids ``0 .. vocab_size - 1``; a float array, or an id outside
    that range, is refused with an error naming the id and the range (an out-of-range id would
    otherwise index silently into the wrong row, or wrap around when negative).

    Backward: each row of ``weight`` receives the sum of the output gradients at the positions
    holding its id (the backend's ``embedding_backward``). There is no gradient
    with respect to integer ids, so ``backward`` returns ``None``: an ``Embedding`` is the first
    layer of a model, whose input gradient ``fit`` never asks for (``backward_params``), and
    ``Sequential.backward`` hands that ``None`` back. Inside a ``Residual`` or ``Parallel``,
    whose backward adds input gradients, it cannot be used.

    ``weight`` starts standard normal, as ``torch.nn.Embedding``'s does (Keras draws
    ``uniform(-0.05, 0.05)``). With ``mask_zero=True`` the id 0 marks padding (Keras' argument):
    :meth:`compute_mask` returns ``x != 0`` for the layers after it, and ``vocab_size`` counts
    the padding id. Id 0 still has a row, which receives gradient only from padded positions
    (none when the layers after it honour the mask); PyTorch's ``padding_idx`` is not used.

    Args:
        vocab_size: the number of token ids (the rows of ``weight``).
        dim: the size of each vector.
        mask_zero: treat id 0 as padding and make a mask ``x != 0``.

    Shape:
        - Input: ``(N, T)``, integer token ids.
        - Output: ``(N, T, dim)`` of the model's float dtype.
        - ``weight``: ``(vocab_size, dim)``.

    Example::

        >>> layer = Embedding(vocab_size=10, dim=4, mask_zero=True)
        >>> layer.build((3,), rng=np.random.default_rng(0), dtype="float64")
        (3, 4)
        >>> ids = np.array([[5, 2, 0]])
        >>> layer.forward(ids).shape, layer.compute_mask(ids, None)
        ((1, 3, 4), array([[ True,  True, False]]))
    """

    def __init__(
        self, vocab_size: int, dim: int, mask_zero: bool = False, *, trainable: bool = True, name: str | None = None
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.vocab_size = as_int(vocab_size, "vocab_size", self.name, minimum=1)
        self.dim = as_int(dim, "dim", self.name, minimum=1)
        self.mask_zero = check_bool(mask_zero, "mask_zero", self.name)
        self.weight: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "dim": self.dim, "mask_zero": self.mask_zero}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(f"{self.name}: expects token ids (N, T), got per-sample shape {input_shape}")
        return (input_shape[0], self.dim)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        self.weight = Parameter(rng.standard_normal((self.vocab_size, self.dim)).astype(dtype))

    def check_input(self, x: Any) -> None:
        """Raise a clear error unless ``x`` is an integer array ``(N, T)`` of ids in ``[0, vocab_size)``."""
        if not self.built:
            raise ValueError(f"{self.name} is not built: call build(input_shape) or put it in a Sequential first")
        assert self.input_shape is not None  # built
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.name}: input must be a numpy array of token ids, got {type(x).__name__}")
        if x.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: expects integer token ids, got an array of dtype {x.dtype} "
                            "(convert with x.astype('int64'))")
        if x.ndim != 2 or x.shape[1:] != self.input_shape:
            raise ValueError(f"{self.name}: expected token ids of shape (N, {self.input_shape[0]}), got {x.shape}")
        if x.size:
            low, high = x.min(), x.max()
            if low < 0 or high >= self.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"{self.name}: token id {bad} is out of range: ids must be in "
                                 f"[0, {self.vocab_size}) (vocab_size={self.vocab_size})")

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """``x != 0`` with ``mask_zero=True`` (combined with an incoming ``mask``); else ``mask`` unchanged."""
        if not self.mask_zero:
            return mask
        valid = np.asarray(x) != 0
        return valid if mask is None else valid & mask

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        assert self.weight is not None  # built
        self._ids = x
        return self.weight.data[x]

    def backward(self, grad_out: np.ndarray) -> None:  # type: ignore[override]  # ids have no gradient
        assert self.weight is not None  # built
        if self.weight.trainable:
            get_backend().embedding_backward(self._ids, grad_out, self.weight.grad)
        return None


class PositionalEmbedding(Layer):
    r"""Add a vector for each position ``t`` to a sequence: ``y[n, t] = x[n, t] + P[t]``.

    Attention and per-position layers do not see the order of the steps; this tells them.

    - ``kind="learned"``: ``P`` is a trained ``weight`` of shape ``(max_length, D)``, starting
      normal with std 0.02 (GPT-2's). Only the first ``T`` rows are used and trained; the rest get
      a zero gradient. ``backward``: ``dP[t] = Σ_n g[n, t]``, ``dx = g``.
    - ``kind="sinusoidal"``: the fixed table of Vaswani et al. (2017),
      ``P[t, 2i] = sin(t / 10000^{2i/D})``, ``P[t, 2i+1] = cos(t / 10000^{2i/D})``; nothing to
      train or save (it is computed again when the layer is built).

    Neither Keras nor PyTorch has this layer built in (KerasNLP's ``PositionEmbedding`` and
    ``SinePositionEncoding`` add ``P`` in the same way). A mask passes through unchanged.

    Args:
        max_length: the longest sequence the layer takes; ``T`` must not exceed it.
        kind: ``"learned"`` (default) or ``"sinusoidal"``.

    Shape:
        - Input: ``(N, T, D)`` with ``T <= max_length``.
        - Output: the input's shape.
        - ``weight`` (learned only): ``(max_length, D)``.

    Example::

        >>> layer = PositionalEmbedding(max_length=16, kind="sinusoidal")
        >>> layer.build((3, 4), dtype="float64")
        (3, 4)
        >>> layer.forward(np.zeros((1, 3, 4)))[0, :, 0].round(4)  # sin(t) in the first column
        array([0.    , 0.8415, 0.9093])
    """

    supports_masking = True

    def __init__(
        self, max_length: int, kind: str = "learned", *, trainable: bool = True, name: str | None = None
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.max_length = as_int(max_length, "max_length", self.name, minimum=1)
        if kind not in ("learned", "sinusoidal"):
            raise ValueError(f'{self.name}: kind must be "learned" or "sinusoidal", got {kind!r}')
        self.kind = kind
        self.weight: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "kind": self.kind}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: expects sequences (N, T, D), got per-sample shape {input_shape}")
        if input_shape[0] > self.max_length:
            raise ValueError(f"{self.name}: sequences of length T={input_shape[0]} are longer than "
                             f"max_length={self.max_length}")
        return tuple(input_shape)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        t, d = input_shape
        if self.kind == "learned":
            self.weight = Parameter((rng.standard_normal((self.max_length, d)) * 0.02).astype(dtype))
        else:
            self._table = _sinusoidal_table(t, d).astype(dtype)

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        table = self.weight.data[:x.shape[1]] if self.weight is not None else self._table
        return x + table

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self.weight is not None and self.weight.trainable:
            t = grad_out.shape[1]
            self.weight.grad[t:] = 0
            np.add.reduce(grad_out, axis=0, out=self.weight.grad[:t])
        return grad_out


def _sinusoidal_table(length: int, dim: int) -> np.ndarray:
    """The ``(length, dim)`` float64 table of sines (even columns) and cosines (odd columns) of Vaswani et al."""
    position = np.arange(length, dtype=np.float64)[:, None]
    angle = position / 10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.empty((length, dim))
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : dim // 2])
    return table
