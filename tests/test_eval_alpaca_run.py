"""AlpacaEval 1 and 2 end to end: tiny model, local judge, the package's result files; scoring outputs made elsewhere."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests._judge_server import JudgeServer
from tulu_cli.cli.main import app
from tulu_cli.evaluation.tasks.alpaca_eval import read_outputs_file

FIXTURES = Path(__file__).parent / "fixtures" / "eval_alpaca"
runner = CliRunner()


def _json_out(res) -> dict:
    return json.loads(res.stdout[res.stdout.index("{"):])


def _expected_win_rate(annotations: list[dict], win: float, lose: float) -> float:
    # the local judge prefers the longer output; identical outputs are draws
    prefs = [1.5 if a["output_1"] == a["output_2"] else (win if len(a["output_2"]) > len(a["output_1"]) else lose) for a in annotations]
    return 100 * sum(p - 1 for p in prefs) / len(prefs)


def test_real_reference_sample_loads(shared_data):
    recs = read_outputs_file(shared_data / "eval" / "alpaca_eval" / "results" / "text_davinci_003" / "model_outputs.json")
    assert len(recs) == 25 and recs[0]["generator"] == "text_davinci_003" and recs[0]["dataset"] == "helpful_base"


def test_run_both_versions_on_tiny_model(tiny_model, tmp_path):
    out = tmp_path / "out"
    with JudgeServer() as server:
        res = runner.invoke(
            app,
            ["eval", "run", "--model", str(tiny_model), "--tasks", "alpaca_eval,alpaca_eval_2", "--data-dir", str(FIXTURES),
             "--output-dir", str(out), "--max-new-tokens", "8", "--judge-model", "judge-x", "--judge-base-url", server.url, "--json"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        v2_requests = [r for r in server.requests if r.get("logprobs")]
        assert v2_requests and all(r["max_tokens"] == 1 and r["top_logprobs"] == 5 for r in v2_requests)
    metrics = _json_out(res)
    for task, annotator, win, lose in (("alpaca_eval", "alpaca_eval_gpt4", 2.0, 1.0), ("alpaca_eval_2", "weighted_alpaca_eval_gpt4_turbo", 1.8, 1.2)):
        folder = out / task
        outputs = json.loads((folder / "model_outputs.json").read_text())
        assert len(outputs) == 6
        assert all(set(o) == {"dataset", "instruction", "output", "generator"} for o in outputs)
        assert {o["generator"] for o in outputs} == {"model-greedy-long"}  # Tulu 2's naming from the model folder
        anns = json.loads((folder / annotator / "annotations.json").read_text())
        assert len(anns) == 6
        assert all(a["annotator"] == annotator and a["generator_2"] == "model-greedy-long" for a in anns)
        assert all(1.0 <= a["preference"] <= 2.0 for a in anns)
        m = metrics[task]
        assert m["win_rate"] == pytest.approx(_expected_win_rate(anns, win, lose))
        assert m["n_total"] == 6 and m["judge_unparsed"] == 0
        lines = (folder / annotator / "leaderboard.csv").read_text().splitlines()
        assert lines[0].startswith(",win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,discrete_win_rate,mode,avg_length")
        assert lines[1].startswith("model-greedy-long,")
    assert anns[0]["generator_1"] == "gpt4_1106_preview"
    # a rerun resumes: nothing is generated again and every judgement comes from the cache
    with JudgeServer() as server:
        res = runner.invoke(
            app,
            ["eval", "run", "--model", str(tiny_model), "--tasks", "alpaca_eval_2", "--data-dir", str(FIXTURES),
             "--output-dir", str(out), "--max-new-tokens", "8", "--judge-model", "judge-x", "--judge-base-url", server.url, "--json"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert server.requests == []
    assert _json_out(res)["alpaca_eval_2"]["win_rate"] == metrics["alpaca_eval_2"]["win_rate"]
    assert json.loads((out / "results.json").read_text())["results"]["alpaca_eval_2"]["num_resumed"] == 6
    m2 = metrics["alpaca_eval_2"]
    assert m2["length_controlled_glm"] == "length_controlled_minimal"  # no df_gamed.csv in the fixture data
    assert 0.0 <= m2["length_controlled_winrate"] <= 100.0
    assert "length_controlled_winrate" not in metrics["alpaca_eval"]


def test_score_outputs_made_elsewhere(tmp_path):
    refs = read_outputs_file(FIXTURES / "alpaca_eval" / "alpaca_eval.json")
    # a "model" that answers at length on even items and tersely on odd ones, in the package's format (JSON lines)
    mine = [{"instruction": r["instruction"], "output": ("long answer " * 200) if i % 2 == 0 else "ok", "generator": "my-model"} for i, r in enumerate(refs)]
    path = tmp_path / "model_outputs.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in reversed(mine)))  # order does not matter
    gamed = tmp_path / "df_gamed.csv"
    with gamed.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "model", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"])
        for sign in (1, -1):
            for i in range(6):
                d = sign * (0.5 + 0.1 * i)
                w.writerow([i, "gamed", 1 / (1 + math.exp(2 * d)), d, 0.1 * i - 0.3, False])
    with JudgeServer() as server:
        res = runner.invoke(
            app,
            ["eval", "score", "--task", "alpaca_eval_2", "--predictions", str(path), "--data-dir", str(FIXTURES),
             "--judge-model", "judge-x", "--judge-base-url", server.url, "--task-arg", f"gamed_csv={gamed}", "--output", str(tmp_path / "metrics.json"), "--json"],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["alpaca_eval_2"]
    assert m["win_rate"] == pytest.approx(100 * (3 * 0.8 + 3 * 0.2) / 6)
    assert m["length_controlled_glm"] == "length_controlled_v1"
    assert set(k.split("/")[-1] for k in m if k.startswith("glm/weights/")) == {
        "np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)",
    }  # fmt: skip
    board = (tmp_path / "weighted_alpaca_eval_gpt4_turbo" / "leaderboard.csv").read_text().splitlines()
    assert board[1].startswith("my-model,")
    anns = json.loads((tmp_path / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json").read_text())
    assert [a["instruction"] for a in anns] == [r["instruction"] for r in refs]  # back in the eval set's order


def test_generation_without_judge_and_errors(tmp_path):
    refs = read_outputs_file(FIXTURES / "alpaca_eval" / "alpaca_eval.json")
    path = tmp_path / "model_outputs.json"
    path.write_text(json.dumps([{"instruction": r["instruction"], "output": "abc", "generator": "g"} for r in refs]))
    res = runner.invoke(app, ["eval", "score", "--task", "alpaca_eval", "--predictions", str(path), "--data-dir", str(FIXTURES), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["alpaca_eval"]
    assert m == {"avg_length": 3, "n_outputs": 6, "judged": False}
    assert json.loads((tmp_path / "model_outputs.json").read_text())[0]["generator"] == "g"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": refs[0]["instruction"], "output": "x"}, {"instruction": "Not in the set", "output": "y"}]))
    res = runner.invoke(app, ["eval", "score", "--task", "alpaca_eval", "--predictions", str(bad), "--data-dir", str(FIXTURES)])
    assert res.exit_code == 2 and "bad.json: record 2: instruction is not in the AlpacaEval set" in res.output
    bad.write_text(json.dumps([{"instruction": refs[0]["instruction"]}]))
    res = runner.invoke(app, ["eval", "score", "--task", "alpaca_eval", "--predictions", str(bad), "--data-dir", str(FIXTURES)])
    assert res.exit_code == 2 and "record 1: field 'output' is missing" in res.output
    res = runner.invoke(app, ["eval", "score", "--task", "alpaca_eval_2", "--predictions", str(path), "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "alpaca_eval_gpt4_baseline.json: not found" in res.output and "prepare-eval alpaca_eval" in res.output
    with JudgeServer() as server:
        res = runner.invoke(
            app,
            ["eval", "score", "--task", "alpaca_eval", "--predictions", str(path), "--data-dir", str(FIXTURES),
             "--judge-model", "reject-me", "--judge-base-url", server.url, "--judge-api-key-env", "NO_SUCH_KEY_VAR"],
        )  # fmt: skip
    assert res.exit_code == 2 and "HTTP 401" in res.output and "NO_SUCH_KEY_VAR" in res.output


# The first reference output of the AlpacaEval 1 eval set (tatsu-lab/alpaca_eval "alpaca_eval", text-davinci-003,
# 300 max tokens), as every alpaca_eval_gpt4 annotation in the alpaca_eval repository shows it (output_1).
FIRST_REFERENCE = (
    "Some famous actors that started their careers on Broadway include: \n1. Hugh Jackman \n2. Meryl Streep \n"
    "3. Denzel Washington \n4. Julia Roberts \n5. Christopher Walken \n6. Anthony Rapp \n7. Audra McDonald \n"
    "8. Nathan Lane \n9. Sarah Jessica Parker \n10. Lin-Manuel Miranda"
)
# The same instruction in alpaca_eval's GitHub results/text_davinci_003/model_outputs.json: another sample, not the reference.
LEADERBOARD_ENTRY = "Some famous actors that started their careers on Broadway are Tom Hanks, Meryl Streep, and Christopher Walken."


def test_v1_reference_is_the_package_default(tmp_path):
    """Tulu 2 passed no --reference_path: the package's eval-set outputs are the default; the 2048-token file is opt-in."""
    from types import SimpleNamespace

    from tulu_cli.errors import TuluError
    from tulu_cli.evaluation.tasks import TaskContext, get_task

    task = get_task("alpaca_eval")
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    regenerated = [{"instruction": r["instruction"], "output": f"long answer {i}", "generator": "text_davinci_003"}
                   for i, r in enumerate(read_outputs_file(FIXTURES / "alpaca_eval" / "alpaca_eval.json"))]  # fmt: skip
    (data / "alpaca_eval" / "davinci_003_outputs.json").write_text(json.dumps(regenerated))

    def first_reference(**task_args):
        return task.load(TaskContext(data_dir=data, options=SimpleNamespace(task_args=task_args)))[0].reference

    assert first_reference() == FIRST_REFERENCE
    assert first_reference(reference="alpaca_eval") == FIRST_REFERENCE
    assert first_reference(reference="davinci_003_2048") == "long answer 0"
    with pytest.raises(TuluError, match=r"--task-arg reference=davinci: not a reference of task alpaca_eval \(choices: alpaca_eval, davinci_003_2048\)"):
        first_reference(reference="davinci")

    # the alpaca_eval repository's leaderboard entry for text_davinci_003 holds other outputs: never taken as the reference
    only_leaderboard = tmp_path / "leaderboard"
    (only_leaderboard / "alpaca_eval" / "results" / "text_davinci_003").mkdir(parents=True)
    (only_leaderboard / "alpaca_eval" / "results" / "text_davinci_003" / "model_outputs.json").write_text(
        json.dumps([{"instruction": regenerated[0]["instruction"], "output": LEADERBOARD_ENTRY, "generator": "text_davinci_003"}])
    )
    with pytest.raises(TuluError, match="alpaca_eval/alpaca_eval.json: not found; task alpaca_eval needs the reference outputs"):
        task.load(TaskContext(data_dir=only_leaderboard, options=SimpleNamespace(task_args={})))
    with pytest.raises(TuluError, match="davinci_003_outputs.json: not found; task alpaca_eval needs the reference outputs of reference=davinci_003_2048"):
        task.load(TaskContext(data_dir=only_leaderboard, options=SimpleNamespace(task_args={"reference": "davinci_003_2048"})))
    with pytest.raises(TuluError, match="not a reference of task alpaca_eval_2 \\(choices: none"):
        get_task("alpaca_eval_2").load(TaskContext(data_dir=data, options=SimpleNamespace(task_args={"reference": "alpaca_eval"})))


