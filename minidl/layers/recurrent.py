"""Recurrent layers on sequences ``(N, T, D)``: ``SimpleRNN``, ``LSTM``, ``GRU`` and ``Bidirectional``.

Sequences are ``(N, T, D)`` (batch, time, features): Keras's layout and PyTorch's
``batch_first=True``. The parameters are laid out exactly as PyTorch's single-layer
``nn.RNN``/``nn.LSTM``/``nn.GRU`` (``weight_ih_l0`` is minidl's ``weight_ih``, and so on), so
weights copy across both ways unchanged.

How the work is done: the backend runs the loop over time steps (``rnn_forward``; see
:mod:`minidl.backend.sequence`), which is the only Python loop. The layer lays the inputs out
time-major as rows ``[x_t | h_t]``, and the backend writes each state beside its step's input, so
that a SimpleRNN or LSTM step is one product ``[x_t | h_{t-1}] [W_ih | W_hh]ᵀ`` (``b_hh`` only adds
to ``b_ih``: one bias); the GRU, whose reset gate multiplies ``W_hn h + b_hn`` alone, projects
every step's input in one product before the loop. Backward through time (``rnn_backward``) runs
the loop in reverse and collects the per-step pre-activation gradients; the weight gradients are
then one matrix product over all steps (for RNN and LSTM, whose ``W_ih`` and ``W_hh`` share those
gradients, one for both: ``gxᵀ [x_t | h_{t-1}]``, the rows the forward pass left). Those big
products are the backend's Dense ones (``linear``, ``linear_weight_grad``), which share them out
over minidl's threads in fixed blocks of rows. (PyTorch runs the same loop in C++; here each step
costs a few NumPy calls of overhead, which matters for small batches and long sequences.)

Masks (bool ``(N, T)``, True at valid steps): a padded step is skipped. The state is carried
through it unchanged, its output (``return_sequences=True``) is zeros, and the last state returned
(``return_sequences=False``) is that of each sequence's last valid step; a sequence without any
valid step returns the initial state, zeros. For right-padded sequences this is exactly what
PyTorch's ``pack_padded_sequence`` computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Parameter, Shape, as_int, check_bool
from .masking import check_mask

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]


class _Recurrent(Layer, register=False):
    """The time loop, masks, shapes and parameters every recurrent layer shares; a subclass is its cell.

    An abstract base: ``register=False`` keeps it out of the layer registry.

    A cell has ``_gates`` (``G``) blocks of ``units`` pre-activations and names its ``_cell`` for the
    backend, whose ``rnn_forward``/``rnn_backward`` run the time loop.
    """

    supports_masking = True
    _gates = 1
    _cell = ""  # the backend's name for the cell: "tanh", "relu", "lstm" or "gru"

    def __init__(
        self, units: int, return_sequences: bool = False, *, trainable: bool = True, name: str | None = None
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.units = as_int(units, "units", self.name, minimum=1)
        self.return_sequences = check_bool(return_sequences, "return_sequences", self.name)
        self.weight_ih: Parameter | None = None
        self.weight_hh: Parameter | None = None
        self.bias_ih: Parameter | None = None
        self.bias_hh: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {"units": self.units, "return_sequences": self.return_sequences}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: expects sequences (N, T, D), got per-sample shape {input_shape}")
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        """PyTorch's initialisation: every parameter uniform in ``±1/sqrt(units)``, in PyTorch's order."""
        rows, bound = self._gates * self.units, 1.0 / np.sqrt(self.units)
        shapes = {"weight_ih": (rows, input_shape[1]), "weight_hh": (rows, self.units),
                  "bias_ih": (rows,), "bias_hh": (rows,)}
        for attr, shape in shapes.items():
            setattr(self, attr, Parameter(rng.uniform(-bound, bound, shape).astype(dtype)))

    def _built_parameters(self) -> tuple[Parameter, Parameter, Parameter, Parameter]:
        """``weight_ih, weight_hh, bias_ih, bias_hh``, which ``build`` creates."""
        if self.weight_ih is None or self.weight_hh is None or self.bias_ih is None or self.bias_hh is None:
            raise RuntimeError(f"{self.name}: not built; build it (or its model) first")
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The input mask for ``return_sequences=True`` (outputs line up with the steps), else None."""
        return mask if self.return_sequences else None

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        mask = check_mask(mask, x, self.name)
        n, t, d = x.shape
        weight_ih, weight_hh, bias_ih, bias_hh = self._built_parameters()
        # time-major rows [x_t | h_t]: the backend writes the states beside the inputs (see rnn_forward)
        self._xh = np.empty((t + 1, n, d + self.units), x.dtype)
        self._xh[:t, :, :d] = x.transpose(1, 0, 2)  # (the last row's x part is never read)
        h, self._ctx = get_backend().rnn_forward(self._cell, self._xh, weight_ih.data, weight_hh.data, bias_ih.data,
                                                 bias_hh.data, mask)
        self._h, self._mask = h, mask
        if not self.return_sequences:
            return h[t].copy()
        out = h[1:] if mask is None else np.where(mask.T[:, :, None], h[1:], 0)
        return np.ascontiguousarray(out.transpose(1, 0, 2))

    # -- backward through time -------------------------------------------------------------
    def backward_params(self, grad_out: np.ndarray) -> None:
        t, n = self._h.shape[0] - 1, self._h.shape[1]
        dy = d_last = None
        if self.return_sequences:
            dy = grad_out.transpose(1, 0, 2)
            if self._mask is not None:  # a padded step's output is a constant zero
                dy = np.where(self._mask.T[:, :, None], dy, 0)
        else:
            d_last = grad_out
        backend = get_backend()
        gx, gh = backend.rnn_backward(self._ctx, dy, d_last)
        self._gx = gx.reshape(t * n, -1)
        gh_flat = gh.reshape(t * n, -1)
        weight_ih, weight_hh, bias_ih, bias_hh = self._built_parameters()
        same_bias_grads = gh is gx and bias_ih.trainable  # b_hh adds where b_ih does (RNN, LSTM): sum once
        xh = self._xh[:t].reshape(t * n, -1)  # each step's [x_t | h_{t-1}]
        d, both = weight_ih.shape[1], None
        if gh is gx and weight_ih.trainable and weight_hh.trainable:  # one pass over gx: gxᵀ [x | h_{t-1}]
            both = np.empty((gx.shape[-1], xh.shape[1]), gx.dtype)
            backend.linear_weight_grad(self._gx, xh, both)
        grads = {  # the weight gradients sum over every step's rows: the backend's Dense products
            weight_ih: lambda out: (np.copyto(out, both[:, :d]) if both is not None
                                    else backend.linear_weight_grad(self._gx, xh[:, :d], out)),
            weight_hh: lambda out: (np.copyto(out, both[:, d:]) if both is not None
                                    else backend.linear_weight_grad(gh_flat, xh[:, d:], out)),
            bias_ih: lambda out: np.add.reduce(self._gx, axis=0, out=out),
            bias_hh: lambda out: (np.copyto(out, bias_ih.grad) if same_bias_grads
                                  else np.add.reduce(gh_flat, axis=0, out=out)),
        }
        for p, write in grads.items():
            if p.trainable:
                write(p.grad)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self.backward_params(grad_out)
        weight_ih = self._built_parameters()[0]
        dx = get_backend().linear(self._gx, weight_ih.data).reshape(self._h.shape[0] - 1, -1, weight_ih.shape[1])
        return np.ascontiguousarray(dx.transpose(1, 0, 2))


