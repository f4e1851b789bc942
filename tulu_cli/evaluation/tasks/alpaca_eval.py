"""AlpacaEval 1 and 2: generate on the 805 instructions, judge against reference outputs, win rate (and LC win rate for v2).

Besides predictions.jsonl and metrics.json the task folder gets the alpaca_eval package's files, so a run
can be submitted to its leaderboard: ``model_outputs.json`` (``instruction``, ``output``, ``generator``,
``dataset``), ``<annotator>/annotations.json`` and ``<annotator>/leaderboard.csv``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, Query, Task, TaskContext

# Hub files as hf:// addresses (the downloader sends them to HF_ENDPOINT); tatsu-lab/alpaca_eval pinned to a commit
# that holds all three of its files here. The davinci-003 2048-token outputs follow main: no commit id was found.
ALPACA_EVAL_HF = "hf://tatsu-lab/alpaca_eval/{}@2edc6fad8be6b14ea7230aabfd08188da6b8b814"
DAVINCI_2048_HF = "hf://hamishivi/alpaca-farm-davinci-003-2048-token/davinci_003_outputs.json"
# AlpacaEval 1's reference outputs. Tulu 2's job passed no --reference_path, so alpaca-eval 0.5.3 (with
# IS_ALPACA_EVAL_2=False) used its default: the eval set itself, load_dataset("tatsu-lab/alpaca_eval",
# "alpaca_eval"), i.e. alpaca_eval.json with the leaderboard's text-davinci-003 outputs (300 max tokens).
# alpaca_eval's GitHub results/text_davinci_003/model_outputs.json is NOT that file: same instructions,
# other davinci-003 outputs (785 of 805 differ from the output_1 of the package's own annotations).
V1_DEFAULT = "alpaca_eval/alpaca_eval.json"
# open-instruct's documented alternative (--reference_path): davinci-003 regenerated with 2048 max tokens.
V1_2048 = "alpaca_eval/davinci_003_outputs.json"
V1_CHOICES = {"alpaca_eval": V1_DEFAULT, "davinci_003_2048": V1_2048}
V2_REFERENCES = (
    "alpaca_eval/alpaca_eval_gpt4_baseline.json",  # the package's AlpacaEval 2 reference (gpt4_1106_preview)
    "alpaca_eval/results/gpt4_1106_preview/model_outputs.json",
)
GAMED_FILE = "alpaca_eval/df_gamed.csv"


def read_outputs_file(path: Path) -> list[dict[str, Any]]:
    """Records of an AlpacaEval outputs file (a JSON array, or JSON lines as open-instruct writes them)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TuluError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise TuluError(f"{path}: not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise TuluError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
        where = [f"{path}: record {i + 1}" for i in range(len(records))]
    else:
        records, where = [], []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise TuluError(f"{path}:{i}: invalid JSON: {e.msg}") from None
            where.append(f"{path}:{i}")
    if not records:
        raise TuluError(f"{path}: no records")
    for rec, loc in zip(records, where):
        if not isinstance(rec, dict):
            raise TuluError(f"{loc}: expected an object with 'instruction' and 'output'")
        for key in ("instruction", "output"):
            if not isinstance(rec.get(key), str):
                raise TuluError(f"{loc}: field '{key}' is missing or not a string")
    return records


def _dump_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


class AlpacaEval(Task):
    data_name = "alpaca_eval"
    required = ()  # several layouts are accepted; load() names them when none is there
    takes_input_file = True
    generation = GenerationSettings(max_new_tokens=8192, temperature=0.0, stop=())
    chat_stop = ()

    def __init__(
        self,
        name: str,
        annotator: str,
        references: tuple[str, ...],
        data_files: tuple[DataFile, ...],
        description: str,
        metrics: tuple[str, ...],
        source: str,
        options: dict[str, str],
        reference_choices: dict[str, str] | None = None,
    ):
        self.name = name
        self.annotator = annotator
        self.references = references
        self.reference_choices = reference_choices or {}
        self.data_files = data_files
        self.description = description
        self.metrics = metrics
        self.source = source
        self.options = options

    # ---- data -------------------------------------------------------------------------------
    def reference_path(self, ctx: TaskContext) -> Path:
        choice = (getattr(ctx.options, "task_args", None) or {}).get("reference")
        if choice is None:
            return self.find_input(ctx, self.references, "the reference outputs")
        if choice not in self.reference_choices:
            known = ", ".join(self.reference_choices) or "none (this preset has one reference)"
            raise TuluError(f"--task-arg reference={choice}: not a reference of task {self.name} (choices: {known})")
        return self.find_input(ctx, (self.reference_choices[choice],), f"the reference outputs of reference={choice}")

    def check(self, ctx: TaskContext) -> None:
        from tulu_cli.evaluation.judges import judge_concurrency

        self.reference_path(ctx)
        # --task-arg values, so a typo costs nothing: not the generation run before the judge.
        self._annotator_seed(ctx)
        self._gamed_path(ctx)
        judge_concurrency(ctx.options)

    def _annotator_seed(self, ctx: TaskContext) -> int:
        raw = (getattr(ctx.options, "task_args", None) or {}).get("annotator_seed", "0")
        try:
            return int(raw)
        except ValueError:
            raise TuluError(f"--task-arg annotator_seed: not an integer: {raw!r}") from None

    def load(self, ctx: TaskContext) -> list[Example]:
        path = self.reference_path(ctx)
        return [
            Example(
                id=str(i),
                reference=rec["output"],
                meta={
                    "index": i,
                    "instruction": rec["instruction"],
                    "dataset": rec.get("dataset", "alpaca_eval"),
                    "reference_generator": rec.get("generator", "reference"),
                },
            )
            for i, rec in enumerate(read_outputs_file(path))
        ]

    def build(self, example: Example, ctx: TaskContext) -> Query:
        return ctx.query(example.meta["instruction"])

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, row: dict[str, Any]) -> dict[str, float]:
        return {}  # preferences come from the judge, for all rows at once in aggregate

    def _generator(self, ctx: TaskContext, rows: list[dict[str, Any]]) -> str:
        task_args = getattr(ctx.options, "task_args", None) or {}
        if task_args.get("generator"):
            return task_args["generator"]
        for r in rows:
            g = (r.get("meta") or {}).get("generator")
            if g:
                return str(g)
        model = getattr(ctx.options, "model", None)
        if model:
            return f"{os.path.basename(os.path.normpath(str(model)))}-greedy-long"  # Tulu 2's naming
        return "model"

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        from tulu_cli.evaluation import alpaca_metrics as am
        from tulu_cli.evaluation.judges import client_from_options, judge_pairwise, side_dir

        if all(isinstance((r.get("meta") or {}).get("index"), int) for r in rows):
            rows = sorted(rows, key=lambda r: r["meta"]["index"])  # files come out in the eval set's order
        generator = self._generator(ctx, rows)
        outputs = [r["output"] if isinstance(r.get("output"), str) else "" for r in rows]
        metas = [r.get("meta") or {} for r in rows]
        model_outputs = [
            {"dataset": m.get("dataset", "alpaca_eval"), "instruction": m.get("instruction", ""), "output": o, "generator": generator}
            for m, o in zip(metas, outputs)
        ]
        folder = side_dir(ctx.options, self.name)
        if folder is not None:
            _dump_records(folder / "model_outputs.json", model_outputs)
        avg_length = int(sum(map(len, outputs)) / len(outputs)) if outputs else 0

        client = client_from_options(ctx.options, self.name)
        if client is None:
            # Generation alone is useful (judge later with `tulu eval score`), but there is no win rate without a judge.
            return {"avg_length": avg_length, "n_outputs": len(rows), "judged": False}

        seed = self._annotator_seed(ctx)
        pairs = [
            {"instruction": m.get("instruction", ""), "output_1": str(r.get("reference") or ""), "output_2": o}
            for r, m, o in zip(rows, metas, outputs)
        ]
        judged = judge_pairwise(client, self.annotator, pairs, seed=seed)
        annotations = []
        for m, pair, j in zip(metas, pairs, judged):
            annotations.append(
                {
                    "dataset": m.get("dataset", "alpaca_eval"),
                    "instruction": pair["instruction"],
                    "output_1": pair["output_1"],
                    "generator_1": m.get("reference_generator", "reference"),
                    "output_2": pair["output_2"],
                    "generator_2": generator,
                    "annotator": self.annotator,
                    "preference": None if math.isnan(j["preference"]) else j["preference"],
                    "raw_completion": j["raw_completion"],
                    "is_switched_outputs": j["is_switched_outputs"],
                    "index": m.get("index"),
                }
            )
        metrics: dict[str, Any] = am.win_rate([a["preference"] for a in annotations])
        metrics["avg_length"] = avg_length
        lc = None
        if self.annotator == "weighted_alpaca_eval_gpt4_turbo":
            gamed = self._gamed(ctx)
            try:
                lc = am.length_controlled_win_rate(annotations, gamed=gamed)
            except TuluError as e:
                if gamed is not None:
                    raise
                lc = None
                metrics["length_controlled_note"] = e.message
            if lc is not None:
                metrics["length_controlled_winrate"] = lc["length_controlled_winrate"]
                metrics["lc_standard_error"] = lc["lc_standard_error"]
                metrics["length_controlled_glm"] = lc["glm"]
                metrics["glm"] = {"weights": lc["glm_weights"], "C": lc["glm_C"]}
                for a, p in zip(annotations, lc["glm_preferences"]):
                    a["glm_preference"] = p
        for k, v in list(metrics.items()):
            if isinstance(v, float) and math.isnan(v):
                metrics[k] = None  # e.g. the standard error of a single answer; NaN is not JSON
        if "length_controlled_winrate" in metrics:  # the preset's primary metric leads the table
            metrics = {"length_controlled_winrate": metrics.pop("length_controlled_winrate"), **metrics}
        metrics["judge_unparsed"] = sum(a["preference"] is None for a in annotations)
        metrics["annotator"] = self.annotator
        metrics["judge_model"] = client.model
        if folder is not None:
            _dump_records(folder / self.annotator / "annotations.json", annotations)
            row = am.leaderboard_row(annotations, model_outputs, mode="community", lc=lc)
            am.write_leaderboard_csv(folder / self.annotator / "leaderboard.csv", {generator: row})
        return metrics

    def _gamed_path(self, ctx: TaskContext) -> Path | None:
        """--task-arg gamed_csv (must exist), else df_gamed.csv under --data-dir when it is there."""
        given = (getattr(ctx.options, "task_args", None) or {}).get("gamed_csv")
        if given:
            if not Path(given).is_file():
                raise TuluError(f"--task-arg gamed_csv: {given} does not exist")
            return Path(given)
        if ctx.data_dir is not None and (ctx.data_dir / GAMED_FILE).is_file():
            return ctx.data_dir / GAMED_FILE
        return None

    def _gamed(self, ctx: TaskContext):
        from tulu_cli.evaluation.alpaca_metrics import read_gamed_annotations

        path = self._gamed_path(ctx)
        return read_gamed_annotations(path) if path is not None else None

    def read_predictions(self, path: Path, ctx: TaskContext) -> list[dict[str, Any]]:
        """Our predictions.jsonl, or AlpacaEval model outputs made elsewhere (``instruction``, ``output``,
        ``generator``; a JSON array or JSON lines), matched to the reference outputs by instruction."""
        first = path.read_text(encoding="utf-8").lstrip()[:1] if path.is_file() else ""
        if not path.is_file():
            raise TuluError(f"{path}: file does not exist")
        if first != "[":
            from tulu_cli.evaluation.tasks import read_jsonl_rows

            rows = read_jsonl_rows(path)
            if rows and all("id" in r and "output" in r and "meta" in r for r in rows):
                return rows
        records = read_outputs_file(path)
        by_instruction = {ex.meta["instruction"]: ex for ex in self.load(ctx)}
        rows = []
        seen: set[str] = set()
        for i, rec in enumerate(records, 1):
            ex = by_instruction.get(rec["instruction"])
            if rec["instruction"] in seen:
                raise TuluError(f"{path}: record {i}: instruction appears twice: {rec['instruction'][:60]!r}")
            seen.add(rec["instruction"])
            if ex is None:
                raise TuluError(f"{path}: record {i}: instruction is not in the AlpacaEval set of {self.reference_path(ctx)}: {rec['instruction'][:60]!r}")
            meta = dict(ex.meta)
            if rec.get("generator"):
                meta["generator"] = str(rec["generator"])
            rows.append({"id": ex.id, "prompt": rec["instruction"], "output": rec["output"], "reference": ex.reference, "meta": meta})
        return rows


