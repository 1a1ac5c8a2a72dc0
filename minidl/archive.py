"""Reading a minidl ``.npz`` file that may have been made to hurt: bounded, checked, and running no code.

:class:`ModelArchive` opens the zip, reads its JSON header with its size and nesting bounded, and
checks every member against the header's manifest *before* reading any array: a member the
manifest does not list is never read (nor inflated), only stored or deflated members are read
(the decompressors that can be told how much to inflate at most), and each member's ``.npy``
header and uncompressed size must be exactly what its declared shape and dtype take. Arrays are
then read a chunk at a time into buffers of their declared size, never more, and no pickle is
ever unpickled. :class:`BudgetedGenerator` lets a loader build a file's architecture with a
random-number budget equal to what the file's arrays hold, so a config asking for a huge layer
fails at its first oversized draw instead of allocating it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

__all__ = [
    "MAX_HEADER_BYTES", "MAX_JSON_DEPTH", "MAX_NPY_HEADER_BYTES", "SMALL_DRAWS", "STATE_DTYPES",
    "ArchitectureTooBig", "BudgetedGenerator", "ModelArchive", "json_levels",
]

ZIP_MAGIC = b"PK\x03\x04"
#: What a file may make a loader read before its content has been checked.
#: The JSON header: ~170 bytes a layer, so 1 MiB holds saving.MAX_LAYERS layers and their manifest; decoding
#: costs up to ~20 bytes of Python objects a byte (measured on a header of empty lists): ~20 MB at most.
MAX_HEADER_BYTES = 1 << 20
MAX_JSON_DEPTH = 64
MAX_NPY_HEADER_BYTES = 1 << 16  # a member's own .npy header (np.save writes 128 bytes)
#: dtypes an array of the state may have (a custom layer's buffer may hold counts or flags).
STATE_DTYPES = frozenset(
    ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
)
_CHUNK = 1 << 20
#: Random values a file's layers may draw beyond its arrays' sizes (a Dropout's seed, ...).
SMALL_DRAWS = 1 << 16
_INT64_MAX = np.iinfo(np.int64).max


class ModelArchive:
    """An open minidl file whose header and members are checked before any array is read.

    Opening reads only the zip directory, the JSON header and each member's ``.npy`` header,
    and checks every member against the header's manifest: no member the manifest does not
    list (an unlisted member is never read, let alone inflated), stored or deflated only, and
    an uncompressed size that is exactly what its declared shape and dtype take.
    :meth:`read_arrays` then reads each array into a buffer of its declared size, a chunk at a
    time, so a file can make ``load`` allocate only what its manifest declares.
    """

    def __init__(self, fname: str, header_key: str, check_header: Callable[[Any, Callable[[str], ValueError]], None]
                 ) -> None:
        """Open ``fname``; its JSON header is the member ``header_key``, which ``check_header(header, bad)``
        must accept (raising ``bad(message)`` otherwise) and which must hold the manifest under ``"state"``."""
        if os.path.isdir(fname):
            raise IsADirectoryError(f"cannot load {fname!r}: it is a directory, expected a minidl model file")
        if not os.path.isfile(fname):
            raise FileNotFoundError(f"cannot load {fname!r}: no such file")
        self.fname, self.header_key, self._check_header = fname, header_key, check_header
        #: ``{name: (shape, dtype)}`` of every array, as the header declares them.
        self.manifest: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        with open(fname, "rb") as f:
            magic = f.read(6)
        if magic[:4] != ZIP_MAGIC:
            single = "a single .npy array, " if magic == b"\x93NUMPY" else ""
            raise self.bad(f"not a minidl model file ({single}not an .npz archive)")
        try:
            self.zip = zipfile.ZipFile(fname)
        except Exception as err:  # zipfile, struct and OSError each raise their own types on bad bytes
            raise self.corrupt(err) from None
        try:
            self._check(os.path.getsize(fname))
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> ModelArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.zip.close()

    def bad(self, what: str) -> ValueError:
        return ValueError(f"cannot load {self.fname!r}: {what}")

    def corrupt(self, err: BaseException) -> ValueError:
        return self.bad(f"the .npz archive is truncated or corrupt ({type(err).__name__}: {err})")

    def _check(self, file_size: int) -> None:
        """Set ``header``, ``manifest`` (``{name: (shape, dtype)}`` of every array) and ``entries`` (zip members)."""
        entries: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            key = info.filename.removesuffix(".npy")
            if key in entries:
                raise self.bad(f"the archive holds {key!r} twice")
            entries[key] = info
        key = self.header_key
        if key not in entries:
            raise self.bad(f"not a minidl model file (no {key!r} header; the archive holds {list(entries)[:5]})")
        if sum(info.compress_size for info in entries.values()) > file_size:
            raise self.corrupt(EOFError(f"its members take more than the file's {file_size} bytes"))
        with self._open(entries[key], key, MAX_HEADER_BYTES) as (f, shape, dtype):
            if dtype != np.uint8 or len(shape) != 1:
                raise self.bad(f"the {key!r} header is not UTF-8 JSON bytes (got a {dtype} array of shape {shape})")
            blob = self._read_data(f, shape, dtype)
        header = self._decode_json(blob)
        self._check_header(header, self.bad)
        manifest = header["state"]
        for key, entry in manifest.items():
            shape, dtype = entry.get("shape"), entry.get("dtype")
            if not (isinstance(shape, list) and all(_is_count(d) for d in shape) and dtype in STATE_DTYPES
                    and math.prod(shape) <= _INT64_MAX // 8):
                raise self.bad(f"the header's manifest entry for {key!r} is invalid: {entry!r}")
        listed, found = set(manifest), set(entries) - {self.header_key}
        if listed != found:
            raise self.bad(f"the arrays do not match the header's manifest: missing {sorted(listed - found)}, "
                           f"unlisted {sorted(found - listed)}")
        self.header, self.entries = header, entries
        self.manifest = {k: (tuple(m["shape"]), np.dtype(m["dtype"])) for k, m in manifest.items()}
        for key in self.manifest:
            with self._open(entries[key], key):
                pass

    @contextlib.contextmanager
    def _open(self, info: zipfile.ZipInfo, key: str, limit: int | None = None,
              ) -> Iterator[tuple[IO[bytes], tuple[int, ...], np.dtype]]:
        """The member opened past its .npy header, with the header's shape and dtype.

        The member is refused unless stored or deflated (the only decompressors that can be told how much
        to inflate at most), unless its .npy header gives the manifest's shape and dtype (the JSON header,
        which the manifest does not list, may hold up to ``limit`` bytes), and unless its uncompressed size,
        from the zip directory, is exactly what that shape and dtype take.
        """
        expected = self.manifest.get(key) if limit is None else None
        if expected is not None:
            limit = math.prod(expected[0]) * expected[1].itemsize
        elif limit is None:
            raise self.bad(f"entry {key!r} of the archive is not among the arrays its header lists")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.bad(f"entry {key!r} of the archive uses compression method {info.compress_type}; "
                           "only stored and deflated entries are read")
        too_big = f"entry {key!r} of the archive inflates to {info.file_size} bytes, more than the {limit} bytes " + (
            "the header may take" if key == self.header_key else "its declared shape takes") + " (and a .npy header)"
        if info.file_size > limit + MAX_NPY_HEADER_BYTES:
            raise self.bad(too_big)
        try:
            f = self.zip.open(info)
        except Exception as err:
            raise self.corrupt(err) from None
        with f:
            try:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"unsupported .npy version {version}")
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(f, max_header_size=MAX_NPY_HEADER_BYTES)
            except (ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise self.bad(f"entry {key!r} of the archive is not a .npy array ({err})") from None
            if expected is not None and (shape, dtype) != expected:
                raise self.bad(f"array {key!r} is {dtype.name} {shape}, but the header lists "
                               f"{self.header['state'][key]}")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > limit:
                raise self.bad(too_big)
            if dtype.hasobject or fortran or info.file_size != f.tell() + nbytes:
                raise self.bad(f"entry {key!r} of the archive is not a plain .npy array: {dtype} {shape}"
                               f"{', Fortran order' if fortran else ''} takes {nbytes} bytes, the entry holds "
                               f"{info.file_size - f.tell()}")
            yield f, shape, dtype

    def _read_data(self, f: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The array's data, read a chunk at a time into a buffer of its size (never more is inflated)."""
        out = np.empty(shape, dtype=dtype)
        # ndarray has the buffer protocol; NumPy's stubs do not declare it for Python < 3.12
        view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        try:
            done = 0
            while done < len(view):
                chunk = f.read(min(_CHUNK, len(view) - done))
                if not chunk:
                    raise EOFError("the entry ends early")
                view[done:done + len(chunk)] = chunk
                done += len(chunk)
            f.read(1)  # reach the end of the entry, where zipfile checks its CRC-32
        except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as err:
            raise self.corrupt(err) from None
        return out

    def _decode_json(self, blob: np.ndarray) -> Any:
        too_deep = f"the {self.header_key!r} header nests lists and objects deeper than {MAX_JSON_DEPTH} levels"
        try:
            header = json.loads(blob.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise self.bad(f"the {self.header_key!r} header is not valid JSON ({err})") from None
        except RecursionError:  # deeper than Python's stack
            raise self.bad(too_deep) from None
        if _json_depth(header) > MAX_JSON_DEPTH:
            raise self.bad(too_deep)
        return header

    def read_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the state, in the manifest's order."""
        arrays = {}
        for key, (shape, dtype) in self.manifest.items():
            with self._open(self.entries[key], key) as (f, _, _):
                arrays[key] = self._read_data(f, shape, dtype)
        return arrays


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class ArchitectureTooBig(Exception):
    """Raised instead of building what a file's arrays cannot account for (a draw over :class:`BudgetedGenerator`'s
    budget; in ``minidl.saving``, a layer input with a dimension over it)."""


class BudgetedGenerator(np.random.Generator):
    """A ``Generator`` that refuses, before drawing, to draw more values in all than ``budget``.

    ``minidl.saving.read`` (behind ``minidl.load``) builds a file's layers with it: a layer draws its initial weights
    at their full size, so an architecture asking for weights larger than the arrays the file
    declares is stopped at its first oversized draw, before anything of that size exists.
    """

    def __init__(self, budget: int, bit_generator: np.random.BitGenerator | None = None) -> None:
        """Allow ``budget`` values in all, drawn from ``bit_generator`` (shared, not copied; default a fixed PCG64)."""
        super().__init__(np.random.PCG64(0) if bit_generator is None else bit_generator)
        self.left = budget

    def _take(self, size: Any) -> None:
        shape = () if size is None else (size,) if np.ndim(size) == 0 else tuple(size)
        try:
            n = math.prod(int(d) for d in shape)
        except (TypeError, ValueError):
            return  # not a size: let the real method raise its own error
        if n > self.left:
            raise ArchitectureTooBig(f"draws {n} initial values at once (shape {shape})")
        self.left -= n

    def standard_normal(self, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._take(size)
        return super().standard_normal(size, *args, **kwargs)

    def random(self, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._take(size)
        return super().random(size, *args, **kwargs)

    def normal(self, loc: Any = 0.0, scale: Any = 1.0, size: Any = None) -> Any:
        self._take(size)
        return super().normal(loc, scale, size)

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None) -> Any:
        self._take(size)
        return super().uniform(low, high, size)

    def integers(self, low: Any, high: Any = None, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._take(size)
        return super().integers(low, high, size, *args, **kwargs)


def json_levels(value: Any) -> Iterator[list[Any]]:
    """A decoded JSON value level by level: ``[value]``, then the items of its lists and dicts, ... (no recursion)."""
    level = [value]
    while level:
        yield level
        level = [item for c in level if isinstance(c, (list, dict))
                 for item in (c.values() if isinstance(c, dict) else c)]


def _json_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (a scalar is 0)."""
    return sum(any(isinstance(v, (list, dict)) for v in level) for level in json_levels(value))
