"""Export trained minidl models: :func:`to_onnx` (any ONNX runtime) and :func:`to_torch` (a ``torch.nn.Module``).

Both walk the model and convert each layer with the exporter registered for its class;
:func:`register_onnx` and :func:`register_torch` add exporters for your own layers
(docs/extending.md, "Exporting your layer"). ``onnx`` and ``torch`` are optional: they are
imported only when an export runs (``pip install "minidl[onnx]"`` / ``"minidl[torch]"``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..layers import Embedding, containers
from ..layers.base import as_int
from ..model import Sequential
from .onnx_graph import MIN_OPSET, OnnxGraph
from .registry import built, register_onnx, register_torch

__all__ = ["to_onnx", "to_torch", "register_onnx", "register_torch", "OnnxGraph"]


def _require(module: str, extra: str, what: str) -> Any:
    try:
        return __import__(module)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        raise ImportError(f"{what} needs the {module!r} package: pip install \"minidl[{extra}]\"") from None


def _check_model(model: Any, what: str) -> None:
    if not isinstance(model, Sequential):
        raise TypeError(f"{what}: model must be a minidl Sequential, got {type(model).__name__}")
    if not model.built:
        raise ValueError(f"{what}: the model is not built; pass input_shape= to Sequential or call model.build(shape)")


def _param_names(model: Sequential) -> dict[int, str]:
    return {id(p): name for name, p in (model.named_parameters() | model.named_buffers()).items()}


def to_onnx(model: Sequential, path: str | os.PathLike | None, opset: int = MIN_OPSET) -> Any:
    """Write ``model`` as an ONNX file at ``path`` (skipped if ``None``) and return the ``onnx.ModelProto``.

    The graph has one input ``"input"`` of shape ``(N, *model.input_shape)`` and one output
    ``"output"``, with a symbolic batch axis ``N``; it computes ``model.forward`` in inference
    mode: ``Dropout`` is left out, ``BatchNorm2D`` uses its running statistics, and the model's
    loss adds its inference output (``SoftmaxCE`` → ``Softmax`` over the last axis, so the output
    is ``model.predict_proba``). Weights keep their ``state_dict`` names. The file is written
    atomically and checked with ``onnx.checker.check_model(full_check=True)`` first.

    Sequences: the sequence length is symbolic too (``"T"``; the input ``(N, T)`` of token ids, of the model's
    integer ``input_dtype``, or ``(N, T, D)``), so a graph exported at one length runs at any other (up to a
    ``PositionalEmbedding``'s ``max_length``), unless a ``Flatten`` or a layer with an exporter of your own
    fixes it at the model's. With ``Embedding(mask_zero=True)`` the graph makes minidl's mask (``ids != 0``)
    and honours it as minidl does: the recurrent layers skip padded steps (any mask, not only right
    padding), attention never looks at padded keys, the global pools pool the valid steps only. A layer that
    cannot take a mask (``Conv1D``, ``MaxPool1D``, ``Flatten``) is refused with a ``ValueError``, as minidl
    refuses it when the model runs.

    Args:
        model: a built :class:`~minidl.Sequential`.
        path: where to write the ``.onnx`` file, or ``None`` to only return the model.
        opset: the ONNX opset, at least 13 (the default, and all the exporters need: from 13 on ``Softmax``
            takes one axis, and the masked recurrent layers' ``CumSum``, ``TopK`` and ``GatherElements`` are
            there).

    Example::

        import onnxruntime as ort
        to_onnx(model, "digits.onnx")
        ort.InferenceSession("digits.onnx").run(None, {"input": X})[0]  # == model.predict_proba(X)
    """
    onnx = _require("onnx", "onnx", "to_onnx")
    _check_model(model, "to_onnx")
    as_int(opset, "opset", "to_onnx", minimum=MIN_OPSET)
    latest = onnx.defs.onnx_opset_version()
    if opset > latest:
        raise ValueError(f"to_onnx: opset must be between {MIN_OPSET} and {latest} (this onnx's newest), got {opset}")
    graph = OnnxGraph(_param_names(model), built(model.dtype), opset)
    input_shape, ids = built(model.input_shape), _takes_ids(model)
    if model.input_dtype is not None and model.input_dtype.kind in "iu":
        graph.ids_dtype = model.input_dtype
    y = graph.layer(model, "input")
    if graph.rows_valid is not None:  # NaN for a sequence with an id out of range
        valid = graph.node("Reshape", [graph.rows_valid, graph.initializer(
            np.array([-1] + [1] * len(built(model.output_shape)), dtype=np.int64), "row_shape")])
        y = graph.node("Where", [valid, y, graph.initializer(np.array(np.nan, dtype=graph.dtype), "nan")])
    if y == "input":  # a model that is the identity at inference still needs a node to name its output
        y = graph.node("Identity", [y])
    # sequences: token ids (N, T), or (N, T, D) floats; images (N, C, H, W) and vectors (N, D) keep their shape
    length = graph.fixed_length is None and len(input_shape) == (1 if ids else 2)
    proto = graph.to_model(input_shape, y, built(model.output_shape), __version__,
                           input_dtype=graph.ids_dtype if ids else None, length=length)
    if path is not None:
        _write_atomically(Path(path), proto.SerializeToString())
    return proto


def _takes_ids(model: Sequential) -> bool:
    """Whether the model's input is token ids: an integer ``input_dtype``, or an ``Embedding`` first."""
    if model.input_dtype is not None:
        return model.input_dtype.kind in "iu"
    first: Any = model
    while isinstance(first, containers.Sequential) and first.layers:
        first = first.layers[0]
    return isinstance(first, Embedding)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_torch(model: Sequential) -> Any:
    """An equivalent ``torch.nn.Module`` (in ``eval()`` mode) holding ``model``'s trained weights.

    A ``Sequential`` becomes a :class:`~minidl.export.torch_modules.TorchSequential`, an ``nn.Sequential``
    with the same indices (so ``state_dict`` names match minidl's, ``"0.weight"``) that carries minidl's
    sequence mask, with these conversions:

    - ``Dense``'s ``(in, out)`` weight is transposed to ``nn.Linear``'s ``(out, in)``;
    - ``Conv2D`` with ``padding="same"`` that needs more padding at the bottom/right than at the
      top/left becomes ``nn.Sequential(nn.ZeroPad2d(...), nn.Conv2d(...))`` (keys ``"i.1.weight"``);
    - ``BatchNorm2D`` carries its running statistics (``num_batches_tracked`` is 0: minidl
      does not count batches, and PyTorch reads the count only when ``momentum=None``);
    - ``Dropout`` becomes ``nn.Dropout`` (the identity in ``eval()`` mode);
    - ``Conv1D``, ``MaxPool1D`` and the global 1-D pools become modules that take minidl's channels-last
      ``(N, T, C)`` sequences (``TorchConv1d`` is an ``nn.Conv1d``: the same ``weight`` and ``bias``);
    - ``SimpleRNN``, ``LSTM``, ``GRU`` and ``Bidirectional`` become ``nn.RNN``/``nn.LSTM``/``nn.GRU``
      (``batch_first=True``, ``bidirectional=True`` for ``Bidirectional``) whose ``forward`` returns
      minidl's output; their parameters have PyTorch's names (``weight_ih_l0`` is minidl's ``weight_ih``,
      ``weight_ih_l0_reverse`` the backward layer's);
    - ``Embedding(mask_zero=True)`` makes the mask ``ids != 0`` and the modules after it honour it as minidl
      does (recurrent layers run each sequence's valid steps packed, attention never looks at a padded
      key, the global pools pool valid steps only); a layer that cannot take a mask (``Conv1D``,
      ``MaxPool1D``, ``Flatten``) is refused with a ``ValueError``, as in :func:`to_onnx`. Every module
      takes any sequence length;
    - the ``SoftmaxCE`` loss becomes a last ``nn.Softmax(dim=-1)``, so the output is
      ``model.predict_proba``; to train on in PyTorch take ``module[:-1]`` (the logits) with
      ``nn.CrossEntropyLoss``.

    Args:
        model: a built model (its loss, if any, becomes the last module as listed above).

    Example::

        net = to_torch(model)
        net(torch.from_numpy(X)).detach().numpy()                     # == model.predict_proba(X)
    """
    _require("torch", "torch", "to_torch")
    _check_model(model, "to_torch")
    from .torch_modules import TorchContext

    return TorchContext(built(model.dtype)).convert(model).eval()
