"""MMLU and GSM8K (BBH: test_eval_bbh.py): answer extraction on tricky outputs, scorers on hand-made predictions, exact prompts."""

from __future__ import annotations

import pytest

from tulu_cli.evaluation.metrics import em_normalize, exact_match
from tulu_cli.evaluation.runner import rescore_row
from tulu_cli.evaluation.tasks import Example, TaskContext, get_task
from tulu_cli.evaluation.tasks.gsm import extract_last_number
from tulu_cli.evaluation.tasks.mmlu import category_of, format_example


# ---- GSM8K extraction ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "output, expected",
    [
        ("So the answer is 18.", "18"),
        ("She makes 9 * 2 = $18 every day. So the answer is 18", "18"),
        ("The total is 1,234,567 dollars", "1234567"),
        ("He lost 5 and now has -3 apples", "-3"),
        ("The temperature fell to -12.5 degrees", "-12.5"),
        ("First 3, then 4. So the answer is 7. Actually the answer is 8.", "8"),
        ("It costs .5 dollars", ".5"),
        ("no digits here", "no digits here"),
        ("12,5 and 3", "3"),
    ],
)
def test_gsm_last_number(output, expected):
    assert extract_last_number(output) == expected


def test_gsm_scoring_follows_tulu_normalisation():
    task = get_task("gsm_cot")
    row = {"output": "So the answer is 1,000.", "reference": "1000", "meta": {}}
    assert rescore_row(task, row)["metrics"]["exact_match"] == 1.0
    assert rescore_row(task, {"output": "The answer is 999.", "reference": "1000", "meta": {}})["metrics"]["exact_match"] == 0.0
    # Tulu 2 compared with punctuation removed: the minus sign does not count (documented quirk).
    assert exact_match("-5", "5") == 1.0
    assert em_normalize("(A)") == "a"


def test_gsm_aggregate_known_score():
    task = get_task("gsm_direct")
    rows = [
        rescore_row(task, {"output": o, "reference": r, "meta": {}})
        for o, r in [("42", "42"), ("41", "42"), ("7 apples", "7"), ("x", "3")]
    ]
    assert task.aggregate(rows, TaskContext(data_dir=None)) == {"exact_match": 0.5}


def test_gsm_prompts_match_tulu(shared_data):
    task = get_task("gsm_cot")
    ctx = TaskContext(data_dir=shared_data / "eval", chat_template="none")
    ex = task.load(ctx)[0]
    q = task.build(ex, ctx)
    assert q.prompt.startswith(
        "Answer the following questions.\n\nQuestion: There are 15 trees in the grove. Grove workers will plant trees"
    )
    assert q.prompt.count("\nAnswer: ") == 8 and q.prompt.endswith(ex.data["question"].strip() + "\nAnswer:")
    assert ex.reference == "18"
    direct = get_task("gsm_direct").build(ex, ctx).prompt
    assert "Quesion: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\nAnswer: 5\n\n" in direct
    chat = task.build(ex, TaskContext(data_dir=shared_data / "eval", chat_template="tulu"))
    assert chat.prompt.startswith("<|user|>\nAnswer the following questions.")
    assert chat.prompt.endswith("\n<|assistant|>\nAnswer:")
    assert chat.messages == [{"role": "user", "content": q.prompt}]


def test_gsm_subsample_is_seeded(shared_data):
    task = get_task("gsm_cot")
    exs = task.load(TaskContext(data_dir=shared_data / "eval"))
    a = task.select(exs, 10, None, 42)
    b = task.select(exs, 10, None, 42)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 10
    assert [e.id for e in task.select(exs, 10, None, 1)] != [e.id for e in a]


# ---- MMLU -------------------------------------------------------------------------------------------
def test_mmlu_prompt_format(shared_data):
    task = get_task("mmlu_5shot")
    ctx = TaskContext(data_dir=shared_data / "eval", chat_template="none")
    exs = [e for e in task.load(ctx) if e.meta["subject"] == "abstract_algebra"]
    q = task.build(exs[0], ctx)
    # Two spaces: the reference's "about {}." around format_subject's own leading space.
    assert q.prompt.startswith("The following are multiple choice questions (with answers) about  abstract algebra.\n\n")
    assert q.prompt.count("\nAnswer: ") == 5 and q.prompt.endswith("\nD. 6\nAnswer:")
    assert q.choices == [" A", " B", " C", " D"]
    chat = task.build(exs[0], TaskContext(data_dir=shared_data / "eval", chat_template="tulu"))
    assert chat.prompt.endswith("\nAnswer:\n<|assistant|>\nThe answer is:")
    zero = get_task("mmlu_0shot").build(exs[0], ctx)
    assert "\nAnswer: " not in zero.prompt


def test_mmlu_shrinks_shots_to_fit(shared_data):
    task = get_task("mmlu_5shot")
    ex = task.load(TaskContext(data_dir=shared_data / "eval", chat_template="none"))[0]
    full = task.build(ex, TaskContext(data_dir=None, chat_template="none")).prompt
    # A counter that makes each exemplar "cost" 1000 tokens: only 2 fit under 2048.
    ctx = TaskContext(data_dir=None, chat_template="none", count_tokens=lambda t: 1000 * t.count("\nAnswer: ") + 1)
    short = task.build(ex, ctx).prompt
    assert short.count("\nAnswer: ") == 2 and len(short) < len(full)


