"""`tulu eval` command group: run the Tulu 2 suite, re-score predictions, list tasks (heavy imports inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt, TuluTyper, print_json, print_resolved

app = TuluTyper(help="Run and score the Tulu 2 evaluation suite.")

M = "Model and backend"
T = "Tasks and data"
G = "Generation overrides (default: the preset's)"
A = "OpenAI-compatible API"
X = "Task-specific"


def _opt(*names: str, help: str, panel: str, **kw):
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False, **kw)


JsonOpt = Annotated[Optional[bool], _opt("--json", help="Print the metrics as one JSON object {task: {metric: value}} on stdout. Default: off.", panel=T)]
DataDirOpt = Annotated[Optional[Path], _opt("--data-dir", "-d", help="Evaluation data root, as written by `tulu data prepare-eval` (mmlu/, gsm/, bbh/...). Default: none.", panel=T)]
JudgeModelOpt = Annotated[Optional[str], _opt("--judge-model", help="Judge model name (AlpacaEval, XSTest, TruthfulQA judges). Default: none.", panel=X)]
JudgeUrlOpt = Annotated[Optional[str], _opt("--judge-base-url", help="OpenAI-compatible base URL of the judge. Default: none.", panel=X)]
JudgeKeyOpt = Annotated[Optional[str], _opt("--judge-api-key-env", help="Environment variable holding the judge's API key. Default: OPENAI_API_KEY.", panel=X)]
ToxiClsOpt = Annotated[Optional[str], _opt("--toxigen-classifier", help="Path of the ToxiGen RoBERTa-style classifier. Default: none.", panel=X)]
TruthJudgeOpt = Annotated[Optional[str], _opt("--truthfulqa-truth-judge", help="Folder of the TruthfulQA truthfulness judge (a causal LM such as allenai/truthfulqa-truth-judge-llama2-7B); same as --task-arg truth_judge=DIR. Default: none.", panel=X)]
InfoJudgeOpt = Annotated[Optional[str], _opt("--truthfulqa-info-judge", help="Folder of the TruthfulQA informativeness judge (e.g. allenai/truthfulqa-info-judge-llama2-7B); same as --task-arg info_judge=DIR. Default: none.", panel=X)]
InputFileOpt = Annotated[Optional[list[str]], _opt("--input-file", help="Input file instead of the task's own, for tasks that read one (ifeval, xstest, alpaca_eval*, codex/humanevalplus/mbppplus): PATH when one such task runs, TASK=PATH (repeatable) otherwise. A relative PATH may be under --data-dir. Default: the task's own.", panel=X)]
SandboxOpt = Annotated[Optional[str], _opt("--sandbox", help="How generated code (codex, humanevalplus, mbppplus) is jailed: auto (bubblewrap or tulu's own user namespaces; below that, a loud warning and the strongest fallback), strict (refuse below the full sandbox), bwrap or namespaces (that jail or refuse). Default: auto.", panel=X)]
TaskArgOpt = Annotated[Optional[list[str]], _opt("--task-arg", help="KEY=VALUE passed to tasks (repeatable), e.g. subjects=anatomy,virology for MMLU. Default: none.", panel=X)]


def _flag_values(params: dict) -> dict:
    """A command's flags by option field: parameters are named after the fields, except --task-arg
    (one KEY=VALUE each) which fills ``task_args``; --config and --dry-run are not options."""
    values = {k: v for k, v in params.items() if k not in ("config", "dry_run")}
    values["task_args"] = values.pop("task_arg", None)
    return values


def _use_sandbox(opts) -> None:
    """--sandbox, for the code tasks' programs: strict or a named jail refuses now, before any model loads."""
    from tulu_cli.evaluation.sandbox import set_policy

    set_policy(opts.sandbox)


