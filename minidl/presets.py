"""Ready-made architectures, each a plain ``Sequential`` a user could have written."""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from .model import Sequential


def blog_cnn(
    num_filters: int = 4,
    filter_size: int = 3,
    pool_size: int = 2,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (1, 8, 8),
    seed: int | None = 0,
    dtype: Any = "float32",
    faithful: bool = False,
) -> Sequential:
    """The blog post's CNN: Conv2D → ReLU → MaxPool2D → Flatten → Dense → SoftmaxCE.

    By default every parameter trains (He-initialised, with a conv bias). ``faithful=True``
    reproduces what the blog actually trains: bias-free filters drawn from ``N(0, 0.1²)``
    and then frozen, a dense layer drawn from ``N(0, 0.01²)`` with zero bias.
    """
    model = Sequential(
        [
            Conv2D(num_filters, kernel_size=filter_size, use_bias=not faithful, trainable=not faithful),
            ReLU(),
            MaxPool2D(pool_size),
            Flatten(),
            Dense(num_classes),
            SoftmaxCE(),
        ],
        input_shape=input_shape,
        seed=seed,
        dtype=dtype,
    )
    if faithful:
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
        conv, dense = model.layers[0], model.layers[4]
        conv.weight.data[...] = rng.standard_normal(conv.weight.shape) * 0.1
        dense.weight.data[...] = rng.standard_normal(dense.weight.shape) * 0.01
    return model


#: Presets by name, for the command line (``minidl digits --preset NAME``).
PRESETS = {"blog_cnn": blog_cnn}
