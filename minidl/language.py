"""Training a character language model on a :class:`~minidl.text.TextData` corpus: random windows,
held-out loss in nats (and bits) per character, and a checkpoint that carries its vocabulary.

``minidl train pydoc`` and ``minidl train shakespeare`` use :func:`train_language_model`;
``minidl generate`` reads what :func:`save_checkpoint` wrote.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .arguments import as_float, as_int
from .text import CharTokenizer, TextData

__all__ = ["random_windows", "held_out_loss", "train_language_model", "save_checkpoint", "load_checkpoint",
           "tokenizer_path"]


def random_windows(tokens: np.ndarray, context: int, batch_size: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of ``tokens``: inputs ``(B, context)`` and next-token targets, the
    same windows shifted one token on.

    Args:
        tokens: int64 ids ``(L,)``, ``L > context``.
        context: the window length ``T``.
        batch_size: the number of windows ``B``.
        rng: where the window starts come from.

    Shape:
        ``(L,) -> (B, T), (B, T)``.

    Example::

        x, y = random_windows(data.train, 128, 32, np.random.default_rng(0))
    """
    if len(tokens) <= context + 1:
        raise ValueError(f"the text has {len(tokens)} tokens, too few for windows of context {context} + 1")
    starts = rng.integers(0, len(tokens) - context - 1, batch_size)
    windows = tokens[starts[:, None] + np.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


def held_out_loss(model: Any, tokens: np.ndarray, windows: int = 64, batch_size: int = 32) -> float:
    """The mean next-token cross-entropy (nats per token) of ``model`` on ``windows`` evenly spaced
    windows of ``tokens`` (the same ones every call), in inference mode.

    Args:
        model: a language model with a loss (``SoftmaxCE``), input shape ``(T,)``.
        tokens: the held-out token ids ``(L,)``, ``L > T``.
        windows: how many windows to score.
        batch_size: windows per forward pass.

    Example::

        nats = held_out_loss(model, data.validation)
        bits = nats / math.log(2)
    """
    context = model.input_shape[0]
    if len(tokens) <= context + 1:
        raise ValueError(f"the held-out text has {len(tokens)} tokens, too few for windows of {context} + 1")
    starts = np.linspace(0, len(tokens) - context - 2, windows).astype(np.int64)
    total = 0.0
    for s in range(0, windows, batch_size):
        chunk = tokens[starts[s:s + batch_size, None] + np.arange(context + 1)]
        loss, _ = model.loss.loss_and_grad(model.forward(chunk[:, :-1]), chunk[:, 1:])
        total += float(loss) * len(chunk)
    return total / windows


def train_language_model(
    model: Any,
    data: TextData,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    eval_every: int = 100,
    report: Callable[[int, float, float], None] | None = None,
) -> list[tuple[int, float]]:
    """Train ``model`` with Adam (constant ``lr``) for ``steps`` steps on random windows of ``data.train``.

    Each step is ``forward``, the loss's ``loss_and_grad``, ``backward`` and ``Adam.step``: what
    ``fit`` does for one batch. Every ``eval_every`` steps and after the last, the held-out loss
    on ``data.validation`` is measured (:func:`held_out_loss`) and ``report(step, train_loss,
    held_out)`` is called.

    Args:
        model: a language model ``(N, T) -> (N, T, V)`` with a loss, e.g. ``presets.char_gpt(V)``.
        data: the corpus (:func:`minidl.text.load_pydoc_text`).
        steps: optimizer steps.
        batch_size: windows per step.
        lr: Adam's learning rate.
        seed: seeds the windows.
        eval_every: steps between held-out measurements.
        report: called with ``(step, training loss, held-out loss)`` at each measurement.

    Returns:
        ``[(step, held-out nats per character), ...]``.

    Example::

        curve = train_language_model(model, load_pydoc_text(), steps=1000, batch_size=32, lr=3e-3)
    """
    from .optim import Adam
    from .threads import blas_threads

    steps = as_int(steps, "steps", "train_language_model", minimum=1)
    batch_size = as_int(batch_size, "batch_size", "train_language_model", minimum=1)
    eval_every = as_int(eval_every, "eval_every", "train_language_model", minimum=1)
    lr = as_float(lr, "lr", "train_language_model", low=0.0, low_inclusive=False)
    if model.loss is None:
        raise ValueError("train_language_model: the model has no loss; give it one, e.g. loss=SoftmaxCE()")
    rng = np.random.default_rng(seed)
    optimizer = Adam(model.parameters(), lr=lr)
    context = model.input_shape[0]
    curve = []
    with blas_threads():
        for step in range(1, steps + 1):
            x, y = random_windows(data.train, context, batch_size, rng)
            loss, grad = model.loss.loss_and_grad(model.forward(x, training=True), y)
            if not math.isfinite(float(loss)):
                raise FloatingPointError(f"train_language_model: the loss became {float(loss)} at step {step}")
            model.backward(grad)
            optimizer.step()
            if step % eval_every == 0 or step == steps:
                curve.append((step, held_out_loss(model, data.validation)))
                if report is not None:
                    report(step, float(loss), curve[-1][1])
    return curve


def tokenizer_path(checkpoint: str | os.PathLike) -> Path:
    """Where the vocabulary of ``checkpoint`` is kept: beside it, ``<checkpoint>.tokenizer.json``."""
    return Path(f"{os.fspath(checkpoint)}.tokenizer.json")


def save_checkpoint(model: Any, tokenizer: CharTokenizer, path: str | os.PathLike) -> None:
    """Save ``model`` at ``path`` (``model.save``, :mod:`minidl.saving`) and its tokenizer beside it
    (:func:`tokenizer_path`), so that ``minidl generate path`` can turn ids back into text."""
    model.save(path)
    tokenizer.save(tokenizer_path(path))


def load_checkpoint(path: str | os.PathLike) -> tuple[Any, CharTokenizer]:
    """The model and tokenizer that :func:`save_checkpoint` wrote at ``path``."""
    from .model import load

    vocab = tokenizer_path(path)
    if not vocab.exists():
        raise FileNotFoundError(f"{vocab} is missing: a checkpoint for generation carries its vocabulary there "
                                "(minidl train pydoc --save PATH writes both)")
    return load(path), CharTokenizer.load(vocab)
