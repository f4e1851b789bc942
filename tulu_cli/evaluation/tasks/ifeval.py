"""IFEval: 541 prompts with verifiable instructions; strict and loose accuracy at prompt and instruction level."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, Query, Task, TaskContext, read_jsonl_rows

INPUT_FILE = "ifeval/input_data.jsonl"  # open-instruct's data/eval layout
INPUT_NAME = "input_data.jsonl"  # the benchmark's own data folder holds it directly


def _as_response(output: Any) -> str:
    if isinstance(output, list):  # n > 1: IFEval scores the first sample, as a greedy run would
        output = output[0] if output else ""
    return output if isinstance(output, str) else ""


class IFEval(Task):
    name = "ifeval"
    description = "IFEval: 541 prompts, 25 verifiable instruction types; strict/loose accuracy (prompt and instruction level)"
    data_name = "ifeval"
    data_files = (
        DataFile(
            path=INPUT_FILE,
            url="https://raw.githubusercontent.com/google-research/google-research/"
            "19638399cc9e03623c5b9087a1d6fa8813974ce9/instruction_following_eval/data/input_data.jsonl",
            sha256="67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
        ),
    )
    required = ()  # --data-dir may be data/eval or the benchmark's data folder; load() looks in both
    # Tulu 2 / open-instruct: greedy, up to 2048 new tokens, no stop sequence besides EOS.
    generation = GenerationSettings(max_new_tokens=2048, temperature=0.0, stop=())
    chat_stop = ()
    metrics = ("prompt_level_loose_acc", "prompt_level_strict_acc", "inst_level_loose_acc", "inst_level_strict_acc")

    takes_input_file = True
    source = "open-instruct f3424591 eval/ifeval/run_eval.py (scripts/submit_eval_jobs.py: vllm, chat format)"

    def input_path(self, ctx: TaskContext) -> Path:
        """--input-file, else input_data.jsonl under --data-dir (open-instruct's layout or the benchmark's folder)."""
        return self.find_input(ctx, (INPUT_FILE, INPUT_NAME))

    def check(self, ctx: TaskContext) -> None:
        self.input_path(ctx)

    def load(self, ctx: TaskContext) -> list[Example]:
        from tulu_cli.evaluation.ifeval import load_inputs

        examples = []
        for inp in load_inputs(self.input_path(ctx)):
            examples.append(
                Example(
                    id=str(inp.key),
                    reference={"instruction_id_list": inp.instruction_id_list, "kwargs": inp.kwargs},
                    meta={"question": inp.prompt},
                    data={"prompt": inp.prompt},
                )
            )
        return examples

    def build(self, example: Example, ctx: TaskContext) -> Query:
        return ctx.query(example.data["prompt"])

    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        return output  # the checkers see the response exactly as generated (no strip)

    def _verdicts(self, row: dict[str, Any]):
        from tulu_cli.evaluation.ifeval import IFEvalInput
        from tulu_cli.evaluation.ifeval.scoring import evaluate_example

        ref = row["reference"]
        question = (row.get("meta") or {}).get("question") or str(row.get("prompt", ""))
        inp = IFEvalInput(key=row["id"], prompt=question, instruction_id_list=list(ref["instruction_id_list"]),
                          kwargs=list(ref["kwargs"]))
        return evaluate_example(inp, _as_response(row.get("output")))

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        ex = self._verdicts(row)
        n = len(ex.instruction_id_list)
        return {
            "prompt_level_strict_acc": float(ex.follow_all_strict),
            "prompt_level_loose_acc": float(ex.follow_all_loose),
            "inst_strict_followed": float(sum(ex.follow_instruction_list_strict)),
            "inst_loose_followed": float(sum(ex.follow_instruction_list_loose)),
            "inst_count": float(n),
        }

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        from tulu_cli.evaluation.ifeval import summarize
        from tulu_cli.evaluation.judges import side_dir

        examples = [self._verdicts(r) for r in rows]
        metrics = summarize(examples)
        folder = side_dir(ctx.options, self.name)
        if folder is not None:
            _write_official_results(folder, examples)
        return metrics

    def read_predictions(self, path: Path, ctx: TaskContext) -> list[dict[str, Any]]:
        """Our predictions.jsonl, or IFEval responses ``{"prompt", "response"}`` matched to the
        prompts of --data-dir / --input-file by exact prompt text (every prompt needs a response)."""
        raw = read_jsonl_rows(path)
        if raw and all("id" in r and "output" in r and "reference" in r for r in raw):
            return raw
        from tulu_cli.evaluation.ifeval import load_responses

        responses = load_responses(path)
        rows = []
        missing = []
        for ex in self.load(ctx):
            prompt = ex.data["prompt"]
            if prompt not in responses:
                missing.append(ex.id)
                continue
            rows.append({"id": ex.id, "prompt": prompt, "output": responses[prompt], "reference": ex.reference,
                         "meta": ex.meta})
        if missing:
            raise TuluError(
                f"{path}: no response for {len(missing)} of {len(missing) + len(rows)} prompts of "
                f"{self.input_path(ctx)} (first: key {missing[0]}); responses are matched by exact prompt text"
            )
        return rows


def _write_official_results(folder: Path, examples: list[Any]) -> None:
    """eval_results_strict.jsonl / eval_results_loose.jsonl in the benchmark's own output format."""
    from tulu_cli.evaluation.results import rewrite_rows

    for mode in ("strict", "loose"):
        rows = []
        for ex in examples:
            follows = getattr(ex, f"follow_instruction_list_{mode}")
            rows.append({
                "follow_all_instructions": all(follows),
                "follow_instruction_list": follows,
                "instruction_id_list": ex.instruction_id_list,
                "prompt": ex.prompt,
                "response": ex.response,
            })  # fmt: skip
        rewrite_rows(folder / f"eval_results_{mode}.jsonl", rows, ensure_ascii=True)  # as the benchmark writes them


TASKS = [IFEval()]
