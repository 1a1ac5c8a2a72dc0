"""Small data sets in the real file formats, and a local HTTP server on 127.0.0.1 to download them from.

Tests never touch the internet: they point ``minidl.datasets`` at this server (``base_url=``) and at
these files' digests (``FILES``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import re
import socket
import struct
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from minidl.download import RemoteFile


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as a gzip-compressed IDX file."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), mtime=0)


def mnist_files(n_train: int = 12, n_test: int = 5, seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """``({file name: bytes}, arrays)`` of an MNIST-shaped data set of random 28×28 images."""
    rng = np.random.default_rng(seed)
    arrays = {}
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[prefix] = (images, labels)
        files[f"{prefix}-images-idx3-ubyte.gz"] = idx_bytes(images)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = idx_bytes(labels)
    return files, arrays


def cifar_archive(records_per_batch: int = 4, seed: int = 0, members: dict[str, bytes] | None = None) -> tuple[bytes, dict]:
    """``(cifar-10-binary.tar.gz bytes, {batch name: (images (N, 3, 32, 32), labels)})``; ``members``
    adds or replaces archive members by name (relative to ``cifar-10-batches-bin/``)."""
    rng = np.random.default_rng(seed)
    batches, contents = {}, {"batches.meta.txt": b"airplane\nautomobile\n"}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (records_per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, records_per_batch, dtype=np.uint8)
        batches[name] = (images, labels)
        contents[name] = np.concatenate([labels[:, None], images.reshape(records_per_batch, -1)], axis=1).tobytes()
    contents.update(members or {})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in contents.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue(), batches


def remote_files(files: dict[str, bytes]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, hashlib.sha256(payload).hexdigest(), len(payload)) for name, payload in files.items())


class FileServer:
    """Serves ``files`` (``{url path: bytes}``) on 127.0.0.1 with HTTP Range support.

    ``drop[path] = n`` makes the next response for ``path`` announce the whole length but close
    the connection after ``n`` bytes (once). ``ignore_range`` answers every request with the whole
    file (200). ``fail[path] = [codes]`` answers the next requests with those HTTP errors.
    ``content_length[path]`` is the ``Content-Length`` header announced for ``path`` instead of the
    true one (``None``: no header, the body ends when the connection closes); ``padding[path] = n``
    sends ``n`` more bytes after the file; ``barrier[path]`` (a ``threading.Barrier``) holds each
    response after half of its body until as many responses have reached that point.
    ``requests`` records ``(path, Range header)`` of every request.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.drop: dict[str, int] = {}
        self.fail: dict[str, list[int]] = {}
        self.content_length: dict[str, str | None] = {}
        self.padding: dict[str, int] = {}
        self.barrier: dict[str, threading.Barrier] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a server thread forever

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.lstrip("/")
                server.requests.append((path, self.headers.get("Range")))
                codes = server.fail.get(path)
                if codes:
                    self.send_error(codes.pop(0))
                    return
                if path not in server.files:
                    self.send_error(404)
                    return
                payload = server.files[path]
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(payload):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                else:
                    self.send_response(200)
                body = payload[start:] + b"\0" * server.padding.get(path, 0)
                length = server.content_length.get(path, str(len(body)))
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                cut = server.drop.pop(path, None)
                if cut is not None:
                    body = body[:cut]
                    self.close_connection = True
                try:
                    barrier = server.barrier.get(path)
                    if barrier is not None:
                        self.wfile.write(body[:len(body) // 2])
                        self.wfile.flush()
                        with contextlib.suppress(threading.BrokenBarrierError):
                            barrier.wait()
                        body = body[len(body) // 2:]
                    for at in range(0, len(body), 1 << 16):  # in pieces, as a client that hangs up stops it
                        self.wfile.write(body[at:at + (1 << 16)])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class SilentServer:
    """A listening socket on 127.0.0.1 that accepts connections and never answers; ``accepted`` counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self.held.append(conn)

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for conn in self.held:
            conn.close()
        self.sock.close()


@contextlib.contextmanager
def unconnectable_url():
    """A URL on 127.0.0.1 whose connections never complete: a socket that listens but never accepts, its
    backlog filled first, so that the kernel drops further connection requests unanswered (as a firewall
    that drops packets does)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(4):  # more than the backlog holds: the last ones stay pending
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        yield f"http://127.0.0.1:{address[1]}/"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was just released): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
