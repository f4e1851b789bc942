"""`tulu eval run | score | list` end to end on the tiny model and real data samples; resume; error paths."""

from __future__ import annotations

import json
import shutil

import pytest

from _eval_helpers import invoke

TASKS = ["mmlu_0shot", "mmlu_5shot", "gsm_direct", "gsm_cot", "bbh_direct", "bbh_cot"]


def _run(model, data, out, tasks, *extra):
    return invoke(
        ["eval", "run", "-m", str(model), "-t", ",".join(tasks), "-d", str(data), "-o", str(out),
         "--limit", "2", "--max-new-tokens", "6", "--json", *extra]
    )


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tiny_model, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_run") / "out"
    res = _run(tiny_model, shared_data / "eval", out, TASKS)
    assert res.exit_code == 0, res.stderr
    return out, res


def test_every_task_end_to_end(full_run):
    out, res = full_run
    printed = json.loads(res.stdout)
    assert list(printed) == TASKS
    results = json.loads((out / "results.json").read_text())
    expected_counts = {"mmlu_0shot": 6, "mmlu_5shot": 6, "gsm_direct": 2, "gsm_cot": 2, "bbh_direct": 8, "bbh_cot": 8}
    for task in TASKS:
        rows = _rows(out / task / "predictions.jsonl")
        assert len(rows) == expected_counts[task]
        for r in rows:
            assert {"id", "prompt", "output", "answer", "reference", "metrics", "prompt_hash", "meta"} <= set(r)
        metrics = json.loads((out / task / "metrics.json").read_text())
        primary = {"mmlu": "average_acc", "gsm": "exact_match", "bbh": "average_exact_match"}[task.split("_")[0]]
        assert 0.0 <= metrics[primary] <= 1.0
        assert printed[task][primary] == metrics[primary]
        entry = results["results"][task]
        assert entry["num_examples"] == expected_counts[task] and entry["num_generated"] == expected_counts[task]
    assert results["results"]["mmlu_5shot"]["n_shot"] == 5 and results["results"]["gsm_cot"]["n_shot"] == 8
    assert results["results"]["gsm_cot"]["generation"]["max_new_tokens"] == 6
    assert results["results"]["gsm_cot"]["generation"]["stop"] == []  # chat template on: Tulu 2 relied on EOS
    assert results["chat_template"] == "tulu" and len(results["chat_template_sha256"]) == 64
    assert "torch" in results["versions"] and results["backend"]["backend"] == "hf"
    assert set(results["results"]["gsm_cot"]["data_files"]) == {"gsm/test.jsonl"}
    # MMLU log-likelihoods: four finite numbers per question, answer = best letter.
    row = _rows(out / "mmlu_0shot" / "predictions.jsonl")[0]
    assert len(row["output"]) == 4 and row["answer"] == "ABCD"[row["output"].index(max(row["output"]))]
    assert row["prompt"].endswith("<|assistant|>\nThe answer is:")


def test_rerun_resumes_and_regenerates_only_missing(full_run, tiny_model, shared_data, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(full_run[0], out)
    pred = out / "gsm_cot" / "predictions.jsonl"
    before = _rows(pred)
    # Simulate a run killed while writing: drop the last row and leave half a line behind.
    lines = pred.read_text().splitlines(keepends=True)
    pred.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    res = _run(tiny_model, shared_data / "eval", out, ["gsm_cot", "mmlu_0shot"])
    assert res.exit_code == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["gsm_cot"]["num_generated"] == 1 and results["results"]["gsm_cot"]["num_resumed"] == 1
    assert results["results"]["mmlu_0shot"]["num_generated"] == 0
    assert set(results["results"]) == set(TASKS)  # the tasks not rerun keep their earlier entries
    after = _rows(pred)
    assert sorted(r["id"] for r in after) == sorted(r["id"] for r in before)
    assert {r["id"]: r["output"] for r in after} == {r["id"]: r["output"] for r in before}  # greedy: same text
    # Changing a generation setting changes the request: nothing is reused.
    res = _run(tiny_model, shared_data / "eval", out, ["gsm_cot"], "--max-new-tokens", "3")
    assert res.exit_code == 0, res.stderr
    assert json.loads((out / "results.json").read_text())["results"]["gsm_cot"]["num_generated"] == 2
    # Another model in the same output dir: nothing is reused either.
    other = tmp_path / "other_model"
    shutil.copytree(tiny_model, other)
    res = _run(other, shared_data / "eval", out, ["gsm_cot"], "--max-new-tokens", "3")
    assert res.exit_code == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["gsm_cot"]["num_generated"] == 2
    assert list(results["results"]) == ["gsm_cot"]  # the other model's entries are not mixed in


def test_score_round_trip(full_run, tmp_path):
    out = full_run[0]
    for task in ("gsm_cot", "mmlu_5shot", "bbh_direct"):
        res = invoke(["eval", "score", "--task", task, "--predictions", str(out / task / "predictions.jsonl"), "--json"])
        assert res.exit_code == 0, res.stderr
        from tulu_cli.evaluation.score import flatten

        assert json.loads(res.stdout)[task] == flatten(json.loads((out / task / "metrics.json").read_text()))


def test_score_outputs_made_elsewhere(shared_data, tmp_path):
    # Only id + output: references come from --data-dir; answers extracted here.
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        json.dumps({"id": "0", "output": "Janet makes 9 * 2 = 18. So the answer is 18."}) + "\n"
        + json.dumps({"id": "1", "output": "The robe takes 2 + 1 = 4 bolts."}) + "\n"
    )
    res = invoke(["eval", "score", "-t", "gsm_cot", "-p", str(preds), "-d", str(shared_data / "eval"), "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == {"gsm_cot": {"exact_match": 0.5}}
    res = invoke(["eval", "score", "-t", "gsm_cot", "-p", str(preds)])
    assert res.exit_code == 2 and "pass --data-dir" in res.stderr


def test_score_malformed_predictions_line(tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "0", "output": "1", "reference": "1"}) + "\n{not json\n")
    res = invoke(["eval", "score", "-t", "gsm_cot", "-p", str(preds)])
    assert res.exit_code == 2 and f"{preds}:2: invalid JSON" in res.stderr
    preds.write_text(json.dumps({"id": "0", "reference": "1"}) + "\n")
    res = invoke(["eval", "score", "-t", "gsm_cot", "-p", str(preds)])
    assert res.exit_code == 2 and f"{preds}:1: field 'output' is missing" in res.stderr


