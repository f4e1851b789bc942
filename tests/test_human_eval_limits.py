"""The annotation server under hostile load: bounded sign-in hashing, per-address limits, idle connections without threads.

The load numbers themselves (memory, health latency) come from benchmarks/human_eval_load.py.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from _human_eval_helpers import Client, make_users, running_server

from tulu_cli.human_eval import server, store


@pytest.fixture
def study(tmp_path):
    db = tmp_path / "study.sqlite"
    return db, make_users(db, "alice")


def test_failed_sign_ins_are_limited_per_address_across_user_names(study, monkeypatch):
    db, pw = study
    monkeypatch.setattr(server, "ADDRESS_MAX_FAILURES", 3)
    with running_server(db) as port:
        c = Client(port)
        # Three different unknown names: the per-account limit never triggers, the address one does.
        assert [c.login(f"nobody{i}", "guess").status for i in range(3)] == [401, 401, 401]
        r = c.login("alice", pw["alice"])
        assert r.status == 429 and "Too many failed sign-ins from your address" in r.text
        assert r.header("Retry-After") == "300"
        # Another client address is not affected.
        assert Client(port, source="127.0.0.2").login("alice", pw["alice"]).status == 303


def test_password_hashing_is_bounded_and_runs_on_its_own_threads(study, monkeypatch):
    db, _ = study
    monkeypatch.setattr(server, "HASH_SLOTS", 1)
    monkeypatch.setattr(server, "HASH_QUEUE", 3)
    release = threading.Event()
    seen: list[tuple[str, str]] = []
    running = [0, 0]  # now, most at once
    lock = threading.Lock()

    def slow_verify(password: str, stored: str) -> bool:
        with lock:
            seen.append((threading.current_thread().name, stored))
            running[0] += 1
            running[1] = max(running)
        release.wait(60)
        with lock:
            running[0] -= 1
        return False

    monkeypatch.setattr(store, "verify_password", slow_verify)
    statuses: list[int] = []
    with running_server(db) as port:
        clients = [Client(port, source=f"127.0.0.{10 + i}") for i in range(8)]  # eight addresses: no per-address limit
        pages = [c.get("/login") for c in clients]
        barrier = threading.Barrier(len(clients))

        def attempt(c: Client, page) -> None:
            barrier.wait(30)
            r = c.post_form("/login", {"csrf_token": page.hidden("csrf_token"), "username": "nobody", "password": "x"})
            with lock:
                statuses.append(r.status)

        threads = [threading.Thread(target=attempt, args=(c, p)) for c, p in zip(clients, pages, strict=True)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(statuses) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused_at_once = sorted(statuses)  # while every admitted hash is still blocked
        release.set()
        for t in threads:
            t.join(60)
    # 1 hashing + 3 waiting are admitted; the other 4 are told to come back, without any hashing.
    assert refused_at_once == [503, 503, 503, 503]
    assert sorted(statuses) == [401, 401, 401, 401, 503, 503, 503, 503]
    assert running[1] == 1 and len(seen) == 4
    assert all(name.startswith("tulu-he-hash") for name, _ in seen)  # the same few threads, not the request threads
    assert all(stored == store.DUMMY_HASH for _, stored in seen)  # an unknown name still costs a hash


def _get_healthz(sock: socket.socket) -> None:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    buf = b""
    while not buf.endswith(b"\r\n\r\nok\n"):
        chunk = sock.recv(4096)
        assert chunk, "server closed a keep-alive connection"
        buf += chunk


def test_idle_keep_alive_connections_hold_no_thread_and_can_all_close_at_once(study):
    db, _ = study
    with running_server(db) as port:
        threads_before = threading.active_count()
        socks = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            _get_healthz(s)  # one request each, answered, then the connection sits idle
            socks.append(s)
        # A thread per connection would be 300 more; here one worker served them one after another.
        assert threading.active_count() - threads_before <= 5
        _get_healthz(socks[0])  # still open: keep-alive works
        for s in socks:
            s.close()
        t = time.perf_counter()
        probe = socket.create_connection(("127.0.0.1", port), timeout=30)
        _get_healthz(probe)
        probe.close()
        assert time.perf_counter() - t < 5


def test_pipelined_requests_on_one_connection_are_all_answered(study):
    db, _ = study
    with running_server(db) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
        buf = b""
        while buf.count(b"\r\n\r\nok\n") < 3:
            chunk = s.recv(4096)
            assert chunk, f"connection closed after {buf.count(b'ok')} answers"
            buf += chunk
        s.close()


def test_an_idle_connection_is_closed_after_the_idle_timeout(study, monkeypatch):
    db, _ = study
    monkeypatch.setattr(server.Server, "idle_timeout", 0.3)
    with running_server(db) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        _get_healthz(s)
        t = time.monotonic()
        assert s.recv(1) == b""  # the server closed it
        assert time.monotonic() - t < 5
        s.close()
