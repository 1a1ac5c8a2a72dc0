"""Transfer learning: reuse the trained feature layers of one model, frozen, under a new head for a new task.

    python examples/transfer.py [--epochs N] [--shots K] [--few-epochs M]

The source model learns the digits 0–4 from every training image of them. The new task is the
digits 5–9 with only ``K`` labelled images of each. The new model is built around the source's
trained feature extractor (the same layer objects, not copies) with ``trainable=False``, plus a
new dense head; only the head trains.

What this relies on, as in Keras and PyTorch:

- Building a model around layers that are already built for the same input shape keeps their
  weights (a layer built for another shape is refused with a message); it never re-draws them.
- A layer object used in two models is **shared**: both models see the same weights, and
  ``trainable=False`` set on it holds in both. Frozen, the features cannot change, so the source
  model is left exactly as it was. To fine-tune the features too without touching the source,
  give the new model a copy: ``copy.deepcopy(features)`` (PyTorch's ``copy.deepcopy(model.features)``).
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from minidl import Sequential
from minidl.data import load_digits
from minidl.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.optim import Adam


def make_features() -> Sequential:
    return Sequential([
        Conv2D(16, 3, padding="same"), ReLU(), MaxPool2D(2),   # 16×4×4
        Conv2D(32, 3, padding="same"), ReLU(), MaxPool2D(2),   # 32×2×2
        Flatten(),                                             # 128 features
    ])


def make_head() -> list:
    return [Dense(64), ReLU(), Dense(5), SoftmaxCE()]


def few_shots(y: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``shots`` images of each class in ``y``."""
    return np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in np.unique(y)])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the source model")
    parser.add_argument("--shots", type=int, default=5, help="labelled images per class of the new task")
    parser.add_argument("--few-epochs", type=int, default=60, help="epochs on the few images")
    args = parser.parse_args(argv)

    X_train, X_test, y_train, y_test = load_digits()
    old_train, old_test = y_train < 5, y_test < 5
    new_train, new_test = ~old_train, ~old_test          # digits 5-9, relabelled 0-4 below

    # 1. The source model: features + head, trained on the digits 0-4.
    features = make_features()
    source = Sequential([features, *make_head()], input_shape=(1, 8, 8), seed=0)
    source.fit(X_train[old_train], y_train[old_train], optimizer=Adam(source.parameters(), lr=2e-3),
               epochs=args.epochs, batch_size=32, verbose=0)
    source_weights = {k: v.copy() for k, v in source.state_dict().items()}
    source_probs = source.predict_proba(X_test[old_test])
    source_acc = source.evaluate(X_test[old_test], y_test[old_test])["accuracy"]

    # 2. The new model: the same (trained, now frozen) features object and a new head.
    features.trainable = False
    model = Sequential([features, *make_head()], input_shape=(1, 8, 8), seed=1)
    assert all(np.array_equal(p.data, source_weights[f"0.{name}"])
               for name, p in features.named_parameters().items()), "building kept the trained weights"
    model.summary()                                     # the features' parameters count as non-trainable

    few = few_shots(y_train[new_train], args.shots, np.random.default_rng(0))
    X_few, y_few = X_train[new_train][few], y_train[new_train][few] - 5
    model.fit(X_few, y_few, optimizer=Adam(model.parameters(), lr=2e-3), epochs=args.few_epochs,
              batch_size=16, verbose=0)
    transfer_acc = model.evaluate(X_test[new_test], y_test[new_test] - 5)["accuracy"]

    # The source model is exactly as it was: same weights, same predictions, bit for bit.
    assert all(np.array_equal(v, source_weights[k]) for k, v in source.state_dict().items())
    assert np.array_equal(source.predict_proba(X_test[old_test]), source_probs)

    # 3. For comparison: the same network trained from scratch on the same few images.
    scratch = Sequential([make_features(), *make_head()], input_shape=(1, 8, 8), seed=1)
    scratch.fit(X_few, y_few, optimizer=Adam(scratch.parameters(), lr=2e-3), epochs=args.few_epochs,
                batch_size=16, verbose=0)
    scratch_acc = scratch.evaluate(X_test[new_test], y_test[new_test] - 5)["accuracy"]

    # 4. Fine-tuning everything, on a copy, leaves the source alone too.
    tuned = copy.deepcopy(model)                        # its own weights, starting from the transferred ones
    tuned.trainable = True
    tuned.fit(X_few, y_few, optimizer=Adam(tuned.parameters(), lr=2e-4), epochs=args.few_epochs,
              batch_size=16, verbose=0)
    tuned_acc = tuned.evaluate(X_test[new_test], y_test[new_test] - 5)["accuracy"]
    assert all(np.array_equal(v, source_weights[k]) for k, v in source.state_dict().items())

    print(f"source model, digits 0-4: test accuracy {source_acc:.4f} (unchanged after the transfer)")
    print(f"digits 5-9 from {args.shots} images each: frozen transferred features {transfer_acc:.4f}, "
          f"from scratch {scratch_acc:.4f}, all layers fine-tuned {tuned_acc:.4f}")
    return {"source": source_acc, "transfer": transfer_acc, "scratch": scratch_acc, "tuned": tuned_acc}


if __name__ == "__main__":
    main()
