"""Saving and loading ``Sequential`` models: one ``.npz`` file, no pickle, written atomically.

The file is an uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` arrays) holding

- ``__minidl__``: a UTF-8 JSON header stored as a ``uint8`` array — the format name and
  version, the minidl version, the model's ``input_shape``, ``seed`` and ``dtype``, the
  architecture as ``[layer.to_config(), ...]`` (a container's config nests its children's
  specs), the loss beside it as ``{"class": ..., "config": ...}`` or ``null`` (format version 3;
  in versions 1 and 2 a loss was the last entry of the layers, and such files still load; version
  1 has no containers) and a manifest ``{name: {shape, dtype}}`` of every array in ``model.state_dict()``;
- one array per ``state_dict()`` entry under its own name (``"0.weight"``, ...), so
  ``np.load(path)["0.weight"]`` works without minidl.

Loading never unpickles and rebuilds layers only through the layer registry
(``Layer.from_config``), so it never executes code from the file; it reads through
:mod:`minidl.archive`, which checks every member against the manifest before reading it,
and it builds the architecture once with a budget of what the arrays hold (random draws, and
every dimension of every layer's input) before building it for real, so a hostile file costs
no more than a small multiple of the memory it declares. Every way a
file can be wrong — not an archive, truncated, a flipped byte (the zip's CRC-32 catches
it), no header, a newer format, an unlisted or oversized member, a huge layer, weights that
do not fit the architecture — raises a ``ValueError`` naming the file and what is wrong.

Writing goes to a temporary file in the target's directory which is flushed, fsynced
and then renamed over the target with ``os.replace`` (atomic on POSIX and Windows):
a crash at any point leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np

from .archive import (
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    SMALL_DRAWS,
    STATE_DTYPES,
    ArchitectureTooBig,
    BudgetedGenerator,
    ModelArchive,
    json_levels,
)
from .config import loads_as
from .layers.base import LAYERS, Layer, Shape
from .layers.losses import LOSSES, Loss

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["save", "read", "load_weights", "LoadResult", "SavedModel", "atomic_write"]

#: Layers an architecture may hold, counting those inside containers (the largest preset has 26). Each costs
#: ~0.2 ms and a few kB to make and build twice, so a few-kB file listing 10⁵ of them would take ~20 s.
MAX_LAYERS = 4096
FORMAT = "minidl.Sequential"
FORMAT_VERSION = 3  # 3: the loss beside the layers; 2: nested configs (containers); 1: a flat list of layers
HEADER_KEY = "__minidl__"
#: What a model's ``input_dtype`` may be in a file (integer token ids, or floats).
INPUT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "float32", "float64")

PathLike = str | os.PathLike


class LoadResult(NamedTuple):
    """What ``load_weights(..., strict=False)`` left out (all empty after a strict load).

    Example::

        result = load_weights(model, "old.npz", strict=False)
        result.missing_keys, result.unexpected_keys, result.mismatched_keys
    """

    missing_keys: list[str]
    unexpected_keys: list[str]
    mismatched_keys: list[str]


# -- writing ------------------------------------------------------------------------------
def save(model: Sequential, path: PathLike) -> None:
    """Write ``model`` (architecture, weights, dtype, seed) to ``path``, atomically.

    The file is written exactly at ``path``: unlike ``np.savez`` no ``.npz`` suffix is
    appended, so ``load(path)`` with the same ``path`` always finds it. An existing file
    at ``path`` is replaced only once the new one is complete and on disk.

    Args:
        model: the model to save (built: it has weights).
        path: the file to write.

    Example::

        model.save("model.npz")          # the method calls save(model, "model.npz")
        same = minidl.load("model.npz")
    """
    target = _fspath(path, "save")
    if not model.built:
        raise ValueError("save: the model is not built, so it has no weights yet; pass input_shape= or call build()")
    assert model.input_shape is not None and model.dtype is not None  # built
    state = model.state_dict()
    if HEADER_KEY in state:
        raise ValueError(f"save: state_dict has an entry named {HEADER_KEY!r}, which the file format reserves")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "minidl_version": _minidl_version(),
        "input_shape": list(model.input_shape),
        "seed": _seed_to_json(model.seed),
        "dtype": model.dtype.name,
        "input_dtype": None if model.input_dtype is None else model.input_dtype.name,
        "layers": [_layer_spec(i, layer) for i, layer in enumerate(model.layers)],
        "loss": None if model.loss is None else _loss_spec(model.loss),
        "state": {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in state.items()},
    }
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    _check_loadable(header, len(blob))
    # NumPy's stub types savez's **kwds together with its allow_pickle: bool keyword
    atomic_write(target, lambda f: np.savez(f, **{HEADER_KEY: blob}, **state))  # type: ignore[arg-type]


def _check_loadable(header: dict[str, Any], size: int) -> None:
    """Refuse to write a file that :func:`load` would refuse: the same bounds, checked before writing."""
    depth = sum(any(isinstance(v, (list, dict)) for v in level) for level in json_levels(header))
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"save: the model's containers nest so deeply that its header would nest {depth} levels of "
                         f"JSON, more than the {MAX_JSON_DEPTH} load reads (minidl.archive.MAX_JSON_DEPTH; about 3 "
                         "a container): flatten the nesting (a Sequential inside a Sequential adds nothing)")
    layers = _count_layers(header["layers"])
    if layers > MAX_LAYERS:
        raise ValueError(f"save: the model has {layers} layers (counting those inside containers), more than the "
                         f"{MAX_LAYERS} load reads (saving.MAX_LAYERS)")
    if size > MAX_HEADER_BYTES:
        raise ValueError(f"save: the model's header would take {size:,} bytes, more than the {MAX_HEADER_BYTES:,} "
                         "load reads (minidl.archive.MAX_HEADER_BYTES): fewer layers or shorter names")
    for key, entry in header["state"].items():
        if entry["dtype"] not in STATE_DTYPES:
            raise ValueError(f"save: state entry {key!r} has dtype {entry['dtype']}, which load does not read; "
                             f"the dtypes it reads: {', '.join(sorted(STATE_DTYPES))}")


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it to ``path``.

    The temporary file is fsynced before the rename and the directory after it, so after
    a crash or power loss ``path`` holds the old content or the new, complete content.
    On any error (including ``KeyboardInterrupt``) the temporary file is removed and
    ``path`` is untouched. Only a killed process can leave a stray ``.<name>.*.tmp``.

    Args:
        path: the file to replace.
        write: called once with the temporary file, open for binary writing.

    Example::

        atomic_write("notes.bin", lambda f: f.write(b"complete or not at all"))
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"save: {path!r} is a directory, not a file path")
    # Through a symlink, replace the file it points to, not the link (as writing in place would).
    real = os.path.realpath(path)
    directory, name = os.path.split(real)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"save: directory {directory!r} does not exist (saving to {path!r})")
    tmp, fd = _create_temp(directory, name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _create_temp(directory: str, name: str) -> tuple[str, int]:
    # os.open with mode 0o666 lets the umask decide the permissions, as for any new file
    # (tempfile.mkstemp would leave the saved model readable by its owner only).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; not possible (nor needed) on Windows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _layer_spec(i: int, layer: Layer) -> dict[str, Any]:
    for path, sub in ({str(i): layer} | {f"{i}.{k}": v for k, v in layer.named_layers().items()}).items():
        name = type(sub).__name__
        if loads_as(sub) is None:
            raise ValueError(
                f"save: layer {path} is a {type(sub).__module__}.{name}, but the layer registry maps {name!r} to "
                f"{LAYERS.get(name)!r}, so the file could not be loaded; give the class a unique name"
            )
    spec = layer.to_config()
    name = spec["class"]
    try:
        # Round-trip through JSON now so a bad config fails here, not when the file is loaded.
        return json.loads(json.dumps(spec))
    except (TypeError, ValueError) as err:
        raise TypeError(f"save: layer {i} ({name}) has a config that is not JSON-serialisable: {err}") from None


def _loss_spec(loss: Loss) -> dict[str, Any]:
    name = type(loss).__name__
    if loads_as(loss) is None:
        raise ValueError(f"save: the loss is a {type(loss).__module__}.{name}, but the loss registry maps {name!r} to "
                         f"{LOSSES.get(name)!r}, so the file could not be loaded; give the class a unique name")
    spec = loss.to_config()
    try:
        return json.loads(json.dumps(spec))
    except (TypeError, ValueError) as err:
        raise TypeError(f"save: the loss ({name}) has a config that is not JSON-serialisable: {err}") from None


def _seed_to_json(seed: Any) -> Any:
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return None if seed is None else int(seed)
    if isinstance(seed, (list, tuple)) and all(isinstance(s, (int, np.integer)) for s in seed):
        return [int(s) for s in seed]
    raise TypeError(f"save: the model's seed must be None, an int or a list of ints to be saved, got {seed!r}")


def _minidl_version() -> str:
    from . import __version__

    return __version__


# -- reading ------------------------------------------------------------------------------
class SavedModel(NamedTuple):
    """What a model file holds, checked: ``minidl.load`` makes a ``Sequential`` of it.

    Example::

        saved = read("model.npz")
        saved.layers, saved.loss, saved.settings["input_shape"]
    """

    layers: list[Layer]
    loss: Loss | None
    settings: dict[str, Any]  # input_shape, seed, dtype, input_dtype: the model's other arguments
    arrays: dict[str, np.ndarray]
    bad: Callable[[str], ValueError]  # an error naming the file


def read(path: PathLike) -> SavedModel:
    """The architecture (fresh, unbuilt layers and loss), the model's settings and the arrays saved at ``path``.

    Runs no code from the file and allocates no more than the arrays the file declares (see docs/saving.md);
    ``minidl.load(path)`` builds the model from them.

    Args:
        path: the model file.

    Example::

        saved = read("model.npz")
        [type(layer).__name__ for layer in saved.layers]
    """
    fname = _fspath(path, "load")
    with _open(fname) as file:
        header = file.header
        _check_architecture(file, _layers(file)[0])
        arrays = file.read_arrays()
        layers, loss = _layers(file)  # fresh ones: the check's draws must not stand in for the seed's
    settings = {k: header[k] for k in ("input_shape", "seed", "dtype")} | {"input_dtype": header.get("input_dtype")}
    return SavedModel(layers, loss, settings, arrays, file.bad)


def _layers(file: ModelArchive) -> tuple[list[Layer], Loss | None]:
    """The header's layers and loss, made from their configs (nothing is built yet).

    Before format version 3 a loss was the last entry of the layers: it is taken from there.
    """
    specs, loss_spec = list(file.header["layers"]), file.header.get("loss")
    last = specs[-1] if specs else None
    if file.header["format_version"] < 3 and isinstance(last, dict) and last.get("class") in LOSSES:
        specs.pop()
        config = last.get("config")
        loss_spec = {"class": last["class"], "config": {k: v for k, v in config.items() if k != "trainable"}
                     if isinstance(config, dict) else config}
    layers = []
    for i, spec in enumerate(specs):
        try:
            layers.append(Layer.from_config(spec))
        except (TypeError, ValueError) as err:
            raise file.bad(f"layer {i} cannot be rebuilt: {err}") from None
    if loss_spec is None:
        return layers, None
    try:
        return layers, Loss.from_config(loss_spec)
    except (TypeError, ValueError) as err:
        raise file.bad(f"the loss cannot be rebuilt: {err}") from None


def _check_architecture(file: ModelArchive, layers: list[Layer]) -> None:
    """Refuse an architecture whose parameters differ from the file's arrays, before it is built for real.

    ``layers`` are throwaway copies: they are built here with made-up weights (and a built layer keeps
    its weights when built again, so the model's own layers must be fresh for its seed to draw them).

    The file's arrays hold ``n`` values; the layers are built once with ``n + SMALL_DRAWS`` as a bound
    on two things, each checked before what it bounds is allocated:

    - the random values drawn (:class:`BudgetedGenerator`), so a config asking for a huge layer
      (``filters=10**12``) fails at its first draw instead of allocating it;
    - every dimension of every layer's per-sample input, checked in the shape pass (which, through
      containers, reaches every layer before anything is created): what a layer allocates without
      drawing (``BatchNorm2D``'s four arrays of C) grows with its input's dimensions, and in a real
      model no channel count, feature count or image side outnumbers the values its arrays hold.

    Then every parameter and buffer must have the name and shape of a declared array. A file thus
    costs at most a small multiple of what its arrays declare.
    """
    header, manifest = file.header, file.manifest
    budget = sum(math.prod(shape) for shape, _ in manifest.values()) + SMALL_DRAWS
    rng, shape = BudgetedGenerator(budget), tuple(header["input_shape"])
    built: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        _bound_dimensions(layer, budget)
        try:
            shape = layer.build(shape, rng=rng, dtype=header["dtype"])
        except (TypeError, ValueError, OverflowError) as err:
            raise file.bad(f"the saved architecture does not build: layer {i} ({type(layer).__name__}) got "
                           f"input shape {shape}: {err}") from None
        except (ArchitectureTooBig, MemoryError) as err:
            raise file.bad(f"the saved architecture asks for more than the file's arrays hold: layer {i} "
                           f"({type(layer).__name__}) {err or 'runs out of memory when built'}, while the arrays "
                           f"hold {budget - SMALL_DRAWS} values in all") from None
        built.update({f"{i}.{k}": v for k, v in (layer.named_parameters() | layer.named_buffers()).items()})
    diff = _compare({k: v.shape for k, v in built.items()}, {k: s for k, (s, _) in manifest.items()},
                    "the architecture", "the file")
    problems = diff.problems + [
        f"{k!r} is {manifest[k][1]} in the file but {v.dtype} in the architecture"
        for k, v in built.items()
        if k in manifest and manifest[k][1] != v.dtype
    ]
    if problems:
        raise file.bad("the weights do not fit the saved architecture: " + "; ".join(problems))


def _bound_dimensions(top: Layer, limit: int) -> None:
    """Make ``top`` and every layer below it refuse, in their shape pass, an input with a dimension over ``limit``.

    Only for the throwaway layers of :func:`_check_architecture`: each gets its own ``compute_output_shape``
    wrapped, the one step of ``build`` that comes before ``create_parameters`` and that a container runs
    for all its children before building any of them.
    """
    for layer in (top, *top.named_layers().values()):
        # An instance attribute shadows the method on these throwaway layers only; no user layer is touched.
        setattr(layer, "compute_output_shape", _bounded(layer, layer.compute_output_shape, limit))  # noqa: B010


def _bounded(layer: Layer, shape_pass: Callable[[Shape], Shape], limit: int) -> Callable[[Shape], Shape]:
    def compute_output_shape(input_shape: Shape) -> Shape:
        if max(input_shape, default=0) > limit:
            raise ArchitectureTooBig(
                f"builds {type(layer).__name__} for a per-sample input of shape {tuple(input_shape)}, which has a "
                f"dimension over {limit} (no channel count, feature count or image side of a real model outnumbers "
                f"the values its arrays hold, plus {SMALL_DRAWS})"
            )
        return shape_pass(input_shape)

    return compute_output_shape


def load_weights(model: Sequential, path: PathLike, strict: bool = True) -> LoadResult:
    """Copy the weights saved at ``path`` into ``model`` (in place; optimizers keep working).

    An unbuilt ``model`` is first built for the file's ``input_shape``. Arrays are cast to
    the model's dtype. With ``strict=True`` the names and shapes must match exactly, and
    nothing is changed unless they do; with ``strict=False`` every entry whose name and
    shape match is loaded and the rest are reported in the returned :class:`LoadResult`.

    Args:
        model: the model to copy the weights into.
        path: the model file.
        strict: refuse any difference in names or shapes (``False``: load what matches, report the rest).

    Example::

        result = load_weights(model, "pretrained.npz", strict=False)
        print(result.missing_keys)
    """
    fname = _fspath(path, "load_weights")
    header, arrays = _read(fname)
    if not model.built:
        _build_for_file(model, fname, tuple(header["input_shape"]), sum(a.size for a in arrays.values()))
    current = model.state_dict()
    diff = _compare({k: a.shape for k, a in current.items()}, {k: a.shape for k, a in arrays.items()},
                    "the model", "the file")
    if strict and diff.problems:
        raise ValueError(
            f"load_weights: {fname!r} does not fit the model: " + "; ".join(diff.problems)
            + " (strict=False loads the entries that match)"
        )
    try:
        model.load_state_dict({k: arrays[k] for k in current if k in arrays and k not in diff.mismatched}, strict=False)
    except ValueError as err:  # non-finite values
        raise ValueError(f"load_weights: {fname!r}: {err}") from None
    return LoadResult(diff.missing, diff.unexpected, diff.mismatched)


def _build_for_file(model: Sequential, fname: str, input_shape: Shape, values: int) -> None:
    """Build ``model`` for the ``input_shape`` of a file whose arrays hold ``values`` values, as ``load`` would allow.

    The file chooses the shape, so it is held to :func:`_check_architecture`'s bounds: no dimension over
    ``values + SMALL_DRAWS``, and no more random draws than that. The draws come from a
    :class:`BudgetedGenerator` on the model's own bit generator, so the weights are those of a plain
    ``model.build(input_shape)``.
    """
    budget = values + SMALL_DRAWS
    cannot = f"load_weights: the model cannot be built for the input shape {input_shape} saved in {fname!r}"
    if max(input_shape, default=0) > budget:
        raise ValueError(f"{cannot}: a dimension over {budget}, the values its arrays hold plus {SMALL_DRAWS}")
    try:
        model.build(input_shape, rng=BudgetedGenerator(budget, model._init_rng.bit_generator))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{cannot}: {err}") from None
    except (ArchitectureTooBig, MemoryError) as err:
        raise ValueError(f"{cannot}: for that shape the model {err or 'runs out of memory'}, more than the file's "
                         f"arrays hold ({values} values); to load part of a file into a larger model, build the "
                         "model first (input_shape=...)") from None


class _Diff(NamedTuple):
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    problems: list[str]


def _compare(ours: Mapping[str, Shape], theirs: Mapping[str, Shape], ours_name: str, theirs_name: str) -> _Diff:
    """The names and shapes of two state dicts, and one sentence per difference."""
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    mismatched = [k for k in ours if k in theirs and ours[k] != theirs[k]]
    problems = [
        f"parameter {k!r} has shape {ours[k]} in {ours_name} but {theirs[k]} in {theirs_name}"
        for k in mismatched
    ]
    if missing:
        problems.append(f"missing from {theirs_name}: {missing}")
    if unexpected:
        problems.append(f"in {theirs_name} but not in {ours_name}: {unexpected}")
    return _Diff(missing, unexpected, mismatched, problems)


def _fspath(path: Any, caller: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{caller}: path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"{caller}: path must be a text path, got {path!r}")
    return path


def _open(fname: str) -> ModelArchive:
    """The minidl file ``fname``, its header and manifest checked; ``ValueError`` naming the file otherwise."""
    return ModelArchive(fname, HEADER_KEY, _check_header)


def _read(fname: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked header and every array of a minidl file; ``ValueError`` naming the file otherwise."""
    with _open(fname) as file:
        return file.header, file.read_arrays()


def _check_header(header: Any, bad: Callable[[str], ValueError]) -> None:
    """Refuse a decoded JSON header unless it has minidl's format, a readable version and entries of the right types."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise bad(f"not a minidl model file (format {found!r}, expected {FORMAT!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise bad(
            f"written in format version {version} by minidl {header.get('minidl_version')}; this minidl "
            f"({_minidl_version()}) reads versions up to {FORMAT_VERSION}: upgrade minidl"
        )
    checks = {
        "input_shape": lambda v: isinstance(v, list) and all(isinstance(d, int) for d in v),
        "seed": lambda v: (v is None or isinstance(v, int)
                           or (isinstance(v, list) and all(isinstance(s, int) for s in v))),
        "dtype": lambda v: v in ("float32", "float64"),
        "layers": lambda v: isinstance(v, list),
        "state": lambda v: isinstance(v, dict) and all(isinstance(m, dict) for m in v.values()),
    }
    if version >= 3:
        checks["loss"] = lambda v: v is None or (isinstance(v, dict) and v.keys() == {"class", "config"}
                                                 and isinstance(v["class"], str) and isinstance(v["config"], dict))
        checks["input_dtype"] = lambda v: v is None or v in INPUT_DTYPES
    for key, ok in checks.items():
        if key not in header or not ok(header[key]):
            raise bad(f"the header's {key!r} entry is missing or invalid: {header.get(key)!r}")
    layers = _count_layers(header["layers"])
    if layers > MAX_LAYERS:
        raise bad(f"the architecture has {layers} layers (counting those inside containers), more than the "
                  f"{MAX_LAYERS} a file may hold (saving.MAX_LAYERS)")


def _count_layers(specs: Any) -> int:
    """How many layer specs (``{"class": ..., "config": ...}`` dicts, which ``Layer.from_config`` takes) are in
    ``specs``."""
    return sum(isinstance(v, dict) and v.keys() == {"class", "config"} for level in json_levels(specs) for v in level)
