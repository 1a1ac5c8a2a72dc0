"""Files fetched once into a cache directory: mirrors, resumable retries, SHA-256 checks, atomic writes.

Each download writes into a temporary file of its own, ``<name>.<16 random hex digits>.part`` beside
the final place, created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (always a new file, never through a
link) and held under an exclusive lock (``flock``) while it is in use, so two processes filling one
cache never share one. The transfer stops at the published size (a larger ``Content-Length`` is
refused before a byte is read). The file is renamed onto its final name only after its SHA-256
digest matches the pinned one, so a cache entry is always a whole, verified regular file.

An interrupted transfer keeps its ``.part``; the next attempt (a retry now, or a later run) takes
over a ``.part`` of that name that no process holds and asks the server for the rest with an HTTP
``Range`` header instead of starting over. A mirror that cannot be connected to is not asked again
for the other files, and an error writing to the cache directory stops the download at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import secrets
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows: no flock, so a .part is never taken over from an earlier run there
    fcntl = None  # type: ignore[assignment]

__all__ = ["RemoteFile", "DownloadError", "ChecksumError", "data_home", "fetch", "sha256_of"]

#: Where data sets are cached unless ``data_dir=`` or the ``MINIDL_DATA`` environment variable says otherwise.
DEFAULT_DATA_DIR = "~/.cache/minidl"
DATA_ENV = "MINIDL_DATA"
#: Attempts per mirror for transfers that break off; the k-th retry waits ``RETRY_DELAY * 2**k`` seconds.
RETRIES = 3
RETRY_DELAY = 1.0
#: Seconds to connect, and then without a byte, before a connection counts as broken.
TIMEOUT = 30.0
CHUNK = 1 << 16

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class RemoteFile:
    """A file as published: its name on the mirrors, its SHA-256 digest and its size in bytes.

    With ``size`` given, a download stops there: a server announcing or sending more is refused.
    """

    name: str
    sha256: str
    size: int | None = None


class DownloadError(OSError):
    """A data file is neither in the cache nor downloadable; the message says where to put it by hand."""


class ChecksumError(DownloadError):
    """A downloaded or cached file is not the published one: the wrong SHA-256 digest or the wrong size."""


class _Offline(Exception):
    """No connection could be made at all (refused, no route, no name resolution, no answer in time)."""


class _LocalError(Exception):
    """Reading or writing the cache directory failed: no retry or other mirror can help."""


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``data_dir``, else ``$MINIDL_DATA``, else ``~/.cache/minidl``."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 digest of the file at ``path``, as 64 hex digits."""
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
    file that could not be had, its digest and size, the URLs tried and the path to place it at; or,
    at the first error writing to ``directory``, one naming it.
    """
    directory = Path(directory)
    paths, failures, wrong_digest = [], {}, False
    unreachable: set[str] = set()  # mirrors no connection could be made to: not asked again
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
        if not download or unreachable >= set(mirrors):
            failures[remote] = ["not downloaded (download=False)" if not download else "not tried: offline"]
            continue
        try:
            reasons, wrong = _download(remote, path, mirrors, unreachable, verbose)
        except _LocalError as err:
            raise DownloadError(f"cannot write to the data directory {directory} ({err}): make it writable or "
                                f"choose another (data_dir= or ${DATA_ENV}); nothing was retried") from None
        wrong_digest |= wrong
        if reasons:
            failures[remote] = reasons
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


@contextlib.contextmanager
def _local(action: str) -> Iterator[None]:
    """Turn an ``OSError`` of the cache's own files into a :class:`_LocalError` (never retried)."""
    try:
        yield
    except OSError as err:
        raise _LocalError(f"{action}: {err.strerror or err}") from None


