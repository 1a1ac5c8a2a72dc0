"""Files fetched once into a cache directory: mirrors, resumable retries, SHA-256 checks, atomic writes.

A file is downloaded into ``<name>.part`` beside its final place and renamed onto it only after its
SHA-256 digest matches the pinned one, so a cache entry is always a whole, verified file. An
interrupted transfer keeps its ``.part``; the next attempt (a retry now, or the next run) asks the
server for the rest with an HTTP ``Range`` header instead of starting over.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

__all__ = ["RemoteFile", "DownloadError", "ChecksumError", "data_home", "fetch", "sha256_of"]

#: Where data sets are cached unless ``data_dir=`` or the ``MINIDL_DATA`` environment variable says otherwise.
DEFAULT_DATA_DIR = "~/.cache/minidl"
DATA_ENV = "MINIDL_DATA"
#: Attempts per mirror for transfers that break off; the k-th retry waits ``RETRY_DELAY * 2**k`` seconds.
RETRIES = 3
RETRY_DELAY = 1.0
#: Seconds without a byte before a connection counts as broken.
TIMEOUT = 30.0
CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """A file as published: its name on the mirrors, its SHA-256 digest and its size in bytes."""

    name: str
    sha256: str
    size: int | None = None


class DownloadError(OSError):
    """A data file is neither in the cache nor downloadable; the message says where to put it by hand."""


class ChecksumError(DownloadError):
    """A downloaded or cached file does not have its pinned SHA-256 digest."""


class _Offline(Exception):
    """No connection could be made at all (refused, no route, no name resolution): retrying will not help."""


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``data_dir``, else ``$MINIDL_DATA``, else ``~/.cache/minidl``."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    files: Sequence[RemoteFile],
    directory: str | os.PathLike,
    mirrors: Sequence[str],
    download: bool = True,
    verbose: bool = True,
) -> list[Path]:
    """Paths of ``files`` in ``directory``, downloading the missing ones from the first mirror that works.

    A cached file is checked against its digest on every call (a damaged cache is reported, never
    used). ``download=False`` never touches the network. Raises :class:`DownloadError` naming every
    file that could not be had, its digest and size, the URLs tried and the path to place it at.
    """
    directory = Path(directory)
    paths, failures, offline, wrong_digest = [], {}, False, False
    for remote in files:
        path = directory / remote.name
        paths.append(path)
        if path.exists():
            digest = sha256_of(path)
            if digest != remote.sha256:
                raise ChecksumError(
                    f"{path} has SHA-256 {digest}, expected {remote.sha256}: the cached file is damaged or "
                    "not the published one; delete it to download it again"
                )
            continue
        if not download or offline:
            failures[remote] = ["not downloaded (download=False)" if not download else "not tried: offline"]
            continue
        directory.mkdir(parents=True, exist_ok=True)
        reasons, unreachable = [], 0
        for mirror in mirrors:
            url = f"{mirror.rstrip('/')}/{remote.name}"
            try:
                _download_verified(url, path, remote, verbose)
                break
            except _Offline as err:
                unreachable += 1
                reasons.append(f"{url}: {err}")
            except (DownloadError, OSError, http.client.HTTPException) as err:
                wrong_digest |= isinstance(err, ChecksumError)
                reasons.append(f"{url}: {err}")
        else:
            failures[remote] = reasons
            # No mirror even answered: the machine is offline; report the other files without trying them.
            offline = unreachable == len(mirrors)
    if failures:
        raise _report(failures, directory, mirrors, ChecksumError if wrong_digest else DownloadError)
    return paths


def _report(failures: dict[RemoteFile, list[str]], directory: Path, mirrors: Sequence[str],
            kind: type[DownloadError]) -> DownloadError:
    lines = [f"could not get {len(failures)} data file(s). Download them yourself (from any of "
             f"{', '.join(mirrors)}) and place them as shown; they are checked against these SHA-256 digests:"]
    for remote, reasons in failures.items():
        size = f", {remote.size:,} bytes" if remote.size is not None else ""
        lines.append(f"  {directory / remote.name}  (sha256 {remote.sha256}{size})")
        lines.extend(f"      {reason}" for reason in reasons)
    return kind("\n".join(lines))


def _download_verified(url: str, path: Path, remote: RemoteFile, verbose: bool) -> None:
    """Download ``url`` into ``path.part`` (resuming it), check the digest, then rename it onto ``path``."""
    part = path.with_name(path.name + ".part")
    if remote.size is not None and part.exists() and part.stat().st_size > remote.size:
        part.unlink()  # longer than the published file: it cannot be a prefix of it
    for attempt in range(RETRIES):
        try:
            _transfer(url, part, remote, verbose)
            break
        except _Offline as err:
            if attempt == 0:
                raise
            error = str(err)  # the server went away after a transfer broke off: worth another try
        except urllib.error.HTTPError as err:
            if err.code == 416:  # nothing after the bytes we hold: the .part is whole (or wrong; the digest says)
                break
            if err.code < 500:
                raise DownloadError(f"HTTP {err.code} {err.reason}") from None
            error = f"HTTP {err.code} {err.reason}"
        except (OSError, http.client.HTTPException) as err:
            error = _describe(err)
        if attempt + 1 == RETRIES:
            raise DownloadError(f"gave up after {RETRIES} attempts ({error}); the partial file {part} "
                                "is kept and the next attempt resumes it")
        time.sleep(RETRY_DELAY * 2**attempt)
    digest = sha256_of(part)
    if digest != remote.sha256:
        part.unlink()  # a resumed download can only be wrong from the start: begin afresh next time
        raise ChecksumError(f"downloaded, but its SHA-256 is {digest}, expected {remote.sha256}")
    with open(part, "rb+") as f:
        os.fsync(f.fileno())  # on disk before it becomes the cache entry
    os.replace(part, path)


def _transfer(url: str, part: Path, remote: RemoteFile, verbose: bool) -> None:
    """Append the rest of ``url`` to ``part``: ask for the bytes after those it holds (HTTP Range)."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset == remote.size:
        return  # complete already (an earlier run stopped between the transfer and the rename)
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as err:
        # Refused, unreachable, unresolvable: nobody answered. A timeout may be a slow server: retried.
        if isinstance(err.reason, OSError) and not isinstance(err.reason, TimeoutError):
            raise _Offline(f"no connection ({err.reason})") from None
        raise
    with response:
        if offset and response.status != 206:  # the server ignored the Range: it sends the whole file
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else remote.size
        with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=remote.name,
            disable=not verbose, leave=False,
        ) as bar:
            received = offset
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received < total:
            raise http.client.IncompleteRead(b"", total - received)


def _describe(err: BaseException) -> str:
    if isinstance(err, http.client.IncompleteRead):
        return f"connection closed with {err.expected:,} bytes still to come"
    return f"{type(err).__name__}: {err}"
