"""Write a layer minidl does not have, check it against the layer contract, train with it, save and reload.

    python examples/custom_layer.py [--epochs N]

The walkthrough in docs/extending.md explains every step.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import numpy as np

import minidl
from minidl import Sequential
from minidl.data import load_digits
from minidl.layers import Conv2D, Dense, Flatten, Layer, MaxPool2D, Parameter, SoftmaxCE
from minidl.layers.base import as_float
from minidl.optim import SGD
from minidl.testing import check_layer


class Swish(Layer):
    r"""Swish with a learnable slope per channel (Ramachandran et al., 2017), any input with channels first.

    .. math:: y = x\,\sigma(\beta_c x), \qquad
              \frac{\partial y}{\partial x} = s + \beta_c x\, s(1 - s), \qquad
              \frac{\partial y}{\partial \beta_c} = x^2 s(1 - s), \qquad s = \sigma(\beta_c x)

    Shapes: (N, C, ...) → (N, C, ...); ``beta`` (C,), starting at ``beta``.
    """

    def __init__(self, beta: float = 1.0, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.initial_beta = as_float(beta, "beta", self.name, low=0.0)  # ValueError quoting a bad value
        self.beta: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {"beta": self.initial_beta}

    def create_parameters(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype) -> None:
        self.beta = Parameter(np.full(input_shape[0], self.initial_beta, dtype=dtype))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        beta = self.beta.data.reshape(-1, *[1] * (x.ndim - 2))  # (C, 1, 1): broadcasts over pixels
        s = np.exp(-np.logaddexp(0, -beta * x))  # σ(βx) without overflow
        self._x, self._s, self._beta = x, s, beta
        return x * s

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, s, beta = self._x, self._s, self._beta
        ds = s * (1 - s)
        per_channel = (0, *range(2, x.ndim))  # every axis but the channels
        self.beta.grad[...] = (grad_out * x * x * ds).sum(axis=per_channel)  # overwrite, never +=
        return grad_out * (s + beta * x * ds)


def make_model(seed: int = 0) -> Sequential:
    return Sequential([
        Conv2D(8, 3, padding="same"),
        Swish(),
        MaxPool2D(2),
        Flatten(),
        Dense(10),
        SoftmaxCE(),
    ], input_shape=(1, 8, 8), seed=seed)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    # 1. The contract: shapes, gradients vs finite differences, no accumulation, save/load, float32/64.
    print(check_layer(Swish(beta=0.5), input_shape=(3, 4, 4)))

    # 2. Train with it on the blog's digits split.
    X_train, X_test, y_train, y_test = load_digits()
    model = make_model(seed=0)
    model.fit(X_train, y_train, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9),
              epochs=args.epochs, batch_size=32, verbose=0)
    scores = model.evaluate(X_test, y_test)
    print(f"test accuracy {scores['accuracy']:.4f}, learnt beta {np.round(model[1].beta.data, 2)}")

    # 3. Save and reload: Swish is found by its class name, because this module defined it.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "swish.npz")
        model.save(path)
        same = minidl.load(path)
    assert np.array_equal(same.predict_proba(X_test), model.predict_proba(X_test))
    print("reloaded model predicts the same, bit for bit")
    return scores


if __name__ == "__main__":
    main()
