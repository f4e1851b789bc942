"""Everything a task needs is checked before the model loads: one line, exit 2, no backend created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _eval_helpers import invoke

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture
def no_model(monkeypatch):
    """load_backend must never be reached; the model path does not exist either."""
    calls = []

    def refuse(opts):
        calls.append(opts.model)
        raise AssertionError("the model was loaded before the task checks failed")

    monkeypatch.setattr("tulu_cli.evaluation.runner.load_backend", refuse)
    return calls


def _run(tmp_path, *args):
    return invoke(["eval", "run", "-m", str(tmp_path / "no-such-model"), "-o", str(tmp_path / "out"), *args])


def _data(tmp_path, *fixture_dirs: Path) -> Path:
    import shutil

    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    for d in fixture_dirs:
        shutil.copytree(d, root / d.name)
    return root


def _model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_toxigen_classifier_missing_or_not_a_model(tmp_path, no_model):
    data = _data(tmp_path, FIX / "eval_safety/toxigen")
    res = _run(tmp_path, "-t", "toxigen", "-d", str(data))
    assert res.exit_code == 2 and "task toxigen needs --toxigen-classifier PATH" in res.stderr
    res = _run(tmp_path, "-t", "toxigen", "-d", str(data), "--toxigen-classifier", str(tmp_path / "cls"))
    assert res.exit_code == 2 and f"--toxigen-classifier: {tmp_path / 'cls'} is not a model folder" in res.stderr
    res = _run(tmp_path, "-t", "toxigen", "-d", str(tmp_path / "empty"), "--toxigen-classifier", str(_model_folder(tmp_path / "c")))
    assert res.exit_code == 2 and "tulu data prepare-eval toxigen" in res.stderr
    assert no_model == []


def test_truthfulqa_judges_missing_or_not_a_model(tmp_path, no_model):
    data = _data(tmp_path, FIX / "eval_truthfulqa/truthfulqa")
    res = _run(tmp_path, "-t", "truthfulqa", "-d", str(data))
    assert res.exit_code == 2 and "task truthfulqa needs judge models" in res.stderr
    res = _run(tmp_path, "-t", "truthfulqa", "-d", str(data), "--task-arg", f"truth_judge={tmp_path / 'j'}")
    assert res.exit_code == 2 and f"--task-arg truth_judge: {tmp_path / 'j'} is not a model folder" in res.stderr
    res = _run(tmp_path, "-t", "truthfulqa_mc", "-d", str(data), "--task-arg", "mc_source=nope")
    assert res.exit_code == 2 and "--task-arg mc_source: 'nope'" in res.stderr
    assert no_model == []


def test_input_file_missing(tmp_path, no_model):
    for task in ("ifeval", "xstest", "alpaca_eval", "humanevalplus", "codex_eval_temp_0.1"):
        res = _run(tmp_path, "-t", task, "--input-file", str(tmp_path / "nope.jsonl"))
        assert res.exit_code == 2, task
        assert f"--input-file: {tmp_path / 'nope.jsonl'} does not exist" in res.stderr, (task, res.stderr)
    assert no_model == []


@pytest.mark.parametrize(
    "task,needle",
    [
        ("ifeval", "tulu data prepare-eval ifeval"),
        ("humanevalplus", "tulu data prepare-eval humanevalplus"),
        ("mbppplus", "tulu data prepare-eval mbppplus"),
        ("xstest", "tulu data prepare-eval xstest"),
        ("alpaca_eval_2", "tulu data prepare-eval alpaca_eval"),
        ("mmlu_0shot", "tulu data prepare-eval mmlu"),
    ],
)
def test_missing_data_before_model(tmp_path, no_model, task, needle):
    res = _run(tmp_path, "-t", task, "-d", str(tmp_path / "empty"))
    assert res.exit_code == 2 and needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _run(tmp_path, "-t", task)
    assert res.exit_code == 2 and "needs --data-dir" in res.stderr
    assert no_model == []


def test_code_tasks_on_a_chat_api_need_stop_override(tmp_path, no_model):
    res = _run(tmp_path, "-t", "codex_eval_temp_0.1", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1")
    assert res.exit_code == 2 and "pass --stop ''" in res.stderr
    assert no_model == []


API = ("--backend", "openai", "--base-url", "http://127.0.0.1:9/v1")  # no model folder to check


def test_input_file_in_a_config_file(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("input_file:\n  ifeval: my_inputs.jsonl\n  xstest: prompts.csv\n")
    res = _run(tmp_path, "-t", "ifeval,xstest", "--config", str(cfg), "-d", str(tmp_path), *API, "--dry-run")
    assert res.exit_code == 2 and "--input-file: my_inputs.jsonl does not exist" in res.stderr  # --dry-run checks the files too
    (tmp_path / "my_inputs.jsonl").write_text((FIX / "ifeval/input_data.jsonl").read_text())
    (tmp_path / "prompts.csv").write_text((FIX / "eval_safety/xstest/xstest_v2_prompts.csv").read_text())
    res = _run(tmp_path, "-t", "ifeval,xstest", "--config", str(cfg), "-d", str(tmp_path), *API, "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["input_file"] == {"ifeval": "my_inputs.jsonl", "xstest": "prompts.csv"}


def test_later_task_checked_before_the_first_runs(tmp_path, shared_data, no_model):
    """A broken second task stops the run before the model loads, not after the first task's hour."""
    res = _run(tmp_path, "-t", "gsm_cot,toxigen", "-d", str(shared_data / "eval"))
    assert res.exit_code == 2 and "--toxigen-classifier" in res.stderr
    assert no_model == []
    assert not (tmp_path / "out" / "gsm_cot" / "predictions.jsonl").exists()


