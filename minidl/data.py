"""Datasets: scikit-learn's 8×8 digits, split exactly as the blog post splits them."""

from __future__ import annotations

import numpy as np

__all__ = ["load_digits"]


def load_digits(
    test_size: float = 0.2, random_state: int = 42, dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X_train, X_test, y_train, y_test`` with images ``(N, 1, 8, 8)`` scaled to [0, 1].

    The defaults reproduce the blog's ``train_test_split(X, y, test_size=0.2, random_state=42)``:
    1437 training and 360 test images.
    """
    # scikit-learn takes seconds to import: only when the digits are wanted (minidl --help stays quick).
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = _sk_load_digits()
    X = (digits.images / 16.0).astype(dtype)[:, None]
    return train_test_split(X, digits.target, test_size=test_size, random_state=random_state)
