"""Pictures of a model and its training: history curves, filters, feature maps, confusion matrix, mistakes.

Needs the optional extra: ``pip install "minidl[plot]"`` (matplotlib). ::

    from minidl import plot
    history = model.fit(X_train, y_train, epochs=30, validation_data=(X_test, y_test))
    plot.history(history)                          # loss and accuracy (and val_*), lr on its own axis
    plot.filters(model)                            # the first Conv2D's kernels as an image grid
    plot.feature_maps(model, X_test[0])            # the input, then each stage's channels
    plot.confusion_matrix(model, X_test, y_test)   # counts and per-class recall
    plot.misclassified(model, X_test, y_test)      # the wrong ones: true, predicted, confidence
    plot.attention(model, "to be", tokenizer=tok)  # each head's attention weights, query by key

Every function returns a matplotlib :class:`~matplotlib.figure.Figure` and saves it as well when
given ``path=`` (the format follows the file's extension). The figures are made without pyplot:
nothing opens a window or stays alive in pyplot's list of figures, so scripts and servers run
headless, and in Jupyter a returned figure shows itself once, as a PNG. Numbers come from
scikit-learn (``confusion_matrix``, ``recall_score``); matplotlib only draws.

Colours: signed values (filter weights, pre-activation feature maps) use a diverging map centred
at zero (blue negative, white zero, red positive); non-negative feature maps use ``viridis``; one-
channel images are drawn dark on light (``gray_r``), three-channel ones in colour.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    from matplotlib import colormaps
    from matplotlib.colors import Colormap, to_rgb
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as err:  # pragma: no cover - exercised in a subprocess without matplotlib
    raise ImportError('minidl.plot needs matplotlib, the "plot" extra: pip install "minidl[plot]"') from err

from .layers import Conv2D, Layer, MultiHeadAttention

__all__ = ["history", "filters", "feature_maps", "confusion_matrix", "misclassified", "attention"]

#: Colour map of signed values, used with limits ±max|value| so that white is exactly zero.
SIGNED_CMAP = "RdBu_r"
#: Colour map of non-negative activations.
ACTIVATION_CMAP = "viridis"
#: Colour map of one-channel input images: ink dark on light, as the digits are drawn.
IMAGE_CMAP = "gray_r"
#: The background between the tiles of a mosaic.
GAP_COLOUR = "0.9"
DPI = 100

PathLike = str | os.PathLike


class _Figure(Figure):
    """A ``Figure`` that Jupyter shows as a PNG although pyplot never saw it."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def _figure(width: float, height: float) -> _Figure:
    """A figure of whole pixels (matplotlib would truncate a fraction when saving)."""
    return _Figure(figsize=(round(width * DPI) / DPI, round(height * DPI) / DPI), dpi=DPI, layout="constrained")


