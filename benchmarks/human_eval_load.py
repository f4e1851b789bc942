"""Hostile load on `tulu human-eval serve` over 127.0.0.1: concurrent bad sign-ins, and many idle connections closing at once.

Starts the server as its own process on a free loopback port with a throwaway database and reports,
as one JSON document, the server's resident memory (VmRSS sampled every 20 ms, and the kernel's
peak VmHWM) and the latency of `GET /healthz` probes on fresh connections (every 25 ms) before,
during and after the load. Everything is bounded: a fixed number of attempts and a deadline.

    python benchmarks/human_eval_load.py signin --attempts 40 --rounds 3 [--addresses 40]
    python benchmarks/human_eval_load.py idle-close --connections 1200
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
COMPARISONS = REPO / "tests" / "fixtures" / "human_eval" / "comparisons.jsonl"


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


class Probe:
    """Health probes and memory samples in the background until stopped; timestamps relative to ``t0``."""

    def __init__(self, pid: int, port: int):
        self.pid, self.port, self.t0 = pid, port, time.monotonic()
        self.health: list[tuple[float, float]] = []
        self.rss: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._health, daemon=True), threading.Thread(target=self._memory, daemon=True)]

    def __enter__(self) -> "Probe":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _health(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                c.request("GET", "/healthz")
                ok = c.getresponse().read() == b"ok\n"
                c.close()
            except OSError:
                ok = False
            self.health.append((start - self.t0, (time.monotonic() - start) * 1000 if ok else float("inf")))
            self._stop.wait(0.025)

    def _memory(self) -> None:
        while not self._stop.is_set():
            self.rss.append((self.now(), _status(self.pid, "VmRSS")))
            self._stop.wait(0.02)

    def health_between(self, a: float, b: float) -> dict[str, float]:
        xs = [ms for t, ms in self.health if a <= t < b]
        if not xs:
            return {"probes": 0}
        return {"probes": len(xs), "p50_ms": round(statistics.median(xs), 1), "max_ms": round(max(xs), 1)}

    def rss_between(self, a: float, b: float) -> int:
        return max((r for t, r in self.rss if a <= t < b), default=0)


def start_server(db: Path, log: Path) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "tulu_cli.cli.main", "human-eval", "serve", "--comparisons", str(COMPARISONS), "--db", str(db), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, cwd=log.parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if m := re.search(r"listening on http://\S+:(\d+)/", line):
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(m.group(1))
        if not line:
            break
    proc.kill()
    raise SystemExit(f"server did not start; see {log}")


def bad_sign_in(port: int, name: str, source: str, barrier: threading.Barrier, codes: list[int]) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120, source_address=(source, 0))
    try:
        c.request("GET", "/login")
        r = c.getresponse()
        page = r.read().decode()
        cookie = next(v.split(";", 1)[0] for k, v in r.getheaders() if k.lower() == "set-cookie")
        token = re.search(r'name="csrf_token" value="([^"]*)"', page).group(1)
        body = urlencode({"csrf_token": token, "username": name, "password": "wrong-password"}).encode()
        barrier.wait(30)
        c.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        resp = c.getresponse()
        resp.read()
        codes.append(resp.status)
    except (OSError, threading.BrokenBarrierError) as e:
        codes.append(-1)
        print(f"sign-in {name}: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        c.close()


def signin(args: argparse.Namespace, proc: subprocess.Popen, port: int) -> dict:
    rounds = []
    with Probe(proc.pid, port) as p:
        time.sleep(1.0)
        idle_end = p.now()
        for k in range(args.rounds):
            codes: list[int] = []
            barrier = threading.Barrier(args.attempts)
            # Distinct unknown names, so only a per-address limit (not the per-account one) can stop them.
            threads = [
                threading.Thread(target=bad_sign_in, args=(port, f"nobody-{k}-{i}", f"127.0.0.{i % args.addresses + 1}", barrier, codes))
                for i in range(args.attempts)
            ]
            a = p.now()
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            b = p.now()
            rounds.append({"round": k + 1, "seconds": round(b - a, 2), "status_counts": {str(s): codes.count(s) for s in sorted(set(codes))},
                           "health_during": p.health_between(a, b), "peak_rss_mb": round(p.rss_between(a, b) / 2**20, 1)})  # fmt: skip
            time.sleep(args.pause)
        time.sleep(1.0)
        end = p.now()
        after = {"health": p.health_between(end - 1.0, end), "rss_mb": round(p.rss_between(end - 0.5, end) / 2**20, 1)}
        before = {"health": p.health_between(0.3, idle_end), "rss_mb": round(p.rss_between(0, idle_end) / 2**20, 1)}
    return {"scenario": "signin", "attempts_per_round": args.attempts, "client_addresses": args.addresses, "before": before, "rounds": rounds, "after_1s": after,
            "peak_rss_mb_vmhwm": round(_status(proc.pid, "VmHWM") / 2**20, 1)}  # fmt: skip


def idle_close(args: argparse.Namespace, proc: subprocess.Popen, port: int) -> dict:
    socks = []
    for _ in range(args.connections):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        if args.mode == "request":
            # One keep-alive request, response read: the connection then sits idle in the server.
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while not buf.endswith(b"ok\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit("server closed an idle connection early")
                buf += chunk
        socks.append(s)
    time.sleep(1.0)
    threads_idle = _threads(proc.pid)
    with Probe(proc.pid, port) as p:
        time.sleep(1.0)
        before = p.health_between(0.2, p.now())
        a = p.now()
        for s in socks:
            s.close()
        closed = p.now()
        # Probe until the server has dropped every connection and answered quickly for 1 s, or 20 s.
        deadline = a + 20
        while p.now() < deadline:
            time.sleep(0.1)
            recent = p.health_between(p.now() - 1.0, p.now())
            if p.now() - a > 1.5 and recent.get("max_ms", 1e9) < 50:
                break
        b = p.now()
    stalls = [ms for t, ms in p.health if t >= a]
    return {"scenario": "idle-close", "mode": args.mode, "connections": args.connections, "server_threads_while_idle": threads_idle,
            "health_before": before, "health_after_close": p.health_between(a, b), "close_loop_s": round(closed - a, 3),
            "worst_probe_ms": round(max(stalls), 1) if stalls else None, "server_threads_after": _threads(proc.pid),
            "rss_mb_after": round(_status(proc.pid, "VmRSS") / 2**20, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="scenario", required=True)
    s = sub.add_parser("signin", help="concurrent sign-ins with unknown user names")
    s.add_argument("--attempts", type=int, default=40)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--addresses", type=int, default=1, help="spread the attempts over 127.0.0.1..127.0.0.N (many attackers)")
    s.add_argument("--pause", type=float, default=0.5, help="seconds between rounds")
    i = sub.add_parser("idle-close", help="many idle keep-alive connections closed at once")
    i.add_argument("--connections", type=int, default=1200)
    i.add_argument("--mode", choices=["request", "connect"], default="request", help="one request first, or only connect")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp) / "bench.sqlite", Path(tmp) / "server.log")
        try:
            report = signin(args, proc, port) if args.scenario == "signin" else idle_close(args, proc, port)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
