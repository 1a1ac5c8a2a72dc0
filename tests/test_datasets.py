"""minidl.datasets and minidl.download against generated files served from 127.0.0.1 (never the internet)."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
from data_server import FileServer, cifar_archive, closed_port_url, idx_bytes, mnist_files, remote_files

from minidl import data, datasets, download
from minidl.download import ChecksumError, DownloadError, RemoteFile


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(download, "RETRY_DELAY", 0.0)
    monkeypatch.setattr(download, "TIMEOUT", 10.0)


@pytest.fixture
def mnist(monkeypatch):
    """Generated MNIST-shaped files, registered as the files of "mnist", served locally."""
    files, arrays = mnist_files()
    monkeypatch.setitem(datasets.FILES, "mnist", remote_files(files))
    with FileServer(files) as server:
        yield server, arrays


def test_load_mnist_downloads_parses_and_then_uses_the_cache(mnist, tmp_path):
    server, arrays = mnist
    (X_train, y_train), (X_test, y_test) = datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    for (X, y), key in (((X_train, y_train), "train"), ((X_test, y_test), "t10k")):
        images, labels = arrays[key]
        assert X.shape == (len(images), 1, 28, 28) and X.dtype == np.float32
        np.testing.assert_allclose(X[:, 0], images / np.float32(255), rtol=1e-6)
        assert y.dtype.kind == "i" and (y == labels).all()
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(f.name for f in datasets.FILES["mnist"])
    asked = len(server.requests)
    again = datasets.load_mnist(tmp_path, base_url=server.url, verbose=False, dtype="float64")
    assert len(server.requests) == asked  # served from the cache
    assert again[0][0].dtype == np.float64 and np.allclose(again[0][0], X_train)


def test_the_progress_bar_names_the_file(mnist, tmp_path, capsys):
    server, _ = mnist
    datasets.load_mnist(tmp_path, base_url=server.url, verbose=True)
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err
    datasets.load_mnist(tmp_path / "quiet", base_url=server.url, verbose=False)
    assert capsys.readouterr().err == ""


def test_data_dir_comes_from_the_environment(mnist, tmp_path, monkeypatch):
    server, _ = mnist
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "env"))
    datasets.load_mnist(base_url=server.url, verbose=False)
    assert (tmp_path / "env" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert download.data_home() == tmp_path / "env"
    monkeypatch.delenv("MINIDL_DATA")
    assert str(download.data_home()).endswith(".cache/minidl")


def test_checksum_failure_names_the_files_and_leaves_no_cache_entry(mnist, tmp_path):
    server, _ = mnist
    server.files["train-labels-idx1-ubyte.gz"] = idx_bytes(np.zeros(12, np.uint8))  # not the pinned file
    with pytest.raises(ChecksumError) as info:
        datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    message = str(info.value)
    expected = dict((f.name, f) for f in datasets.FILES["mnist"])["train-labels-idx1-ubyte.gz"]
    assert expected.sha256 in message and str(tmp_path / "mnist" / expected.name) in message
    assert "Download them yourself" in message and server.url in message
    assert not (tmp_path / "mnist" / expected.name).exists()
    assert not list((tmp_path / "mnist").glob(expected.name + ".*.part"))  # a wrong file is not resumed


def test_an_interrupted_download_resumes_with_a_range_request(mnist, tmp_path):
    server, arrays = mnist
    name = "train-images-idx3-ubyte.gz"
    size = len(server.files[name])
    server.drop[name] = size // 3
    (X_train, _), _ = datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    ranges = [r for path, r in server.requests if path == name]
    assert ranges == [None, f"bytes={size // 3}-"]
    np.testing.assert_allclose(X_train[:, 0] * 255, arrays["train"][0], atol=1e-4)


def test_a_partial_file_from_an_earlier_run_is_resumed(mnist, tmp_path):
    server, _ = mnist
    name = "t10k-images-idx3-ubyte.gz"
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / f"{name}.0123456789abcdef.part").write_bytes(server.files[name][:100])
    datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    assert [r for path, r in server.requests if path == name] == ["bytes=100-"]
    assert (folder / name).read_bytes() == server.files[name] and not list(folder.glob("*.part"))


def test_a_server_that_ignores_range_sends_the_file_again(mnist, tmp_path):
    server, _ = mnist
    name = "t10k-images-idx3-ubyte.gz"
    server.ignore_range = True
    server.drop[name] = 50
    datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    assert (tmp_path / "mnist" / name).read_bytes() == server.files[name]


def test_an_interruption_that_outlasts_the_retries_keeps_the_part_for_next_time(mnist, tmp_path, monkeypatch):
    server, _ = mnist
    monkeypatch.setattr(download, "RETRIES", 1)
    name = "train-images-idx3-ubyte.gz"
    server.drop[name] = 64
    with pytest.raises(DownloadError, match="gave up after 1 attempts") as info:
        datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    assert f"the 64 bytes received are kept in {tmp_path / 'mnist' / name}." in str(info.value)
    (part,) = (tmp_path / "mnist").glob(f"{name}.*.part")
    assert "the next attempt resumes them" in str(info.value) and str(part) in str(info.value)
    assert part.read_bytes() == server.files[name][:64] and not (tmp_path / "mnist" / name).exists()
    datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)  # the next run finishes it
    assert (tmp_path / "mnist" / name).read_bytes() == server.files[name]


def test_server_errors_are_retried_and_missing_files_fall_back_to_the_next_mirror(mnist, tmp_path):
    server, _ = mnist
    server.fail["train-labels-idx1-ubyte.gz"] = [503]
    datasets.load_mnist(tmp_path, base_url=[server.url + "nowhere/", server.url], verbose=False)
    paths = [path for path, _ in server.requests]
    assert paths.count("nowhere/train-images-idx3-ubyte.gz") == 1  # a 404 is not retried
    assert paths.count("train-labels-idx1-ubyte.gz") == 2  # a 503 is


def test_offline_the_error_lists_every_file_with_digest_and_place(mnist, tmp_path):
    url = closed_port_url()
    with pytest.raises(DownloadError) as info:
        datasets.load_mnist(tmp_path, base_url=url, verbose=False)
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    for remote in datasets.FILES["mnist"]:
        assert remote.sha256 in message and str(tmp_path / "mnist" / remote.name) in message
    assert message.count("no connection") == 1 and message.count("not tried: offline") == 3
    assert not any((tmp_path / "mnist").glob("*"))


def test_download_false_never_touches_the_network(mnist, tmp_path):
    server, _ = mnist
    with pytest.raises(DownloadError, match="download=False"):
        datasets.load_mnist(tmp_path, base_url=server.url, download=False)
    assert server.requests == []


def test_a_damaged_cache_entry_is_reported_not_overwritten(mnist, tmp_path):
    server, _ = mnist
    datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"hand-made")
    with pytest.raises(ChecksumError, match="delete it to download it again") as info:
        datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    assert hashlib.sha256(b"hand-made").hexdigest() in str(info.value)
    assert path.read_bytes() == b"hand-made"


def test_fashion_mnist_has_its_own_cache_folder(tmp_path, monkeypatch):
    files, arrays = mnist_files(n_train=3, n_test=2, seed=1)
    monkeypatch.setitem(datasets.FILES, "fashion-mnist", remote_files(files))
    with FileServer(files) as server:
        (X, y), (X_test, _) = datasets.load_fashion_mnist(tmp_path, base_url=server.url, verbose=False)
    assert X.shape == (3, 1, 28, 28) and X_test.shape == (2, 1, 28, 28) and (y == arrays["train"][1]).all()
    assert (tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_load_cifar10_reads_the_binary_batches(tmp_path, monkeypatch):
    archive, batches = cifar_archive(records_per_batch=3)
    monkeypatch.setitem(datasets.FILES, "cifar10", remote_files({"cifar-10-binary.tar.gz": archive}))
    with FileServer({"cifar-10-binary.tar.gz": archive}) as server:
        (X, y), (X_test, y_test) = datasets.load_cifar10(tmp_path, base_url=server.url, verbose=False)
    assert X.shape == (15, 3, 32, 32) and X_test.shape == (3, 3, 32, 32) and X.dtype == np.float32
    train_images = np.concatenate([batches[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    np.testing.assert_allclose(X * 255, train_images, atol=1e-4)  # the red plane first, row-major
    np.testing.assert_allclose(X_test * 255, batches["test_batch.bin"][0], atol=1e-4)
    assert (y_test == batches["test_batch.bin"][1]).all() and 0.0 <= X.min() and X.max() <= 1.0


@pytest.mark.parametrize("members, match", [
    ({"data_batch_3.bin": b"\0" * 3072}, "multiple of 3,073"),
    ({"test_batch.bin": bytes([12]) + b"\0" * 3072}, "label 12"),
])
def test_malformed_cifar_batches_are_value_errors(tmp_path, members, match):
    archive, _ = cifar_archive(records_per_batch=1, members=members)
    path = tmp_path / "cifar.tar.gz"
    path.write_bytes(archive)
    with pytest.raises(ValueError, match=match):
        datasets.read_cifar10(path, ["data_batch_3.bin", "test_batch.bin"])


def test_cifar_archive_without_a_batch_or_not_an_archive(tmp_path):
    archive, _ = cifar_archive(records_per_batch=1)
    path = tmp_path / "cifar.tar.gz"
    path.write_bytes(archive)
    with pytest.raises(ValueError, match="lacks cifar-10-batches-bin/data_batch_9.bin"):
        datasets.read_cifar10(path, ["data_batch_9.bin"])
    path.write_bytes(archive[: len(archive) // 2])
    with pytest.raises(ValueError, match="not a valid .tar.gz"):
        datasets.read_cifar10(path, ["data_batch_1.bin"])


def test_read_idx_round_trips_every_idx_type(tmp_path):
    path = tmp_path / "a.gz"
    for code, dtype in ((0x08, ">u1"), (0x0B, ">i2"), (0x0D, ">f4")):
        array = np.arange(24, dtype=dtype).reshape(2, 3, 4)
        path.write_bytes(gzip.compress(struct.pack(">BBBB3I", 0, 0, code, 3, 2, 3, 4) + array.tobytes()))
        out = datasets.read_idx(path)
        assert out.shape == (2, 3, 4) and out.dtype.isnative and (out == np.arange(24).reshape(2, 3, 4)).all()


@pytest.mark.parametrize("payload, match", [
    (struct.pack(">BBBB", 1, 0, 8, 1) + struct.pack(">I", 1) + b"\0", "is not an IDX file"),
    (struct.pack(">BBBB", 0, 0, 0x42, 1) + struct.pack(">I", 1) + b"\0", "is not an IDX file"),
    (struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">I", 1), "promises 3 dimensions"),
    (struct.pack(">BBBBII", 0, 0, 8, 2, 2, 2) + b"\0" * 3, "takes 16 bytes, the file has 15"),
    (struct.pack(">BBBBII", 0, 0, 8, 2, 2, 2) + b"\0" * 5, "takes 16 bytes, the file has 17"),
])
def test_malformed_idx_files_are_value_errors(tmp_path, payload, match):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(ValueError, match=match) as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


def test_a_corrupt_gzip_with_a_matching_digest_is_a_value_error(tmp_path, monkeypatch):
    files, _ = mnist_files(n_train=2, n_test=1)
    good = files["train-images-idx3-ubyte.gz"]
    files["train-images-idx3-ubyte.gz"] = good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:]
    monkeypatch.setitem(datasets.FILES, "mnist", remote_files(files))  # pinned to the corrupt bytes
    with FileServer(files) as server, pytest.raises(ValueError, match="is not a valid gzip file"):
        datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)
    (tmp_path / "x.gz").write_bytes(b"plain text")
    with pytest.raises(ValueError, match="is not a valid gzip file"):
        datasets.read_idx(tmp_path / "x.gz")


def test_images_and_labels_that_do_not_match_are_value_errors(tmp_path, monkeypatch):
    files, _ = mnist_files(n_train=4, n_test=2)
    files["train-labels-idx1-ubyte.gz"] = idx_bytes(np.zeros(3, np.uint8))
    monkeypatch.setitem(datasets.FILES, "mnist", remote_files(files))
    with FileServer(files) as server, pytest.raises(ValueError, match="expected 4 uint8 labels"):
        datasets.load_mnist(tmp_path, base_url=server.url, verbose=False)


def test_bad_arguments_fail_before_any_download(tmp_path):
    with pytest.raises(TypeError, match="dtype must be a floating type"):
        datasets.load_mnist(tmp_path, dtype="int32")
    with pytest.raises(TypeError, match="base_url must be a URL"):
        datasets.load_cifar10(tmp_path, base_url=[])
    assert not any(tmp_path.iterdir())


def test_load_digits_is_the_blog_split_in_keras_shape():
    (X_train, y_train), (X_test, y_test) = datasets.load_digits()
    ref = data.load_digits()
    assert X_train.shape == (1437, 1, 8, 8) and X_test.shape == (360, 1, 8, 8)
    assert (X_train == ref[0]).all() and (y_test == ref[3]).all() and (y_train == ref[2]).all()


def test_pinned_digests_are_sha256_hex_and_mirrors_are_https_or_http():
    for name, files in datasets.FILES.items():
        assert name in datasets.MIRRORS
        for remote in files:
            assert isinstance(remote, RemoteFile) and len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0
            assert remote.size > 0

