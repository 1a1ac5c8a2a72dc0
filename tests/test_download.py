"""minidl.download against hostile and broken servers and caches, all on 127.0.0.1 (never the internet).

Each test here is a case of issue 21 ("Downloads" 1-7) and failed on the code before it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from data_server import FileServer, SilentServer, mnist_files, remote_files, unconnectable_url

from minidl import datasets, download
from minidl.download import ChecksumError, DownloadError, RemoteFile

ROOT = Path(__file__).resolve().parent.parent
NAME = "train-labels-idx1-ubyte.gz"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(download, "RETRY_DELAY", 0.0)
    monkeypatch.setattr(download, "TIMEOUT", 10.0)


@pytest.fixture
def mnist(monkeypatch):
    """Generated MNIST-shaped files registered as "mnist"'s, served at ``/`` and again at ``/bad/``."""
    files, _ = mnist_files()
    monkeypatch.setitem(datasets.FILES, "mnist", remote_files(files))
    with FileServer({**files, **{f"bad/{name}": payload for name, payload in files.items()}}) as server:
        yield server


@pytest.fixture
def bytes_read(monkeypatch):
    """``{url: bytes}`` the client read from each response body."""
    counts: dict[str, int] = {}
    original = http.client.HTTPResponse.read

    def counting_read(self, amt=None):
        block = original(self, amt)
        url = getattr(self, "url", None)
        counts[url] = counts.get(url, 0) + len(block)
        return block

    monkeypatch.setattr(http.client.HTTPResponse, "read", counting_read)
    return counts


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.part")) if folder.exists() else []


def test_a_body_without_length_stops_at_the_pinned_size(mnist, tmp_path, bytes_read):
    """Issue 21, downloads 1: an endless body is cut one byte past the published size."""
    size = len(mnist.files[NAME])
    mnist.content_length[f"bad/{NAME}"] = None
    mnist.padding[f"bad/{NAME}"] = 1 << 20
    with pytest.raises(ChecksumError, match=f"sent more than the published {size:,} bytes") as info:
        datasets.load_mnist(tmp_path, base_url=mnist.url + "bad/", verbose=False)
    assert bytes_read[mnist.url + f"bad/{NAME}"] <= size + 1
    assert "stopped there" in str(info.value) and not parts(tmp_path / "mnist")
    datasets.load_mnist(tmp_path, base_url=[mnist.url + "bad/", mnist.url], verbose=False)
    assert (tmp_path / "mnist" / NAME).read_bytes() == mnist.files[NAME]


def test_a_larger_declared_length_is_refused_before_reading(mnist, tmp_path, bytes_read):
    """Issue 21, downloads 1: a Content-Length above the published size is refused at once."""
    mnist.content_length[f"bad/{NAME}"] = str(48 << 20)
    with pytest.raises(ChecksumError, match=r"announces 50,331,648 bytes .*published file has") as info:
        datasets.load_mnist(tmp_path, base_url=mnist.url + "bad/", verbose=False)
    assert "refused before reading it" in str(info.value)
    assert bytes_read.get(mnist.url + f"bad/{NAME}", 0) == 0
    assert [path for path, _ in mnist.requests].count(f"bad/{NAME}") == 1  # not retried
    datasets.load_mnist(tmp_path, base_url=[mnist.url + "bad/", mnist.url], verbose=False)
    assert (tmp_path / "mnist" / NAME).read_bytes() == mnist.files[NAME]


@pytest.mark.parametrize("header", ["abc", "{n}, {n}", "-5", "1e3"])
def test_a_malformed_content_length_goes_to_the_next_mirror(mnist, tmp_path, header):
    """Issue 21, downloads 2: a malformed Content-Length is a clear error, and the next mirror is asked."""
    value = header.format(n=len(mnist.files[NAME]))
    mnist.content_length[f"bad/{NAME}"] = value
    with pytest.raises(DownloadError, match="malformed Content-Length header") as info:
        datasets.load_mnist(tmp_path, base_url=mnist.url + "bad/", verbose=False)
    assert repr(value) in str(info.value) and mnist.url + f"bad/{NAME}" in str(info.value)
    datasets.load_mnist(tmp_path, base_url=[mnist.url + "bad/", mnist.url], verbose=False)
    assert (tmp_path / "mnist" / NAME).read_bytes() == mnist.files[NAME]
    assert [path for path, _ in mnist.requests].count(NAME) == 1


