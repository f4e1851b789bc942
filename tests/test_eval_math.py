"""MATH: answer extraction and normalisation on tricky outputs, equivalence, scorer, prompts, end to end, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _eval_helpers import invoke
from tulu_cli.errors import TuluError
from tulu_cli.evaluation.math_normalize import (
    INVALID,
    extract_flexible,
    extract_strict,
    is_equiv,
    last_boxed,
    normalize_final_answer,
    reference_answer,
    strip_string,
)
from tulu_cli.evaluation.tasks import TaskContext, get_task

FIXTURES = Path(__file__).parent / "fixtures" / "eval_math"


def answer_line(x: str) -> str:
    return f"Some reasoning.\nFinal Answer: The final answer is ${x}$. I hope it is correct."


@pytest.mark.parametrize(
    "output, expected",
    [
        (answer_line("\\frac{3}{4}"), "\\frac{3}{4}"),
        (answer_line("-3"), "-3"),
        (answer_line("x = -3"), "-3"),  # the part after the last "="
        (answer_line("1,000"), "1000"),  # thousands separators
        (answer_line("\\boxed{12}"), "12"),
        (answer_line("5\\text{ cm}"), "5"),
        (answer_line("\\$18.90"), "18.90"),
        (answer_line("90^\\circ"), "90"),
        (answer_line("\\frac12"), "\\frac{1}{2}"),  # shorthand TeX
        (answer_line("\\sqrt3"), "\\sqrt{3}"),
        (answer_line("-2, 2"), "-2,2"),  # several answers
        ("Final Answer: The final answer is $7$. ", "7"),  # cut before "I hope it is correct."
        ("Final Answer: The final answer is 7", INVALID),  # no ". " before the (appended) closing phrase
        # two answer lines: the first one counts
        (answer_line("1") + "\n" + answer_line("2"), "1"),
        ("The answer is $\\boxed{4}$.", INVALID),  # no answer line: invalid for the Tulu metric
        ("", INVALID),
    ],
)
def test_strict_extraction(output, expected):
    assert extract_strict(output) == expected


def test_flexible_extraction_falls_back_to_the_last_box():
    assert extract_flexible("so $\\boxed{1}$ then $\\boxed{\\frac{2}{3}}$") == ("\\frac{2}{3}", "boxed")
    assert extract_flexible(answer_line("5") + " $\\boxed{6}$") == ("5", "final_answer")
    assert extract_flexible("\\boxed{-\\frac{1}{2}") == (INVALID, "none")  # never closed
    assert extract_flexible("nothing here") == (INVALID, "none")


def test_boxes_in_reference_solutions():
    """open-instruct f7f3d3f1 eval/MATH/utilities.py (last_boxed_only_string, remove_boxed), then Minerva's normalizer."""
    assert last_boxed("a $\\boxed{\\frac{\\sqrt{3}}{2}}$ b") == "\\boxed{\\frac{\\sqrt{3}}{2}}"
    assert reference_answer("first $\\boxed{1}$, finally $\\boxed{\\{1,2\\}}$") == "\\{1,2\\}"
    assert reference_answer("$\\boxed{\\text{(C)}}$") == "(C)"
    # the reference's remove_boxed only unboxes "\\boxed{...}": anything else is ""
    assert reference_answer("thus $\\fbox{9}$") == ""
    assert reference_answer("so it is $\\boxed 5$.") == ""
    assert reference_answer("$\\boxed{2}$, or rather \\boxed 3") == ""  # the last box is the unbraced one
    assert reference_answer("$\\boxed 5$ and then $\\boxed{6}$") == "6"  # lm-eval's minerva reading would say 5
    assert reference_answer("$\\boxed{\\frac{1}{2}$") == ""  # never closed
    assert reference_answer("no box at all") == ""
    # the flexible reading of model outputs keeps lm-evaluation-harness's boxes
    assert extract_flexible("so $\\boxed 5$.") == ("5", "boxed") and extract_flexible("$\\fbox{4}$") == ("4", "boxed")