def _done(fig: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(path)
    return fig


# -- history ----------------------------------------------------------------------------------------

#: Panel titles of the metrics fit records; others are titled by their own name.
METRIC_TITLES = {"loss": "Loss", "accuracy": "Accuracy", "mae": "Mean absolute error", "lr": "Learning rate"}


def history(history: Any, *, path: PathLike | None = None) -> Figure:
    """Training curves: one panel per metric (training and ``val_*`` together), the learning rate apart.

    Args:
        history: what ``model.fit`` returns (a :class:`~minidl.callbacks.History`), a Keras
            ``History`` (its ``.history``), or any mapping of metric name to per-epoch values.
        path: also save the figure there.

    Returns:
        The figure: panels titled "Loss", "Accuracy" (or the metric's name), "Learning rate",
        epochs counted from 1 on the x axis; each legend entry quotes the last epoch's value. A
        loss that spans more than two decades is drawn on a log scale.

    Example::

        history = model.fit(X, y, epochs=10, validation_data=(X_val, y_val))
        plot.history(history, path="history.png")
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping):
        raise TypeError(f"plot.history: expected the History that fit returns (a dict of lists), got {history!r}")
    logs = {k: np.asarray(v, dtype=float) for k, v in logs.items()}
    lengths = {len(v) for v in logs.values()}
    if not logs or lengths == {0}:
        raise ValueError("plot.history: the history is empty (did fit run for at least one epoch?)")
    if len(lengths) != 1 or any(v.ndim != 1 for v in logs.values()):
        raise ValueError(f"plot.history: every metric needs one value per epoch, got lengths "
                         f"{ {k: np.shape(v) for k, v in logs.items()} }")
    metrics = [k for k in logs if not k.startswith("val_") and k != "lr"]
    panels = metrics + [k for k in logs if k.startswith("val_") and k[4:] not in logs] + \
        (["lr"] if "lr" in logs else [])
    epochs = np.arange(1, lengths.pop() + 1)
    fig = _figure(max(4.2 * len(panels), 5.0), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    marker = "o" if len(epochs) <= 40 else None
    for ax, name in zip(axes, panels, strict=True):
        base = name.removeprefix("val_")
        keys = [k for k in (base, f"val_{base}") if k in logs]
        last = _alike([logs[k][-1] for k in keys])
        for key, quoted in zip(keys, last, strict=True):
            label, colour, style = ("validation", "C1", "--") if key.startswith("val_") else \
                ("learning rate", "C2", "-") if key == "lr" else ("training", "C0", "-")
            ax.plot(epochs, logs[key], style, color=colour, marker=marker, markersize=3,
                    label=f"{label} (last {quoted})")
        values = np.concatenate([logs[k] for k in (base, f"val_{base}") if k in logs])
        if base == "loss" and values.min() > 0 and values.max() / values.min() > 100:
            ax.set_yscale("log")  # a loss falling over decades is a straight-ish line, not an L
        ax.set_title(METRIC_TITLES.get(base, base))
        ax.set_xlabel("Epoch")
        ax.set_ylabel(METRIC_TITLES.get(base, base).lower() if base in ("lr", "mae") else base)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Training history: {len(epochs)} epoch{'s' if len(epochs) > 1 else ''}")
    return _done(fig, path)


def _alike(values: Sequence[float]) -> list[str]:
    """``values`` with the same number of decimals, enough for 4 significant digits of each
    ("1.0000" beside "0.9917", not "1" beside "0.9917"); scientific notation beyond 1e-4 .. 1e6."""
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
    if any(v < 1e-4 or v >= 1e6 for v in finite):
        return [f"{v:.3e}" for v in values]
    decimals = max((3 - math.floor(math.log10(v)) for v in finite), default=0)
    return [f"{v:.{max(decimals, 0)}f}" for v in values]


# -- layers by path -----------------------------------------------------------------------------------


def _resolve(model: Any, layer: object, what: str) -> tuple[str, Layer]:
    """``(path, layer)`` for a path or a layer object of ``model``; a ValueError listing the paths for anything else."""
    named: dict[str, Layer] = model.named_layers()
    if isinstance(layer, str):
        if layer in named:
            return layer, named[layer]
        raise ValueError(f"plot.{what}: the model has no layer at path {layer!r}; its paths are {list(named)}")
    for path, candidate in named.items():
        if candidate is layer:
            return path, candidate
    raise ValueError(f"plot.{what}: {layer!r} is not a layer of this model; pass one of its paths {list(named)}")


def _require_built(model: Any, what: str) -> None:
    if getattr(model, "input_shape", None) is None:
        raise ValueError(f"plot.{what}: the model is not built; pass input_shape= or train it first")


# -- image mosaics --------------------------------------------------------------------------------------
# A grid of small images is drawn as one image with blank gaps, not as one axes per cell: hundreds of
# axes take matplotlib tens of seconds to lay out, one mosaic a fraction of a second.


@dataclass(frozen=True)
class _Grid:
    """Tiles of ``h × w`` pixels in rows of ``cols``; ``row_gap`` more blank rows above each row, for labels."""

    h: int
    w: int
    cols: int
    row_gap: int = 0

    @property
    def gap(self) -> int:
        return max(1, max(self.h, self.w) // 8)

    def mosaic(self, tiles: np.ndarray) -> np.ndarray:
        """``tiles`` ``(n, h, w)`` (or ``(n, h, w, 3)`` RGB) as one image with NaN gaps between them.

        Draw it with a colour map from :func:`_cmap`, which paints NaN light grey (white may be data);
        RGB mosaics come back with their gaps painted grey already.
        """
        n, extra = len(tiles), tiles.shape[3:]
        rows = math.ceil(n / self.cols)
        dy, dx = self.h + self.gap + self.row_gap, self.w + self.gap
        grid = np.full((rows * self.cols, dy, dx, *extra), np.nan)
        grid[:n, self.row_gap:self.row_gap + self.h, :self.w] = tiles
        grid = grid.reshape(rows, self.cols, dy, dx, *extra).swapaxes(1, 2)
        mosaic = grid.reshape(rows * dy, self.cols * dx, *extra)[:-self.gap, :-self.gap]
        if extra:
            mosaic[np.isnan(mosaic).any(axis=-1)] = to_rgb(GAP_COLOUR)
        return mosaic

    def height_for(self, count: int, width: float) -> float:
        """Inches that a mosaic of ``count`` tiles drawn ``width`` inches wide takes (pixels kept square)."""
        rows, cols = math.ceil(count / self.cols), min(count, self.cols)
        return width * (rows * (self.h + self.gap + self.row_gap) - self.gap) / (cols * (self.w + self.gap) - self.gap)

    def x_centres(self, count: int) -> np.ndarray:
        return np.arange(count) * (self.w + self.gap) + (self.w - 1) / 2

    def y_centres(self, count: int) -> np.ndarray:
        return np.arange(count) * (self.h + self.gap + self.row_gap) + self.row_gap + (self.h - 1) / 2

    def right_edge(self, cols: int) -> float:
        """Where ``cols`` tiles end: rows of fewer tiles line up with the widest when given this xlim."""
        return cols * (self.w + self.gap) - self.gap - 0.5

    def label(self, ax: Any, labels: Sequence[str], **text: Any) -> None:
        """Write ``labels[i]`` in the blank band above tile ``i``."""
        for i, label in enumerate(labels):
            row, col = divmod(i, self.cols)
            top = row * (self.h + self.gap + self.row_gap) + self.row_gap - 0.5
            ax.text(col * (self.w + self.gap) + (self.w - 1) / 2, top, label, ha="center", va="bottom", **text)


def _cmap(name: str) -> Colormap:
    """The colour map ``name`` with NaN (a mosaic's gaps) painted in the gap colour."""
    return colormaps[name].with_extremes(bad=GAP_COLOUR)


def _bare(ax: Any) -> None:
    """No frame and no ticks: the mosaic's gaps separate the images."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# -- filters --------------------------------------------------------------------------------------------


def filters(
    model: Any, layer: str | Layer | None = None, *, max_filters: int = 64, path: PathLike | None = None
) -> Figure:
    """A ``Conv2D``'s kernels as an image grid, on one colour scale centred at zero.

    Args:
        model: a model, or a ``Conv2D`` layer itself.
        layer: which ``Conv2D`` of ``model``: a dotted path (``"0"``, ``"stem.0"``) or the layer
            object; default the first one.
        max_filters: show at most this many filters (the first ones).
        path: also save the figure there.

    Kernels over one input channel are drawn with a diverging map (blue negative, red positive,
    white zero) and a colour bar, each numbered; over three channels (RGB input) each kernel is
    one colour image, grey being zero (``0.5 + w / 2max|w|``); over other channel counts, a grid
    of filters (rows, at most 16) by input channels (columns, at most 16).

    Example::

        plot.filters(model)                         # first Conv2D
        plot.filters(model, "3", path="conv2.png")  # the Conv2D at path "3"
    """
    if isinstance(model, Conv2D):
        name, conv = model.name, model
    else:
        _require_built(model, "filters")
        if layer is None:
            convs = [(p, m) for p, m in model.named_layers().items() if isinstance(m, Conv2D)]
            if not convs:
                raise ValueError("plot.filters: the model has no Conv2D layer")
            name, conv = convs[0]
        else:
            name, found = _resolve(model, layer, "filters")
            if not isinstance(found, Conv2D):
                raise TypeError(f"plot.filters: layer {name!r} is a {type(found).__name__}, not a Conv2D")
            conv = found
    if conv.weight is None:
        raise ValueError(f"plot.filters: {conv.name} is not built yet; build or train its model first")
    _check_count(max_filters, "max_filters", "filters")
    total, c = conv.weight.shape[:2]
    by_channel = c not in (1, 3)
    weight = np.asarray(conv.weight.data[:min(max_filters, 16) if by_channel else max_filters], dtype=float)
    f, c, kh, kw = weight.shape
    scale = float(np.abs(weight).max()) or 1.0
    signed: dict[str, Any] = dict(cmap=_cmap(SIGNED_CMAP), vmin=-scale, vmax=scale, interpolation="nearest")
    title = (f"Filters of {type(conv).__name__} {name!r}: {f if f == total else f'{f} of {total}'}, "
             f"{kh}×{kw} over {c} channel{'s' if c > 1 else ''}")
    cell = 0.75 if max(kh, kw) <= 7 else 1.0
    if by_channel:
        shown = min(c, 16)
        fig = _figure(max(shown * cell * 0.8 + 2.2, 5.0), f * cell * 0.8 + 1.3)
        ax = fig.subplots()
        grid = _Grid(kh, kw, shown)
        image = ax.imshow(grid.mosaic(weight[:, :shown].reshape(f * shown, kh, kw)), **signed)
        ax.set_xticks(grid.x_centres(shown), [str(j) for j in range(shown)], fontsize="small")
        ax.set_yticks(grid.y_centres(f), [str(i) for i in range(f)], fontsize="small")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xlabel("input channel" + (f" (first {shown} of {c})" if shown < c else ""))
        ax.set_ylabel("filter")
        fig.colorbar(image, ax=ax, shrink=0.8, label="weight")
    else:
        cols = min(f, 8)
        grid = _Grid(kh, kw, cols, row_gap=math.ceil(kh / 3))  # room for the filter numbers
        fig = _figure(max(cols * cell + (1.4 if c == 1 else 0.4), 4.5), grid.height_for(f, cols * cell) + 1.0)
        ax = fig.subplots()
        if c == 3:
            ax.imshow(grid.mosaic(np.clip(0.5 + weight.transpose(0, 2, 3, 1) / (2 * scale), 0, 1)),
                      interpolation="nearest")
            title += "\nin colour, grey = 0"
        else:
            image = ax.imshow(grid.mosaic(weight[:, 0]), **signed)
            fig.colorbar(image, ax=ax, shrink=0.8, label="weight")
        _bare(ax)
        grid.label(ax, [str(i) for i in range(f)], fontsize="small")
    ax.set_title(title)
    return _done(fig, path)


def _check_count(value: Any, arg: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"plot.{what}: {arg} must be a positive int, got {value!r}")


# -- images in, feature maps out --------------------------------------------------------------------------


def _images(model: Any, X: Any, what: str) -> np.ndarray:
    """``X`` as ``(N, *model.input_shape)`` floats, or a ValueError naming both shapes."""
    X = np.asarray(X, dtype=float)
    shape = tuple(model.input_shape)
    if X.ndim == len(shape) and X.shape == shape:
        X = X[None]
    elif X.ndim == len(shape) and shape[0] == 1 and X.shape[1:] == shape[1:]:
        X = X[:, None]  # (N, H, W) for a one-channel model, as fit takes it
    elif X.ndim == len(shape) - 1 and shape[0] == 1 and X.shape == shape[1:]:
        X = X[None, None]
    if X.shape[1:] != shape:
        raise ValueError(f"plot.{what}: the model takes images of shape {shape} (or a batch of them), got {X.shape}")
    return X


def _displayable(images: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` images as ``(N, H, W, 3)`` colour in [0, 1] if ``C == 3``, else ``(N, H, W)`` channel means."""
    if images.shape[1] != 3:
        return images.mean(axis=1)
    rgb = images.transpose(0, 2, 3, 1)
    if rgb.min() < 0 or rgb.max() > 1:  # standardised data: stretched to [0, 1] for display only
        rgb = (rgb - rgb.min()) / (np.ptp(rgb) or 1.0)
    return rgb


@contextmanager
def _recording(layers: dict[str, Layer]):
    """While active, a forward hook on each of ``layers`` stores a copy of its output by path."""
    outputs: dict[str, np.ndarray] = {}

    def record(path: str):
        def hook(layer: Layer, x: np.ndarray, y: np.ndarray) -> None:
            outputs[path] = np.array(y, dtype=float)  # a copy: layers may hand out their own buffers
        return hook

    handles = [layer.register_forward_hook(record(path)) for path, layer in layers.items()]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def feature_maps(
    model: Any,
    x: Any,
    layers: Sequence[str | Layer] | None = None,
    *,
    max_channels: int = 16,
    path: PathLike | None = None,
) -> Figure:
    """The input, then the channels each stage of ``model`` makes of it: one row per stage.

    Args:
        model: a built model.
        x: one input image, ``(C, H, W)`` (or ``(H, W)`` for a one-channel model).
        layers: the stages to show, as dotted paths (``"0"``, ``"3.layers.0"``; see
            ``model.named_layers()``) or layer objects; default every direct child of the
            model whose output is an image ``(C, H, W)``.
        max_channels: per stage, show the most active channels (largest mean ``|activation|``)
            up to this many, in channel order; the x axis gives their indices.
        path: also save the figure there.

    Each row has its own colour scale and colour bar: diverging and centred at zero when it
    holds negative values, ``viridis`` from zero otherwise (after a ReLU).

    Example::

        plot.feature_maps(model, X_test[0])
        plot.feature_maps(model, X_test[0], layers=["stem", "1.layers.0"])
    """
    _require_built(model, "feature_maps")
    _check_count(max_channels, "max_channels", "feature_maps")
    sample = _images(model, x, "feature_maps")
    if len(sample) != 1:
        raise ValueError(f"plot.feature_maps: expected one image, got a batch of {len(sample)}; pass X[i]")
    if layers is None:
        chosen = {p: m for p, m in model.named_children().items()
                  if m.output_shape is not None and len(m.output_shape) == 3}
        if not chosen:
            raise ValueError("plot.feature_maps: no layer of the model outputs images; pass layers= paths")
    else:
        if isinstance(layers, (str, Layer)) or not isinstance(layers, Iterable):
            raise TypeError(f"plot.feature_maps: layers must be a list of paths or layers, got {layers!r}")
        chosen = dict(_resolve(model, layer, "feature_maps") for layer in layers)
        flat = [p for p, m in chosen.items() if m.output_shape is None or len(m.output_shape) != 3]
        if flat:
            raise ValueError(f"plot.feature_maps: layer(s) {flat} do not output images (C, H, W) "
                             f"(shapes {[chosen[p].output_shape for p in flat]})")
    with _recording(chosen) as outputs:
        model.forward(sample.astype(model.dtype))
    stages = [(p, chosen[p], outputs[p][0]) for p in chosen]
    cell = 0.8 if max(sample.shape[2:]) <= 12 else 1.15  # 8x8 digits stay small; 28x28 and 32x32 get room
    cols = max(min(maps.shape[0], max_channels) for _, _, maps in stages)
    fig = _figure(max(cols * cell + 2.6, 5.5), (len(stages) + 1) * (cell + 0.35) + 0.6)
    axes = fig.subplots(len(stages) + 1, 1, squeeze=False)[:, 0]
    _input_panel(axes[0], sample[0], cols)
    for ax, (name, layer, maps) in zip(axes[1:], stages, strict=True):
        channels = np.sort(np.argsort(-np.abs(maps).mean(axis=(1, 2)), kind="stable")[:max_channels])
        top = float(np.abs(maps).max()) or 1.0
        limits = dict(cmap=_cmap(SIGNED_CMAP), vmin=-top, vmax=top) if maps.min() < 0 else \
            dict(cmap=_cmap(ACTIVATION_CMAP), vmin=0, vmax=top)
        c, h, w = maps.shape
        grid = _Grid(h, w, len(channels))
        image = ax.imshow(grid.mosaic(maps[channels]), interpolation="nearest", **limits)
        _bare(ax)
        ax.set_xticks(grid.x_centres(len(channels)), [str(ch) for ch in channels], fontsize="x-small")
        ax.tick_params(length=0, pad=1)
        ax.set_xlim(-0.5, grid.right_edge(cols))
        shown = f"{len(channels)} of {c}" if len(channels) < c else f"{c}"
        ax.set_ylabel(f"{name}: {type(layer).__name__}\n{c}×{h}×{w}\n({shown} ch.)",
                      fontsize="small", rotation=0, ha="right", va="center")
        fig.colorbar(image, ax=ax, shrink=0.9, pad=0.01, aspect=8)
    fig.suptitle(f"Feature maps of one {'×'.join(map(str, sample.shape[1:]))} input, stage by stage")
    return _done(fig, path)


def _input_panel(ax: Any, image: np.ndarray, cols: int) -> None:
    """The input: one image (in colour if RGB), or each channel of a many-channel input."""
    c, h, w = image.shape
    grid = _Grid(h, w, 1 if c in (1, 3) else c)
    ax.imshow(grid.mosaic(_displayable(image[None]) if c in (1, 3) else image), cmap=_cmap(IMAGE_CMAP),
              interpolation="nearest")
    _bare(ax)
    ax.set_xlim(-0.5, grid.right_edge(cols))
    ax.set_ylabel(f"input\n{c}×{h}×{w}", fontsize="small", rotation=0, ha="right", va="center")


# -- classification results ------------------------------------------------------------------------------


def _classes(model: Any, class_names: Sequence[Any] | None, what: str) -> list[str]:
    """The class labels to print: ``class_names`` or ``0..K-1`` (two classes for one sigmoid output)."""
    k = int(model.output_shape[0]) if model.output_shape else 0
    k = max(k, 2)
    if class_names is None:
        return [str(i) for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"plot.{what}: class_names has {len(names)} names, the model has {k} classes")
    return names


def _labels(y: Any, n: int, k: int, what: str) -> np.ndarray:
    """``y`` as class indices ``0..k-1``, one per image; an error naming the first label outside them."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"plot.{what}: y must have shape ({n},) to match X, got {y.shape}")
    whole = y.dtype.kind == "f" and bool(np.all(np.isfinite(y) & (y == np.round(y))))  # as fit accepts them
    if y.dtype.kind not in "biu" and not whole:
        raise TypeError(f"plot.{what}: y must hold integer class labels 0..{k - 1}, got dtype {y.dtype}")
    outside = (y < 0) | (y >= k)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(f"plot.{what}: y holds label {y[first]} (at index {first}), but the model has {k} classes "
                         f"(0..{k - 1}); pass the labels the model was trained on")
    return y.astype(np.int64)


def confusion_matrix(
    model: Any,
    X: Any,
    y: Any,
    *,
    class_names: Sequence[Any] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The confusion matrix of ``model`` on ``(X, y)`` (counts), and each class's recall beside it.

    Args:
        model: a trained classifier.
        X: images, as ``evaluate`` takes them.
        y: their integer labels.
        class_names: labels for the classes 0..K-1 (default the numbers).
        path: also save the figure there.

    The numbers are scikit-learn's (``sklearn.metrics.confusion_matrix``, ``recall_score``,
    ``accuracy_score``); the matrix is drawn by ``ConfusionMatrixDisplay``. Rows are true
    labels, columns predictions; recall is the diagonal over the row's total, its colours spanning
    the recalls' own range (light the lowest, dark the highest) so that 0.93 and 1.00 differ.
    Labels outside ``0..K-1`` are a ``ValueError`` naming the first one.

    Example::

        plot.confusion_matrix(model, X_test, y_test, path="confusion.png")
    """
    from sklearn import metrics

    _require_built(model, "confusion_matrix")
    names = _classes(model, class_names, "confusion_matrix")
    predicted = model.predict(X)
    y = _labels(y, len(predicted), len(names), "confusion_matrix")
    labels = np.arange(len(names))
    counts = metrics.confusion_matrix(y, predicted, labels=labels)
    recall = metrics.recall_score(y, predicted, labels=labels, average=None, zero_division=0)
    accuracy = metrics.accuracy_score(y, predicted)
    k = len(names)
    side = max(0.5 * k + 1.6, 4.0)
    fig = _figure(side + 1.4, side + 0.4)
    ax, ax_recall = fig.subplots(1, 2, gridspec_kw={"width_ratios": [k, 1.6]})
    display = metrics.ConfusionMatrixDisplay(counts, display_labels=names)
    display.plot(ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title("Counts")
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    # The colours span the recalls' own range (0.93 and 1.00 would both be dark green on 0..1), from light at the
    # lowest to dark at the highest; the numbers carry the values.
    low, high = float(recall.min()), float(recall.max())
    shade = (recall - low) / (high - low) if high > low else np.ones_like(recall)
    colours = colormaps["Greens"](0.15 + 0.7 * shade)
    ax_recall.imshow(colours[:, None], aspect="auto")
    for i, (r, colour) in enumerate(zip(recall, colours, strict=True)):
        dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 0.5
        ax_recall.text(0, i, f"{r:.2f}", ha="center", va="center", color="white" if dark else "black")
    ax_recall.set_xticks([])
    ax_recall.set_yticks(labels, names)
    ax_recall.set_title("Recall")
    ax_recall.set_xlabel(f"colour: {low:.2f}..{high:.2f}" if high > low else "all equal", fontsize="small")
    fig.suptitle(f"Confusion matrix: {int(np.trace(counts))} of {len(y)} right (accuracy {accuracy:.4f})")
    return _done(fig, path)


#: Inches of the band above each misclassified image: its two lines of small labels.
LABEL_BAND = 0.27


def _labelled_grid(h: int, w: int, cols: int, width: float) -> _Grid:
    """The grid of :func:`misclassified`: ``h × w`` tiles in ``cols`` columns drawn ``width`` inches wide, with
    just enough blank rows above each row of tiles for two lines of labels (whatever the image size)."""
    grid = _Grid(h, w, cols)
    inch_per_pixel = width / (cols * (w + grid.gap) - grid.gap)
    return _Grid(h, w, cols, row_gap=max(1, math.ceil(LABEL_BAND / inch_per_pixel)))


def _trim_height(fig: Figure, ax: Any) -> None:
    """Take off the blank height that an image axes (whose aspect is fixed) leaves above and below itself."""
    fig.draw_without_rendering()
    # matplotlib has no public accessor of the suptitle's Text artist or of the figure's renderer
    title = fig.get_suptitle() and fig._suptitle.get_window_extent(fig._get_renderer())  # type: ignore[attr-defined]
    width, height = fig.get_size_inches()
    box = ax.get_position()
    top = title.y0 / fig.dpi if title else height
    slack = (top - box.y1 * height) + box.y0 * height - 0.15  # keep 0.15 in: below the title and the last row
    if slack > 0.02:
        fig.set_size_inches(width, round((height - slack) * fig.dpi) / fig.dpi)


def _confidence(proba: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The probability the model gave its own prediction."""
    if proba.ndim == 2 and proba.shape[1] > 1:
        return proba[np.arange(len(proba)), predicted]
    p = proba.reshape(-1)  # one sigmoid output: P(class 1)
    return np.where(predicted == 1, p, 1 - p)


def misclassified(
    model: Any,
    X: Any,
    y: Any,
    *,
    max_images: int = 25,
    class_names: Sequence[Any] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """A grid of the images ``model`` gets wrong, most confident mistakes first.

    Args:
        model: a trained classifier.
        X: images, as ``evaluate`` takes them.
        y: their integer labels.
        max_images: show at most this many.
        class_names: labels for the classes 0..K-1 (default the numbers).
        path: also save the figure there.

    Each image is titled ``true → predicted`` and the probability the model gave its (wrong)
    prediction. RGB images are shown in colour, others dark on light.

    Example::

        plot.misclassified(model, X_test, y_test, max_images=16)
    """
    _require_built(model, "misclassified")
    _check_count(max_images, "max_images", "misclassified")
    names = _classes(model, class_names, "misclassified")
    images = _images(model, X, "misclassified")
    proba = model.predict_proba(X)
    predicted = model.predict(X)
    y = _labels(y, len(images), len(names), "misclassified")
    confidence = _confidence(proba, predicted)
    wrong = np.flatnonzero(predicted != y)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:max_images]
    n_wrong = int(np.count_nonzero(predicted != y))
    if len(wrong) == 0:
        fig = _figure(5.0, 2.0)
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"all {len(y)} images classified correctly", ha="center", va="center", fontsize="large")
        fig.suptitle(f"Misclassified: none of {len(y)}")
        return _done(fig, path)
    cols = min(len(wrong), max(4, math.ceil(math.sqrt(len(wrong)))), 8)
    width = max(cols * 1.3, 5.0)
    tiles = _displayable(images[wrong])
    # Small images are enlarged (each pixel a block) so that the label band can be as tall as its text, to
    # a fraction of an image pixel.
    scale = math.ceil(32 / max(tiles.shape[1:3]))
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    grid = _labelled_grid(tiles.shape[1], tiles.shape[2], cols, width)
    fig = _figure(width, grid.height_for(len(wrong), width) + 1.0)
    fig.set_layout_engine("constrained", h_pad=0.08, w_pad=0.08)
    ax = fig.subplots()
    ax.imshow(grid.mosaic(tiles), cmap=_cmap(IMAGE_CMAP), interpolation="nearest")
    _bare(ax)
    grid.label(ax, [f"{names[y[i]]} → {names[predicted[i]]}\n{confidence[i]:.0%}" for i in wrong],
               fontsize="small", color="C3", linespacing=1.1)
    shown = f", the {len(wrong)} most confident" if len(wrong) < n_wrong else ""
    fig.suptitle(f"Misclassified: {n_wrong} of {len(y)}{shown}\n(true → predicted, confidence)")
    _trim_height(fig, ax)
    return _done(fig, path)


# -- attention ------------------------------------------------------------------------------------------


def _attention_layer(model: Any, layer: int | str | Layer | None) -> tuple[str, MultiHeadAttention]:
    """``(path, layer)`` of the MultiHeadAttention that ``layer`` names: its index among the model's
    attention layers, its path, its name, or the object itself."""
    named = model.named_layers()
    found = [(path, each) for path, each in named.items() if isinstance(each, MultiHeadAttention)]
    if not found:
        raise ValueError("plot.attention: the model has no MultiHeadAttention layer")
    if layer is None:
        return found[0]
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(found) <= layer < len(found):
            raise ValueError(f"plot.attention: layer={layer} is out of range: the model has {len(found)} "
                             f"MultiHeadAttention layer(s), at paths {[path for path, _ in found]}")
        return found[layer]
    if isinstance(layer, str) and layer not in named:
        by_name = [(path, each) for path, each in named.items() if each.name == layer]
        if by_name:
            layer = by_name[0][1]
    path, chosen = _resolve(model, layer, "attention")
    if not isinstance(chosen, MultiHeadAttention):
        raise ValueError(f"plot.attention: the layer at {path!r} is a {type(chosen).__name__}, not a "
                         f"MultiHeadAttention; the attention layers are at {[path for path, _ in found]}")
    return path, chosen


def attention(
    model: Any,
    tokens: Any,
    layer: int | str | Layer | None = None,
    *,
    tokenizer: Any = None,
    labels: Sequence[str] | None = None,
    max_heads: int = 16,
    path: PathLike | None = None,
) -> Figure:
    """Each head's attention weights for one sequence: a ``T × T`` map per head, query by key.

    The model is run on ``tokens`` in inference mode and the chosen ``MultiHeadAttention``'s
    ``last_attention`` is drawn: row ``i`` of a head's map is how much step ``i`` (the query)
    takes from each step ``j`` (the key); each row sums to 1 (all zeros for a query with no key
    left). A causal layer's maps are zero above the diagonal.

    Args:
        model: a built model holding a ``MultiHeadAttention`` layer.
        tokens: one sequence as the model takes it: token ids ``(T,)`` (or ``(1, T)``), a string
            when ``tokenizer`` is given, or a float sequence ``(T, D)`` for a model of such inputs.
        layer: which attention layer: its index among the model's attention layers (default the
            first), its path (``"2.0"``), its name, or the layer object.
        tokenizer: an object with ``encode``/``decode`` (a :class:`~minidl.text.CharTokenizer`):
            encodes a string ``tokens`` and labels the axes with the characters (a space as ``␣``,
            a newline as ``\\n``).
        labels: the tick labels of the steps (``T`` strings); overrides the tokenizer's.
        max_heads: draw at most this many heads.
        path: also save the figure there.

    Example::

        plot.attention(model, "ROMEO:", layer=0, tokenizer=tokenizer, path="attention.png")
    """
    _require_built(model, "attention")
    _check_count(max_heads, "max_heads", "attention")
    where, chosen = _attention_layer(model, layer)
    if isinstance(tokens, str):
        if tokenizer is None:
            raise ValueError("plot.attention: tokens is a string; pass tokenizer= to encode it")
        tokens = tokenizer.encode(tokens)
    x = np.asarray(tokens)
    shape = tuple(model.input_shape)
    if x.ndim == len(shape):
        x = x[None]
    if x.ndim != len(shape) + 1 or len(x) != 1:
        raise ValueError(f"plot.attention: tokens must be one sequence of the model's input shape {shape}, got "
                         f"shape {np.asarray(tokens).shape}")
    if x.dtype.kind not in "iu":
        x = x.astype(model.dtype)
    model.forward(x)
    weights = np.asarray(chosen.last_attention)[0]  # (H, T, T)
    steps = weights.shape[-1]
    if labels is None and tokenizer is not None and x.dtype.kind in "iu":
        labels = [repr(tokenizer.decode(t))[1:-1].replace(" ", "␣") for t in x[0, :steps]]  # visible blanks
    if labels is not None and len(labels) != steps:
        raise ValueError(f"plot.attention: labels must have one string per step ({steps}), got {len(labels)}")
    heads = min(len(weights), max_heads)
    cols = min(heads, 4)
    rows = math.ceil(heads / cols)
    fig = _figure(max(3.2 * cols, 5.0), 3.2 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for h, ax in enumerate(axes):
        if h >= heads:
            ax.set_axis_off()
            continue
        image = ax.imshow(weights[h], cmap=ACTIVATION_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"head {h}")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        if labels is not None and steps <= 64:
            ax.set_xticks(range(steps), labels, fontsize="x-small", fontfamily="monospace")
            ax.set_yticks(range(steps), labels, fontsize="x-small", fontfamily="monospace")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=list(axes[:heads]), shrink=0.8, label="attention weight")
    shown = f", the first {heads}" if heads < len(weights) else ""
    fig.suptitle(f"Attention of {type(chosen).__name__} at {where!r}: {len(weights)} head"
                 f"{'s' if len(weights) > 1 else ''}{shown}, {steps} steps")
    return _done(fig, path)
