"""Slow, obviously-correct reference implementations: the oracles the fast layers are tested against.

Python loops over output positions are fine here: this code only runs in tests.
"""

import numpy as np


def conv2d_reference(x, weight, bias, stride, pads):
    """Direct convolution: one window at a time. ``pads`` is ((top, bottom), (left, right))."""
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    f, _, kh, kw = weight.shape
    sh, sw = stride
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", window, weight)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def maxpool2d_reference(x, pool, stride, padding):
    """Max over each window, one window at a time; padding is -inf."""
    (kh, kw), (sh, sw), (ph, pw) = pool, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    out = np.empty((x.shape[0], x.shape[1], oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].max(axis=(2, 3))
    return out


def conv2d_backward_reference(x, weight, grad_out, stride, pads):
    """``(dx, dweight, dbias)`` of ``conv2d_reference``, one output position at a time."""
    xp = np.pad(x, ((0, 0), (0, 0), *pads)).astype(np.float64)
    dxp = np.zeros_like(xp)
    dweight = np.zeros(weight.shape)
    _, _, kh, kw = weight.shape
    sh, sw = stride
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            g = grad_out[:, :, i, j]
            dweight += np.einsum("nf,nchw->fchw", g, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("nf,fchw->nchw", g, weight)
    (pt, _), (pl, _) = pads
    dx = dxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]
    return dx, dweight, grad_out.sum(axis=(0, 2, 3))


def maxpool2d_backward_reference(x, grad_out, pool, stride, padding):
    """Gradient of ``maxpool2d_reference``: each window's output gradient goes to its first
    maximum in row-major order; overlapping windows add up. Loops over every window of every image."""
    (kh, kw), (sh, sw), (ph, pw) = pool, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    dxp = np.zeros(xp.shape)
    n, c, oh, ow = grad_out.shape
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    u, v = divmod(int(np.argmax(xp[b, ch, i * sh:i * sh + kh, j * sw:j * sw + kw])), kw)
                    dxp[b, ch, i * sh + u, j * sw + v] += grad_out[b, ch, i, j]
    return dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
