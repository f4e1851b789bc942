"""humanevalplus_evalplus / mbppplus_evalplus (tulu's EvalPlus-harness presets): output comparison, base and extra tests, real MBPP+ problems, runs, errors."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from _eval_helpers import invoke
from _fileserver import serve
from tulu_cli.evaluation.tasks import TaskContext, get_task
from tulu_cli.evaluation.tasks.codex import CODEX_STOP
from tulu_cli.evaluation.tasks.evalplus import _COMMON, mbpp_header

FIXTURES = Path(__file__).parent / "fixtures" / "eval_code"


def _read(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _json(res) -> dict:
    return json.loads(res.stdout[res.stdout.index("{") :])


def _same(dataset: str, entry: str):
    """The comparison the check programs use, run here in-process."""
    ns = {"_T_DATASET": dataset, "_T_ENTRY": entry, "_T_TASK_ID": "Mbpp/1"}
    exec(_COMMON, ns)
    return ns["_t_same"]


def test_output_comparison_follows_evalplus():
    same = _same("humaneval", "f")
    assert same([1], [1, 2], [1, 2], 0) and not same([1], [1, 2], (1, 2), 0)  # exact, and types matter
    assert same([1], 0.1 + 0.2, 0.3, 0)  # float outputs get atol 1e-6 even when the task says 0
    assert not same([1], 0.3001, 0.3, 0) and same([1], 0.3001, 0.3, 1e-3)
    assert same([1], [1.0, 2.0000001], [1.0, 2.0], 0) and not same([1], [1.0, 2.0], [1.0, 2.0, 3.0], 1e-3)
    assert not same([1], math.nan, math.nan, 0) and same([1], math.inf, math.inf, 0)
    assert not same([1], 1, 1.0000001, 0)  # int against float is a type mismatch once inexact
    assert not same([1], "0.3", 0.3, 1e-3)
    find_zero = _same("humaneval", "find_zero")  # any root will do
    assert find_zero([[-6, 11, -6, 1]], 3.0, 1.0, 1e-4) and not find_zero([[-6, 11, -6, 1]], 2.5, 2.5, 1e-4)
    assert _same("mbpp", "similar_elements")([1], (5, 4), (4, 5), 0)  # set equality
    not_none = _same("mbpp", "check_str")
    assert not_none(["a"], "match", True, 0) and not_none(["b"], None, False, 0) and not not_none(["b"], False, True, 0)
    assert _same("mbpp", "are_equivalent")([1], False, True, 0)
    assert _same("mbpp", "sum_div")([1], 0, 7, 0)
    restore = {"_T_DATASET": "mbpp", "_T_ENTRY": "x", "_T_TASK_ID": "Mbpp/2"}
    exec(_COMMON, restore)
    assert restore["_t_inputs"]('{"base": [[[1, 2], [3]]], "plus": []}') == {"base": [[(1, 2), (3,)]], "plus": []}


def test_mbpp_header():
    rows = {p["task_id"]: p for p in _read(FIXTURES / "evalplus" / "MbppPlus-v0.1.0.jsonl.gz")}
    assert mbpp_header(rows["Mbpp/2"]) == "def similar_elements(test_tup1, test_tup2):\n"
    assert mbpp_header(rows["Mbpp/3"]) == "import math\ndef is_not_prime(n):\n"
    assert mbpp_header(rows["Mbpp/4"]) == "import heapq as hq\ndef heap_queue_largest(nums: list,n: int) -> list:\n"
    assert mbpp_header({**rows["Mbpp/2"], "canonical_solution": "similar_elements = lambda a, b: tuple(set(a) & set(b))\n"}) == ""
    assert mbpp_header({**rows["Mbpp/2"], "canonical_solution": "def similar_elements(a,\n        b):  # two lists\n  return ()\n"}) == (
        "def similar_elements(a,\n        b):  # two lists\n"
    )


def test_presets():
    he, mb = get_task("humanevalplus_evalplus"), get_task("mbppplus_evalplus")
    t_ctx = TaskContext(data_dir=None, options=None)
    assert (he.generation.temperature, mb.generation.temperature) == (0.8, 0.1)
    for t in (he, mb):
        assert (t.generation.top_p, t.generation.n, t.generation.stop) == (0.95, 20, CODEX_STOP)
        assert t.stop_for(True) == CODEX_STOP + ("\n```",)
        assert t.default_chat_template == "tulu" and t.source.startswith("tulu: EvalPlus harness (evalplus/")
        assert set(t.options) == {"timeout", "workers"} and t.sandbox_settings(t_ctx) == (10.0, None)
    assert he.data_files[0].path == "evalplus/HumanEvalPlus-v0.1.10.jsonl.gz"
    assert mb.data_files[0].url.endswith("/v0.1.0/MbppPlus-v0.1.0.jsonl.gz")


def _samples(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_real_mbpp_plus_problems(shared_data, tmp_path):
    """The published MBPP+ sample: canonical solutions pass base+extra tests; a base-only fit fails the extra ones."""
    problems = _read(shared_data / "eval" / "evalplus" / "MbppPlus.jsonl")
    rows = [{"task_id": p["task_id"], "solution": p["canonical_solution"]} for p in problems]
    rows.append({"task_id": "Mbpp/2", "solution": problems[0]["canonical_solution"] + "\nif __name__ == '__main__':\n    exit(1)\n"})
    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(_samples(tmp_path, rows)), "-d", str(shared_data / "eval"), "--json"])
    assert res.exit_code == 0, res.stderr
    m = _json(res)["mbppplus_evalplus"]
    assert m["pass@1"] == 1.0 and m["base_pass@1"] == 1.0 and m["num_problems"] == len(problems) == 8

    rows = [
        {"task_id": "Mbpp/3", "completion": "    return n in (1, 10, 35)\n"},  # right on the five base inputs only
        {"task_id": "Mbpp/3", "completion": "    pass\n"},  # the bare prompt
        {"task_id": "Mbpp/3", "completion": "    return all(n % i for i in range(2, n)) is False or n == 1\n"},
        {"task_id": "Mbpp/3", "completion": "    while True:\n        pass\n"},
    ]
    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(_samples(tmp_path, rows)), "-d", str(shared_data / "eval"),
                  "--task-arg", "timeout=2", "--output", str(tmp_path / "metrics.json"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    m = _json(res)["mbppplus_evalplus"]
    assert m["base_pass@1"] == pytest.approx(2 / 4) and m["pass@1"] == pytest.approx(1 / 4)
    log = [json.loads(line) for line in (tmp_path / "execution.jsonl").read_text().splitlines()]
    assert [(r["base_passed"], r["passed"], r["status"]) for r in log] == [
        (True, False, "failed"), (False, False, "failed"), (True, True, "passed"), (False, False, "timeout"),
    ]  # fmt: skip
    assert "plus input #" in log[0]["error"]


def test_humanevalplus_fixture(tmp_path):
    """Release layout: completions continue the prompt; float tolerance; any root of find_zero."""
    probs = {p["task_id"]: p for p in _read(FIXTURES / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz")}
    rows = [{"task_id": tid, "completion": p["canonical_solution"]} for tid, p in probs.items()]
    rows += [{"task_id": tid, "completion": ""} for tid in probs]  # bare prompts
    res = invoke(["eval", "score", "-t", "humanevalplus_evalplus", "-p", str(_samples(tmp_path, rows)), "-d", str(FIXTURES), "--json"])
    assert res.exit_code == 0, res.stderr
    m = _json(res)["humanevalplus_evalplus"]
    assert m["pass@1"] == 0.5 and m["base_pass@1"] == 0.5 and m["num_samples"] == 6

    newton = (
        "    x = 10.0\n    for _ in range(200):\n"
        "        d = sum(i * c * x ** (i - 1) for i, c in enumerate(xs) if i)\n"
        "        x = x - poly(xs, x) / d if d else x + 1\n    return x\n"
    )  # converges to another root than the canonical bisection
    rows = [
        {"task_id": "HumanEval/2", "completion": "    return number % 1.0 + 1e-9\n"},  # within 1e-6
        {"task_id": "HumanEval/2", "completion": "    return round(number % 1.0, 1)\n"},  # 3.5 ok, 1.33 is not
        {"task_id": "HumanEval/32", "completion": newton},
        {"task_id": "HumanEval/32", "completion": "    return 1.0\n"},  # a root of the base inputs? no
        # 100 MB of prints go nowhere: a chatty solution passes instead of hitting the output limit
        {"task_id": "HumanEval/2", "completion": "    for _ in range(10000):\n        print('x' * 10000)\n    return number % 1.0\n"},
    ]
    res = invoke(["eval", "score", "-t", "humanevalplus_evalplus", "-p", str(_samples(tmp_path, rows)), "-d", str(FIXTURES), "--output", str(tmp_path / "metrics.json"), "--json"])
    assert res.exit_code == 0, res.stderr
    log = [json.loads(line) for line in (tmp_path / "execution.jsonl").read_text().splitlines()]
    # grouped by problem: HumanEval/2's three samples, then HumanEval/32's two
    assert [(r["task_id"], r["passed"]) for r in log] == [
        ("HumanEval/2", True), ("HumanEval/2", False), ("HumanEval/2", True), ("HumanEval/32", True), ("HumanEval/32", False),
    ]  # fmt: skip


def test_runs_on_tiny_model(tiny_model, tmp_path):
    out = tmp_path / "out"
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "mbppplus_evalplus", "-d", str(FIXTURES), "-o", str(out),
                  "--limit", "2", "--n-samples", "2", "--max-new-tokens", "8", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    m = _json(res)["mbppplus_evalplus"]
    assert 0 <= m["pass@1"] <= m["base_pass@1"] <= 1 and m["num_samples"] == 4
    rows = {r["id"]: r for r in map(json.loads, (out / "mbppplus_evalplus" / "predictions.jsonl").read_text().splitlines())}
    code = "'''\nWrite a function to find the shared elements from the given two lists.\n'''\ndef similar_elements(test_tup1, test_tup2):\n"
    assert rows["Mbpp/2"]["prompt"].endswith("<|assistant|>\nHere is the completed function:\n\n\n```python\n" + code)
    assert all(a.startswith(code) for a in rows["Mbpp/2"]["answer"])
    assert len((out / "mbppplus_evalplus" / "execution.jsonl").read_text().splitlines()) == 4

    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "humanevalplus_evalplus", "-d", str(FIXTURES), "-o", str(out),
                  "--limit", "1", "--n-samples", "2", "--max-new-tokens", "8", "--chat-template", "none", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    m = _json(res)["humanevalplus_evalplus"]
    assert set(m) >= {"pass@1", "base_pass@1"} and "pass@10" not in m
    row = json.loads((out / "humanevalplus_evalplus" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == _read(FIXTURES / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz")[0]["prompt"]


def test_prepare_eval_then_score(tmp_path):
    """prepare-eval fetches the release file into evalplus/; scoring reads it from there."""
    mirror = tmp_path / "mirror" / "evalplus"
    mirror.mkdir(parents=True)
    (mirror / "MbppPlus-v0.1.0.jsonl.gz").write_bytes((FIXTURES / "evalplus" / "MbppPlus-v0.1.0.jsonl.gz").read_bytes())
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "mbppplus_evalplus", "--data-dir", str(tmp_path / "data"), "--mirror", srv.base])
    assert res.exit_code == 0, res.stderr
    rows = [{"task_id": p["task_id"], "solution": p["canonical_solution"]} for p in _read(mirror / "MbppPlus-v0.1.0.jsonl.gz")]
    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(_samples(tmp_path, rows)), "-d", str(tmp_path / "data"), "--json"])
    assert res.exit_code == 0, res.stderr
    assert _json(res)["mbppplus_evalplus"]["pass@1"] == 1.0


def test_errors(tmp_path):
    samples = _samples(tmp_path, [{"task_id": "Mbpp/2", "completion": "    return ()\n"}])
    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(samples), "-d", str(tmp_path)])
    assert res.exit_code == 2
    assert "MbppPlus-v0.1.0.jsonl.gz: not found" in res.stderr and "tulu data prepare-eval mbppplus_evalplus" in res.stderr
    res = invoke(["eval", "score", "-t", "humanevalplus_evalplus", "-p", str(samples)])
    assert res.exit_code == 2 and "task humanevalplus_evalplus needs --data-dir" in res.stderr
    # --input-file names the release file directly, wherever it is
    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(samples), "--input-file", str(FIXTURES / "evalplus" / "MbppPlus-v0.1.0.jsonl.gz"), "--json"])
    assert res.exit_code == 0 and _json(res)["mbppplus_evalplus"]["num_problems"] == 1

    data = tmp_path / "data" / "evalplus"
    data.mkdir(parents=True)
    good = _read(FIXTURES / "evalplus" / "MbppPlus-v0.1.0.jsonl.gz")[0]
    bad = {k: v for k, v in good.items() if k != "plus_input"}
    (data / "MbppPlus.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(samples), "-d", str(tmp_path / "data")])
    assert res.exit_code == 2 and "MbppPlus.jsonl:2: field 'plus_input' is missing" in res.stderr

    # A canonical solution that fails on its own inputs: its samples cannot be judged, and the metrics say so.
    broken = dict(good, canonical_solution="\ndef similar_elements(a, b):\n    raise ValueError('broken')\n")
    (data / "MbppPlus.jsonl").write_text(json.dumps(broken) + "\n")
    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(samples), "-d", str(tmp_path / "data"), "--json"])
    assert res.exit_code == 0, res.stderr
    m = _json(res)["mbppplus_evalplus"]
    assert m["reference_failures"] == ["Mbpp/2"] and m["status/reference_failed"] == 1 and m["pass@1"] == 0.0

    res = invoke(["eval", "score", "-t", "mbppplus_evalplus", "-p", str(samples), "--input-file", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "--input-file" in res.stderr
