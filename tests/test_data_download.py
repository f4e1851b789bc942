"""fetch(): resume after a dropped connection, cache, sha256, 404/401 messages, HF endpoint override, hub metadata (commit, etag)."""

from __future__ import annotations

import hashlib
import os

import pytest
from _fileserver import file_server, hub_online  # noqa: F401

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


def test_401_says_needs_token_and_token_is_sent(file_server, hub_online, tmp_path, monkeypatch):
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
    assert file_server.heads == [("datasets/org/gated/resolve/main/data.jsonl", None)] and file_server.requests == []
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert fetch(url, tmp_path / "d.jsonl", progress=False).read_text() == "{}\n"
    assert file_server.heads[1] == ("datasets/org/gated/resolve/main/data.jsonl", "Bearer secret")
    assert file_server.requests == [("datasets/org/gated/resolve/main/data.jsonl", None, "Bearer secret")]


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


def test_hub_urls_spelled_with_the_public_address_follow_hf_endpoint(file_server, hub_online, tmp_path, monkeypatch):
    from tulu_cli.data.download import resolve_url
    from tulu_cli.evaluation.tasks import alpaca_eval

    monkeypatch.delenv("TULU_HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    url = "https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json"
    assert resolve_url(url) == url
    monkeypatch.setenv("HF_ENDPOINT", file_server.base + "/")
    assert resolve_url(url) == file_server.base + "/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json"
    # alpaca_eval's files, as its task declares them (hf://, pinned where a commit is known), download from the mirror
    hub_files = [f for task in alpaca_eval.TASKS for f in task.data_files]
    assert [resolve_url(f.url)[len(file_server.base):] for f in hub_files] == [
        "/datasets/tatsu-lab/alpaca_eval/resolve/2edc6fad8be6b14ea7230aabfd08188da6b8b814/alpaca_eval.json",
        "/datasets/hamishivi/alpaca-farm-davinci-003-2048-token/resolve/main/davinci_003_outputs.json",
        "/datasets/tatsu-lab/alpaca_eval/resolve/2edc6fad8be6b14ea7230aabfd08188da6b8b814/alpaca_eval_gpt4_baseline.json",
        "/datasets/tatsu-lab/alpaca_eval/resolve/2edc6fad8be6b14ea7230aabfd08188da6b8b814/df_gamed.csv",
    ]
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


def test_token_goes_to_the_hub_host_only_never_to_a_redirect_target(file_server, hub_online, tmp_path, monkeypatch):
    """Two servers: the "hub" answers HEADs with redirects (one on its own host, then one to storage elsewhere)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    (file_server.root / "blob.jsonl").write_bytes(PAYLOAD)  # the storage host: no token needed
    seen: list[tuple[str, str, str | None]] = []

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            self.send_response(302)
            if "/renamed/" in self.path:  # a renamed repository: same host
                self.send_header("Location", "/datasets/org/gated/resolve/main/data.jsonl")
            else:  # an LFS file: the metadata rides on the redirect to storage, as on the real hub
                self.send_header("Location", file_server.url("blob.jsonl"))
                self.send_header("X-Repo-Commit", "ab" * 20)
                self.send_header("X-Linked-Etag", '"%s"' % hashlib.sha256(PAYLOAD).hexdigest())
                self.send_header("X-Linked-Size", str(len(PAYLOAD)))
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer  # noqa: N815

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
    assert seen == [("HEAD", "/datasets/org/renamed/resolve/main/data.jsonl", "Bearer hf_secret"),
                    ("HEAD", "/datasets/org/gated/resolve/main/data.jsonl", "Bearer hf_secret")]
    # ... the storage host never saw it
    assert file_server.requests == [("blob.jsonl", None, None)]


def _hub_file(file_server, name="data.jsonl", data=PAYLOAD, rev="main"):
    path = f"datasets/org/repo/resolve/{rev}/{name}"
    (file_server.root / path).parent.mkdir(parents=True, exist_ok=True)
    (file_server.root / path).write_bytes(data)
    return path


@pytest.fixture
def hub(file_server, hub_online, monkeypatch):
    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    return file_server


def test_hub_file_resumes_after_a_dropped_connection(hub, tmp_path):
    path = _hub_file(hub)
    hub.drop_after[path] = 70_000
    assert fetch("hf://org/repo/data.jsonl", tmp_path / "d.jsonl", progress=False).read_bytes() == PAYLOAD
    assert [r for (_, r, _) in hub.requests] == [None, "bytes=70000-"]
    assert len(hub.heads) == 1


def test_hub_cache_is_keyed_by_etag_a_moved_branch_is_downloaded_again(hub, tmp_path):
    path = _hub_file(hub)
    cache = tmp_path / "cache"
    fetch("hf://org/repo/data.jsonl", tmp_path / "one.jsonl", cache_dir=cache, progress=False)
    fetch("hf://org/repo/data.jsonl", tmp_path / "two.jsonl", cache_dir=cache, progress=False)
    assert len(hub.heads) == 2 and len(hub.requests) == 1  # same etag: asked, not downloaded again
    (hub.root / path).write_bytes(b"new upstream bytes\n")  # main moved on
    got = fetch("hf://org/repo/data.jsonl", tmp_path / "three.jsonl", cache_dir=cache, progress=False)
    assert got.read_bytes() == b"new upstream bytes\n"
    assert len(hub.requests) == 2 and len([p for p in cache.iterdir() if p.is_file()]) == 2


def test_hub_etag_mismatch_is_one_line_and_leaves_nothing(hub, tmp_path):
    path = _hub_file(hub)
    hub.etag[path] = "0" * 64
    with pytest.raises(TuluError, match=r"^\S+data.jsonl: the downloaded bytes do not match the hub's etag 0{64} \(got "
                       + hashlib.sha256(PAYLOAD).hexdigest() + r";.*run again$") as e:
        fetch("hf://org/repo/data.jsonl", tmp_path / "d.jsonl", progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "d.jsonl").exists() and not list(tmp_path.glob("d.jsonl*"))


def test_hub_git_blob_etag_of_a_small_file_is_checked(hub, tmp_path):
    path = _hub_file(hub)
    hub.etag[path] = "bc00ba342742255c78b6050c639f99e4317c5b2f"  # `git hash-object` of PAYLOAD
    assert fetch("hf://org/repo/data.jsonl", tmp_path / "d.jsonl", progress=False).read_bytes() == PAYLOAD
    hub.etag[path] = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # `git hash-object` of an empty file
    with pytest.raises(TuluError, match="do not match the hub's etag e69de29bb2d1d6434b8b29ae775ad8c2e48c5391 "
                       r"\(got bc00ba342742255c78b6050c639f99e4317c5b2f;"):
        fetch("hf://org/repo/data.jsonl", tmp_path / "e.jsonl", progress=False)


def test_hub_file_pinned_to_a_commit_asks_for_that_commit(hub, tmp_path):
    commit = "fdf72ae0827c1cda404aff25b6603abec9e3399b"
    _hub_file(hub, rev=commit)
    assert fetch(f"hf://org/repo/data.jsonl@{commit}", tmp_path / "d.jsonl", progress=False).read_bytes() == PAYLOAD
    assert hub.heads == [(f"datasets/org/repo/resolve/{commit}/data.jsonl", None)]


def test_hub_404_is_gone_and_offline_mode_is_one_clear_line(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(download.Gone, match=r"resolve/main/nope.jsonl: HTTP 404 .*gone.*--raw-dir"):
        fetch("hf://org/repo/nope.jsonl", tmp_path / "n.jsonl", progress=False)
    _hub_file(hub)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TuluError, match=r"data.jsonl: HF_HUB_OFFLINE is set, so hub files are not downloaded\. Unset it, "
                       "or download the file yourself and pass --raw-dir$"):
        fetch("hf://org/repo/data.jsonl", tmp_path / "d.jsonl", progress=False)
    assert not (tmp_path / "d.jsonl").exists()


def test_a_server_that_is_not_a_hub_is_named(file_server, hub_online, tmp_path, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Plain(BaseHTTPRequestHandler):  # a web server without the hub's headers
        def log_message(self, *args):
            pass

        def do_HEAD(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TULU_HF_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
        with pytest.raises(TuluError, match=r"lacks the hub's X-Repo-Commit/ETag headers: is HF_ENDPOINT a Hugging Face hub\?$"):
            fetch("hf://org/repo/data.jsonl", tmp_path / "d.jsonl", progress=False)
    finally:
        srv.shutdown()
        srv.server_close()


def test_unreachable_hub_is_retried_then_one_clear_line(hub_online, tmp_path, monkeypatch):
    monkeypatch.setenv("TULU_HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(TuluError, match=r"^http://127.0.0.1:9/datasets/org/repo/resolve/main/d.jsonl: download failed after 5 attempts "
                       r"\(cannot connect: .*\)\. Offline\? Download the file yourself and pass --raw-dir$"):
        fetch("hf://org/repo/d.jsonl", tmp_path / "d.jsonl", progress=False)
