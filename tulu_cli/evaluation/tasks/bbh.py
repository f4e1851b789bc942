"""BIG-Bench Hard: 27 tasks, 3-shot chain of thought or direct answers, exact match per task and averaged."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.metrics import exact_match
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, Query, Task, TaskContext, mean

SUBTASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)
_RAW = "https://raw.githubusercontent.com/suzgunmirac/BIG-Bench-Hard/9ee07bd481feebf959a6b59d61ea57bdcf30964d"  # main, pinned

# open-instruct's pattern, character class and all: "[t|T]" also matches "|he answer is".
_ANSWER = re.compile(r"[t|T]he answer is (.*?)\.")


def extract_answer(output: str) -> str:
    """The reference's rule: the text between the first "the answer is" / "The answer is" that a period
    follows on the same line and that period, stripped; without one, the whole output, stripped."""
    m = _ANSWER.search(output)
    if m:
        return m.group(1).strip()
    return output.strip()


def strip_chain_of_thought(prompt: str, source: str) -> str:
    """Direct-answer exemplars: each "Q: ...\\nA: <reasoning> So the answer is X." becomes "Q: ...\\nA: X."."""
    fields = []
    for field in prompt.split("\n\n"):
        if field.startswith("Q:"):
            if "So the answer is" not in field or "\nA:" not in field:
                raise TuluError(f"{source}: exemplar without 'A:' and 'So the answer is': {field[:60]!r}")
            answer = field.split("So the answer is")[-1].strip()
            question = field.split("\nA:")[0].strip()
            fields.append(question + "\nA: " + answer)
        else:
            fields.append(field)
    return "\n\n".join(fields)


def keep_shots(prompt: str, n: int) -> str:
    """The task description and the first ``n`` Q/A exemplars."""
    fields, shots = [], 0
    for field in prompt.split("\n\n"):
        if field.startswith("Q:"):
            shots += 1
            if shots > n:
                continue
        fields.append(field)
    return "\n\n".join(fields)


class BBH(Task):
    data_name = "bbh"
    data_files = tuple(
        DataFile(f"bbh/bbh/{t}.json", f"{_RAW}/bbh/{t}.json") for t in SUBTASKS
    ) + tuple(DataFile(f"bbh/cot-prompts/{t}.txt", f"{_RAW}/cot-prompts/{t}.txt") for t in SUBTASKS)
    required = ("bbh/bbh", "bbh/cot-prompts")
    kind = "generate"
    n_shot = 3
    max_n_shot = 3
    max_examples = 40  # per subtask
    sample_by = "subtask"
    metrics = ("average_exact_match", "exact_match")
    # The reference's vLLM path stops both presets at a blank line, with or without chat format.
    generation = GenerationSettings(max_new_tokens=512, stop=("\n\n",))
    source = "open-instruct f3424591 eval/bbh/run_eval.py (scripts/submit_eval_jobs.py: vllm, chat format)"

    def __init__(self, name: str, cot: bool, description: str):
        self.name = name  # type: ignore[misc]
        self.cot = cot
        self.description = description  # type: ignore[misc]

    def load(self, ctx: TaskContext) -> list[Example]:
        assert ctx.data_dir is not None
        data_dir, prompt_dir = ctx.data_dir / "bbh" / "bbh", ctx.data_dir / "bbh" / "cot-prompts"
        names = sorted(p.stem for p in data_dir.glob("*.json"))
        prompt_names = {p.stem for p in prompt_dir.glob("*.txt")}
        missing = [n for n in names if n not in prompt_names]
        if missing:
            raise TuluError(f"{prompt_dir / (missing[0] + '.txt')}: not found (every task in {data_dir} needs its prompt)")
        examples = []
        for name in names:
            ppath = prompt_dir / f"{name}.txt"
            with open(ppath, encoding="utf-8") as f:
                prompt = "".join(f.readlines()[2:])  # line 1 is the canary, line 2 a dashed rule
            if not self.cot:
                prompt = strip_chain_of_thought(prompt, str(ppath))
            prompt = prompt.strip()
            if self.n_shot != type(self).n_shot:  # the preset keeps the whole file, as the reference
                prompt = keep_shots(prompt, self.n_shot)
            path = data_dir / f"{name}.json"
            try:
                items = json.loads(path.read_text(encoding="utf-8"))["examples"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise TuluError(f"{path}: not a BIG-Bench Hard task file ({type(e).__name__}: {e})") from None
            for i, item in enumerate(items):
                if not isinstance(item, dict) or "input" not in item or "target" not in item:
                    raise TuluError(f"{path}: example {i}: fields 'input' and 'target' are required")
                examples.append(
                    Example(
                        id=f"{name}/{i}",
                        reference=item["target"],
                        meta={"subtask": name},
                        data={"input": item["input"], "prefix": prompt},
                    )
                )
        return examples

    def select(self, examples: list[Example], max_examples: int | None, limit: int | None, seed: int) -> list[Example]:
        """The reference's draw: one ``random.seed(seed)`` stream, ``sample(examples, max_examples)`` per
        task in file-name order (the reference used ``glob`` order, which depends on the file system;
        sorted order makes it reproducible). A task with fewer examples than that is kept whole, in
        file order, and draws nothing (the reference stops with an error there)."""
        rng = random.Random(seed)

        def draw(items: list[Example]) -> list[Example]:
            if max_examples is None or max_examples > len(items):
                return items
            return rng.sample(items, max_examples)

        return self.select_in_one_stream(examples, limit, draw)

    def build(self, example: Example, ctx: TaskContext) -> Query:
        user = example.data["prefix"] + "\n\nQ: " + example.data["input"]
        return ctx.query(user, chat_suffix="A:", plain_suffix="\nA:")

    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        return extract_answer(output)

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        return {"exact_match": exact_match(row["answer"], row["reference"])}

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        by_task: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            subtask = (r.get("meta") or {}).get("subtask") or str(r["id"]).split("/")[0]
            by_task[subtask].append(float(r["metrics"]["exact_match"]))
        per_task = {t: mean(v) for t, v in sorted(by_task.items())}
        # Macro average over subtasks, as Tulu 2 reported it.
        return {"average_exact_match": mean(per_task.values()), "exact_match": per_task}


TASKS = [
    BBH("bbh_cot", cot=True, description="BIG-Bench Hard, 27 tasks, 3-shot chain of thought, 40 examples each, exact match"),
    BBH("bbh_direct", cot=False, description="BIG-Bench Hard, 27 tasks, 3-shot direct answers, 40 examples each, exact match"),
]