class _Part:
    """This download's temporary file: an open descriptor under an exclusive lock, and its name."""

    def __init__(self, fd: int, path: Path) -> None:
        self.file = open(fd, "r+b")  # noqa: SIM115 (closed by close())
        self.path = path
        self.moved = False
        self.broken = False  # a write failed: what the file holds is not known

    @classmethod
    def claim(cls, target: Path) -> _Part:
        """Take over an abandoned ``.part`` of ``target`` (a regular file no process holds), else make one."""
        found = _abandoned(target)
        if found is not None:
            return cls(*found)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
        while True:
            path = target.with_name(f"{target.name}.{secrets.token_hex(8)}.part")
            with _local(f"cannot create {path.name}"):
                try:
                    fd = os.open(path, flags, 0o644)
                except FileExistsError:
                    continue
            if _lock(fd):
                return cls(fd, path)
            os.close(fd)  # another process took it over the instant it appeared: it is theirs now

    @property
    def size(self) -> int:
        with _local(f"cannot write {self.path}"):
            self.file.flush()
            return os.fstat(self.file.fileno()).st_size

    def restart(self, offset: int) -> None:
        """Keep the first ``offset`` bytes and write on from there."""
        with _local(f"cannot write {self.path}"):
            self.file.flush()
            self.file.truncate(offset)
            self.file.seek(offset)

    def write(self, block: bytes) -> None:
        with _local(f"cannot write {self.path}"):
            self.file.write(block)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with _local(f"cannot read {self.path}"):
            self.file.flush()
            self.file.seek(0)
            for block in iter(lambda: self.file.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def move_to(self, target: Path) -> None:
        """Rename this (verified) file onto ``target``, making sure that what is moved is this very file."""
        with _local(f"cannot write {self.path}"):
            self.file.flush()
            os.fsync(self.file.fileno())  # on disk before it becomes the cache entry
            mine = os.fstat(self.file.fileno())
            if not _same_file(os.lstat(self.path), mine):
                raise OSError(f"{self.path} was replaced while it was being written")
            os.replace(self.path, target)
        self.moved = True
        moved = os.lstat(target)
        if stat.S_ISLNK(moved.st_mode):  # swapped for a link in between: never leave a link as a cache entry
            os.unlink(target)
            raise _LocalError(f"{target} was replaced by a symbolic link while it was being moved into place")

    def close(self) -> None:
        """Release the file; an empty or broken ``.part`` is deleted, one with bytes stays for the next attempt."""
        try:
            doomed = self.broken or self.size == 0
        except _LocalError:
            doomed = True
        if doomed and not self.moved:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            self.file.close()  # releases the lock


def _lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return stat.S_ISREG(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _abandoned(target: Path) -> tuple[int, Path] | None:
    """A locked descriptor of the largest ``.part`` of ``target`` that no process holds, and its name.

    Only names of the form ``<name>.<16 hex digits>.part`` are considered, opened with
    ``O_NOFOLLOW`` (a link is skipped), and only regular files with one link.
    """
    if fcntl is None:
        return None
    pattern = re.compile(re.escape(target.name) + r"\.[0-9a-f]{16}\.part")
    sizes = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            if pattern.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
    for name in sorted(sizes, key=sizes.__getitem__, reverse=True):
        path = target.with_name(name)
        try:
            fd = os.open(path, os.O_RDWR | _NOFOLLOW | _CLOEXEC | _BINARY)
        except OSError:
            continue  # a link, or gone (moved into place or taken over meanwhile)
        info = os.fstat(fd)
        # Locked by us and still under its name: then no other process writes it or moves it into place.
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and _lock(fd):
            try:
                if _same_file(os.lstat(path), info):
                    return fd, path
            except OSError:
                pass
        os.close(fd)
    return None


def _remove_abandoned(target: Path) -> None:
    """Delete the ``.part`` files of ``target`` left by earlier runs (none is needed once it is cached)."""
    while (found := _abandoned(target)) is not None:
        fd, path = found
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _download(remote: RemoteFile, path: Path, mirrors: Sequence[str], unreachable: set[str],
              verbose: bool) -> tuple[list[str], bool]:
    """Download ``remote`` to ``path`` from the first mirror that works: ``(reasons it failed, a wrong file came)``."""
    with _local(f"cannot create {path.parent}"):
        path.parent.mkdir(parents=True, exist_ok=True)
    part = _Part.claim(path)
    reasons, wrong = [], False
    try:
        for mirror in mirrors:
            url = f"{mirror.rstrip('/')}/{remote.name}"
            if mirror in unreachable:
                reasons.append(f"{url}: not tried: no connection to this mirror for an earlier file")
                continue
            try:
                _download_verified(url, part, remote, verbose)
                part.move_to(path)
                _remove_abandoned(path)
                return [], False
            except _Offline as err:
                unreachable.add(mirror)
                reasons.append(f"{url}: {err}")
            except _LocalError:
                part.broken = True
                raise
            except (DownloadError, OSError, http.client.HTTPException) as err:
                wrong |= isinstance(err, ChecksumError)
                reasons.append(f"{url}: {err if isinstance(err, DownloadError) else _describe(err)}")
        kept = part.size
        if kept:
            reasons.append(f"the {kept:,} bytes received are kept in {part.path}; the next attempt resumes them")
        return reasons, wrong
    finally:
        part.close()


def _download_verified(url: str, part: _Part, remote: RemoteFile, verbose: bool) -> None:
    """Download ``url`` into ``part`` (resuming it), then check the digest."""
    if remote.size is not None and part.size > remote.size:
        part.restart(0)  # longer than the published file: it cannot be a prefix of it
    for attempt in range(RETRIES):
        try:
            _transfer(url, part, remote, verbose)
            break
        except DownloadError:
            raise  # not the published file, or a malformed answer: another try at this mirror gives the same
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
            raise DownloadError(f"gave up after {RETRIES} attempts ({error})")
        time.sleep(RETRY_DELAY * 2**attempt)
    digest = part.sha256()
    if digest != remote.sha256:
        part.restart(0)  # a resumed download can only be wrong from the start: begin afresh next time
        raise ChecksumError(f"downloaded, but its SHA-256 is {digest}, expected {remote.sha256}")


def _transfer(url: str, part: _Part, remote: RemoteFile, verbose: bool) -> None:
    """Append the rest of ``url`` to ``part``: ask for the bytes after those it holds (HTTP Range)."""
    offset = part.size
    if remote.size is not None and offset == remote.size:
        return  # complete already (an earlier run stopped between the transfer and the rename)
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as err:
        # Refused, unreachable, unresolvable, or the connection not made within TIMEOUT: nobody answered.
        if isinstance(err.reason, TimeoutError):
            raise _Offline(f"no connection within {TIMEOUT:g} s") from None
        if isinstance(err.reason, OSError):
            raise _Offline(f"no connection ({err.reason})") from None
        raise
    except TimeoutError:
        raise _Offline(f"connected, but no answer within {TIMEOUT:g} s") from None
    with response:
        if offset and response.status != 206:  # the server ignored the Range: it sends the whole file
            offset = 0
        length = _content_length(response.headers)
        total = offset + length if length is not None else remote.size
        if remote.size is not None and length is not None and total != remote.size:
            raise ChecksumError(f"the server announces {total:,} bytes (Content-Length {length}), the published "
                                f"file has {remote.size:,}: not the published file, refused before reading it")
        part.restart(offset)
        with tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=remote.name,
                  disable=not verbose, leave=False) as bar:
            received = offset
            # One byte past the published size is enough to know that the file is not the published one.
            while block := response.read(CHUNK if remote.size is None else min(CHUNK, remote.size + 1 - received)):
                if remote.size is not None and received + len(block) > remote.size:
                    part.restart(0)
                    raise ChecksumError(f"the server sent more than the published {remote.size:,} bytes: not the "
                                        "published file, stopped there")
                part.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received < total:
            raise http.client.IncompleteRead(b"", total - received)


def _content_length(headers: http.client.HTTPMessage) -> int | None:
    """The body's length as the ``Content-Length`` header says, or None without one."""
    values = headers.get_all("Content-Length") or []
    if not values:
        return None
    if len(values) == 1 and re.fullmatch(r"[0-9]+", values[0].strip()):
        return int(values[0])
    shown = ", ".join(repr(v) for v in values)
    raise DownloadError(f"malformed Content-Length header {shown}: expected one decimal number of bytes")


def _describe(err: BaseException) -> str:
    if isinstance(err, http.client.IncompleteRead):
        return f"connection closed with {err.expected:,} bytes still to come"
    return f"{type(err).__name__}: {err}"