def test_missing_data_dir_names_prepare_command(tiny_model, tmp_path):
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "mmlu_0shot", "-d", str(tmp_path / "data"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert f"tulu data prepare-eval mmlu --data-dir {tmp_path / 'data'}" in res.stderr
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_cot", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "needs --data-dir" in res.stderr


def test_malformed_data_row_names_file_and_line(tiny_model, shared_data, tmp_path):
    data = tmp_path / "data"
    (data / "gsm").mkdir(parents=True)
    good = (shared_data / "eval/gsm/test.jsonl").read_text().splitlines()[:2]
    (data / "gsm/test.jsonl").write_text("\n".join(good + ['{"question": "q", "answer": "no marker"}']) + "\n")
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_cot", "-d", str(data), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and f"{data / 'gsm/test.jsonl'}:3: field 'answer'" in res.stderr
    (data / "mmlu/data/test").mkdir(parents=True)
    (data / "mmlu/data/dev").mkdir(parents=True)
    (data / "mmlu/data/test/anatomy_test.csv").write_text('"Q1?",a,b,c,d,A\n"Q2?",a,b,c,E\n')
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "mmlu_0shot", "-d", str(data), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "anatomy_test.csv:2: expected 6 columns" in res.stderr


def test_option_errors(tiny_model, shared_data, tmp_path):
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_cott", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "did you mean gsm_cot" in res.stderr
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_cot", "-o", str(tmp_path), "--batch-size", "zero"])
    assert res.exit_code == 2 and "--batch-size" in res.stderr
    data = str(shared_data / "eval")
    # --dry-run runs every check a real run makes before loading the model, the model folder included.
    res = invoke(["eval", "run", "-m", str(tmp_path / "nope"), "-t", "gsm_cot", "-d", data, "-o", str(tmp_path), "--dry-run"])
    assert res.exit_code == 2 and f"--model {tmp_path / 'nope'}: no such folder" in res.stderr
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_cot", "-d", data, "-o", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 0 and json.loads(res.stdout)["tasks"] == ["gsm_cot"]
    assert not (tmp_path / "o").exists()
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_cot", "-t", "bbh_cot,mmlu_0shot", "-d", data, "-o", str(tmp_path),
                  "--stop", "\\n\\n", "--stop", "Q:", "--dry-run"])
    resolved = json.loads(res.stdout)
    assert resolved["stop"] == ["\n\n", "Q:"] and resolved["tasks"] == ["gsm_cot", "bbh_cot", "mmlu_0shot"]


def test_list(tmp_path):
    res = invoke(["eval", "list", "--json"])
    assert res.exit_code == 0
    tasks = json.loads(res.stdout)
    assert tasks["gsm_cot"]["n_shot"] == 8 and tasks["gsm_cot"]["max_examples"] == 200
    assert tasks["bbh_direct"]["generation"]["stop"] == ["\n\n"]
    assert tasks["mmlu_5shot"]["kind"] == "choices" and tasks["mmlu_5shot"]["metrics"][0] == "average_acc"
    # Each task's --task-arg keys with their help; none for a preset that reads none.
    assert set(tasks["mmlu_0shot"]["options"]) == {"subjects", "mmlu_subjects", "scoring"}
    assert tasks["mmlu_0shot"]["options"]["subjects"].startswith("comma-separated subjects")
    assert tasks["gsm_cot"]["options"] == {} and set(tasks["tydiqa_goldp_1shot"]["options"]) == {"languages", "max_context_tokens", "truncation"}


