"""BIG-Bench Hard: the reference's answer regex on tricky outputs, stop lists, prompts byte for byte, one-stream sampling."""

from __future__ import annotations

import json
import random

import pytest

from tulu_cli.evaluation.runner import rescore_row
from tulu_cli.evaluation.tasks import TaskContext, get_task
from tulu_cli.evaluation.tasks.bbh import extract_answer, strip_chain_of_thought

SAMPLE_TASKS = ("boolean_expressions", "date_understanding", "multistep_arithmetic_two", "word_sorting")


# Expected values by hand from open-instruct's rule: re.search(r"[t|T]he answer is (.*?)\.", output),
# group 1 stripped; no match -> output.strip().
@pytest.mark.parametrize(
    "output, expected",
    [
        ("Let's think step by step. 2 + 2 = 4. So the answer is 4.", "4"),
        ("The answer is (A).", "(A)"),
        ("Thus, the answer is 24.", "24"),
        ("So the answer is (A). Wait, so the answer is (B).", "(A)"),  # the first one
        ("So the answer is 3.5.", "3"),  # up to the FIRST period
        ("the answer is yes.", "yes"),
        ("|he answer is X.", "X"),  # "[t|T]" is a character class that holds "|"
        ("THE ANSWER IS 5.", "THE ANSWER IS 5."),  # case-sensitive: no match, whole output
        ("So the answer is No", "So the answer is No"),  # no period after it: whole output
        ("the answer is 4\nso the answer is 5.", "5"),  # "." does not cross the newline
        ("So the answer is\nNo. The answer is Yes.", "Yes"),  # "is" must be followed by a space
        ("the answer is .", ""),
        (" True\n\nQ: not True is\nA: False", "True\n\nQ: not True is\nA: False"),  # whole, stripped
        ("  False  ", "False"),
    ],
)
def test_extraction_is_the_references(output, expected):
    assert extract_answer(output) == expected


def test_tricky_outputs_score_as_in_the_reference():
    """Exact match after lower-casing and dropping ASCII punctuation (HF evaluate's), per task then macro."""
    task = get_task("bbh_cot")
    rows = [
        rescore_row(task, {"output": out, "reference": ref, "meta": {"subtask": sub}})
        for sub, out, ref in [
            ("snarks", "The answer is (A).", "(A)"),  # 1
            ("multistep_arithmetic_two", "Thus, the answer is 24.", "24"),  # 1
            ("multistep_arithmetic_two", "So the answer is -24.", "24"),  # 1: "-" is punctuation
            ("multistep_arithmetic_two", "So the answer is 3.5.", "3.5"),  # 0: "3" vs "35"
            ("navigate", "So the answer is No", "No"),  # 0: the whole output is the prediction
            ("navigate", "No", "No"),  # 1
        ]
    ]
    assert [r["answer"] for r in rows] == ["(A)", "24", "-24", "3", "So the answer is No", "No"]
    assert [r["metrics"]["exact_match"] for r in rows] == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    m = task.aggregate(rows, TaskContext(data_dir=None))
    assert m["exact_match"] == {"multistep_arithmetic_two": pytest.approx(2 / 3), "navigate": 0.5, "snarks": 1.0}
    assert m["average_exact_match"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)  # macro over tasks


def test_both_presets_stop_at_a_blank_line_with_and_without_chat():
    for name in ("bbh_cot", "bbh_direct"):
        task = get_task(name)
        assert task.stop_for(True) == ("\n\n",) and task.stop_for(False) == ("\n\n",)
        g = task.info()["generation"]
        assert g["stop"] == ["\n\n"] and g["chat_stop"] == ["\n\n"] and g["max_new_tokens"] == 512 and g["temperature"] == 0.0
        assert task.max_examples == 40 and task.source.startswith("open-instruct f3424591 eval/bbh/run_eval.py")


DIRECT_BOOLEAN = (
    "Evaluate the result of a random Boolean expression.\n\n"
    "Q: not ( ( not not True ) ) is\nA: False.\n\n"
    "Q: True and False and not True and True is\nA: False.\n\n"
    "Q: not not ( not ( False ) ) is\nA: True."
)