@app.command("run")
def run(
    model: Annotated[Optional[str], _opt("--model", "-m", help="Model folder or hub name (hf, vllm), or the API model name (openai). Required.", panel=M)] = None,
    tasks: Annotated[Optional[list[str]], _opt("--tasks", "-t", help="Comma-separated task presets (see `tulu eval list`); repeatable. Required.", panel=T)] = None,
    data_dir: DataDirOpt = None,
    output_dir: Annotated[Optional[Path], _opt("--output-dir", "-o", help="Results folder: results.json and <task>/predictions.jsonl, metrics.json. Rerunning resumes. Required.", panel=T)] = None,
    limit: Annotated[Optional[int], _opt("--limit", help="Evaluate only the first N examples of each task (per subject for MMLU, per subtask for BBH), for quick checks. Default: all.", panel=T)] = None,
    max_examples: Annotated[Optional[int], _opt("--max-examples", help="Override the preset's random subsample size (GSM 200, BBH 40 per subtask); 0 means all. Default: the preset's.", panel=T)] = None,
    seed: Annotated[Optional[int], _opt("--seed", help="Seed for subsampling and sampling. Default: 42 (Tulu 2).", panel=T)] = None,
    n_shot: Annotated[Optional[int], _opt("--n-shot", help="In-context examples instead of the preset's (MMLU up to 5, GSM up to 8, BBH up to 3). Default: the preset's.", panel=T)] = None,
    overwrite: Annotated[Optional[bool], _opt("--overwrite/--resume", help="Discard earlier predictions in --output-dir instead of resuming. Default: resume.", panel=T)] = None,
    backend: Annotated[Optional[str], _opt("--backend", "-b", help="hf (transformers), vllm (needs the vllm extra) or openai (any OpenAI-compatible API). Default: hf.", panel=M)] = None,
    tokenizer: Annotated[Optional[str], _opt("--tokenizer", help="Tokenizer folder or name. Default: the model's.", panel=M)] = None,
    chat_template: Annotated[Optional[str], _opt("--chat-template", help="tulu (<|user|>/<|assistant|> format), tokenizer (the tokenizer's own template) or none (plain prompts, for base models), for every task of the run. Default: each preset's own, as open-instruct ran it (tulu; none for codex_eval_temp_*; `tulu eval list --json` shows each).", panel=M)] = None,
    batch_size: Annotated[Optional[str], _opt("--batch-size", help="Prompts per batch (rows in flight when generating), or auto: start at 64 (16 rows when generating on CPU) and halve on out-of-memory. Default: auto.", panel=M)] = None,
    dtype: Annotated[Optional[str], _opt("--dtype", help="auto, float32, bfloat16 or float16. Default: auto (checkpoint dtype on GPU, float32 on CPU).", panel=M)] = None,
    device: Annotated[Optional[str], _opt("--device", help="Torch device for hf. Default: cuda if available, else cpu.", panel=M)] = None,
    max_length: Annotated[Optional[int], _opt("--max-length", help="Model context length; longer prompts are cut from the left. Default: the model's.", panel=M)] = None,
    tensor_parallel_size: Annotated[Optional[int], _opt("--tensor-parallel-size", help="GPUs vllm splits the model over (its heads must divide by it). Default: every visible GPU.", panel=M)] = None,
    max_new_tokens: Annotated[Optional[int], _opt("--max-new-tokens", help="Maximum generated tokens. Default: the preset's (512 for GSM/BBH).", panel=G)] = None,
    temperature: Annotated[Optional[float], _opt("--temperature", help="Sampling temperature; 0 is greedy. Default: the preset's.", panel=G)] = None,
    top_p: Annotated[Optional[float], _opt("--top-p", help="Nucleus sampling mass. Default: the preset's.", panel=G)] = None,
    n_samples: Annotated[Optional[int], _opt("--n-samples", help="Completions per prompt. Default: the preset's (1).", panel=G)] = None,
    stop: Annotated[Optional[list[str]], _opt("--stop", help="Stop sequence (repeatable; \\n and \\t understood; '' alone means none); replaces the preset's. Default: the preset's.", panel=G)] = None,
    base_url: Annotated[Optional[str], _opt("--base-url", help="API base URL, e.g. http://localhost:8000/v1. Default: https://api.openai.com/v1.", panel=A)] = None,
    api_key_env: Annotated[Optional[str], _opt("--api-key-env", help="Environment variable holding the API key. Default: OPENAI_API_KEY.", panel=A)] = None,
    openai_api: Annotated[Optional[str], _opt("--openai-api", help="chat (/chat/completions) or completions (/completions, also scores log-likelihoods). Default: chat.", panel=A)] = None,
    concurrency: Annotated[Optional[int], _opt("--concurrency", help="Requests in flight at once. Default: 8.", panel=A)] = None,
    max_retries: Annotated[Optional[int], _opt("--max-retries", help="Retries of a failed request (exponential backoff). Default: 6.", panel=A)] = None,
    request_timeout: Annotated[Optional[float], _opt("--request-timeout", help="Seconds per request. Default: 120.", panel=A)] = None,
    cache_dir: Annotated[Optional[Path], _opt("--cache-dir", help="Response cache folder (a rerun costs nothing). Default: ~/.cache/tulu/openai.", panel=A)] = None,
    judge_model: JudgeModelOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    judge_api_key_env: JudgeKeyOpt = None,
    toxigen_classifier: ToxiClsOpt = None,
    truthfulqa_truth_judge: TruthJudgeOpt = None,
    truthfulqa_info_judge: InfoJudgeOpt = None,
    input_file: InputFileOpt = None,
    task_arg: TaskArgOpt = None,
    sandbox: SandboxOpt = None,
    json_output: JsonOpt = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Evaluate a model on Tulu 2 benchmark presets and write predictions, metrics and results.json.

    Example:

        tulu data prepare-eval mmlu gsm bbh --data-dir data/eval

        tulu eval run -m allenai/tulu-2-7b -t mmlu_0shot,gsm_cot,bbh_cot -d data/eval -o results/tulu2-7b
    """
    values = _flag_values(locals())
    from tulu_cli.options import resolve_options
    from tulu_cli.options.eval import EvalRunOptions

    opts = resolve_options(EvalRunOptions, config, values)
    if dry_run:
        from tulu_cli.evaluation.runner import preflight

        preflight(opts)  # what a real run would refuse before loading the model
        print_resolved(opts)
        return
    _use_sandbox(opts)
    from tulu_cli.evaluation.runner import run_eval
    from tulu_cli.evaluation.score import flatten

    results = run_eval(opts)
    if opts.json_output:
        print_json({name: flatten(r["metrics"]) for name, r in results["results"].items()})


@app.command("score")
def score(
    task: Annotated[Optional[str], _opt("--task", "-t", help="Task preset the predictions belong to. Required.", panel=T)] = None,
    predictions: Annotated[Optional[Path], _opt("--predictions", "-p", help="predictions.jsonl from `tulu eval run` (or a format the task accepts). Required.", panel=T)] = None,
    data_dir: DataDirOpt = None,
    output: Annotated[Optional[Path], _opt("--output", help="Also write the metrics to this JSON file. Default: none.", panel=T)] = None,
    judge_model: JudgeModelOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    judge_api_key_env: JudgeKeyOpt = None,
    toxigen_classifier: ToxiClsOpt = None,
    truthfulqa_truth_judge: TruthJudgeOpt = None,
    truthfulqa_info_judge: InfoJudgeOpt = None,
    input_file: InputFileOpt = None,
    task_arg: TaskArgOpt = None,
    sandbox: SandboxOpt = None,
    json_output: JsonOpt = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Score existing generations without a model: answers are extracted again from the raw outputs.

    Rows need ``id`` and ``output``; without ``reference``, pass --data-dir to match them to the data.

    Example:

        tulu eval score --task gsm_cot --predictions results/tulu2-7b/gsm_cot/predictions.jsonl --json
    """
    values = _flag_values(locals())
    from tulu_cli.options import resolve_options
    from tulu_cli.options.eval import EvalScoreOptions

    opts = resolve_options(EvalScoreOptions, config, values)
    if dry_run:
        from tulu_cli.evaluation.score import preflight

        preflight(opts)
        print_resolved(opts)
        return
    _use_sandbox(opts)
    from tulu_cli.evaluation.score import flatten, score_predictions

    metrics = score_predictions(opts)
    if opts.json_output:
        print_json({opts.task: flatten(metrics)})
        return
    from rich.console import Console

    from tulu_cli.evaluation.tables import print_table

    rows = [[k, f"{v:.4f}" if isinstance(v, float) else str(v)] for k, v in flatten(metrics).items()]
    print_table(Console(), ["metric", "value"], rows, title=f"{opts.task}: {opts.predictions}", right=(1,))


@app.command("list")
def list_tasks(
    json_output: Annotated[Optional[bool], _opt("--json", help="Print every task's settings as one JSON object {task: {description, kind, n_shot, generation, metrics, options...}} on stdout. Default: off (a table at a terminal, tab-separated lines in a pipe).", panel=T)] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """List the task presets with their metrics, settings and --task-arg options.

    At a terminal: a table. In a pipe or a narrow terminal: a header line, then one tab-separated
    line per task, nothing cut (tulu eval list | grep gsm).

    Example:

        tulu eval list --json
    """
    from tulu_cli.evaluation.tasks import all_tasks, broken_modules

    if dry_run:
        return
    tasks = all_tasks()
    from rich.console import Console

    for module, err in broken_modules().items():
        Console(stderr=True).print(f"[yellow]warning:[/yellow] task module {module} not loaded ({err})", highlight=False)
    if json_output:
        print_json({name: t.info() for name, t in tasks.items()})
        return
    from tulu_cli.evaluation.tables import print_table

    rows = []
    for name, t in tasks.items():
        info = t.info()
        g = info.get("generation")
        settings = (
            f"max_new_tokens={g['max_new_tokens']} T={g['temperature']} top_p={g['top_p']} n={g['n']} stop={g['stop']!r}"
            if g
            else "log-likelihood"
        )
        if t.max_examples:
            settings += f"; {t.max_examples} examples" + (f" per {t.sample_by}" if t.sample_by else "")
        options = ", ".join(t.options) or "-"  # their help: `tulu eval list --json`
        rows.append([name, str(t.data_name or "-"), str(t.n_shot), t.kind, settings, ", ".join(t.metrics), options, t.source or "-", t.description])
    columns = ["task", "data", "shots", "kind", "settings", "metrics", "task args", "source", "description"]
    print_table(Console(), columns, rows, title="tulu eval tasks")