def test_unboxed_reference_solutions_stay_in_the_set(tmp_path):
    """A solution without a readable box gives the reference "" (not an error): the problem keeps its place
    in the seeded draw, and an answer that normalizes to "" scores 1 on it, as in open-instruct."""
    rows = [
        {"problem": "p0", "solution": "So $\\boxed{7}$.", "type": "Algebra", "level": "Level 1"},
        {"problem": "p1", "solution": "The answer is $\\fbox{4}$.", "type": "Algebra", "level": "Level 2"},
        {"problem": "p2", "solution": "It is \\boxed 5.", "type": "Geometry", "level": "Level 3"},
        {"problem": "p3", "solution": "No box here.", "type": "Geometry", "level": "Level 4"},
    ]
    (tmp_path / "MATH").mkdir()
    (tmp_path / "MATH" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = get_task("math").load(TaskContext(data_dir=tmp_path))
    assert [(e.id, e.reference) for e in examples] == [("0", "7"), ("1", ""), ("2", ""), ("3", "")]
    assert _row(answer_line("4"), "")["metrics"]["accuracy"] == 0.0
    assert _row("Final Answer: The final answer is $$. I hope it is correct.", "")["metrics"]["accuracy"] == 1.0
    assert _row("no answer line", "")["metrics"]["accuracy"] == 0.0


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("\\frac{1}{2}", "1/2", True),  # a/b -> \frac{a}{b}
        ("\\dfrac{1}{2}", "\\frac12", True),
        ("0.5", "\\frac{1}{2}", True),
        ("\\left(1,2\\right)", "(1,2)", True),
        ("90^\\circ", "90", True),
        ("k = 7", "7", True),
        (".5", "0.5", True),
        ("10\\%", "10", True),
        ("5 \\text{ meters}", "5", True),
        ("-3", "3", False),  # the minus sign matters
        ("2,-2", "-2,2", False),  # order of several answers matters, as in the benchmark
        ("\\frac{2}{4}", "\\frac{1}{2}", False),  # no arithmetic
        ("x/2", "x/2", True),  # malformed for the canonicaliser: plain equality
        ("x/2", "\\frac{x}{2}", False),
        ("1 \\frac", "1\\frac", False),  # a trailing \\frac makes the canonicaliser fail: plain equality
        ("\\frac1", "\\frac 1", True),  # \\frac + one character is left as it is
    ],
)
def test_equivalence(a, b, same):
    assert is_equiv(a, b) is same


def test_normalizer_details():
    assert normalize_final_answer("\\text{Evelyn}") == "Evelyn"
    assert normalize_final_answer("10 \\text{ inches}") == "10"
    assert normalize_final_answer("\\$1,\\!000") == "1000"
    assert strip_string("\\tfrac{3}{4}") == "\\frac{3}{4}"
    assert is_equiv(None, None) and not is_equiv("1", None)


def _row(output, reference, kind="Algebra", level="Level 1"):
    task = get_task("math")
    row = {"id": "x", "output": output, "reference": reference, "meta": {"type": kind, "level": level}}
    row["answer"] = task.extract(output, row)
    row["metrics"] = task.score(row)
    return row


def test_scorer_known_scores():
    task = get_task("math")
    rows = [
        _row(answer_line("\\dfrac{3}{4}"), "\\frac{3}{4}", "Prealgebra"),  # right
        _row(answer_line("-3"), "-3", "Algebra"),  # right
        _row("so $\\boxed{6}$", "6", "Counting & Probability"),  # right only with the boxed fallback
        _row(answer_line("7"), "5", "Algebra", "Level 2"),  # wrong
    ]
    assert [r["metrics"]["accuracy"] for r in rows] == [1.0, 1.0, 0.0, 0.0]
    assert rows[2]["metrics"]["accuracy_flex"] == 1.0 and rows[2]["metrics"]["boxed_fallback"] == 1.0
    m = task.aggregate(rows, TaskContext(data_dir=None))
    assert m["accuracy"] == 0.5 and m["accuracy_flex"] == 0.75 and m["invalid_rate"] == 0.25
    assert m["per_type_accuracy"] == {"Algebra": 0.5, "Counting & Probability": 0.0, "Prealgebra": 1.0}
    assert m["per_level_accuracy"] == {"Level 1": 2 / 3, "Level 2": 0.0}


def test_direct_preset_reads_the_answer_line():
    task = get_task("math_direct")
    row = {"output": " -\\frac{2}{3}\nProblem: next", "reference": "-\\frac{2}{3}", "meta": {}}
    row["answer"] = task.extract(row["output"], row)
    assert row["answer"] == "-\\frac{2}{3}" and task.score(row)["accuracy"] == 1.0
    assert task.generation.stop == ("\n", "Problem:") and get_task("math").generation.stop == ("Problem:",)


