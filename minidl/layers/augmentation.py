"""Data augmentation as layers: ``RandomFlip``, ``RandomShift``, ``RandomCrop``, ``RandomRotation``.

As Keras's preprocessing layers, they change images only in training (``forward(x, training=True)``,
which is what ``fit`` calls) and are the identity (``RandomCrop``: a centre crop) at inference, so
``evaluate``/``predict`` see the data as it is. Put them first in a model::

    model = Sequential([RandomShift(1), Conv2D(8, 3), ...], input_shape=(1, 8, 8), seed=0)

Each batch gets fresh random transforms, one per image, drawn for the whole batch at once (no loop
over samples). The draws come from the layer's own ``np.random.Generator``, derived from the model's
seed when the model is built: the same seed gives the same augmented epochs, and NumPy's global
random state is never touched. Every transform moves pixels without mixing them, so ``backward``
is exact (its adjoint: the gradient goes back to the pixels it came from) and ``check_layer`` passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Layer, Shape, as_float, as_pair, check_bool
from .images import image_shape

__all__ = ["RandomFlip", "RandomShift", "RandomCrop", "RandomRotation"]


class _Augmentation(Layer, register=False):
    """What every augmentation layer shares: images only, its own generator (``None`` until built).
    An abstract base: ``register=False`` keeps it out of the layer registry."""

    _rng: np.random.Generator | None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return image_shape(input_shape, self.name)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        self._rng = np.random.default_rng(rng.integers(2**63))

    def backward_params(self, grad_out: np.ndarray) -> None:
        """No parameters, and first in a model nobody needs the gradient of the raw images: nothing to do."""

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            raise RuntimeError(f"{self.name}: not built; a training forward needs the generator build creates")
        return self._rng


class RandomFlip(_Augmentation, Layer):
    """In training, mirror each image left-right (``horizontal``) and/or upside down (``vertical``),
    each with probability 1/2; the identity at inference.

    Args:
        horizontal: flip along the width axis (Keras's ``mode="horizontal"``).
        vertical: flip along the height axis.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, H, W)``.

    Example::

        RandomFlip()                 # left-right only: digits and letters must not be flipped at all
    """

    def __init__(self, horizontal: bool = True, vertical: bool = False, *, trainable: bool = True,
                 name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.horizontal = check_bool(horizontal, "horizontal", self.name)
        self.vertical = check_bool(vertical, "vertical", self.name)
        if not (self.horizontal or self.vertical):
            raise ValueError(f"{self.name}: horizontal and vertical are both False; nothing would be flipped")
        self._rng = None
        self._flips: list[tuple[int, np.ndarray]] = []

    def get_config(self) -> dict[str, Any]:
        return {"horizontal": self.horizontal, "vertical": self.vertical}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._flips = []
        if not training:
            return x
        axes = [axis for axis, on in ((3, self.horizontal), (2, self.vertical)) if on]
        self._flips = [(axis, self._generator().random(len(x)) < 0.5) for axis in axes]
        return self._apply(x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self._apply(grad_out)  # a flip is its own inverse and its own adjoint

    def _apply(self, x: np.ndarray) -> np.ndarray:
        for axis, chosen in self._flips:
            x = np.where(chosen[:, None, None, None], np.flip(x, axis), x)
        return x


class _RandomWindow(_Augmentation, register=False):
    """Pad with zeros, then cut one window per image at a random offset (the centre at inference)."""

    def __init__(self, size: int | tuple[int, int] | None, padding: int | tuple[int, int], *, trainable: bool,
                 name: str | None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.size = None if size is None else as_pair(size, "size", self.name)
        self.padding = as_pair(padding, "padding", self.name, minimum=0)
        self._rng = None
        self._offsets: tuple[np.ndarray, np.ndarray] | None = None

    def _window(self, input_shape: Shape) -> tuple[int, int]:
        return self.size or (input_shape[1], input_shape[2])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = super().compute_output_shape(input_shape)
        (wh, ww), (ph, pw) = self._window(input_shape), self.padding
        # Beyond the image's own side, more padding only adds windows of nothing but zeros (as Keras
        # refuses a translation of more than the image); unbounded, it reaches NumPy's int64 draws
        # (10**400) or pads every image of a batch to gigabytes (10**5) at the first training step.
        if ph > h or pw > w:
            arg = "pixels" if self.size is None else "padding"
            raise ValueError(f"{self.name}: {arg} {self.padding} is more than the image's height and width "
                             f"{(h, w)} (input shape {input_shape}): expected at most {(h, w)}")
        if wh > h + 2 * ph or ww > w + 2 * pw:
            raise ValueError(f"{self.name}: window {(wh, ww)} is bigger than the padded image "
                             f"{(h + 2 * ph, w + 2 * pw)} (input shape {input_shape})")
        return (c, wh, ww)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        n, _, h, w = x.shape
        (wh, ww), (ph, pw) = self._window(x.shape[1:]), self.padding
        slack_h, slack_w = h + 2 * ph - wh, w + 2 * pw - ww
        if training:
            rng = self._generator()
            offsets = (rng.integers(0, slack_h + 1, n), rng.integers(0, slack_w + 1, n))
        else:
            offsets = (np.full(n, slack_h // 2), np.full(n, slack_w // 2))
            if (slack_h // 2, slack_w // 2) == (ph, pw) and (wh, ww) == (h, w):
                self._offsets = None  # the centre window of the padded image is the image
                return x
        self._offsets = offsets
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        # (N, C, slack_h + 1, slack_w + 1, wh, ww), no copy; one fancy index picks each image's window.
        return sliding_window_view(padded, (wh, ww), axis=(2, 3))[np.arange(n), :, offsets[0], offsets[1]]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._offsets is None:
            return grad_out
        assert self.input_shape is not None  # backward follows a forward of a built layer
        n, (c, h, w) = len(grad_out), self.input_shape
        (wh, ww), (ph, pw) = grad_out.shape[2:], self.padding
        padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grad_out.dtype)
        # Each image's window is written once, and windows of different images never share memory.
        windows = sliding_window_view(padded, (wh, ww), axis=(2, 3), writeable=True)
        windows[np.arange(n), :, self._offsets[0], self._offsets[1]] = grad_out
        return padded[:, :, ph:ph + h, pw:pw + w]


class RandomCrop(_RandomWindow, Layer):
    """In training, pad each image with ``padding`` zeros on every side and cut a ``size`` window at
    a random place (torchvision's ``RandomCrop(size, padding)``); at inference, the centre window.

    Args:
        size: window height and width, an int or ``(h, w)``; at most the padded image's.
        padding: zeros added on each side first, an int or ``(h, w)``; at most the image's height and width.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, size_h, size_w)``.

    Example::

        RandomCrop(32, padding=4)    # CIFAR-10's usual augmentation: 32x32 out of a 40x40 padded image
    """

    def __init__(self, size: int | tuple[int, int], padding: int | tuple[int, int] = 0, *, trainable: bool = True,
                 name: str | None = None) -> None:
        super().__init__(size, padding, trainable=trainable, name=name)

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size, "padding": self.padding}


class RandomShift(_RandomWindow, Layer):
    """In training, move each image by a random whole number of pixels, up to ``pixels`` along each
    axis, filling with zeros; the identity at inference. ``RandomCrop`` of the image's own size
    with ``padding=pixels``.

    Args:
        pixels: the largest shift, an int or ``(along height, along width)``; at most the image's height
            and width (a shift by the whole image already leaves only zeros).

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, H, W)``.

    Example::

        RandomShift(2)               # each 28x28 digit moves by -2..2 pixels in each direction
    """

    def __init__(self, pixels: int | tuple[int, int] = 1, *, trainable: bool = True, name: str | None = None) -> None:
        as_pair(pixels, "pixels", name or type(self).__name__, minimum=0)  # named as the user named it
        super().__init__(None, pixels, trainable=trainable, name=name)

    def get_config(self) -> dict[str, Any]:
        return {"pixels": self.padding}


class RandomRotation(_Augmentation, Layer):
    """In training, rotate each image about its centre by an angle drawn uniformly from
    ``[-degrees, degrees]`` (positive: counter-clockwise, as Keras), nearest-neighbour, filling with
    zeros; the identity at inference.

    Args:
        degrees: the largest rotation, in degrees (0 to 180).

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, H, W)``.

    Example::

        RandomRotation(10)
    """

    def __init__(self, degrees: float = 10.0, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.degrees = as_float(degrees, "degrees", self.name, low=0.0)
        if self.degrees > 180:
            raise ValueError(f"{self.name}: degrees must be in [0, 180], got {degrees!r}")
        self._rng = None
        self._source: tuple[np.ndarray, np.ndarray] | None = None

    def get_config(self) -> dict[str, Any]:
        return {"degrees": self.degrees}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        if not training or self.degrees == 0:
            self._source = None
            return x
        n, c, h, w = x.shape
        angle = np.deg2rad(self._generator().uniform(-self.degrees, self.degrees, n))[:, None, None]
        # Where each output pixel comes from: its centred coordinates rotated back, rounded (rows point down).
        yc, xc = np.arange(h)[:, None] - (h - 1) / 2, np.arange(w)[None, :] - (w - 1) / 2
        cos, sin = np.cos(angle), np.sin(angle)
        sy = np.rint(cos * yc + sin * xc + (h - 1) / 2).astype(np.intp)
        sx = np.rint(cos * xc - sin * yc + (w - 1) / 2).astype(np.intp)
        inside = ((sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)).reshape(n, 1, h * w)
        index = np.where(inside, (np.clip(sy, 0, h - 1) * w + np.clip(sx, 0, w - 1)).reshape(n, 1, h * w), 0)
        self._source = (index, inside)
        out = np.take_along_axis(x.reshape(n, c, h * w), index, axis=2)
        return np.where(inside, out, x.dtype.type(0)).reshape(x.shape)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._source is None:
            return grad_out
        index, inside = self._source
        n, c, h, w = grad_out.shape
        # Nearest-neighbour sampling can read one input pixel twice: its gradient is the sum (bincount).
        rows = (np.arange(n * c) * (h * w)).reshape(n, c, 1)
        flat = (rows + index)[np.broadcast_to(inside, (n, c, h * w))]
        weights = grad_out.reshape(n, c, h * w)[np.broadcast_to(inside, (n, c, h * w))]
        grad = np.bincount(flat, weights=weights, minlength=n * c * h * w)
        return grad.astype(grad_out.dtype, copy=False).reshape(grad_out.shape)