_RETURN_ARGS = """        units: size of the hidden state ``h`` (``hidden_size`` in PyTorch).
        return_sequences: return ``h`` at every step ``(N, T, units)`` (the mask passes on) rather than
            the last state ``(N, units)`` (no mask after it)."""

_SHAPE = """        - Input: ``(N, T, D)`` (batch first); mask ``(N, T)`` optional, True at valid steps.
        - Output: ``(N, units)``, or ``(N, T, units)`` with ``return_sequences=True``.
        - ``weight_ih`` ``({g}·units, D)``, ``weight_hh`` ``({g}·units, units)``, ``bias_ih`` and
          ``bias_hh`` ``({g}·units,)``: PyTorch's ``weight_ih_l0`` and so on."""


class SimpleRNN(_Recurrent, Layer):
    r"""Elman recurrent layer: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, ``h_0 = 0``.

    PyTorch's ``nn.RNN(D, units, nonlinearity=activation, batch_first=True)``, Keras's ``SimpleRNN``.
    Parameters start uniform in ``±1/sqrt(units)``, as PyTorch's. Padded steps (mask False) are
    skipped: see :mod:`minidl.layers.recurrent`.

    Args:
{args}
        activation: ``"tanh"`` (default) or ``"relu"``.

    Shape:
{shape}

    Example::

        >>> import numpy as np
        >>> rnn = SimpleRNN(4, return_sequences=True)
        >>> rnn.build((5, 3), rng=np.random.default_rng(0))
        (5, 4)
        >>> rnn.forward(np.ones((2, 5, 3), np.float32)).shape
        (2, 5, 4)
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        return_sequences: bool = False,
        *,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(units, return_sequences, trainable=trainable, name=name)
        if activation not in ("tanh", "relu"):
            raise ValueError(f'{self.name}: activation must be "tanh" or "relu", got {activation!r}')
        self.activation = activation
        self._cell = activation

    def get_config(self) -> dict[str, Any]:
        return {"units": self.units, "activation": self.activation, "return_sequences": self.return_sequences}



class LSTM(_Recurrent, Layer):
    r"""Long short-term memory layer (Hochreiter & Schmidhuber, 1997), PyTorch's gate layout.

    .. math::
        i, f, g, o &= σ(a_i),\ σ(a_f),\ \tanh(a_g),\ σ(a_o), \quad
            a = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} \\
        c_t &= f c_{t-1} + i g, \qquad h_t = o \tanh(c_t)

    The four gate blocks of ``a`` (and of every parameter's rows) are in PyTorch's order
    ``i, f, g, o`` (input, forget, cell, output); ``h_0 = c_0 = 0``. PyTorch's
    ``nn.LSTM(D, units, batch_first=True)``; Keras's ``LSTM`` (whose gate order is the same but
    whose weights are transposed and have one bias). Parameters start uniform in ``±1/sqrt(units)``.
    Padded steps (mask False) are skipped: see :mod:`minidl.layers.recurrent`.

    Args:
{args}

    Shape:
{shape}

    Example::

        >>> import numpy as np
        >>> lstm = LSTM(8)
        >>> lstm.build((5, 3), rng=np.random.default_rng(0))
        (8,)
        >>> lstm.weight_ih.shape, lstm.weight_hh.shape
        ((32, 3), (32, 8))
        >>> lstm.forward(np.ones((2, 5, 3), np.float32)).shape
        (2, 8)
    """

    _gates = 4

    _cell = "lstm"


class GRU(_Recurrent, Layer):
    r"""Gated recurrent unit (Cho et al., 2014), PyTorch's form and gate layout.

    .. math::
        r &= σ(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}), \quad
        z = σ(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n &= \tanh(W_{in} x_t + b_{in} + r (W_{hn} h_{t-1} + b_{hn})), \quad
        h_t = (1 - z)\, n + z\, h_{t-1}

    The three gate blocks are in PyTorch's order ``r, z, n`` (reset, update, new), and ``r``
    multiplies ``W_hn h + b_hn`` (Keras's ``reset_after=True``); ``h_0 = 0``. PyTorch's
    ``nn.GRU(D, units, batch_first=True)``. Parameters start uniform in ``±1/sqrt(units)``.
    Padded steps (mask False) are skipped: see :mod:`minidl.layers.recurrent`.

    Args:
{args}

    Shape:
{shape}

    Example::

        >>> import numpy as np
        >>> gru = GRU(6, return_sequences=True)
        >>> gru.build((5, 3), rng=np.random.default_rng(0))
        (5, 6)
        >>> x, mask = np.ones((2, 5, 3), np.float32), np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
        >>> gru.forward(x, mask=mask)[0, 3:]   # padded steps: zeros
        array([[0., 0., 0., 0., 0., 0.],
               [0., 0., 0., 0., 0., 0.]], dtype=float32)
    """

    _gates = 3

    _cell = "gru"


for _cls in (SimpleRNN, LSTM, GRU):
    # (replace, not format: the formulas hold braces)
    _cls.__doc__ = (_cls.__doc__ or "").replace("{args}", _RETURN_ARGS).replace("{shape}", _SHAPE.format(g=_cls._gates))


def reversal_index(mask: np.ndarray) -> np.ndarray:
    """``(N, T)`` indices that reverse the valid steps of each sequence among themselves, padded steps kept.

    ``x[arange(N)[:, None], index]`` runs each sequence backwards over its valid steps (the reverse
    direction of PyTorch's packed bidirectional RNNs, for right-padded sequences); the index is its
    own inverse.
    """
    n, t = mask.shape
    rank = np.cumsum(mask, axis=1) - 1
    count = rank[:, -1:] + 1
    valid_positions = np.argsort(~mask, axis=1, kind="stable")  # each row's valid steps first, in order
    mirrored = np.take_along_axis(valid_positions, np.clip(count - 1 - rank, 0, t - 1), axis=1)
    return np.where(mask, mirrored, np.arange(t))


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards in time, and merges their outputs.

    The backward copy (``backward_layer``, with its own parameters) sees each sequence reversed;
    with a mask, only the valid steps of each sequence are reversed (among themselves), as in
    PyTorch's packed bidirectional RNNs. With ``return_sequences=True`` its outputs are put back in
    forward time order before merging, so step ``t`` holds both directions' states at ``t``
    (PyTorch's ``output``); otherwise each direction's last state is merged: the backward one is
    its state after the first step (PyTorch's ``h_n[1]``, Keras's behaviour).

    Args:
        layer: an unbuilt ``SimpleRNN``, ``LSTM`` or ``GRU`` (kept as ``forward_layer``); the backward
            copy is made from its configuration.
        merge: ``"concat"`` (on the last axis: forward first, as PyTorch's ``bidirectional=True``) or
            ``"sum"``.

    Shape:
        - Input: ``(N, T, D)``; mask ``(N, T)`` optional, True at valid steps.
        - Output: the layer's output shape, with ``2·units`` on the last axis for ``"concat"``.

    Example::

        >>> import numpy as np
        >>> bi = Bidirectional(GRU(4, return_sequences=True))
        >>> bi.build((5, 3), rng=np.random.default_rng(0))
        (5, 8)
        >>> bi.forward(np.ones((2, 5, 3), np.float32)).shape
        (2, 5, 8)
    """

    supports_masking = True

    def __init__(self, layer: Layer, merge: str = "concat", *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        if not isinstance(layer, _Recurrent):
            raise TypeError(f"{self.name}: layer must be a SimpleRNN, LSTM or GRU, got {type(layer).__name__}")
        if merge not in ("concat", "sum"):
            raise ValueError(f'{self.name}: merge must be "concat" or "sum", got {merge!r}')
        if layer.built:
            raise ValueError(f"{self.name}: layer {layer.name} is already built; give Bidirectional an unbuilt one")
        self.merge = merge
        self.forward_layer = layer
        spec = layer.to_config()
        spec["config"]["name"] = f"backward_{layer.name}"
        backward_layer = Layer.from_config(spec)
        assert isinstance(backward_layer, _Recurrent)  # the config of a recurrent layer makes one
        self.backward_layer = backward_layer

    def get_config(self) -> dict[str, Any]:
        return {"layer": self.forward_layer, "merge": self.merge}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = self.forward_layer.compute_output_shape(input_shape)
        return (*shape[:-1], 2 * shape[-1]) if self.merge == "concat" else shape

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        self.forward_layer.build(input_shape, rng, dtype)
        self.backward_layer.build(input_shape, rng, dtype)

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        return self.forward_layer.compute_mask(x, mask)

    def _reverse(self, x: np.ndarray) -> np.ndarray:
        return x[:, ::-1] if self._index is None else x[self._rows, self._index]

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        mask = check_mask(mask, x, self.name)
        self._index = None if mask is None else reversal_index(mask)
        self._rows = np.arange(x.shape[0])[:, None]
        ahead = self.forward_layer.forward(x, training, mask=mask)
        back = self.backward_layer.forward(np.ascontiguousarray(self._reverse(x)), training, mask=mask)
        if self.forward_layer.return_sequences:
            back = self._reverse(back)
        return np.concatenate([ahead, back], axis=-1) if self.merge == "concat" else ahead + back

    def _split(self, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        units = self.forward_layer.units
        ahead, back = (grad_out[..., :units], grad_out[..., units:]) if self.merge == "concat" else (grad_out,) * 2
        if self.forward_layer.return_sequences:
            back = self._reverse(back)
        return np.ascontiguousarray(ahead), np.ascontiguousarray(back)

    def backward_params(self, grad_out: np.ndarray) -> None:
        ahead, back = self._split(grad_out)
        self.forward_layer.backward_params(ahead)
        self.backward_layer.backward_params(back)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        ahead, back = self._split(grad_out)
        return self.forward_layer.backward(ahead) + self._reverse(self.backward_layer.backward(back))
