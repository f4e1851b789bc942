"""mbppplus as open-instruct f7f3d3f1 eval/mbpp ran it: the hub's test split past 100 problems, its prompts, stop, completion + test."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from _eval_fixtures import MBPPPLUS_PROBLEMS as PROBLEMS
from _eval_fixtures import write_mbppplus_split as _split
from _eval_helpers import invoke
from _fileserver import serve
from tulu_cli.evaluation.tasks import TaskContext, get_task

pq = pytest.importorskip("pyarrow.parquet")

def _ctx(data_dir: Path, template: str = "tulu", **task_args: str) -> TaskContext:
    return TaskContext(data_dir=data_dir, chat_template=template, options=SimpleNamespace(task_args=task_args, input_file=None))


def _json(res) -> dict:
    return json.loads(res.stdout[res.stdout.index("{") :])


def _samples(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_preset():
    task = get_task("mbppplus")
    g = task.generation
    # vllm.SamplingParams(n=20, temperature=0.1, max_tokens=512, stop=['```']): top_p left at 1
    assert (g.max_new_tokens, g.temperature, g.top_p, g.n, g.stop) == (512, 0.1, 1.0, 20, ("```",))
    assert task.stop_for(True) == ("```",) and task.stop_for(False) == ("```",)
    assert task.default_chat_template == "tulu" and task.metrics == ("pass@1", "pass@5", "pass@10", "pass@20")
    assert task.source.startswith("open-instruct f7f3d3f1 eval/mbpp/run_eval.py")
    assert task.sandbox_settings(_ctx(Path("."))) == (10.0, None)  # compute_code_eval(..., timeout=10.0)
    assert set(task.options) == {"timeout", "workers", "skip"}
    (f,) = task.data_files
    assert f.path == "mbppplus/test.parquet" and task.required == (f.path,)
    assert f.url == (
        "https://huggingface.co/datasets/evalplus/mbppplus/resolve/b2d74c91837c3f2a20c1299ae98133cbe7cfa077/"
        "data/test-00000-of-00001-d5781c9c51e02795.parquet"
    )


def test_split_and_prompts(tmp_path):
    _split(tmp_path / "mbppplus" / "test.parquet")
    task = get_task("mbppplus")
    examples = task.load(_ctx(tmp_path))
    assert [e.id for e in examples] == ["Mbpp/3", "Mbpp/4", "Mbpp/6"]  # rows 100.. in file order (the shuffle is discarded)
    assert len(task.load(_ctx(tmp_path, skip="0"))) == 103
    chat = [task.build(e, _ctx(tmp_path)).prompt for e in examples]
    # prompt + code.split(":")[0]: the code up to its FIRST colon, imports included; a type annotation cuts the def line short.
    assert chat[0] == (
        "<|user|>\nComplete the following python function.\n\n\nWrite a python function to identify non-prime numbers.\n"
        "import math\ndef is_not_prime(n)\n<|assistant|>\nHere is the completed function:\n\n\n```python\n"
    )
    assert chat[2] == (
        "<|user|>\nComplete the following python function.\n\n\nWrite a python function to check whether the two numbers differ "
        "at one bit position only or not.\ndef is_Power_Of_Two(x\n<|assistant|>\nHere is the completed function:\n\n\n```python\n"
    )
    plain = task.build(examples[1], _ctx(tmp_path, "none"))
    assert plain.prompt == (
        "Write a function to find the n largest integers from a given list of numbers, returned in descending order.\n"
        "import heapq as hq\ndef heap_queue_largest(nums"
    )
    assert plain.messages == [{"role": "user", "content": "Complete the following python function. Please only output the code "
                               "for the completed function.\n\n\n" + plain.prompt}]  # fmt: skip


def test_completion_plus_test_as_open_instruct_runs_it(tmp_path):
    _split(tmp_path / "mbppplus" / "test.parquet")
    whole = "import math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n    return any(n % i == 0 for i in range(2, n))\n"
    rows = [
        {"task_id": "Mbpp/3", "completion": whole},  # what a chat model writes after the opened block
        {"task_id": "Mbpp/3", "completion": ":\n    return n == 1\n"},  # a continuation of the prompt: run alone, it is no program
        {"task_id": "Mbpp/3", "completion": "def is_not_prime(n):\n    return n == 1\n"},  # wrong on 10 and 35
        {"task_id": "Mbpp/6", "completion": PROBLEMS[2]["code"]},
        {"task_id": "Mbpp/6", "completion": "```python\n" + PROBLEMS[2]["code"] + "```"},  # not unwrapped
    ]
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(_samples(tmp_path, rows)), "-d", str(tmp_path), "--output", str(tmp_path / "metrics.json"), "--json"])
    assert res.exit_code == 0, res.stderr
    m = _json(res)["mbppplus"]
    assert m["pass@1"] == pytest.approx((1 / 3 + 1 / 2) / 2) and m["num_problems"] == 2 and m["num_samples"] == 5
    log = [json.loads(line) for line in (tmp_path / "execution.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in log] == [True, False, False, True, False]
    assert "SyntaxError" in log[1]["error"] and "AssertionError" in log[2]["error"]

    # open-instruct's own mbpp_chat_predictions.jsonl: the hub's integer ids, "completion".
    theirs = [{"task_id": 4, "prompt": "...", "completion": PROBLEMS[1]["code"]},
              {"task_id": 4, "prompt": "...", "completion": "import time\ntime.sleep(3)\n" + PROBLEMS[1]["code"]}]  # fmt: skip
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(_samples(tmp_path, theirs)), "-d", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.stderr
    assert _json(res)["mbppplus"]["pass@1"] == 1.0  # 3 s is well within the 10 s
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(tmp_path / "samples.jsonl"), "-d", str(tmp_path), "--task-arg", "timeout=2", "--json"])
    assert _json(res)["mbppplus"]["pass@1"] == 0.5 and _json(res)["mbppplus"]["status/timeout"] == 1


def test_prepare_eval_then_score(tmp_path):
    _split(tmp_path / "mirror" / "mbppplus" / "test.parquet")
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "mbppplus", "--data-dir", str(tmp_path / "data"), "--mirror", srv.base])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "data" / "mbppplus" / "test.parquet").read_bytes() == (tmp_path / "mirror" / "mbppplus" / "test.parquet").read_bytes()
    rows = [{"task_id": f"Mbpp/{p['task_id']}", "solution": p["code"]} for p in PROBLEMS]
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(_samples(tmp_path, rows)), "-d", str(tmp_path / "data"), "--json"])
    assert res.exit_code == 0, res.stderr
    assert _json(res)["mbppplus"]["pass@1"] == 1.0 and _json(res)["mbppplus"]["num_problems"] == 3


def test_errors(tmp_path):
    samples = _samples(tmp_path, [{"task_id": "Mbpp/3", "completion": "x"}])
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples)])
    assert res.exit_code == 2 and "task mbppplus needs --data-dir" in res.stderr
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "-d", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "test.parquet: not found" in res.stderr and "tulu data prepare-eval mbppplus" in res.stderr

    bad = tmp_path / "bad" / "mbppplus" / "test.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_text("not parquet")
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "-d", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "test.parquet: not a readable parquet file" in res.stderr
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist([{"task_id": 3, "prompt": "p", "code": "c"}]), bad)
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "-d", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "test.parquet: column 'test' is missing" in res.stderr
    _split(bad, filler=0)
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "-d", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "no problems after the first 100 (--task-arg skip=0 keeps them all)" in res.stderr
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "-d", str(tmp_path / "bad"), "--task-arg", "skip=0", "--json"])
    assert res.exit_code == 0 and _json(res)["mbppplus"]["num_problems"] == 1
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "-d", str(tmp_path / "bad"), "--task-arg", "skip=some"])
    assert res.exit_code == 2 and "--task-arg skip=some: expected a number" in res.stderr

    # --input-file: JSON Lines with the same fields also work; a missing field names file:line.
    lines = tmp_path / "split.jsonl"
    lines.write_text(json.dumps(PROBLEMS[0]) + "\n" + json.dumps({"task_id": 4, "prompt": "p", "code": "c"}) + "\n")
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "--input-file", str(lines), "--task-arg", "skip=0"])
    assert res.exit_code == 2 and "split.jsonl:2: field 'test' is missing" in res.stderr
    lines.write_text(json.dumps(PROBLEMS[0]) + "\n" + json.dumps({**PROBLEMS[1], "task_id": "four"}) + "\n")
    res = invoke(["eval", "score", "-t", "mbppplus", "-p", str(samples), "--input-file", str(lines), "--task-arg", "skip=0"])
    assert res.exit_code == 2 and "split.jsonl:2: 'task_id' must be a problem number, got 'four'" in res.stderr


@pytest.mark.slow
def test_runs_on_tiny_model(tiny_model, tmp_path):
    _split(tmp_path / "data" / "mbppplus" / "test.parquet")
    out = tmp_path / "out"
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "mbppplus", "-d", str(tmp_path / "data"), "-o", str(out),
                  "--limit", "1", "--n-samples", "2", "--max-new-tokens", "8", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert _json(res)["mbppplus"]["num_samples"] == 2
    row = json.loads((out / "mbppplus" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["id"] == "Mbpp/3" and row["prompt"].endswith("def is_not_prime(n)\n<|assistant|>\nHere is the completed function:\n\n\n```python\n")
    assert row["answer"] == row["output"] and all("```" not in o for o in row["output"])
    results = json.loads((out / "results.json").read_text())
    assert results["chat_template"] == "tulu" and results["results"]["mbppplus"]["generation"]["stop"] == ["```"]
    assert results["results"]["mbppplus"]["generation"]["top_p"] == 1.0
