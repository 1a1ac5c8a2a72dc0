"""The blog post's data: scikit-learn's 8×8 digits as ``X_train, X_test, y_train, y_test``.

One loader, :func:`minidl.datasets.load_digits`, reads and splits them; this module gives its
answer in scikit-learn's ``train_test_split`` order, as the README and the blog use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import datasets

__all__ = ["load_digits"]


def load_digits(
    test_size: float = 0.2, random_state: int = 42, dtype: Any = "float32"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X_train, X_test, y_train, y_test`` of :func:`minidl.datasets.load_digits`, in ``train_test_split``'s order.

    Args:
        test_size: the fraction of the 1,797 images held out for testing.
        random_state: the seed of scikit-learn's split.
        dtype: floating dtype of the images.

    Shape:
        images ``(N, 1, 8, 8)`` scaled to [0, 1]; labels ``(N,)``. The defaults reproduce the blog's
        ``train_test_split(X, y, test_size=0.2, random_state=42)``: 1,437 training and 360 test images.

    Example::

        X_train, X_test, y_train, y_test = load_digits()
    """
    (X_train, y_train), (X_test, y_test) = datasets.load_digits(test_size, random_state, dtype)
    return X_train, X_test, y_train, y_test
