"""HumanEval presets (codex_eval_temp_*, humanevalplus): open-instruct's prompts, stops and harness, opt-ins, sample files, runs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from _eval_helpers import OpenAIServer, invoke, last_user_message
from tulu_cli.errors import TuluError
from tulu_cli.evaluation.passk import pass_at_k
from tulu_cli.evaluation.tasks import TaskContext, get_task
from tulu_cli.evaluation.tasks.codex import code_from_output, humaneval_check

FIXTURES = Path(__file__).parent / "fixtures" / "eval_code"
CODEX = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # eval/codex_humaneval/run_eval.py, "those mentioned in the codex paper"
# HumanEval/2 as published (the fixture holds copies of HumanEval/0, /2 and /32).
TRUNCATE = (
    '\n\ndef truncate_number(number: float) -> float:\n    """ Given a positive floating point number, it can be decomposed into\n'
    "    and integer part (largest integer smaller than given number) and decimals\n    (leftover part always smaller than 1).\n\n"
    '    Return the decimal part of the number.\n    >>> truncate_number(3.5)\n    0.5\n    """\n'
)
TRUNCATE_TEST = (
    "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n    assert candidate(3.5) == 0.5\n"
    "    assert abs(candidate(1.33) - 0.33) < 1e-6\n    assert abs(candidate(123.456) - 0.456) < 1e-6\n"
)


def _problems(name: str = "HumanEval.jsonl.gz") -> dict[str, dict]:
    with gzip.open(FIXTURES / "codex_humaneval" / name, "rt") as f:
        return {p["task_id"]: p for p in map(json.loads, f)}


def _json(res) -> dict:
    return json.loads(res.stdout[res.stdout.index("{") :])


def _ctx(template: str, data_dir: Path | None = FIXTURES, **task_args: str) -> TaskContext:
    return TaskContext(data_dir=data_dir, chat_template=template, options=SimpleNamespace(task_args=task_args, input_file=None))


def _prompt(task_name: str, ctx: TaskContext, task_id: str = "HumanEval/2") -> str:
    task = get_task(task_name)
    ex = {e.id: e for e in task.load(ctx)}[task_id]
    return task.build(ex, ctx).prompt


@pytest.mark.parametrize(
    "output,code,whole",
    [
        ("    return 1\n", "    return 1\n", False),  # a plain continuation stays as it is
        ("    return 1\n```\nThis adds one.", "    return 1\n", False),  # the chat model closed its block
        ("```python\ndef f(x):\n    return x\n```\nDone.", "def f(x):\n    return x\n", True),  # a chat API answer
        ("Sure! Here it is:\n```python\nimport math\ndef f(x):\n    return x\n```", "import math\ndef f(x):\n    return x\n", True),
        ("def f_helper(x):\n    return x\n", "def f_helper(x):\n    return x\n", False),  # another name is not the solution
        ("    def f(y):\n        return y\n    return f(1)\n", "    def f(y):\n        return y\n    return f(1)\n", False),  # nested
    ],
)
def test_code_from_output(output, code, whole):
    """The rule behind --task-arg unwrap=on (open-instruct itself runs the output as it is)."""
    assert code_from_output(output, "f") == (code, whole)