def test_server_errors_make_no_claim_of_a_kept_partial_file(mnist, tmp_path):
    """Issue 21, downloads 3: after 5xx answers and no byte, no partial file is claimed (nor left)."""
    mnist.fail[NAME] = [503] * download.RETRIES
    with pytest.raises(DownloadError, match=r"gave up after 3 attempts \(HTTP 503") as info:
        datasets.load_mnist(tmp_path, base_url=mnist.url, verbose=False)
    assert "kept" not in str(info.value) and "resume" not in str(info.value)
    assert not parts(tmp_path / "mnist")


@pytest.mark.parametrize("kind", ["connect never completes", "accepts, never answers"])
def test_a_mirror_that_cannot_be_connected_to_stops_the_loader_at_once(mnist, tmp_path, monkeypatch, kind):
    """Issue 21, downloads 4: one attempt, then every other file is reported without trying it."""
    monkeypatch.setattr(download, "TIMEOUT", 1.0)  # the working mirror of the second call must answer within it
    with (unconnectable_url() if kind.startswith("connect") else SilentServer()) as black_hole:
        url = black_hole if isinstance(black_hole, str) else black_hole.url
        with pytest.raises(DownloadError) as info:
            datasets.load_mnist(tmp_path, base_url=url, verbose=False)
        message = str(info.value)
        assert message.count("not tried: offline") == 3
        assert message.count("no connection within 1 s" if kind.startswith("connect") else "no answer within") == 1
        assert isinstance(black_hole, str) or black_hole.accepted == 1
        # Beside a working mirror, the black hole is asked once, for the first file only.
        datasets.load_mnist(tmp_path, base_url=[url, mnist.url], verbose=False)
        assert isinstance(black_hole, str) or black_hole.accepted == 2
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(mnist_files()[0])


def test_two_downloads_of_one_file_into_one_cache_each_use_their_own_part(mnist, tmp_path):
    """Issue 21, downloads 5: concurrent downloads never share a temporary file; the result is verified."""
    name = "train-images-idx3-ubyte.gz"
    remote = dict((f.name, f) for f in datasets.FILES["mnist"])[name]
    mnist.barrier[name] = threading.Barrier(2, timeout=5)  # both transfers are half done at the same time
    errors = []

    def run():
        try:
            download.fetch([remote], tmp_path, [mnist.url], verbose=False)
        except Exception as err:  # noqa: BLE001 (reported by the assertion below)
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert [r for path, r in mnist.requests if path == name] == [None, None]  # neither resumed the other's file
    assert (tmp_path / name).read_bytes() == mnist.files[name] and not parts(tmp_path)


