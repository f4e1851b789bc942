"""MATH: competition mathematics, 4-shot Minerva-style chain of thought, "Final Answer" extraction, accuracy per type."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.math_normalize import (
    INVALID,
    extract_flexible,
    extract_strict,
    is_equiv,
    normalize_final_answer,
    reference_answer,
)
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, Query, Task, TaskContext, mean, read_jsonl_lines, read_predictions_or

# The four exemplars open-instruct took from DeepSeek-Math's few-shot prompts (the Minerva
# format). The stray "}" ending the first question is in the published prompt and kept.
EXEMPLARS: list[dict[str, str]] = [
    {
        "question": "Find the domain of the expression $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}",
        "cot": "The expressions inside each square root must be non-negative.\nTherefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$.\nAlso, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$.\nTherefore, the domain of the expression is $\\boxed{[2,5)}$.",
        "short": "[2,5)",
    },
    {
        "question": "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$",
        "cot": "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$",
        "short": "24",
    },
    {
        "question": "Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?",
        "cot": "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$: \\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}",
        "short": "16",
    },
    {
        "question": "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero, find $\\frac{a}{b},$ assuming $b$ is nonzero.",
        "cot": "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$",
        "short": "-\\frac{2}{3}",
    },
]

DATA_FILE = "MATH/test.jsonl"
# open-instruct's scripts/prepare_eval_data.sh fetched this file from DeepSeek-Math's main branch; pinned here.
DATA_URL = "https://raw.githubusercontent.com/deepseek-ai/DeepSeek-Math/b8b0f8ce093d80bf8e9a641e44142f06d092c305/evaluation/datasets/math/test.jsonl"


def problem_turn(question: str) -> str:
    return "Problem:\n" + question + "\n\nSolution:"


def solution_turn(exemplar: dict[str, str], cot: bool) -> str:
    if not cot:
        return exemplar["short"]
    return exemplar["cot"] + "\nFinal Answer: The final answer is $" + exemplar["short"] + "$. I hope it is correct."


class MATH(Task):
    data_name = "math"
    data_files = (DataFile(DATA_FILE, DATA_URL),)
    required = (DATA_FILE,)
    kind = "generate"
    n_shot = 4
    max_examples = 200  # Tulu's MATH runs drew 200 problems with seed 42
    metrics = ("accuracy", "accuracy_flex", "per_type_accuracy", "per_level_accuracy", "invalid_rate")

    def __init__(self, name: str, cot: bool, description: str, source: str):
        self.name = name  # type: ignore[misc]
        self.cot = cot
        self.description = description  # type: ignore[misc]
        self.source = source  # type: ignore[misc]
        # open-instruct stopped at the next "Problem:" (and, for plain prompts, at the first newline,
        # which cuts every multi-line solution short; that stop is left out here, see the docs).
        # Direct answers are one line, so there the newline stop is kept for plain prompts.
        plain_stop = ("Problem:",) if cot else ("\n", "Problem:")
        self.generation = GenerationSettings(max_new_tokens=1024, temperature=0.0, stop=plain_stop)  # type: ignore[misc]
        self.chat_stop = ("Problem:",)  # type: ignore[misc]

    # ---- data -------------------------------------------------------------------------------
    def load(self, ctx: TaskContext) -> list[Example]:
        assert ctx.data_dir is not None
        path = ctx.data_dir / DATA_FILE
        examples = []
        for i, row in read_jsonl_lines(path):
            for key in ("problem", "solution", "type"):
                if not isinstance(row.get(key), str):
                    raise TuluError(f"{path}:{i}: field '{key}' is missing or not a string")
            # A solution without a readable \boxed{...} gives "" and stays in the set, as in open-instruct
            # (dropping it would change which 200 problems the seeded draw picks).
            reference = reference_answer(row["solution"])
            meta = {"type": row["type"], "level": str(row.get("level", "")), "line": i}
            examples.append(Example(id=str(len(examples)), reference=reference, meta=meta, data={"problem": row["problem"]}))
        return examples

    # ---- prompting ----------------------------------------------------------------------------
    def messages(self, problem: str) -> list[dict[str, str]]:
        """Exemplars as earlier user/assistant turns, then the problem (open-instruct's chat format)."""
        msgs: list[dict[str, str]] = []
        for ex in EXEMPLARS[: self.n_shot]:
            msgs.append({"role": "user", "content": problem_turn(ex["question"])})
            msgs.append({"role": "assistant", "content": solution_turn(ex, self.cot)})
        msgs.append({"role": "user", "content": problem_turn(problem.strip())})
        return msgs

    def plain_prompt(self, problem: str) -> str:
        shots = "\n\n".join(problem_turn(ex["question"]) + "\n" + solution_turn(ex, self.cot) for ex in EXEMPLARS[: self.n_shot])
        head = shots + "\n\n" if shots else ""
        return head + problem_turn(problem.strip()) + "\n"

    def build(self, example: Example, ctx: TaskContext) -> Query:
        messages = self.messages(example.data["problem"])
        prompt = ctx.render(messages) if ctx.use_chat else self.plain_prompt(example.data["problem"])
        return Query(prompt=prompt, messages=messages)

    # ---- scoring ------------------------------------------------------------------------------
    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        output = output if isinstance(output, str) else ""
        answer = extract_strict(output)
        if answer == INVALID and not self.cot and output.strip():
            # Direct exemplars answer with the bare expression: the first line is the answer.
            answer = normalize_final_answer(output.strip().splitlines()[0])
        return answer

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        reference = str(row["reference"])
        output = row["output"] if isinstance(row.get("output"), str) else ""
        answer = row.get("answer")
        if not isinstance(answer, str):
            answer = self.extract(output, row)
        # The flexible reading falls back to the last boxed expression when there is no answer line.
        flex, how = (answer, "answer") if answer != INVALID else extract_flexible(output)
        return {
            "accuracy": float(answer != INVALID and is_equiv(answer, reference)),
            "accuracy_flex": float(flex != INVALID and is_equiv(flex, reference)),
            "invalid": float(answer == INVALID),
            "boxed_fallback": float(how == "boxed"),
        }

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        by_type: dict[str, list[float]] = defaultdict(list)
        by_level: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            meta = r.get("meta") or {}
            by_type[str(meta.get("type") or "unknown")].append(float(r["metrics"]["accuracy"]))
            if meta.get("level"):
                by_level[str(meta["level"])].append(float(r["metrics"]["accuracy"]))
        return {
            "accuracy": mean(float(r["metrics"]["accuracy"]) for r in rows),
            "accuracy_flex": mean(float(r["metrics"]["accuracy_flex"]) for r in rows),
            "invalid_rate": mean(float(r["metrics"]["invalid"]) for r in rows),
            "per_type_accuracy": {t: mean(v) for t, v in sorted(by_type.items())},
            "per_level_accuracy": {lv: mean(v) for lv, v in sorted(by_level.items())},
        }

    def read_predictions(self, path: Path, ctx: TaskContext) -> list[dict[str, Any]]:
        """Our predictions.jsonl, or open-instruct's MATH predictions (``model_output`` + ``answer``)."""

        def convert(i: int, r: dict[str, Any]) -> dict[str, Any]:
            output = r.get("model_output")
            if not isinstance(output, str) or not isinstance(r.get("answer"), str):
                raise TuluError(f"{path}:{i}: needs 'id' and 'output' (ours) or 'model_output' and 'answer' (open-instruct's)")
            meta = {"type": r.get("type") or "unknown", "question": r.get("question", "")}
            # open-instruct stores the reference already normalized, as we do.
            return {"id": str(i), "prompt": r.get("question", ""), "output": output, "reference": r["answer"], "meta": meta}

        return read_predictions_or(path, convert)


TASKS = [
    MATH(
        "math",
        cot=True,
        description="MATH, 4-shot Minerva chain of thought, 'Final Answer' + normalized equivalence (200 problems)",
        source="open-instruct f7f3d3f1 eval/MATH/run_eval.py (scripts/submit_eval_jobs.py MATH_cot: vllm, chat format, --n_shot 4 --max_num_examples 200)",
    ),
    MATH(
        "math_direct",
        cot=False,
        description="MATH, 4 exemplars with answers only (open-instruct --no_cot), answer line equivalence (200 problems)",
        source=(
            "open-instruct f7f3d3f1 eval/MATH/run_eval.py --no_cot (prompt, stops); answer = the first line, tulu's "
            "(the reference's 'Final Answer' regex never matches a direct answer)"
        ),
    ),
]
