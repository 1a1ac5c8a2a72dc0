"""``Backend``: the operations a backend computes for minidl's layers, and what each promises.

A layer calls ``get_backend().op(...)`` for its heavy work and keeps the *context* the op returns
for its backward pass. A context is opaque to the layer: the backend that made it decides what it
holds (the padded input, a mask, its own reusable arrays) and in which memory layout. A layer passes
its previous context back in (``ctx=``) so that the backend may reuse that context's arrays step
after step; a context of another backend, or ``None``, is simply not reused.

Every op takes and returns NCHW-shaped NumPy arrays of the input's dtype; what strides they have is
the backend's business (the NumPy backend hands images on batch-innermost, see
:mod:`minidl.backend.numpy`). Values must equal the NumPy backend's (float64 to 1e-12, float32 to
1e-5 relative) and must not depend on the thread count.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

__all__ = ["Backend", "Pads"]

#: ``((top, bottom), (left, right))`` zero padding of an image's two spatial axes.
Pads = tuple[tuple[int, int], tuple[int, int]]
Pair = tuple[int, int]


class Backend:
    """The operations behind minidl's image layers; subclass it (usually through
    :class:`~minidl.backend.numpy.NumpyBackend`, overriding only what you compute differently) to add a backend.

    A backend takes no constructor arguments: it is a stateless object, and per-call state lives in
    the contexts its operations return.

    Shape:
        - Images: ``(N, C, H, W)`` in, ``(N, F, OH, OW)`` or ``(N, C, OH, OW)`` out.

    Example::

        >>> from minidl.backend import get_backend
        >>> import numpy as np
        >>> y, ctx = get_backend().relu(np.array([[-1.0, 2.0]]))
        >>> y
        array([[0., 2.]])
    """

    #: What ``set_backend`` and ``MINIDL_BACKEND`` call it.
    name = "?"

    def execution(self) -> contextlib.AbstractContextManager[None]:
        """The thread and BLAS policy ``fit``, ``evaluate`` and ``predict`` run inside (entered once per call)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What this backend runs on, for ``minidl.show_config()``: at least its name."""
        return {"backend": self.name}

    # -- convolution ---------------------------------------------------------------------------
    def conv2d(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair, pads: Pads,
               ctx: Any = None) -> tuple[np.ndarray, Any]:
        """``(y, ctx)``: the cross-correlation of ``x`` (N, C, H, W), zero-padded by ``pads``, with
        ``weight`` (F, C, kh, kw), plus ``bias`` (F,) if given."""
        raise NotImplementedError

    def conv2d_backward(self, ctx: Any, grad_out: np.ndarray, need_input_grad: bool = True,
                        need_weight_grad: bool = True, need_bias_grad: bool = True,
                        ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(dx, dweight, dbias)`` for ``grad_out`` (N, F, OH, OW); ``None`` for what is not needed."""
        raise NotImplementedError

    # -- pooling ----------------------------------------------------------------------------------
    def max_pool2d(self, x: np.ndarray, pool: Pair, stride: Pair, padding: Pair, ctx: Any = None
                   ) -> tuple[np.ndarray, Any]:
        """``(y, ctx)``: the max of each window, padding counting as ``-inf``."""
        raise NotImplementedError

    def max_pool2d_backward(self, ctx: Any, grad_out: np.ndarray) -> np.ndarray:
        """``dx``: each window's gradient to its first maximum in row-major order; overlaps add up."""
        raise NotImplementedError

    def global_avg_pool2d(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """``(y, ctx)``: the mean of each image's channel, ``y`` (N, C)."""
        raise NotImplementedError

    def global_avg_pool2d_backward(self, ctx: Any, grad_out: np.ndarray) -> np.ndarray:
        """``dx``: ``grad_out / (H·W)`` at every pixel of its channel."""
        raise NotImplementedError

    def avg_pool2d(self, x: np.ndarray, pool: Pair, stride: Pair, padding: Pair, ctx: Any = None
                   ) -> tuple[np.ndarray, Any]:
        """``(y, ctx)``: the mean of each window, padding counting as zeros, divisor ``kh·kw``."""
        raise NotImplementedError

    def avg_pool2d_backward(self, ctx: Any, grad_out: np.ndarray) -> np.ndarray:
        """``dx``: ``grad_out / (kh·kw)`` spread over each window."""
        raise NotImplementedError

    # -- normalisation ----------------------------------------------------------------------------
    def batch_norm2d(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float,
                     stats: tuple[np.ndarray, np.ndarray] | None = None, ctx: Any = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """``(y, mean, var, ctx)``: per-channel normalisation of ``x`` with the batch's mean and (biased)
        variance, or with ``stats = (mean, var)`` when given, then ``weight · x̂ + bias``."""
        raise NotImplementedError

    def batch_norm2d_backward(self, ctx: Any, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dx, dweight, dbias)``; through the batch statistics when forward computed them."""
        raise NotImplementedError

    # -- dense --------------------------------------------------------------------------------------
    def linear(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """``x @ weight + bias`` over the last axis of ``x`` (*, D), ``weight`` (D, U), ``bias`` (U,) or ``None``."""
        raise NotImplementedError

    def linear_backward(self, x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray,
                        weight_grad: np.ndarray | None, bias_grad: np.ndarray | None = None) -> np.ndarray:
        """``grad_out @ weight.T``; overwrites ``weight_grad`` (D, U), unless ``None``, with ``xᵀ grad_out``
        (all leading axes as rows) and ``bias_grad`` (U,), unless ``None``, with the sum of ``grad_out``'s rows."""
        raise NotImplementedError

    def linear_weight_grad(self, x: np.ndarray, grad_out: np.ndarray, out: np.ndarray) -> None:
        """Overwrite ``out`` (D, U) with ``xᵀ grad_out``; ``x`` (*, D), ``grad_out`` (*, U), leading axes as rows."""
        raise NotImplementedError

    # -- element-wise -----------------------------------------------------------------------------
    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a + b`` (a residual block's two paths, or their input gradients)."""
        raise NotImplementedError

    def relu(self, x: np.ndarray, ctx: Any = None) -> tuple[np.ndarray, Any]:
        """``(max(x, 0), ctx)``, in ``x``'s memory layout."""
        raise NotImplementedError

    def relu_backward(self, ctx: Any, grad_out: np.ndarray) -> np.ndarray:
        """``grad_out · [x > 0]``."""
        raise NotImplementedError

    # -- optimizer -------------------------------------------------------------------------------
    def adam_update(self, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
                    max_exp_avg_sq: np.ndarray | None, step: np.ndarray, lr: float, betas: tuple[float, ...],
                    eps: float, t: int) -> None:
        """Adam's moments and step over flat vectors (:meth:`minidl.flat_grads.FlatGrads.adam_step`): update
        ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``) and, unless ``None``, ``max_exp_avg_sq`` (AMSGrad) in place and
        write ``lr / (1 - β1^t) · m / (sqrt(v̂) / sqrt(1 - β2^t) + ε)`` into ``step``, at step count ``t``. All
        arrays 1-D, contiguous, of one dtype. Unlike the other ops, the same bits as the NumPy backend's
        (:func:`minidl.backend.blocks.adam_update`): entry by entry the operations of
        :meth:`minidl.optim.Adam.step`, whose per-parameter loop the fused optimizer must equal."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<minidl backend {self.name!r}>"

    # -- sequences (GELU, LayerNorm, attention, recurrent layers; numpy: minidl.backend.sequence) --------
    def gelu(self, x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray, Any]:
        """``(x·Φ(x), ctx)``, ``Φ`` the normal CDF, or GPT-2's tanh form of it for ``approximate="tanh"``."""
        raise NotImplementedError

    def gelu_backward(self, ctx: Any, grad_out: np.ndarray) -> np.ndarray:
        """``grad_out · dy/dx``."""
        raise NotImplementedError

    def layer_norm(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> tuple[np.ndarray, Any]:
        """``(weight · x̂ + bias, ctx)``, ``x̂ = (x - mean) / sqrt(var + eps)`` over the last axis."""
        raise NotImplementedError

    def layer_norm_backward(self, ctx: Any, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dx, dweight, dbias)``."""
        raise NotImplementedError

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, causal: bool,
                  drop: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, Any]:
        """``(heads, weights, ctx)`` for ``q, k, v`` (N, H, T, dk), ``q`` already scaled: ``weights =
        softmax(q kᵀ)`` over the keys that ``mask`` (N, T) keeps and, if ``causal``, the ones at or before
        the query (a query with none gets zeros); ``heads = (weights · drop) v`` (``drop``: dropout's
        scaled keep-mask, or None)."""
        raise NotImplementedError

    def attention_backward(self, ctx: Any, d_heads: np.ndarray, out: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dq, dk, dv)``; ``dq`` is the gradient of the scaled ``q``. Written into ``out`` (3, N, H, T, dk) if
        given (any strides: the layer passes a view of its packed gradient, so no copy follows)."""
        raise NotImplementedError

    def rnn_forward(self, cell: str, xh: np.ndarray, weight_ih: np.ndarray, weight_hh: np.ndarray,
                    bias_ih: np.ndarray, bias_hh: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """``(h, ctx)``: a recurrent layer's states ``h`` (T+1, N, U), ``h[0] = 0``, written into ``xh``
        (T+1, N, D+U), whose ``xh[:T, :, :D]`` holds the inputs: ``h`` is ``xh[:, :, D:]``, so that ``xh[t]`` is
        ``[x_t | h_t]``. ``cell`` is ``"tanh"``, ``"relu"``, ``"lstm"`` or ``"gru"`` (PyTorch's gate layouts and
        parameters); a step that ``mask`` (N, T) marks padded carries the states through."""
        raise NotImplementedError

    def rnn_backward(self, ctx: Any, dy: np.ndarray | None, d_last: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``(gx, gh)`` (T, N, G·U): the gradients of each step's input and hidden projections, from that of
        the states ``h[1:]`` (``dy``, T, N, U) and/or of the final state (``d_last``, N, U)."""
        raise NotImplementedError

    def embedding_backward(self, ids: np.ndarray, grad_out: np.ndarray, out: np.ndarray) -> None:
        """Write into ``out`` (V, D) each id's sum of the ``grad_out`` rows (…, D) at the positions of ``ids`` (…)
        holding it; zero for ids that do not occur."""
        raise NotImplementedError
