"""A training run as a folder: the pictures of :mod:`minidl.plot` and a Markdown page (``minidl digits --report``).

::

    from minidl.report import write_report
    write_report("report", model, history, X_test, y_test, command="my_script.py", preset="digits_cnn",
                 recipe="--optimizer adam --lr 0.002 --epochs 30 --batch-size 32 --schedule cosine")

writes ``report/history.png``, ``filters.png``, ``feature_maps.png``, ``confusion_matrix.png``,
``misclassified.png`` and ``report.md`` (the command, preset, recipe, a per-epoch table, test
accuracy, per-class precision and recall from scikit-learn's ``classification_report``, the pictures).
Needs the ``plot`` extra (``pip install "minidl[plot]"``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PICTURES", "write_report"]

#: The pictures a report holds: file name -> caption.
PICTURES = {
    "history.png": "Training history: loss and accuracy per epoch (validation = the test split), learning rate",
    "filters.png": "The first convolution's filters (blue negative, red positive, white zero)",
    "feature_maps.png": "Feature maps of test image 0, stage by stage",
    "confusion_matrix.png": "Confusion matrix on the test split, with each class's recall",
    "misclassified.png": "The test images the model gets wrong, most confident first",
}


def write_report(
    directory: str | os.PathLike,
    model: Any,
    history: Mapping[str, list[float]],
    X_test: Any,
    y_test: Any,
    *,
    command: str,
    preset: str,
    recipe: str,
    seconds: float | None = None,
) -> dict[str, Path]:
    """Write the five pictures and ``report.md`` of one training run into ``directory`` (made if missing).

    The pictures of convolutions (filters, feature maps) are left out for a model without ``Conv2D``,
    and the misclassified images for a model whose inputs are not images ``(C, H, W)`` (a recurrent
    model over image rows, a text classifier): its report has the history and the confusion matrix.

    Args:
        directory: where to write; files of the same names there are replaced.
        model: the trained model.
        history: what ``fit`` returned (``val_*`` entries are taken to be the test split's).
        X_test, y_test: the test images and labels.
        command: the command line that trained the model, quoted at the top of the page.
        preset: the preset's name.
        recipe: the training recipe, as the options that give it.
        seconds: the training time, if measured.

    Returns:
        ``{file name: path}`` of every file written, ``report.md`` last.
    """
    from sklearn.metrics import classification_report

    from . import plot  # ImportError naming the "plot" extra when matplotlib is missing
    from .layers import Conv2D

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    X_test, y_test = np.asarray(X_test), np.asarray(y_test)
    draw = {
        "history.png": lambda path: plot.history(history, path=path),
        "filters.png": lambda path: plot.filters(model, path=path),
        "feature_maps.png": lambda path: plot.feature_maps(model, X_test[0], path=path),
        "confusion_matrix.png": lambda path: plot.confusion_matrix(model, X_test, y_test, path=path),
        "misclassified.png": lambda path: plot.misclassified(model, X_test, y_test, path=path),
    }
    if not any(isinstance(layer, Conv2D) for layer in model.named_layers().values()):
        del draw["filters.png"], draw["feature_maps.png"]  # pictures of convolutions: none to draw
    if len(model.input_shape) != 3:
        del draw["misclassified.png"]  # the inputs are no (C, H, W) images: sequences, tokens, vectors
    written = {}
    for name, make in draw.items():
        make(out / name)
        written[name] = out / name
    predicted = model.predict(X_test)
    scores = classification_report(y_test, predicted, output_dict=True, zero_division=0)
    page = _page(model, history, scores, y_test, command=command, preset=preset, recipe=recipe, seconds=seconds,
                 pictures=list(written))
    (out / "report.md").write_text(page, encoding="utf-8")
    written["report.md"] = out / "report.md"
    return written


def _page(model: Any, history: Mapping[str, list[float]], scores: dict, y_test: np.ndarray, *,
          command: str, preset: str, recipe: str, seconds: float | None, pictures: list[str]) -> str:
    summary: list[str] = []
    model.summary(print_fn=summary.append)
    epochs = len(history.get("loss", []))
    timing = f" in {seconds:.2f} s ({_machine()})" if seconds is not None else ""
    lines = [
        f"# minidl report: {preset}",
        "",
        f"Made by `{command}`.",
        "",
        f"- preset: `{preset}`",
        f"- recipe: `{recipe}`",
        f"- trained: {epochs} epoch{'s' if epochs != 1 else ''}{timing}",
        f"- **test accuracy: {scores['accuracy']:.4f}** on {len(y_test)} images",
        "",
        "```text",
        *summary,
        "```",
        "",
        "## Per epoch",
        "",
        "`val_*` is measured on the test split after each epoch; it plays no part in training.",
        "",
        *_epoch_table(history),
        "",
        "## Per class (scikit-learn's classification_report on the test split)",
        "",
        *_class_table(scores),
        "",
        "## Pictures",
        "",
    ]
    for name in pictures:
        caption = PICTURES[name]
        lines += [f"{caption}:", "", f"![{caption}]({name})", ""]
    return "\n".join(lines)


def _machine() -> str:
    """The settings a training time depends on: BLAS threads, load, cores (a time alone says little)."""
    from threadpoolctl import threadpool_info  # a dependency of scikit-learn

    threads = sorted({pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"})
    load = f"load average {os.getloadavg()[0]:.1f}, " if hasattr(os, "getloadavg") else ""
    return f"BLAS threads: {', '.join(map(str, threads)) or 'none found'}; {load}{os.cpu_count()} cores"


def _epoch_table(history: Mapping[str, list[float]]) -> list[str]:
    keys = list(history)
    rows = [f"| epoch | {' | '.join(keys)} |", "|---:|" + "---:|" * len(keys)]
    for epoch, values in enumerate(zip(*(history[k] for k in keys), strict=False), start=1):
        cells = [f"{v:.4g}" if k == "lr" else f"{v:.4f}" for k, v in zip(keys, values, strict=True)]
        rows.append(f"| {epoch} | {' | '.join(cells)} |")
    return rows


def _class_table(scores: dict) -> list[str]:
    rows = ["| class | precision | recall | f1-score | support |", "|---|---:|---:|---:|---:|"]
    for label, entry in scores.items():
        if isinstance(entry, dict):  # "accuracy" is a bare number, in the page's header already
            rows.append(f"| {label} | {entry['precision']:.4f} | {entry['recall']:.4f} | {entry['f1-score']:.4f} "
                        f"| {int(entry['support'])} |")
    return rows