def test_prompts_byte_for_byte(shared_data):
    data = shared_data / "eval"
    q0 = json.loads((data / "bbh/bbh/boolean_expressions.json").read_text())["examples"][0]["input"]
    assert q0 == "not ( True ) and ( True ) is"
    # cot: the prompt file minus its first two lines (canary, dashes), stripped, as one block
    body = "".join((data / "bbh/cot-prompts/boolean_expressions.txt").read_text().splitlines(keepends=True)[2:]).strip()
    assert body.startswith("Evaluate the result of a random Boolean expression.\n\nQ: not ( ( not not True ) ) is\nA: Let's think step by step.\n")
    assert body.endswith("Plugging in A, we get: Z = not not ( A ) = not not (True) = not not False = True. So the answer is True.")
    assert body.count("\n\nQ: ") == 3  # the whole file: its 3 exemplars
    cases = [
        ("bbh_cot", "none", body + "\n\nQ: " + q0 + "\nA:"),
        ("bbh_cot", "tulu", "<|user|>\n" + body + "\n\nQ: " + q0 + "\n<|assistant|>\nA:"),
        ("bbh_direct", "none", DIRECT_BOOLEAN + "\n\nQ: not ( True ) and ( True ) is\nA:"),
        ("bbh_direct", "tulu", "<|user|>\n" + DIRECT_BOOLEAN + "\n\nQ: not ( True ) and ( True ) is\n<|assistant|>\nA:"),
    ]
    for name, template, expected in cases:
        task = get_task(name)
        ctx = TaskContext(data_dir=data, chat_template=template)
        ex = next(e for e in task.load(ctx) if e.id == "boolean_expressions/0")
        q = task.build(ex, ctx)
        assert q.prompt == expected, (name, template)
        # chat APIs get the plain prompt as the user message (the reference's OpenAI path)
        assert q.messages == [{"role": "user", "content": (DIRECT_BOOLEAN if name == "bbh_direct" else body) + "\n\nQ: " + q0 + "\nA:"}]
    assert strip_chain_of_thought("Intro\n\nQ: x\nA: Let's think. So the answer is (B).", "f") == "Intro\n\nQ: x\nA: (B)."


def test_sampling_is_one_seeded_stream_over_sorted_task_files(shared_data):
    """random.seed(42), then random.sample(examples, k) per task file in (sorted) name order."""
    task = get_task("bbh_direct")
    exs = task.load(TaskContext(data_dir=shared_data / "eval", chat_template="none"))
    assert [e.meta["subtask"] for e in exs[::15]] == list(SAMPLE_TASKS) and len(exs) == 60
    picked = [e.id for e in task.select(exs, 5, None, 42)]
    # computed with Python's random directly: rng = random.Random(42); rng.sample(range(15), 5) per task
    assert picked == [
        "boolean_expressions/10", "boolean_expressions/1", "boolean_expressions/0", "boolean_expressions/11", "boolean_expressions/4",
        "date_understanding/3", "date_understanding/14", "date_understanding/2", "date_understanding/11", "date_understanding/1",
        "multistep_arithmetic_two/10", "multistep_arithmetic_two/11", "multistep_arithmetic_two/8", "multistep_arithmetic_two/1",
        "multistep_arithmetic_two/9",
        "word_sorting/6", "word_sorting/0", "word_sorting/13", "word_sorting/1", "word_sorting/3",
    ]  # fmt: skip
    rng = random.Random(42)
    assert picked == [f"{name}/{i}" for name in SAMPLE_TASKS for i in rng.sample(range(15), 5)]
    # k equal to the task size still draws (a shuffled copy), so later tasks depend on it
    rng = random.Random(42)
    assert [e.id for e in task.select(exs, 15, None, 42)] == [f"{name}/{i}" for name in SAMPLE_TASKS for i in rng.sample(range(15), 15)]
    assert [e.id for e in task.select(exs, 5, 2, 42)] == [picked[i] for i in (0, 1, 5, 6, 10, 11, 15, 16)]  # --limit: per task


def test_a_task_smaller_than_the_sample_is_kept_whole_and_draws_nothing(tmp_path):
    """The reference stops with an error there (random.sample larger than the population)."""
    for sub in ("bbh", "cot-prompts"):
        (tmp_path / "bbh" / sub).mkdir(parents=True)
    for name, n in (("aaa", 3), ("bbb", 10)):
        examples = [{"input": f"{name} {i}", "target": "x"} for i in range(n)]
        (tmp_path / "bbh/bbh" / f"{name}.json").write_text(json.dumps({"examples": examples}))
        (tmp_path / "bbh/cot-prompts" / f"{name}.txt").write_text("canary\n-----\nTask.\n\nQ: q\nA: r. So the answer is x.\n")
    task = get_task("bbh_cot")
    exs = task.load(TaskContext(data_dir=tmp_path))
    rng = random.Random(42)  # aaa draws nothing: bbb is the stream's first sample
    assert [e.id for e in task.select(exs, 4, None, 42)] == ["aaa/0", "aaa/1", "aaa/2"] + [f"bbb/{i}" for i in rng.sample(range(10), 4)]