def test_presets():
    for name, temperature, primary in (("codex_eval_temp_0.1", 0.1, "pass@1"), ("codex_eval_temp_0.8", 0.8, "pass@10")):
        task = get_task(name)
        g = task.generation
        assert (g.temperature, g.top_p, g.n, g.max_new_tokens, g.stop) == (temperature, 0.95, 20, 512, CODEX)
        assert task.stop_for(True) == CODEX and task.metrics[0] == primary  # f3424591's chat answer opens no block
        assert task.default_chat_template == "none"  # submit_eval_jobs.py: codex ran without --use_chat_format
        assert task.data_name == "codex_humaneval" and task.required == ()
        assert task.source.startswith("open-instruct f3424591 eval/codex_humaneval/run_eval.py")
        assert set(task.options) == {"timeout", "workers", "unwrap", "humanevalpack"}
        assert task.sandbox_settings(_ctx("none")) == (3.0, None)  # evaluate_functional_correctness(timeout=3.0)
        assert [f.path for f in task.data_files] == ["codex_humaneval/HumanEval.jsonl.gz", "codex_humaneval/humanevalpack.jsonl"]
        assert "/resolve/48dbcf3b8935a9f4077f4f0622c9a931f5a453a5/data/python/data/humanevalpack.jsonl" in task.data_files[1].url
    plus = get_task("humanevalplus")
    g = plus.generation
    assert (g.temperature, g.top_p, g.n, g.max_new_tokens, g.stop) == (0.8, 0.95, 20, 512, CODEX)
    assert plus.stop_for(True) == CODEX + ("\n```",) and plus.stop_for(False) == CODEX
    assert plus.default_chat_template == "tulu" and plus.metrics[0] == "pass@10"
    assert plus.sandbox_settings(_ctx("tulu")) == (3.0, None)  # the plain HumanEval harness
    (f,) = plus.data_files
    assert f.path == "codex_humaneval/HumanEvalPlus-OriginFmt.jsonl.gz" and plus.required == (f.path,)
    assert f.url == "https://github.com/evalplus/humanevalplus_release/raw/1e96903185780a2659be407d0ecdc5650e3957e8/HumanEvalPlus-OriginFmt.jsonl.gz"
    assert f.sha256 == "6f18d3ef486ecf425e466633d0f12b5de6c4368a694b1a43ce6c7dd83115570e"  # git blob of v0.1.9 (fdb628ee)


