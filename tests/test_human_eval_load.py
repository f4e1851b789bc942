"""Load on loopback: 20 annotators submit concurrently for a bounded time; no write is lost or duplicated.

Duration: TULU_HE_LOAD_SECONDS (default 10 under CI=true, 8 otherwise; the figures in docs/human-eval.md come from TULU_HE_LOAD_SECONDS=30).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time

import pytest

from _human_eval_helpers import REPO_ROOT, Client, db_rows, make_users, server_process, write_jsonl

ANNOTATORS = 20
INSTANCES = 40


def _duration() -> float:
    default = 10.0 if os.environ.get("CI") else 8.0
    return float(os.environ.get("TULU_HE_LOAD_SECONDS", default))


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


@pytest.mark.slow
def test_twenty_concurrent_annotators(tmp_path, capsys):
    rows = [
        {"id": f"load-{i}", "prompt": f"Prompt {i}: explain *item* {i}.",
         "completions": [{"model": "m-a", "completion": f"Answer {i} " + "text " * 200}, {"model": "m-b", "completion": f"```\ncode {i}\n```"}]}
        for i in range(INSTANCES)
    ]  # fmt: skip
    comparisons = write_jsonl(tmp_path / "load.jsonl", rows)
    db = tmp_path / "load.sqlite"
    names = [f"annotator{k:02d}" for k in range(ANNOTATORS)]
    passwords = make_users(db, *names)
    duration = _duration()

    acked: dict[str, list[str]] = {n: [] for n in names}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(ANNOTATORS)

    def annotator(name: str, port: int) -> None:
        c = Client(port)
        try:
            if c.login(name, passwords[name]).status != 303:
                errors.append(f"{name}: sign-in failed")
                return
            start.wait()
            deadline = time.monotonic() + duration
            k = 0
            while time.monotonic() < deadline:
                pos = k % INSTANCES + 1
                page = c.get(f"/annotate/{pos}")
                if page.status != 200:
                    errors.append(f"{name}: GET {pos} -> {page.status}")
                    return
                form = {
                    "csrf_token": page.hidden("csrf_token"), "instance_id": page.hidden("instance_id"),
                    "submission_id": page.hidden("submission_id"), "shown_at": page.hidden("shown_at"),
                    "acceptable_a": "yes" if k % 2 else "no", "acceptable_b": "yes", "choice": str(k % 5 + 1),
                    "comment": f"{name} #{k}",
                }  # fmt: skip
                t = time.perf_counter()
                r = c.post_form(f"/annotate/{pos}", form)
                dt = time.perf_counter() - t
                if r.status != 303:
                    errors.append(f"{name}: POST {pos} -> {r.status} {r.text[:200]}")
                    return
                with lock:
                    latencies.append(dt)
                acked[name].append(form["submission_id"])
                if k % 10 == 9:
                    # A resent form (network retry, double click) must not create a second row.
                    if c.post_form(f"/annotate/{pos}", form).status != 303:
                        errors.append(f"{name}: resend -> not 303")
                k += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(f"{name}: {type(e).__name__}: {e}")
        finally:
            c.close()

    with server_process(db, comparisons, log=tmp_path / "server.log") as (proc, port):
        threads = [threading.Thread(target=annotator, args=(n, port)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration + 120)
        assert proc.poll() is None, "server died under load"
    assert not errors, errors[:5]

    stored = db_rows(db, "SELECT u.name, a.submission_id FROM annotations a JOIN users u ON u.id = a.user_id")
    by_user: dict[str, list[str]] = {n: [] for n in names}
    for r in stored:
        by_user[r["name"]].append(r["submission_id"])
    total = sum(len(v) for v in acked.values())
    lost = sum(len(set(acked[n]) - set(by_user[n])) for n in names)
    duplicated = len(stored) - len({(r["name"], r["submission_id"]) for r in stored})
    unacknowledged = sum(len(set(by_user[n]) - set(acked[n])) for n in names)

    p50, p95, p99 = (_percentile(latencies, q) * 1000 for q in (0.5, 0.95, 0.99))
    report = {
        "annotators": ANNOTATORS, "seconds": duration, "answers": total, "per_second": total / duration,
        "lost": lost, "duplicated": duplicated, "stored_but_not_acknowledged": unacknowledged,
        "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": max(latencies) * 1000,
    }  # fmt: skip
    out = REPO_ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "human_eval_load.json").write_text(json.dumps(report, indent=2) + "\n")
    with capsys.disabled():  # shown in the test log even when output is captured
        print(
            f"\nhuman-eval load: {ANNOTATORS} annotators x {duration:.0f} s: {total} answers acknowledged "
            f"({total / duration:.1f}/s), {lost} lost, {duplicated} duplicated; submit latency p50 {p50:.1f} ms, "
            f"p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms"
        )
    assert all(acked[n] for n in names), "an annotator made no progress"
    assert lost == 0 and duplicated == 0 and unacknowledged == 0
    assert len(stored) == total
    assert p95 < 2000, f"p95 submit latency {p95:.0f} ms"