def test_mmlu_scorer_categories():
    task = get_task("mmlu_0shot")
    rows = []
    for subject, logps, ref in [
        ("abstract_algebra", [-1.0, -0.5, -2.0, -3.0], "B"),
        ("abstract_algebra", [-1.0, -0.5, -2.0, -3.0], "A"),
        ("high_school_geography", [-0.1, -0.5, -2.0, -3.0], "A"),
        ("moral_scenarios", [-4.0, -4.0, -4.0, -4.0], "A"),  # tie -> first letter, like argmax
    ]:
        rows.append(rescore_row(task, {"output": logps, "reference": ref, "meta": {"subject": subject}}))
    assert [r["answer"] for r in rows] == ["B", "B", "A", "A"]
    m = task.aggregate(rows, TaskContext(data_dir=None))
    assert m["average_acc"] == 0.75
    assert m["subject_acc"] == {"abstract_algebra": 0.5, "high_school_geography": 1.0, "moral_scenarios": 1.0}
    assert m["cat_acc"] == {"STEM": 0.5, "humanities": 1.0, "social sciences": 1.0}
    assert m["subcat_acc"]["math"] == 0.5 and m["subcat_acc"]["geography"] == 1.0


def test_mmlu_category_map_covers_57_subjects():
    from tulu_cli.evaluation.tasks.mmlu import SUBCATEGORIES

    assert len(SUBCATEGORIES) == 57
    assert all(category_of(s) is not None for s in SUBCATEGORIES)
    assert format_example(["Q?", "a", "b", "c", "d", "C"], True) == "Q?\nA. a\nB. b\nC. c\nD. d\nAnswer: C\n\n"


def test_registry_presets_and_unknown_name():
    from tulu_cli.errors import TuluError

    for name in ("mmlu_0shot", "mmlu_5shot", "gsm_direct", "gsm_cot", "bbh_direct", "bbh_cot"):
        assert get_task(name).name == name
    with pytest.raises(TuluError, match="unknown task 'gsm_cott' \\(did you mean gsm_cot\\?\\)"):
        get_task("gsm_cott")


def test_example_ids_are_stable(shared_data):
    exs = get_task("mmlu_0shot").load(TaskContext(data_dir=shared_data / "eval"))
    assert exs[0].id == "abstract_algebra/0" and isinstance(exs[0], Example)


def test_a_task_module_with_a_missing_dependency_does_not_break_the_others(tmp_path, monkeypatch):
    import tulu_cli.evaluation.tasks as tasks_pkg
    from tulu_cli.errors import TuluError

    (tmp_path / "zz_needs_missing.py").write_text("import package_that_is_not_installed_xyz\nTASKS = []\n")
    monkeypatch.setattr(tasks_pkg, "__path__", [*tasks_pkg.__path__, str(tmp_path)])
    monkeypatch.setattr(tasks_pkg, "_REGISTRY", {})
    monkeypatch.setattr(tasks_pkg, "_BROKEN", {})
    assert "gsm_cot" in tasks_pkg.all_tasks()
    assert "zz_needs_missing" in tasks_pkg.broken_modules()
    with pytest.raises(TuluError, match="task module 'zz_needs_missing' could not be imported"):
        tasks_pkg.get_task("xyz_task")


def test_n_shot_override(shared_data):
    from tulu_cli.errors import TuluError
    from tulu_cli.evaluation.tasks import Task

    ctx = TaskContext(data_dir=shared_data / "eval", chat_template="none")
    gsm = get_task("gsm_cot").with_n_shot(2)
    ex = gsm.load(ctx)[0]
    assert gsm.build(ex, ctx).prompt.count("\nAnswer: ") == 2 and get_task("gsm_cot").n_shot == 8  # preset untouched
    assert get_task("gsm_cot").with_n_shot(0).build(ex, ctx).prompt.startswith("Answer the following question.\n\nQuestion: ")
    bbh = get_task("bbh_cot").with_n_shot(1)
    q = bbh.build(bbh.load(ctx)[0], ctx).prompt
    assert q.count("\n\nQ: ") == 2  # one exemplar + the question
    mmlu = get_task("mmlu_5shot").with_n_shot(1)
    assert mmlu.build(mmlu.load(ctx)[0], ctx).prompt.count("\nAnswer: ") == 1
    with pytest.raises(TuluError, match="--n-shot: task mmlu_5shot has 5 exemplars; got 6"):
        get_task("mmlu_5shot").with_n_shot(6)

    class Fixed(Task):
        name = "fixed"

    with pytest.raises(TuluError, match="--n-shot: task fixed has a fixed prompt"):
        Fixed().with_n_shot(3)


def test_tokenizer_template_matches_tulu_format(tiny_model):
    from transformers import AutoTokenizer

    from tulu_cli.errors import TuluError
    from tulu_cli.evaluation.prompting import make_renderer, render_tulu

    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [{"role": "user", "content": "What is 2 + 2?"}]
    assert make_renderer("tokenizer", tok)(msgs) == render_tulu(msgs) == "<|user|>\nWhat is 2 + 2?\n<|assistant|>\n"
    assert make_renderer("none", tok) is None
    tok.chat_template = None
    with pytest.raises(TuluError, match="--chat-template tokenizer: the model's tokenizer has no chat template"):
        make_renderer("tokenizer", tok)


def test_scorers_take_the_group_from_the_id_when_meta_is_missing():
    bbh = get_task("bbh_direct")
    rows = [rescore_row(bbh, {"id": "navigate/3", "output": "Yes", "reference": "Yes"})]
    assert bbh.aggregate(rows, TaskContext(data_dir=None))["exact_match"] == {"navigate": 1.0}
    mmlu = get_task("mmlu_0shot")
    rows = [rescore_row(mmlu, {"id": "virology/0", "output": [0, -1, -2, -3], "reference": "A"})]
    assert mmlu.aggregate(rows, TaskContext(data_dir=None))["cat_acc"] == {"other (business, health, misc.)": 1.0}
