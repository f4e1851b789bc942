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


# --help panels of `tulu eval run | score`
M, T, G, A, X = "Model and backend", "Tasks and data", "Generation overrides (default: the preset's)", "OpenAI-compatible API", "Task-specific"


class TaskExtraOptions(Options):
    """What `tulu eval run` and `tulu eval score` share: the data root, judges, classifiers, input files, task args."""

    cli_panels: ClassVar[tuple[str, ...]] = (M, T, G, A, X)

    data_dir: Optional[Path] = opt(
        None, help="Evaluation data root, as written by `tulu data prepare-eval` (mmlu/, gsm/, bbh/...).", panel=T, flags=("--data-dir", "-d")
    )
    json_output: bool = opt(False, help="Print the metrics as one JSON object {task: {metric: value}} on stdout.", panel=T, flags=("--json",))
    judge_model: Optional[str] = opt(None, help="Judge model name (AlpacaEval, XSTest, TruthfulQA judges).", panel=X)
    judge_base_url: Optional[str] = opt(None, help="OpenAI-compatible base URL of the judge.", panel=X)
    judge_api_key_env: str = opt("OPENAI_API_KEY", help="Environment variable holding the judge's API key.", panel=X)
    toxigen_classifier: Optional[str] = opt(None, help="Path of the ToxiGen RoBERTa-style classifier.", panel=X)
    truthfulqa_truth_judge: Optional[str] = opt(
        None,
        help="Folder of the TruthfulQA truthfulness judge (a causal LM such as allenai/truthfulqa-truth-judge-llama2-7B); same as --task-arg truth_judge=DIR.",
        panel=X,
    )
    truthfulqa_info_judge: Optional[str] = opt(
        None,
        help="Folder of the TruthfulQA informativeness judge (e.g. allenai/truthfulqa-info-judge-llama2-7B); same as --task-arg info_judge=DIR.",
        panel=X,
    )
    input_file: Union[dict[str, Path], Path, None] = opt(
        None,
        help="Input file instead of the task's own, for tasks that read one (ifeval, xstest, alpaca_eval*, codex/humanevalplus/mbppplus): PATH when one such task runs, TASK=PATH (repeatable) otherwise. A relative PATH may be under --data-dir.",
        panel=X,
        default_help="the task's own",
    )  # one PATH, or {task: PATH}
    task_args: dict[str, str] = opt(
        {}, help="KEY=VALUE passed to tasks (repeatable), e.g. subjects=anatomy,virology for MMLU.", panel=X, flags=("--task-arg",)
    )
    sandbox: Literal["auto", "strict", "bwrap", "namespaces"] = opt(
        "auto",
        help="How generated code (codex, humanevalplus, mbppplus) is jailed: auto (bubblewrap or tulu's own user namespaces; below that, a loud warning and the strongest fallback), strict (refuse below the full sandbox), bwrap or namespaces (that jail or refuse).",
        panel=X,
    )  # evaluation/sandbox.py POLICIES

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
    model: str = opt(help="Model folder or hub name (hf, vllm), or the API model name (openai).", panel=M, flags=("--model", "-m"))
    tasks: list[str] = opt(help="Comma-separated task presets (see `tulu eval list`); repeatable.", panel=T, flags=("--tasks", "-t"))
    output_dir: Path = opt(
        help="Results folder: results.json and <task>/predictions.jsonl, metrics.json. Rerunning resumes.", panel=T, flags=("--output-dir", "-o")
    )
    limit: Optional[int] = opt(
        None,
        help="Evaluate only the first N examples of each task (per subject for MMLU, per subtask for BBH), for quick checks.",
        panel=T,
        default_help="all",
    )
    max_examples: Optional[int] = opt(
        None, help="Override the preset's random subsample size (GSM 200, BBH 40 per subtask); 0 means all.", panel=T, default_help="the preset's"
    )
    seed: int = opt(42, help="Seed for subsampling and sampling (Tulu 2's).", panel=T)
    n_shot: Optional[int] = opt(
        None, help="In-context examples instead of the preset's (MMLU up to 5, GSM up to 8, BBH up to 3).", panel=T, default_help="the preset's"
    )
    overwrite: bool = opt(
        False, help="Discard earlier predictions in --output-dir instead of resuming.", panel=T, flags=("--overwrite/--resume",), default_help="resume"
    )
    backend: Literal["hf", "vllm", "openai"] = opt(
        "hf", help="hf (transformers), vllm (needs the vllm extra) or openai (any OpenAI-compatible API).", panel=M, flags=("--backend", "-b")
    )
    tokenizer: Optional[str] = opt(None, help="Tokenizer folder or name.", panel=M, default_help="the model's")
    chat_template: Optional[Literal["tulu", "tokenizer", "none"]] = opt(
        None,
        help="tulu (<|user|>/<|assistant|> format), tokenizer (the tokenizer's own template) or none (plain prompts, for base models), for every task of the run.",
        panel=M,
        default_help="each preset's own, as open-instruct ran it (tulu; none for codex_eval_temp_*; `tulu eval list --json` shows each)",
    )
    batch_size: Union[int, Literal["auto"]] = opt(
        "auto",
        help="Prompts per batch (rows in flight when generating), or auto: start at 64 (16 rows when generating on CPU) and halve on out-of-memory.",
        panel=M,
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", help="auto, float32, bfloat16 or float16.", panel=M, default_help="auto (checkpoint dtype on GPU, float32 on CPU)"
    )
    device: Optional[str] = opt(None, help="Torch device for hf.", panel=M, default_help="cuda if available, else cpu")
    max_length: Optional[int] = opt(None, help="Model context length; longer prompts are cut from the left.", panel=M, default_help="the model's")
    tensor_parallel_size: Optional[int] = opt(
        None, help="GPUs vllm splits the model over (its heads must divide by it).", panel=M, default_help="every visible GPU"
    )
    max_new_tokens: Optional[int] = opt(None, help="Maximum generated tokens.", panel=G, default_help="the preset's (512 for GSM/BBH)")
    temperature: Optional[float] = opt(None, help="Sampling temperature; 0 is greedy.", panel=G, default_help="the preset's")
    top_p: Optional[float] = opt(None, help="Nucleus sampling mass.", panel=G, default_help="the preset's")
    n_samples: Optional[int] = opt(None, help="Completions per prompt.", panel=G, default_help="the preset's (1)")
    stop: Optional[list[str]] = opt(
        None,
        help="Stop sequence (repeatable; \\n and \\t understood; '' alone means none); replaces the preset's.",
        panel=G,
        default_help="the preset's",
    )
    base_url: str = opt("https://api.openai.com/v1", help="API base URL, e.g. http://localhost:8000/v1.", panel=A)
    api_key_env: str = opt("OPENAI_API_KEY", help="Environment variable holding the API key.", panel=A)
    openai_api: Literal["chat", "completions"] = opt(
        "chat", help="chat (/chat/completions) or completions (/completions, also scores log-likelihoods).", panel=A
    )
    concurrency: int = opt(8, help="Requests in flight at once.", panel=A)
    max_retries: int = opt(6, help="Retries of a failed request (exponential backoff).", panel=A)
    request_timeout: float = opt(120.0, help="Seconds per request.", panel=A)
    cache_dir: Optional[Path] = opt(
        None, help="Response cache folder (a rerun costs nothing).", panel=A, default_help="$TULU_CACHE/openai, else $XDG_CACHE_HOME/tulu/openai, else ~/.cache/tulu/openai"
    )

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
    task: str = opt(help="Task preset the predictions belong to.", panel=T, flags=("--task", "-t"))
    predictions: Path = opt(
        help="predictions.jsonl from `tulu eval run` (or a format the task accepts).", panel=T, flags=("--predictions", "-p")
    )
    output: Optional[Path] = opt(None, help="Also write the metrics to this JSON file.", panel=T)


class EvalListOptions(Options):
    json_output: bool = opt(
        False,
        help="Print every task's settings as one JSON object {task: {description, kind, n_shot, generation, metrics, options...}} on stdout.",
        panel=T,
        flags=("--json",),
        default_help="off (a table at a terminal, tab-separated lines in a pipe)",
    )


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