def test_nonexistent_model_is_the_error_once_tasks_are_fine(tmp_path, shared_data):
    """Without the stub, the same run reaches the model and says the model is missing: the order is checks, then model."""
    res = _run(tmp_path, "-t", "gsm_cot", "-d", str(shared_data / "eval"), "--limit", "1")
    assert res.exit_code == 2 and "no-such-model" in res.stderr


# ---------------------------------------------------------------- --input-file per task


def test_plain_input_file_refused_with_several_readers(tmp_path, no_model):
    f = tmp_path / "in.jsonl"
    f.write_text("{}\n")
    res = _run(tmp_path, "-t", "ifeval,gsm_cot,xstest", "--input-file", str(f))
    assert res.exit_code == 2
    assert "several tasks read an input file (ifeval, xstest)" in res.stderr and "--input-file ifeval=PATH" in res.stderr
    res = _run(tmp_path, "-t", "gsm_cot", "--input-file", str(f))
    assert res.exit_code == 2 and "none of the tasks (gsm_cot) reads an input file" in res.stderr and "ifeval" in res.stderr
    assert no_model == []


def test_per_task_input_file_goes_to_its_task(tmp_path, no_model):
    ifeval_in = tmp_path / "if.jsonl"
    ifeval_in.write_text((FIX / "ifeval/input_data.jsonl").read_text())
    res = _run(tmp_path, "-t", "ifeval,xstest", "--input-file", f"ifeval={ifeval_in}", "--input-file", f"xstest={tmp_path / 'x.csv'}")
    assert res.exit_code == 2 and f"--input-file: {tmp_path / 'x.csv'} does not exist" in res.stderr
    res = _run(tmp_path, "-t", "ifeval", "--input-file", f"xstest={ifeval_in}")
    assert res.exit_code == 2 and "task xstest is not being run (ifeval)" in res.stderr
    res = _run(tmp_path, "-t", "ifeval,gsm_cot", "--input-file", f"gsm_cot={ifeval_in}")
    assert res.exit_code == 2 and "task gsm_cot reads no input file" in res.stderr
    res = _run(tmp_path, "-t", "ifeval,xstest", "--input-file", f"ifeval={ifeval_in}", "--input-file", str(ifeval_in))
    assert res.exit_code == 2 and "mix of a plain PATH" in res.stderr
    res = _run(tmp_path, "-t", "ifeval,xstest", "--input-file", f"ifeval={ifeval_in}", "--input-file", f"ifeval={ifeval_in}")
    assert res.exit_code == 2 and "'ifeval=' given twice" in res.stderr
    assert no_model == []
    (tmp_path / "x=y.csv").write_text((FIX / "eval_safety/xstest/xstest_v2_prompts.csv").read_text())
    res = _run(tmp_path, "-t", "ifeval,xstest", "--input-file", f"ifeval={ifeval_in}", "--input-file", "xstest=x=y.csv", "-d", str(tmp_path), *API, "--dry-run")
    assert res.exit_code == 0 and json.loads(res.stdout)["input_file"] == {"ifeval": str(ifeval_in), "xstest": "x=y.csv"}


def test_input_file_forms_when_scoring(tmp_path):
    """eval score takes both forms; a plain path holding '=' is a path, not TASK=PATH."""
    other = tmp_path / "a=b.jsonl"
    other.write_text((FIX / "ifeval/input_data.jsonl").read_text().splitlines()[0] + "\n")
    preds = tmp_path / "responses.jsonl"  # scoring writes the official result files beside it
    preds.write_text((FIX / "ifeval/responses.jsonl").read_text())
    for given in (str(other), f"ifeval={other}"):
        res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "--input-file", given, "--json"])
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["ifeval"]["num_prompts"] == 1
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "--input-file", f"xstest={other}"])
    assert res.exit_code == 2 and "task xstest is not being run" in res.stderr
