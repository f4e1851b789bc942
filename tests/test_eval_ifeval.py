"""The ifeval preset end to end: generation (tiny model, local API), eval score of foreign responses, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _eval_helpers import OpenAIServer, invoke, last_user_message

FIXTURES = Path(__file__).parent / "fixtures" / "ifeval"

# Replies that follow every instruction of the fixture prompts, except the quotation one.
REPLIES = {
    "rivers": "Rivers carry water to the sea and shape the land.",
    "sea": "the sea is wide and blue and the waves roll gently onto the sandy shore all day long.",
    "2+2": "2+2 is 4.",
}


def _reply(body):
    text = last_user_message(body)
    return next(v for k, v in REPLIES.items() if k in text)


def _metrics(res, task="ifeval"):
    return json.loads(res.stdout[res.stdout.index("{"):])[task]


def test_listed():
    res = invoke(["eval", "list"])
    assert res.exit_code == 0 and "ifeval" in res.stdout


def test_run_against_a_local_api(tmp_path):
    out = tmp_path / "out"
    with OpenAIServer(reply=_reply) as srv:
        res = invoke(["eval", "run", "-m", "gpt-test", "--backend", "openai", "--base-url", srv.base_url,
                      "-t", "ifeval", "-d", str(FIXTURES), "-o", str(out), "--json"])
        assert res.exit_code == 0, res.stderr
        assert srv.count == 3
        body = next(b for b in srv.requests if "rivers" in last_user_message(b))
        # Tulu 2 / open-instruct settings: greedy, 2048 new tokens, the raw prompt as the user turn.
        assert body["temperature"] == 0 and body["max_tokens"] == 2048 and "stop" not in body
        assert body["messages"] == [{"role": "user", "content": "Write a short note about rivers. Do not use any commas."}]
    m = _metrics(res)
    assert m["prompt_level_strict_acc"] == pytest.approx(2 / 3)
    assert m["inst_level_strict_acc"] == pytest.approx(3 / 4)
    assert m["prompt_level_loose_acc"] == pytest.approx(2 / 3)
    assert m["per_instruction/startend:quotation/strict"] == 0.0
    rows = [json.loads(l) for l in (out / "ifeval" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["11", "12", "13"]
    assert all(set(r["reference"]) == {"instruction_id_list", "kwargs"} for r in rows)
    official = [json.loads(l) for l in (out / "ifeval" / "eval_results_strict.jsonl").read_text().splitlines()]
    assert [o["follow_all_instructions"] for o in official] == [True, True, False]
    assert (out / "ifeval" / "eval_results_loose.jsonl").is_file()

    # Our own predictions file re-scores to the same numbers.
    res2 = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(out / "ifeval" / "predictions.jsonl"), "--json"])
    assert res2.exit_code == 0, res2.stderr
    assert _metrics(res2)["inst_level_loose_acc"] == m["inst_level_loose_acc"]


def test_run_on_tiny_model_chat_and_plain(tiny_model, tmp_path):
    for template in ("tulu", "none"):
        out = tmp_path / template
        res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "ifeval", "-d", str(FIXTURES), "-o", str(out),
                      "--max-new-tokens", "8", "--chat-template", template, "--json"])
        assert res.exit_code == 0, res.stderr
        m = _metrics(res)
        for key in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"):
            assert 0.0 <= m[key] <= 1.0
        assert m["num_prompts"] == 3 and m["num_instructions"] == 4
        rows = [json.loads(l) for l in (out / "ifeval" / "predictions.jsonl").read_text().splitlines()]
        prompt = next(r["prompt"] for r in rows if r["id"] == "11")
        if template == "tulu":
            assert prompt == "<|user|>\nWrite a short note about rivers. Do not use any commas.\n<|assistant|>\n"
        else:
            assert prompt == "Write a short note about rivers. Do not use any commas."


def test_score_foreign_responses(tmp_path):
    preds = tmp_path / "responses.jsonl"
    shutil.copy(FIXTURES / "responses.jsonl", preds)
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "-d", str(FIXTURES), "--json"])
    assert res.exit_code == 0, res.stderr
    m = _metrics(res)
    assert m["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert m["inst_level_strict_acc"] == pytest.approx(2 / 4)
    assert m["prompt_level_loose_acc"] == pytest.approx(2 / 3)
    assert m["inst_level_loose_acc"] == pytest.approx(3 / 4)
    # Not a tulu run folder: nothing is written beside the responses, and stderr says where they could go.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["responses.jsonl"]
    assert "ifeval's extra result files are not written" in res.stderr and "pass --output FILE" in res.stderr


def test_score_writes_result_files_into_output_or_the_run_folder(tmp_path):
    preds = tmp_path / "responses.jsonl"
    shutil.copy(FIXTURES / "responses.jsonl", preds)
    out = tmp_path / "scored" / "metrics.json"
    out.parent.mkdir()
    import socket
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (out.parent / f".metrics.json.tulu-tmp-{socket.gethostname()}-{child.pid}").write_text("{")  # a killed scorer's
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "-d", str(FIXTURES), "--output", str(out)])
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval_results_loose.jsonl", "eval_results_strict.jsonl", "metrics.json"]
    strict = [json.loads(line) for line in (out.parent / "eval_results_strict.jsonl").read_text().splitlines()]
    assert [r["follow_all_instructions"] for r in strict] == [True, False, False]  # 1 of 3 prompts, as the metrics above
    # Predictions inside a tulu run folder (RUN/results.json beside RUN/ifeval/): the files go beside them.
    run_task = tmp_path / "run" / "ifeval"
    run_task.mkdir(parents=True)
    (tmp_path / "run" / "results.json").write_text("{}")
    shutil.copy(preds, run_task / "responses.jsonl")
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(run_task / "responses.jsonl"), "-d", str(FIXTURES)])
    assert res.exit_code == 0, res.stderr
    assert "not written" not in res.stderr
    assert (run_task / "eval_results_loose.jsonl").is_file() and (run_task / "eval_results_strict.jsonl").is_file()


def test_input_file_option(tmp_path):
    other = tmp_path / "my_inputs.jsonl"
    other.write_text((FIXTURES / "input_data.jsonl").read_text().splitlines()[0] + "\n")
    preds = tmp_path / "responses.jsonl"
    shutil.copy(FIXTURES / "responses.jsonl", preds)  # extra responses are fine
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "--input-file", str(other), "--json"])
    assert res.exit_code == 0, res.stderr
    assert _metrics(res)["num_prompts"] == 1


def test_errors(tmp_path):
    preds = tmp_path / "responses.jsonl"
    rows = (FIXTURES / "responses.jsonl").read_text().splitlines()
    preds.write_text("\n".join(rows[:2]) + "\n")
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "-d", str(FIXTURES)])
    assert res.exit_code == 2 and "no response for 1 of 3 prompts" in res.stderr and "key 13" in res.stderr

    preds.write_text(rows[0] + "\n" + json.dumps({"prompt": "x"}) + "\n")
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "-d", str(FIXTURES)])
    assert res.exit_code == 2 and "responses.jsonl:2: field 'response' is missing" in res.stderr

    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(FIXTURES / "responses.jsonl"), "-d", str(tmp_path)])
    assert res.exit_code == 2 and "tulu data prepare-eval ifeval" in res.stderr

    bad_input = tmp_path / "input_data.jsonl"
    bad_input.write_text((FIXTURES / "input_data.jsonl").read_text() + '{"key": 99, "prompt": "p", "instruction_id_list": ["x:y"], "kwargs": [{}]}\n')
    res = invoke(["eval", "run", "-m", "m", "-t", "ifeval", "-d", str(tmp_path), "-o", str(tmp_path / "o"),
                  "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"])
    assert res.exit_code == 2 and "input_data.jsonl:4: unknown instruction id 'x:y'" in res.stderr

    res = invoke(["eval", "run", "-m", "m", "-t", "ifeval", "--input-file", str(tmp_path / "nope.jsonl"),
                  "-o", str(tmp_path / "o"), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"])
    assert res.exit_code == 2 and "--input-file" in res.stderr and "does not exist" in res.stderr


def test_gpt4_reproduction_through_the_cli(shared_data, tmp_path):
    folder = shared_data / "ifeval"
    preds = tmp_path / "gpt4.jsonl"
    shutil.copy(folder / "input_response_data_gpt4_20231107_145030.jsonl", preds)
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "-d", str(folder),
                  "--input-file", "input_data_gpt4_20231107_145030.jsonl", "--json"])
    assert res.exit_code == 0, res.stderr
    m = _metrics(res)
    assert round(m["prompt_level_strict_acc"] * 541) == 415  # paper: 416 (76.89%)
    assert round(m["inst_level_strict_acc"] * 834) == 696  # paper: 697 (83.57%)
    assert round(m["prompt_level_loose_acc"] * 541) == 429  # paper: 429 (79.30%)
    assert round(m["inst_level_loose_acc"] * 834) == 712  # paper: 712 (85.37%)
    # The current input file has key 2785's corrected prompt, which GPT-4 never saw.
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "-d", str(folder)])
    assert res.exit_code == 2 and "key 2785" in res.stderr


def test_prepare_eval_from_a_mirror_then_score(shared_data, tmp_path):
    from _fileserver import serve

    mirror = tmp_path / "mirror" / "ifeval"
    mirror.mkdir(parents=True)
    shutil.copy(shared_data / "ifeval" / "input_data.jsonl", mirror / "input_data.jsonl")
    data = tmp_path / "data" / "eval"
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "ifeval", "--data-dir", str(data), "--mirror", srv.base])
    assert res.exit_code == 0, res.stderr
    assert (data / "ifeval" / "input_data.jsonl").read_bytes() == (shared_data / "ifeval" / "input_data.jsonl").read_bytes()
    # A tampered mirror fails the published checksum.
    (mirror / "input_data.jsonl").write_text('{"key": 1}\n')
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "ifeval", "--data-dir", str(tmp_path / "other"), "--mirror", srv.base])
    assert res.exit_code == 2 and "sha256" in res.stderr.lower()
    # data/eval layout: the responses of the current prompts score (GPT-4's minus key 2785).
    rows = [json.loads(l) for l in (shared_data / "ifeval" / "input_response_data_gpt4_20231107_145030.jsonl").read_text().splitlines()]
    prompts = {json.loads(l)["prompt"] for l in (data / "ifeval" / "input_data.jsonl").read_text().splitlines()}
    preds = tmp_path / "responses.jsonl"
    missing = prompts - {r["prompt"] for r in rows}
    assert len(missing) == 1  # key 2785, corrected after the GPT-4 run
    rows = [r for r in rows if r["prompt"] in prompts] + [{"prompt": missing.pop(), "response": "[a] [b] [c]"}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = invoke(["eval", "score", "--task", "ifeval", "--predictions", str(preds), "-d", str(data), "--json"])
    assert res.exit_code == 0, res.stderr
    assert _metrics(res)["num_prompts"] == 541
