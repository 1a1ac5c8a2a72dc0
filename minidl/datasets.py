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
import math
import os
import sys
import tarfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .download import DownloadError, RemoteFile, data_home, fetch, sha256_of
from .text import TextData, load_pydoc_text, split_text

__all__ = ["load_digits", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_from_arrays", "load_npz",
           "load_pydoc_text", "load_tiny_shakespeare", "read_idx", "read_cifar10", "DataFormatError", "LOADERS",
           "FILES", "MIRRORS", "CIFAR10_CLASSES", "FASHION_MNIST_CLASSES"]

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
    """A data file is not in the format its loader reads (the message names the file and what is wrong).

    Example::

        try:
            read_idx("not-idx.gz")
        except DataFormatError as err:   # also a ValueError
            print(err)
    """


def load_digits(test_size: float = 0.2, random_state: int = 42, dtype: Any = "float32") -> tuple[Split, Split]:
    """scikit-learn's 8×8 digits, split as the blog splits them; nothing is downloaded.

    The one implementation: :func:`minidl.data.load_digits` returns the same arrays as
    ``X_train, X_test, y_train, y_test``.

    Args:
        test_size: the fraction of the 1,797 images held out for testing.
        random_state: the seed of scikit-learn's ``train_test_split``.
        dtype: floating dtype of the images.

    Shape:
        images ``(N, 1, 8, 8)`` scaled to [0, 1] (the pixels are 0..16); labels ``(N,)``. The
        defaults reproduce the blog's ``train_test_split(X, y, test_size=0.2, random_state=42)``:
        1,437 training and 360 test images.

    Example::

        (X_train, y_train), (X_test, y_test) = load_digits()
    """
    dtype = _float_dtype(dtype)
    # scikit-learn takes seconds to import: only when the digits are wanted (minidl --help stays quick).
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    X = (digits.images / 16.0).astype(dtype)[:, None]
    X_train, X_test, y_train, y_test = train_test_split(X, digits.target, test_size=test_size,
                                                        random_state=random_state)
    return (X_train, y_train), (X_test, y_test)


