"""The algorithm of the blog post minidl started from, reimplemented as a baseline to compare against.

The post is "Machine Learning from Scratch", post 11: a convolutional neural network from scratch
in NumPy. Its recipe, which this script follows (it is written from the description, not copied):

- data: scikit-learn's 8×8 digits scaled by 1/16, split with
  ``train_test_split(X, y, test_size=0.2, random_state=42)`` (1,437 training, 360 test images);
- model: 4 filters of 3×3 drawn from N(0, 0.1²), no bias, then ReLU, 2×2 max-pooling, flatten
  (4·3·3 = 36 features) and a dense layer to 10 classes drawn from N(0, 0.01²) with a zero bias,
  softmax cross-entropy;
- training: only the dense layer learns (the filters stay at their random start), plain SGD with
  learning rate 0.01, one image at a time, 50 passes over the training set in a fixed order;
- computation: Python loops over images, filters and output pixels (each convolution and pooling
  window is one NumPy call), as the post writes it.

``minidl digits --faithful --batch-size 1 --epochs 50 --lr 0.01 --momentum 0`` trains the same
model the same way with minidl's vectorised layers.

Usage::

    python benchmarks/blog_reference.py --epochs 50 --seed 0     # prints seconds per epoch and test accuracy
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def conv_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'Valid' cross-correlation of one 2-D image with one kernel, one output pixel at a time."""
    kh, kw = kernel.shape
    out = np.empty((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[r, c] = (image[r:r + kh, c:c + kw] * kernel).sum()
    return out


def max_pool(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping max-pooling, one window at a time (edge rows/columns that do not fill a window are dropped)."""
    out = np.empty((image.shape[0] // size, image.shape[1] // size))
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[r, c] = image[r * size:(r + 1) * size, c * size:(c + 1) * size].max()
    return out


def features(image: np.ndarray, filters: np.ndarray, pool: int) -> np.ndarray:
    """Conv → ReLU → max-pool for every filter, flattened filter by filter."""
    return np.concatenate([max_pool(np.maximum(conv_valid(image, k), 0.0), pool).ravel() for k in filters])


def train(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, epochs: int, lr: float, classes: int = 10,
          num_filters: int = 4, size: int = 3, pool: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The post's training: fixed random filters, SGD on the dense layer, one image at a time.

    Returns the filters, the dense weights and bias, and the mean seconds per epoch.
    """
    filters = rng.standard_normal((num_filters, size, size)) * 0.1
    n_features = features(X[0], filters, pool).size
    weights = rng.standard_normal((n_features, classes)) * 0.01
    bias = np.zeros(classes)
    start = time.perf_counter()
    for _ in range(epochs):
        for image, label in zip(X, y):
            f = features(image, filters, pool)
            logits = f @ weights + bias
            p = np.exp(logits - logits.max())
            p /= p.sum()
            p[label] -= 1.0  # dL/dlogits of softmax cross-entropy
            weights -= lr * np.outer(f, p)
            bias -= lr * p
    return filters, weights, bias, (time.perf_counter() - start) / max(epochs, 1)


def predict(X: np.ndarray, filters: np.ndarray, weights: np.ndarray, bias: np.ndarray, pool: int = 2) -> np.ndarray:
    return np.array([np.argmax(features(image, filters, pool) @ weights + bias) for image in X])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=50, help="passes over the training images (post: 50)")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate (post: 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random filters and dense weights")
    args = parser.parse_args()

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(digits.images / 16.0, digits.target, test_size=0.2,
                                                        random_state=42)
    filters, weights, bias, per_epoch = train(X_train, y_train, np.random.default_rng(args.seed), args.epochs, args.lr)
    accuracy = float((predict(X_test, filters, weights, bias) == y_test).mean())
    print(f"blog reference: {args.epochs} epochs, {per_epoch:.3f} s/epoch, test accuracy {accuracy:.4f} "
          f"(seed {args.seed})")


if __name__ == "__main__":
    main()
