"""Training a character language model on a :class:`~minidl.text.TextData` corpus with ``fit``: random
windows as its batches, held-out loss in nats (and bits) per character as its validation, and a
checkpoint that carries its vocabulary.

``minidl train pydoc`` and ``minidl train shakespeare`` use :func:`train_language_model`;
``minidl generate`` reads what :func:`save_checkpoint` wrote.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .arguments import as_float, as_int
from .callbacks import Callback
from .text import CharTokenizer, TextData

__all__ = ["random_windows", "WindowBatches", "HeldOutWindows", "held_out_loss", "train_language_model",
           "save_checkpoint", "load_checkpoint", "tokenizer_path"]


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
    _check_length(tokens, context, "text")
    return _windows_at(tokens, rng.integers(0, len(tokens) - context - 1, batch_size), context)


def _check_length(tokens: np.ndarray, context: int, what: str) -> None:
    if len(tokens) <= context + 1:
        raise ValueError(f"the {what} has {len(tokens)} tokens, too few for windows of context {context} + 1")


def _windows_at(tokens: np.ndarray, starts: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of ``context + 1`` tokens at ``starts``: inputs and the next-token targets."""
    windows = tokens[starts[:, None] + np.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


class WindowBatches:
    """Random windows of a token array as the batches ``fit`` takes, a fixed number of steps in all.

    Each pass over it (each epoch of ``fit``) yields the next ``per_pass`` batches of
    :func:`random_windows`, the last pass what is left of ``steps``; the windows come from one
    generator seeded by ``seed``, so the batches are the same whatever the ``per_pass``. It is an
    iterable whose ``__iter__`` starts the next pass (see :mod:`minidl.sources`): ``fit`` reads it
    with ``epochs=passes`` and no ``batch_size``.

    Args:
        tokens: int64 ids ``(L,)``.
        context: the window length ``T``.
        batch_size: windows per batch.
        steps: batches in all.
        per_pass: batches per pass (``fit``'s epoch).
        seed: seeds the window starts.

    Shape:
        each batch: inputs ``(batch_size, T)`` and next-token targets ``(batch_size, T)``.

    Example::

        batches = WindowBatches(data.train, 128, 32, steps=1000, per_pass=100, seed=0)
        model.fit(batches, epochs=batches.passes, optimizer="adam", verbose=0)
    """

    def __init__(self, tokens: np.ndarray, context: int, batch_size: int, steps: int, per_pass: int,
                 seed: int | None = 0) -> None:
        self.tokens, self.context, self.batch_size = tokens, context, batch_size
        self.steps = as_int(steps, "steps", "WindowBatches", minimum=1)
        self.per_pass = as_int(per_pass, "per_pass", "WindowBatches", minimum=1)
        self.rng = np.random.default_rng(seed)
        self.drawn = 0

    @property
    def passes(self) -> int:
        """The number of passes (``fit``'s ``epochs``) that yield all ``steps`` batches."""
        return -(-self.steps // self.per_pass)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for _ in range(min(self.per_pass, self.steps - self.drawn)):
            self.drawn += 1
            yield random_windows(self.tokens, self.context, self.batch_size, self.rng)


class HeldOutWindows:
    """``windows`` evenly spaced windows of held-out tokens, the same on every pass, in batches: what
    :func:`held_out_loss` scores, as ``validation_data`` for ``fit`` or data for ``evaluate``.

    Args:
        tokens: the held-out token ids ``(L,)``, ``L > context + 1``.
        context: the window length ``T``.
        windows: how many windows.
        batch_size: windows per batch.

    Shape:
        each batch: inputs ``(batch_size, T)`` and next-token targets ``(batch_size, T)``.

    Example::

        nats = model.evaluate(HeldOutWindows(data.validation, 128))["loss"]
    """

    def __init__(self, tokens: np.ndarray, context: int, windows: int = 64, batch_size: int = 32) -> None:
        _check_length(tokens, context, "held-out text")
        self.tokens, self.context, self.batch_size = tokens, context, batch_size
        self.starts = np.linspace(0, len(tokens) - context - 2, windows).astype(np.int64)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for s in range(0, len(self.starts), self.batch_size):
            yield _windows_at(self.tokens, self.starts[s:s + self.batch_size], self.context)


def held_out_loss(model: Any, tokens: np.ndarray, windows: int = 64, batch_size: int = 32) -> float:
    """The mean next-token cross-entropy (nats per token) of ``model`` on ``windows`` evenly spaced
    windows of ``tokens`` (the same ones every call, :class:`HeldOutWindows`), in inference mode.

    Args:
        model: a language model with a loss (``SoftmaxCE``), input shape ``(T,)``.
        tokens: the held-out token ids ``(L,)``, ``L > T``.
        windows: how many windows to score.
        batch_size: windows per forward pass.

    Example::

        nats = held_out_loss(model, data.validation)
        bits = nats / math.log(2)
    """
    return model.evaluate(HeldOutWindows(tokens, model.input_shape[0], windows, batch_size))["loss"]


class _Measurements(Callback):
    """Counts the steps of ``fit``, keeps the held-out loss ``fit`` measured at each epoch's end, and reports it."""

    def __init__(self, report: Callable[[int, float, float], None] | None) -> None:
        self.report = report
        self.step, self.loss = 0, math.nan
        self.curve: list[tuple[int, float]] = []

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        self.loss = float((logs or {})["loss"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.add((logs or {})["val_loss"])

    def add(self, held_out: float) -> None:
        self.curve.append((self.step, float(held_out)))
        if self.report is not None:
            self.report(self.step, self.loss, self.curve[-1][1])


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

    Training is ``model.fit`` on :class:`WindowBatches`, one epoch every ``eval_every`` steps, with
    the held-out windows of ``data.validation`` (:class:`HeldOutWindows`, as :func:`held_out_loss`
    scores them) as ``validation_data``: after every ``eval_every`` steps and after the last, the
    held-out loss is measured and ``report(step, train_loss, held_out)`` is called with the last
    step's training loss. ``model.history`` holds each epoch's mean training loss, ``accuracy``,
    ``val_loss`` and ``lr``. As with ``fit``, Ctrl-C stops after the step in flight and keeps what
    was trained: the held-out loss of that model is then measured and reported as the last point
    (``model.history.interrupted`` is ``True``), and a non-finite loss raises
    :class:`~minidl.guard.NonFiniteLossError` before its step is applied.

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

    steps = as_int(steps, "steps", "train_language_model", minimum=1)
    batch_size = as_int(batch_size, "batch_size", "train_language_model", minimum=1)
    eval_every = as_int(eval_every, "eval_every", "train_language_model", minimum=1)
    lr = as_float(lr, "lr", "train_language_model", low=0.0, low_inclusive=False)
    if model.loss is None:
        raise ValueError("train_language_model: the model has no loss; give it one, e.g. loss=SoftmaxCE()")
    context = model.input_shape[0]
    batches = WindowBatches(data.train, context, batch_size, steps, per_pass=eval_every, seed=seed)
    held_out = HeldOutWindows(data.validation, context)
    measured = _Measurements(report)
    model.fit(batches, epochs=batches.passes, optimizer=Adam(model.parameters(), lr=lr), verbose=0,
              validation_data=held_out, callbacks=[measured])
    if not measured.curve or measured.curve[-1][0] != measured.step:  # stopped by Ctrl-C inside an epoch
        measured.add(model.evaluate(held_out)["loss"])
    return measured.curve


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
