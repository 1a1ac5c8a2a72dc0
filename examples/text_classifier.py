"""Text classification: which pydoc help topic a window of characters comes from.

    python examples/text_classifier.py [--preset text_lstm|text_cnn] [--epochs N] [--train-per-class N] [--seed S]

``minidl.text.load_pydoc_topics`` cuts windows of 16 to 64 characters out of the four longest
topics of the standard library's ``pydoc_data.topics`` (nothing is downloaded) and right-pads them
with the id 0. ``text_lstm`` masks that padding (``Embedding(mask_zero=True)``): its LSTM stops at
each row's last character. ``text_cnn`` convolves over the padding like any other token.
docs/sequences.md has the test accuracies of the full recipes.
"""

from __future__ import annotations

import argparse
import dataclasses

from minidl.presets import TEXT_PRESETS, TEXT_RECIPES
from minidl.text import load_pydoc_text, load_pydoc_topics


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(TEXT_PRESETS), default="text_lstm")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's recipe")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    (X_train, y_train), (X_test, y_test) = load_pydoc_topics(seed=args.seed, train_per_class=args.train_per_class)
    vocab_size = load_pydoc_text().tokenizer.vocab_size + 1  # + the padding id 0
    model = TEXT_PRESETS[args.preset](vocab_size, seed=args.seed)
    model.summary()
    recipe = TEXT_RECIPES[args.preset]
    if args.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    recipe.fit(model, X_train, y_train, verbose=0)
    scores = model.evaluate(X_test, y_test)
    print(f"{args.preset}: test accuracy after {recipe.epochs} epochs: {scores['accuracy']:.4f} (chance 0.25)")
    return scores


if __name__ == "__main__":
    main()
