"""The loop references: one output position (or one window, one channel) at a time, obviously correct and slow.

The oracles every backend is tested against (``tests/test_backend_numpy.py``, ``tests/test_backend_fast.py``);
no layer calls them. Float64 throughout.
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv2d_reference", "conv2d_backward_reference", "maxpool2d_reference", "maxpool2d_backward_reference",
           "batchnorm2d_reference"]


def conv2d_reference(x, weight, bias, stride, pads):
    """Direct convolution: one window at a time. ``pads`` is ((top, bottom), (left, right))."""
    x_pad = np.pad(x, ((0, 0), (0, 0), *pads))
    f, _, kh, kw = weight.shape
    sh, sw = stride
    oh = (x_pad.shape[2] - kh) // sh + 1
    ow = (x_pad.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x_pad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", window, weight)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward_reference(x, weight, grad_out, stride, pads):
    """``(dx, dweight, dbias)`` of ``conv2d_reference``, one output position at a time."""
    x_pad = np.pad(x, ((0, 0), (0, 0), *pads)).astype(np.float64)
    dx_pad = np.zeros_like(x_pad)
    dweight = np.zeros(weight.shape)
    _, _, kh, kw = weight.shape
    sh, sw = stride
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            g = grad_out[:, :, i, j]
            dweight += np.einsum("nf,nchw->fchw", g, x_pad[:, :, rows, cols])
            dx_pad[:, :, rows, cols] += np.einsum("nf,fchw->nchw", g, weight)
    (pt, _), (pl, _) = pads
    dx = dx_pad[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]
    return dx, dweight, grad_out.sum(axis=(0, 2, 3))


def maxpool2d_reference(x, pool, stride, padding):
    """Max over each window, one window at a time; padding is -inf."""
    (kh, kw), (sh, sw), (ph, pw) = pool, stride, padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    oh = (x_pad.shape[2] - kh) // sh + 1
    ow = (x_pad.shape[3] - kw) // sw + 1
    out = np.empty((x.shape[0], x.shape[1], oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x_pad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].max(axis=(2, 3))
    return out


def maxpool2d_backward_reference(x, grad_out, pool, stride, padding):
    """Gradient of ``maxpool2d_reference``: each window's output gradient goes to its first
    maximum in row-major order; overlapping windows add up. Loops over every window of every image."""
    (kh, kw), (sh, sw), (ph, pw) = pool, stride, padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    dx_pad = np.zeros(x_pad.shape)
    n, c, oh, ow = grad_out.shape
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    u, v = divmod(int(np.argmax(x_pad[b, ch, i * sh:i * sh + kh, j * sw:j * sw + kw])), kw)
                    dx_pad[b, ch, i * sh + u, j * sw + v] += grad_out[b, ch, i, j]
    return dx_pad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]


def batchnorm2d_reference(x, gamma, beta, grad_out, eps):
    """Training-mode batch norm of NCHW ``x``, one channel at a time, and its backward:
    ``(y, dx, dgamma, dbeta)``. Float64 throughout."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    y, dx = np.empty_like(x), np.empty_like(x)
    dgamma, dbeta = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        xc, gc = x[:, c], g[:, c]
        m = xc.size
        mean = xc.sum() / m
        var = ((xc - mean) ** 2).sum() / m
        x_hat = (xc - mean) / np.sqrt(var + eps)
        y[:, c] = gamma[c] * x_hat + beta[c]
        dbeta[c], dgamma[c] = gc.sum(), (gc * x_hat).sum()
        # d/dx of gamma * (x - mean) / sqrt(var + eps), through mean and var
        dx[:, c] = gamma[c] / np.sqrt(var + eps) * (gc - dbeta[c] / m - x_hat * dgamma[c] / m)
    return y, dx, dgamma, dbeta