def test_prepare_eval_layout(tmp_path):
    """`tulu data prepare-eval alpaca_eval` (from a mirror) writes what both presets load, including df_gamed.csv."""
    from types import SimpleNamespace

    from tests._fileserver import serve
    from tulu_cli.evaluation.prepare import files_for
    from tulu_cli.evaluation.tasks import TaskContext, get_task

    assert {f.path: f.url for f in files_for("alpaca_eval")} == {
        "alpaca_eval/alpaca_eval.json": "hf://tatsu-lab/alpaca_eval/alpaca_eval.json@2edc6fad8be6b14ea7230aabfd08188da6b8b814",
        "alpaca_eval/davinci_003_outputs.json": "hf://hamishivi/alpaca-farm-davinci-003-2048-token/davinci_003_outputs.json",
        "alpaca_eval/alpaca_eval_gpt4_baseline.json": "hf://tatsu-lab/alpaca_eval/alpaca_eval_gpt4_baseline.json@2edc6fad8be6b14ea7230aabfd08188da6b8b814",
        "alpaca_eval/df_gamed.csv": "hf://tatsu-lab/alpaca_eval/df_gamed.csv@2edc6fad8be6b14ea7230aabfd08188da6b8b814",
    }  # fmt: skip
    refs = json.loads((FIXTURES / "alpaca_eval" / "alpaca_eval.json").read_text())
    mirror = tmp_path / "mirror" / "alpaca_eval"
    mirror.mkdir(parents=True)
    (mirror / "alpaca_eval.json").write_text(json.dumps(refs))
    (mirror / "davinci_003_outputs.json").write_text(json.dumps([dict(r, output="regenerated") for r in refs]))
    (mirror / "alpaca_eval_gpt4_baseline.json").write_text(json.dumps(refs))
    (mirror / "df_gamed.csv").write_text("index,model,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n0,g,0.4,0.5,0.1,False\n")
    data = tmp_path / "data"
    with serve(tmp_path / "mirror") as server:
        res = runner.invoke(app, ["data", "prepare-eval", "alpaca_eval", "--data-dir", str(data), "--mirror", server.base])
    assert res.exit_code == 0, res.output
    for name in ("alpaca_eval", "alpaca_eval_2"):
        task = get_task(name)
        assert len(task.load(TaskContext(data_dir=data))) == 6
    assert get_task("alpaca_eval").load(TaskContext(data_dir=data))[0].reference == FIRST_REFERENCE
    opt_in = TaskContext(data_dir=data, options=SimpleNamespace(task_args={"reference": "davinci_003_2048"}))
    assert get_task("alpaca_eval").load(opt_in)[0].reference == "regenerated"
    assert (data / "alpaca_eval" / "df_gamed.csv").is_file()
