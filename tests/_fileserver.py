"""A local threaded HTTP server for download tests: Range requests, dropped connections, 404/401, hub HEADs.

Use the ``file_server`` fixture (import it into a test module) or ``serve(root)`` directly::

    from _fileserver import file_server  # noqa: F401  (pytest fixture)

    def test_x(file_server, tmp_path):
        (file_server.root / "a.jsonl").write_text("...")
        file_server.drop_after["a.jsonl"] = 100   # first GET sends 100 bytes then hangs up
        file_server.status["gone.json"] = 404       # always 404 (or 401, 500, ...)
        file_server.status_once["a.jsonl"] = 503    # one 503, then served
        file_server.token = "hf_x"                  # every request needs "Authorization: Bearer hf_x"
        url = file_server.url("a.jsonl")
        file_server.requests                        # [(path, Range header, Authorization header), ...]

Set ``TULU_HF_ENDPOINT`` to ``file_server.base`` to route Hugging Face URLs here
(files then live under ``root/datasets/<repo>/resolve/<rev>/<file>``) and use the ``hub_online``
fixture (huggingface_hub refuses every request while the tests' HF_HUB_OFFLINE=1 holds). Those paths
answer like the hub: HEAD and GET carry ``X-Repo-Commit`` (the revision when it is a commit id, else
``file_server.commit``) and ``ETag`` (the file's sha256, as for LFS files; ``file_server.etag[name]``
overrides it). HEADs obey ``status`` and ``token`` and are listed in ``file_server.heads``, not in ``requests``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest


@dataclass
class FileServer:
    root: Path
    base: str = ""
    # name -> bytes sent before the connection is cut (applies once per entry, then removed)
    drop_after: dict[str, int] = field(default_factory=dict)
    # when set, EVERY response body is cut after this many bytes (a flaky but moving connection)
    drop_every: int | None = None
    # name -> forced HTTP status (e.g. 404, 401)
    status: dict[str, int] = field(default_factory=dict)
    # name -> status answered once (e.g. 503), then the file is served normally
    status_once: dict[str, int] = field(default_factory=dict)
    # when set, every request must carry "Authorization: Bearer <token>" or gets 401
    token: str | None = None
    # when False the server ignores Range headers (answers 200 with the whole file)
    ranges: bool = True
    # (path, Range header or None, Authorization header or None) of every GET
    requests: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    # (path, Authorization header or None) of every HEAD
    heads: list[tuple[str, str | None]] = field(default_factory=list)
    # what a hub path answers as X-Repo-Commit when its revision is a branch name
    commit: str = "1234567890abcdef1234567890abcdef12345678"
    # name -> ETag answered instead of the file's sha256
    etag: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.base}/{urllib.parse.quote(name)}"


_HUB_PATH = re.compile(r"datasets/[^/]+/[^/]+/resolve/(?P<rev>[^/]+)/.+")


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _fail(self, code: int) -> None:
            body = f"error {code}".encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def _hub_headers(self, name: str, data: bytes) -> None:
            m = _HUB_PATH.fullmatch(name)
            if m is None:
                return
            rev = m["rev"]
            self.send_header("X-Repo-Commit", rev if re.fullmatch(r"[0-9a-f]{40}", rev) else server.commit)
            self.send_header("ETag", '"%s"' % server.etag.get(name, hashlib.sha256(data).hexdigest()))

        def _served(self, name: str, auth: str | None, once: bool) -> bytes | None:
            """The file's bytes, or None once the error status (forced, token, missing) has been sent."""
            if name in server.status:
                return self._fail(server.status[name])
            if once and name in server.status_once:
                return self._fail(server.status_once.pop(name))
            if server.token is not None and auth != f"Bearer {server.token}":
                return self._fail(401)
            path = server.root / name
            if not path.is_file() or server.root.resolve() not in path.resolve().parents:
                return self._fail(404)
            return path.read_bytes()

        def do_HEAD(self) -> None:  # noqa: N802 (http.server API)
            name = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
            auth = self.headers.get("Authorization")
            server.heads.append((name, auth))
            data = self._served(name, auth, once=False)
            if data is None:
                return
            self.send_response(200)
            self._hub_headers(name, data)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            name = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
            rng = self.headers.get("Range")
            auth = self.headers.get("Authorization")
            server.requests.append((name, rng, auth))
            data = self._served(name, auth, once=True)
            if data is None:
                return
            start, end = 0, len(data) - 1
            partial = False
            if rng and server.ranges and rng.startswith("bytes="):
                first, _, last = rng[len("bytes="):].partition("-")
                start = int(first) if first else 0
                end = int(last) if last else len(data) - 1
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                partial = True
            chunk = data[start : end + 1]
            self.send_response(206 if partial else 200)
            self._hub_headers(name, data)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            cut = server.drop_after.pop(name, server.drop_every)
            if cut is not None and cut < len(chunk):
                self.wfile.write(chunk[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

    return Handler


@contextlib.contextmanager
def serve(root: str | Path) -> Iterator[FileServer]:
    """Serve ``root`` on 127.0.0.1 (random port) for the duration of the block."""
    fs = FileServer(root=Path(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fs))
    httpd.daemon_threads = True
    fs.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fs
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def file_server(tmp_path) -> Iterator[FileServer]:
    """A server over a fresh ``tmp_path/served`` folder."""
    root = tmp_path / "served"
    root.mkdir()
    with serve(root) as fs:
        yield fs


@pytest.fixture
def hub_online(monkeypatch) -> None:
    """Let huggingface_hub make requests (to the local server) although the tests run with HF_HUB_OFFLINE=1."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
