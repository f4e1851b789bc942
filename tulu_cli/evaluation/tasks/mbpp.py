"""MBPP+ as open-instruct's eval/mbpp ran it: the evalplus/mbppplus test split past its first 100 problems, completion + tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, TaskContext, read_jsonl_lines
from tulu_cli.evaluation.tasks.codex import ANSWER, FENCE, INSTRUCTION, CodeTask, task_args

DATA_FILE = "mbppplus/test.parquet"
# The hub dataset open-instruct loaded (load_dataset("evalplus/mbppplus")["test"]), pinned to its April 2024 revision.
DATA_URL = (
    "https://huggingface.co/datasets/evalplus/mbppplus/resolve/b2d74c91837c3f2a20c1299ae98133cbe7cfa077/"
    "data/test-00000-of-00001-d5781c9c51e02795.parquet"
)
FIELDS = ("task_id", "prompt", "code", "test")
HELD_OUT = 100  # open-instruct always leaves out the first 100 problems (its shuffle's result is discarded)


def read_split(path: Path) -> list[dict[str, Any]]:
    """Rows of the split: the hub's parquet file, or JSON Lines with the same fields; bad ones name the file and row."""
    if path.name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise TuluError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises its own error types for a damaged or foreign file
            raise TuluError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
        for name in FIELDS:
            if name not in table.column_names:
                raise TuluError(f"{path}: column '{name}' is missing (expected the evalplus/mbppplus columns {', '.join(FIELDS)})")
        rows = [(f"{path}: row {i + 1}", r) for i, r in enumerate(table.select(list(FIELDS)).to_pylist())]
    else:
        rows = [(f"{path}:{i}", r) for i, r in read_jsonl_lines(path, FIELDS)]
    for where, r in rows:
        if not isinstance(r["task_id"], int) and not str(r["task_id"]).isdigit():
            raise TuluError(f"{where}: 'task_id' must be a problem number, got {r['task_id']!r}")
        for name in ("prompt", "code", "test"):
            if not isinstance(r[name], str):
                raise TuluError(f"{where}: '{name}' must be a string")
    return [r for _, r in rows]


class MbppPlus(CodeTask):
    """Prompt: the problem text and the solution's code up to its first ``:`` (the ``def`` line without
    it); with chat format the assistant turn opens a python block. Program: the output alone, then the
    split's test code, 10 s."""

    name = "mbppplus"
    data_name = "mbppplus"
    data_files = (DataFile(DATA_FILE, DATA_URL),)
    required = (DATA_FILE,)
    generation = GenerationSettings(max_new_tokens=512, temperature=0.1, top_p=1.0, n=20, stop=("```",))
    metrics = ("pass@1", "pass@5", "pass@10", "pass@20")
    default_timeout = 10.0
    options = {
        **CodeTask.options,
        "skip": f"problems left out at the start of the split (default {HELD_OUT}, as open-instruct; 0 keeps all)",
    }
    source = (
        "open-instruct f7f3d3f1 eval/mbpp/run_eval.py (scripts/submit_eval_jobs.py mbpp_evalplus_temp_0.1: evalplus/mbppplus "
        "test split past its first 100 problems, vllm, tulu chat format, 20 samples, pass@1/5/10/20)"
    )
    description = "MBPP+ (evalplus/mbppplus test split past its first 100 problems), 20 samples at temperature 0.1, output + tests in the sandbox"

    # ---- data ---------------------------------------------------------------------------------
    def data_path(self, ctx: TaskContext) -> Path:
        given = self.given_input(ctx)
        if given is not None:
            return given
        self.check_data(ctx.data_dir)
        return ctx.data_dir / DATA_FILE  # type: ignore[operator]

    def skip(self, ctx: TaskContext) -> int:
        value = task_args(ctx).get("skip", str(HELD_OUT))
        if not value.strip().isdigit():
            raise TuluError(f"--task-arg skip={value}: expected a number of problems (0 or more)")
        return int(value)

    def check(self, ctx: TaskContext) -> None:
        super().check(ctx)
        self.skip(ctx)

    def problems(self, ctx: TaskContext) -> list[dict[str, Any]]:
        path, skip = self.data_path(ctx), self.skip(ctx)
        rows = read_split(path)[skip:]
        if not rows:
            raise TuluError(f"{path}: no problems after the first {skip} (--task-arg skip=0 keeps them all)")
        return [{"task_id": f"Mbpp/{r['task_id']}", "prompt": r["prompt"], "code": r["code"], "test": r["test"]} for r in rows]

    def code_prompt(self, problem: dict[str, Any]) -> str:
        return problem["prompt"] + problem["code"].split(":")[0]

    def meta_for(self, problem: dict[str, Any]) -> dict[str, Any]:
        return {"code_prompt": self.code_prompt(problem)}

    def sample_task_id(self, task_id: Any) -> str | None:
        # open-instruct's own prediction files hold the hub's integer ids
        if isinstance(task_id, int) or (isinstance(task_id, str) and task_id.isdigit()):
            return f"Mbpp/{task_id}"
        return task_id if isinstance(task_id, str) else None

    # ---- prompting and execution -----------------------------------------------------------------
    def chat_turns(self, example: Example, ctx: TaskContext) -> tuple[str, str]:
        return INSTRUCTION + example.data["code"], ANSWER + FENCE

    def program(self, text: str, meta: dict[str, Any], sample_format: str | None) -> str:
        return text  # the reference runs the output without the prompt in front of it

    def execute(self, jobs: list[tuple[dict[str, Any], str]], ctx: TaskContext, progress: Any) -> list[dict[str, Any]]:
        return self.run_checks([program + "\n" + p["test"] for p, program in jobs], ctx, progress)


TASKS = [MbppPlus()]
