"""A small ResNet for the 8×8 digits, built by hand from ``Residual`` blocks: ``presets.digits_resnet`` written out.

    python examples/resnet_digits.py [--epochs N] [--seed S]

A residual block computes ``y = F(x) + S(x)``: ``F`` is a short stack of layers, ``S`` the
shortcut. When ``F`` keeps the shape, ``S`` is the identity (``Residual(F)``); when it halves
the image and changes the channels, ``S`` must map ``x`` to the same shape, here a strided
1×1 convolution (a *projection shortcut*). Leave it out and building the model fails,
naming both shapes. The network trains with the preset's recipe and, for the same seed,
starts from exactly the weights of ``presets.digits_resnet``.
"""

from __future__ import annotations

import argparse
import dataclasses

from minidl import Sequential
from minidl.data import load_digits
from minidl.layers import BatchNorm2D, Conv2D, Dense, GlobalAvgPool2D, RandomShift, ReLU, Residual, SoftmaxCE
from minidl.presets import RECIPES


def conv_bn(channels: int, kernel_size: int = 3, stride: int = 1) -> list:
    # No conv bias: the BatchNorm2D right after it has one.
    padding = "same" if kernel_size > 1 else 0
    return [Conv2D(channels, kernel_size, stride=stride, padding=padding, use_bias=False), BatchNorm2D()]


def make_model(seed: int = 0) -> Sequential:
    return Sequential([
        RandomShift(1),                                   # augmentation, active in fit only
        *conv_bn(16), ReLU(),                             # stem: 16×8×8
        Residual([*conv_bn(16), ReLU(), *conv_bn(16)]),   # identity shortcut: 16×8×8
        ReLU(),
        Residual([*conv_bn(32, stride=2), ReLU(), *conv_bn(32)],
                 shortcut=conv_bn(32, kernel_size=1, stride=2)),   # projection: 16×8×8 → 32×4×4
        ReLU(),
        GlobalAvgPool2D(),                                # 32
        Dense(10),
        SoftmaxCE(),
    ], input_shape=(1, 8, 8), seed=seed)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=RECIPES["digits_resnet"].epochs)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X_train, X_test, y_train, y_test = load_digits()
    model = make_model(seed=args.seed)
    model.summary()
    # The preset's recipe (Adam, cosine schedule); replace() changes the epochs only.
    recipe = dataclasses.replace(RECIPES["digits_resnet"], epochs=args.epochs)
    recipe.fit(model, X_train, y_train, verbose=0)
    scores = model.evaluate(X_test, y_test)
    print(f"test accuracy {scores['accuracy']:.4f} after {args.epochs} epochs")
    return scores


if __name__ == "__main__":
    main()
