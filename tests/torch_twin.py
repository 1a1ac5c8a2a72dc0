"""Running a minidl layer and its PyTorch twin on the same batch, in float64, for the equality tests."""

from collections.abc import Callable

import numpy as np
import pytest

TOL = 1e-9


def minidl_pass(layer, x: np.ndarray, g: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(output, input gradient, {parameter name: gradient})`` of ``layer`` for upstream gradient ``g``."""
    out = layer.forward(x, **kwargs)
    dx = layer.backward(g)
    return out, dx, {k: p.grad.copy() for k, p in layer.named_parameters().items()}


def torch_pass(module, x: np.ndarray, g: np.ndarray, call: Callable | None = None):
    """The same for a ``torch.nn.Module`` (``call(module, x)`` gives the output; default ``module(x)``).
    Integer ``x`` gets no gradient (None)."""
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x)
    if xt.is_floating_point():
        xt.requires_grad_(True)
    out = call(module, xt) if call is not None else module(xt)
    out.backward(torch.tensor(g))
    grads = {k: p.grad.detach().numpy().copy() for k, p in module.named_parameters()}
    return out.detach().numpy(), None if xt.grad is None else xt.grad.numpy(), grads


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=TOL, atol=TOL, err_msg=what)
