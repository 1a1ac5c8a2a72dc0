"""Issue 21: cached IDX files with hostile headers (items 8, 9) and users' own data (new user 1):
``load_mnist(path=...)`` / ``--trust-local``, what ``download=False`` / ``--no-download`` says, and
``load_from_arrays`` / ``load_npz``. Files are generated (tests/data_server.py); nothing is downloaded."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from data_server import idx_bytes, mnist_files, remote_files

from minidl import datasets
from minidl.cli import main
from minidl.datasets import DataFormatError
from minidl.download import DownloadError

#: Headers whose dimensions overflow int64: 65536**4 wraps to 0, (2**32 - 1)**2 to a negative size.
OVERFLOWING = [(65536, 65536, 65536, 65536), (2**32 - 1, 2**32 - 1)]


def idx_header(dims: tuple[int, ...]) -> bytes:
    return gzip.compress(struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims))


def cache(tmp_path, files: dict[str, bytes], name: str = "mnist"):
    (tmp_path / name).mkdir(exist_ok=True)
    for file, payload in files.items():
        (tmp_path / name / file).write_bytes(payload)


@pytest.mark.parametrize("dims", OVERFLOWING)
def test_idx_dimensions_that_overflow_int64_are_a_format_error_naming_the_file(tmp_path, dims):
    path = tmp_path / "huge.gz"
    path.write_bytes(idx_header(dims))
    with pytest.raises(DataFormatError) as info:
        datasets.read_idx(path)
    message = str(info.value)
    size = 4 + 4 * len(dims) + int(np.prod(dims, dtype=object))  # in Python integers
    assert str(path) in message and f"takes {size:,} bytes" in message
    assert "-" not in message.split("takes")[1]


@pytest.mark.parametrize("bad", ["overflow", "empty"])
def test_train_mnist_over_a_cached_file_with_overflowing_or_zero_images_is_one_error_line(tmp_path, monkeypatch,
                                                                                         capsys, bad):
    files, _ = mnist_files(n_train=4, n_test=2)
    if bad == "overflow":
        files["train-images-idx3-ubyte.gz"] = idx_header(OVERFLOWING[0])  # wraps to 0 in int64: numpy could not reshape
    else:
        files["train-images-idx3-ubyte.gz"] = idx_bytes(np.zeros((0, 28, 28), np.uint8))
        files["train-labels-idx1-ubyte.gz"] = idx_bytes(np.zeros(0, np.uint8))
    monkeypatch.setitem(datasets.FILES, "mnist", remote_files(files))  # pinned as they are: the digests match
    cache(tmp_path, files)
    assert main(["train", "mnist", "--data-dir", str(tmp_path), "--no-download", "--verbose", "0"]) == 1
    captured = capsys.readouterr()
    bad_file = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    assert captured.err.startswith(f"minidl: error: {bad_file}") and captured.err.count("\n") == 1, captured.err
    assert ("(N, 28, 28) with N > 0" if bad == "empty" else "takes") in captured.err
    assert captured.out == ""


# New user 1: a user's own copy of MNIST.

def own_copy(tmp_path, compressed: bool = True):
    """Four MNIST-shaped IDX files that are not the published ones (their digests are not pinned)."""
    files, arrays = mnist_files(n_train=6, n_test=3, seed=5)
    directory = tmp_path / "mine"
    directory.mkdir()
    for name, payload in files.items():
        if compressed:
            (directory / name).write_bytes(payload)
        else:
            (directory / name.removesuffix(".gz")).write_bytes(gzip.decompress(payload))
    return directory, files, arrays


@pytest.mark.parametrize("compressed", [True, False])
def test_load_mnist_path_reads_your_own_files_checks_them_and_says_so(tmp_path, capsys, compressed):
    directory, _, arrays = own_copy(tmp_path, compressed)
    (X_train, y_train), (X_test, y_test) = datasets.load_mnist(path=directory)
    assert X_train.shape == (6, 1, 28, 28) and X_test.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(X_train[:, 0], arrays["train"][0] / np.float32(255), rtol=1e-6)
    assert (y_test == arrays["t10k"][1]).all()
    err = capsys.readouterr().err
    assert f"using your own files in {directory}" in err and "not compared with the published SHA-256" in err
    assert "6 training and 3 test images of 28x28" in err


@pytest.mark.parametrize("change, match", [
    (("train-labels-idx1-ubyte.gz", np.full(6, 12, np.uint8)), "holds label 12, expected labels 0..9"),
    (("t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 27), np.uint8)), r"expected uint8 images of shape \(N, 28, 28\)"),
    (("t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8)), "expected 3 uint8 labels"),
])
def test_your_own_files_are_checked_for_format_sizes_and_label_range(tmp_path, change, match):
    directory, _, _ = own_copy(tmp_path)
    name, array = change
    (directory / name).write_bytes(idx_bytes(array))
    with pytest.raises(DataFormatError, match=match) as info:
        datasets.load_mnist(path=directory, verbose=False)
    assert str(directory / name) in str(info.value) and "download" not in str(info.value)


def test_your_own_copy_missing_a_file_names_both_accepted_names(tmp_path):
    directory, _, _ = own_copy(tmp_path)
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DownloadError, match="lacks .*t10k-labels-idx1-ubyte.gz or .*t10k-labels-idx1-ubyte;"):
        datasets.load_mnist(path=directory, verbose=False)
    with pytest.raises(ValueError, match="data_dir and base_url .* do not apply"):
        datasets.load_mnist(tmp_path, path=directory)


def test_no_download_over_your_own_copy_says_what_to_do_offline_then_trust_local_trains(tmp_path, capsys):
    directory, files, _ = own_copy(tmp_path)
    directory.rename(tmp_path / "mnist")  # the user's copy where the cache would be; its digests are not the pinned
    argv = ["train", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--verbose", "0"]
    assert main([*argv, "--no-download"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minidl: error: could not use 4 data file(s) of mnist, and downloading is off "
                          "(--no-download"), err
    assert "delete it" not in err and "Offline, copy the published files to these places" in err
    assert f"--trust-local on the command line, load_mnist(path='{tmp_path / 'mnist'}') in Python" in err
    assert main([*argv, "--trust-local"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("train: 6 images, 1 epochs") and "on 3 images" in captured.out
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(files)  # nothing written, none replaced


def test_no_download_with_nothing_cached_says_where_to_copy_the_files(tmp_path, capsys):
    assert main(["train", "mnist", "--data-dir", str(tmp_path), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minidl: error: could not use 4 data file(s) of mnist") and "delete" not in err
    assert f"{tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz'} is missing (the published file: sha256 440f" in err
    assert "from another machine, or from any of https://storage.googleapis.com" in err
    assert "--trust-local" not in err  # nothing there to trust


def test_a_malformed_cached_file_under_no_download_is_not_told_to_download_again(tmp_path, monkeypatch, capsys):
    files, _ = mnist_files(n_train=4, n_test=2)
    files["t10k-labels-idx1-ubyte.gz"] = b"not gzip"
    monkeypatch.setitem(datasets.FILES, "mnist", remote_files(files))
    cache(tmp_path, files)
    with pytest.raises(DataFormatError, match="not a valid gzip file .*; replace it with the published file"):
        datasets.load_mnist(tmp_path, download=False)


# New user 1: users' own arrays and .npz files.

def test_load_npz_reads_keras_mnist_npz_layout(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (5, 28, 28), np.uint8), rng.integers(0, 256, (2, 28, 28), np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=np.arange(5), x_test=x_test, y_test=np.array([1, 2]))
    (X_train, y_train), (X_test, y_test) = datasets.load_npz(tmp_path / "mnist.npz")
    assert X_train.shape == (5, 1, 28, 28) and X_train.dtype == np.float32 and y_test.tolist() == [1, 2]
    np.testing.assert_allclose(X_test[:, 0], x_test / np.float32(255), rtol=1e-6)


def test_load_npz_refuses_missing_arrays_pickles_and_single_arrays(tmp_path):
    np.savez(tmp_path / "a.npz", x_train=np.zeros((2, 4, 4)), y_train=[0, 1])
    with pytest.raises(DataFormatError, match=r"a.npz lacks the array\(s\) x_test, y_test: expected x_train"):
        datasets.load_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "p.npz", x_train=np.array([object()]), y_train=[0], x_test=[0], y_test=[0])
    with pytest.raises(DataFormatError, match="p.npz cannot be read as an .npz file of plain arrays"):
        datasets.load_npz(tmp_path / "p.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match="one.npy holds one array"):
        datasets.load_npz(tmp_path / "one.npy")


def test_load_from_arrays_shapes_scales_and_checks():
    images = np.zeros((4, 8, 8, 3), np.uint8) + 255
    (X, y), (X_test, _) = datasets.load_from_arrays(images, [0, 1, 2, 3], images[:2], [0, 0], channels_last=True)
    assert X.shape == (4, 3, 8, 8) and X.max() == 1.0 and X_test.shape == (2, 3, 8, 8) and y.dtype == np.int64
    with pytest.raises(ValueError, match=r"X_train has shape \(4, 8, 8, 3\), which looks channels-last"):
        datasets.load_from_arrays(images, [0, 1, 2, 3], images, [0, 1, 2, 3])
    with pytest.raises(TypeError, match="X_test must hold uint8 pixels .* got dtype int64"):
        datasets.load_from_arrays(images[..., 0], [0] * 4, np.zeros((1, 8, 8), np.int64), [0])
    with pytest.raises(ValueError, match="y_train holds label -1"):
        datasets.load_from_arrays(images[..., 0], [0, -1, 0, 0], images[:1, ..., 0], [0])
    with pytest.raises(ValueError, match="y_test must be 1 integer labels to match X_test"):
        datasets.load_from_arrays(images[..., 0], [0] * 4, images[:1, ..., 0], [0.5])
    with pytest.raises(ValueError, match=r"X_train's images are \(1, 8, 8\), X_test's \(1, 7, 7\)"):
        datasets.load_from_arrays(images[..., 0], [0] * 4, np.zeros((1, 7, 7), np.float32), [0])
