"""Command line: ``minidl digits`` (also ``python -m minidl digits``)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from . import presets
from .data import load_digits
from .optim import SGD

# Chosen by a sweep over seeds 0-4 (docs/architecture.md quotes it): finishes in seconds, ≥ 0.97 test accuracy.
DEFAULTS = {"epochs": 30, "batch_size": 4, "lr": 0.02, "momentum": 0.5, "seed": 0}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _float_in(low: float, high: float, low_open: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value >= high:
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"expected a number in {bracket}{low}, {high}), got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minidl", description="minidl: a small deep-learning framework in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    digits = sub.add_parser(
        "digits",
        help="train a preset CNN on scikit-learn's 8x8 digits (the blog's split) and report test accuracy",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    digits.add_argument("--preset", choices=sorted(presets.PRESETS), default="blog_cnn", help="architecture")
    digits.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"])
    digits.add_argument("--batch-size", type=_positive_int, default=DEFAULTS["batch_size"])
    digits.add_argument("--lr", type=_float_in(0.0, math.inf, True), default=DEFAULTS["lr"], help="learning rate")
    digits.add_argument("--momentum", type=_float_in(0.0, 1.0, False), default=DEFAULTS["momentum"])
    digits.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seeds the weights and the shuffling")
    digits.add_argument(
        "--faithful", action="store_true",
        help="blog-faithful mode: the filters stay frozen at their random start; only the dense layer trains",
    )
    digits.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                        help="0 silent, 1 progress bar per epoch, 2 one line per epoch")
    return parser


def run_digits(args: argparse.Namespace) -> float:
    X_train, X_test, y_train, y_test = load_digits()
    build = presets.PRESETS[args.preset]
    model = build(seed=args.seed, faithful=args.faithful) if args.faithful else build(seed=args.seed)
    model.summary()
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    start = time.perf_counter()
    model.fit(X_train, y_train, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
              verbose=args.verbose)
    seconds = time.perf_counter() - start
    result = model.evaluate(X_test, y_test)
    print(f"train: {len(X_train)} images, {args.epochs} epochs in {seconds:.2f} s "
          f"({seconds / max(args.epochs, 1):.3f} s/epoch)")
    print(f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {len(X_test)} images")
    return result["accuracy"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "digits":
        run_digits(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
