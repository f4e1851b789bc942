"""GSM8K: grade-school math word problems, direct answer or 8-shot chain of thought (Tulu 2 presets)."""

from __future__ import annotations

import random
import re
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.metrics import exact_match
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, Query, Task, TaskContext, read_jsonl_lines

# The 8 exemplars of the chain-of-thought paper (Wei et al. 2022, table 20), as Tulu 2 used them.
EXEMPLARS: list[dict[str, str]] = [
    {
        "question": "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "cot": "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. So the answer is 6.",
        "short": "6",
    },
    {
        "question": "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "cot": "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5.",
        "short": "5",
    },
    {
        "question": "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "cot": "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. So the answer is 39.",
        "short": "39",
    },
    {
        "question": "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?",
        "cot": "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. So the answer is 8.",
        "short": "8",
    },
    {
        "question": "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
        "cot": "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. So the answer is 9.",
        "short": "9",
    },
    {
        "question": "There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?",
        "cot": "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. So the answer is 29.",
        "short": "29",
    },
    {
        "question": "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?",
        "cot": "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. So the answer is 33.",
        "short": "33",
    },
    {
        "question": "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "cot": "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. So the answer is 8.",
        "short": "8",
    },
]

_THOUSANDS = re.compile(r"(\d),(\d)")
# A signed decimal or integer; the sign is kept for display (scoring ignores it, as Tulu 2 did).
_NUMBER = re.compile(r"[-+]?\d*\.\d+|[-+]?\d+")


def remove_thousands_separators(text: str) -> str:
    return _THOUSANDS.sub(r"\1\2", text)


def extract_last_number(output: str) -> str:
    """The last number in the output after removing thousands commas; the raw output if there is none."""
    numbers = _NUMBER.findall(remove_thousands_separators(output))
    return numbers[-1] if numbers else output


class GSM(Task):
    data_name = "gsm"
    data_files = (
        # master as open-instruct fetched it, pinned to its commit (unchanged since 2021)
        DataFile(
            "gsm/test.jsonl",
            "https://github.com/openai/grade-school-math/raw/3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/test.jsonl",
            sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",  # all 1,319 lines
        ),
    )
    required = ("gsm/test.jsonl",)
    kind = "generate"
    # Base models stop at the end of the answer line; chat models were left to stop at EOS.
    generation = GenerationSettings(max_new_tokens=512, temperature=0.0, stop=("\n",))
    chat_stop = ()
    n_shot = 8
    max_n_shot = 8
    max_examples = 200
    metrics = ("exact_match",)
    source = "open-instruct f3424591 eval/gsm/run_eval.py (scripts/submit_eval_jobs.py: vllm, chat format, 200 examples)"

    def __init__(self, name: str, cot: bool, description: str):
        self.name = name  # type: ignore[misc]
        self.cot = cot
        self.description = description  # type: ignore[misc]

    def load(self, ctx: TaskContext) -> list[Example]:
        assert ctx.data_dir is not None
        path = ctx.data_dir / "gsm" / "test.jsonl"
        examples = []
        for i, row in read_jsonl_lines(path):
            if not isinstance(row.get("question"), str):
                raise TuluError(f"{path}:{i}: field 'question' is missing or not a string")
            answer = row.get("answer")
            if not isinstance(answer, str) or "####" not in answer:
                raise TuluError(f"{path}:{i}: field 'answer' must be a string ending in '#### <number>'")
            reference = remove_thousands_separators(answer.split("####")[1].strip())
            try:
                float(reference)
            except ValueError:
                raise TuluError(f"{path}:{i}: field 'answer': '{reference}' after '####' is not a number") from None
            examples.append(Example(id=str(len(examples)), reference=reference, data={"question": row["question"]}))
        return examples

    def prefix(self) -> str:
        if not self.n_shot:
            return "Answer the following question.\n\n"
        # "Quesion" (sic) in the direct preset is how Tulu 2's prompts read; kept so scores compare.
        shots = [
            ("Question: " + e["question"] + "\nAnswer: " + e["cot"])
            if self.cot
            else ("Quesion: " + e["question"] + "\nAnswer: " + e["short"])
            for e in self.exemplars()
        ]
        return "Answer the following questions.\n\n" + "\n\n".join(shots) + "\n\n"

    def exemplars(self) -> list[dict[str, str]]:
        # Fewer than 8: a seeded sample in the original order (Tulu 2 drew from its global generator).
        if self.n_shot >= len(EXEMPLARS):
            return EXEMPLARS
        keep = sorted(random.Random(42).sample(range(len(EXEMPLARS)), self.n_shot))
        return [EXEMPLARS[i] for i in keep]

    def build(self, example: Example, ctx: TaskContext) -> Query:
        user = self.prefix() + "Question: " + example.data["question"].strip()
        return ctx.query(user, chat_suffix="Answer:", plain_suffix="\nAnswer:")

    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        return extract_last_number(output)

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        return {"exact_match": exact_match(row["answer"], row["reference"])}


TASKS = [
    GSM("gsm_direct", cot=False, description="GSM8K, 8 exemplars with answers only, last number exact match (200 problems)"),
    GSM("gsm_cot", cot=True, description="GSM8K, 8-shot chain of thought, last number exact match (200 problems)"),
]
