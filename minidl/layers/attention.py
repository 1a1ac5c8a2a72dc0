"""Attention: ``MultiHeadAttention`` (self-attention over a sequence)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Parameter, Shape, as_float, as_int, check_bool
from .masking import check_mask

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(Layer):
    r"""Multi-head scaled dot-product self-attention (Vaswani et al., 2017) on sequences ``(N, T, D)``.

    Every position projects to a query, a key and a value per head (``H`` heads of ``key_dim``
    values each); each query attends to the keys, and the heads' weighted values are concatenated
    and projected back to ``D``:

    .. math::
        [Q\,|\,K\,|\,V] = x W_{in} + b_{in}, \qquad
        A_h = \operatorname{softmax}\Big(\frac{Q_h K_h^\top}{\sqrt{d_k}} + M\Big), \qquad
        y = [A_1 V_1 \,|\, \dots \,|\, A_H V_H]\, W_{out} + b_{out}

    ``M`` is ``-∞`` where a query may not look: keys at padded steps (the ``mask`` that arrives
    from ``Embedding(mask_zero=True)``: ``(N, T)``, True at valid steps) and, with
    ``causal=True``, keys after the query (step ``j > i``), so a decoder cannot see the future.
    A padded key gets exactly zero weight, so nothing at a padded step changes an output at a
    valid one. A query with no key left (a sequence that is all padding) gets all-zero weights
    and outputs ``b_out`` (PyTorch gives NaN there). The softmax subtracts each row's maximum,
    so large scores stay finite. ``dropout`` zeroes attention weights in training (inverted
    scaling, from the layer's own generator derived from the build ``rng``), as PyTorch does.

    ``last_attention`` holds the weights ``A`` of the last ``forward``, ``(N, H, T, T)``
    (before dropout): what :func:`minidl.plot.attention` draws.

    Backward is hand-written: through the output projection, ``dA = dO Vᵀ``, ``dV = Aᵀ dO``,
    softmax's ``dS = A ⊙ (dA − Σ_j dA ⊙ A)``, ``dQ = dS K / √d_k``, ``dK = dSᵀ Q / √d_k`` and
    the input projection; every step is a batched ``matmul`` over ``(N, H)``, with no loop.

    **Parameters and PyTorch.** minidl keeps PyTorch's names and packing with its own
    ``(in, out)`` layout (that of ``Dense``): ``in_proj_weight`` ``(D, 3·H·key_dim)`` holds the
    query, key and value projections side by side, each head's ``key_dim`` columns in turn;
    ``out_proj_weight`` is ``(H·key_dim, D)``. With ``key_dim = D // H`` (the default), this is
    ``torch.nn.MultiheadAttention(D, H, batch_first=True)`` with ``in_proj_weight = ours.T``,
    ``in_proj_bias = ours``, ``out_proj.weight = out_proj_weight.T``, ``out_proj.bias =
    out_proj_bias``, ``attn_mask`` the causal mask and ``key_padding_mask = ~mask`` (PyTorch's
    mask marks the steps to ignore). Other ``key_dim`` values follow Keras (whose
    ``MultiHeadAttention`` takes ``num_heads`` and ``key_dim`` and projects back to ``D``) and
    have no PyTorch twin. Projections start Glorot-uniform (Keras'), biases at zero.

    Args:
        num_heads: the number of heads ``H``.
        key_dim: the size of each head's queries, keys and values; default ``D // num_heads``
            (then ``D`` must be a multiple of ``num_heads``).
        causal: let step ``i`` attend to steps ``j <= i`` only.
        dropout: the probability of zeroing an attention weight in training, in ``[0, 1)``.
        use_bias: add the biases ``b_in`` and ``b_out``.

    Shape:
        - Input: ``(N, T, D)``; ``mask`` (optional): ``(N, T)`` bool, True at valid steps.
        - Output: ``(N, T, D)``.
        - ``in_proj_weight``: ``(D, 3·H·key_dim)``; ``in_proj_bias``: ``(3·H·key_dim,)``;
          ``out_proj_weight``: ``(H·key_dim, D)``; ``out_proj_bias``: ``(D,)``.

    Example::

        >>> layer = MultiHeadAttention(num_heads=2, causal=True)
        >>> layer.build((3, 4), rng=np.random.default_rng(0), dtype="float64")
        (3, 4)
        >>> y = layer.forward(np.ones((1, 3, 4)), mask=np.array([[True, True, False]]))
        >>> y.shape, layer.last_attention[0, 0].round(2)
        ((1, 3, 4), array([[1. , 0. , 0. ],
               [0.5, 0.5, 0. ],
               [0.5, 0.5, 0. ]]))
    """

    supports_masking = True

    def __init__(
        self,
        num_heads: int,
        key_dim: int | None = None,
        causal: bool = False,
        dropout: float = 0.0,
        use_bias: bool = True,
        *,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.num_heads = as_int(num_heads, "num_heads", self.name, minimum=1)
        self.key_dim = None if key_dim is None else as_int(key_dim, "key_dim", self.name, minimum=1)
        self.causal = check_bool(causal, "causal", self.name)
        self.dropout = as_float(dropout, "dropout", self.name, low=0.0, high=1.0)
        self.use_bias = check_bool(use_bias, "use_bias", self.name)
        self.in_proj_weight: Parameter | None = None
        self.in_proj_bias: Parameter | None = None
        self.out_proj_weight: Parameter | None = None
        self.out_proj_bias: Parameter | None = None
        self.last_attention: np.ndarray | None = None

    def get_config(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "key_dim": self.key_dim, "causal": self.causal,
                "dropout": self.dropout, "use_bias": self.use_bias}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: expects sequences (N, T, D), got per-sample shape {input_shape}")
        d = input_shape[1]
        if self.key_dim is None and d % self.num_heads:
            raise ValueError(f"{self.name}: the model dimension D={d} is not a multiple of num_heads="
                             f"{self.num_heads}; choose num_heads dividing {d}, or give key_dim")
        return tuple(input_shape)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        d = input_shape[1]
        self._head_dim = self.key_dim if self.key_dim is not None else d // self.num_heads
        inner = self.num_heads * self._head_dim
        limit = np.sqrt(6.0 / (d + inner))  # Glorot-uniform for each of the q, k, v and output projections
        self.in_proj_weight = Parameter(rng.uniform(-limit, limit, (d, 3 * inner)).astype(dtype))
        self.out_proj_weight = Parameter(rng.uniform(-limit, limit, (inner, d)).astype(dtype))
        self.in_proj_bias = Parameter(np.zeros(3 * inner, dtype=dtype)) if self.use_bias else None
        self.out_proj_bias = Parameter(np.zeros(d, dtype=dtype)) if self.use_bias else None
        self._rng = np.random.default_rng(rng.integers(2**63))

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        assert self.in_proj_weight is not None and self.out_proj_weight is not None  # built
        mask = check_mask(mask, x, self.name)
        n, t, _ = x.shape
        h, dk = self.num_heads, self._head_dim
        backend = get_backend()  # its linear splits big products over minidl's threads
        qkv = backend.linear(x, self.in_proj_weight.data, None if self.in_proj_bias is None else self.in_proj_bias.data)
        q, k, v = qkv.reshape(n, t, 3, h, dk).transpose(2, 0, 3, 1, 4)  # each (N, H, T, dk)
        q = q * x.dtype.type(1 / np.sqrt(dk))
        drop = None
        if training and self.dropout > 0:
            keep = self._rng.random((n, h, t, t), dtype=x.dtype) >= self.dropout
            drop = keep * x.dtype.type(1 / (1 - self.dropout))
        heads, self.last_attention, self._ctx = backend.attention(q, k, v, mask, self.causal, drop)
        concat = heads.transpose(0, 2, 1, 3).reshape(n, t, h * dk)
        self._cache = (x, concat)
        return backend.linear(concat, self.out_proj_weight.data,
                              None if self.out_proj_bias is None else self.out_proj_bias.data)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.out_proj_weight is not None and self.in_proj_weight is not None  # built
        x, concat = self._cache
        n, t, _ = x.shape
        h, dk = self.num_heads, self._head_dim
        backend = get_backend()
        out_w, in_w = self.out_proj_weight, self.in_proj_weight
        d_concat = backend.linear_backward(concat, out_w.data, grad_out, out_w.grad if out_w.trainable else None,
                                           _grad_of(self.out_proj_bias))
        d_heads = d_concat.reshape(n, t, h, dk).transpose(0, 2, 1, 3)
        d_qkv = np.empty((n, t, 3, h, dk), dtype=x.dtype)  # the packed layout of in_proj_weight's columns
        backend.attention_backward(self._ctx, d_heads, out=d_qkv.transpose(2, 0, 3, 1, 4))  # dq, dk, dv in place
        d_qkv[:, :, 0] *= x.dtype.type(1 / np.sqrt(dk))  # the gradient of q before its scaling (k, v: none)
        return backend.linear_backward(x, in_w.data, d_qkv.reshape(n, t, 3 * h * dk),
                                       in_w.grad if in_w.trainable else None, _grad_of(self.in_proj_bias))


def _grad_of(bias: Parameter | None) -> np.ndarray | None:
    """The array a bias's gradient goes to, or ``None`` when there is none to compute."""
    return bias.grad if bias is not None and bias.trainable else None