def load_mnist(data_dir: str | os.PathLike | None = None, *, base_url: str | Sequence[str] | None = None,
               download: bool = True, path: str | os.PathLike | None = None, verbose: bool = True,
               dtype: Any = "float32") -> tuple[Split, Split]:
    """MNIST's 60,000 training and 10,000 test handwritten digits, ``(N, 1, 28, 28)`` in [0, 1].

    Args:
        data_dir: cache directory (files go to ``<data_dir>/mnist/``); default ``$MINIDL_DATA``
            or ``~/.cache/minidl``.
        base_url: a mirror (or list of mirrors) to download from instead of :data:`MIRRORS`.
        download: ``False`` never touches the network: the files must be in the cache.
        path: a directory holding your own copy of the four files (gzip-compressed, or not:
            ``train-images-idx3-ubyte`` works too). They are used as they are, never downloaded and
            not compared with the published digests; instead their format, the 28×28 image size, the
            label count and the labels' range 0..9 are checked, and a line says so (``verbose``).
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
    return _load_idx_set("mnist", data_dir, base_url, download, path, verbose, dtype)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, base_url: str | Sequence[str] | None = None,
                       download: bool = True, path: str | os.PathLike | None = None, verbose: bool = True,
                       dtype: Any = "float32") -> tuple[Split, Split]:
    """Zalando's Fashion-MNIST: 60,000 + 10,000 28×28 clothing images in 10 classes
    (:data:`FASHION_MNIST_CLASSES`), ``(N, 1, 28, 28)`` in [0, 1]. Arguments as :func:`load_mnist`;
    files go to ``<data_dir>/fashion-mnist/``.

    Args:
        data_dir: as for :func:`load_mnist`.
        base_url: as for :func:`load_mnist`.
        download: as for :func:`load_mnist`.
        path: as for :func:`load_mnist`.
        verbose: as for :func:`load_mnist`.
        dtype: as for :func:`load_mnist`.

    Example::

        (X_train, y_train), (X_test, y_test) = load_fashion_mnist()
    """
    return _load_idx_set("fashion-mnist", data_dir, base_url, download, path, verbose, dtype)


def load_cifar10(data_dir: str | os.PathLike | None = None, *, base_url: str | Sequence[str] | None = None,
                 download: bool = True, path: str | os.PathLike | None = None, verbose: bool = True,
                 dtype: Any = "float32") -> tuple[Split, Split]:
    """CIFAR-10: 50,000 + 10,000 colour 32×32 images in 10 classes (:data:`CIFAR10_CLASSES`),
    ``(N, 3, 32, 32)`` in [0, 1], read from the binary version's archive without unpacking it.
    Arguments as :func:`load_mnist`; the archive goes to ``<data_dir>/cifar10/``, and ``path`` is a
    directory holding your own ``cifar-10-binary.tar.gz`` (its records and labels are checked).

    Args:
        data_dir: as for :func:`load_mnist`.
        base_url: as for :func:`load_mnist`.
        download: as for :func:`load_mnist`.
        path: a directory holding your own ``cifar-10-binary.tar.gz``.
        verbose: as for :func:`load_mnist`.
        dtype: as for :func:`load_mnist`.

    Example::

        (X_train, y_train), (X_test, y_test) = load_cifar10()
    """
    dtype = _float_dtype(dtype)
    (archive,) = _files("cifar10", data_dir, base_url, download, path, verbose)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    try:
        batches = read_cifar10(archive, names)
    except DataFormatError as err:
        raise DataFormatError(f"{err}{_advice(download, path)}") from None
    train = tuple(np.concatenate(parts) for parts in zip(*batches[:5], strict=True))
    if path is not None and verbose:
        _say_trusted("cifar10", Path(path), len(train[1]), len(batches[5][1]), "3x32x32")
    (train_images, train_labels), (test_images, test_labels) = train, batches[5]
    return _scaled(train_images, train_labels, dtype), _scaled(test_images, test_labels, dtype)


def load_from_arrays(X_train: Any, y_train: Any, X_test: Any, y_test: Any, *, channels_last: bool = False,
                     dtype: Any = "float32") -> tuple[Split, Split]:
    """Your own images and labels, checked and shaped as the other loaders return theirs.

    Args:
        X_train: training images ``(N, H, W)`` (one channel is added) or ``(N, C, H, W)``
            (``(N, H, W, C)`` with ``channels_last=True``); ``uint8`` pixels are divided by 255,
            floating values are kept as they are (they must be finite); other integer types are refused.
        y_train: integer training labels ``(N,)``, 0 or more.
        X_test: test images, as ``X_train`` (the same ``(C, H, W)``).
        y_test: integer test labels, as ``y_train``.
        channels_last: the 4-D images are ``(N, H, W, C)`` (Keras's and TensorFlow's layout); they are
            transposed to minidl's ``(N, C, H, W)``.
        dtype: floating dtype of the images.

    Returns:
        ``(X_train, y_train), (X_test, y_test)``: images of ``dtype``, labels ``int64``.

    Example::

        >>> (X, y), _ = load_from_arrays(np.zeros((2, 8, 8), np.uint8), [0, 1], np.zeros((1, 8, 8), np.uint8), [1])
        >>> X.shape, y.dtype
        ((2, 1, 8, 8), dtype('int64'))
    """
    dtype = _float_dtype(dtype)
    if not isinstance(channels_last, (bool, np.bool_)):
        raise TypeError(f"channels_last must be True or False, got {channels_last!r}")
    train = _checked_split("X_train", X_train, "y_train", y_train, channels_last, dtype)
    test = _checked_split("X_test", X_test, "y_test", y_test, channels_last, dtype)
    if train[0].shape[1:] != test[0].shape[1:]:
        raise ValueError(f"X_train's images are {train[0].shape[1:]}, X_test's {test[0].shape[1:]}: "
                         "expected the same (C, H, W)")
    return train, test


def load_npz(path: str | os.PathLike, *, channels_last: bool = False, dtype: Any = "float32") -> tuple[Split, Split]:
    """The four arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` of a ``.npz`` file (the names
    Keras's ``mnist.npz`` uses), through :func:`load_from_arrays`. The file is opened with
    ``allow_pickle=False``: object arrays, which would run code when unpickled, are refused.

    Args:
        path: the ``.npz`` file.
        channels_last: as for :func:`load_from_arrays`.
        dtype: as for :func:`load_from_arrays`.

    Raises:
        DataFormatError: (a ``ValueError``) naming the file: not an ``.npz`` of plain arrays, or an array missing.

    Example::

        np.savez("mine.npz", x_train=images, y_train=labels, x_test=test_images, y_test=test_labels)
        (X_train, y_train), (X_test, y_test) = load_npz("mine.npz")
    """
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zlib.error) as err:  # ValueError: pickled data, or not NumPy's format
        raise DataFormatError(f"{path} cannot be read as an .npz file of plain arrays ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(f"{path} holds one array, expected an .npz archive of {', '.join(keys)}")
    with archive:
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise DataFormatError(f"{path} lacks the array(s) {', '.join(missing)}: expected {', '.join(keys)} "
                                  f"(as in Keras's mnist.npz), found {', '.join(archive.files) or 'none'}; save "
                                  "them with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
        try:
            arrays = {k: archive[k] for k in keys}
        except (OSError, EOFError, ValueError, zlib.error) as err:  # a damaged member, or a pickled one
            raise DataFormatError(f"{path} cannot be read as an .npz file of plain arrays ({err})") from None
    return load_from_arrays(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                            channels_last=channels_last, dtype=dtype)


#: The loaders by data set name.
#: The loader of each data set by name; each returns ``(X_train, y_train), (X_test, y_test)``.
LOADERS: dict[str, Callable[..., tuple[Split, Split]]] = {
    "digits": load_digits, "mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in an IDX file (MNIST's format), in native byte order: gzip-compressed when the
    name ends with ``.gz``, plain otherwise.

    The header is two zero bytes, a type code, the number of dimensions and each dimension as a
    big-endian int32; the values follow, big-endian. Raises :class:`DataFormatError` naming the file for
    anything else (not gzip, truncated, a wrong header, trailing bytes).

    Args:
        path: the IDX file, ``.gz`` or plain.

    Example::

        images = read_idx("train-images-idx3-ubyte.gz")   # uint8 (60000, 28, 28)
    """
    try:
        with (gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")) as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        kind = "gzip file" if str(path).endswith(".gz") else "file"
        raise DataFormatError(f"{path} is not a valid {kind} ({err})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataFormatError(f"{path} decompresses to more than {MAX_IDX_BYTES:,} bytes: "
                              "not an IDX file of these data sets")
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataFormatError(f"{path} is not an IDX file: its header is {raw[:4].hex() or 'empty'}, expected 0000 "
                         f"followed by a type code in {[hex(t) for t in _IDX_TYPES]} and a dimension count")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: the IDX header promises {ndim} dimensions, "
                              f"but the file ends after {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    # Python integers: NumPy's int64 product wraps (65536**4 is 0, (2**32 - 1)**2 negative).
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataFormatError(f"{path}: an IDX array of shape {shape} and type {dtype} takes {expected:,} bytes, "
                         f"the file has {len(raw):,}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_cifar10(archive: str | os.PathLike, names: Sequence[str]) -> list[Split]:
    """``(images uint8 (N, 3, 32, 32), labels (N,))`` of each binary batch ``names`` in CIFAR-10's
    ``cifar-10-binary.tar.gz``, read from the archive in one pass. Each record is a label byte and
    3,072 pixel bytes (red, green, blue planes, row-major). Raises :class:`DataFormatError` naming the archive
    and the member for a corrupt archive, a missing batch or a batch that is not whole records.

    Args:
        archive: the ``cifar-10-binary.tar.gz`` file.
        names: the batch files to read, e.g. ``["data_batch_1", "test_batch"]``.

    Example::

        (X1, y1), (X_test, y_test) = read_cifar10("cifar-10-binary.tar.gz", ["data_batch_1", "test_batch"])
    """
    wanted = {f"{_CIFAR_DIR}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None:
                    continue
                whole = 0 < member.size <= _CIFAR_BATCH * _CIFAR_RECORD and not member.size % _CIFAR_RECORD
                if not member.isfile() or not whole:
                    raise DataFormatError(f"{archive}: {member.name} has {member.size:,} bytes, expected a positive "
                                     f"multiple of {_CIFAR_RECORD:,} (one label and 32x32x3 pixels a record) "
                                     f"up to {_CIFAR_BATCH:,} records")
                data = tar.extractfile(member)
                assert data is not None  # a regular file, checked just above
                found[name] = data.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataFormatError(f"{archive} is not a valid .tar.gz archive ({err})") from None
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


def _load_idx_set(name: str, data_dir, base_url, download, path, verbose, dtype) -> tuple[Split, Split]:
    dtype = _float_dtype(dtype)
    files = _files(name, data_dir, base_url, download, path, verbose)
    paths = dict(zip((f.name for f in FILES[name]), files, strict=True))
    advice = _advice(download, path)
    splits = []
    for prefix in ("train", "t10k"):
        images_path, labels_path = paths[f"{prefix}-images-idx3-ubyte.gz"], paths[f"{prefix}-labels-idx1-ubyte.gz"]
        try:
            images, labels = read_idx(images_path), read_idx(labels_path)
        except DataFormatError as err:
            raise DataFormatError(f"{err}{advice}") from None
        if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != (28, 28) or not len(images):
            raise DataFormatError(f"{images_path}: expected uint8 images of shape (N, 28, 28) with N > 0, got "
                                  f"{images.dtype} of shape {images.shape}{advice}")
        if labels.shape != images.shape[:1] or labels.dtype != np.uint8:
            raise DataFormatError(f"{labels_path}: expected {len(images)} uint8 labels 0..9 to match {images_path}, "
                                  f"got {labels.dtype} of shape {labels.shape}{advice}")
        if labels.max() > 9:
            raise DataFormatError(f"{labels_path} holds label {labels.max()}, expected labels 0..9{advice}")
        splits.append(_scaled(images[:, None], labels.astype(np.int64), dtype))
    if path is not None and verbose:
        _say_trusted(name, Path(path), len(splits[0][1]), len(splits[1][1]), "28x28")
    return splits[0], splits[1]


def _advice(download: bool, path) -> str:
    """What to do about a malformed file, by where it came from."""
    if path is not None:
        return ""  # the user's own file: only they know where a good copy is
    if download:
        return "; delete it to download it again"
    return "; replace it with the published file (its SHA-256 digest is in minidl.datasets.FILES)"


def _say_trusted(name: str, directory: Path, n_train: int, n_test: int, shape: str) -> None:
    print(f"{name}: using your own files in {directory}: not compared with the published SHA-256 digests; "
          f"checked instead: the format, {n_train:,} training and {n_test:,} test images of {shape}, "
          "as many labels as images, labels 0..9", file=sys.stderr)


def _files(name: str, data_dir, base_url, download: bool, path, verbose: bool) -> list[Path]:
    """The data set's files: the user's own in ``path``, else the cache's (downloading what is missing)."""
    if base_url is None:
        mirrors = MIRRORS[name]
    else:
        mirrors = [base_url] if isinstance(base_url, str) else list(base_url)
        if not mirrors or not all(isinstance(m, str) for m in mirrors):
            raise TypeError(f"base_url must be a URL or a list of URLs, got {base_url!r}")
    if path is not None:
        if data_dir is not None or base_url is not None:
            raise ValueError(f"path={str(path)!r} reads your own files from that directory; data_dir and base_url "
                             "(where files are cached and downloaded from) do not apply: leave them out")
        return _own_files(name, Path(path))
    directory = data_home(data_dir) / name
    if not download:
        return _cached(name, directory, mirrors)
    return fetch(FILES[name], directory, mirrors, download=True, verbose=verbose)


def _own_files(name: str, directory: Path) -> list[Path]:
    """``directory``'s copy of each file of ``name``, compressed or not (``x.gz`` or ``x``)."""
    found, missing = [], []
    for remote in FILES[name]:
        plain = directory / remote.name.removesuffix(".gz")
        candidates = [directory / remote.name] + ([plain] if name != "cifar10" else [])
        have = [c for c in candidates if c.is_file()]
        if have:
            found.append(have[0])
        else:
            missing.append(" or ".join(str(c) for c in candidates))
    if missing:
        raise DownloadError(f"path={str(directory)!r}: your own copy of {name} lacks {'; '.join(missing)}; "
                            "put the files there under these names (they are read as they are, nothing is downloaded)")
    return found


def _cached(name: str, directory: Path, mirrors: Sequence[str]) -> list[Path]:
    """The cached files of ``name``, for ``download=False``: what is missing or not the published file is
    reported with what to do without the network."""
    paths, missing, foreign = [], [], []
    for remote in FILES[name]:
        path = directory / remote.name
        paths.append(path)
        size = f", {remote.size:,} bytes" if remote.size is not None else ""
        if not path.exists():
            missing.append(f"  {path} is missing (the published file: sha256 {remote.sha256}{size})")
        elif (digest := sha256_of(path)) != remote.sha256:
            foreign.append(f"  {path} has SHA-256 {digest}, not the published file's {remote.sha256}{size}")
    if missing or foreign:
        lines = [f"could not use {len(missing) + len(foreign)} data file(s) of {name}, and downloading is off "
                 "(--no-download, download=False):", *missing, *foreign,
                 f"Offline, copy the published files to these places (from another machine, or from any of "
                 f"{', '.join(mirrors)})."]
        if foreign:
            lines.append(f"If the files there are your own copy of {name}, use them as they are: --trust-local on "
                         f"the command line, load_{name.replace('-', '_')}(path={str(directory)!r}) in Python; "
                         "their format, sizes and labels are checked instead of the digests.")
        raise DownloadError("\n".join(lines))
    return paths


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


def _checked_split(x_name: str, X: Any, y_name: str, y: Any, channels_last: bool, dtype: np.dtype) -> Split:
    """``X`` and ``y`` of :func:`load_from_arrays` checked and converted; errors name the argument."""
    X, y = np.asarray(X), np.asarray(y)
    if X.dtype.kind not in "uif" or (X.dtype.kind in "ui" and X.dtype != np.uint8):
        raise TypeError(f"{x_name} must hold uint8 pixels (0..255) or floating values, got dtype {X.dtype}; "
                        f"scale other integers yourself, e.g. {x_name}.astype('float32') / {x_name}.max()")
    if X.ndim == 4 and channels_last:
        X = X.transpose(0, 3, 1, 2)
    elif X.ndim == 3:
        X = X[:, None]
    elif X.ndim != 4:
        raise ValueError(f"{x_name} has shape {X.shape}, expected images (N, H, W) or (N, C, H, W)"
                         f"{' (N, H, W, C with channels_last=True)' if X.ndim < 3 else ''}")
    if X.ndim == 4 and not channels_last and X.shape[-1] in (1, 3) and X.shape[1] not in (1, 3):
        raise ValueError(f"{x_name} has shape {X.shape}, which looks channels-last (N, H, W, C); minidl's images "
                         "are (N, C, H, W): pass channels_last=True")
    if not len(X):
        raise ValueError(f"{x_name} is empty (shape {X.shape})")
    if y.dtype.kind not in "ui" or y.shape != X.shape[:1]:
        raise ValueError(f"{y_name} must be {len(X)} integer labels to match {x_name}, got dtype {y.dtype} "
                         f"and shape {y.shape}")
    if y.min() < 0:
        raise ValueError(f"{y_name} holds label {y.min()}, expected labels 0 or more")
    if X.dtype == np.uint8:
        return _scaled(X, y.astype(np.int64), dtype)
    images = X.astype(dtype)
    if not np.isfinite(images).all():
        raise ValueError(f"{x_name} holds NaN or infinite values (in {dtype}); clean the data first")
    return images, y.astype(np.int64)


def load_tiny_shakespeare(data_dir: str | os.PathLike | None = None, download: bool = True, *,
                          base_url: str | Sequence[str] | None = None, path: str | os.PathLike | None = None,
                          verbose: bool = True, validation_fraction: float = 0.1) -> TextData:
    """Tiny Shakespeare, the 1,115,394-character corpus of Karpathy's char-rnn (65 distinct characters).

    Downloaded once to ``<data_dir>/tiny-shakespeare/input.txt`` from
    ``minidl.datasets.MIRRORS["tiny-shakespeare"]`` and checked against the SHA-256 digest and size
    that TensorFlow Datasets publishes for this file
    (``tensorflow_datasets/url_checksums/tiny_shakespeare.txt``, pinned in
    ``minidl.datasets.FILES``); an interrupted download resumes.

    Args:
        data_dir: cache directory; default ``$MINIDL_DATA`` or ``~/.cache/minidl``.
        download: ``False`` never touches the network: the file must be in the cache.
        base_url: a mirror (or list of mirrors) to download from instead.
        path: a directory holding your own copy of ``input.txt``: used as it is, never downloaded and
            not compared with the published digest; it must be UTF-8 text, and a line says so (``verbose``).
        verbose: show a progress bar while downloading.
        validation_fraction: the share of characters, at the end, held out for validation.

    Raises:
        minidl.download.DownloadError: the file is missing and cannot be downloaded, or its digest is wrong.
        minidl.DataFormatError: the file is not UTF-8 text.

    Example::

        tokenizer, train, validation = load_tiny_shakespeare()   # 1,003,855 / 111,539 characters
    """
    (file,) = _files("tiny-shakespeare", data_dir, base_url, download, path, verbose)
    raw = Path(file).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{file} is not UTF-8 text ({err})") from None
    if not text:
        raise DataFormatError(f"{file} is empty: there is no text to learn from")
    if path is not None and verbose:
        print(f"tiny-shakespeare: using your own {file}: not compared with the published SHA-256 digest; "
              f"checked instead: UTF-8 text, {len(text):,} characters", file=sys.stderr)
    return split_text(text, validation_fraction)