LONG_NAMES = ("tydiqa_no_context_1shot", "humanevalplus_evalplus", "codex_eval_temp_0.8", "alpaca_eval_2", "gsm_direct")


def test_list_piped_is_tab_separated_and_uncut():
    """CliRunner's stdout is not a terminal, like `tulu eval list | grep gsm`: plain lines, every name whole."""
    res = invoke(["eval", "list"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0] == "task\tdata\tshots\tkind\tsettings\tmetrics\ttask args\tsource\tdescription"
    names = [line.split("\t")[0] for line in lines[1:]]
    assert set(LONG_NAMES) <= set(names) and len(names) == len(set(names)) >= 21
    assert all(len(line.split("\t")) == 9 for line in lines) and "\u2026" not in res.stdout  # no "…"
    gsm = [line.split("\t") for line in lines if "gsm" in line]
    assert [g[0] for g in gsm] == ["gsm_cot", "gsm_direct"]
    assert gsm[0][1:4] == ["gsm", "8", "generate"] and gsm[0][6] == "-"
    mmlu = next(line.split("\t") for line in lines if line.startswith("mmlu_0shot\t"))
    assert mmlu[6] == "subjects, mmlu_subjects, scoring" and mmlu[4] == "log-likelihood"


@pytest.mark.parametrize("columns", ["60", "250"])
def test_list_at_a_terminal_never_cuts_a_name(monkeypatch, columns):
    """At a terminal: a table when it fits the names whole (250 columns), plain lines when it cannot (60)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", columns)
    res = invoke(["eval", "list"])
    assert res.exit_code == 0
    assert ("\u2503" in res.stdout) == (columns == "250")  # the table's heavy vertical border
    for name in LONG_NAMES:
        assert name in res.stdout
    assert "\u2026" not in res.stdout


def test_task_args_recorded_per_task_and_result_table_piped(tiny_model, shared_data, tmp_path):
    res = _run(tiny_model, shared_data / "eval", tmp_path / "o", ["mmlu_0shot", "gsm_direct"], "--task-arg", "subjects=abstract_algebra", "--limit", "1")
    assert res.exit_code == 0, res.stderr
    results = json.loads((tmp_path / "o/results.json").read_text())["results"]
    assert results["mmlu_0shot"]["task_args"] == {"subjects": "abstract_algebra"}  # gsm_direct does not read it
    assert results["gsm_direct"]["task_args"] == {}
    assert results["mmlu_0shot"]["num_examples"] == 1 and _rows(tmp_path / "o/mmlu_0shot/predictions.jsonl")[0]["id"] == "abstract_algebra/0"
    # Temp files that killed runs left (dead pid on this host) go at the next start; a live process's stay.
    stale = [tmp_path / "o" / _staged("results.json", _dead_pid()), tmp_path / "o" / "gsm_direct" / _staged("metrics.json", _dead_pid())]
    live = tmp_path / "o" / _staged("results.json", 1)
    for f in (*stale, live):
        f.write_text("{")
    # Resumed without --json: the result table on (non-terminal) stderr is plain lines, task named on each.
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "mmlu_0shot,gsm_direct", "-d", str(shared_data / "eval"), "-o", str(tmp_path / "o"),
                  "--limit", "1", "--max-new-tokens", "6", "--task-arg", "subjects=abstract_algebra"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    table = [line.split("\t") for line in res.stderr.splitlines() if "\t" in line]
    assert table[0] == ["task", "metric", "value", "n"]
    assert ["mmlu_0shot", "average_acc"] == table[1][:2] and table[1][3] == "1"
    assert ["gsm_direct", "exact_match"] == table[-1][:2] and table[-1][3] == "1"
    assert not any(f.exists() for f in stale) and live.exists()


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _staged(name: str, pid: int) -> str:
    """The temp name a writer with ``pid`` on this host gives ``name`` (tulu_cli.paths' scheme)."""
    import socket

    return f".{name}.tulu-tmp-{socket.gethostname()}-{pid}"


def test_plain_prompts_use_newline_stop(tiny_model, shared_data, tmp_path):
    res = _run(tiny_model, shared_data / "eval", tmp_path / "o", ["gsm_direct"], "--chat-template", "none", "--limit", "1")
    assert res.exit_code == 0, res.stderr
    results = json.loads((tmp_path / "o/results.json").read_text())
    assert results["results"]["gsm_direct"]["generation"]["stop"] == ["\n"]
    row = _rows(tmp_path / "o/gsm_direct/predictions.jsonl")[0]
    assert "\n" not in row["output"] and row["prompt"].endswith("\nAnswer:") and "<|user|>" not in row["prompt"]