_JUDGE_OPTIONS = {
    "generator": "name of the evaluated model in the package's files (default: <model folder>-greedy-long, as Tulu 2)",
    "annotator_seed": "seed of the per-instruction order switch shown to the judge (default 0, the package's)",
    "judge_concurrency": "judge requests in flight (default: --concurrency)",
}

TASKS = [
    AlpacaEval(
        name="alpaca_eval",
        annotator="alpaca_eval_gpt4",
        references=(V1_DEFAULT,),
        reference_choices=V1_CHOICES,
        data_files=(
            # alpaca-eval loaded the dataset's main branch at run time; the pin keeps these bytes (main has not
            # changed alpaca_eval.json since), the hub's etag checks them.
            DataFile(path=V1_DEFAULT, url=ALPACA_EVAL_HF.format("alpaca_eval.json")),
            DataFile(path=V1_2048, url=DAVINCI_2048_HF),
        ),
        description="AlpacaEval 1: 805 instructions, judge (alpaca_eval_gpt4 prompt) vs text-davinci-003 (the package's 300-token reference); win rate",
        metrics=("win_rate", "standard_error", "discrete_win_rate", "avg_length"),
        source=(
            "open-instruct f3424591 eval/alpaca_farm/run_eval.py (scripts/submit_eval_jobs.py: vllm, chat format, "
            "no --reference_path: alpaca-eval 0.5.3's default reference with IS_ALPACA_EVAL_2=False)"
        ),
        options={
            "reference": "alpaca_eval (default: the package's text-davinci-003 outputs, alpaca_eval/alpaca_eval.json) or "
            "davinci_003_2048 (open-instruct's optional --reference_path, alpaca_eval/davinci_003_outputs.json)",
            **_JUDGE_OPTIONS,
        },
    ),
    AlpacaEval(
        name="alpaca_eval_2",
        annotator="weighted_alpaca_eval_gpt4_turbo",
        references=V2_REFERENCES,
        data_files=(
            DataFile(path=V2_REFERENCES[0], url=ALPACA_EVAL_HF.format("alpaca_eval_gpt4_baseline.json")),
            DataFile(path=GAMED_FILE, url=ALPACA_EVAL_HF.format("df_gamed.csv")),
        ),
        description="AlpacaEval 2: judge (weighted gpt4_turbo logprob prompt) vs GPT-4 turbo; win rate and length-controlled win rate",
        metrics=("length_controlled_winrate", "win_rate", "standard_error", "lc_standard_error", "avg_length"),
        source="open-instruct f7f3d3f1 eval/alpaca_farm/run_eval.py (scripts/submit_eval_jobs.py: vllm, chat format, IS_ALPACA_EVAL_2=True)",
        options={"gamed_csv": "df_gamed.csv for the length-controlled GLM (default: alpaca_eval/df_gamed.csv under --data-dir)", **_JUDGE_OPTIONS},
    ),
]
