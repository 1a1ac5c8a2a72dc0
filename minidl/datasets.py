"""Standard image data sets, downloaded once, checked against pinned digests, parsed with NumPy only.

Every loader returns ``(X_train, y_train), (X_test, y_test)`` (Keras's shape of answer): images
``(N, C, H, W)`` of ``dtype`` (float32 by default) scaled to [0, 1], integer labels ``(N,)``:

- ``load_digits``: scikit-learn's 8×8 digits, ``(N, 1, 8, 8)``, 1,437 / 360 (nothing to download);
- ``load_mnist``: ``(N, 1, 28, 28)``, 60,000 / 10,000, four gzip-compressed IDX files (11 MB);
- ``load_fashion_mnist``: ``(N, 1, 28, 28)``, 60,000 / 10,000, four IDX files (30 MB);
- ``load_cifar10``: ``(N, 3, 32, 32)``, 50,000 / 10,000, ``cifar-10-binary.tar.gz`` (163 MB).

Files are cached in ``<data_dir>/<data set>/`` (``data_dir``: the argument, else ``$MINIDL_DATA``,
else ``~/.cache/minidl``); see :mod:`minidl.download` for the download itself. The SHA-256
digests and sizes below are those TensorFlow Datasets publishes for these exact files
(``tensorflow_datasets/url_checksums/{mnist,fashion_mnist,cifar10}.txt``). CIFAR-10 is read from
its *binary* version: the pickled Python version is never opened, since unpickling runs code.

Text (:mod:`minidl.text`, re-exported here): ``load_pydoc_text`` (offline) and
``load_tiny_shakespeare`` (``input.txt``, 1.1 MB; digest and size from TensorFlow Datasets'
``tensorflow_datasets/url_checksums/tiny_shakespeare.txt``) return a character tokenizer and
train/validation token arrays.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .download import RemoteFile, data_home, fetch
from .text import load_pydoc_text, load_tiny_shakespeare

__all__ = ["load_digits", "load_mnist", "load_fashion_mnist", "load_cifar10", "read_idx", "read_cifar10",
           "load_pydoc_text", "load_tiny_shakespeare", "DataFormatError", "LOADERS", "FILES", "MIRRORS",
           "CIFAR10_CLASSES", "FASHION_MNIST_CLASSES"]

Split = tuple[np.ndarray, np.ndarray]

#: Where each data set's files are downloaded from, in order of preference; override per call with ``base_url=``.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets' copy
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's copy
        "http://yann.lecun.com/exdb/mnist/",  # the original
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],  # Zalando's
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],  # Alex Krizhevsky's
    "tiny-shakespeare": ["https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"],
}

#: The files of each data set with their published SHA-256 digests and sizes (see the module docstring).
FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        RemoteFile("train-images-idx3-ubyte.gz",
                   "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    ),
    "fashion-mnist": (
        RemoteFile("train-images-idx3-ubyte.gz",
                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    ),
    "cifar10": (
        RemoteFile("cifar-10-binary.tar.gz",
                   "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171),
    ),
    "tiny-shakespeare": (  # minidl.text.load_tiny_shakespeare
        RemoteFile("input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394),
    ),
}

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: No file of these data sets decompresses to more (MNIST's training images: 47,040,016 bytes);
#: a larger stream is refused rather than read into memory.
MAX_IDX_BYTES = 1 << 26
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes
_CIFAR_BATCH = 10_000
_CIFAR_DIR = "cifar-10-batches-bin"


class DataFormatError(ValueError):
    """A data file is not in the format its loader reads (the message names the file and what is wrong)."""


def load_digits(test_size: float = 0.2, random_state: int = 42, dtype: Any = "float32") -> tuple[Split, Split]:
    """scikit-learn's 8×8 digits split as the blog splits them (:func:`minidl.data.load_digits`),
    returned as ``(X_train, y_train), (X_test, y_test)``; nothing is downloaded."""
    from . import data  # scikit-learn: imported when needed, not by the command line's start

    X_train, X_test, y_train, y_test = data.load_digits(test_size=test_size, random_state=random_state, dtype=dtype)
    return (X_train, y_train), (X_test, y_test)


def load_mnist(data_dir: str | os.PathLike | None = None, *, base_url: str | Sequence[str] | None = None,
               download: bool = True, verbose: bool = True, dtype: Any = "float32") -> tuple[Split, Split]:
    """MNIST's 60,000 training and 10,000 test handwritten digits, ``(N, 1, 28, 28)`` in [0, 1].

    Args:
        data_dir: cache directory (files go to ``<data_dir>/mnist/``); default ``$MINIDL_DATA``
            or ``~/.cache/minidl``.
        base_url: a mirror (or list of mirrors) to download from instead of :data:`MIRRORS`.
        download: ``False`` never touches the network: the files must be in the cache.
        verbose: show a progress bar while downloading.
        dtype: floating dtype of the images.

    Raises:
        minidl.download.DownloadError: a file is missing and cannot be downloaded, or its SHA-256
            digest is wrong; the message names each file, its digest and where to put it by hand.
        DataFormatError: (a ``ValueError``) a file is not a valid gzip-compressed IDX file of the
            expected shape.

    Example::

        (X_train, y_train), (X_test, y_test) = load_mnist()
    """
    return _load_idx_set("mnist", data_dir, base_url, download, verbose, dtype)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, base_url: str | Sequence[str] | None = None,
                       download: bool = True, verbose: bool = True, dtype: Any = "float32") -> tuple[Split, Split]:
    """Zalando's Fashion-MNIST: 60,000 + 10,000 28×28 clothing images in 10 classes
    (:data:`FASHION_MNIST_CLASSES`), ``(N, 1, 28, 28)`` in [0, 1]. Arguments as :func:`load_mnist`;
    files go to ``<data_dir>/fashion-mnist/``."""
    return _load_idx_set("fashion-mnist", data_dir, base_url, download, verbose, dtype)


def load_cifar10(data_dir: str | os.PathLike | None = None, *, base_url: str | Sequence[str] | None = None,
                 download: bool = True, verbose: bool = True, dtype: Any = "float32") -> tuple[Split, Split]:
    """CIFAR-10: 50,000 + 10,000 colour 32×32 images in 10 classes (:data:`CIFAR10_CLASSES`),
    ``(N, 3, 32, 32)`` in [0, 1], read from the binary version's archive without unpacking it.
    Arguments as :func:`load_mnist`; the archive goes to ``<data_dir>/cifar10/``."""
    dtype = _float_dtype(dtype)
    (archive,) = _fetch("cifar10", data_dir, base_url, download, verbose)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    batches = read_cifar10(archive, names)
    train = tuple(np.concatenate(parts) for parts in zip(*batches[:5]))
    return _scaled(*train, dtype), _scaled(*batches[5], dtype)


#: The loaders by data set name.
LOADERS = {"digits": load_digits, "mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in a gzip-compressed IDX file (MNIST's format), in native byte order.

    The header is two zero bytes, a type code, the number of dimensions and each dimension as a
    big-endian int32; the values follow, big-endian. Raises :class:`DataFormatError` naming the file for
    anything else (not gzip, truncated, a wrong header, trailing bytes).
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataFormatError(f"{path} is not a valid gzip file ({err}); delete it to download it again") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataFormatError(f"{path} decompresses to more than {MAX_IDX_BYTES:,} bytes: not an IDX file of these data sets")
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataFormatError(f"{path} is not an IDX file: its header is {raw[:4].hex() or 'empty'}, expected 0000 "
                         f"followed by a type code in {[hex(t) for t in _IDX_TYPES]} and a dimension count")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: the IDX header promises {ndim} dimensions, but the file ends after {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFormatError(f"{path}: an IDX array of shape {shape} and type {dtype} takes {expected:,} bytes, "
                         f"the file has {len(raw):,}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_cifar10(archive: str | os.PathLike, names: Sequence[str]) -> list[Split]:
    """``(images uint8 (N, 3, 32, 32), labels (N,))`` of each binary batch ``names`` in CIFAR-10's
    ``cifar-10-binary.tar.gz``, read from the archive in one pass. Each record is a label byte and
    3,072 pixel bytes (red, green, blue planes, row-major). Raises :class:`DataFormatError` naming the archive
    and the member for a corrupt archive, a missing batch or a batch that is not whole records."""
    wanted = {f"{_CIFAR_DIR}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None:
                    continue
                if not member.isfile() or member.size % _CIFAR_RECORD or not 0 < member.size <= _CIFAR_BATCH * _CIFAR_RECORD:
                    raise DataFormatError(f"{archive}: {member.name} has {member.size:,} bytes, expected a positive "
                                     f"multiple of {_CIFAR_RECORD:,} (one label and 32x32x3 pixels a record) "
                                     f"up to {_CIFAR_BATCH:,} records")
                found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataFormatError(f"{archive} is not a valid .tar.gz archive ({err}); delete it to download it again") from None
    missing = [name for name in names if name not in found]
    if missing:
        raise DataFormatError(f"{archive} lacks {', '.join(f'{_CIFAR_DIR}/{m}' for m in missing)}: "
                         "not CIFAR-10's binary version (cifar-10-binary.tar.gz)?")
    batches = []
    for name in names:
        records = np.frombuffer(found[name], np.uint8).reshape(-1, _CIFAR_RECORD)
        labels = records[:, 0].astype(np.int64)
        if labels.max() > 9:
            raise DataFormatError(f"{archive}: {name} holds label {labels.max()}, CIFAR-10's labels are 0..9")
        batches.append((records[:, 1:].reshape(-1, 3, 32, 32), labels))
    return batches


def _load_idx_set(name: str, data_dir, base_url, download, verbose, dtype) -> tuple[Split, Split]:
    dtype = _float_dtype(dtype)
    paths = dict(zip((f.name for f in FILES[name]), _fetch(name, data_dir, base_url, download, verbose)))
    splits = []
    for prefix in ("train", "t10k"):
        images_path, labels_path = paths[f"{prefix}-images-idx3-ubyte.gz"], paths[f"{prefix}-labels-idx1-ubyte.gz"]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFormatError(f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} "
                             f"of shape {images.shape}")
        if labels.shape != images.shape[:1] or labels.dtype != np.uint8 or (labels.size and labels.max() > 9):
            raise DataFormatError(f"{labels_path}: expected {len(images)} uint8 labels 0..9 to match {images_path}, "
                             f"got {labels.dtype} of shape {labels.shape}")
        splits.append(_scaled(images[:, None], labels.astype(np.int64), dtype))
    return splits[0], splits[1]


def _fetch(name: str, data_dir, base_url, download: bool, verbose: bool) -> list[Path]:
    if base_url is None:
        mirrors = MIRRORS[name]
    else:
        mirrors = [base_url] if isinstance(base_url, str) else list(base_url)
        if not mirrors or not all(isinstance(m, str) for m in mirrors):
            raise TypeError(f"base_url must be a URL or a list of URLs, got {base_url!r}")
    return fetch(FILES[name], data_home(data_dir) / name, mirrors, download=download, verbose=verbose)


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.kind != "f":
        raise TypeError(f"dtype must be a floating type such as 'float32', got {dtype!r}")
    return resolved


def _scaled(images: np.ndarray, labels: np.ndarray, dtype: np.dtype) -> Split:
    X = images.astype(dtype)
    X /= dtype.type(255)
    return X, labels
