"""Test helpers for human-eval: a cookie-keeping HTTP client, in-thread and subprocess servers, fixture data,
and `tulu` run as an unprivileged user (root ignores file permissions)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

FIXTURES = Path(__file__).parent / "fixtures" / "human_eval"
COMPARISONS = FIXTURES / "comparisons.jsonl"
REPO_ROOT = Path(__file__).resolve().parents[1]


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status, self.headers, self.body = status, headers, body
        self.text = body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def headers_named(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def hidden(self, name: str) -> str:
        m = re.search(rf'name="{name}" value="([^"]*)"', self.text)
        assert m, f"no hidden field {name!r} in page"
        return unescape(m.group(1))


class Client:
    """A browser-like client on one keep-alive connection: keeps cookies, never follows redirects."""

    def __init__(self, port: int, host: str = "127.0.0.1", source: str | None = None):
        self.host, self.port = host, port
        self.source = (source, 0) if source else None  # another loopback address (127.0.0.N): another client
        self.cookies: dict[str, str] = {}
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30, source_address=self.source)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Response:
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: reconnect once, as browsers do.
                self.conn.close()
                self.conn = self._connect()
                if attempt:
                    raise
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in v:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
        return Response(r.status, r.getheaders(), data)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post_form(self, path: str, fields: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self.request("POST", path, urlencode(fields).encode(), h)

    def post_json(self, path: str, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return self.request("POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def login(self, name: str, password: str) -> Response:
        page = self.get("/login")
        return self.post_form("/login", {"csrf_token": page.hidden("csrf_token"), "username": name, "password": password})

    def answer(
        self, position: int, acceptable_a: str, acceptable_b: str, choice: int, comment: str = "", **extra: str
    ) -> Response:
        page = self.get(f"/annotate/{position}")
        assert page.status == 200, page.text
        fields = {
            "csrf_token": page.hidden("csrf_token"), "instance_id": page.hidden("instance_id"),
            "submission_id": page.hidden("submission_id"), "shown_at": page.hidden("shown_at"),
            "acceptable_a": acceptable_a, "acceptable_b": acceptable_b, "choice": str(choice), "comment": comment, **extra,
        }  # fmt: skip
        return self.post_form(f"/annotate/{position}", fields)

    def close(self) -> None:
        self.conn.close()


def make_users(db: Path, *names: str) -> dict[str, str]:
    from tulu_cli.human_eval import store

    conn = store.open_db(db)
    try:
        return {n: store.add_user(conn, n) for n in names}
    finally:
        conn.close()


@contextmanager
def running_server(db: Path, comparisons: Path = COMPARISONS, **overrides: Any) -> Iterator[int]:
    """A server on a free loopback port in a background thread; yields the port."""
    from tulu_cli.human_eval.server import make_server
    from tulu_cli.options.human_eval import ServeOptions

    opts = ServeOptions(comparisons=comparisons, db=db, port=0, **overrides)
    server = make_server(opts)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        server.app.close()


@contextmanager
def server_process(
    db: Path, comparisons: Path = COMPARISONS, *extra: str, log: Path | None = None, port: int = 0
) -> Iterator[tuple[subprocess.Popen, int]]:
    """``tulu human-eval serve`` as a real process on a free port; yields (process, port)."""
    tulu = shutil.which("tulu")
    cmd = [tulu] if tulu else [sys.executable, "-m", "tulu_cli.cli.main"]
    cmd += ["human-eval", "serve", "--comparisons", str(comparisons), "--db", str(db), "--port", str(port), *extra]
    err = open(log or os.devnull, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        port = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if m := re.search(r"listening on https?://\S+:(\d+)/", line):
                port = int(m.group(1))
                break
        assert port, f"server did not start (exit {proc.poll()})"
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        err.close()


def db_rows(db: Path, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ---- `tulu` as an ordinary user ------------------------------------------------------------------

UNPRIVILEGED_USER = "tulu-he-test"
# What `tulu human-eval` imports: the copy made for the ordinary user must hold these.
HUMAN_EVAL_MODULES = (
    "rich.markup", "rich.table", "tulu_cli.cli.main", "tulu_cli.human_eval.analysis",
    "tulu_cli.human_eval.server", "tulu_cli.options.human_eval",
)


def unprivileged(root: Path):
    """A runner for `tulu human-eval` as an ordinary user (tests/_unprivileged.py), or why there is none."""
    from _unprivileged import unprivileged as as_user

    return as_user(UNPRIVILEGED_USER, root, HUMAN_EVAL_MODULES)