def test_prompts_as_open_instruct_wrote_them(tmp_path):
    assert _problems()["HumanEval/2"]["prompt"] == TRUNCATE
    # No chat format (the Tulu 2 jobs): the bare prompt.
    assert _prompt("codex_eval_temp_0.1", _ctx("none")) == TRUNCATE
    # Chat format asked for, no HumanEvalPack file: the answer turn is the phrase alone (f3424591) ...
    assert _prompt("codex_eval_temp_0.8", _ctx("tulu")) == (
        "<|user|>\nComplete the following python function.\n\n\n" + TRUNCATE + "\n<|assistant|>\nHere is the completed function:\n\n\n"
    )
    # ... and opens a code block at f7f3d3f1 (HumanEval+).
    assert _prompt("humanevalplus", _ctx("tulu")) == (
        "<|user|>\nComplete the following python function.\n\n\n" + TRUNCATE + "\n<|assistant|>\nHere is the completed function:\n\n\n```python\n"
    )
    assert _prompt("humanevalplus", _ctx("none")) == TRUNCATE

    # With the HumanEvalPack file in its place: its instruction is the user turn, the answer repeats the prompt in a block.
    data = tmp_path / "data"
    (data / "codex_humaneval").mkdir(parents=True)
    (data / "codex_humaneval" / "HumanEval.jsonl.gz").write_bytes((FIXTURES / "codex_humaneval" / "HumanEval.jsonl.gz").read_bytes())
    hep = [{"task_id": f"Python/{n}", "instruction": f"Write a Python function for problem {n}."} for n in (0, 2, 32)]
    (data / "codex_humaneval" / "humanevalpack.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hep))
    ctx = _ctx("tulu", data)
    assert _prompt("codex_eval_temp_0.1", ctx) == (
        "<|user|>\nWrite a Python function for problem 2.\n<|assistant|>\nHere is the function:\n\n```python\n" + TRUNCATE
    )
    assert get_task("codex_eval_temp_0.1").stop_for(True, ctx) == CODEX + ("\n```",)
    assert get_task("humanevalplus").stop_for(True, ctx) == CODEX + ("\n```",)  # one closing-fence stop, not two
    assert get_task("codex_eval_temp_0.1").stop_for(False, ctx) == CODEX
    # Opt out of it, or name another file.
    assert _prompt("codex_eval_temp_0.1", _ctx("tulu", data, humanevalpack="off")).endswith("Here is the completed function:\n\n\n")
    assert get_task("codex_eval_temp_0.1").stop_for(True, _ctx("tulu", data, humanevalpack="off")) == CODEX
    other = tmp_path / "hep.jsonl"
    other.write_text(json.dumps({"task_id": "Python/2", "instruction": "Other words."}) + "\n")
    assert _prompt("codex_eval_temp_0.1", _ctx("tulu", None, humanevalpack=str(other))).startswith("<|user|>\nOther words.\n<|assistant|>")
    with pytest.raises(TuluError, match="hep.jsonl: no instruction for HumanEval/0"):
        _prompt("codex_eval_temp_0.1", _ctx("tulu", None, humanevalpack=str(other)), "HumanEval/0")
    with pytest.raises(TuluError, match="--task-arg humanevalpack: nope.jsonl does not exist"):
        get_task("codex_eval_temp_0.1").check(_ctx("tulu", None, humanevalpack="nope.jsonl"))
    get_task("codex_eval_temp_0.1").check(_ctx("none", None, humanevalpack="nope.jsonl"))  # no chat: not read


def test_check_program_is_open_instructs():
    p = _problems()["HumanEval/2"]
    assert p["test"] == TRUNCATE_TEST
    # problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
    assert humaneval_check(p, TRUNCATE + "    return number % 1.0\n") == (
        TRUNCATE + "    return number % 1.0\n" + "\n" + TRUNCATE_TEST + "\n" + "check(truncate_number)"
    )


def _samples(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_human_eval_samples_with_known_pass_at_k(tmp_path):
    """Five samples per problem: all correct, 2 of 5 correct, none correct (bare prompt or wrong code)."""
    probs = _problems()
    right = {tid: p["canonical_solution"] for tid, p in probs.items()}
    rows = [{"task_id": "HumanEval/0", "completion": right["HumanEval/0"]} for _ in range(5)]
    rows += [{"task_id": "HumanEval/2", "completion": c} for c in (right["HumanEval/2"], "    return 0.5\n", right["HumanEval/2"], "", "    return number\n")]
    rows += [{"task_id": "HumanEval/32", "completion": c} for c in ("", "    return 0.0\n", "    while True:\n        pass\n", "", "    return None\n")]
    # No --data-dir: the problems come from the human-eval package (the fixture holds copies of three of them).
    res = invoke(["eval", "score", "-t", "codex_eval_temp_0.1", "-p", str(_samples(tmp_path, rows)), "--task-arg", "timeout=2", "--output", str(tmp_path / "metrics.json"), "--json"])
    assert res.exit_code == 0, res.stderr
    m = _json(res)["codex_eval_temp_0.1"]
    assert m["pass@1"] == pytest.approx((1 + 2 / 5 + 0) / 3)
    assert m["pass@5"] == pytest.approx((1 + 1 + 0) / 3)
    assert "pass@10" not in m  # k above the number of samples is not reported
    assert m["num_problems"] == 3 and m["num_samples"] == 15
    assert m["status/passed"] == 7 and m["status/timeout"] == 1
    assert m["data/file"].endswith("human_eval/data/HumanEval.jsonl.gz") and len(m["data/sha256"]) == 64
    assert m["num_executed"] == 9  # five identical samples of HumanEval/0, two of HumanEval/2, two bare prompts run once
    log = [json.loads(line) for line in (tmp_path / "execution.jsonl").read_text().splitlines()]
    assert len(log) == 15 and log[0] == {**log[0], "task_id": "HumanEval/0", "sample": 0, "passed": True}
    assert "AssertionError" in log[6]["error"]  # the wrong constant fails the tests

    # Scoring again reuses settled outcomes by their key and reruns time-outs.
    again = invoke(["eval", "score", "-t", "codex_eval_temp_0.1", "-p", str(tmp_path / "samples.jsonl"), "--task-arg", "timeout=2", "--output", str(tmp_path / "metrics.json"), "--json"])
    assert _json(again)["codex_eval_temp_0.1"]["pass@1"] == pytest.approx(m["pass@1"])
    assert _json(again)["codex_eval_temp_0.1"]["num_executed"] == 1 and _json(again)["codex_eval_temp_0.1"]["status/timeout"] == 1


def test_reference_harness_and_its_opt_ins(tmp_path):
    """open-instruct runs prompt + output as it is, for 3 s: code blocks fail unless unwrap=on, slow code unless timeout is raised."""
    p0 = _problems()["HumanEval/0"]
    body = p0["canonical_solution"]
    header = "from typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
    rows = [
        {"task_id": "HumanEval/0", "completion": "Here you go:\n```python\n" + header + body + "```\n"},  # prose and a block
        {"task_id": "HumanEval/0", "completion": body + "\n```"},  # the chat model closed its block
        {"task_id": "HumanEval/0", "completion": header + body},  # a whole function after the prompt: it redefines the stub
        {"task_id": "HumanEval/0", "completion": "    import time\n    time.sleep(0.5)\n" + body},  # right, but 7 calls take 3.5 s
    ]
    samples = _samples(tmp_path, rows)
    score = ["eval", "score", "-t", "codex_eval_temp_0.8", "-p", str(samples), "-d", str(FIXTURES), "--output", str(tmp_path / "metrics.json"), "--json"]
    res = invoke(score)
    assert res.exit_code == 0, res.stderr
    log = [json.loads(line) for line in (tmp_path / "execution.jsonl").read_text().splitlines()]
    assert [(r["passed"], r["status"]) for r in log] == [(False, "failed"), (False, "failed"), (True, "passed"), (False, "timeout")]
    assert "SyntaxError" in log[0]["error"] and _json(res)["codex_eval_temp_0.8"]["pass@1"] == pytest.approx(1 / 4)

    res = invoke(score + ["--task-arg", "unwrap=on", "--task-arg", "timeout=6"])
    assert res.exit_code == 0, res.stderr
    assert _json(res)["codex_eval_temp_0.8"]["pass@1"] == 1.0
    res = invoke(score + ["--task-arg", "unwrap=maybe"])
    assert res.exit_code == 2 and "--task-arg unwrap=maybe: expected on or off" in res.stderr


def test_whole_solutions_and_data_dir(tmp_path):
    """evalplus-style whole solutions, an evalplus samples folder, and the open-instruct data layout."""
    probs = _problems()
    p0 = probs["HumanEval/0"]
    whole = p0["prompt"] + p0["canonical_solution"]
    rows = [
        {"task_id": "HumanEval/0", "solution": whole},
        {"task_id": "HumanEval/0", "solution": "def has_close_elements(numbers, threshold):\n    return True\n"},
        # a demo block does not run, as in human-eval (which execs the code under another name)
        {"task_id": "HumanEval/0", "solution": whole + "\nif __name__ == '__main__':\n    print(input())\n    raise SystemExit(1)\n"},
    ]
    res = invoke(["eval", "score", "-t", "codex_eval_temp_0.8", "-p", str(_samples(tmp_path, rows)), "-d", str(FIXTURES), "--json"])
    assert res.exit_code == 0, res.stderr
    assert _json(res)["codex_eval_temp_0.8"]["pass@1"] == pytest.approx(2 / 3)

    # An evalplus samples folder: <task_id with _>/<n>.py, whole programs.
    folder = tmp_path / "samples"
    for n, code in enumerate([whole, "def has_close_elements(numbers, threshold):\n    return False\n", whole]):
        (folder / "HumanEval_0").mkdir(parents=True, exist_ok=True)
        (folder / "HumanEval_0" / f"{n}.py").write_text(code)
    res = invoke(["eval", "score", "-t", "codex_eval_temp_0.8", "-p", str(folder), "-d", str(FIXTURES), "--json"])
    assert res.exit_code == 0, res.stderr
    assert _json(res)["codex_eval_temp_0.8"]["pass@1"] == pytest.approx(2 / 3)
    res = invoke(["eval", "score", "-t", "codex_eval_temp_0.8", "-p", str(tmp_path), "-d", str(FIXTURES)])
    assert res.exit_code == 2 and "no <task_id>/<n>.py files" in res.stderr

    # HumanEval/1 exists in the package but not in the --data-dir copy: the data dir wins.
    res = invoke(["eval", "score", "-t", "codex_eval_temp_0.1", "-p", str(_samples(tmp_path, [{"task_id": "HumanEval/1", "completion": ""}])), "-d", str(FIXTURES)])
    assert res.exit_code == 2 and "samples.jsonl:1: task_id 'HumanEval/1' is not a problem of codex_eval_temp_0.1" in res.stderr


def test_humanevalplus_original_format(tmp_path):
    """HumanEvalPlus-OriginFmt (real v0.1.9 lines for HumanEval/0 and /2) under human-eval's harness."""
    probs = _problems("HumanEvalPlus-OriginFmt.jsonl.gz")
    assert list(probs) == ["HumanEval/0", "HumanEval/2"] and "def check(candidate):\n    inputs = [" in probs["HumanEval/2"]["test"]
    rows = [
        {"task_id": "HumanEval/0", "completion": probs["HumanEval/0"]["canonical_solution"]},
        {"task_id": "HumanEval/2", "completion": "    return number % 1.0\n"},
        {"task_id": "HumanEval/2", "completion": "    return round(number % 1.0, 1)\n"},  # right on 3.5 only
    ]
    res = invoke(["eval", "score", "-t", "humanevalplus", "-p", str(_samples(tmp_path, rows)), "-d", str(FIXTURES), "--json"])
    assert res.exit_code == 0, res.stderr
    m = _json(res)["humanevalplus"]
    assert m["pass@1"] == pytest.approx((1 + 1 / 2) / 2) and m["num_problems"] == 2
    assert m["data/file"].endswith("codex_humaneval/HumanEvalPlus-OriginFmt.jsonl.gz")
    # open-instruct's own prediction file format is human-eval's: the same numbers from the same rows.
    assert not any(k.startswith("base_") for k in m)


def test_runs_on_tiny_model_with_each_presets_template(tiny_model, tmp_path):
    out = tmp_path / "out"
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "codex_eval_temp_0.1,humanevalplus", "-d", str(FIXTURES), "-o", str(out),
                  "--limit", "2", "--n-samples", "3", "--max-new-tokens", "8", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    m = _json(res)["codex_eval_temp_0.1"]
    assert 0.0 <= m["pass@1"] <= 1.0 and m["num_samples"] == 6 and "pass@5" not in m
    rows = {r["id"]: r for r in map(json.loads, (out / "codex_eval_temp_0.1" / "predictions.jsonl").read_text().splitlines())}
    assert list(sorted(rows)) == ["HumanEval/0", "HumanEval/2"]
    assert rows["HumanEval/2"]["prompt"] == TRUNCATE  # codex: no chat format unless asked
    assert rows["HumanEval/2"]["answer"] == [TRUNCATE + o for o in rows["HumanEval/2"]["output"]]
    assert all(not any(s in o for s in CODEX) for o in rows["HumanEval/2"]["output"])
    plus = {r["id"]: r for r in map(json.loads, (out / "humanevalplus" / "predictions.jsonl").read_text().splitlines())}
    assert plus["HumanEval/2"]["prompt"].endswith(TRUNCATE + "\n<|assistant|>\nHere is the completed function:\n\n\n```python\n")
    results = json.loads((out / "results.json").read_text())
    assert results["chat_template"] == {"codex_eval_temp_0.1": "none", "humanevalplus": "tulu"}
    assert set(results["chat_template_sha256"]) == {"codex_eval_temp_0.1", "humanevalplus"}
    entry = results["results"]["codex_eval_temp_0.1"]
    assert entry["chat_template"] == "none" and entry["generation"]["temperature"] == 0.1 and entry["generation"]["n"] == 3
    assert entry["generation"]["stop"] == list(CODEX)
    assert results["results"]["humanevalplus"]["chat_template"] == "tulu"
    assert results["results"]["humanevalplus"]["generation"]["stop"] == list(CODEX) + ["\n```"]
    assert len((out / "codex_eval_temp_0.1" / "execution.jsonl").read_text().splitlines()) == 6

    # eval score on our own predictions file gives the same numbers.
    res2 = invoke(["eval", "score", "-t", "codex_eval_temp_0.1", "-p", str(out / "codex_eval_temp_0.1" / "predictions.jsonl"), "-d", str(FIXTURES), "--json"])
    assert res2.exit_code == 0, res2.stderr
    assert _json(res2)["codex_eval_temp_0.1"]["pass@1"] == m["pass@1"]

    # --chat-template given: every task uses it; the run-level fields are plain again.
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "codex_eval_temp_0.8", "-o", str(tmp_path / "chat"), "--limit", "1",
                  "--n-samples", "2", "--max-new-tokens", "8", "--chat-template", "tulu", "-d", str(FIXTURES)])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    row = json.loads((tmp_path / "chat" / "codex_eval_temp_0.8" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["prompt"].endswith("\n<|assistant|>\nHere is the completed function:\n\n\n") and len(row["output"]) == 2
    results = json.loads((tmp_path / "chat" / "results.json").read_text())
    assert results["chat_template"] == "tulu" and len(results["chat_template_sha256"]) == 64
    assert results["options"]["chat_template"] == "tulu"


def test_errors(tmp_path):
    def score(lines: str, *extra: str):
        path = tmp_path / "bad.jsonl"
        path.write_text(lines)
        return invoke(["eval", "score", "-t", "codex_eval_temp_0.1", "-p", str(path), "-d", str(FIXTURES), *extra])

    ok = json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n"
    res = score(ok + "\n{not json\n")
    assert res.exit_code == 2 and "bad.jsonl:3: invalid JSON" in res.stderr  # blank lines still count
    res = score(ok + "\n" + json.dumps({"task_id": "HumanEval/9"}) + "\n")
    assert res.exit_code == 2 and "bad.jsonl:3: needs a string 'completion'" in res.stderr
    res = score(ok + json.dumps({"task_id": "HumanEval/0", "text": "x"}) + "\n")
    assert res.exit_code == 2 and "bad.jsonl:2: needs a string 'completion' (human-eval) or 'solution' (evalplus)" in res.stderr
    res = score(ok + json.dumps({"completion": "x"}) + "\n")
    assert res.exit_code == 2 and "bad.jsonl:2: field 'task_id' is missing" in res.stderr
    res = score(ok + json.dumps({"task_id": "HumanEval/0", "solution": "x"}) + "\n")
    assert res.exit_code == 2 and "bad.jsonl:2: task 'HumanEval/0' mixes 'completion' and 'solution' rows" in res.stderr
    res = score(ok, "--task-arg", "timeout=soon")
    assert res.exit_code == 2 and "timeout=SECONDS" in res.stderr

    broken = tmp_path / "data" / "codex_humaneval"
    broken.mkdir(parents=True)
    with gzip.open(broken / "HumanEval.jsonl.gz", "wt") as f:
        f.write(json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n"}) + "\n")
    res = invoke(["eval", "score", "-t", "codex_eval_temp_0.1", "-p", str(tmp_path / "bad.jsonl"), "-d", str(tmp_path / "data")])
    assert res.exit_code == 2 and "HumanEval.jsonl.gz:1: field 'test' is missing" in res.stderr
    res = invoke(["eval", "score", "-t", "humanevalplus", "-p", str(tmp_path / "bad.jsonl"), "-d", str(tmp_path / "data")])
    assert res.exit_code == 2 and "HumanEvalPlus-OriginFmt.jsonl.gz: not found" in res.stderr and "prepare-eval humanevalplus" in res.stderr


def test_pass_at_k_reference_values():
    # the numbers the metrics above rely on (human-eval's estimator)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(20, 1, 10) == pytest.approx(0.5)


def test_chat_api_answers_whole_functions(tmp_path):
    p0 = _problems()["HumanEval/0"]
    answer = "Sure.\n```python\n" + p0["prompt"] + p0["canonical_solution"] + "```\nIt compares every pair."
    args = ["eval", "run", "-m", "gpt-test", "--backend", "openai", "-t", "codex_eval_temp_0.1", "-d", str(FIXTURES),
            "--limit", "1", "--n-samples", "2", "-o", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--json"]
    with OpenAIServer(reply=lambda body: answer) as srv:
        res = invoke(args + ["--base-url", srv.base_url])
        assert res.exit_code == 2 and "pass --stop ''" in res.stderr and srv.count == 0
        res = invoke(args + ["--base-url", srv.base_url, "--stop", "", "--task-arg", "unwrap=on"])
        assert res.exit_code == 0, res.stderr
        assert last_user_message(srv.requests[0]) == (
            "Complete the following python function. Please only output the code for the completed function.\n\n\n" + p0["prompt"]
        )
        assert srv.requests[0]["n"] == 2 and srv.requests[0]["top_p"] == 0.95 and not srv.requests[0].get("stop")
    assert _json(res)["codex_eval_temp_0.1"]["pass@1"] == 1.0  # the answer's code block, unwrapped
