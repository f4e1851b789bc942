"""fetch(): resume after a dropped connection, cache, sha256, 404/401 messages, HF endpoint override."""

from __future__ import annotations

import hashlib
import os

import pytest
from _fileserver import file_server  # noqa: F401

from tulu_cli.data import download
from tulu_cli.data.download import fetch, hf_dataset_url
from tulu_cli.errors import TuluError

PAYLOAD = bytes(range(256)) * 800  # 200 KiB, several read chunks


@pytest.fixture(autouse=True)
def _fast_retry(monkeypatch, tmp_path):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    monkeypatch.setenv("TULU_CACHE", str(tmp_path / "tulu-cache"))  # never the user's ~/.cache


def test_plain_download(file_server, tmp_path):
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    out = fetch(file_server.url("a.bin"), tmp_path / "out" / "a.bin", progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not list((tmp_path / "out").glob("*.part"))


def test_dest_folder_uses_url_name(file_server, tmp_path):
    (file_server.root / "b.json").write_bytes(b"{}")
    out = fetch(file_server.url("b.json"), tmp_path, progress=False)
    assert out == tmp_path / "b.json"


def test_dropped_connection_is_resumed_with_range(file_server, tmp_path):
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    file_server.drop_after["a.bin"] = 70_000
    out = fetch(file_server.url("a.bin"), tmp_path / "a.bin", progress=False)
    assert out.read_bytes() == PAYLOAD
    ranges = [r for (_, r, _) in file_server.requests]
    assert ranges == [None, "bytes=70000-"]


def test_partial_file_from_earlier_run_is_resumed(file_server, tmp_path):
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:12345])
    fetch(file_server.url("a.bin"), tmp_path / "a.bin", progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert file_server.requests[0][1] == "bytes=12345-"


def test_server_without_range_support_restarts(file_server, tmp_path):
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    file_server.ranges = False
    (tmp_path / "a.bin.part").write_bytes(b"garbage")
    fetch(file_server.url("a.bin"), tmp_path / "a.bin", progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_sha256_ok_and_mismatch(file_server, tmp_path):
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    good = hashlib.sha256(PAYLOAD).hexdigest()
    fetch(file_server.url("a.bin"), tmp_path / "ok.bin", sha256=good, progress=False)
    with pytest.raises(TuluError, match=r"sha256 mismatch: expected 0{64}, got " + good):
        fetch(file_server.url("a.bin"), tmp_path / "bad.bin", sha256="0" * 64, progress=False)
    assert not (tmp_path / "bad.bin").exists()


def test_cache_serves_second_request(file_server, tmp_path):
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    fetch(file_server.url("a.bin"), tmp_path / "one.bin", cache_dir=cache, progress=False)
    fetch(file_server.url("a.bin"), tmp_path / "two.bin", cache_dir=cache, progress=False)
    assert (tmp_path / "two.bin").read_bytes() == PAYLOAD
    assert len(file_server.requests) == 1
    assert len([p for p in cache.iterdir() if p.is_file()]) == 1


def test_404_says_gone(file_server, tmp_path):
    with pytest.raises(TuluError, match=r"HTTP 404 .*gone.*--raw-dir"):
        fetch(file_server.url("missing.json"), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_401_says_needs_token_and_token_is_sent(file_server, tmp_path, monkeypatch):
    (file_server.root / "datasets/org/gated/resolve/main").mkdir(parents=True)
    (file_server.root / "datasets/org/gated/resolve/main/data.jsonl").write_text("{}\n")
    file_server.token = "secret"
    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    url = hf_dataset_url("org/gated", "data.jsonl")
    assert url == f"{file_server.base}/datasets/org/gated/resolve/main/data.jsonl"
    with pytest.raises(TuluError, match=r"HTTP 401 .*needs a token.*HF_TOKEN"):
        fetch(url, tmp_path / "d.jsonl", progress=False)
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert fetch(url, tmp_path / "d.jsonl", progress=False).read_text() == "{}\n"


def test_hf_endpoint_env_precedence(monkeypatch):
    monkeypatch.delenv("TULU_HF_ENDPOINT", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example/")
    assert hf_dataset_url("a/b", "x y.json", "v1") == "http://mirror.example/datasets/a/b/resolve/v1/x%20y.json"
    monkeypatch.setenv("TULU_HF_ENDPOINT", "http://local:1")
    assert hf_dataset_url("a/b", "f").startswith("http://local:1/datasets/a/b/")


def test_unreachable_host_is_a_clear_error(tmp_path):
    with pytest.raises(TuluError, match=r"download failed after \d+ attempts.*--raw-dir"):
        fetch("http://127.0.0.1:9/nothing.json", tmp_path / "n.json", progress=False)


def test_local_path_and_file_url(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("hello")
    assert fetch(str(src), tmp_path / "o1.txt").read_text() == "hello"
    assert fetch(src.as_uri(), tmp_path / "o2.txt").read_text() == "hello"
    with pytest.raises(TuluError, match="does not exist"):
        fetch(str(tmp_path / "nope"), tmp_path / "o3.txt")


def test_concurrent_fetches_of_one_file_do_not_corrupt_it(file_server, tmp_path, monkeypatch):
    import threading

    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    errors = []

    def run():
        try:
            fetch(file_server.url("a.bin"), tmp_path / "a.bin", progress=False)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert len(file_server.requests) == 1  # the others found the finished file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "served", "tulu-cache"]


def test_transient_server_error_is_retried(file_server, tmp_path):
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    file_server.status_once["a.bin"] = 503
    assert fetch(file_server.url("a.bin"), tmp_path / "a.bin", progress=False).read_bytes() == PAYLOAD
    assert len(file_server.requests) == 2


def test_persistent_server_error_gives_up_clearly(file_server, tmp_path):
    file_server.status["a.bin"] = 500
    with pytest.raises(TuluError, match=r"download failed after 5 attempts \(HTTP 500"):
        fetch(file_server.url("a.bin"), tmp_path / "a.bin", progress=False)


def test_resolve_hf_scheme(monkeypatch):
    from tulu_cli.data.download import resolve_url

    monkeypatch.setenv("TULU_HF_ENDPOINT", "http://hub.local")
    assert resolve_url("hf://org/repo/dir/f.json") == "http://hub.local/datasets/org/repo/resolve/main/dir/f.json"
    assert resolve_url("hf://org/repo/f.json@v1.0") == "http://hub.local/datasets/org/repo/resolve/v1.0/f.json"
    assert resolve_url("https://x/y") == "https://x/y"


def test_hub_urls_spelled_with_the_public_address_follow_hf_endpoint(file_server, tmp_path, monkeypatch):
    from tulu_cli.data.download import resolve_url
    from tulu_cli.evaluation.tasks import alpaca_eval

    monkeypatch.delenv("TULU_HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    url = "https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json"
    assert resolve_url(url) == url
    monkeypatch.setenv("HF_ENDPOINT", file_server.base + "/")
    assert resolve_url(url) == file_server.base + "/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json"
    # alpaca_eval's files, as its task declares them, download from the mirror
    hub_files = [f for task in alpaca_eval.TASKS for f in task.data_files if "huggingface.co" in f.url]
    assert hub_files
    for f in hub_files:
        local = file_server.root / resolve_url(f.url)[len(file_server.base) + 1 :]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("[]")
        assert fetch(f.url, tmp_path / "got", progress=False).read_text() == "[]"


def test_a_download_that_keeps_moving_is_not_abandoned(file_server, tmp_path):
    # Every response is cut after 20,000 bytes: more drops than ATTEMPTS, yet each makes progress.
    (file_server.root / "a.bin").write_bytes(PAYLOAD)
    file_server.drop_every = 20_000
    assert fetch(file_server.url("a.bin"), tmp_path / "a.bin", progress=False).read_bytes() == PAYLOAD
    assert len(file_server.requests) > download.ATTEMPTS


def test_token_goes_to_the_hub_host_only_never_to_a_redirect_target(file_server, tmp_path, monkeypatch):
    """Two servers: the "hub" answers with redirects (one on its own host, then one to storage elsewhere)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    (file_server.root / "blob.jsonl").write_bytes(PAYLOAD)  # the storage host: no token needed
    seen: list[tuple[str, str | None]] = []

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            target = "/datasets/org/gated/resolve/main/data.jsonl" if "/renamed/" in self.path else file_server.url("blob.jsonl")
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    hub = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.server_address[1]}")
        monkeypatch.delenv("TULU_HF_ENDPOINT", raising=False)
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        got = fetch(hf_dataset_url("org/renamed", "data.jsonl"), tmp_path / "d.jsonl", progress=False)
    finally:
        hub.shutdown()
        hub.server_close()
    assert got.read_bytes() == PAYLOAD
    # both hub requests (the first and the same-host redirect) carried the token ...
    assert seen == [("/datasets/org/renamed/resolve/main/data.jsonl", "Bearer hf_secret"),
                    ("/datasets/org/gated/resolve/main/data.jsonl", "Bearer hf_secret")]
    # ... the other host never saw it
    assert file_server.requests == [("blob.jsonl", None, None)]
