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
