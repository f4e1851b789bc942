"""MMLU: 57-subject multiple choice, 0-shot and 5-shot, as open-instruct's eval/mmlu/run_eval.py scored it.

The reference read each CSV with ``pandas.read_csv(header=None)`` and printed cells with
``"{}".format``; ``read_mmlu_csv`` gives the same text without pandas. It ranked the letters by the
next-token distribution at the end of the prompt, at the ids
``tokenizer.encode(" " + letter, add_special_tokens=False)[-1]`` (``--task-arg
scoring=continuation``: by the log-likelihood of ``" A"`` tokenized together with the prompt).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import DataFile, Example, Query, Task, TaskContext, mean

LETTERS = ("A", "B", "C", "D")
MAX_PROMPT_TOKENS = 2048  # the reference drops exemplars until the prompt fits
SCORING = ("next_token", "continuation")

# Subject -> subcategory and subcategory -> category, as published with the benchmark (hendrycks/test).
SUBCATEGORIES: dict[str, str] = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
CATEGORIES: dict[str, tuple[str, ...]] = {
    "STEM": ("physics", "chemistry", "biology", "computer science", "math", "engineering"),
    "humanities": ("history", "philosophy", "law"),
    "social sciences": ("politics", "culture", "economics", "geography", "psychology"),
    "other (business, health, misc.)": ("other", "business", "health"),
}


def category_of(subject: str) -> str | None:
    sub = SUBCATEGORIES.get(subject)
    for cat, subs in CATEGORIES.items():
        if sub in subs:
            return cat
    return None


# pandas' default NA markers (read_csv ``na_values``, pandas 2.x): a cell equal to one is NaN, printed "nan".
PANDAS_NA = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
     "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)
# What pandas' C parser reads as a number: ASCII blanks around, an optional sign, digits (and for a
# float a point and/or an exponent), or an infinity word.
_BLANK = "[ \t\n\v\f\r]*"
_INT = re.compile(f"{_BLANK}[+-]?[0-9]+{_BLANK}")
_FLOAT = re.compile(f"{_BLANK}[+-]?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?{_BLANK}")
_INFINITY = frozenset(("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"))  # any case
_TRUE, _FALSE = frozenset(("True", "TRUE", "true")), frozenset(("False", "FALSE", "false"))


def pandas_column(cells: list[str]) -> tuple[str, list[str]]:
    """(dtype kind, cells as ``"{}".format`` prints them) for one column as ``pandas.read_csv`` types it.

    A column is typed as a whole: all integers -> int64 (``"007"`` prints ``7``); integers and/or
    floats with a NaN or a float among them -> float64 (``"1"`` prints ``1.0``); only true/false
    words -> bool (``"true"`` prints ``True``); anything else -> text kept as written. NA markers
    print ``nan`` in every kind. Integers beyond 64 bits are kept as written.
    """
    present = [c for c in cells if c not in PANDAS_NA]
    if not present:
        return "float", ["nan"] * len(cells)
    if all(_INT.fullmatch(c) for c in present):
        values = [int(c) for c in present]
        if all(-(2**63) <= v < 2**63 for v in values) or all(0 <= v < 2**64 for v in values):
            if len(present) == len(cells):
                return "int", [str(int(c)) for c in cells]
            return "float", ["nan" if c in PANDAS_NA else repr(float(int(c))) for c in cells]
    elif all(_FLOAT.fullmatch(c) or c.lower() in _INFINITY for c in present):
        return "float", ["nan" if c in PANDAS_NA else repr(float(c)) for c in cells]
    elif all(c in _TRUE or c in _FALSE for c in present):
        return "bool", ["nan" if c in PANDAS_NA else str(c in _TRUE) for c in cells]
    return "text", ["nan" if c in PANDAS_NA else c for c in cells]


def read_mmlu_csv(path: Path) -> list[list[str]]:
    """Rows of question, A, B, C, D, answer letter (no header), each cell as the reference printed it
    (pandas typing, see ``pandas_column``); a bad row names file:line."""
    rows, lines = [], []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if not row:  # pandas skips blank lines
                    continue
                if len(row) != 6:
                    raise TuluError(f"{path}:{reader.line_num}: expected 6 columns (question, A, B, C, D, answer), got {len(row)}")
                if row[5] not in LETTERS:
                    raise TuluError(f"{path}:{reader.line_num}: answer column is '{row[5]}', not one of A, B, C, D")
                rows.append(row)
                lines.append(reader.line_num)
    except OSError as e:
        raise TuluError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise TuluError(f"{path}: not UTF-8 text") from None
    kind, _ = pandas_column([r[0] for r in rows])
    # The reference appends text to the question cell: a number, boolean or NaN there stops it.
    if rows and kind != "text":
        raise TuluError(f"{path}: every question reads as a {kind} value under pandas' typing (the reference cannot build prompts from it)")
    for line, row in zip(lines, rows):
        if row[0] in PANDAS_NA:
            raise TuluError(f"{path}:{line}: the question is '{row[0]}', which pandas reads as NaN (the reference cannot build a prompt from it)")
    options = [pandas_column([r[j] for r in rows])[1] for j in range(1, 5)]
    return [[row[0], *(col[i] for col in options), row[5]] for i, row in enumerate(rows)]


def format_subject(subject: str) -> str:
    """``" abstract algebra"``: every word after a space, the first one too."""
    return "".join(" " + part for part in subject.split("_"))


def prompt_header(subject: str) -> str:
    # The reference formats "... about {}." with format_subject's text, which starts with a space
    # of its own: TWO spaces before the subject.
    return f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"


def format_example(row: list[str], include_answer: bool) -> str:
    text = row[0]
    for letter, choice in zip(LETTERS, row[1:5]):
        text += f"\n{letter}. {choice}"
    text += "\nAnswer:"
    if include_answer:
        text += f" {row[5]}\n\n"
    return text


class MMLU(Task):
    data_name = "mmlu"
    data_files = (DataFile("mmlu/data.tar", "https://people.eecs.berkeley.edu/~hendrycks/data.tar", unpack_to="mmlu"),)
    required = ("mmlu/data/test", "mmlu/data/dev")
    kind = "choices"
    max_n_shot = 5  # the dev split has 5 questions per subject
    sample_by = "subject"  # --limit N takes N questions per subject
    metrics = ("average_acc", "cat_acc", "subcat_acc", "subject_acc")
    source = (
        "open-instruct f3424591 eval/mmlu/run_eval.py (scripts/submit_eval_jobs.py: hf, chat format, "
        "--ntrain 0 or 5, --eval_batch_size 4, --load_in_8bit)"
    )
    options = {
        "subjects": "comma-separated subjects to evaluate (the reference's --subjects); default: every *_test.csv",
        "mmlu_subjects": "same as subjects",
        "scoring": "continuation: rank the letters by the log-likelihood of ' A'..' D' tokenized together with "
        "the prompt, instead of the reference's next-token probability of encode(' A')[-1] (next_token)",
    }

    def __init__(self, name: str, n_shot: int, description: str):
        self.name = name  # type: ignore[misc]
        self.n_shot = n_shot  # type: ignore[misc]
        self.description = description  # type: ignore[misc]

    def check(self, ctx: TaskContext) -> None:
        super().check(ctx)
        self.subjects(ctx)  # a misspelt subject must not cost a model load
        if _scoring_option(ctx) == "next_token" and getattr(ctx.options, "backend", None) == "openai":
            raise TuluError(
                f"--backend openai: {self.name} reads the next-token probabilities of the answer tokens by id, which an "
                "API does not give; add --task-arg scoring=continuation (log-likelihoods, with --openai-api completions)"
            )

    def subjects(self, ctx: TaskContext) -> list[str]:
        """The subjects to evaluate: every *_test.csv, or those of --task-arg subjects (each must be there)."""
        assert ctx.data_dir is not None
        test = ctx.data_dir / "mmlu" / "data" / "test"
        subjects = sorted(p.name[: -len("_test.csv")] for p in test.glob("*_test.csv"))
        only = _subjects_option(ctx)
        if only:
            unknown = sorted(set(only) - set(subjects))
            if unknown:
                import difflib

                close = difflib.get_close_matches(unknown[0], subjects, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise TuluError(f"--task-arg subjects: unknown subject(s) {', '.join(unknown)} in {test}{hint}")
            subjects = [s for s in subjects if s in only]
        return subjects

    def load(self, ctx: TaskContext) -> list[Example]:
        assert ctx.data_dir is not None
        root = ctx.data_dir / "mmlu" / "data"
        examples = []
        for subject in self.subjects(ctx):
            dev: list[list[str]] = []
            if self.n_shot:
                dev_path = root / "dev" / f"{subject}_dev.csv"
                if not dev_path.is_file():
                    raise TuluError(f"{dev_path}: not found; {self.prepare_command(ctx.data_dir)} creates it")
                dev = read_mmlu_csv(dev_path)[: self.n_shot]
            for i, row in enumerate(read_mmlu_csv(root / "test" / f"{subject}_test.csv")):
                examples.append(
                    Example(
                        id=f"{subject}/{i}",
                        reference=row[5],
                        meta={"subject": subject},
                        data={"row": row, "dev": dev},
                    )
                )
        return examples

    def build(self, example: Example, ctx: TaskContext) -> Query:
        subject = example.meta["subject"]
        row, dev = example.data["row"], example.data["dev"]
        end = format_example(row, include_answer=False)
        # Both rules score the strings " A".." D": as the last token of each encoded alone
        # (next_token), or as continuations of the prompt.
        choices = [" " + letter for letter in LETTERS]
        next_token = _scoring_option(ctx) == "next_token"
        k = min(len(dev), self.n_shot)
        while True:
            head = prompt_header(subject) + "".join(format_example(d, include_answer=True) for d in dev[:k])
            q = ctx.query(head + end, chat_suffix="The answer is:", choices=choices)
            q.next_token = next_token
            # At 0 exemplars the reference would loop forever on a prompt that is still too long; keep it.
            if k == 0 or ctx.count_tokens(q.prompt) <= MAX_PROMPT_TOKENS:
                return q
            k -= 1

    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        scores = [float(x) for x in output]
        return LETTERS[max(range(len(scores)), key=lambda j: (scores[j], -j))]  # ties: the first, like argmax

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        return {"accuracy": float(row["answer"] == row["reference"])}

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        by_subject: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            # Rows made elsewhere may lack meta; the id ("subject/index") says it too.
            subject = (r.get("meta") or {}).get("subject") or str(r["id"]).split("/")[0]
            by_subject[subject].append(float(r["metrics"]["accuracy"]))
        by_sub: dict[str, list[float]] = defaultdict(list)
        by_cat: dict[str, list[float]] = defaultdict(list)
        for subject, cors in by_subject.items():
            sub = SUBCATEGORIES.get(subject, "other")
            by_sub[sub].extend(cors)
            by_cat[category_of(subject) or "other (business, health, misc.)"].extend(cors)
        return {
            "average_acc": mean(c for cors in by_subject.values() for c in cors),
            "cat_acc": {c: mean(v) for c, v in sorted(by_cat.items())},
            "subcat_acc": {s: mean(v) for s, v in sorted(by_sub.items())},
            "subject_acc": {s: mean(v) for s, v in sorted(by_subject.items())},
        }


def _subjects_option(ctx: TaskContext) -> list[str]:
    args = getattr(ctx.options, "task_args", None) or {}
    raw = args.get("subjects") or args.get("mmlu_subjects") or ""
    return [s.strip() for s in raw.split(",") if s.strip()]


def _scoring_option(ctx: TaskContext) -> str:
    value = (getattr(ctx.options, "task_args", None) or {}).get("scoring", "next_token")
    if value not in SCORING:
        raise TuluError(f"--task-arg scoring: '{value}' is not one of {', '.join(SCORING)}")
    return value


TASKS = [
    MMLU("mmlu_0shot", 0, "MMLU 57 subjects, zero-shot, answer letter by next-token probability; average/category/subject accuracy"),
    MMLU("mmlu_5shot", 5, "MMLU 57 subjects, 5-shot (fewer if over 2048 tokens), answer letter by next-token probability"),
]