def test_prompts_match_open_instruct():
    task = get_task("math")
    ctx = TaskContext(data_dir=FIXTURES, chat_template="none")
    examples = task.load(ctx)
    assert [e.reference for e in examples] == ["\\frac{3}{4}", "-3", "6", "5", "-2,2"]
    assert examples[0].meta == {"type": "Prealgebra", "level": "Level 1", "line": 1}
    plain = task.build(examples[0], ctx).prompt
    assert plain.startswith("Problem:\nFind the domain of the expression $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}\n\nSolution:\nThe expressions")
    assert plain.count("Problem:\n") == 5 and plain.count("I hope it is correct.") == 4
    assert "correct.\n\nProblem:\nIf $\\det" in plain
    assert plain.endswith("I hope it is correct.\n\nProblem:\nWhat is $\\frac{1}{2} + \\frac{1}{4}$?\n\nSolution:\n")
    chat = task.build(examples[0], TaskContext(data_dir=FIXTURES, chat_template="tulu"))
    assert chat.prompt.count("<|user|>\nProblem:\n") == 5 and chat.prompt.count("<|assistant|>\n") == 5
    assert "$-\\frac{2}{3}$. I hope it is correct.</s>\n<|user|>" in chat.prompt
    assert chat.prompt.endswith("\n\nSolution:\n<|assistant|>\n")
    assert [m["role"] for m in chat.messages] == ["user", "assistant"] * 4 + ["user"]  # chat APIs get the turns
    direct = get_task("math_direct").build(examples[0], ctx).prompt
    assert "Solution:\n[2,5)\n\nProblem:" in direct and "Final Answer" not in direct


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "test.jsonl:2: invalid JSON"),
        ('{"problem": "p", "type": "Algebra"}', "test.jsonl:2: field 'solution' is missing"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, line, message):
    (tmp_path / "MATH").mkdir()
    good = (FIXTURES / "MATH" / "test.jsonl").read_text().splitlines()[0]
    (tmp_path / "MATH" / "test.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(TuluError, match=None) as err:
        get_task("math").load(TaskContext(data_dir=tmp_path))
    assert message in str(err.value)


def test_run_resume_and_score_on_tiny_model(tiny_model, tmp_path):
    out = tmp_path / "out"
    args = ["eval", "run", "-m", str(tiny_model), "-t", "math", "-d", str(FIXTURES), "-o", str(out),
            "--max-new-tokens", "4", "--json"]  # fmt: skip
    res = invoke(args)
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["math"]
    assert 0.0 <= m["accuracy"] <= m["accuracy_flex"] <= 1.0
    rows = [json.loads(x) for x in (out / "math" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(set(r["metrics"]) == {"accuracy", "accuracy_flex", "invalid", "boxed_fallback"} for r in rows)
    assert rows[0]["prompt"].startswith("<|user|>\nProblem:\n")
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["math"]["n_shot"] == 4 and results["results"]["math"]["generation"]["stop"] == ["Problem:"]
    assert set(results["results"]["math"]["data_files"]) == {"MATH/test.jsonl"}
    # rerun: everything is read back
    res = invoke(args)
    assert res.exit_code == 0 and json.loads((out / "results.json").read_text())["results"]["math"]["num_resumed"] == 5

    # eval score: hand-edit two outputs, the rescore sees them
    by_id = {r["id"]: r for r in rows}
    by_id["0"]["output"] = answer_line("0.75")  # \frac{3}{4} is not 0.75 to the MATH canonicaliser
    by_id["1"]["output"] = answer_line("-3")
    by_id["4"]["output"] = "So $\\boxed{-2,2}$."  # right for the flexible reading only
    for r in rows:
        if r["id"] in ("2", "3"):
            r["output"] = answer_line("999")
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = invoke(["eval", "score", "--task", "math", "--predictions", str(edited), "--json"])
    assert res.exit_code == 0, res.stderr
    scored = json.loads(res.stdout)["math"]
    assert scored["accuracy"] == 0.2 and scored["accuracy_flex"] == 0.4 and scored["invalid_rate"] == 0.2
    assert scored["per_type_accuracy/Algebra"] == 0.5 and scored["per_type_accuracy/Prealgebra"] == 0.0

    # open-instruct's predictions format
    oi = tmp_path / "oi.jsonl"
    oi.write_text(json.dumps({"question": "q", "answer": "\\frac{1}{2}", "model_output": answer_line("1/2"), "prediction": "1/2"}) + "\n")
    res = invoke(["eval", "score", "--task", "math", "--predictions", str(oi), "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["math"]["accuracy"] == 1.0


def test_missing_data_names_prepare_command(tmp_path, tiny_model):
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "math", "-d", str(tmp_path), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "MATH/test.jsonl: not found" in res.stderr and "tulu data prepare-eval math" in res.stderr


def test_malformed_row_through_the_cli(tmp_path, tiny_model):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    with open(data / "MATH" / "test.jsonl", "a") as f:
        f.write("{oops\n")
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "math", "-d", str(data), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "test.jsonl:6: invalid JSON" in res.stderr


def test_prepare_eval_fetches_math_tydiqa_truthfulqa(tmp_path):
    """The three benchmarks' declared files land in open-instruct's data/eval layout (from a local mirror)."""
    from _fileserver import serve

    from tulu_cli.evaluation.prepare import files_for

    assert [f.path for f in files_for("math")] == ["MATH/test.jsonl"]
    assert "DeepSeek-Math" in files_for("math")[0].url
    assert {f.path for f in files_for("tydiqa")} == {"tydiqa/tydiqa-goldp-v1.1-dev.json", "tydiqa/tydiqa-goldp-v1.1-train.json"}
    assert {f.path for f in files_for("truthfulqa")} == {"truthfulqa/TruthfulQA.csv", "truthfulqa/data/mc_task.json"}
    mirror = tmp_path / "mirror"
    for name in ("eval_math", "eval_tydiqa", "eval_truthfulqa"):
        shutil.copytree(FIXTURES.parent / name, mirror, dirs_exist_ok=True)
    data = tmp_path / "data"
    with serve(mirror) as srv:
        res = invoke(["data", "prepare-eval", "math", "tydiqa", "truthfulqa", "--data-dir", str(data), "--mirror", srv.base])
    assert res.exit_code == 0, res.stderr
    for rel in ("MATH/test.jsonl", "tydiqa/tydiqa-goldp-v1.1-train.json", "truthfulqa/data/mc_task.json"):
        assert (data / rel).read_bytes() == (mirror / rel).read_bytes()
    assert len(get_task("math").load(TaskContext(data_dir=data))) == 5


def test_chat_api_gets_exemplar_turns(tmp_path):
    """Through an OpenAI-compatible chat API the exemplars are real turns; the answer line is scored."""
    from _eval_helpers import OpenAIServer

    def reply(body):
        assert [m["role"] for m in body["messages"]] == ["user", "assistant"] * 4 + ["user"]
        return "Adding.\n" + answer_line("\\dfrac{3}{4}") if "frac{1}{4}" in body["messages"][-1]["content"] else "I don't know."

    with OpenAIServer(reply=reply) as srv:
        res = invoke(["eval", "run", "-m", "gpt-test", "--backend", "openai", "--base-url", srv.base_url, "-t", "math",
                      "-d", str(FIXTURES), "-o", str(tmp_path / "o"), "--json"])  # fmt: skip
        assert res.exit_code == 0, res.stderr
        assert srv.count == 5 and srv.requests[0]["max_tokens"] == 1024
    m = json.loads(res.stdout)["math"]
    assert m["accuracy"] == 0.2 and m["invalid_rate"] == 0.8 and m["per_type_accuracy/Prealgebra"] == 1.0


def test_subsample_matches_open_instruct_draw():
    """open-instruct: random.seed(42); random.sample(test_data, 200). Same problems here with --seed 42."""
    import random

    task = get_task("math")
    from dataclasses import replace

    loaded = task.load(TaskContext(data_dir=FIXTURES))
    examples = [replace(loaded[i % 5], id=str(i)) for i in range(15)]  # stand-ins for the 5000 problems
    random.seed(42)
    theirs = random.sample(list(range(len(examples))), 4)
    assert [e.id for e in task.select(examples, 4, None, seed=42)] == [str(i) for i in theirs]


@pytest.mark.parametrize(
    "boxed, stated, right",
    [
        ("\\begin{pmatrix} -1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}-1\\\\2\\end{pmatrix}", True),
        ("(-\\infty,0)\\cup(1,\\infty)", "(-\\infty, 0) \\cup (1, \\infty)", True),
        ("\\text{(C)}", "\\text{(C)}", True),
        ("\\$32", "32", True),
        ("10\\%", "10", True),
        ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt3}{2}", True),
        ("1.5", "\\frac{3}{2}", False),  # no arithmetic
        ("4", "x=4", True),
        ("3\\sqrt{2}", "3 \\sqrt{2} \\text{ units}", True),
        ("-\\frac{2}{3}", "\\frac{-2}{3}", False),
    ],
)
def test_reference_against_stated_answer(boxed, stated, right):
    """The whole path: a MATH-style reference solution, a model's answer line, the Tulu accuracy."""
    row = _row(answer_line(stated), reference_answer(f"Thus the answer is $\\boxed{{{boxed}}}$."))
    assert row["metrics"]["accuracy"] == float(right)