def test_a_part_held_by_another_download_is_not_taken_over(mnist, tmp_path):
    fcntl = pytest.importorskip("fcntl")  # the platforms that lock .part files (not Windows)
    remote = dict((f.name, f) for f in datasets.FILES["mnist"])[NAME]
    held = tmp_path / f"{NAME}.00000000000000ff.part"
    held.write_bytes(mnist.files[NAME][:10])
    with open(held, "rb+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        download.fetch([remote], tmp_path, [mnist.url], verbose=False)
    assert [r for path, r in mnist.requests if path == NAME] == [None]
    assert held.read_bytes() == mnist.files[NAME][:10] and (tmp_path / NAME).read_bytes() == mnist.files[NAME]


CHILD = """
import json, resource, signal, sys
from minidl import datasets
from minidl.download import DownloadError, RemoteFile

spec = json.loads(sys.argv[1])
datasets.FILES["mnist"] = tuple(RemoteFile(*f) for f in spec["files"])
if spec["max_file_size"]:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (spec["max_file_size"], spec["max_file_size"]))
try:
    datasets.load_mnist(spec["dir"], base_url=spec["url"], verbose=False)
except DownloadError as err:
    print(err)
"""


def run_unprivileged(spec: dict) -> str:
    """Run CHILD in a process to which file permissions apply (as root: without CAP_DAC_OVERRIDE)."""
    prefix = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without util-linux's setpriv: permissions cannot be enforced")
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*prefix, sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and resource limits")
@pytest.mark.parametrize("case", ["read-only data set folder", "file size limit"])
def test_a_local_write_error_fails_at_once_naming_the_directory(mnist, tmp_path, case):
    """Issue 21, downloads 6: an error writing the cache is not retried, and no .part is claimed."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    spec = {"files": [list(map(str, (f.name, f.sha256))) + [f.size] for f in datasets.FILES["mnist"]],
            "dir": str(tmp_path), "url": mnist.url, "max_file_size": 0}
    if case == "read-only data set folder":
        folder.chmod(0o555)
        expected, requests = "Permission denied", 0
    else:
        spec["max_file_size"] = 1000  # the first file has 9 kB: its transfer fails part way
        expected, requests = "File too large", 1
    try:
        message = run_unprivileged(spec)
    finally:
        folder.chmod(0o755)
    assert message.startswith(f"cannot write to the data directory {folder} (") and expected in message, message
    assert "nothing was retried" in message and "kept" not in message and message.count("\n") == 1
    assert len(mnist.requests) == requests
    assert not list(folder.iterdir())


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="symbolic links")
def test_a_link_at_a_part_name_is_never_written_through_nor_moved_into_place(mnist, tmp_path):
    """Issue 21, downloads 7: links placed at old and new .part names are not followed."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"outside the cache")
    outside = tmp_path / "created-outside"
    os.symlink(victim, folder / f"{NAME}.part")  # the name the old code wrote to
    os.symlink(victim, folder / f"{NAME}.0123456789abcdef.part")  # a name of the form now used
    os.symlink(outside, folder / "t10k-labels-idx1-ubyte.gz.part")  # a dangling link
    os.symlink(outside, folder / "t10k-labels-idx1-ubyte.gz.fedcba9876543210.part")
    datasets.load_mnist(tmp_path, base_url=mnist.url, verbose=False)
    assert victim.read_bytes() == b"outside the cache" and not outside.exists()
    for remote in datasets.FILES["mnist"]:
        path = folder / remote.name
        assert not path.is_symlink() and path.is_file() and path.read_bytes() == mnist.files[remote.name]
    assert all(p.is_symlink() for p in parts(folder))  # only the links placed above remain


def test_a_part_that_is_a_hard_link_is_not_taken_over(mnist, tmp_path):
    """A .part with a second name (a hard link to a file elsewhere) is never appended to."""
    remote = dict((f.name, f) for f in datasets.FILES["mnist"])[NAME]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(mnist.files[NAME][:10])
    os.link(elsewhere, tmp_path / f"{NAME}.0123456789abcdef.part")
    download.fetch([remote], tmp_path, [mnist.url], verbose=False)
    assert elsewhere.read_bytes() == mnist.files[NAME][:10] and (tmp_path / NAME).read_bytes() == mnist.files[NAME]


def test_other_parts_of_earlier_runs_are_removed_once_the_file_is_cached(mnist, tmp_path):
    pytest.importorskip("fcntl")  # the platforms that take .part files over (not Windows)
    remote = dict((f.name, f) for f in datasets.FILES["mnist"])[NAME]
    for i, length in enumerate((10, 20, 5)):
        (tmp_path / f"{NAME}.{i:016x}.part").write_bytes(mnist.files[NAME][:length])
    download.fetch([remote], tmp_path, [mnist.url], verbose=False)
    assert [r for path, r in mnist.requests if path == NAME] == ["bytes=20-"]  # the largest was resumed
    assert (tmp_path / NAME).read_bytes() == mnist.files[NAME] and not parts(tmp_path)


def test_an_oversized_part_from_an_earlier_run_is_restarted(mnist, tmp_path):
    remote = RemoteFile(NAME, hashlib.sha256(mnist.files[NAME]).hexdigest(), len(mnist.files[NAME]))
    (tmp_path / f"{NAME}.0123456789abcdef.part").write_bytes(b"x" * (remote.size + 5))
    download.fetch([remote], tmp_path, [mnist.url], verbose=False)
    assert [r for path, r in mnist.requests if path == NAME] == [None]
    assert (tmp_path / NAME).read_bytes() == mnist.files[NAME] and not parts(tmp_path)


#: The downloads section of docs/robustness.md (tests/test_robustness.py's render_doc puts it there).
GUIDE = """
## Downloads: hostile servers, shared and damaged caches

Each row is a test in `tests/test_download.py`, run against HTTP servers on 127.0.0.1
(`tests/data_server.py`); each failed on the code before it (issue 21). How a download works: each
one writes into a temporary file of its own, `<file>.<16 random hex digits>.part`, created with
`O_CREAT | O_EXCL | O_NOFOLLOW` (a new file, never an existing one, never through a link) and held
under an exclusive `flock` while in use; its SHA-256 digest is computed from that open file, and it
is renamed onto the final name only if the digest matches and the name still refers to that very
file. **Resuming stays**: when a transfer breaks off, the bytes received stay in the `.part` and the
next attempt (a retry, or a later run) takes over a `.part` of that file that no process holds
(the largest, if several; the others are deleted once the file is cached) and asks only for the rest (HTTP `Range`). It takes over only names of
that exact form, opened with `O_NOFOLLOW`, that are regular files with a single link, locked by it
and still under their name; a `.part` held by a running download is left alone. (On Windows,
which has no `flock`, a `.part` of an earlier run is not taken over: the download starts afresh.)

| Case | What minidl does | Test |
|---|---|---|
| A body without `Content-Length` that goes on past the pinned size (an endless server) | reads at most one byte past the published size, then raises `ChecksumError` ("the server sent more than the published N bytes: not the published file, stopped there"), drops those bytes and asks the next mirror | `test_a_body_without_length_stops_at_the_pinned_size` |
| A `Content-Length` other than the published size (e.g. 48 MiB for a 10 kB file) | refused before a byte of the body is read (`ChecksumError`: "the server announces ... bytes ..., the published file has ...: not the published file, refused before reading it"), not retried; the next mirror is asked | `test_a_larger_declared_length_is_refused_before_reading` |
| A malformed `Content-Length` (`abc`, `10000, 10000` as proxies repeat it, `-5`, `1e3`) | `DownloadError` "malformed Content-Length header ...: expected one decimal number of bytes" for that mirror, and the next mirror is asked | `test_a_malformed_content_length_goes_to_the_next_mirror` |
| HTTP 5xx on every attempt, no byte received | "gave up after 3 attempts (HTTP 503 ...)" and nothing more: no `.part` is left or claimed. A `.part` is said to be kept only when it holds bytes, with their number and its path | `test_server_errors_make_no_claim_of_a_kept_partial_file` |
| A mirror whose connections never complete (packets dropped), or that accepts and never answers | one attempt of `TIMEOUT` seconds ("no connection within 30 s" / "connected, but no answer within 30 s"), then that mirror is not asked again in this call; with no other mirror the loader stops at once and lists every file ("not tried: offline"), as docs/data.md promises | `test_a_mirror_that_cannot_be_connected_to_stops_the_loader_at_once` |
| Two processes (here threads) downloading the same file into one cache | each writes its own `.part`; both succeed, and the final name only ever holds a verified file | `test_two_downloads_of_one_file_into_one_cache_each_use_their_own_part`, `test_a_part_held_by_another_download_is_not_taken_over` |
| A cache directory that cannot be written (read-only data-set folder; a write failing part way, e.g. a file size limit or a full disk) | stops at once, before or without any retry: `DownloadError` "cannot write to the data directory DIR (...): make it writable or choose another (data_dir= or $MINIDL_DATA); nothing was retried"; a half-written `.part` is deleted | `test_a_local_write_error_fails_at_once_naming_the_directory` |
| A symbolic link placed at `<file>.part` (the old name) or at a name of the new form, pointing outside the cache or nowhere | never written through (the new `.part` is created with `O_EXCL \\| O_NOFOLLOW`; a link of the new form is skipped), nothing is created outside the cache, and every cache entry is a regular file; a link is never moved into place | `test_a_link_at_a_part_name_is_never_written_through_nor_moved_into_place`, `test_a_part_that_is_a_hard_link_is_not_taken_over` |
| A `.part` longer than the published file | cannot be a prefix of it: started afresh | `test_an_oversized_part_from_an_earlier_run_is_restarted` |
| Several `.part` files of one file left by earlier runs | the largest is resumed; once the file is cached, the others that no process holds are deleted | `test_other_parts_of_earlier_runs_are_removed_once_the_file_is_cached` |
"""
