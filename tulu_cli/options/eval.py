"""Options of `tulu eval run | score | list` and `tulu data prepare-eval` (defaults live here)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional, Union

from pydantic import field_validator, model_validator

from tulu_cli.options.base import Options, key_value_pairs, opt


def _split_csv(v):
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return v


class TaskExtraOptions(Options):
    """Settings only some tasks read (judges, classifiers, alternative input files)."""

    cli_names: ClassVar[dict[str, str]] = {"task_args": "--task-arg", "json_output": "--json"}

    judge_model: Optional[str] = None
    judge_base_url: Optional[str] = None
    judge_api_key_env: str = "OPENAI_API_KEY"
    toxigen_classifier: Optional[str] = None
    truthfulqa_truth_judge: Optional[str] = None
    truthfulqa_info_judge: Optional[str] = None
    input_file: Union[dict[str, Path], Path, None] = None  # one PATH, or {task: PATH}
    task_args: dict[str, str] = {}
    sandbox: Literal["auto", "strict", "bwrap", "namespaces"] = "auto"  # jail of generated code (evaluation/sandbox.py POLICIES)

    @field_validator("task_args", mode="before")
    @classmethod
    def _parse_task_args(cls, v):
        # Values keep their spaces: a task argument may be a literal string.
        return key_value_pairs(v, strip_values=False)

    @field_validator("input_file", mode="before")
    @classmethod
    def _parse_input_file(cls, v):
        # From the CLI: ["PATH"] or ["TASK=PATH", ...]; from a config file: a path or a mapping.
        if not isinstance(v, (list, tuple)):
            return v
        from tulu_cli.evaluation.tasks import all_tasks

        known = all_tasks()
        plain, per_task = [], {}
        for item in map(str, v):
            name, sep, path = item.partition("=")
            if sep and name in known:  # a path may hold '=' too: TASK= only when it names a task
                if name in per_task:
                    raise ValueError(f"'{name}=' given twice")
                per_task[name] = path
            else:
                plain.append(item)
        if plain and per_task:
            raise ValueError(f"mix of a plain PATH ({plain[0]}) and TASK=PATH; give TASK=PATH for every task")
        if len(plain) > 1:
            raise ValueError(f"several plain paths ({', '.join(plain)}); give TASK=PATH for each task")
        return per_task or (plain[0] if plain else None)


class EvalRunOptions(TaskExtraOptions):
    model: str
    tasks: list[str]
    output_dir: Path
    data_dir: Optional[Path] = None
    backend: Literal["hf", "vllm", "openai"] = "hf"
    tokenizer: Optional[str] = None
    chat_template: Optional[Literal["tulu", "tokenizer", "none"]] = None  # None: each preset's own
    batch_size: Union[int, Literal["auto"]] = "auto"
    limit: Optional[int] = None
    max_examples: Optional[int] = None  # override of the preset's subsample size; 0 = all
    seed: int = 42
    n_shot: Optional[int] = None
    max_new_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    n_samples: Optional[int] = None
    stop: Optional[list[str]] = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Optional[str] = None
    max_length: Optional[int] = None
    tensor_parallel_size: Optional[int] = None  # vllm; None: every visible GPU
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    openai_api: Literal["chat", "completions"] = "chat"
    concurrency: int = 8
    max_retries: int = 6
    request_timeout: float = 120.0
    cache_dir: Optional[Path] = None
    overwrite: bool = False
    json_output: bool = False

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks_csv(cls, v):
        if isinstance(v, (list, tuple)):
            v = [t for item in v for t in _split_csv(item)]
        else:
            v = _split_csv(v)
        return list(dict.fromkeys(v)) if isinstance(v, list) else v  # a task named twice runs once

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_escapes(cls, v):
        # Shells make a literal newline awkward: accept \n and \t; an empty string means "no stop".
        if isinstance(v, (list, tuple)):
            return [str(s).replace("\\n", "\n").replace("\\t", "\t") for s in v if str(s) != ""]
        return v

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch(cls, v):
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        return v

    @model_validator(mode="after")
    def _check(self):
        if not self.tasks:
            raise ValueError("--tasks: give at least one task (see `tulu eval list`)")
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise ValueError("--batch-size must be a positive integer or 'auto'")
        if self.limit is not None and self.limit < 1:
            raise ValueError("--limit must be at least 1")
        if self.n_samples is not None and self.n_samples < 1:
            raise ValueError("--n-samples must be at least 1")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        if self.tensor_parallel_size is not None and self.tensor_parallel_size < 1:
            raise ValueError("--tensor-parallel-size must be at least 1")
        return self


class EvalScoreOptions(TaskExtraOptions):
    task: str
    predictions: Path
    data_dir: Optional[Path] = None
    output: Optional[Path] = None
    json_output: bool = False


class PrepareEvalOptions(Options):
    benchmarks: list[str] = opt(
        help="Benchmarks to download: mmlu, gsm, bbh, ... (see `tulu eval list`, column 'data').", argument="BENCHMARKS"
    )
    data_dir: Path = opt(Path("data/eval"), help="Root folder to write (mmlu/, gsm/, bbh/...).", flags=("--data-dir", "-d"))
    mirror: Optional[str] = opt(
        None, help="Base URL serving files in the data/eval layout, used instead of the published URLs (also $TULU_EVAL_MIRROR)."
    )
    cache_dir: Optional[Path] = opt(None, help="Keep downloads here so a second data dir costs nothing.", default_help="no cache")
    force: bool = opt(False, help="Download again even when the data is already there.")

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _bench_csv(cls, v):
        if isinstance(v, (list, tuple)):
            return [t for item in v for t in _split_csv(item)]
        return _split_csv(v)
